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
//! Here every cube owns all `M = 16 · row_tiles` rows of a block of `16 · col_tiles` output
//! columns (see [`Plan`]), one plane (warp) per `16 × 16` output tile, so that no plane's sums
//! need another's: the whole cube loads the next [`BUFFERS`] stages of `K` (`16 · stage_tiles`
//! columns of `x`'s rows and of the weight's block each) with 16-byte vector loads into registers
//! while it multiplies the current stage from shared memory with cooperative-matrix instructions
//! (tensor cores), accumulating in f32, and the weight is read once. `K` may be split between
//! cubes whose planes store their f32 sums straight into a partial-sum buffer, which a second
//! launch adds (finishing the epilogue); without a split the cube finishes its block from shared
//! memory. [`Plan::choose`] picks the block width, the stage depth and the split by a cost model
//! of the busiest SM: at 64 rows an H200 runs 132 SMs, and 280 cubes put three on some SMs and
//! two on most (docs/performance.md). Two earlier versions split `K` between
//! the planes of a cube that owned one strip of 16 columns instead: their planes' sums met in
//! shared memory in rounds, and each plane took 3–5 µs per tile of `K` on an H200, whether it
//! loaded its tiles with cooperative-matrix loads from global memory or staged them through
//! shared memory (docs/performance.md).
//!
//! Two forms share the kernel:
//! - [`decode_product`]: `x · wᵀ`, with an optional bias `[N]` and an optional residual `[M, N]`
//!   added in f32 before the one rounding to the dtype (linear maps with a bias, `down_proj` with
//!   a steering vector, and the residual stream added to `o_proj`'s and `down_proj`'s output);
//! - [`decode_gated_product`]: `silu(x · gateᵀ) ⊙ (x · upᵀ)`, the MLP's first half in one launch
//!   instead of three (two products and the gating): each cube reads the same block of both
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
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::MmaConfig;
use cubecl::ir::{AddressType, ElemType, FloatKind};
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::{decode_product_kernel, sum_partials_kernel};

/// Rows, columns and depth of one cooperative-matrix tile.
pub const TILE: usize = 16;
/// Most planes per cube (one per output tile); a power of two.
pub const PLANES: usize = 16;
/// Streaming multiprocessors assumed where the runtime does not say (an H100's or H200's 132).
const DEFAULT_SMS: usize = 132;
/// Units per cube of the launch that adds partial sums.
const SUM_UNITS: usize = 256;
/// Shared memory one cube may use: its planes' staged tiles and their sums (Vulkan guarantees
/// 16 KiB; NVIDIA's GPUs give 48 KiB).
const SHARED_BYTES: usize = 40 * 1024;
/// Bytes of one vector load from global memory (8 elements of 2 bytes).
const VECTOR_BYTES: usize = 16;
/// Stages of `K` whose loads a cube keeps in flight, in registers, while it multiplies one from
/// shared memory.
const BUFFERS: usize = 2;
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
    let hardware = &client.properties().hardware;
    let plane = hardware.plane_size_max.max(1) as usize;
    let sms = hardware.num_streaming_multiprocessors.map_or(DEFAULT_SMS, |s| s as usize);
    let Epilogue { up, bias, residual } = epilogue;
    let (gated, has_bias, has_residual) = (up.is_some(), bias.is_some(), residual.is_some());
    let plan = Plan::choose(m / TILE, n / TILE, k / TILE, gated, x.dtype.size(), sms);
    let parts = if gated { 2 } else { 1 };
    // An absent operand is given as `x` in its place (read by no instruction: the comptime flags
    // remove the reads).
    let [up, bias, residual] = [up, bias, residual].map(|t| t.map_or_else(|| x.clone(), into_contiguous));
    let split = plan.splits > 1;
    // The f32 partial sums `[splits, parts, M, N]` of a split `K` (one unused element otherwise).
    let partial_shape = if split { Shape::new([plan.splits * parts * m, n]) } else { Shape::new([1, 1]) };
    let partials = empty_device_dtype(client.clone(), x.device.clone(), partial_shape, DType::F32);
    let address = [&w, &up, &bias, &residual, &out, &partials].iter().fold(AddressType::U32.max(x.required_address_type()), |a, t| a.max(t.required_address_type()));
    let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
    let vector = VECTOR_BYTES / x.dtype.size();
    decode_product_kernel::launch(
        &client,
        CubeCount::new_2d((n / TILE / plan.col_tiles) as u32, plan.splits as u32),
        CubeDim::new_2d(plane as u32, (plan.row_tiles * plan.col_tiles) as u32),
        address,
        vector,
        x.into_tensor_arg(),
        w.into_tensor_arg(),
        up.clone().into_tensor_arg(),
        bias.clone().into_tensor_arg(),
        residual.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        partials.clone().into_tensor_arg(),
        plan.row_tiles,
        plan.col_tiles,
        plan.stage_tiles,
        plan.stages_per_split,
        plane,
        Finish { gated, has_bias, has_residual },
        split,
        vector,
        dtype,
    );
    if split {
        sum_partials_kernel::launch(
            &client,
            CubeCount::new_1d((m * n).div_ceil(SUM_UNITS) as u32),
            CubeDim::new_1d(SUM_UNITS as u32),
            address,
            partials.into_tensor_arg(),
            bias.into_tensor_arg(),
            residual.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            plan.splits,
            Finish { gated, has_bias, has_residual },
            dtype,
        );
    }
    out
}

