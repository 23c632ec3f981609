//! The matrix products of a decode step: a few rows `x [M, K]` times a weight kept in checkpoint
//! layout `w [N, K]`, as one CubeCL kernel on tensor cores, with the bias add or the MLP's gating
//! done in the same launch.
//!
//! burn's stock products (cubek's tensor-core kernels) tile the output in blocks made for large
//! problems; with 64 rows they took 0.1–0.3 ms of GPU time per product on an H200, 10–50× the
//! time to read the weight once, because a few cubes each walk all of `K` in sequence
//! (docs/performance.md). An earlier version of this kernel without tensor cores was bound by
//! instructions instead: at 64 rows a product does 64 multiply-adds per weight element read.
//!
//! Here every cube owns one strip of [`TILE`] output columns and `16 · row_tiles` rows (all `M`
//! where they fit, see [`Layout`]), and its planes (warps) split `K` between them: each plane
//! loads the `16 × 16` tiles of `x` and of the weight it needs next with 16-byte vector loads
//! into registers while it multiplies the current ones, staged in its own part of shared memory,
//! with cooperative-matrix instructions (tensor cores), accumulating in f32; the planes' sums then
//! meet in shared memory. The first version of this kernel loaded its tiles with
//! cooperative-matrix loads straight from global memory: on an H200 each plane took 3–5 µs per
//! tile of `K`, whatever the planes per cube or the loads in flight (docs/performance.md).
//!
//! Two forms share the kernel:
//! - [`decode_product`]: `x · wᵀ`, with an optional bias `[N]` and an optional residual `[M, N]`
//!   added in f32 before the one rounding to the dtype (linear maps with a bias, `down_proj` with
//!   a steering vector, and the residual stream added to `o_proj`'s and `down_proj`'s output);
//! - [`decode_gated_product`]: `silu(x · gateᵀ) ⊙ (x · upᵀ)`, the MLP's first half in one launch
//!   instead of three (two products and the gating): each cube reads the same strip of both
//!   weights.
//!
//! It runs where the device has `16 × 16 × 16` cooperative matrices of the dtype with f32
//! accumulation and `M`, `N` and `K` are multiples of 16 (`M` at most [`MAX_ROWS`]); any other
//! product, and every product on backends other than CubeCL (the CPU's flex), is composed of
//! burn's operations. The kernel is checked against burn's `matmul` on the device by
//! `trainer bench kernels`; it is on by default on GPU backends
//! ([`CausalLm::decode_kernel`](crate::model::CausalLm::decode_kernel)).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
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
/// Most planes per cube (each takes every `PLANES`-th tile of `K`); a power of two.
pub const PLANES: usize = 16;
/// Shared memory one cube may use: its planes' staged tiles and their sums (Vulkan guarantees
/// 16 KiB; NVIDIA's GPUs give 48 KiB).
const SHARED_BYTES: usize = 40 * 1024;
/// Bytes of one vector load from global memory (8 elements of 2 bytes).
const VECTOR_BYTES: usize = 16;
/// Most rows [`CausalLm`](crate::model::CausalLm) sends through this kernel (a decode step's
/// batch); larger products go to burn's `linear`.
pub const MAX_ROWS: usize = 64;

/// The shape of `x [M, K] · w [N, K]ᵀ`.
fn product_shape(x: &Shape, w: &Shape) -> Shape {
    Shape::new([x[0], w[0]])
}

