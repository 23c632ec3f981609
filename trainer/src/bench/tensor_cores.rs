//! The device's tensor-core rate through the same cooperative-matrix instructions the
//! decode-product kernel ([`crate::model::decode_product`]) uses: `16 × 16 × 16` tile products of
//! the compute dtype accumulated in f32, with no memory traffic in the timed loop.
//!
//! At 64 rows a decode step does 64 multiply-adds per weight element it reads, so whether the
//! step can reach the weight-read roofline depends on this rate as much as on the copy bandwidth
//! (`bench generate --profile` reports both).
//!
//! Each plane (warp) loads one `16 × 16` tile pair once, then runs [`CHAINS`] independent
//! accumulations of their product `repeats` times and writes the mean product back, so the
//! result is checkable: it equals the pair's product. On devices without such cooperative
//! matrices the result is that product composed of burn's operations (so a GPU without them
//! reports the rate of burn's product); on the CPU (flex) no rate is measured.

use std::time::Instant;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

use crate::device::sync;
use crate::error::Result;
use crate::model::decode_product::{TILE, has_tile_products};
use crate::model::transformer::on_cpu;

use kernel::tile_products_kernel;

/// Independent accumulations per plane (so that one product's latency does not serialise the
/// loop).
pub const CHAINS: usize = 4;
/// Planes per cube.
const PLANES: usize = 4;

/// Repeated tile products, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait TileProductOps: Backend {
    /// `lhs [16, 16] · rhs [16, 16]` computed by each of the `P` planes of `planes [P, 16, 16]`
    /// (whose values are not read) as the mean of `CHAINS · repeats` accumulated products:
    /// `[P, 16, 16]` in `lhs`'s dtype.
    #[fusion(dtype = lhs, shape = planes)]
    fn tile_products(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, planes: FloatTensor<Self>, repeats: usize) -> FloatTensor<Self>;
}

/// The pair's product, expanded to `planes`' shape, composed of `B`'s operations.
fn composed<B: Backend>(lhs: FloatTensor<B>, rhs: FloatTensor<B>, planes: FloatTensor<B>) -> FloatTensor<B> {
    let product = B::float_reshape(B::float_matmul(lhs, rhs), Shape::new([1, TILE, TILE]));
    B::float_expand(product, planes.shape())
}

impl TileProductOps for burn::backend::Flex {
    fn tile_products(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, planes: FloatTensor<Self>, _repeats: usize) -> FloatTensor<Self> {
        composed::<Self>(lhs, rhs, planes)
    }
}

impl TileProductOps for CubeBackend {
    fn tile_products(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, planes: FloatTensor<Self>, repeats: usize) -> FloatTensor<Self> {
        if !has_tile_products(&lhs) {
            return composed::<Self>(lhs, rhs, planes);
        }
        let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
        let count = planes.meta.shape()[0];
        let client = lhs.client.clone();
        let plane_size = client.properties().hardware.plane_size_max.max(1) as usize;
        let out = empty_device_dtype(client.clone(), lhs.device.clone(), planes.meta.shape().clone(), lhs.dtype);
        let dtype = burn::backend::cubecl::dtype_to_storage_type(lhs.dtype);
        tile_products_kernel::launch(
            &client,
            CubeCount::new_1d(count.div_ceil(PLANES) as u32),
            CubeDim::new_2d(plane_size as u32, PLANES as u32),
            lhs.into_tensor_arg(),
            rhs.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            repeats as u32,
            plane_size,
            dtype,
        );
        out
    }
}

/// What [`tensor_core_rate`] measured.
#[derive(Debug, Clone, Copy)]
pub struct TileProductRate {
    /// Multiply-adds × 2 per second, in TFLOP/s.
    pub tflops: f64,
    /// Largest relative difference of the planes' mean products from burn's product of the pair.
    pub max_rel_diff: f64,
}