/// How one product is split between cubes and planes: each cube computes all `16 · row_tiles`
/// rows of a block of `16 · col_tiles` columns over one split of `K`, one plane per `16 × 16`
/// output tile (two sums per plane when gated); `K` goes through shared memory `stage_tiles`
/// tiles of 16 at a time, and `splits` cubes share each column block, `stages_per_split` stages
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    row_tiles: usize,
    col_tiles: usize,
    stage_tiles: usize,
    splits: usize,
    stages_per_split: usize,
}

/// The most cubes that share one column block's `K` (the launch adding their partial sums
/// unrolls a loop over them).
const MAX_SPLITS: usize = 16;
/// What [`Plan::cost`] charges one SM per `16 × 16 × 16` tile product, in nanoseconds.
const TILE_PRODUCT_NS: f64 = 8.5;
/// What [`Plan::cost`] charges one SM per byte a cube stages (of `x` and of the weights), in
/// nanoseconds.
const STAGED_BYTE_NS: f64 = 0.033;
/// Planes (warps) an SM needs before [`Plan::cost`] counts it as fully busy.
const BUSY_PLANES: usize = 16;
/// Bytes per nanosecond at which partial sums of a split `K` are written and read back.
const PARTIAL_BYTES_PER_NS: f64 = 2000.0;
/// Nanoseconds of the launch adding partial sums, beyond its traffic.
const SUM_LAUNCH_NS: f64 = 3000.0;

impl Plan {
    /// The plan for `m_tiles`, `n_tiles`, `k_tiles` tiles of rows, columns and `K`, elements of
    /// `elem` bytes, on a device of `sms` streaming multiprocessors: of the plans with up to
    /// [`PLANES`] planes per cube whose shared memory fits in [`SHARED_BYTES`] (the largest stage
    /// that fits for each block width and split), the one of least [`Plan::cost`]; ties go to
    /// fewer splits, then fewer cubes.
    fn choose(m_tiles: usize, n_tiles: usize, k_tiles: usize, gated: bool, elem: usize, sms: usize) -> Self {
        let parts = if gated { 2 } else { 1 };
        let mut best: Option<((u64, usize, usize), Self)> = None;
        let mut col_tiles = 1;
        while col_tiles * m_tiles * parts <= PLANES && n_tiles.is_multiple_of(col_tiles) {
            for wanted_splits in 1..=MAX_SPLITS {
                let fitting = [8, 4, 2, 1].into_iter().filter(|t| k_tiles.is_multiple_of(*t)).find_map(|stage_tiles| {
                    let stages = k_tiles / stage_tiles;
                    let stages_per_split = stages.div_ceil(wanted_splits.min(stages));
                    let plan = Self { row_tiles: m_tiles, col_tiles, stage_tiles, splits: stages.div_ceil(stages_per_split), stages_per_split };
                    (plan.shared_bytes(parts, elem) <= SHARED_BYTES).then_some(plan)
                });
                if let Some(plan) = fitting {
                    let key = (plan.cost(n_tiles, parts, elem, sms).round() as u64, plan.splits, plan.cubes(n_tiles));
                    if best.as_ref().is_none_or(|(b, _)| key < *b) {
                        best = Some((key, plan));
                    }
                }
            }
            col_tiles *= 2;
        }
        // One column tile and one tile of `K` per stage fit any product of at most `MAX_ROWS` rows.
        best.map_or(Self { row_tiles: m_tiles, col_tiles: 1, stage_tiles: 1, splits: 1, stages_per_split: k_tiles }, |(_, plan)| plan)
    }