/// Decode-step products, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait DecodeProductOps: Backend {
    /// `x [M, K] · w [N, K]ᵀ (+ bias [N]) (+ residual [M, N]) → [M, N]` in `x`'s dtype; `bias`
    /// and `residual` are read only when `has_bias` and `has_residual` say so.
    #[fusion(dtype = x, shape = product_shape(x, w))]
    fn decode_product(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        has_bias: bool,
        has_residual: bool,
    ) -> FloatTensor<Self>;

    /// `silu(x [M, K] · gate [N, K]ᵀ) ⊙ (x · up [N, K]ᵀ) → [M, N]` in `x`'s dtype.
    #[fusion(dtype = x, shape = product_shape(x, gate))]
    fn decode_gated_product(x: FloatTensor<Self>, gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// What a product adds to or multiplies with `x · wᵀ`.
struct Epilogue<B: Backend> {
    /// `up [N, K]`: the product is `silu(x · wᵀ) ⊙ (x · upᵀ)`.
    up: Option<FloatTensor<B>>,
    /// `[N]`, added.
    bias: Option<FloatTensor<B>>,
    /// `[M, N]`, added.
    residual: Option<FloatTensor<B>>,
}

/// The products composed of `B`'s operations (see [`Epilogue`]).
fn composed<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>, epilogue: Epilogue<B>) -> FloatTensor<B> {
    let product = |w: FloatTensor<B>| B::float_matmul(x.clone(), B::float_transpose(w));
    let mut y = product(w);
    if let Some(bias) = epilogue.bias {
        let n = bias.shape()[0];
        y = B::float_add(y, B::float_reshape(bias, Shape::new([1, n])));
    }
    if let Some(residual) = epilogue.residual {
        y = B::float_add(y, residual);
    }
    match epilogue.up {
        Some(up) => B::float_mul(B::float_mul(y.clone(), B::sigmoid(y)), product(up)),
        None => y,
    }
}

impl<B: Backend> Epilogue<B> {
    /// The epilogue of [`DecodeProductOps::decode_product`]'s arguments.
    fn affine(bias: FloatTensor<B>, residual: FloatTensor<B>, has_bias: bool, has_residual: bool) -> Self {
        Self { up: None, bias: has_bias.then_some(bias), residual: has_residual.then_some(residual) }
    }

    /// The gated product's.
    fn gated(up: FloatTensor<B>) -> Self {
        Self { up: Some(up), bias: None, residual: None }
    }
}

impl DecodeProductOps for burn::backend::Flex {
    fn decode_product(x: FloatTensor<Self>, w: FloatTensor<Self>, bias: FloatTensor<Self>, residual: FloatTensor<Self>, has_bias: bool, has_residual: bool) -> FloatTensor<Self> {
        composed::<Self>(x, w, Epilogue::affine(bias, residual, has_bias, has_residual))
    }

    fn decode_gated_product(x: FloatTensor<Self>, gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::<Self>(x, gate, Epilogue::gated(up))
    }
}

impl DecodeProductOps for CubeBackend {
    fn decode_product(x: FloatTensor<Self>, w: FloatTensor<Self>, bias: FloatTensor<Self>, residual: FloatTensor<Self>, has_bias: bool, has_residual: bool) -> FloatTensor<Self> {
        product_on_cube(x, w, Epilogue::affine(bias, residual, has_bias, has_residual))
    }

    fn decode_gated_product(x: FloatTensor<Self>, gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        product_on_cube(x, gate, Epilogue::gated(up))
    }
}

/// `x [M, K] · w [N, K]ᵀ + bias [N] + residual [M, N]` (bias and residual optional) with the
/// kernel where it runs (see the module), composed of burn's operations elsewhere.
///
/// All operands must be without autodiff (the kernel has no backward pass).
pub fn decode_product(x: Tensor<2>, w: Tensor<2>, bias: Option<Tensor<1>>, residual: Option<Tensor<2>>) -> Tensor<2> {
    let (has_bias, has_residual) = (bias.is_some(), residual.is_some());
    // An absent operand is passed as `x` (never read).
    let bias = bias.map_or_else(|| x.clone().into_dispatch(), Tensor::into_dispatch);
    let residual = residual.map_or_else(|| x.clone().into_dispatch(), Tensor::into_dispatch);
    Tensor::from_dispatch(Dispatch::decode_product(x.into_dispatch(), w.into_dispatch(), bias, residual, has_bias, has_residual))
}

