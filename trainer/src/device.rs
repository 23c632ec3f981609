//! Choosing the compute device and dtype at run time: the `flex` CPU backend (CI, laptops), or
//! burn's wgpu backend (Vulkan SPIR-V on NVIDIA/AMD GPUs when built with the `vulkan` feature).

use burn::tensor::{DType, Device, DeviceKind, FloatDType};

use crate::error::{Error, Result};

/// Which burn backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pure-Rust CPU backend (burn-flex). `ndarray` is accepted as an alias.
    #[default]
    #[value(alias = "ndarray", alias = "cpu")]
    Flex,
    /// burn's wgpu backend on the default GPU adapter (SPIR-V through Vulkan when the `vulkan`
    /// feature is built, WGSL otherwise).
    #[value(alias = "gpu")]
    Wgpu,
    /// burn's wgpu backend pinned to Vulkan (needs the `vulkan` feature).
    Vulkan,
}

/// Compute precision of weights and activations (steering vectors stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the only choice that matches PyTorch to 1e-4).
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (needs a backend with bf16 arithmetic).
    Bf16,
}

impl Precision {
    /// The burn dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    fn float_dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
            Self::Bf16 => FloatDType::BF16,
        }
    }
}

impl Backend {
    /// Creates the device (without autodiff).
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Flex => Ok(Device::flex()),
            Self::Wgpu => Ok(Device::wgpu(DeviceKind::DefaultDevice)),
            #[cfg(feature = "vulkan")]
            Self::Vulkan => Ok(Device::vulkan(DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "vulkan"))]
            Self::Vulkan => Err(Error::InvalidArgument(
                "backend vulkan: this binary was built without the `vulkan` feature; use --backend wgpu or rebuild with --features vulkan".into(),
            )),
        }
    }

    /// Creates the device and checks that it computes in `precision`.
    pub fn device_for(self, precision: Precision) -> Result<Device> {
        self.check_dtype(self.device()?, precision)
    }

    /// Device `index` of the backend (the index-th discrete GPU; on the CPU backend every index
    /// is the same CPU device), checked to compute in `precision`.
    pub fn device_at(self, index: usize, precision: Precision) -> Result<Device> {
        let device = match self {
            Self::Flex => Device::flex(),
            Self::Wgpu => Device::wgpu(DeviceKind::DiscreteGpu(index)),
            #[cfg(feature = "vulkan")]
            Self::Vulkan => Device::vulkan(DeviceKind::DiscreteGpu(index)),
            #[cfg(not(feature = "vulkan"))]
            Self::Vulkan => return self.device(),
        };
        self.check_dtype(device, precision)
    }

    /// Number of devices of the backend on this machine (1 for the CPU backend).
    pub fn device_count(self) -> Result<usize> {
        Ok(match self {
            Self::Flex => 1,
            Self::Wgpu => Device::enumerate(burn::tensor::DeviceType::Wgpu).into_vec().len(),
            #[cfg(feature = "vulkan")]
            Self::Vulkan => Device::enumerate(burn::tensor::DeviceType::Vulkan).into_vec().len(),
            #[cfg(not(feature = "vulkan"))]
            Self::Vulkan => {
                self.device()?;
                0
            }
        })
    }

    fn check_dtype(self, device: Device, precision: Precision) -> Result<Device> {
        if !device.supports_dtype(precision.float_dtype()) {
            return Err(Error::InvalidArgument(format!(
                "backend {self:?} cannot compute in {precision:?} on this machine; use --dtype f32{}",
                if precision == Precision::Bf16 { " or f16" } else { "" }
            )));
        }
        Ok(device)
    }
}

/// Reads a tensor back to the host as f32 values; a failed device execution (out of memory, a
/// lost device) becomes an error naming `what` instead of a panic.
pub fn host_f32<const D: usize>(t: burn::tensor::Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.cast(DType::F32)
        .try_into_data()
        .map_err(|e| Error::Backend(format!("reading {what}: {e}")))?
        .try_to_vec()
        .map_err(|e| Error::Backend(format!("reading {what}: {e:?}")))
}

/// Waits for all work queued on `device`; a failed execution becomes an error naming `what`.
pub fn sync(device: &Device, what: &str) -> Result<()> {
    device.sync().map_err(|e| Error::Backend(format!("{what}: {e:?}")))
}
