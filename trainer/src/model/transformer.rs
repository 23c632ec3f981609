//! The decoder-only transformer shared by Qwen2, Llama 3 and OLMo2, with steering vectors and
//! interventions applied inside the forward pass.
//!
//! Per layer (pre-norm: Qwen2, Llama):
//! `h = x + o_proj(attn(input_layernorm(x)))`, `out = h + (mlp(post_attention_layernorm(h)) + s_l)`.
//! OLMo2 (post-norm, RMSNorm on q and k over all heads):
//! `h = x + post_attention_layernorm(attn(x))`,
//! `out = h + post_feedforward_layernorm(mlp(h) + s_l)` — the vector sits where the reference's
//! `down_proj` bias sits, before the post-MLP norm.
//!
//! Weights are frozen tensors on a device without autodiff; steering tensors may be tracked,
//! so gradients flow to them only (no weight gradient is ever computed).

use std::cell::OnceCell;
use std::collections::BTreeMap;

use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::{attention, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::config::{Architecture, ModelConfig};
use crate::model::{attention_kernel, decode_product, norm_kernel, rotary_kernel};
use crate::model::rope::{RopeTables, apply_rotary};
use crate::model::weights::{TensorSource, Weight, WeightMap};
use crate::steering::{LoraPair, Steering};
use crate::steering::intervention::{self, Intervention, LayerInputPatch, Place, Projection, Site};

/// The [`CausalLm::length_multiple`] of models on a GPU.
pub const GPU_LENGTH_MULTIPLE: usize = 64;

/// The default [`CausalLm::chunk_bytes`] (512 MiB): Vulkan refuses single buffers of more than
/// ~2 GiB (a 128-row prefill's f32 attention scores needed 3.1 GB, 4 × 1023 positions of f32
/// logits 2.5 GB), and smaller pieces keep the peak memory down.
pub const MAX_BUFFER_BYTES: usize = 512 << 20;

/// Whether `device` is the CPU backend (flex).
pub(crate) fn on_cpu(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// 1 on the CPU backend, [`GPU_LENGTH_MULTIPLE`] elsewhere.
fn default_length_multiple(device: &Device) -> usize {
    if on_cpu(device) { 1 } else { GPU_LENGTH_MULTIPLE }
}

/// Whether a pass over `x [B, S, ..]` may run the norm and rotary kernels: without autodiff (they
/// have no backward pass) and of at most [`norm_kernel::MAX_ROWS`] rows (decode steps).
fn takes_decode_kernels(x: &Tensor<3>) -> bool {
    let [b, s, _] = x.dims();
    b * s <= norm_kernel::MAX_ROWS && !x.is_autodiff()
}

/// A linear map with its weight stored as `[in, out]` (a transposed view of the checkpoint's
/// `[out, in]`).
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[in, out]`.
    pub weight: Tensor<2>,
    /// `[out]`.
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    fn load(w: &impl TensorSource, prefix: &str, shape_out_in: [usize; 2], bias: bool, device: &Device, dtype: DType) -> Result<Self> {
        let weight = w
            .tensor(&format!("{prefix}.weight"), shape_out_in, device, dtype)?
            .transpose();
        let bias = if bias {
            Some(w.tensor(&format!("{prefix}.bias"), [shape_out_in[0]], device, dtype)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// The maps of `parts` (all with or all without a bias) as one: their outputs side by side.
    fn concat(parts: Vec<Linear>) -> Self {
        let biases: Option<Vec<Tensor<1>>> = parts.iter().map(|p| p.bias.clone()).collect();
        // Concatenated in checkpoint layout `[out, in]` (contiguous rows, which the decode-product
        // kernel reads without a copy), then viewed as `[in, out]`.
        Self {
            weight: Tensor::cat(parts.into_iter().map(|p| p.weight.transpose()).collect(), 0).transpose(),
            bias: biases.map(|b| Tensor::cat(b, 0)),
        }
    }

    /// `x [.., in] → [.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear_rows(x, self.weight.clone(), self.bias.clone())
    }
}

/// `x [.., in] · w [in, out] (+ b [out]) → [.., out]`, computed as one `[N, in] × [in, out]`
/// product over all `N` leading positions: a batched product with a broadcast weight (`[B, 1, in]`
/// in a decode step) would be tuned and run as `B` one-row products.
fn linear_rows<const D: usize>(x: Tensor<D>, w: Tensor<2>, b: Option<Tensor<1>>) -> Tensor<D> {
    let mut dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let [_, out] = w.dims();
    let y = linear(x.reshape([rows, dims[D - 1]]), w, b);
    dims[D - 1] = out;
    y.reshape(dims)
}

/// `t + other`, or `t` without `other`.
fn plus<const D: usize>(t: Tensor<D>, other: Option<Tensor<D>>) -> Tensor<D> {
    match other {
        Some(other) => t + other,
        None => t,
    }
}

/// The dtype of normalisations, softmax and logits: f32, or f64 when computing in f64 (used by
/// the float64 reference checks of gradients).
fn accumulation_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 { DType::F64 } else { DType::F32 }
}

/// RMSNorm computed in f32 (f64 for f64 models), as transformers does, then cast back to the input dtype.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// `[dim]`, in the model's dtype, as transformers keeps it (the checkpoint's dtype). Kept in
    /// f32 for a lower-precision model, its cast in every norm was an operation of its own between
    /// two of burn's fusion blocks, and on the GPU the blocks of a decode step then fell back to
    /// one kernel per operation (docs/performance.md).
    pub weight: Tensor<1>,
    /// Added to the mean square.
    pub eps: f64,
}

impl RmsNorm {
    fn load(w: &impl TensorSource, name: &str, dim: usize, eps: f64, device: &Device, dtype: DType) -> Result<Self> {
        Ok(Self {
            weight: w.tensor(name, [dim], device, dtype)?,
            eps,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = x.cast(accumulation_dtype(dtype));
        let rms = mean_last_dim(x.clone().square()).add_scalar(self.eps).sqrt();
        let weight = self.weight.clone().unsqueeze::<D>();
        // transformers: weight * (x * rsqrt(var + eps)).to(input_dtype)
        (x / rms).cast(dtype) * weight.cast(dtype)
    }
}

/// Columns per block of [`mean_last_dim`].
const REDUCE_BLOCK: usize = 128;

/// The mean over the last dimension (kept, of size 1). A last dimension that is a multiple of
/// 128 (the hidden sizes of real models) is summed in two levels, over `[N, H/128, 128]` blocks
/// and then over the block sums: burn's GPU reduction of a few long rows runs each row on one
/// thread (0.13–0.15 ms for `[64, 1536]` on an H200, docs/performance.md), the blocked form
/// gives it `N·H/128` rows. Other sizes (the tiny test models) use `mean_dim` itself.
fn mean_last_dim<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let h = dims[D - 1];
    if h <= REDUCE_BLOCK || !h.is_multiple_of(REDUCE_BLOCK) {
        return x.mean_dim(D - 1);
    }
    let rows: usize = dims[..D - 1].iter().product();
    let mut kept = dims;
    kept[D - 1] = 1;
    x.reshape([rows, h / REDUCE_BLOCK, REDUCE_BLOCK]).sum_dim(2).sum_dim(1).div_scalar(h as f64).reshape(kept)
}

/// One decoder layer's weights.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    /// q, k and v as one map: weight `[in, (H_q + 2·H_kv)·hd]` (a transposed view of the three
    /// checkpoint weights concatenated), so that a decode step runs one product for the three.
    qkv_proj: Linear,
    o_proj: Linear,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    /// Pre-norm models: before attention. Absent for OLMo2.
    input_layernorm: Option<RmsNorm>,
    /// Pre-norm: before the MLP. OLMo2: after attention.
    post_attention_layernorm: RmsNorm,
    /// OLMo2 only: after the MLP.
    post_feedforward_layernorm: Option<RmsNorm>,
    /// OLMo2 only.
    q_norm: Option<RmsNorm>,
    /// OLMo2 only.
    k_norm: Option<RmsNorm>,
}