/// The device's rate of `16 × 16 × 16` tile products in `dtype` accumulated in f32, over
/// `planes` planes each running `repeats` rounds of [`CHAINS`] products; `None` on the CPU.
pub fn tensor_core_rate(device: &Device, dtype: DType, planes: usize, repeats: usize) -> Result<Option<TileProductRate>> {
    if on_cpu(device) {
        return Ok(None);
    }
    // Entries that are multiples of 1/8 below 2: every partial sum is exact in f32.
    let entries = |salt: usize| -> Vec<f32> { (0..TILE * TILE).map(|i| ((i * (7 + salt)) % 15) as f32 / 8.0).collect() };
    let tile = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [TILE, TILE]), (device, DType::F32)).cast(dtype);
    let (lhs, rhs) = (tile(entries(0)), tile(entries(3)));
    let slots = Tensor::<3>::zeros([planes, TILE, TILE], (device, dtype));
    let run = || Tensor::<3>::from_dispatch(Dispatch::tile_products(lhs.clone().into_dispatch(), rhs.clone().into_dispatch(), slots.clone().into_dispatch(), repeats));
    let mut products = run();
    sync(device, "the tile-product warm-up")?;
    let start = Instant::now();
    let rounds = 4;
    for _ in 0..rounds {
        products = run();
    }
    sync(device, "the tile products")?;
    let secs = start.elapsed().as_secs_f64() / rounds as f64;
    let want = lhs.matmul(rhs).cast(DType::F32).reshape([1, TILE, TILE]);
    let diff = (products.cast(DType::F32) - want.clone()).abs().max().into_scalar::<f32>();
    let scale = want.abs().max().into_scalar::<f32>().max(f32::MIN_POSITIVE);
    let flops = 2.0 * (planes * repeats * CHAINS) as f64 * (TILE * TILE * TILE) as f64;
    Ok(Some(TileProductRate { tflops: flops / secs / 1e12, max_rel_diff: f64::from(diff / scale) }))
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    use super::{CHAINS, PLANES, TILE};

    /// Plane `p` (of `CUBE_DIM_Y` per cube) loads `lhs` and `rhs`, accumulates their product
    /// `repeats` times in each of [`CHAINS`] f32 accumulators, and writes the accumulators' mean
    /// over `CHAINS · repeats` to `out[p]`.
    #[cube(launch)]
    pub(super) fn tile_products_kernel<F: Float>(
        lhs: &Tensor<F>,
        rhs: &Tensor<F>,
        out: &mut Tensor<F>,
        repeats: u32,
        #[comptime] plane_size: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let plane = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
        let a = cmma::Matrix::<F>::from_slice(cmma::MatrixIdent::A, TILE, TILE, TILE, cmma::MatrixLayout::RowMajor, lhs.slice(0, TILE * TILE), TILE as u32);
        let b = cmma::Matrix::<F>::from_slice(cmma::MatrixIdent::B, TILE, TILE, TILE, cmma::MatrixLayout::RowMajor, rhs.slice(0, TILE * TILE), TILE as u32);
        let mut sums = Sequence::<cmma::Matrix<f32>>::new();
        #[unroll]
        for _ in 0..CHAINS {
            sums.push(cmma::Matrix::<f32>::from_value(cmma::MatrixIdent::Accumulator, TILE, TILE, TILE, cmma::MatrixLayout::Undefined, 0.0));
        }
        for _ in 0..repeats {
            #[unroll]
            for c in 0..CHAINS {
                let sum = sums.index(c);
                cmma::execute::<F, F, f32, f32, cmma::Plane>(&a, &b, sum, sum);
            }
        }
        // Each plane's accumulators side by side in shared memory, then summed by its lanes.
        let values = comptime!(CHAINS * TILE * TILE);
        let mut stage = Shared::<[f32]>::new_slice(comptime!(values * PLANES));
        let base = UNIT_POS_Y as usize * values;
        #[unroll]
        for c in 0..CHAINS {
            let start = base + c * TILE * TILE;
            cmma::store(stage.slice_mut(start, start + TILE * TILE), sums.index(c), TILE as u32, cmma::MatrixLayout::RowMajor);
        }
        sync_plane();
        if plane < out.shape(0) {
            let scale = 1.0 / (f32::cast_from(repeats) * comptime!(CHAINS as f32));
            for i in range_stepped(UNIT_POS_X as usize, TILE * TILE, plane_size) {
                let mut sum = 0.0f32;
                #[unroll]
                for c in 0..CHAINS {
                    sum += stage[base + c * TILE * TILE + i];
                }
                out[plane * TILE * TILE + i] = F::cast_from(sum * scale);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_reports_no_tensor_core_rate() {
        assert!(tensor_core_rate(&Device::flex(), DType::F32, 8, 4).unwrap().is_none());
    }

    #[test]
    fn the_composed_tile_products_are_the_pair_s_product_for_every_plane() {
        let device = Device::flex();
        let lhs = Tensor::<2>::from_data(TensorData::new((0..256).map(|i| (i % 5) as f32).collect::<Vec<_>>(), [16, 16]), &device);
        let rhs = Tensor::<2>::from_data(TensorData::new((0..256).map(|i| (i % 3) as f32 - 1.0).collect::<Vec<_>>(), [16, 16]), &device);
        let slots = Tensor::<3>::zeros([3, 16, 16], &device);
        let got = Tensor::<3>::from_dispatch(Dispatch::tile_products(lhs.into_dispatch(), rhs.into_dispatch(), slots.into_dispatch(), 7));
        let got: Vec<f32> = got.into_data().iter::<f32>().collect();
        for p in 0..3 {
            for r in 0..16 {
                for c in 0..16 {
                    let want: f32 = (0..16).map(|k| ((r * 16 + k) % 5) as f32 * (((k * 16 + c) % 3) as f32 - 1.0)).sum();
                    assert_eq!(got[p * 256 + r * 16 + c], want, "plane {p} [{r}, {c}]");
                }
            }
        }
    }
}
