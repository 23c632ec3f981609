//! RMSNorm of rows as one CubeCL kernel: `y = f16(x / rms(x)) · w` with the mean square summed
//! in f32, as transformers computes it.
//!
//! Composed from burn's operations a norm is five kernels in a decode step: the squares (fused
//! with the residual add before them), two levels of sums, the division, and the weight's
//! multiplication, which a reshape of the weight keeps out of the division's fused block
//! (docs/performance.md). The launch costs the host more than the GPU's work (a decode step of
//! the 1.5B shape is bound by the host), so one kernel per norm replaces four.
//!
//! Each cube normalises one row: its [`UNITS`] units load every `UNITS`-th vector of up to 16
//! bytes, all at once, and keep them in registers; the sums of their squares meet through a plane
//! sum and shared memory, and each unit then writes its vectors normalised. (A first version
//! loaded one element at a time in a loop, each load waiting for the one before, and took 10.7 µs
//! per norm of 64 rows of the 1.5B shape on an H200, docs/performance.md.) On devices without
//! plane operations, and on backends other than CubeCL (the CPU's flex), the same arithmetic runs
//! as burn's operations. The kernel is checked against the composed norm on the device by
//! `trainer bench kernels`; [`CausalLm::fused_norm`](crate::model::CausalLm::fused_norm) says
//! where it runs.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::features::Plane;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::rms_norm_kernel;

/// Units per cube (a multiple of every plane size).
pub const UNITS: usize = 256;
/// Bytes of one vector load (8 elements of 2 bytes).
const VECTOR_BYTES: usize = 16;
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
        composed::<Self>(x, weight, eps)
    }
}

/// The norm composed of `B`'s operations, summing in f32 (f64 for f64 rows): the CPU's route,
/// and the GPU's where the device has no plane operations.
fn composed<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, eps: f32) -> FloatTensor<B> {
    let dtype = x.dtype();
    let h = x.shape()[1];
    let acc = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
    let x = B::float_cast(x, FloatDType::from(acc));
    let sum = B::float_sum_dim(B::float_mul(x.clone(), x.clone()), 1);
    let mean = B::float_div_scalar(sum, burn::tensor::Scalar::new(h as f64, &acc));
    let rms = B::float_sqrt(B::float_add_scalar(mean, burn::tensor::Scalar::new(f64::from(eps), &acc)));
    let y = B::float_cast(B::float_div(x, rms), FloatDType::from(dtype));
    B::float_mul(y, B::float_reshape(weight, Shape::new([1, h])))
}

impl RmsNormOps for CubeBackend {
    fn rms_norm_rows(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        if !x.client.properties().features.plane.contains(Plane::Ops) {
            return composed::<Self>(x, weight, eps);
        }
        let (x, weight) = (into_contiguous(x), into_contiguous(weight));
        let [rows, hidden] = x.meta.shape().dims();
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype);
        let client = x.client.clone();
        // Planes of at least the device's smallest size: at most `UNITS / min` sums meet.
        let most_planes = UNITS.div_ceil(client.properties().hardware.plane_size_min.max(1) as usize);
        let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
        let vector = vector_width(hidden, x.dtype.size());
        rms_norm_kernel::launch(
            &client,
            CubeCount::new_1d(rows as u32),
            CubeDim::new_1d(UNITS as u32),
            AddressType::U32.max(x.required_address_type()).max(out.required_address_type()),
            vector,
            x.into_tensor_arg(),
            weight.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            eps,
            UNITS,
            (hidden / vector).div_ceil(UNITS),
            most_planes,
            vector,
            dtype,
        );
        out
    }
}

/// Elements per vector load of rows of `hidden` elements of `elem` bytes: the most (up to 16
/// bytes) that divide `hidden`.
fn vector_width(hidden: usize, elem: usize) -> usize {
    [8, 4, 2].into_iter().find(|&v| v * elem <= VECTOR_BYTES && hidden.is_multiple_of(v)).unwrap_or(1)
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

    /// Cube `r` normalises row `r` of `x [R, H]` into `out`, `x`, `weight` and `out` read as
    /// vectors of `N = vector` elements: unit `u` of `units` (a multiple of the plane size) loads
    /// vectors `u, u + units, …` (`per_unit` of them, all issued before any is used) and keeps
    /// them in registers for the output; the squares' sums meet through a plane sum and shared
    /// memory, in the plane size the device runs (`PLANE_DIM`; at most `most_planes` planes).
    #[allow(clippy::too_many_arguments)]
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn rms_norm_kernel<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        weight: &Tensor<Vector<F, N>>,
        out: &mut Tensor<Vector<F, N>>,
        eps: f32,
        #[comptime] units: usize,
        #[comptime] per_unit: usize,
        #[comptime] most_planes: usize,
        #[comptime] vector: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let h = x.shape(1);
        let row_vectors = h / vector;
        let base = CUBE_POS_X as usize * row_vectors;
        let unit = UNIT_POS as usize;
        let mut values = Array::<Vector<F, N>>::new(per_unit);
        #[unroll]
        for j in 0..per_unit {
            let i = j * units + unit;
            if i < row_vectors {
                values[j] = x[base + i];
            }
        }
        let mut sum = 0.0f32;
        #[unroll]
        for j in 0..per_unit {
            if j * units + unit < row_vectors {
                #[unroll]
                for e in 0..vector {
                    let v = f32::cast_from(values[j].extract(e));
                    sum += v * v;
                }
            }
        }
        let plane_size = PLANE_DIM as usize;
        let mut partial = Shared::<[f32]>::new_slice(most_planes);
        let plane_total = plane_sum(sum);
        if UNIT_POS_PLANE == 0 {
            partial[unit / plane_size] = plane_total;
        }
        sync_cube();
        let mut total = 0.0f32;
        for p in 0..units / plane_size {
            total += partial[p];
        }
        let rms = f32::sqrt(total / f32::cast_from(h) + eps);
        #[unroll]
        for j in 0..per_unit {
            let i = j * units + unit;
            if i < row_vectors {
                let w = weight[i];
                let mut result = Vector::<F, N>::new(F::from_int(0));
                #[unroll]
                for e in 0..vector {
                    result.insert(e, F::cast_from(f32::cast_from(values[j].extract(e)) / rms) * w.extract(e));
                }
                out[base + i] = result;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::vector_width;

    #[test]
    fn vectors_are_the_widest_of_at_most_16_bytes_that_divide_the_row() {
        assert_eq!(vector_width(1536, 2), 8, "f16 rows of the 1.5B shape: 8 elements per load");
        assert_eq!(vector_width(1536, 4), 4, "f32: 16 bytes are 4 elements");
        assert_eq!(vector_width(200, 2), 8);
        assert_eq!(vector_width(4 * 257, 2), 4);
        assert_eq!(vector_width(1025, 2), 1, "an odd row loads one element at a time");
        assert_eq!(vector_width(6, 8), 2, "f64: two elements");
    }
}
