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
//!
//! [`cube_tensor_core_rate`] does the same with workgroup-scope cooperative matrices
//! (`VK_NV_cooperative_matrix2`, CubeCL's `cmma::Cube`): one `[M, K] · [K, N]` product per cube,
//! whose layout across the cube's planes the driver chooses. On an H200 both reached 400–520
//! TFLOP/s alone (`trainer bench tensor-cores`), but the subgroup rate measured in the same
//! process right after some stages of `bench generate` was a quarter of that
//! (docs/performance.md).

use std::time::Instant;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::CubeMmaConfig;
use cubecl::ir::{ElemType, FloatKind};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

use crate::device::sync;
use crate::error::{Error, Result};
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

    /// `lhs [M, K] · rhs [K, N]` computed by each of the `C` cubes of `cubes [C, M, N]` with
    /// workgroup-scope cooperative matrices (`VK_NV_cooperative_matrix2`) as the mean of
    /// `CHAINS · repeats` accumulated products: `[C, M, N]` in `lhs`'s dtype.
    #[fusion(dtype = lhs, shape = cubes)]
    fn cube_tile_products(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, cubes: FloatTensor<Self>, repeats: usize) -> FloatTensor<Self>;
}

/// The pair's product, expanded to `planes`' shape, composed of `B`'s operations.
fn composed<B: Backend>(lhs: FloatTensor<B>, rhs: FloatTensor<B>, planes: FloatTensor<B>) -> FloatTensor<B> {
    let (m, n) = (lhs.shape()[0], rhs.shape()[1]);
    let product = B::float_reshape(B::float_matmul(lhs, rhs), Shape::new([1, m, n]));
    B::float_expand(product, planes.shape())
}

impl TileProductOps for burn::backend::Flex {
    fn tile_products(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, planes: FloatTensor<Self>, _repeats: usize) -> FloatTensor<Self> {
        composed::<Self>(lhs, rhs, planes)
    }

    fn cube_tile_products(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, cubes: FloatTensor<Self>, _repeats: usize) -> FloatTensor<Self> {
        composed::<Self>(lhs, rhs, cubes)
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

    fn cube_tile_products(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, cubes: FloatTensor<Self>, repeats: usize) -> FloatTensor<Self> {
        let (m, k, n) = (lhs.meta.shape()[0], lhs.meta.shape()[1], rhs.meta.shape()[1]);
        let client = lhs.client.clone();
        let Some(config) = cube_config(&lhs, ProductShape { m, n, k }) else {
            tracing::warn!("no workgroup-scope cooperative-matrix configuration for {m}x{n}x{k}: burn's product is timed");
            return composed::<Self>(lhs, rhs, cubes);
        };
        tracing::info!("workgroup-scope products of {m}x{n}x{k} with {config:?}");
        let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
        let count = cubes.meta.shape()[0];
        let units = config.units_per_block.unwrap_or(128);
        let out = empty_device_dtype(client.clone(), lhs.device.clone(), cubes.meta.shape().clone(), lhs.dtype);
        let dtype = burn::backend::cubecl::dtype_to_storage_type(lhs.dtype);
        kernel::cube_tile_products_kernel::launch(
            &client,
            CubeCount::new_1d(count as u32),
            CubeDim::new_1d(units),
            lhs.into_tensor_arg(),
            rhs.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            repeats as u32,
            (m, n, k),
            dtype,
        );
        out
    }
}

/// The shape `M × N × K` of a workgroup-scope product `[M, K] · [K, N]`, written `MxNxK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProductShape {
    /// Rows of the left operand and of the product.
    pub m: usize,
    /// Columns of the right operand and of the product.
    pub n: usize,
    /// The depth both operands share.
    pub k: usize,
}

/// Most accumulator elements (`M · N`) [`cube_tensor_core_rate`] stages in f32 through 48 KiB of
/// shared memory.
pub const MAX_ACCUMULATOR: usize = 12 * 1024;

impl std::str::FromStr for ProductShape {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let sizes: Vec<usize> = s.split('x').map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0)).collect::<Option<_>>().ok_or_else(|| format!("`{s}`: expected MxNxK of positive integers, like 64x128x32"))?;
        let [m, n, k] = sizes[..] else { return Err(format!("`{s}`: expected three sizes MxNxK, found {}", sizes.len())) };
        Ok(Self { m, n, k })
    }
}

/// One line of `trainer bench tensor-cores`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RateReport<'a> {
    /// `subgroup` (`16 × 16 × 16` tiles per plane) or `workgroup` (one product per cube).
    pub scope: &'a str,
    /// The product's shape.
    pub shape: ProductShape,
    /// Multiply-adds × 2 per second, in TFLOP/s.
    pub tflops: f64,
    /// Largest relative difference of the products from burn's product of the pair.
    pub max_rel_diff: f64,
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
    let shape = ProductShape { m: TILE, n: TILE, k: TILE };
    measure_rate(device, dtype, shape, planes, repeats, |lhs, rhs, slots| Dispatch::tile_products(lhs, rhs, slots, repeats))
}

