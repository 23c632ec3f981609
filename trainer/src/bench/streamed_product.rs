//! A decode-shaped product `x [M, K] · w [N, K]ᵀ` streamed through workgroup-scope cooperative
//! matrices (`VK_NV_cooperative_matrix2`, CubeCL's `cmma::Cube`): a candidate for the decode
//! products ([`crate::model::decode_product`]), measured by `trainer bench tensor-cores
//! --streamed`.
//!
//! Cube `(c, s)` owns output columns `c · BN ..` (`BN` of them) of all `M` rows over split `s`
//! of `K`: it loads `x`'s rows and the weight's `BN` rows `BK` columns of `K` at a time straight
//! from global memory into workgroup-scope matrices (the driver lays them out across the cube's
//! planes and stages them as it chooses), multiplies them into one f32 accumulator, and stores
//! the accumulator into its split's slice of `partials [S, M, N]`, which burn's operations add.
//! No shared memory of its own, no barrier: whether the driver streams the weight near the copy
//! bandwidth this way is what the measurement says. On backends other than CubeCL, and devices
//! without such matrices, the partials are composed of burn's operations (the product in split
//! 0, zeros elsewhere).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::{CubeCount, CubeDim};

use crate::error::{Error, Result};
use crate::model::transformer::on_cpu;

use super::tensor_cores::{ProductShape, cube_config, max_relative_difference, time_launches};
use kernel::streamed_product_kernel;

/// Streaming multiprocessors [`splits_for`] fills (an H100's or H200's 132).
pub const SMS: usize = 132;

/// Streamed products, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait StreamedProductOps: Backend {
    /// The partial products `[S, M, N]` (f32, `partials`' dtype and shape; its values are not
    /// read) of `x [M, K] · w [N, K]ᵀ` over `S` equal splits of `K`, each cube multiplying
    /// `[M, BK] · [BK, BN]` products (`block`: `M × BN × BK`).
    #[fusion(dtype = partials, shape = partials)]
    fn streamed_product(x: FloatTensor<Self>, w: FloatTensor<Self>, partials: FloatTensor<Self>, block: ProductShape) -> FloatTensor<Self>;
}

/// The whole product in split 0 and zeros in the others, composed of `B`'s operations.
fn composed<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>, partials: FloatTensor<B>) -> FloatTensor<B> {
    let shape = partials.shape();
    let device = partials.device();
    let product = B::float_cast(B::float_matmul(x, B::float_transpose(w)), DType::F32.into());
    let first = B::float_reshape(product, Shape::new([1, shape[1], shape[2]]));
    if shape[0] == 1 {
        return first;
    }
    let rest = B::float_zeros(Shape::new([shape[0] - 1, shape[1], shape[2]]), &device, DType::F32.into());
    B::float_cat(vec![first, rest], 0)
}

impl StreamedProductOps for burn::backend::Flex {
    fn streamed_product(x: FloatTensor<Self>, w: FloatTensor<Self>, partials: FloatTensor<Self>, _block: ProductShape) -> FloatTensor<Self> {
        composed::<Self>(x, w, partials)
    }
}

impl StreamedProductOps for CubeBackend {
    fn streamed_product(x: FloatTensor<Self>, w: FloatTensor<Self>, partials: FloatTensor<Self>, block: ProductShape) -> FloatTensor<Self> {
        let Some(config) = cube_config(&x, block) else {
            tracing::warn!("no workgroup-scope cooperative-matrix configuration for {block:?}: burn's product is timed");
            return composed::<Self>(x, w, partials);
        };
        let (x, w) = (into_contiguous(x), into_contiguous(w));
        let shape = partials.meta.shape().clone();
        let (splits, n) = (shape[0], shape[2]);
        let k = x.meta.shape()[1];
        let client = x.client.clone();
        let out = empty_device_dtype(client.clone(), x.device.clone(), shape, DType::F32);
        let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
        streamed_product_kernel::launch(
            &client,
            CubeCount::new_2d((n / block.n) as u32, splits as u32),
            CubeDim::new_1d(config.units_per_block.unwrap_or(128)),
            x.into_tensor_arg(),
            w.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            (block.m, block.n, block.k),
            k / block.k / splits,
            dtype,
        );
        out
    }
}