/// A layer's q, k and v projections `[B, S, ·]`.
// Made and consumed once per layer; boxing the three handles would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Projections {
    /// q `[B, S, H_q·hd]`, k and v `[B, S, H_kv·hd]`.
    Apart(Tensor<3>, Tensor<3>, Tensor<3>),
    /// The three side by side, `[B, S, (H_q + 2·H_kv)·hd]`, as the fused map wrote them.
    Fused(Tensor<3>),
}

/// Per-layer key/value cache `[B, H_kv, capacity, head_dim]`, filled from position 0. Attention
/// reads the filled positions rounded up to the model's [`CausalLm::length_multiple`] (the
/// positions past the filled ones are masked), so that consecutive decode steps share shapes.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<(Tensor<4>, Tensor<4>)>,
    len: usize,
    capacity: usize,
    multiple: usize,
    /// Set by each pass before its layers run.
    span: CacheSpan,
}

impl KvCache {
    /// An empty cache for `batch` rows and at least `capacity` positions (rounded up to a
    /// multiple of `multiple`), attended in spans of `multiple` positions.
    pub fn new(config: &ModelConfig, batch: usize, capacity: usize, multiple: usize, device: &Device, dtype: DType) -> Self {
        let multiple = multiple.max(1);
        let capacity = capacity.div_ceil(multiple) * multiple;
        let shape = [batch, config.num_kv_heads, capacity, config.head_dim];
        let layers = (0..config.num_layers)
            .map(|_| {
                (
                    Tensor::zeros(shape, (device, dtype)),
                    Tensor::zeros(shape, (device, dtype)),
                )
            })
            .collect();
        let span = CacheSpan { first: 0, start: Tensor::zeros([1], (device, DType::F32)), keys: 0 };
        Self { layers, len: 0, capacity, multiple, span }
    }

    /// How many cached positions attention reads once `end` are filled: `end` rounded up to the
    /// cache's multiple.
    fn attended(&self, end: usize) -> usize {
        (end.div_ceil(self.multiple) * self.multiple).min(self.capacity).max(end)
    }

    /// Number of positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the batch rows `rows` (in that order) and drops the others.
    pub fn retain_rows(&mut self, rows: &[usize], device: &Device) {
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), device);
        for (k, v) in &mut self.layers {
            k.inplace(|k| k.select(0, index.clone()));
            v.inplace(|v| v.select(0, index.clone()));
        }
    }

    /// Writes k (rotated) and v of the fused projection `qkv [B, S, (H_q + 2·H_kv)·hd]` at
    /// the positions of the pass's [`CacheSpan`] in layer `l` with [`rotary_kernel::rotary_into_cache`], and
    /// returns q rotated `[B, H_q, S, hd]` and the attended keys and values `[B, H_kv, keys, hd]`.
    fn append_rotated(&mut self, l: usize, qkv: Tensor<3>, cos: &Tensor<4>, sin: &Tensor<4>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let (k_cache, v_cache) = self.layers.remove(l);
        let (q, k_cache, v_cache) = rotary_kernel::rotary_into_cache(qkv, cos.clone(), sin.clone(), k_cache, v_cache, self.span.start.clone());
        self.layers.insert(l, (k_cache, v_cache));
        let (k, v) = self.attended_views(l, self.span.keys);
        (q, k, v)
    }

    /// The keys and values `[B, H_kv, keys, hd]` of layer `l`.
    fn attended_views(&self, l: usize, keys: usize) -> (Tensor<4>, Tensor<4>) {
        let (ck, cv) = &self.layers[l];
        let [b, h, _, d] = ck.dims();
        (ck.clone().slice([0..b, 0..h, 0..keys, 0..d]), cv.clone().slice([0..b, 0..h, 0..keys, 0..d]))
    }

    /// Stores `k`, `v` `[B, H_kv, S, hd]` of layer `l` at the positions of the pass's
    /// [`CacheSpan`] and returns the attended keys and values `[B, H_kv, keys, hd]`.
    fn append(&mut self, l: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, s, d] = k.dims();
        let (start, end) = (self.span.first, self.span.first + s);
        let (ck, cv) = &mut self.layers[l];
        ck.inplace(|c| c.slice_assign([0..b, 0..h, start..end, 0..d], k));
        cv.inplace(|c| c.slice_assign([0..b, 0..h, start..end, 0..d], v));
        self.attended_views(l, self.span.keys)
    }

    /// Positions (capacity) per row.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counts `positions` more as filled: after [`CausalLm::decode_step`], which writes a
    /// position without counting it (a captured step runs more than once).
    pub fn advance(&mut self, positions: usize) -> Result<()> {
        if self.len + positions > self.capacity {
            return Err(Error::InvalidArgument(format!(
                "KV cache of capacity {} holds {} positions and cannot take {positions} more",
                self.capacity, self.len
            )));
        }
        self.len += positions;
        Ok(())
    }
}

/// Where the current pass over a KV cache writes its keys and values and what its attention
/// reads.
#[derive(Debug, Clone)]
struct CacheSpan {
    /// The first position written, on the host (burn's cache writes).
    first: usize,
    /// The same as an f32 tensor `[1]` on the device (the rotary kernel's cache writes, which a
    /// captured decode step replays with each step's position).
    start: Tensor<1>,
    /// How many cached positions attention reads.
    keys: usize,
}

/// Where each row of a batch starts: rows are left-padded to a common length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLayout {
    /// Number of padding positions at the start of each row.
    pub pads: Vec<usize>,
}

impl BatchLayout {
    /// Left-pads `rows` to their longest length with `pad_id`; returns the token matrix `[B, S]`
    /// (row-major), its width `S` and the layout.
    pub fn left_pad(rows: &[Vec<u32>], pad_id: u32) -> (Vec<u32>, usize, Self) {
        Self::left_pad_to(rows, pad_id, 0)
    }

    /// [`BatchLayout::left_pad`] to a width of at least `width` (more padding on the left).
    pub fn left_pad_to(rows: &[Vec<u32>], pad_id: u32, width: usize) -> (Vec<u32>, usize, Self) {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(width);
        let mut tokens = Vec::with_capacity(rows.len() * width);
        let mut pads = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = width - row.len();
            tokens.extend(std::iter::repeat_n(pad_id, pad));
            tokens.extend_from_slice(row);
            pads.push(pad);
        }
        (tokens, width, Self { pads })
    }

    /// Rotary positions `[B, S]` of columns `start..start+S` (padding gets position 0).
    pub fn positions(&self, start: usize, len: usize, device: &Device) -> Tensor<2, Int> {
        let mut data = Vec::with_capacity(self.pads.len() * len);
        for &pad in &self.pads {
            data.extend((start..start + len).map(|c| c.saturating_sub(pad) as i64));
        }
        Tensor::from_data(TensorData::new(data, [self.pads.len(), len]), device)
    }

    /// Additive attention mask `[B, 1, S, K]` (0 allowed, −∞ masked) for queries at columns
    /// `start..start+S` over `K ≥ start+S` key columns: causal, padding masked; a padding query
    /// sees only itself.
    pub fn mask(&self, start: usize, len: usize, keys: usize, device: &Device) -> Tensor<4> {
        let total = start + len;
        let keys = keys.max(total);
        let mut data = Vec::with_capacity(self.pads.len() * len * keys);
        for &pad in &self.pads {
            for q in start..total {
                data.extend((0..keys).map(|k| {
                    if k <= q && (k >= pad || k == q) { 0.0f32 } else { f32::NEG_INFINITY }
                }));
            }
        }
        Tensor::from_data(TensorData::new(data, [self.pads.len(), 1, len, keys]), device)
    }
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// Final-normed hidden states `[B, S, H]` (feed to [`CausalLm::logits`]).
    pub hidden: Tensor<3>,
    /// With [`Intervention::RecordHiddenStates`]: the residual stream after each layer,
    /// `L` tensors `[B, S, H]` (before the final norm).
    pub hidden_states: Vec<Tensor<3>>,
}

/// The steering and interventions of one forward pass, resolved to per-layer tensors in the
/// model's dtype (cast once per pass, not in every layer of every decode step).
#[derive(Clone)]
pub(super) struct Plan {
    /// Vector added after layer l's MLP, `[H]`, when non-zero.
    pub(super) after_mlp: Vec<Option<Tensor<1>>>,
    /// Vectors added at places `[H]`, summed per place.
    pub(super) at_place: BTreeMap<Place, Tensor<1>>,
    /// Layer → (patch, moved vector `[H]` of the previous layer).
    patches: BTreeMap<usize, (LayerInputPatch, Tensor<1>)>,
    /// LoRA adapter of layer l's `down_proj`, if any.
    pub(super) lora: Vec<Option<LoraPair>>,
    record: bool,
}