/// `silu(x [M, K] · gate [N, K]ᵀ) ⊙ (x · up [N, K]ᵀ)` with the kernel where it runs (see the
/// module), composed of burn's operations elsewhere.
///
/// All operands must be without autodiff (the kernel has no backward pass).
pub fn decode_gated_product(x: Tensor<2>, gate: Tensor<2>, up: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::decode_gated_product(x.into_dispatch(), gate.into_dispatch(), up.into_dispatch()))
}

/// Whether the shapes tile in `16 × 16` blocks with at most [`MAX_ROWS`] rows.
fn tiles_evenly(m: usize, k: usize, n: usize) -> bool {
    m > 0 && m <= MAX_ROWS && [m, k, n].iter().all(|d| d.is_multiple_of(TILE))
}

/// Whether `x · wᵀ` and its epilogue can run on the kernel: even tiles, one dtype of every
/// operand, and the device's cooperative matrices of that dtype with f32 accumulation.
fn runs_on_tensor_cores(x: &CubeTensor, w: &CubeTensor, epilogue: &Epilogue<CubeBackend>) -> bool {
    let ([m, k], n) = (x.meta.shape().dims(), w.meta.shape()[0]);
    let same = |t: &CubeTensor| t.dtype == x.dtype;
    tiles_evenly(m, k, n)
        && same(w)
        && epilogue.up.as_ref().is_none_or(|up| same(up) && up.meta.shape() == w.meta.shape())
        && [&epilogue.bias, &epilogue.residual].into_iter().flatten().all(same)
        && has_tile_products(x)
}

/// Whether `t`'s device multiplies `16 × 16 × 16` tiles of `t`'s dtype into f32 with
/// cooperative matrices (tensor cores).
pub(crate) fn has_tile_products(t: &CubeTensor) -> bool {
    let elem = burn::backend::cubecl::dtype_to_storage_type(t.dtype);
    let config = MmaConfig { a_type: elem, b_type: elem, cd_type: ElemType::Float(FloatKind::F32), m: TILE as u32, n: TILE as u32, k: TILE as u32 };
    t.client.properties().features.matmul.cmma.contains(&config)
}

fn product_on_cube(x: CubeTensor, w: CubeTensor, epilogue: Epilogue<CubeBackend>) -> CubeTensor {
    if runs_on_tensor_cores(&x, &w, &epilogue) { launch(x, w, epilogue) } else { composed(x, w, epilogue) }
}

fn launch(x: CubeTensor, w: CubeTensor, epilogue: Epilogue<CubeBackend>) -> CubeTensor {
    let (x, w) = (into_contiguous(x), into_contiguous(w));
    let [m, k] = x.meta.shape().dims();
    let n = w.meta.shape()[0];
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([m, n]), x.dtype);
    let client = x.client.clone();
    let plane = client.properties().hardware.plane_size_max.max(1) as usize;
    let Epilogue { up, bias, residual } = epilogue;
    let (gated, has_bias, has_residual) = (up.is_some(), bias.is_some(), residual.is_some());
    let layout = Layout::choose(m / TILE, k / TILE, gated, x.dtype.size());
    // An absent operand is given as `x` in its place (read by no instruction: the comptime flags
    // remove the reads).
    let [up, bias, residual] = [up, bias, residual].map(|t| t.map_or_else(|| x.clone(), into_contiguous));
    let address = [&w, &up, &bias, &residual, &out].iter().fold(AddressType::U32.max(x.required_address_type()), |a, t| a.max(t.required_address_type()));
    let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
    let vector = VECTOR_BYTES / x.dtype.size();
    decode_product_kernel::launch(
        &client,
        CubeCount::new_2d((n / TILE) as u32, (m / TILE / layout.row_tiles) as u32),
        CubeDim::new_2d(plane as u32, layout.planes as u32),
        address,
        vector,
        x.into_tensor_arg(),
        w.into_tensor_arg(),
        up.into_tensor_arg(),
        bias.into_tensor_arg(),
        residual.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        layout.row_tiles,
        layout.planes,
        layout.round_planes,
        plane,
        gated,
        has_bias,
        has_residual,
        vector,
        dtype,
    );
    out
}