    /// Cubes of the launch.
    fn cubes(&self, n_tiles: usize) -> usize {
        n_tiles / self.col_tiles * self.splits
    }

    /// Shared memory of one cube: the staged rows (each with one vector of padding, see the
    /// kernel's `stash`) and, when `K` is not split, the block's f32 sums.
    fn shared_bytes(&self, parts: usize, elem: usize) -> usize {
        let staged = (self.row_tiles + parts * self.col_tiles) * TILE * (self.stage_tiles * TILE * elem + VECTOR_BYTES);
        let sums = if self.splits == 1 { parts * self.row_tiles * self.col_tiles * TILE * TILE * 4 } else { 0 };
        staged + sums
    }

    /// A model of the product's time in nanoseconds: the busiest SM holds `⌈cubes / sms⌉` cubes
    /// and spends [`TILE_PRODUCT_NS`] per tile product and [`STAGED_BYTE_NS`] per staged byte of
    /// theirs, slowed in proportion where it has fewer than [`BUSY_PLANES`] planes; a split `K`
    /// adds the traffic of its partial sums and a second launch.
    fn cost(&self, n_tiles: usize, parts: usize, elem: usize, sms: usize) -> f64 {
        let per_sm = self.cubes(n_tiles).div_ceil(sms.max(1));
        let k_tiles = self.stage_tiles * self.stages_per_split;
        let planes = self.row_tiles * self.col_tiles;
        let products = planes * parts * k_tiles;
        let staged = (self.row_tiles + parts * self.col_tiles) * TILE * k_tiles * TILE * elem;
        let busy = ((per_sm * planes) as f64 / BUSY_PLANES as f64).min(1.0);
        let compute = per_sm as f64 * (products as f64 * TILE_PRODUCT_NS + staged as f64 * STAGED_BYTE_NS) / busy;
        let partials = if self.splits > 1 {
            SUM_LAUNCH_NS + (self.splits * parts * self.row_tiles * TILE * n_tiles * TILE * 4 * 2) as f64 / PARTIAL_BYTES_PER_NS
        } else {
            0.0
        };
        compute + partials
    }
}

/// What is added to or multiplied with a product's f32 sums before its one rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Finish {
    /// `silu(x·wᵀ) ⊙ (x·upᵀ)`.
    gated: bool,
    /// `+ bias [N]`.
    has_bias: bool,
    /// `+ residual [M, N]`.
    has_residual: bool,
}