impl Plan {
    /// Whether layer `l` reads a steering tensor (its vector, an at-place vector, a LoRA adapter).
    pub(super) fn steers(&self, l: usize) -> bool {
        self.after_mlp[l].is_some() || self.lora[l].is_some() || self.at_place.keys().any(|p| p.layer == l)
    }
}

/// The constants of a replayable decode step ([`CausalLm::replayable_step`]): the rows'
/// paddings `[B, 1]` and the cache's key columns `[1, C]` (f32), and the resolved steering.
pub struct DecodeStep {
    pads: Tensor<2>,
    key_columns: Tensor<2>,
    plan: Plan,
}

/// What every layer of one forward pass shares: the rotary tables of its positions
/// `[B, 1, S, hd]`, its attention mask `[B, 1, S, T]` and its resolved steering.
pub(super) struct Pass {
    /// Rotary tables `[B, 1, S, head_dim]` in the model's dtype (cast once per pass, not in
    /// every layer's rotation of q and k).
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// Additive mask `[B, 1, S, T]` of the materialised attention.
    mask: Tensor<4>,
    /// The fused attention's mask `[B, H_kv, rep·S, T]` (true = masked), built on first use.
    masked: OnceCell<Tensor<4, Bool>>,
    /// The decode-attention kernel's mask `[B, 1, 1, T]`: `mask` in the model's dtype, cast on
    /// first use.
    kernel_mask: OnceCell<Tensor<4>>,
    pub(super) plan: Plan,
}

/// A causal language model: embeddings, decoder layers, final norm, LM head.
#[derive(Debug, Clone)]
pub struct CausalLm {
    /// The parsed `config.json`.
    pub config: ModelConfig,
    /// Device holding the weights (without autodiff).
    pub device: Device,
    /// Compute dtype of weights and activations.
    pub dtype: DType,
    /// Sequence lengths are padded up to a multiple of this: prompt widths, completion widths
    /// in log-probability passes, and the key span attention reads from the KV cache. On the GPU
    /// every new tensor shape costs host-side work (fusion planning, autotune look-ups: a decode
    /// step took 41 ms when its shapes had been seen and 133–315 ms when not, on an H200), so
    /// GPU models use [`GPU_LENGTH_MULTIPLE`]; the CPU backend 1 (no padding). Results do not
    /// depend on it beyond floating-point summation order (the padding is masked).
    pub length_multiple: usize,
    /// Largest intermediate buffer a forward pass or a log-probability pass creates at once
    /// (attention scores, logits); longer work is split into pieces. Default
    /// [`MAX_BUFFER_BYTES`].
    pub chunk_bytes: usize,
    /// When set, attention of passes without autodiff (generation, evaluation, the forward pass
    /// of layer recomputation) runs as one fused kernel (`burn::tensor::module::attention`: flash
    /// attention on CubeCL backends) that never materialises the scores; passes with autodiff
    /// always materialise them. Default `false`: on an H200 through Vulkan the fused kernel was
    /// no faster (prefill 507 against 473 ms, a decode step 61 against 62 ms at 64 × 256 tokens)
    /// and every new key length autotunes it again (docs/performance.md).
    pub fused_attention: bool,
    /// When set, the products of a decode step (at most [`decode_product::MAX_ROWS`] rows,
    /// without autodiff) run as the trainer's own kernel ([`decode_product`]) instead of burn's
    /// `linear`: q, k and v as one product with their biases, `o_proj` with the residual stream
    /// added, `gate_proj` and `up_proj` with the gating as one launch, and `down_proj` with the
    /// steering vector and the residual stream added. Default: set on GPU backends, unset on the CPU (where both are the same
    /// `matmul`). Once the norms, the rotary embedding and the attention of a decode step ran as
    /// the trainer's kernels too, an H200 decode step of the 1.5B shape took 21.2 ms with it
    /// against 26.5 ms without (docs/performance.md); before, it was slower (63 against 57 ms),
    /// because burn fused the element-wise work after its own products and not after a custom
    /// kernel.
    pub decode_kernel: bool,
    /// When set, the RMSNorms of passes without autodiff of at most [`norm_kernel::MAX_ROWS`]
    /// rows (decode steps) run as the trainer's own kernel ([`norm_kernel`]: one launch per norm
    /// instead of four or five) instead of burn's operations. Default: set on GPU backends (an
    /// H200 decode step of the 1.5B shape took 34.0 against 38.8 ms, docs/performance.md), unset
    /// on the CPU, where burn's operations stay the reference of every parity test.
    pub fused_norm: bool,
    /// When set, the rotary embedding of q and k in the same passes as [`CausalLm::fused_norm`]'s
    /// runs as the trainer's own kernel instead of burn's operations: with a KV cache, one launch
    /// per layer rotates q and k of the fused projection and writes k and v into the cache
    /// ([`rotary_kernel::rotary_into_cache`]); without, one launch per projection. Default: set
    /// on GPU backends, unset on the CPU.
    pub rotary_kernel: bool,
    /// When set, the attention of passes of one query position without autodiff (decode steps)
    /// runs as the trainer's own kernel ([`attention_kernel`]: one launch per layer instead of
    /// six to eight) instead of burn's operations. Default: set on GPU backends, unset on the CPU.
    pub decode_attention: bool,
    /// When set, generation records its decode step once per batch shape as a graph and replays
    /// it ([`crate::rollout::graph`]) where the step allows ([`CausalLm::replayable_step`]): the
    /// host then issues one replay per step instead of every launch through burn. Default: set
    /// on GPU backends, unset on the CPU (which records no graphs).
    pub decode_graph: bool,
    /// When set, generation on GPU backends samples each step's rows in one launch of the
    /// trainer's sampling kernel ([`crate::rollout::sampling_kernel`]) where the sampling has no
    /// top-k or top-p, instead of burn's operations (about twenty launches). Default: set on GPU
    /// backends, unset on the CPU (which keeps burn's operations either way).
    pub sampling_kernel: bool,
    embed_tokens: Tensor<2>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `[H, V]`; `None` when tied to the embeddings.
    lm_head: Option<Tensor<2>>,
    rope: RopeTables,
}