/// How one product is split between cubes and planes: each cube computes `16 · row_tiles` rows
/// of one strip of [`TILE`] columns, its `planes` planes each take every `planes`-th tile of `K`,
/// and their sums meet in shared memory `round_planes` planes at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    row_tiles: usize,
    planes: usize,
    round_planes: usize,
}

impl Layout {
    /// The layout for `m_tiles`, `k_tiles` tiles of rows and of `K`: the most planes (up to
    /// [`PLANES`], at least 4 tiles of `K` each) whose staging and sums fit in
    /// [`SHARED_BYTES`], with all rows in one cube where they fit and half as many otherwise.
    fn choose(m_tiles: usize, k_tiles: usize, gated: bool, elem: usize) -> Self {
        let most = (k_tiles / 4).clamp(1, PLANES);
        let mut planes = 1 << most.ilog2();
        let mut row_tiles = m_tiles;
        loop {
            if let Some(layout) = Self::fitting(row_tiles, planes, gated, elem) {
                return layout;
            }
            if row_tiles > 1 && row_tiles % 2 == 0 {
                row_tiles /= 2;
            } else {
                planes /= 2;
            }
        }
    }

    /// `row_tiles` and `planes` with the most planes per round that fit in shared memory, for
    /// elements of `elem` bytes.
    fn fitting(row_tiles: usize, planes: usize, gated: bool, elem: usize) -> Option<Self> {
        let parts = if gated { 2 } else { 1 };
        let tile_bytes = TILE * TILE * elem;
        let staging = planes * (row_tiles + parts) * tile_bytes;
        let values = parts * row_tiles * TILE * TILE * 4;
        let mut round_planes = planes;
        while round_planes >= 1 {
            if staging + (round_planes + 1) * values <= SHARED_BYTES {
                return Some(Self { row_tiles, planes, round_planes });
            }
            round_planes /= 2;
        }
        None
    }
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    use super::TILE;

    /// Loads tile `t` of `K` of the `count` vectors of rows `first..` of `src` (`[R, K]` as
    /// vectors of `N = vector` elements) into this unit's `regs`: vector `i = j · plane_size + lane` of the tile
    /// (row-major, `16 / N` vectors per row) goes to `regs[j]`.
    #[cube]
    fn fetch<F: Float, N: Size>(
        src: &Tensor<Vector<F, N>>,
        regs: &mut Array<Vector<F, N>>,
        first: usize,
        t: usize,
        #[comptime] count: usize,
        #[comptime] plane_size: usize,
        #[comptime] vector: usize,
    ) {
        let per_row = comptime!(TILE / vector);
        let row_vectors = src.shape(1) / vector;
        let lane = UNIT_POS_X as usize;
        #[unroll]
        for j in 0..comptime!(count.div_ceil(plane_size)) {
            let i = j * plane_size + lane;
            if i < count {
                regs[j] = src[(first + i / per_row) * row_vectors + t * per_row + i % per_row];
            }
        }
    }

    /// Stores what [`fetch`] loaded into `stage[offset..offset + count]`.
    #[cube]
    fn stash<F: Float, N: Size>(regs: &Array<Vector<F, N>>, stage: &mut Shared<[Vector<F, N>]>, offset: usize, #[comptime] count: usize, #[comptime] plane_size: usize) {
        let lane = UNIT_POS_X as usize;
        #[unroll]
        for j in 0..comptime!(count.div_ceil(plane_size)) {
            let i = j * plane_size + lane;
            if i < count {
                stage[offset + i] = regs[j];
            }
        }
    }

