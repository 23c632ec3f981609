//! RMSNorm of rows as one CubeCL kernel: `y = f16(x / rms(x)) · w` with the mean square summed
//! in f32, as transformers computes it.
//!
//! Composed from burn's operations a norm is five kernels in a decode step: the squares (fused
//! with the residual add before them), two levels of sums, the division, and the weight's
//! multiplication, which a reshape of the weight keeps out of the division's fused block
//! (docs/performance.md). The launch costs the host more than the GPU's work (a decode step of
//! the 1.5B shape is bound by the host), so one kernel per norm replaces four.
//!
//! Each cube normalises one row: its [`UNITS`] units sum the squares of every `UNITS`-th element,
//! the partial sums meet in shared memory (a tree reduction), and each unit then writes its
//! elements. On backends other than CubeCL (the CPU's flex) the same arithmetic runs as burn's
//! operations. The kernel is checked against the composed norm on the device by
//! `trainer bench kernels`; [`CausalLm::fused_norm`](crate::model::CausalLm::fused_norm) says
//! where it runs.

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::rms_norm_kernel;

/// Units per cube (a power of two).
pub const UNITS: usize = 128;
/// Most rows [`CausalLm`](crate::model::CausalLm) sends through this kernel (and through
/// [`rotary_kernel`](crate::model::rotary_kernel)'s): decode steps of
/// large batches take it, a prefill of many tokens keeps burn's operations (a 64 × 256-token
/// prefill took 0.54 s with the kernel against 0.44 s without on an H200).
pub const MAX_ROWS: usize = 1024;

/// `x [R, H]` normalised by rows, times `weight [H]`, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait RmsNormOps: Backend {
    /// `f(x / sqrt(mean(x²) + eps)) · weight` for `x [R, H]`, `weight [H]`, in `x`'s dtype.
    #[fusion(dtype = x, shape = x)]
    fn rms_norm_rows(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;
}

impl RmsNormOps for burn::backend::Flex {
    fn rms_norm_rows(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        let dtype = x.dtype();
        let h = x.shape()[1];
        let acc = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
        let x = Self::float_cast(x, FloatDType::from(acc));
        let sum = Self::float_sum_dim(Self::float_mul(x.clone(), x.clone()), 1);
        let mean = Self::float_div_scalar(sum, burn::tensor::Scalar::new(h as f64, &acc));
        let rms = Self::float_sqrt(Self::float_add_scalar(mean, burn::tensor::Scalar::new(f64::from(eps), &acc)));
        let y = Self::float_cast(Self::float_div(x, rms), FloatDType::from(dtype));
        Self::float_mul(y, Self::float_reshape(weight, Shape::new([1, h])))
    }
}

impl RmsNormOps for CubeBackend {
    fn rms_norm_rows(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        let (x, weight) = (into_contiguous(x), into_contiguous(weight));
        let rows = x.meta.shape()[0];
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype);
        let client = x.client.clone();
        let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
        rms_norm_kernel::launch(
            &client,
            CubeCount::new_1d(rows as u32),
            CubeDim::new_1d(UNITS as u32),
            AddressType::U32.max(x.required_address_type()).max(out.required_address_type()),
            x.into_tensor_arg(),
            weight.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            eps,
            UNITS,
            dtype,
        );
        out
    }
}

/// `x [R, H]` normalised by rows, times `weight [H]` (see the module), in `x`'s dtype.
///
/// Both tensors must be without autodiff (the kernel has no backward pass) and of one dtype.
pub fn rms_norm_rows(x: Tensor<2>, weight: Tensor<1>, eps: f64) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::rms_norm_rows(x.into_dispatch(), weight.into_dispatch(), eps as f32))
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    /// Cube `r` normalises row `r` of `x [R, H]` into `out`, with `units` units (a power of two).
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn rms_norm_kernel<F: Float>(
        x: &Tensor<F>,
        weight: &Tensor<F>,
        out: &mut Tensor<F>,
        eps: f32,
        #[comptime] units: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let h = x.shape(1);
        let base = CUBE_POS_X as usize * h;
        let unit = UNIT_POS as usize;
        let mut sum = 0.0f32;
        for i in range_stepped(unit, h, units) {
            let v = f32::cast_from(x[base + i]);
            sum += v * v;
        }
        let mut partial = Shared::<[f32]>::new_slice(units);
        partial[unit] = sum;
        sync_cube();
        // Halve the live partial sums `log2(units)` times (unrolled: strides units/2, …, 1).
        #[unroll]
        for step in 1..units.trailing_zeros() as usize + 1 {
            let stride = units >> step;
            if unit < stride {
                let both = partial[unit] + partial[unit + stride];
                partial[unit] = both;
            }
            sync_cube();
        }
        let rms = f32::sqrt(partial[0] / f32::cast_from(h) + eps);
        for i in range_stepped(unit, h, units) {
            out[base + i] = F::cast_from(f32::cast_from(x[base + i]) / rms) * weight[i];
        }
    }
}