impl CausalLm {
    /// Loads the weights of `config` from `weights` (a checkpoint or [`RandomWeights`](crate::model::weights::RandomWeights))
    /// onto `device` in `dtype`.
    pub fn load(config: ModelConfig, weights: &impl TensorSource, device: &Device, dtype: DType) -> Result<Self> {
        let c = &config;
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let (q_dim, kv_dim) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let olmo = c.architecture == Architecture::Olmo2;
        let mut layers = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let p = format!("model.layers.{l}");
            let lin = |name: &str, shape, bias| Linear::load(weights, &format!("{p}.{name}"), shape, bias, device, dtype);
            let norm = |name: &str, dim| RmsNorm::load(weights, &format!("{p}.{name}.weight"), dim, c.rms_norm_eps, device, dtype);
            let qkv = [("q", q_dim), ("k", kv_dim), ("v", kv_dim)].map(|(name, dim)| lin(&format!("self_attn.{name}_proj"), [dim, h], c.qkv_bias));
            layers.push(DecoderLayer {
                qkv_proj: Linear::concat(qkv.into_iter().collect::<Result<Vec<_>>>()?),
                o_proj: lin("self_attn.o_proj", [h, q_dim], c.o_bias)?,
                gate_proj: lin("mlp.gate_proj", [i, h], c.mlp_bias)?,
                up_proj: lin("mlp.up_proj", [i, h], c.mlp_bias)?,
                down_proj: lin("mlp.down_proj", [h, i], c.mlp_bias)?,
                input_layernorm: if olmo { None } else { Some(norm("input_layernorm", h)?) },
                post_attention_layernorm: norm("post_attention_layernorm", h)?,
                post_feedforward_layernorm: if olmo { Some(norm("post_feedforward_layernorm", h)?) } else { None },
                q_norm: if olmo { Some(norm("self_attn.q_norm", q_dim)?) } else { None },
                k_norm: if olmo { Some(norm("self_attn.k_norm", kv_dim)?) } else { None },
            });
        }
        let embed_tokens = weights.tensor("model.embed_tokens.weight", [c.vocab_size, h], device, dtype)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(weights.tensor("lm_head.weight", [c.vocab_size, h], device, dtype)?.transpose())
        };
        let norm = RmsNorm::load(weights, "model.norm.weight", h, c.rms_norm_eps, device, dtype)?;
        let rope = RopeTables::new(&c.rope, c.head_dim, c.max_position_embeddings, device);
        let on_gpu = !on_cpu(device);
        Ok(Self {
            config,
            device: device.clone(),
            dtype,
            length_multiple: default_length_multiple(device),
            chunk_bytes: MAX_BUFFER_BYTES,
            fused_attention: false,
            decode_kernel: on_gpu,
            fused_norm: on_gpu,
            rotary_kernel: on_gpu,
            decode_attention: on_gpu,
            decode_graph: on_gpu,
            sampling_kernel: on_gpu,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
        })
    }

    /// Every weight under its checkpoint name, in checkpoint layout (`[out, in]` for linear maps):
    /// the inverse of [`CausalLm::load`] (a model loaded from the result equals this one).
    pub fn named_weights(&self) -> WeightMap {
        let mut out = std::collections::BTreeMap::new();
        out.insert("model.embed_tokens.weight".into(), Weight::Matrix(self.embed_tokens.clone()));
        if let Some(head) = &self.lm_head {
            out.insert("lm_head.weight".into(), Weight::Matrix(head.clone().transpose()));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let qkv = self.qkv_parts(&layer.qkv_proj);
            let [q, k, v] = ["q", "k", "v"].map(|name| format!("self_attn.{name}_proj"));
            for (name, lin) in [
                (q.as_str(), &qkv[0]),
                (k.as_str(), &qkv[1]),
                (v.as_str(), &qkv[2]),
                ("self_attn.o_proj", &layer.o_proj),
                ("mlp.gate_proj", &layer.gate_proj),
                ("mlp.up_proj", &layer.up_proj),
                ("mlp.down_proj", &layer.down_proj),
            ] {
                out.insert(format!("{p}.{name}.weight"), Weight::Matrix(lin.weight.clone().transpose()));
                if let Some(b) = &lin.bias {
                    out.insert(format!("{p}.{name}.bias"), Weight::Vector(b.clone()));
                }
            }
            let norms = [
                ("input_layernorm", layer.input_layernorm.as_ref()),
                ("post_attention_layernorm", Some(&layer.post_attention_layernorm)),
                ("post_feedforward_layernorm", layer.post_feedforward_layernorm.as_ref()),
                ("self_attn.q_norm", layer.q_norm.as_ref()),
                ("self_attn.k_norm", layer.k_norm.as_ref()),
            ];
            for (name, norm) in norms {
                if let Some(norm) = norm {
                    out.insert(format!("{p}.{name}.weight"), Weight::Vector(norm.weight.clone()));
                }
            }
        }
        out.insert("model.norm.weight".into(), Weight::Vector(self.norm.weight.clone()));
        WeightMap(out)
    }

    /// This model with its weights replaced by `weights` (same names and shapes as
    /// [`CausalLm::named_weights`]); tracked tensors stay tracked, so gradients reach them.
    pub fn with_weights(&self, weights: &WeightMap) -> Result<Self> {
        let mut model = Self::load(self.config.clone(), weights, &self.device, self.dtype)?;
        model.length_multiple = self.length_multiple;
        model.chunk_bytes = self.chunk_bytes;
        model.fused_attention = self.fused_attention;
        model.decode_kernel = self.decode_kernel;
        model.fused_norm = self.fused_norm;
        model.rotary_kernel = self.rotary_kernel;
        model.decode_attention = self.decode_attention;
        model.decode_graph = self.decode_graph;
        Ok(model)
    }

    /// `len` rounded up to a multiple of [`CausalLm::length_multiple`], leaving `room` of the
    /// model's positions free (never less than `len`).
    pub fn padded_len(&self, len: usize, room: usize) -> usize {
        let m = self.length_multiple.max(1);
        let limit = self.config.max_position_embeddings.saturating_sub(room);
        (len.div_ceil(m) * m).min(limit).max(len)
    }

    /// [`BatchLayout::left_pad`] to the longest row's length rounded up by
    /// [`CausalLm::padded_len`], leaving `room` positions: `(tokens [B, S], S, layout)`.
    pub fn left_pad(&self, rows: &[Vec<u32>], pad_id: u32, room: usize) -> (Vec<u32>, usize, BatchLayout) {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        BatchLayout::left_pad_to(rows, pad_id, self.padded_len(longest, room))
    }

    /// An empty KV cache for `batch` rows and at least `capacity` positions.
    pub fn kv_cache(&self, batch: usize, capacity: usize) -> KvCache {
        KvCache::new(&self.config, batch, capacity, self.length_multiple, &self.device, self.dtype)
    }

    /// Logits `[B, S, V]` in f32 (f64 for an f64 model) of final-normed hidden states `[B, S, H]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let head = match &self.lm_head {
            Some(w) => w.clone(),
            None => self.embed_tokens.clone().transpose(),
        };
        linear_rows(hidden, head, None).cast(accumulation_dtype(self.dtype))
    }

    /// Runs tokens `[B, S]` at columns `start..start+S` of `layout` (`start` = positions already in
    /// `cache`; 0 without cache) through the model with `steering` and `interventions`.
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        layout: &BatchLayout,
        mut cache: Option<&mut KvCache>,
        steering: &Steering,
        interventions: &[Intervention],
    ) -> Result<ForwardOutput> {
        let [b, s] = tokens.dims();
        let start = cache.as_ref().map_or(0, |c| c.len);
        self.check_pass(&tokens, layout, start)?;
        if let Some(c) = &cache
            && (start + s > c.capacity || c.layers.first().is_some_and(|(k, _)| k.dims()[0] != b))
        {
            return Err(Error::InvalidArgument(format!(
                "KV cache of capacity {} cannot take {} more positions for {b} rows",
                c.capacity, s
            )));
        }
        let keys = cache.as_ref().map_or(start + s, |c| c.attended(start + s));
        let pass = self.pass(layout, start, s, keys, steering, interventions)?;
        if let Some(c) = cache.as_deref_mut() {
            let at = Tensor::from_data(TensorData::new(vec![start as f32], [1]), &self.device);
            c.span = CacheSpan { first: start, start: at, keys };
        }
        let mut x = self.embed(tokens);
        let mut hidden_states = Vec::new();
        for l in 0..self.layers.len() {
            x = self.layer(l, x, &pass, cache.as_deref_mut());
            if pass.plan.record {
                hidden_states.push(x.clone());
            }
        }
        if let Some(c) = cache {
            c.len += s;
        }
        Ok(ForwardOutput {
            hidden: self.rms_norm(&self.norm, x),
            hidden_states,
        })
    }

    /// What a decode step of `layout`'s rows over `cache` with `steering` needs to be captured
    /// once and replayed ([`CausalLm::decode_step`]), or `None` where such a step would read a
    /// value from the host that a replay does not refresh: its cache writes must all go through
    /// the rotary kernel ([`CausalLm::rotary_kernel`] on, no q/k norms (OLMo2), at most
    /// [`norm_kernel::MAX_ROWS`] rows, no tracked tensor) and no intervention may patch layer
    /// inputs or record hidden states.
    pub fn replayable_step(&self, layout: &BatchLayout, cache: &KvCache, steering: &Steering, interventions: &[Intervention]) -> Result<Option<DecodeStep>> {
        let plan = self.plan(steering, interventions)?;
        let rows = layout.pads.len();
        let tracked = self.embed_tokens.is_autodiff()
            || plan.after_mlp.iter().flatten().chain(plan.at_place.values()).any(Tensor::is_autodiff)
            || plan.lora.iter().flatten().any(|p| p.a.is_autodiff() || p.b.is_autodiff());
        let kernel_writes = self.rotary_kernel && self.layers.iter().all(|l| l.q_norm.is_none()) && rows <= norm_kernel::MAX_ROWS;
        if !kernel_writes || tracked || !plan.patches.is_empty() || plan.record || cache.layers.first().is_some_and(|(k, _)| k.dims()[0] != rows) {
            return Ok(None);
        }
        let pads: Vec<f32> = layout.pads.iter().map(|&p| p as f32).collect();
        let columns: Vec<f32> = (0..cache.capacity).map(|c| c as f32).collect();
        Ok(Some(DecodeStep {
            pads: Tensor::from_data(TensorData::new(pads, [rows, 1]), &self.device),
            key_columns: Tensor::from_data(TensorData::new(columns, [1, cache.capacity]), &self.device),
            plan,
        }))
    }

    /// One decode step whose every input is a device tensor, so that it can be captured as a
    /// graph and replayed ([`crate::rollout::graph`]): token ids `ids [B, 1]` (f32, exact below
    /// 2²⁴) at cache column `column [1]` (f32; the column of every row, i.e. the cache's
    /// length) → the final-normed hidden states `[B, 1, H]`. The step writes its keys and values
    /// at `column` and attends to every position of the cache up to it (the rest masked), so
    /// its shapes stay the same from step to step; it does not count the position as filled
    /// (see [`KvCache::advance`]).
    pub fn decode_step(&self, step: &DecodeStep, ids: &Tensor<2>, column: &Tensor<1>, cache: &mut KvCache) -> Tensor<3> {
        let [b, _] = ids.dims();
        let capacity = cache.capacity;
        let at = column.clone().reshape([1, 1]).expand([b, 1]);
        let positions = (at.clone() - step.pads.clone()).clamp_min(0.0).int();
        let (cos, sin) = self.rope.gather(&positions);
        let (cos, sin) = (cos.cast(self.dtype), sin.cast(self.dtype));
        // Key `k` is attended when k ≤ column and it is not padding (a padding query sees itself).
        let keys = step.key_columns.clone().expand([b, capacity]);
        let at = at.expand([b, capacity]);
        let allowed = keys.clone().lower_equal(at.clone()).bool_and(keys.clone().greater_equal(step.pads.clone().expand([b, capacity])).bool_or(keys.equal(at)));
        let mask = Tensor::<2>::zeros([b, capacity], (&self.device, DType::F32)).mask_fill(allowed.bool_not(), f32::NEG_INFINITY).reshape([b, 1, 1, capacity]);
        let pass = Pass { cos, sin, mask, masked: OnceCell::new(), kernel_mask: OnceCell::new(), plan: step.plan.clone() };
        cache.span = CacheSpan { first: cache.len, start: column.clone(), keys: capacity };
        let mut x = self.embed(ids.clone().int());
        for l in 0..self.layers.len() {
            x = self.layer(l, x, &pass, Some(cache));
        }
        self.final_norm(x)
    }

    /// Checks that tokens `[B, S]` at columns `start..start+S` fit `layout` and the rotary tables.
    pub(super) fn check_pass(&self, tokens: &Tensor<2, Int>, layout: &BatchLayout, start: usize) -> Result<()> {
        let [b, s] = tokens.dims();
        if layout.pads.len() != b {
            return Err(Error::InvalidArgument(format!(
                "batch layout has {} rows but the tokens have {b}",
                layout.pads.len()
            )));
        }
        if start + s > self.rope.len() {
            return Err(Error::InvalidArgument(format!(
                "sequence of {} positions exceeds the {} the rotary tables cover",
                start + s,
                self.rope.len()
            )));
        }
        Ok(())
    }

    /// The embeddings `[B, S, H]` of tokens `[B, S]`: the residual stream entering layer 0.
    pub(super) fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = tokens.dims();
        self.embed_tokens
            .clone()
            .select(0, tokens.reshape([b * s]))
            .reshape([b, s, self.config.hidden_size])
    }

    /// The final norm of the residual stream `[B, S, H]` leaving the last layer (the input of
    /// [`CausalLm::logits`]).
    pub(super) fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        self.rms_norm(&self.norm, x)
    }

    /// What the layers of a pass over columns `start..start+len` of `layout`, attending to
    /// `keys` key positions, share.
    pub(super) fn pass(
        &self,
        layout: &BatchLayout,
        start: usize,
        len: usize,
        keys: usize,
        steering: &Steering,
        interventions: &[Intervention],
    ) -> Result<Pass> {
        let plan = self.plan(steering, interventions)?;
        let (cos, sin) = self.rope.gather(&layout.positions(start, len, &self.device));
        let (cos, sin) = (cos.cast(self.dtype), sin.cast(self.dtype));
        let mask = layout.mask(start, len, keys, &self.device);
        Ok(Pass { cos, sin, mask, masked: OnceCell::new(), kernel_mask: OnceCell::new(), plan })
    }

    pub(super) fn plan(&self, steering: &Steering, interventions: &[Intervention]) -> Result<Plan> {
        let c = &self.config;
        intervention::validate(interventions, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads)?;
        let (num_layers, hidden) = (c.num_layers, c.hidden_size);
        let f32_vec = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [hidden]), &self.device);
        let mut vectors = steering.layer_vectors(num_layers, hidden)?;
        let mut at_place: BTreeMap<Place, Tensor<1>> = BTreeMap::new();
        if let Some((place, v)) = steering.place_vector() {
            at_place.insert(place, v);
        }
        let mut patches = BTreeMap::new();
        let mut record = false;
        for iv in interventions {
            match iv {
                Intervention::ScaleVectors(f) => vectors = vectors.map(|v| v.mul_scalar(*f)),
                Intervention::KeepLayers(keep) => {
                    let mask: Vec<f32> = (0..num_layers).map(|l| f32::from(u8::from(keep.contains(&l)))).collect();
                    let mask = Tensor::<2>::from_data(TensorData::new(mask, [num_layers, 1]), &self.device);
                    vectors = vectors.map(|v| v * mask);
                }
                Intervention::ReplaceVector { layer, vector } => {
                    let base = vectors.unwrap_or_else(|| Tensor::zeros([num_layers, hidden], &self.device));
                    let row = f32_vec(vector).reshape([1, hidden]);
                    vectors = Some(base.slice_assign([*layer..*layer + 1, 0..hidden], row));
                }
                Intervention::AddAt { place, vector } => {
                    let v = f32_vec(vector);
                    let sum = match at_place.remove(place) {
                        Some(prev) => prev + v,
                        None => v,
                    };
                    at_place.insert(*place, sum);
                }
                Intervention::PatchLayerInput { layer, patch } => {
                    patches.insert(*layer, *patch);
                }
                Intervention::RecordHiddenStates => record = true,
            }
        }
        let olmo = c.architecture == Architecture::Olmo2;
        for place in at_place.keys() {
            let ok = match place.site {
                Site::InputLayernorm => !olmo,
                Site::PostFeedforwardLayernorm => olmo,
                _ => true,
            };
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "{place}: {} has no `{}` module",
                    c.architecture.hf_name(),
                    place.site.hf_name()
                )));
            }
        }
        let dtype = self.dtype;
        let vectors = vectors.map(|v| v.cast(dtype));
        let row = |l: usize| vectors.as_ref().map(|v| v.clone().slice([l..l + 1, 0..hidden]).reshape([hidden]));
        let mut after_mlp: Vec<Option<Tensor<1>>> = (0..num_layers).map(row).collect();
        let at_place = at_place.into_iter().map(|(place, v)| (place, v.cast(dtype))).collect();
        let patches = patches
            .into_iter()
            .map(|(layer, patch)| {
                let moved = after_mlp[layer - 1]
                    .take()
                    .unwrap_or_else(|| Tensor::zeros([hidden], (&self.device, dtype)));
                (layer, (patch, moved))
            })
            .collect();
        let lora = steering
            .lora(num_layers, c.intermediate_size, hidden)?
            .into_iter()
            .map(|pair| pair.map(|LoraPair { a, b }| LoraPair { a: a.cast(dtype), b: b.cast(dtype) }))
            .collect();
        Ok(Plan { after_mlp, at_place, patches, lora, record })
    }

    /// Layer `l` applied to the residual stream `x` `[B, S, H]`.
    pub(super) fn layer(&self, l: usize, x: Tensor<3>, pass: &Pass, cache: Option<&mut KvCache>) -> Tensor<3> {
        let (layer, plan) = (&self.layers[l], &pass.plan);
        let add = |t: Tensor<3>, site: Site| match plan.at_place.get(&Place { layer: l, site }) {
            Some(v) => t + v.clone().unsqueeze::<3>(),
            None => t,
        };
        let patch = plan.patches.get(&l).map(|(p, s)| (*p, s.clone().unsqueeze::<3>()));
        let attn_input = |x: Tensor<3>| match &layer.input_layernorm {
            Some(norm) => add(self.rms_norm(norm, x), Site::InputLayernorm),
            None => x,
        };
        let projections = match &patch {
            None => self.qkv(layer, attn_input(x.clone())),
            Some((p, s)) => {
                let vanilla = self.apart(self.qkv(layer, attn_input(x.clone())));
                let steered = self.apart(self.qkv(layer, attn_input(x.clone() + s.clone())));
                let (q, k, v) = self.mix_qkv(p, vanilla, steered);
                Projections::Apart(q, k, v)
            }
        };
        let residual = match &patch {
            Some((p, s)) if p.residual_steered() => x + s.clone(),
            _ => x,
        };
        let skip = match &patch {
            Some((LayerInputPatch::SkipLayer, s)) => Some(s.clone()),
            _ => None,
        };
        let (vector, lora) = (plan.after_mlp[l].as_ref(), plan.lora[l].as_ref());
        let intervenes_at = |site: Site| plan.at_place.contains_key(&Place { layer: l, site });
        match &layer.post_feedforward_layernorm {
            // Pre-norm models: the residual stream is added in the launches of `o_proj` and
            // `down_proj` unless an intervention adds a vector to their outputs first.
            None => {
                let h = if intervenes_at(Site::SelfAttn) {
                    residual + add(self.attention(l, layer, projections, pass, cache, None), Site::SelfAttn)
                } else {
                    self.attention(l, layer, projections, pass, cache, Some(residual))
                };
                let mlp_in = add(self.rms_norm(&layer.post_attention_layernorm, h.clone()), Site::PostAttentionLayernorm);
                if !intervenes_at(Site::Mlp) && skip.is_none() {
                    return self.mlp(layer, mlp_in, vector, lora, Some(h));
                }
                let mlp_out = add(self.mlp(layer, mlp_in, vector, lora, None), Site::Mlp);
                h + plus(mlp_out, skip)
            }
            Some(post_ff) => {
                let attn = add(self.attention(l, layer, projections, pass, cache, None), Site::SelfAttn);
                let h = residual + add(self.rms_norm(&layer.post_attention_layernorm, attn), Site::PostAttentionLayernorm);
                let m = add(self.mlp(layer, h.clone(), vector, lora, None), Site::Mlp);
                let mlp_out = add(self.rms_norm(post_ff, m), Site::PostFeedforwardLayernorm);
                h + plus(mlp_out, skip)
            }
        }
    }

    /// `norm(x)` for `x [B, S, H]`: one kernel per norm ([`norm_kernel`]) in passes of at most
    /// [`norm_kernel::MAX_ROWS`] rows without autodiff when [`CausalLm::fused_norm`] is set,
    /// burn's operations otherwise.
    fn rms_norm(&self, norm: &RmsNorm, x: Tensor<3>) -> Tensor<3> {
        if !self.fused_norm || !takes_decode_kernels(&x) {
            return norm.forward(x);
        }
        let [b, s, h] = x.dims();
        norm_kernel::rms_norm_rows(x.reshape([b * s, h]), norm.weight.clone(), norm.eps).reshape([b, s, h])
    }

    /// Whether the products of `x [B, S, in]` run as the decode-product kernel: rows of a decode
    /// step (at most [`decode_product::MAX_ROWS`]) without autodiff in `x` or in any of the other
    /// operands (`tracked` says which are tracked; the kernel has no backward pass), when
    /// [`CausalLm::decode_kernel`] is set.
    fn takes_decode_products(&self, x: &Tensor<3>, tracked: &[bool]) -> bool {
        let [b, s, _] = x.dims();
        self.decode_kernel && b * s <= decode_product::MAX_ROWS && !x.is_autodiff() && !tracked.contains(&true)
    }

    /// `lin(x)` for `x [B, S, in]` (see [`CausalLm::linear_plus`]).
    fn linear(&self, lin: &Linear, x: Tensor<3>) -> Tensor<3> {
        self.linear_plus(lin, x, None)
    }

    /// `lin(x) + residual` for `x [B, S, in]` and `residual [B, S, out]`: the decode-product
    /// kernel (bias and residual added in the same launch) where
    /// [`CausalLm::takes_decode_products`], burn's `linear` and add otherwise.
    fn linear_plus(&self, lin: &Linear, x: Tensor<3>, residual: Option<Tensor<3>>) -> Tensor<3> {
        let tracked = [lin.weight.is_autodiff(), lin.bias.as_ref().is_some_and(Tensor::is_autodiff), residual.as_ref().is_some_and(Tensor::is_autodiff)];
        if !self.takes_decode_products(&x, &tracked) {
            return plus(lin.forward(x), residual);
        }
        let [b, s, k] = x.dims();
        let residual = residual.map(|r| {
            let n = r.dims()[2];
            r.reshape([b * s, n])
        });
        let y = decode_product::decode_product(x.reshape([b * s, k]), lin.weight.clone().transpose(), lin.bias.clone(), residual);
        let n = y.dims()[1];
        y.reshape([b, s, n])
    }

    /// The column ranges of q, k and v in the fused projection.
    fn qkv_ranges(&self) -> [std::ops::Range<usize>; 3] {
        let c = &self.config;
        let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        [0..q, q..q + kv, q + kv..q + 2 * kv]
    }

    /// The q, k and v maps of a fused `qkv_proj` (views of its weight and bias).
    fn qkv_parts(&self, qkv: &Linear) -> [Linear; 3] {
        self.qkv_ranges().map(|r| Linear {
            weight: qkv.weight.clone().narrow(1, r.start, r.len()),
            bias: qkv.bias.clone().map(|b| b.narrow(0, r.start, r.len())),
        })
    }

    /// q `[B,S,H_q·hd]`, k and v `[B,S,H_kv·hd]` of `projections`.
    fn apart(&self, projections: Projections) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        match projections {
            Projections::Apart(q, k, v) => (q, k, v),
            Projections::Fused(qkv) => {
                let [q, k, v] = self.qkv_ranges().map(|r| qkv.clone().narrow(2, r.start, r.len()));
                (q, k, v)
            }
        }
    }

    /// The projections of `x [B, S, H]` (after OLMo2's q/k norms, before RoPE), by one product.
    fn qkv(&self, layer: &DecoderLayer, x: Tensor<3>) -> Projections {
        let fused = Projections::Fused(self.linear(&layer.qkv_proj, x));
        match (&layer.q_norm, &layer.k_norm) {
            (Some(qn), Some(kn)) => {
                let (q, k, v) = self.apart(fused);
                Projections::Apart(self.rms_norm(qn, q), self.rms_norm(kn, k), v)
            }
            _ => fused,
        }
    }

    /// Takes each head of q, k, v from the vanilla or the steered projections, as `patch` says.
    fn mix_qkv(
        &self,
        patch: &LayerInputPatch,
        vanilla: (Tensor<3>, Tensor<3>, Tensor<3>),
        steered: (Tensor<3>, Tensor<3>, Tensor<3>),
    ) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let hd = self.config.head_dim;
        let mix = |p: Projection, heads: usize, v: Tensor<3>, s: Tensor<3>| {
            let [b, n, _] = v.dims();
            let mut out = v;
            for head in (0..heads).filter(|&head| patch.steered(p, head)) {
                let cols = head * hd..(head + 1) * hd;
                let part = s.clone().slice([0..b, 0..n, cols.clone()]);
                out = out.slice_assign([0..b, 0..n, cols], part);
            }
            out
        };
        let (c_q, c_kv) = (self.config.num_heads, self.config.num_kv_heads);
        (
            mix(Projection::Q, c_q, vanilla.0, steered.0),
            mix(Projection::K, c_kv, vanilla.1, steered.1),
            mix(Projection::V, c_kv, vanilla.2, steered.2),
        )
    }

    /// Self-attention of layer `l` (rotary embedding, KV cache, grouped-query attention, `o_proj`)
    /// on `projections`, plus `residual [B, S, H]` when given.
    ///
    /// In a decode step with the rotary kernel and a cache, the fused projection goes through
    /// [`rotary_kernel::rotary_into_cache`]: one launch rotates q and k and writes k and v into
    /// the cache.
    fn attention(
        &self,
        l: usize,
        layer: &DecoderLayer,
        projections: Projections,
        pass: &Pass,
        cache: Option<&mut KvCache>,
        residual: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let c = &self.config;
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let (q, k, v) = match (projections, cache) {
            (Projections::Fused(qkv), Some(cache)) if self.rotary_kernel && takes_decode_kernels(&qkv) => cache.append_rotated(l, qkv, &pass.cos, &pass.sin),
            (projections, cache) => {
                let (q, k, v) = self.apart(projections);
                let [b, s, _] = q.dims();
                let heads = |t: Tensor<3>, n: usize| t.reshape([b, s, n, hd]).swap_dims(1, 2);
                let kernel = self.rotary_kernel && takes_decode_kernels(&q);
                let rotate = |t: Tensor<3>, n: usize| match kernel {
                    true => rotary_kernel::rotary_heads(t, pass.cos.clone(), pass.sin.clone()),
                    false => apply_rotary(heads(t, n), &pass.cos, &pass.sin),
                };
                let (q, k, v) = (rotate(q, nh), rotate(k, nkv), heads(v, nkv));
                match cache {
                    Some(cache) => {
                        let (k, v) = cache.append(l, k, v);
                        (q, k, v)
                    }
                    None => (q, k, v),
                }
            }
        };
        let [b, _, s, _] = q.dims();
        let one_query = self.decode_attention && s == 1 && !q.is_autodiff();
        let out = if one_query {
            let mask = pass.kernel_mask.get_or_init(|| pass.mask.clone().cast(self.dtype));
            // `[B, H_q, 1, hd]` is laid out as `[B, 1, H_q·hd]`: no swap needed.
            attention_kernel::decode_attention(q, k, v, mask.clone()).reshape([b, s, nh * hd])
        } else {
            let heads_out = if self.fused_attention && !q.is_autodiff() {
                self.fused_attention(q, k, v, pass)
            } else {
                self.materialised_attention(q, k, v, &pass.mask)
            };
            heads_out.swap_dims(1, 2).reshape([b, s, nh * hd])
        };
        self.linear_plus(&layer.o_proj, out, residual)
    }

    /// Grouped-query attention without repeating k and v: the `rep = H_q / H_kv` query heads of
    /// one kv head are stacked along the sequence axis, `[B, H_q, S, hd]` as `[B, H_kv, rep·S, hd]`.
    fn grouped<const D: usize>(&self, t: Tensor<D>) -> Tensor<D> {
        let mut dims = t.dims();
        let c = &self.config;
        let rep = c.num_heads / c.num_kv_heads;
        dims[1] /= rep;
        dims[2] *= rep;
        t.reshape(dims)
    }

    /// q `[B, H_q, S, hd]`, k and v `[B, H_kv, T, hd]` → `[B, H_q, S, hd]` through
    /// `burn::tensor::module::attention` (no autodiff: its backward would materialise the scores).
    fn fused_attention(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, pass: &Pass) -> Tensor<4> {
        let dims = q.dims();
        let masked = pass.masked.get_or_init(|| {
            let [b, _, s, t] = pass.mask.dims();
            let rows = pass.mask.clone().equal_elem(f32::NEG_INFINITY).unsqueeze_dim::<5>(1);
            let (nh, nkv) = (self.config.num_heads, self.config.num_kv_heads);
            rows.expand([b, nkv, nh / nkv, s, t]).reshape([b, nkv, nh / nkv * s, t])
        });
        let out = attention(self.grouped(q), k, v, Some(masked.clone()), None, AttentionModuleOptions::default());
        out.reshape(dims)
    }

    /// Attention with its scores `[B, H_q, S, T]` materialised in the accumulation dtype (f32),
    /// q `[B, H_q, S, hd]`, k and v `[B, H_kv, T, hd]`, `mask` `[B, 1, S, T]` additive.
    fn materialised_attention(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: &Tensor<4>) -> Tensor<4> {
        let [b, nh, s, hd] = q.dims();
        let t = k.dims()[2];
        let acc = accumulation_dtype(self.dtype);
        let keys = k.swap_dims(2, 3);
        // Queries `[B, H, r, hd]` with their mask rows `[B, 1, r, T]` → outputs `[B, H, r, hd]`.
        let attend = |q: Tensor<4>, mask: Tensor<4>| {
            let r = q.dims()[2];
            let scores = self.grouped(q).matmul(keys.clone()).mul_scalar(1.0 / (hd as f64).sqrt());
            let scores = scores.reshape([b, nh, r, t]).cast(acc) + mask.cast(acc);
            let probs = self.grouped(softmax(scores, 3).cast(self.dtype));
            probs.matmul(v.clone()).reshape([b, nh, r, hd])
        };
        // The scores are computed for as many query positions at a time as fit in `chunk_bytes`
        // (a long prefill of many rows would need one buffer larger than Vulkan allows).
        let per_query = b * nh * t * acc.size();
        let rows = (self.chunk_bytes / per_query.max(1)).clamp(1, s.max(1));
        if rows >= s {
            attend(q, mask.clone())
        } else {
            let parts: Vec<Tensor<4>> = (0..s)
                .step_by(rows)
                .map(|a| {
                    let r = rows.min(s - a);
                    attend(q.clone().narrow(2, a, r), mask.clone().narrow(2, a, r))
                })
                .collect();
            Tensor::cat(parts, 2)
        }
    }

    /// `down_proj(z) + (z·A)·B + vector (+ residual)` with `z = silu(gate_proj(x)) * up_proj(x)`.
    ///
    /// Without LoRA or biases on `gate_proj` and `up_proj`, a decode step's MLP is two launches
    /// of the decode-product kernel: `z` in one ([`decode_product::decode_gated_product`]), then
    /// `down_proj` with its bias, the steering vector and the residual added in the same launch.
    fn mlp(&self, layer: &DecoderLayer, x: Tensor<3>, vector: Option<&Tensor<1>>, lora: Option<&LoraPair>, residual: Option<Tensor<3>>) -> Tensor<3> {
        let (gate, up, down) = (&layer.gate_proj, &layer.up_proj, &layer.down_proj);
        let unbiased = gate.bias.is_none() && up.bias.is_none();
        let tracked = [gate.weight.is_autodiff(), up.weight.is_autodiff(), vector.is_some_and(Tensor::is_autodiff)];
        if lora.is_none() && unbiased && self.takes_decode_products(&x, &tracked) {
            let [b, s, h] = x.dims();
            let z = decode_product::decode_gated_product(x.reshape([b * s, h]), gate.weight.clone().transpose(), up.weight.clone().transpose());
            let bias = match (down.bias.clone(), vector.cloned()) {
                (Some(bias), Some(v)) => Some(bias + v),
                (bias, v) => bias.or(v),
            };
            let (down, i) = (Linear { weight: down.weight.clone(), bias }, z.dims()[1]);
            return self.linear_plus(&down, z.reshape([b, s, i]), residual);
        }
        let gated = silu(self.linear(gate, x.clone())) * self.linear(up, x);
        let out = match lora {
            Some(LoraPair { a, b }) => {
                let delta = linear_rows(linear_rows(gated.clone(), a.clone(), None), b.clone(), None);
                self.linear(down, gated) + delta
            }
            None => self.linear(down, gated),
        };
        let out = match vector {
            Some(v) => out + v.clone().unsqueeze::<3>(),
            None => out,
        };
        plus(out, residual)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device, Tensor, TensorData};

    use super::*;

    #[test]
    fn norm_weights_are_kept_in_the_model_dtype_with_the_checkpoint_values() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2");
        let full = crate::model::load(&dir, &Device::flex(), DType::F32).expect("fixture");
        let half = crate::model::load(&dir, &Device::flex(), DType::F16).expect("fixture");
        for (f, h) in [(&full.layers[1].post_attention_layernorm, &half.layers[1].post_attention_layernorm), (&full.norm, &half.norm)] {
            assert_eq!((f.weight.dtype(), h.weight.dtype()), (DType::F32, DType::F16));
            let want: Vec<f32> = f.weight.clone().cast(DType::F16).cast(DType::F32).into_data().iter::<f32>().collect();
            let got: Vec<f32> = h.weight.clone().cast(DType::F32).into_data().iter::<f32>().collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn padded_lengths_round_up_within_the_model_positions_and_gpu_models_pad() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2");
        let mut lm = crate::model::load(&dir, &Device::flex(), DType::F32).expect("fixture");
        assert_eq!(lm.length_multiple, 1, "the CPU backend does not pad");
        assert_eq!(lm.padded_len(37, 0), 37);
        lm.length_multiple = 64;
        let positions = lm.config.max_position_embeddings;
        assert_eq!((lm.padded_len(1, 0), lm.padded_len(64, 0), lm.padded_len(65, 0)), (64, 64, 128));
        assert_eq!(lm.padded_len(positions - 10, 0), positions, "capped at the positions");
        assert_eq!(lm.padded_len(65, positions - 100), 100, "room is left");
        assert_eq!(lm.padded_len(120, positions - 100), 120, "never below the length");
        let (tokens, width, layout) = lm.left_pad(&[vec![7, 8, 9], vec![5]], 0, 0);
        assert_eq!((width, layout.pads.clone(), &tokens[61..64], tokens[127]), (64, vec![61, 63], &[7, 8, 9][..], 5));
        let cache = lm.kv_cache(2, 70);
        assert_eq!((cache.capacity, cache.attended(1), cache.attended(64), cache.attended(65)), (128, 64, 64, 128));
        let layout = BatchLayout { pads: vec![0, 2] };
        let mask = layout.mask(3, 1, 8, &Device::flex());
        let got: Vec<f32> = mask.into_data().iter::<f32>().collect();
        let allowed: Vec<bool> = got.iter().map(|v| v.is_finite()).collect();
        let expected = [[true, true, true, true, false, false, false, false], [false, false, true, true, false, false, false, false]];
        assert_eq!(allowed, expected.concat(), "keys past the query and before the row's padding are masked");
    }

    #[test]
    fn the_norm_and_rotary_kernels_are_off_on_the_cpu_and_their_routes_keep_the_hidden_states() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2");
        let mut lm = crate::model::load(&dir, &Device::flex(), DType::F32).expect("fixture");
        assert!(!lm.fused_norm && !lm.rotary_kernel, "burn's operations are the CPU's reference");
        let (tokens, width, layout) = lm.left_pad(&[vec![7, 8, 9, 10], vec![5, 6]], 0, 0);
        let ids = crate::model::token_tensor(&tokens, [2, width], &lm.device);
        let hidden = |lm: &CausalLm| -> Vec<f32> {
            let out = lm.forward(ids.clone(), &layout, None, &Steering::None, &[]).expect("forward");
            out.hidden.into_data().iter::<f32>().collect()
        };
        let composed = hidden(&lm);
        for (norm, rotary) in [(true, false), (false, true), (true, true)] {
            (lm.fused_norm, lm.rotary_kernel) = (norm, rotary);
            let routed = hidden(&lm);
            assert_eq!(routed.len(), composed.len());
            for (i, (&r, &c)) in routed.iter().zip(&composed).enumerate() {
                assert!((r - c).abs() <= 1e-5 * c.abs().max(1.0), "norm {norm}, rotary {rotary}, element {i}: {r} vs {c}");
            }
        }
    }

    #[test]
    fn the_decode_kernels_are_off_on_the_cpu_and_their_routes_keep_a_steered_decode_step_s_hidden_states() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2");
        let mut lm = crate::model::load(&dir, &Device::flex(), DType::F32).expect("fixture");
        assert!(!lm.decode_attention && !lm.decode_kernel, "burn's operations are the CPU's reference");
        assert!(lm.config.qkv_bias, "the fixture's q/k/v biases take the product kernel's bias route");
        let (tokens, width, layout) = lm.left_pad(&[vec![7, 8, 9, 10], vec![5, 6]], 0, 0);
        let ids = crate::model::token_tensor(&tokens, [2, width], &lm.device);
        let next = crate::model::token_tensor(&[11, 12], [2, 1], &lm.device);
        let (layers, hidden) = (lm.config.num_layers, lm.config.hidden_size);
        let vectors: Vec<f32> = (0..layers * hidden).map(|i| ((i * 7 % 11) as f32 - 5.0) / 20.0).collect();
        let steering = Steering::PerLayer(Tensor::from_data(TensorData::new(vectors, [layers, hidden]), &lm.device));
        let step = |lm: &CausalLm| -> Vec<f32> {
            let mut cache = lm.kv_cache(2, width + 1);
            lm.forward(ids.clone(), &layout, Some(&mut cache), &steering, &[]).expect("prefill");
            let out = lm.forward(next.clone(), &layout, Some(&mut cache), &steering, &[]).expect("decode step");
            out.hidden.into_data().iter::<f32>().collect()
        };
        let composed = step(&lm);
        // Each kernel's route alone, then all: products (fused q/k/v with its bias, gated MLP,
        // steering vector and residuals added in the products), the rotary embedding writing the
        // cache, and the attention kernel.
        for (products, rotary, attention) in [(true, false, false), (false, true, false), (false, false, true), (true, true, true)] {
            (lm.decode_kernel, lm.rotary_kernel, lm.decode_attention) = (products, rotary, attention);
            let routed = step(&lm);
            assert_eq!(routed.len(), composed.len());
            for (i, (&r, &c)) in routed.iter().zip(&composed).enumerate() {
                assert!((r - c).abs() <= 1e-5 * c.abs().max(1.0), "products {products}, rotary {rotary}, attention {attention}, element {i}: {r} vs {c}");
            }
        }
    }

    #[test]
    fn rms_norm_over_a_blocked_hidden_size_matches_a_float64_recomputation() {
        let (rows, h) = (3, 3 * REDUCE_BLOCK);
        let values: Vec<f32> = (0..rows * h).map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0).collect();
        let weight: Vec<f32> = (0..h).map(|i| 0.5 + (i % 7) as f32 / 10.0).collect();
        let device = Device::flex();
        let norm = RmsNorm { weight: Tensor::from_data(TensorData::new(weight.clone(), [h]), &device), eps: 1e-6 };
        let x = Tensor::<3>::from_data(TensorData::new(values.clone(), [1, rows, h]), &device);
        let got: Vec<f32> = norm.forward(x).cast(DType::F32).into_data().iter::<f32>().collect();
        for r in 0..rows {
            let row = &values[r * h..(r + 1) * h];
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / h as f64;
            for (i, &v) in row.iter().enumerate() {
                let want = f64::from(v) / (ms + 1e-6).sqrt() * f64::from(weight[i]);
                let g = f64::from(got[r * h + i]);
                assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "row {r} col {i}: {g} vs {want}");
            }
        }
        // The kernel's route (burn's operations on the CPU, one level of sums) agrees too.
        let rows2 = Tensor::<2>::from_data(TensorData::new(values.clone(), [rows, h]), &device);
        let routed: Vec<f32> = norm_kernel::rms_norm_rows(rows2, norm.weight.clone(), norm.eps).into_data().iter::<f32>().collect();
        for (i, (&r, &g)) in routed.iter().zip(&got).enumerate() {
            assert!((r - g).abs() <= 1e-5 * g.abs().max(1.0), "element {i}: kernel route {r} vs composed {g}");
        }
        // The one-level path (a size that is not a multiple of the block) agrees too.
        let odd = Tensor::<2>::from_data(TensorData::new(values[..2 * 200].to_vec(), [2, 200]), &device);
        let blocked = mean_last_dim(Tensor::<2>::from_data(TensorData::new(values[..2 * h].to_vec(), [2, h]), &device));
        assert_eq!(mean_last_dim(odd).dims(), [2, 1]);
        assert_eq!(blocked.dims(), [2, 1]);
    }
}
