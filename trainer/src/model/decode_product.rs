//! The matrix product of a decode step: a few rows `x [M, K]` times a weight kept in checkpoint
//! layout `w [N, K]`, as one CubeCL kernel.
//!
//! burn's stock products (cubek's tensor-core kernels) tile the output in blocks made for large
//! problems; with 64 rows they took 0.1–0.3 ms of GPU time per product on an H200, 10–50× the
//! time to read the weight once (docs/performance.md). Here every plane (warp) of a cube computes
//! [`ROWS`] rows × [`COLS`] columns of the output: its lanes walk `K` together in wide vector
//! loads, each weight vector read once and used for all its rows, and a plane sum ends each dot
//! product. Accumulation is in f32. Planes that share columns sit in the same cube, so the rows'
//! groups read the same weight vectors from cache.
//!
//! On backends other than CubeCL (the CPU's flex) the product is burn's `matmul`. The kernel is
//! checked against burn's `matmul` on the device by `trainer bench kernels` (relative difference
//! at most 5·10⁻⁴ in f16 on an H200, docs/performance.md); it is off by default
//! ([`CausalLm::decode_kernel`](crate::model::CausalLm::decode_kernel)).

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::decode_product_kernel;

/// Output rows per plane.
pub const ROWS: usize = 8;
/// Output columns per plane.
pub const COLS: usize = 4;
/// Planes per cube.
const PLANES: u32 = 8;
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
        launch(x, w)
    }
}

/// `x [M, K] · w [N, K]ᵀ` with the kernel ([`MAX_ROWS`] rows at most are worth it; any work).
///
/// Both operands must be without autodiff (the kernel has no backward pass).
pub fn decode_product(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::decode_product(x.into_dispatch(), w.into_dispatch()))
}

/// The widest vector (4, 2 or 1 elements) that divides `k`. (Eight-element vectors are split
/// into two by CubeCL's SPIR-V compilation, whose split does not support their horizontal sum.)
fn vector_size(k: usize) -> usize {
    [4, 2].into_iter().find(|&v| k.is_multiple_of(v)).unwrap_or(1)
}

fn launch(x: CubeTensor, w: CubeTensor) -> CubeTensor {
    let x = if x.is_contiguous() { x } else { into_contiguous(x) };
    let w = if w.is_contiguous() { w } else { into_contiguous(w) };
    let w = if w.dtype == x.dtype { w } else { burn_cubecl::kernel::cast(w, x.dtype) };
    let [m, k] = x.meta.shape().dims();
    let n = w.meta.shape()[0];
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([m, n]), x.dtype);
    if m == 0 || n == 0 {
        return out;
    }
    let client = x.client.clone();
    let plane = client.properties().hardware.plane_size_max.max(1);
    let items = m.div_ceil(ROWS) * n.div_ceil(COLS);
    let cubes = items.div_ceil(PLANES as usize) as u32;
    let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
    decode_product_kernel::launch(
        &client,
        CubeCount::new_1d(cubes),
        CubeDim::new_2d(plane, PLANES),
        AddressType::U32.max(x.required_address_type()).max(w.required_address_type()).max(out.required_address_type()),
        vector_size(k),
        x.into_tensor_arg(),
        w.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        ROWS,
        COLS,
        dtype,
    );
    out
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    /// One plane computes rows `row0..row0+rows` × columns `col0..col0+cols` of `out [M, N]` from
    /// `x [M, K]` and `w [N, K]` (both contiguous, read in vectors of `N` elements).
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn decode_product_kernel<F: Float, V: Size>(
        x: &Tensor<Vector<F, V>>,
        w: &Tensor<Vector<F, V>>,
        out: &mut Tensor<F>,
        #[comptime] rows: usize,
        #[comptime] cols: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let m = out.shape(0);
        let n = out.shape(1);
        let width = x.vector_size();
        let k_vectors = x.shape(1) / width;
        let row_groups = m.div_ceil(rows);
        let item = CUBE_POS * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
        let col0 = (item / row_groups) * cols;
        let row0 = (item % row_groups) * rows;
        if col0 >= n {
            terminate!();
        }
        let mut acc = Array::<f32>::new(rows * cols);
        #[unroll]
        for i in 0..rows * cols {
            acc[i] = 0.0;
        }
        let mut weights = Array::<Vector<f32, V>>::new(cols);
        for kv in range_stepped(UNIT_POS_X as usize, k_vectors, PLANE_DIM as usize) {
            #[unroll]
            for c in 0..cols {
                let col = select(col0 + c < n, col0 + c, n - 1);
                weights[c] = Vector::cast_from(w[col * k_vectors + kv]);
            }
            #[unroll]
            for r in 0..rows {
                let row = select(row0 + r < m, row0 + r, m - 1);
                let xv = Vector::<f32, V>::cast_from(x[row * k_vectors + kv]);
                #[unroll]
                for c in 0..cols {
                    acc[r * cols + c] += Vector::vector_sum(xv * weights[c]);
                }
            }
        }
        #[unroll]
        for r in 0..rows {
            #[unroll]
            for c in 0..cols {
                let total = plane_sum(acc[r * cols + c]);
                if UNIT_POS_X == 0 && row0 + r < m && col0 + c < n {
                    out[(row0 + r) * n + col0 + c] = F::cast_from(total);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device, Tensor, TensorData};

    use super::*;

    #[test]
    fn vectors_are_the_widest_of_four_two_or_one_elements_that_divide_k() {
        assert_eq!([vector_size(1536), vector_size(1542), vector_size(13), vector_size(8)], [4, 2, 1, 4]);
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