/// What [`streamed_product_rate`] measured.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StreamedRate {
    /// The product (`M × N × K`).
    pub shape: ProductShape,
    /// Each cube's block (`M × BN × BK`).
    pub block: ProductShape,
    /// Splits of `K` (cubes per column block).
    pub splits: usize,
    /// Microseconds per product (the kernel alone; the partials' sum is not timed).
    pub us: f64,
    /// The weight's bytes read per second, GB/s.
    pub weight_gbps: f64,
    /// Multiply-adds × 2 per second, TFLOP/s.
    pub tflops: f64,
    /// Largest relative difference of the summed partials from burn's product.
    pub max_rel_diff: f64,
}

/// The splits of `K` (`k_steps` steps of the block's depth) that give at least `2 · sms` cubes
/// over `column_blocks` column blocks: the fewest such divisor of `k_steps`, or all of them.
pub fn splits_for(column_blocks: usize, k_steps: usize, sms: usize) -> usize {
    (1..=k_steps).find(|s| k_steps.is_multiple_of(*s) && column_blocks * s >= 2 * sms).unwrap_or(k_steps)
}

/// Times `x [M, K] · w [N, K]ᵀ` (`shape`: `M × N × K`, random f16/bf16 inputs of `dtype`)
/// streamed through workgroup-scope matrices with cubes of `block` (`M × BN × BK`) on a device
/// of `sms` SMs, and checks it against burn's product; `None` on the CPU.
pub fn streamed_product_rate(device: &Device, dtype: DType, shape: ProductShape, block: ProductShape, sms: usize, iterations: usize) -> Result<Option<StreamedRate>> {
    let ProductShape { m, n, k } = shape;
    if block.m != m || !n.is_multiple_of(block.n) || !k.is_multiple_of(block.k) {
        return Err(Error::InvalidArgument(format!("a streamed product of {m}x{n}x{k} needs blocks of {m} rows whose columns and depth divide it; found {}x{}x{}", block.m, block.n, block.k)));
    }
    if on_cpu(device) {
        return Ok(None);
    }
    let splits = splits_for(n / block.n, k / block.k, sms);
    let values = |len: usize, salt: usize| -> Vec<f32> { (0..len).map(|i| (((i * (31 + salt)) % 17) as f32 - 8.0) / 64.0).collect() };
    let x = Tensor::<2>::from_data(TensorData::new(values(m * k, 0), [m, k]), (device, DType::F32)).cast(dtype);
    let w = Tensor::<2>::from_data(TensorData::new(values(n * k, 5), [n, k]), (device, DType::F32)).cast(dtype);
    let slots = Tensor::<3>::zeros([splits, m, n], (device, DType::F32));
    let run = || Tensor::<3>::from_dispatch(Dispatch::streamed_product(x.clone().into_dispatch(), w.clone().into_dispatch(), slots.clone().into_dispatch(), block));
    let (secs, partials) = time_launches(device, iterations, run)?;
    let want = x.cast(DType::F32).matmul(w.cast(DType::F32).transpose());
    let max_rel_diff = max_relative_difference(partials.sum_dim(0).reshape([m, n]), want);
    let weight_bytes = (n * k * dtype.size()) as f64;
    Ok(Some(StreamedRate { shape, block, splits, us: 1e6 * secs, weight_gbps: weight_bytes / secs / 1e9, tflops: 2.0 * (m * n * k) as f64 / secs / 1e12, max_rel_diff }))
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    /// Cube `(c, s)` adds `x [M, K] · w [N, K]ᵀ` over `steps` steps of `BK` columns of `K` from
    /// `s · steps · BK`, for columns `c · BN ..` of all `M` rows (`block`: `(M, BN, BK)`), into
    /// `partials[s]` (`[S, M, N]`, f32).
    #[cube(launch)]
    pub(super) fn streamed_product_kernel<F: Float>(
        x: &Tensor<F>,
        w: &Tensor<F>,
        partials: &mut Tensor<f32>,
        #[comptime] block: (usize, usize, usize),
        #[comptime] steps: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let (m, bn, bk) = block;
        let k = x.shape(1);
        let n = partials.shape(2);
        let col0 = CUBE_POS_X as usize * bn;
        let first = CUBE_POS_Y as usize * steps * bk;
        let sum = cmma::Matrix::<f32, cmma::Cube>::from_value(cmma::MatrixIdent::Accumulator, m, bn, bk, cmma::MatrixLayout::Undefined, 0.0);
        let mut rows = cmma::Matrix::<F, cmma::Cube>::from_value(cmma::MatrixIdent::A, m, bn, bk, cmma::MatrixLayout::RowMajor, F::from_int(0));
        // `B [BK, BN]` is the weight's block read column by column: column `j` is row
        // `col0 + j` of `w`, `K` apart.
        let mut weight = cmma::Matrix::<F, cmma::Cube>::from_value(cmma::MatrixIdent::B, m, bn, bk, cmma::MatrixLayout::ColMajor, F::from_int(0));
        let span_x = (m - 1) * k + bk;
        let span_w = (bn - 1) * k + bk;
        for step in 0..steps {
            let k0 = first + step * bk;
            cmma::load(&mut rows, x.slice(k0, k0 + span_x), k as u32);
            let at = col0 * k + k0;
            cmma::load(&mut weight, w.slice(at, at + span_w), k as u32);
            cmma::execute::<F, F, f32, f32, cmma::Cube>(&rows, &weight, &sum, &sum);
        }
        let at = CUBE_POS_Y as usize * m * n + col0;
        cmma::store(partials.slice_mut(at, at + (m - 1) * n + bn), &sum, n as u32, cmma::MatrixLayout::RowMajor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_give_two_cubes_per_sm_where_k_allows() {
        // 1536 → 2048 at 128 columns: 16 blocks; K = 1536 in 48 steps of 32 → 24 splits (384 cubes).
        assert_eq!(splits_for(16, 48, 132), 24);
        // 17,920 columns: 140 blocks already fill 2 per SM at 2 splits.
        assert_eq!(splits_for(140, 48, 132), 2);
        // Too few steps of K: every step its own split.
        assert_eq!(splits_for(1, 4, 132), 4);
    }

    #[test]
    fn the_composed_partials_hold_the_product_in_the_first_split() {
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new((0..6).map(|i| i as f32).collect::<Vec<_>>(), [2, 3]), &device);
        let w = Tensor::<2>::from_data(TensorData::new((0..12).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>(), [4, 3]), &device);
        let slots = Tensor::<3>::zeros([3, 2, 4], &device);
        let block = ProductShape { m: 2, n: 4, k: 3 };
        let got = Tensor::<3>::from_dispatch(Dispatch::streamed_product(x.clone().into_dispatch(), w.clone().into_dispatch(), slots.into_dispatch(), block));
        assert_eq!(got.dims(), [3, 2, 4]);
        let got: Vec<f32> = got.into_data().iter::<f32>().collect();
        let (xs, ws): (Vec<f32>, Vec<f32>) = (x.into_data().iter::<f32>().collect(), w.into_data().iter::<f32>().collect());
        for r in 0..2 {
            for c in 0..4 {
                let want: f32 = (0..3).map(|j| xs[r * 3 + j] * ws[c * 3 + j]).sum();
                assert_eq!(got[r * 4 + c], want, "[{r}, {c}]");
            }
        }
        assert!(got[8..].iter().all(|&v| v == 0.0), "the other splits are zeros");
    }

    #[test]
    fn the_cpu_reports_no_streamed_rate() {
        let shape = ProductShape { m: 64, n: 256, k: 128 };
        assert!(streamed_product_rate(&Device::flex(), DType::F32, shape, ProductShape { m: 64, n: 128, k: 32 }, 132, 1).unwrap().is_none());
    }

    #[test]
    fn a_block_that_does_not_tile_the_product_is_refused() {
        let shape = ProductShape { m: 64, n: 256, k: 128 };
        for block in [ProductShape { m: 32, n: 128, k: 32 }, ProductShape { m: 64, n: 96, k: 32 }, ProductShape { m: 64, n: 128, k: 48 }] {
            let err = streamed_product_rate(&Device::flex(), DType::F32, shape, block, 132, 1).unwrap_err().to_string();
            assert!(err.contains("64x256x128") && err.contains(&format!("{}x{}x{}", block.m, block.n, block.k)), "{err}");
        }
    }
}