/// The kernels, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    use super::{BUFFERS, Finish, TILE};

    /// Loads stage `stage` (`per_row` vectors of each row) of rows `first..` of `src` (`[R, K]`
    /// as vectors of `N = vector` elements, `row_vectors` per row) into register buffer `buffer`
    /// of [`BUFFERS`]: vector `i = j · threads + t` of the stage (row-major) goes to unit `t`'s
    /// `regs[buffer · ⌈count / threads⌉ + j]`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn fetch<F: Float, N: Size>(
        src: &Tensor<Vector<F, N>>,
        regs: &mut Array<Vector<F, N>>,
        first: usize,
        stage: usize,
        row_vectors: usize,
        #[comptime] buffer: usize,
        #[comptime] per_row: usize,
        #[comptime] count: usize,
        #[comptime] threads: usize,
    ) {
        let unit = UNIT_POS as usize;
        let per_unit = comptime!(count.div_ceil(threads));
        #[unroll]
        for j in 0..per_unit {
            let i = j * threads + unit;
            if i < count {
                regs[buffer * per_unit + j] = src[(first + i / per_row) * row_vectors + stage * per_row + i % per_row];
            }
        }
    }

    /// Stores what [`fetch`] loaded into register buffer `buffer` into `stage`, rows
    /// `per_row + 1` vectors apart (the extra vector shifts consecutive rows to other
    /// shared-memory banks for the cooperative-matrix loads, which read a column of rows at a
    /// time).
    #[cube]
    fn stash<F: Float, N: Size>(
        regs: &Array<Vector<F, N>>,
        stage: &mut Shared<[Vector<F, N>]>,
        #[comptime] buffer: usize,
        #[comptime] per_row: usize,
        #[comptime] count: usize,
        #[comptime] threads: usize,
    ) {
        let unit = UNIT_POS as usize;
        let per_unit = comptime!(count.div_ceil(threads));
        #[unroll]
        for j in 0..per_unit {
            let i = j * threads + unit;
            if i < count {
                stage[(i / per_row) * (per_row + 1) + i % per_row] = regs[buffer * per_unit + j];
            }
        }
    }

    /// Output `[row, col]` of `out [M, N]` from its f32 sums `value = x·wᵀ` and (gated)
    /// `up_value = x·upᵀ`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn finished<F: Float>(value: f32, up_value: f32, bias: &Tensor<F>, residual: &Tensor<F>, row: usize, col: usize, n: usize, #[comptime] finish: Finish) -> F {
        let mut value = value;
        if finish.has_bias {
            value += f32::cast_from(bias[col]);
        }
        if finish.has_residual {
            value += f32::cast_from(residual[row * n + col]);
        }
        if finish.gated {
            value = value / (1.0 + f32::exp(-value)) * up_value;
        }
        F::cast_from(value)
    }

    /// Cube `(c, s)` computes columns `16·col_tiles·c ..` (`16·col_tiles` of them) of all rows
    /// of `out [M, N]` (`M = 16·row_tiles`) over stages `s·stages_per_split ..` of `K`, from
    /// `x [M, K]` and `w [N, K]` (contiguous, read as vectors of `N = vector` elements; `K` a
    /// multiple of `16·stage_tiles`). Plane `(r, c')` owns output tile `(r, c')`. Each stage's
    /// `16·stage_tiles` columns of `K` of `x`'s rows and of the weight's block are loaded by the
    /// whole cube with vector loads into registers while the previous stage is multiplied from
    /// shared memory, with cooperative-matrix instructions into f32 sums. With `split`, the sums
    /// go to `partials [splits, parts, M, N]` for [`sum_partials_kernel`]; otherwise `finish`
    /// (bias, residual, or with `gated` the same block of `up [N, K]` and
    /// `silu(x·wᵀ) ⊙ (x·upᵀ)`) is applied and the result rounded into `out`.
    #[cube(launch, address_type = "dynamic")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode_product_kernel<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        w: &Tensor<Vector<F, N>>,
        up: &Tensor<Vector<F, N>>,
        bias: &Tensor<F>,
        residual: &Tensor<F>,
        out: &mut Tensor<F>,
        partials: &mut Tensor<f32>,
        #[comptime] row_tiles: usize,
        #[comptime] col_tiles: usize,
        #[comptime] stage_tiles: usize,
        #[comptime] stages_per_split: usize,
        #[comptime] plane_size: usize,
        #[comptime] finish: Finish,
        #[comptime] split: bool,
        #[comptime] vector: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let stage_k = comptime!(stage_tiles * TILE);
        let per_row = comptime!(stage_k / vector);
        let x_count = comptime!(row_tiles * TILE * per_row);
        let w_count = comptime!(col_tiles * TILE * per_row);
        let threads = comptime!(row_tiles * col_tiles * plane_size);
        let width = comptime!(col_tiles * TILE);
        let block = comptime!(row_tiles * TILE * col_tiles * TILE);
        let (m, n) = (out.shape(0), out.shape(1));
        let row_vectors = x.shape(1) / vector;
        let stages = row_vectors / per_row;
        let col0 = CUBE_POS_X as usize * width;
        let first = CUBE_POS_Y as usize * stages_per_split;
        let mut last = first + stages_per_split;
        if last > stages {
            last = stages;
        }
        let plane = UNIT_POS_Y as usize;
        let (r, c) = (plane / col_tiles, plane % col_tiles);
        // Staged rows are `per_row + 1` vectors apart (see `stash`).
        let stride = comptime!(per_row + 1);
        let mut xs = Shared::<[Vector<F, N>]>::new_slice(comptime!(row_tiles * TILE * stride));
        let mut ws = Shared::<[Vector<F, N>]>::new_slice(comptime!(col_tiles * TILE * stride));
        let mut ups = Shared::<[Vector<F, N>]>::new_slice(comptime!(if finish.gated { col_tiles * TILE * stride } else { 1 }));
        let mut x_regs = Array::<Vector<F, N>>::new(comptime!(BUFFERS * x_count.div_ceil(threads)));
        let mut w_regs = Array::<Vector<F, N>>::new(comptime!(BUFFERS * w_count.div_ceil(threads)));
        let mut up_regs = Array::<Vector<F, N>>::new(comptime!(BUFFERS * w_count.div_ceil(threads)));
        let sum = cmma::Matrix::<f32>::from_value(cmma::MatrixIdent::Accumulator, TILE, TILE, TILE, cmma::MatrixLayout::Undefined, 0.0);
        let up_sum = cmma::Matrix::<f32>::from_value(cmma::MatrixIdent::Accumulator, TILE, TILE, TILE, cmma::MatrixLayout::Undefined, 0.0);
        let mut rows = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::A, TILE, TILE, TILE, cmma::MatrixLayout::RowMajor, F::from_int(0));
        let mut weight = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::B, TILE, TILE, TILE, cmma::MatrixLayout::ColMajor, F::from_int(0));
        let mut up_weight = cmma::Matrix::<F>::from_value(cmma::MatrixIdent::B, TILE, TILE, TILE, cmma::MatrixLayout::ColMajor, F::from_int(0));
        // Stage `s` goes through register buffer `(s − first) mod BUFFERS`: the loads of the
        // next `BUFFERS` stages are in flight while one is multiplied.
        #[unroll]
        for b in 0..BUFFERS {
            if first + b < last {
                fetch(x, &mut x_regs, 0, first + b, row_vectors, b, per_row, x_count, threads);
                fetch(w, &mut w_regs, col0, first + b, row_vectors, b, per_row, w_count, threads);
                if finish.gated {
                    fetch(up, &mut up_regs, col0, first + b, row_vectors, b, per_row, w_count, threads);
                }
            }
        }
        for group in range_stepped(first, last, BUFFERS) {
            #[unroll]
            for b in 0..BUFFERS {
                let stage = group + b;
                // Uniform across the cube, so its barriers are reached by every unit or none.
                if stage < last {
                    stash(&x_regs, &mut xs, b, per_row, x_count, threads);
                    stash(&w_regs, &mut ws, b, per_row, w_count, threads);
                    if finish.gated {
                        stash(&up_regs, &mut ups, b, per_row, w_count, threads);
                    }
                    sync_cube();
                    if stage + BUFFERS < last {
                        fetch(x, &mut x_regs, 0, stage + BUFFERS, row_vectors, b, per_row, x_count, threads);
                        fetch(w, &mut w_regs, col0, stage + BUFFERS, row_vectors, b, per_row, w_count, threads);
                        if finish.gated {
                            fetch(up, &mut up_regs, col0, stage + BUFFERS, row_vectors, b, per_row, w_count, threads);
                        }
                    }
                    #[unroll]
                    for t in 0..stage_tiles {
                        // Tile `t` of the stage: 16 staged rows from the tile's first element.
                        let (x_at, w_at) = ((r * TILE * stride) + t * (TILE / vector), (c * TILE * stride) + t * (TILE / vector));
                        let span = comptime!((TILE - 1) * stride + TILE / vector);
                        let pitch = comptime!((stride * vector) as u32);
                        cmma::load(&mut rows, xs.slice(x_at, x_at + span), pitch);
                        cmma::load(&mut weight, ws.slice(w_at, w_at + span), pitch);
                        cmma::execute::<F, F, f32, f32, cmma::Plane>(&rows, &weight, &sum, &sum);
                        if finish.gated {
                            cmma::load(&mut up_weight, ups.slice(w_at, w_at + span), pitch);
                            cmma::execute::<F, F, f32, f32, cmma::Plane>(&rows, &up_weight, &up_sum, &up_sum);
                        }
                    }
                    sync_cube();
                }
            }
        }
        if split {
            // Each plane stores its f32 sums straight into its tile of `partials`.
            let parts = comptime!(if finish.gated { 2usize } else { 1usize });
            let slot = CUBE_POS_Y as usize * parts;
            let at = (slot * m + r * TILE) * n + col0 + c * TILE;
            let span = (TILE - 1) * n + TILE;
            cmma::store(partials.slice_mut(at, at + span), &sum, u32::cast_from(n), cmma::MatrixLayout::RowMajor);
            if finish.gated {
                let at = at + m * n;
                cmma::store(partials.slice_mut(at, at + span), &up_sum, u32::cast_from(n), cmma::MatrixLayout::RowMajor);
            }
        } else {
            // The block's sums `[parts, 16·row_tiles, 16·col_tiles]` (part 1: `x·upᵀ`), finished
            // by the whole cube.
            let mut sums = Shared::<[f32]>::new_slice(comptime!(if finish.gated { 2 * block } else { block }));
            let at = r * TILE * width + c * TILE;
            cmma::store(sums.slice_mut(at, at + (TILE - 1) * width + TILE), &sum, width as u32, cmma::MatrixLayout::RowMajor);
            if finish.gated {
                let at = at + block;
                cmma::store(sums.slice_mut(at, at + (TILE - 1) * width + TILE), &up_sum, width as u32, cmma::MatrixLayout::RowMajor);
            }
            sync_cube();
            for i in range_stepped(UNIT_POS as usize, block, threads) {
                let (row, col) = (i / width, col0 + i % width);
                let mut up_value = 0.0;
                if finish.gated {
                    up_value = sums[block + i];
                }
                out[row * n + col] = finished(sums[i], up_value, bias, residual, row, col, n, finish);
            }
        }
    }

    /// Unit `i` adds element `i` of the `splits` partial sums `[splits, parts, M, N]` of
    /// [`decode_product_kernel`] and writes it finished into `out [M, N]`.
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn sum_partials_kernel<F: Float>(
        partials: &Tensor<f32>,
        bias: &Tensor<F>,
        residual: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] splits: usize,
        #[comptime] finish: Finish,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= out.len() {
            terminate!();
        }
        let n = out.shape(1);
        let size = out.len();
        let parts = comptime!(if finish.gated { 2 } else { 1 });
        let mut value = 0.0;
        let mut up_value = 0.0;
        #[unroll]
        for s in 0..splits {
            value += partials[s * parts * size + i];
            if finish.gated {
                up_value += partials[(s * parts + 1) * size + i];
            }
        }
        out[i] = finished(value, up_value, bias, residual, i / n, i % n, n, finish);
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
    fn the_1_5b_and_7b_shapes_decode_products_get_the_cost_model_s_plans() {
        let plan = |row_tiles, col_tiles, stage_tiles, splits, stages_per_split| Plan { row_tiles, col_tiles, stage_tiles, splits, stages_per_split };
        // q/k/v (1536 → 2048) and o_proj (1536 → 1536): 4 splits of K of 3 stages of 128.
        assert_eq!(Plan::choose(4, 128, 96, false, 2, 132), plan(4, 4, 8, 4, 3));
        assert_eq!(Plan::choose(4, 96, 96, false, 2, 132), plan(4, 4, 8, 4, 3));
        // gate/up (1536 → 2 × 8960, gated): 560 cubes of 32 columns, K split in 2.
        assert_eq!(Plan::choose(4, 560, 96, true, 2, 132), plan(4, 2, 8, 2, 6));
        // down_proj (8960 → 1536): 5 splits of 14 stages.
        assert_eq!(Plan::choose(4, 96, 560, false, 2, 132), plan(4, 4, 8, 5, 14));
        // The 7B shape: q/k/v (3584 → 4608), o_proj, gate/up (3584 → 2 × 18944), down_proj.
        assert_eq!(Plan::choose(4, 288, 224, false, 2, 132), plan(4, 4, 8, 7, 4));
        assert_eq!(Plan::choose(4, 224, 224, false, 2, 132), plan(4, 4, 8, 2, 14));
        assert_eq!(Plan::choose(4, 1184, 224, true, 2, 132), plan(4, 2, 8, 2, 14));
        assert_eq!(Plan::choose(4, 224, 1184, false, 2, 132), plan(4, 4, 8, 7, 22));
    }

    #[test]
    fn the_cost_model_charges_the_busiest_sm() {
        let plan = Plan { row_tiles: 4, col_tiles: 2, stage_tiles: 8, splits: 1, stages_per_split: 12 };
        // 264 cubes fill 132 SMs twice; 280 put a third cube on 16 of them.
        let (even, uneven) = (plan.cost(528, 2, 2, 132), plan.cost(560, 2, 2, 132));
        assert!((uneven / even - 1.5).abs() < 1e-9, "{even} {uneven}");
        // Halving K between two cubes halves each cube's work but adds the partial sums'
        // traffic (2 splits × 2 parts × 64 × 8960 f32, written and read) and a launch.
        let split = Plan { splits: 2, stages_per_split: 6, ..plan };
        let traffic = (2 * 2 * 64 * 8960 * 4 * 2) as f64 / PARTIAL_BYTES_PER_NS;
        assert!((split.cost(560, 2, 2, 132) - (plan.cost(560, 2, 2, 132) * 5.0 / 3.0 / 2.0 + SUM_LAUNCH_NS + traffic)).abs() < 1e-6);
    }

    #[test]
    fn every_plan_fits_shared_memory_within_the_plane_and_split_limits_and_covers_every_stage() {
        for m_tiles in 1..=MAX_ROWS / TILE {
            for (n_tiles, k_tiles) in [(1, 1), (3, 5), (96, 96), (128, 96), (560, 96), (96, 560), (9496, 96), (1184, 224)] {
                for gated in [false, true] {
                    let p = Plan::choose(m_tiles, n_tiles, k_tiles, gated, 2, 132);
                    let parts = if gated { 2 } else { 1 };
                    assert!(p.row_tiles == m_tiles && n_tiles.is_multiple_of(p.col_tiles) && p.row_tiles * p.col_tiles * parts <= PLANES, "{p:?}");
                    assert!(k_tiles.is_multiple_of(p.stage_tiles) && p.splits <= MAX_SPLITS, "{p:?}");
                    let stages = k_tiles / p.stage_tiles;
                    assert!(p.splits * p.stages_per_split >= stages && (p.splits - 1) * p.stages_per_split < stages, "{p:?}: every split has a stage");
                    let sums = if p.splits == 1 { parts * p.row_tiles * p.col_tiles * 1024 } else { 0 };
                    let bytes = (p.row_tiles + parts * p.col_tiles) * 16 * (p.stage_tiles * 32 + 16) + sums;
                    assert!(bytes <= SHARED_BYTES && bytes == p.shared_bytes(parts, 2), "{p:?}: {bytes} bytes");
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