/// The device's workgroup-scope cooperative-matrix configuration for products of `shape` in
/// `t`'s dtype accumulated in f32: of those whose granularities tile the shape, the one with the
/// most units per cube.
pub(crate) fn cube_config(t: &CubeTensor, shape: ProductShape) -> Option<CubeMmaConfig> {
    let elem = burn::backend::cubecl::dtype_to_storage_type(t.dtype);
    let fits = |granularity: u32, max: u32, d: usize| d.is_multiple_of(granularity as usize) && d <= max as usize;
    let configs = &t.client.properties().features.matmul.cube_mma;
    configs
        .iter()
        .filter(|c| c.a_type == elem && c.b_type == elem && c.cd_type == ElemType::Float(FloatKind::F32))
        .filter(|c| fits(c.m_granularity, c.m_max, shape.m) && fits(c.n_granularity, c.n_max, shape.n) && fits(c.k_granularity, c.k_max, shape.k))
        .max_by_key(|c| c.units_per_block.unwrap_or(0))
        .copied()
}

/// The rate of `[M, K] · [K, N]` products of `shape` in `dtype` accumulated in f32 through
/// workgroup-scope cooperative matrices (`VK_NV_cooperative_matrix2`, the device's
/// configuration with the most units per cube that tiles the shape), over `cubes` cubes each
/// running `repeats` rounds of [`CHAINS`] products; `None` on the CPU. Where the device has no
/// such configuration the products are composed of burn's operations, as in
/// [`tensor_core_rate`].
pub fn cube_tensor_core_rate(device: &Device, dtype: DType, shape: ProductShape, cubes: usize, repeats: usize) -> Result<Option<TileProductRate>> {
    if shape.m * shape.n > MAX_ACCUMULATOR {
        return Err(Error::InvalidArgument(format!("a workgroup-scope product of {}x{}x{}: M · N is {}, more than the {MAX_ACCUMULATOR} accumulator elements staged in shared memory", shape.m, shape.n, shape.k, shape.m * shape.n)));
    }
    measure_rate(device, dtype, shape, cubes, repeats, |lhs, rhs, slots| Dispatch::cube_tile_products(lhs, rhs, slots, repeats))
}

/// Times `launch(lhs, rhs, slots)` (each of `slots`' `count` entries the mean of `repeats` rounds
/// of [`CHAINS`] products `lhs [M, K] · rhs [K, N]`) and checks its result against burn's product.
fn measure_rate(device: &Device, dtype: DType, shape: ProductShape, count: usize, repeats: usize, launch: impl Fn(FloatTensor<Dispatch>, FloatTensor<Dispatch>, FloatTensor<Dispatch>) -> FloatTensor<Dispatch>) -> Result<Option<TileProductRate>> {
    if on_cpu(device) {
        return Ok(None);
    }
    let ProductShape { m, n, k } = shape;
    // Entries that are multiples of 1/4 below 1.25: with `K` at most 64 every partial sum, and
    // the mean, are exact in f32 and in f16.
    let operand = |rows: usize, cols: usize, salt: usize| {
        let entries: Vec<f32> = (0..rows * cols).map(|i| ((i * (7 + salt)) % 5) as f32 / 4.0).collect();
        Tensor::<2>::from_data(TensorData::new(entries, [rows, cols]), (device, DType::F32)).cast(dtype)
    };
    let (lhs, rhs) = (operand(m, k, 0), operand(k, n, 3));
    let slots = Tensor::<3>::zeros([count, m, n], (device, dtype));
    let run = || Tensor::<3>::from_dispatch(launch(lhs.clone().into_dispatch(), rhs.clone().into_dispatch(), slots.clone().into_dispatch()));
    let (secs, products) = time_launches(device, 4, run)?;
    let max_rel_diff = max_relative_difference(products.cast(DType::F32), lhs.matmul(rhs).cast(DType::F32).reshape([1, m, n]));
    let flops = 2.0 * (count * repeats * CHAINS) as f64 * (m * n * k) as f64;
    Ok(Some(TileProductRate { tflops: flops / secs / 1e12, max_rel_diff }))
}

/// Seconds per call of `run` (which queues device work) over `rounds` calls after one untimed
/// call, each timing ended by a device synchronisation, and the last call's result.
pub(crate) fn time_launches<T>(device: &Device, rounds: usize, run: impl Fn() -> T) -> Result<(f64, T)> {
    let mut last = run();
    sync(device, "a benchmark's warm-up")?;
    let start = Instant::now();
    for _ in 0..rounds.max(1) {
        last = run();
    }
    sync(device, "a benchmark's timed launches")?;
    Ok((start.elapsed().as_secs_f64() / rounds.max(1) as f64, last))
}

