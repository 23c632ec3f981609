//! Writing new values into an existing device buffer: the inputs of a captured decode step
//! ([`crate::rollout::graph`]) live in buffers that the recorded launches read, so each step's
//! inputs (the sampled ids, the step's column, the sampling uniforms) must land in those same
//! buffers rather than in fresh tensors. burn's operations always write their results into new
//! buffers, or into the input's only where nothing else holds it; this operation writes into
//! `dst`'s buffer whatever holds it.
//!
//! On backends without graphs (the CPU's flex) nothing records buffers, and the operation is a
//! copy of `src` into a new buffer.

use burn::backend::tensor::FloatTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::overwrite_kernel;

/// Units per cube.
const UNITS: usize = 256;

/// The most cubes one axis of a launch may have (Vulkan's and WebGPU's limit on a dispatch
/// dimension).
const MAX_CUBES_PER_AXIS: u32 = 65_535;

/// The cubes of an elementwise launch of `units` units per cube over `elements` elements, spread
/// over two axes so that neither passes [`MAX_CUBES_PER_AXIS`]; kernels index by `ABSOLUTE_POS`
/// (linear over the axes) and skip the units past `elements`.
pub(crate) fn elementwise_cube_count(elements: usize, units: usize) -> CubeCount {
    let cubes = elements.div_ceil(units).max(1) as u32;
    let rows = cubes.div_ceil(MAX_CUBES_PER_AXIS);
    CubeCount::new_2d(cubes.div_ceil(rows), rows)
}

/// The overwrite, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait OverwriteOps: Backend {
    /// `src`'s values in `dst`'s buffer (same shape and dtype; `dst` contiguous): the result is
    /// `dst`'s buffer, written in place.
    #[fusion(dtype = dst, shape = dst)]
    fn overwrite(dst: FloatTensor<Self>, src: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl OverwriteOps for burn::backend::Flex {
    fn overwrite(_dst: FloatTensor<Self>, src: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_add_scalar(src, burn::backend::Scalar::Float(0.0))
    }
}

impl OverwriteOps for CubeBackend {
    fn overwrite(dst: FloatTensor<Self>, src: FloatTensor<Self>) -> FloatTensor<Self> {
        if !dst.is_contiguous() || dst.meta.shape() != src.meta.shape() || dst.dtype != src.dtype {
            // Not a buffer a graph reads as a whole: the values are what the caller gets.
            return into_contiguous(src);
        }
        let src = into_contiguous(src);
        let client = dst.client.clone();
        let elements = dst.meta.shape().num_elements();
        let dtype = burn::backend::cubecl::dtype_to_storage_type(dst.dtype);
        overwrite_kernel::launch(
            &client,
            elementwise_cube_count(elements, UNITS),
            CubeDim::new_1d(UNITS as u32),
            AddressType::U32.max(dst.required_address_type()),
            src.into_tensor_arg(),
            dst.clone().into_tensor_arg(),
            dtype,
        );
        dst
    }
}

/// `src`'s values written into `dst`'s buffer (same shape and dtype, `dst` contiguous and
/// without autodiff): the returned tensor is `dst`'s buffer on CubeCL backends, so launches
/// recorded against it read the new values; elsewhere it is a copy of `src`. A `dst` of another shape or
/// dtype, or not contiguous, is not written: the result is then a copy of `src`.
pub fn overwrite<const D: usize>(dst: Tensor<D>, src: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::overwrite(dst.into_dispatch(), src.into_dispatch()))
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    /// Unit `i` copies element `i` of `src` into `dst` (both contiguous, of one shape).
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn overwrite_kernel<F: Float>(src: &Tensor<F>, dst: &mut Tensor<F>, #[define(F)] _dtype: ElemType) {
        let i = ABSOLUTE_POS;
        if i < dst.len() {
            dst[i] = src[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn an_elementwise_launch_of_a_gib_keeps_each_axis_within_the_dispatch_limit() {
        for elements in [1, 255, 256, 257, 65_535 * 256, 65_536 * 256, 1 << 28, (1 << 28) + 3] {
            let CubeCount::Static(x, y, z) = elementwise_cube_count(elements, UNITS) else { panic!("a static count") };
            assert!(x <= MAX_CUBES_PER_AXIS && y <= MAX_CUBES_PER_AXIS && z == 1, "{elements}: {x} × {y} × {z}");
            let units = x as usize * y as usize * UNITS;
            assert!(units >= elements && units < elements + (y as usize) * UNITS, "{elements}: {units} units");
        }
    }

    #[test]
    fn an_overwritten_tensor_holds_the_new_values() {
        let device = Device::flex();
        let dst = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device);
        let src = Tensor::<2>::from_data(TensorData::new(vec![5.0f32, 6.0, 7.0, 8.0], [2, 2]), &device);
        let got: Vec<f32> = overwrite(dst, src).into_data().iter::<f32>().collect();
        assert_eq!(got, [5.0, 6.0, 7.0, 8.0]);
    }
}
