//! The matrix product of a decode step: a few rows `x [M, K]` times a weight kept in checkpoint
//! layout `w [N, K]`, as one CubeCL kernel on tensor cores.
//!
//! burn's stock products (cubek's tensor-core kernels) tile the output in blocks made for large
//! problems; with 64 rows they took 0.1–0.3 ms of GPU time per product on an H200, 10–50× the
//! time to read the weight once, because a few cubes each walk all of `K` in sequence
//! (docs/performance.md). An earlier version of this kernel without tensor cores was bound by
//! instructions instead: at 64 rows a product does 64 multiply-adds per weight element read.
//!
//! Here every cube owns one strip of [`TILE`] output columns and all `M` rows, and its planes
//! (warps) split `K` between them: each plane multiplies `16 × 16` tiles of `x` and of the weight
//! with cooperative-matrix instructions (tensor cores), accumulating in f32, and the planes' sums
//! meet in shared memory. So a product has `N / 16` cubes of up to [`PLANES`] planes, and every
//! weight element is read once.
//!
//! It runs where the device has `16 × 16 × 16` cooperative matrices of the dtype with f32
//! accumulation and `M`, `N` and `K` are multiples of 16 (`M` at most [`MAX_ROWS`]); any other
//! product, and every product on backends other than CubeCL (the CPU's flex), is burn's `matmul`.
//! The kernel is checked against burn's `matmul` on the device by `trainer bench kernels`; it is
//! on by default on GPU backends ([`CausalLm::decode_kernel`](crate::model::CausalLm::decode_kernel)).

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::MmaConfig;
use cubecl::ir::{AddressType, ElemType, FloatKind};
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::decode_product_kernel;

/// Rows, columns and depth of one cooperative-matrix tile.
pub const TILE: usize = 16;
/// Most planes per cube (each takes every `PLANES`-th tile of `K`).
pub const PLANES: usize = 8;
/// Most rows [`CausalLm`](crate::model::CausalLm) sends through this kernel (a decode step's
/// batch); larger products go to burn's `linear`.
pub const MAX_ROWS: usize = 64;

/// The shape of `x [M, K] · w [N, K]ᵀ`.
fn product_shape(x: &Shape, w: &Shape) -> Shape {
    Shape::new([x[0], w[0]])
}

/// `x [M, K] · w [N, K]ᵀ → [M, N]`, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait DecodeProductOps: Backend {
    /// `x [M, K] · w [N, K]ᵀ → [M, N]` in `x`'s dtype.
    #[fusion(dtype = x, shape = product_shape(x, w))]
    fn decode_product(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl DecodeProductOps for burn::backend::Flex {
    fn decode_product(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, Self::float_transpose(w))
    }
}

impl DecodeProductOps for CubeBackend {
    fn decode_product(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        if runs_on_tensor_cores(&x, &w) { launch(x, w) } else { Self::float_matmul(x, Self::float_transpose(w)) }
    }
}

/// `x [M, K] · w [N, K]ᵀ` with the kernel where it runs (see the module), burn's `matmul`
/// elsewhere.
///
/// Both operands must be without autodiff (the kernel has no backward pass).
pub fn decode_product(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::decode_product(x.into_dispatch(), w.into_dispatch()))
}

/// Whether the shapes tile in `16 × 16` blocks with at most [`MAX_ROWS`] rows.
fn tiles_evenly(m: usize, k: usize, n: usize) -> bool {
    m > 0 && m <= MAX_ROWS && [m, k, n].iter().all(|d| d.is_multiple_of(TILE))
}

/// Planes per cube for `K`: one per 4 tiles of `K` or more, at most [`PLANES`].
fn planes_for(k: usize) -> usize {
    (k / TILE / 4).clamp(1, PLANES)
}

/// Whether `x · wᵀ` can run on the kernel: even tiles, one dtype, and the device's cooperative
/// matrices of that dtype with f32 accumulation.
fn runs_on_tensor_cores(x: &CubeTensor, w: &CubeTensor) -> bool {
    let ([m, k], n) = (x.meta.shape().dims(), w.meta.shape()[0]);
    let elem = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
    let config = MmaConfig { a_type: elem, b_type: elem, cd_type: ElemType::Float(FloatKind::F32), m: TILE as u32, n: TILE as u32, k: TILE as u32 };
    tiles_evenly(m, k, n) && w.dtype == x.dtype && x.client.properties().features.matmul.cmma.contains(&config)
}