/// The largest difference of `got` from `want` (same shape, f32) relative to `want`'s largest
/// magnitude.
pub(crate) fn max_relative_difference<const D: usize>(got: Tensor<D>, want: Tensor<D>) -> f64 {
    let diff = (got - want.clone()).abs().max().into_scalar::<f32>();
    let scale = want.abs().max().into_scalar::<f32>().max(f32::MIN_POSITIVE);
    f64::from(diff / scale)
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

    /// Cube `c` loads `lhs [M, K]` and `rhs [K, N]` as workgroup-scope matrices, accumulates
    /// their product `repeats` times in each of [`CHAINS`] f32 accumulators, and writes the
    /// accumulators' mean to `out[c]`.
    #[cube(launch)]
    pub(super) fn cube_tile_products_kernel<F: Float>(
        lhs: &Tensor<F>,
        rhs: &Tensor<F>,
        out: &mut Tensor<F>,
        repeats: u32,
        #[comptime] size: (usize, usize, usize),
        #[define(F)] _dtype: ElemType,
    ) {
        let (m, n, k) = size;
        let a = cmma::Matrix::<F, cmma::Cube>::from_slice(cmma::MatrixIdent::A, m, n, k, cmma::MatrixLayout::RowMajor, lhs.slice(0, m * k), k as u32);
        let b = cmma::Matrix::<F, cmma::Cube>::from_slice(cmma::MatrixIdent::B, m, n, k, cmma::MatrixLayout::RowMajor, rhs.slice(0, k * n), n as u32);
        let mut sums = Sequence::<cmma::Matrix<f32, cmma::Cube>>::new();
        #[unroll]
        for _ in 0..CHAINS {
            sums.push(cmma::Matrix::<f32, cmma::Cube>::from_value(cmma::MatrixIdent::Accumulator, m, n, k, cmma::MatrixLayout::Undefined, 0.0));
        }
        for _ in 0..repeats {
            #[unroll]
            for c in 0..CHAINS {
                let sum = sums.index(c);
                cmma::execute::<F, F, f32, f32, cmma::Cube>(&a, &b, sum, sum);
            }
        }
        // Each chain's sums through shared memory (`M · N · 4` bytes), added to `out[c]`.
        let scale = 1.0 / (f32::cast_from(repeats) * comptime!(CHAINS as f32));
        let mut staged = Shared::<[f32]>::new_slice(comptime!(m * n));
        let base = CUBE_POS_X as usize * m * n;
        for i in range_stepped(UNIT_POS_X as usize, m * n, CUBE_DIM_X as usize) {
            out[base + i] = F::new(0.0);
        }
        #[unroll]
        for c in 0..CHAINS {
            cmma::store(staged.slice_mut(0, m * n), sums.index(c), n as u32, cmma::MatrixLayout::RowMajor);
            sync_cube();
            for i in range_stepped(UNIT_POS_X as usize, m * n, CUBE_DIM_X as usize) {
                out[base + i] += F::cast_from(staged[i] * scale);
            }
            sync_cube();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_shapes_parse_from_m_x_n_x_k() {
        assert_eq!("64x128x32".parse::<ProductShape>(), Ok(ProductShape { m: 64, n: 128, k: 32 }));
        for bad in ["64x128", "64x128x32x4", "64xax32", "0x16x16", ""] {
            let err = bad.parse::<ProductShape>().unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn the_cpu_reports_no_tensor_core_rate() {
        assert!(tensor_core_rate(&Device::flex(), DType::F32, 8, 4).unwrap().is_none());
        assert!(cube_tensor_core_rate(&Device::flex(), DType::F32, ProductShape { m: 32, n: 64, k: 16 }, 8, 4).unwrap().is_none());
        let too_wide = cube_tensor_core_rate(&Device::flex(), DType::F32, ProductShape { m: 128, n: 128, k: 16 }, 8, 4).unwrap_err().to_string();
        assert!(too_wide.contains("128x128x16") && too_wide.contains("16384"), "{too_wide}");
    }

    #[test]
    fn the_composed_cube_products_are_the_pair_s_product_for_every_cube() {
        let device = Device::flex();
        let (m, n, k) = (32, 48, 16);
        let lhs: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let rhs: Vec<f32> = (0..k * n).map(|i| (i % 4) as f32 * 0.5).collect();
        let slots = Tensor::<3>::zeros([2, m, n], &device);
        let (l, r) = (Tensor::<2>::from_data(TensorData::new(lhs.clone(), [m, k]), &device), Tensor::<2>::from_data(TensorData::new(rhs.clone(), [k, n]), &device));
        let got = Tensor::<3>::from_dispatch(Dispatch::cube_tile_products(l.into_dispatch(), r.into_dispatch(), slots.into_dispatch(), 5));
        assert_eq!(got.dims(), [2, m, n]);
        let got: Vec<f32> = got.into_data().iter::<f32>().collect();
        for c in 0..2 {
            for row in 0..m {
                for col in 0..n {
                    let want: f64 = (0..k).map(|j| f64::from(lhs[row * k + j]) * f64::from(rhs[j * n + col])).sum();
                    assert_eq!(f64::from(got[(c * m + row) * n + col]), want, "cube {c} [{row}, {col}]");
                }
            }
        }
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