    /// Cube `(c, g)` computes columns `16c..16c+16` of `out [M, N]` for the `16 · row_tiles`
    /// rows of row group `g`, from `x [M, K]` and `w [N, K]` (contiguous, read as vectors of `N = vector`
    /// elements; `K` and `N` multiples of 16). Plane `p` of `planes` (each of `plane_size`
    /// units) takes the tiles `p, p + planes, …` of `K`: it loads the next tile's `x` rows and
    /// weight strip into registers with vector loads while it multiplies the current one, staged
    /// in its own part of shared memory, with cooperative-matrix instructions into f32 sums.
    /// The planes' sums are added in shared memory, `round_planes` planes at a time. With
    /// `gated`, the cube also multiplies `x` by the same strip of `up [N, K]` and writes
    /// `silu(x·wᵀ) ⊙ (x·upᵀ)`; with `has_bias` and `has_residual`, it adds `bias [N]` and
    /// `residual [M, N]` before the rounding (a gated product has neither).
    #[cube(launch, address_type = "dynamic")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode_product_kernel<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        w: &Tensor<Vector<F, N>>,
        up: &Tensor<Vector<F, N>>,
        bias: &Tensor<F>,
        residual: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] row_tiles: usize,
        #[comptime] planes: usize,
        #[comptime] round_planes: usize,
        #[comptime] plane_size: usize,
        #[comptime] gated: bool,
        #[comptime] has_bias: bool,
        #[comptime] has_residual: bool,
        #[comptime] vector: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let tile_vectors = comptime!(TILE * TILE / vector);
        let x_vectors = comptime!(row_tiles * tile_vectors);
        let stage_len = comptime!(x_vectors + if gated { 2 * tile_vectors } else { tile_vectors });
        let n = out.shape(1);
        let tiles = x.shape(1) / TILE;
        let col0 = CUBE_POS_X as usize * TILE;
        let row0 = CUBE_POS_Y as usize * row_tiles * TILE;
        let plane = UNIT_POS_Y as usize;
        // This plane's staged tiles: x's rows, then the weight's strip, then up's.
        let mut stage = Shared::<[Vector<F, N>]>::new_slice(planes * stage_len);
        let base = plane * stage_len;
        let (w_at, up_at) = (base + x_vectors, base + x_vectors + tile_vectors);
        let mut x_regs = Array::<Vector<F, N>>::new(comptime!(x_vectors.div_ceil(plane_size)));
        let mut w_regs = Array::<Vector<F, N>>::new(comptime!(tile_vectors.div_ceil(plane_size)));
        let mut up_regs = Array::<Vector<F, N>>::new(comptime!(tile_vectors.div_ceil(plane_size)));
        // Accumulators of `x · wᵀ` and (gated) of `x · upᵀ` for each row tile; `up_sums` and
        // `up_weight` stay unused without `gated`.
        let mut sums = Sequence::<cmma::Matrix<f32>>::new();
        let mut up_sums = Sequence::<cmma::Matrix<f32>>::new();
        #[unroll]
        for _ in 0..row_tiles {
            sums.push(cmma::Matrix::<f32>::from_value(cmma::MatrixIdent::Accumulator, TILE, TILE, TILE, cmma::MatrixLayout::Undefined, 0.0));
            up_sums.push(cmma::Matrix::<f32>::from_value(cmma::MatrixIdent::Accumulator, TILE, TILE, TILE, cmma::MatrixLayout::Undefined, 0.0));
        }
        let mut rows = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::A, TILE, TILE, TILE, cmma::MatrixLayout::RowMajor, F::from_int(0));
        let mut weight = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::B, TILE, TILE, TILE, cmma::MatrixLayout::ColMajor, F::from_int(0));
        let mut up_weight = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::B, TILE, TILE, TILE, cmma::MatrixLayout::ColMajor, F::from_int(0));
        if plane < tiles {
            fetch(x, &mut x_regs, row0, plane, x_vectors, plane_size, vector);
            fetch(w, &mut w_regs, col0, plane, tile_vectors, plane_size, vector);
            if gated {
                fetch(up, &mut up_regs, col0, plane, tile_vectors, plane_size, vector);
            }
        }
        for t in range_stepped(plane, tiles, planes) {
            stash(&x_regs, &mut stage, base, x_vectors, plane_size);
            stash(&w_regs, &mut stage, w_at, tile_vectors, plane_size);
            if gated {
                stash(&up_regs, &mut stage, up_at, tile_vectors, plane_size);
            }
            sync_plane();
            // The next tile's loads are in flight while this one is multiplied.
            let next = t + planes;
            if next < tiles {
                fetch(x, &mut x_regs, row0, next, x_vectors, plane_size, vector);
                fetch(w, &mut w_regs, col0, next, tile_vectors, plane_size, vector);
                if gated {
                    fetch(up, &mut up_regs, col0, next, tile_vectors, plane_size, vector);
                }
            }
            cmma::load(&mut weight, stage.slice(w_at, w_at + tile_vectors), TILE as u32);
            if gated {
                cmma::load(&mut up_weight, stage.slice(up_at, up_at + tile_vectors), TILE as u32);
            }
            #[unroll]
            for r in 0..row_tiles {
                let start = base + r * tile_vectors;
                cmma::load(&mut rows, stage.slice(start, start + tile_vectors), TILE as u32);
                let sum = sums.index(r);
                cmma::execute::<F, F, f32, f32, cmma::Plane>(&rows, &weight, sum, sum);
                if gated {
                    let up_sum = up_sums.index(r);
                    cmma::execute::<F, F, f32, f32, cmma::Plane>(&rows, &up_weight, up_sum, up_sum);
                }
            }
            sync_plane();
        }
        // The planes' sums: `values` per plane, element `i` = (part, row, column in the strip)
        // with part 0 for `w` and 1 for `up`, summed into `total` by `round_planes` planes at a
        // time.
        let block = row_tiles * TILE * TILE;
        let values = comptime!(if gated { 2 * block } else { block });
        let threads = planes * plane_size;
        let mut partial = Shared::<[f32]>::new_slice(round_planes * values);
        let mut total = Shared::<[f32]>::new_slice(values);
        for i in range_stepped(UNIT_POS as usize, values, threads) {
            total[i] = 0.0;
        }
        #[unroll]
        for round in 0..planes / round_planes {
            if plane / round_planes == round {
                let slot = plane % round_planes;
                #[unroll]
                for r in 0..row_tiles {
                    let start = slot * values + r * TILE * TILE;
                    cmma::store(partial.slice_mut(start, start + TILE * TILE), sums.index(r), TILE as u32, cmma::MatrixLayout::RowMajor);
                    if gated {
                        let start = start + block;
                        cmma::store(partial.slice_mut(start, start + TILE * TILE), up_sums.index(r), TILE as u32, cmma::MatrixLayout::RowMajor);
                    }
                }
            }
            sync_cube();
            for i in range_stepped(UNIT_POS as usize, values, threads) {
                let mut sum = total[i];
                #[unroll]
                for s in 0..round_planes {
                    sum += partial[s * values + i];
                }
                total[i] = sum;
            }
            sync_cube();
        }
        for i in range_stepped(UNIT_POS as usize, block, threads) {
            // i = (row tile, row in tile, column in tile) = (row in the group, column in tile)
            let row = row0 + i / TILE;
            let col = col0 + i % TILE;
            let mut value = total[i];
            if has_bias {
                value += f32::cast_from(bias[col]);
            }
            if has_residual {
                value += f32::cast_from(residual[row * n + col]);
            }
            if gated {
                value = value / (1.0 + f32::exp(-value)) * total[block + i];
            }
            out[row * n + col] = F::cast_from(value);
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
    fn layouts_take_the_most_planes_that_fit_in_shared_memory_and_split_rows_evenly() {
        let layout = |row_tiles, planes, round_planes| Layout { row_tiles, planes, round_planes };
        // The 1.5B shape's maps at 64 rows: 16 planes leave room for 32 rows per cube.
        assert_eq!(Layout::choose(4, 96, false, 2), layout(2, 16, 4));
        assert_eq!(Layout::choose(4, 96, true, 2), layout(2, 16, 1));
        assert_eq!(Layout::choose(4, 560, false, 2), layout(2, 16, 4));
        // Few tiles of `K`: at least four per plane; an odd count of row tiles stays whole.
        assert_eq!(Layout::choose(3, 20, false, 2), layout(3, 4, 4));
        assert_eq!(Layout::choose(1, 1, true, 2), layout(1, 1, 1));
        for m_tiles in 1..=MAX_ROWS / TILE {
            for k_tiles in [1, 3, 4, 17, 64, 96, 560, 1000] {
                for gated in [false, true] {
                    let Layout { row_tiles, planes, round_planes } = Layout::choose(m_tiles, k_tiles, gated, 2);
                    assert!(m_tiles.is_multiple_of(row_tiles) && planes.is_power_of_two() && planes <= PLANES, "{m_tiles} {k_tiles} {gated}");
                    assert!(planes.is_multiple_of(round_planes) && planes <= k_tiles.max(1), "{m_tiles} {k_tiles} {gated}");
                    // Staged tiles (2-byte elements) and f32 sums.
                    let parts = if gated { 2 } else { 1 };
                    let bytes = planes * (row_tiles + parts) * 512 + (round_planes + 1) * parts * row_tiles * 1024;
                    assert!(bytes <= SHARED_BYTES, "{m_tiles} {k_tiles} {gated}: {bytes} bytes");
                }
            }
        }
    }

    /// `[rows, cols]` of distinct small values, deterministic in `salt`.
    fn values(rows: usize, cols: usize, salt: usize) -> Vec<f32> {
        (0..rows * cols).map(|i| ((i * (31 + salt) % (17 + salt)) as f32 - 8.0) / 9.0).collect()
    }

    /// `Σ_i x[r, i] · w[c, i]` in f64.
    fn dot(x: &[f32], w: &[f32], k: usize, r: usize, c: usize) -> f64 {
        (0..k).map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i])).sum()
    }

    /// Checks `got [m, n]` against `want(r, c)` within `1e-5` relative.
    fn assert_close(got: Tensor<2>, m: usize, n: usize, want: impl Fn(usize, usize) -> f64) {
        let got: Vec<f32> = got.cast(DType::F32).into_data().iter::<f32>().collect();
        assert_eq!(got.len(), m * n);
        for r in 0..m {
            for c in 0..n {
                let (g, want) = (f64::from(got[r * n + c]), want(r, c));
                assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "[{r}, {c}]: {g} against {want}");
            }
        }
    }

    fn tensor<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
    }

    #[test]
    fn the_product_with_each_of_bias_and_residual_matches_a_float64_recomputation() {
        let (m, k, n) = (5, 13, 7);
        let (x, w, b, res) = (values(m, k, 0), values(n, k, 3), values(1, n, 5), values(m, n, 6));
        for (bias, residual) in [(false, false), (true, false), (false, true), (true, true)] {
            let got = decode_product(tensor(&x, [m, k]), tensor(&w, [n, k]), bias.then(|| tensor(&b, [n])), residual.then(|| tensor(&res, [m, n])));
            assert_close(got, m, n, |r, c| {
                dot(&x, &w, k, r, c) + if bias { f64::from(b[c]) } else { 0.0 } + if residual { f64::from(res[r * n + c]) } else { 0.0 }
            });
        }
    }

    #[test]
    fn the_gated_product_matches_a_float64_recomputation_of_silu_gate_times_up() {
        let (m, k, n) = (4, 11, 6);
        let (x, gate, up) = (values(m, k, 1), values(n, k, 2), values(n, k, 4));
        let got = decode_gated_product(tensor(&x, [m, k]), tensor(&gate, [n, k]), tensor(&up, [n, k]));
        assert_close(got, m, n, |r, c| {
            let g = dot(&x, &gate, k, r, c);
            g / (1.0 + (-g).exp()) * dot(&x, &up, k, r, c)
        });
    }
}