fn launch(x: CubeTensor, w: CubeTensor) -> CubeTensor {
    let (x, w) = (into_contiguous(x), into_contiguous(w));
    let [m, k] = x.meta.shape().dims();
    let n = w.meta.shape()[0];
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([m, n]), x.dtype);
    let client = x.client.clone();
    let plane = client.properties().hardware.plane_size_max.max(1);
    let planes = planes_for(k);
    let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
    decode_product_kernel::launch(
        &client,
        CubeCount::new_1d((n / TILE) as u32),
        CubeDim::new_2d(plane, planes as u32),
        AddressType::U32.max(x.required_address_type()).max(w.required_address_type()).max(out.required_address_type()),
        x.into_tensor_arg(),
        w.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        m / TILE,
        planes,
        dtype,
    );
    out
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    use super::TILE;

    /// Cube `c` computes columns `16c..16c+16` of `out [M, N]` for all `M = 16 · row_tiles` rows
    /// from `x [M, K]` and `w [N, K]` (both contiguous, `K` and `N` multiples of 16): plane `p`
    /// multiplies the tiles `p, p + planes, …` of `K`, and the planes' f32 sums are added in shared
    /// memory.
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn decode_product_kernel<F: Float>(
        x: &Tensor<F>,
        w: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] row_tiles: usize,
        #[comptime] planes: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let k = x.shape(1);
        let n = out.shape(1);
        let col0 = CUBE_POS_X as usize * TILE;
        let plane = UNIT_POS_Y as usize;
        let mut sums = Sequence::<cmma::Matrix<f32>>::new();
        #[unroll]
        for _ in 0..row_tiles {
            sums.push(cmma::Matrix::<f32>::from_value(cmma::MatrixIdent::Accumulator, TILE, TILE, TILE, cmma::MatrixLayout::Undefined, 0.0));
        }
        let mut a = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::A, TILE, TILE, TILE, cmma::MatrixLayout::RowMajor, F::from_int(0));
        let mut b = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::B, TILE, TILE, TILE, cmma::MatrixLayout::ColMajor, F::from_int(0));
        let span = (TILE - 1) * k + TILE;
        for t in range_stepped(plane, k / TILE, planes) {
            let k0 = t * TILE;
            // The weight's tile (k0.., col0..) as a column-major [K, N] block: column j is row
            // col0 + j of w.
            let start = col0 * k + k0;
            cmma::load(&mut b, w.slice(start, start + span), k as u32);
            #[unroll]
            for r in 0..row_tiles {
                let start = r * TILE * k + k0;
                cmma::load(&mut a, x.slice(start, start + span), k as u32);
                let sum = sums.index(r);
                cmma::execute::<F, F, f32, f32, cmma::Plane>(&a, &b, sum, sum);
            }
        }
        let block = row_tiles * TILE * TILE;
        let mut partial = Shared::<[f32]>::new_slice(planes * block);
        #[unroll]
        for r in 0..row_tiles {
            let start = plane * block + r * TILE * TILE;
            cmma::store(partial.slice_mut(start, start + TILE * TILE), sums.index(r), TILE as u32, cmma::MatrixLayout::RowMajor);
        }
        sync_cube();
        for i in range_stepped(UNIT_POS as usize, block, planes * PLANE_DIM as usize) {
            let mut total = 0.0f32;
            #[unroll]
            for p in 0..planes {
                total += partial[p * block + i];
            }
            // i = (row tile, row in tile, column in tile)
            let row = i / TILE;
            out[row * n + col0 + i % TILE] = F::cast_from(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device, Tensor, TensorData};

    use super::*;

    #[test]
    fn only_shapes_of_whole_tiles_with_at_most_64_rows_take_the_kernel() {
        assert!(tiles_evenly(64, 1536, 256) && tiles_evenly(16, 8960, 151_936));
        assert!(!tiles_evenly(0, 16, 16), "no rows");
        assert!(!tiles_evenly(80, 16, 16), "more rows than a decode step");
        assert!(!tiles_evenly(64, 1542, 256) && !tiles_evenly(64, 1536, 257) && !tiles_evenly(8, 1536, 256), "a dimension off the tile");
    }

    #[test]
    fn planes_take_at_least_four_tiles_of_k_each_and_at_most_eight_planes_a_cube() {
        assert_eq!([planes_for(16), planes_for(128), planes_for(256), planes_for(1536), planes_for(8960)], [1, 2, 4, 8, 8]);
    }
    #[test]
    fn the_product_matches_a_float64_recomputation() {
        let (m, k, n) = (5, 13, 7);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 17) as f32 - 8.0) / 5.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7 % 23) as f32 - 11.0) / 9.0).collect();
        let device = Device::flex();
        let tensor = |v: &[f32], shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), shape), &device);
        let got: Vec<f32> = decode_product(tensor(&x, [m, k]), tensor(&w, [n, k])).cast(DType::F32).into_data().iter::<f32>().collect();
        assert_eq!(got.len(), m * n);
        for r in 0..m {
            for c in 0..n {
                let want: f64 = (0..k).map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i])).sum();
                let g = f64::from(got[r * n + c]);
                assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "[{r}, {c}]: {g} against {want}");
            }
        }
    }
}
