//! `trainer bench kernels`: the matrix products of a model's linear maps at the row counts of a
//! decode step and of a training micro-step, in the layouts and formulations the model could use;
//! the trainer's kernels (decode product, RMSNorm, rotary embedding, decode attention) against
//! burn's operations on random inputs; the decode-attention kernel alone at a few key counts; and
//! the fused attention and the decode-attention kernel against the materialised attention in a
//! prefill and a decode step (time, and the relative difference of the hidden states, so that
//! each kernel is checked on the device that runs it).

use burn::tensor::{DType, Device, Int, Tensor};
use serde::Serialize;

use std::time::Instant;

use super::{ShapeSpec, sync, synthetic_prompt, time_synced};
use crate::device::host_f32;
use crate::error::{Error, Result};
use crate::model::attention_kernel::decode_attention;
use crate::model::decode_product::{decode_gated_product, decode_product};
use crate::model::norm_kernel::{self, rms_norm_rows};
use crate::model::rope::apply_rotary;
use crate::model::rotary_kernel::rotary_heads;
use crate::model::transformer::RmsNorm;
use crate::model::{BatchLayout, CausalLm, KvCache, RandomWeights, token_tensor};
use crate::rollout::graph::{Recording, StepGraph, position_tensor};
use crate::rollout::sampling::{DeviceSampler, SamplingParams, uniform_tensor};
use crate::steering::Steering;

/// Settings of the kernel benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct KernelBench {
    /// Model shape.
    pub shape: ShapeSpec,
    /// Rows of a decode step (prompts decoded together).
    pub batch: usize,
    /// Tokens per prompt of the attention comparison (prompt `i` is `i mod 8` tokens shorter, so
    /// that rows are padded).
    pub prompt_len: usize,
    /// Rows of a training micro-step's products: `micro_batch × seq_len`.
    pub micro_batch: usize,
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Timed runs of each kernel (after one untimed).
    pub iterations: usize,
    /// Whether only the checks and the attention comparison run (no product is timed).
    pub checks_only: bool,
    /// Seed of the weights and activations.
    pub seed: u64,
}

/// How a product `x [M, K] · W → [M, N]` is formulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductForm {
    /// `W` stored `[K, N]` (row-major).
    InOut,
    /// `W` a transposed view of the checkpoint's `[N, K]`: the layout the model keeps.
    OutInView,
    /// The weight `[N, K]` as the left operand: `(W · xᵀ)ᵀ`, a product with many rows and few
    /// columns.
    WeightLhs,
    /// The trainer's decode-product kernel ([`decode_product`]) on the checkpoint layout `[N, K]`.
    DecodeKernel,
    /// The kernel's gated form ([`decode_gated_product`]) on two weights `[N, K]`:
    /// `silu(x · gateᵀ) ⊙ (x · upᵀ)`, the MLP's first half (timed for `gate_up_proj` only; its
    /// weight bytes and FLOPs count both weights).
    GatedKernel,
    /// `K` split into `splits` slices: one batched product `[S, M, K/S] × [S, K/S, N]`, then a
    /// sum over the slices (more independent work for a few rows).
    SplitK {
        /// Slices of `K`.
        splits: usize,
    },
}

/// One timed product.
#[derive(Debug, Clone, Serialize)]
pub struct ProductTiming {
    /// The linear map (`q_proj`, `kv_proj`, `o_proj`, `gate_up_proj`, `down_proj`, `lm_head`).
    pub map: &'static str,
    /// `M`.
    pub rows: usize,
    /// `K`.
    pub inner: usize,
    /// `N`.
    pub outer: usize,
    /// The formulation.
    pub form: ProductForm,
    /// Milliseconds per product.
    pub ms: f64,
    /// Host milliseconds per product to queue it (the rest of `ms` is the device catching up):
    /// close to `ms` when the product is bound by host work, not by the device.
    pub queue_ms: f64,
    /// `2·M·K·N` per second, in TFLOP/s.
    pub tflops: f64,
    /// Weight bytes read per second (each weight once), GB/s.
    pub weight_gbps: f64,
}

/// The fused attention against the materialised one, in a prefill and a decode step.
#[derive(Debug, Clone, Serialize)]
pub struct AttentionComparison {
    /// Prefill of the padded prompts, fused attention, ms.
    pub prefill_fused_ms: f64,
    /// The same, scores materialised, ms.
    pub prefill_materialised_ms: f64,
    /// `max |h_fused − h_materialised| / max |h_materialised|` over the prefill's final hidden states.
    pub prefill_relative_difference: f64,
    /// One decode step after the prefill (KV cache), fused attention, ms.
    pub decode_fused_ms: f64,
    /// The same, scores materialised, ms.
    pub decode_materialised_ms: f64,
    /// The relative difference of the first decode step's hidden states.
    pub decode_relative_difference: f64,
    /// The same decode step with the trainer's decode-attention kernel
    /// ([`CausalLm::decode_attention`]), ms.
    pub decode_kernel_ms: f64,
    /// The relative difference of its first decode step's hidden states from the materialised
    /// attention's.
    pub decode_kernel_relative_difference: f64,
    /// The same decode step with every decode kernel off (burn's operations throughout:
    /// products, norms, rotary embedding and cache writes, materialised attention), ms.
    pub decode_composed_ms: f64,
    /// The relative difference of the first decode step's hidden states with every kernel (the
    /// GPU's default) from those with none.
    pub decode_composed_relative_difference: f64,
    /// The same decode step as generation replays it ([`CausalLm::decode_step`]: the whole
    /// cache attended, every input a device tensor), recorded once as a graph and replayed, ms
    /// per replay: where the backend records graphs (CubeCL's wgpu runtime has software graphs),
    /// its launches skip the per-launch host work (fusion, pipeline lookup, bind groups).
    pub decode_graph_ms: f64,
    /// Whether the backend recorded the step (`false`: the replays ran it again).
    pub decode_graph_recorded: bool,
    /// Why the backend refused to record the step, where it records graphs but refused this one.
    pub decode_graph_refusal: Option<String>,
    /// The relative difference of the replayed step's hidden states from the first decode
    /// step's with the same kernels.
    pub decode_graph_relative_difference: f64,
}

/// One check of the decode-attention kernel against burn's operations.
#[derive(Debug, Clone, Serialize)]
pub struct AttentionCheck {
    /// Rows (each a query position with its own padding).
    pub rows: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Keys attended (a view of a longer cache).
    pub keys: usize,
    /// `max |kernel − composed| / max |composed|`.
    pub relative_difference: f64,
}

/// One check of the sampler against a float64 recomputation.
#[derive(Debug, Clone, Serialize)]
pub struct SamplerCheck {
    /// Rows sampled.
    pub rows: usize,
    /// Columns per row.
    pub vocab: usize,
    /// Temperature (0: greedy).
    pub temperature: f32,
    /// Rows whose id is not where the row's cumulative weight reaches `u · total` (within
    /// [`SAMPLER_CDF_TOLERANCE`] of the total), or, greedy, not a largest logit, or whose
    /// log-probability is not a finite number.
    pub misplaced: usize,
    /// The largest `|logp − recomputed logp|` of the sampled ids (finite ones).
    pub logprob_difference: f64,
}

/// How far (relative to a row's total weight) a sampled id's cumulative-weight interval may miss
/// `u · total` before [`SamplerCheck::misplaced`] counts it: f32 sums of 150,000 weights.
const SAMPLER_CDF_TOLERANCE: f64 = 1e-4;
/// The largest [`SamplerCheck::logprob_difference`] accepted (log-probabilities near −12 in f32).
const SAMPLER_LOGPROB_TOLERANCE: f64 = 1e-3;

/// Decode-attention launches recorded together for [`time_attention`].
const ATTENTION_LAUNCHES: usize = 8;

/// One timing of the decode-attention kernel alone (every key unmasked).
#[derive(Debug, Clone, Serialize)]
pub struct AttentionTiming {
    /// Rows (query positions).
    pub rows: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Keys attended.
    pub keys: usize,
    /// Microseconds per launch: launches recorded as a graph and replayed (the device's time),
    /// means over the benchmark's iterations.
    pub us: f64,
    /// Whether the backend recorded the launches (`false`: each replay issued them again, and
    /// `us` includes the host's work).
    pub recorded: bool,
    /// Bytes of keys and values read per second, GB/s.
    pub kv_gbps: f64,
}

/// What the kernel benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct KernelReport {
    /// The settings.
    pub settings: KernelBench,
    /// Compute dtype.
    pub dtype: String,
    /// Device description.
    pub device: String,
    /// Every product, by map, then rows, then form (none with `checks_only`).
    pub products: Vec<ProductTiming>,
    /// The decode-product kernel against burn's `matmul` on random operands: sizes of whole
    /// tiles that split `K` over one, five and eight planes (the last unevenly), one size off the
    /// tiles (burn's own product), and every map at the decode step's rows.
    pub kernel_checks: Vec<KernelCheck>,
    /// The RMSNorm kernel against burn's composed norm: the hidden size at the decode step's
    /// rows, a size that is not a multiple of the kernel's units, and a row longer than four
    /// passes of them.
    pub norm_checks: Vec<NormCheck>,
    /// The rotary-embedding kernel against burn's composed rotation of q and of k at the decode
    /// step's rows and at a prefill of 3 positions: `max |kernel − composed| / max |composed|`.
    pub rotary_checks: Vec<f64>,
    /// The decode-attention kernel against burn's materialised attention on random queries,
    /// keys and values with padded rows: the decode step's rows, heads and a cache of the
    /// prompt's length; one key (fewer than the kernel's planes); twelve query heads on one kv
    /// head (more outputs than the kernel's units); and 5,000 keys.
    pub attention_checks: Vec<AttentionCheck>,
    /// The sampler of a decode step with the sampling kernel asked for
    /// ([`DeviceSampler::sample_pairs`]: the kernel on GPU backends, burn's operations on the CPU)
    /// against a float64 recomputation on random logits: the decode step's rows
    /// over the shape's vocabulary at temperature 1 and greedy, three rows at temperature 0.7,
    /// and a vocabulary of 1,000 (no whole blocks of 128: one unit per row).
    pub sampler_checks: Vec<SamplerCheck>,
    /// The decode-attention kernel alone at the decode step's rows and head size: the shape's
    /// query and kv heads and as many query heads as kv heads (one query head per kv head), each
    /// over 64, 256 and 512 keys; sorted by heads, then keys.
    pub attention_timings: Vec<AttentionTiming>,
    /// The largest relative difference the checks accept ([`kernel_tolerance`] of the dtype).
    pub kernel_tolerance: f64,
    /// Fused against materialised attention.
    pub attention: AttentionComparison,
}

impl KernelReport {
    /// An error naming the first kernel check whose difference exceeds the tolerance.
    pub fn verify(&self) -> Result<()> {
        let tolerance = self.kernel_tolerance;
        let beyond = |d: f64| d.is_nan() || d > tolerance;
        if let Some(c) = self.kernel_checks.iter().find(|c| beyond(c.worst())) {
            return Err(Error::Backend(format!(
                "the decode-product kernel differs from burn's operations at [{}, {}] × [{}, {}]: relative difference {:e} (plain), {:e} (with a bias and a residual), {:e} (gated), expected at most {tolerance:e}",
                c.rows, c.inner, c.inner, c.outer, c.relative_difference, c.bias_relative_difference, c.gated_relative_difference
            )));
        }
        if let Some(c) = self.norm_checks.iter().find(|c| beyond(c.relative_difference)) {
            return Err(Error::Backend(format!(
                "the RMSNorm kernel differs from burn's composed norm at [{}, {}]: relative difference {:e}, expected at most {tolerance:e}",
                c.rows, c.hidden, c.relative_difference
            )));
        }
        if let Some(d) = self.rotary_checks.iter().find(|&&d| beyond(d)) {
            return Err(Error::Backend(format!(
                "the rotary-embedding kernel differs from burn's composed rotation: relative difference {d:e}, expected at most {tolerance:e}"
            )));
        }
        if let Some(c) = self.attention_checks.iter().find(|c| beyond(c.relative_difference)) {
            return Err(Error::Backend(format!(
                "the decode-attention kernel differs from burn's materialised attention with {} rows, {} heads, {} kv heads and {} keys: relative difference {:e}, expected at most {tolerance:e}",
                c.rows, c.heads, c.kv_heads, c.keys, c.relative_difference
            )));
        }
        if let Some(c) = self.sampler_checks.iter().find(|c| c.misplaced > 0 || c.logprob_difference.is_nan() || c.logprob_difference > SAMPLER_LOGPROB_TOLERANCE) {
            return Err(Error::Backend(format!(
                "the sampler differs from a float64 recomputation over {} rows of {} columns at temperature {}: {} ids outside their row's CDF interval at u, log-probabilities off by up to {:e} (at most {SAMPLER_LOGPROB_TOLERANCE:e} accepted)",
                c.rows, c.vocab, c.temperature, c.misplaced, c.logprob_difference
            )));
        }
        let d = self.attention.decode_kernel_relative_difference;
        if beyond(d) {
            return Err(Error::Backend(format!(
                "a decode step with the decode-attention kernel differs from one with materialised attention: relative difference {d:e}, expected at most {tolerance:e}"
            )));
        }
        let d = self.attention.decode_graph_relative_difference;
        if beyond(d) {
            return Err(Error::Backend(format!(
                "a decode step replayed from a captured graph differs from the same step run directly: relative difference {d:e}, expected at most {tolerance:e}"
            )));
        }
        let d = self.attention.decode_composed_relative_difference;
        if beyond(d) {
            return Err(Error::Backend(format!(
                "a decode step with every decode kernel differs from one with burn's operations only: relative difference {d:e}, expected at most {tolerance:e}"
            )));
        }
        Ok(())
    }
}

/// One check of the RMSNorm kernel.
#[derive(Debug, Clone, Serialize)]
pub struct NormCheck {
    /// Rows normalised.
    pub rows: usize,
    /// Length of each row.
    pub hidden: usize,
    /// `max |kernel − composed| / max |composed|`.
    pub relative_difference: f64,
}

/// One check of the decode-product kernel.
#[derive(Debug, Clone, Serialize)]
pub struct KernelCheck {
    /// `M`.
    pub rows: usize,
    /// `K`.
    pub inner: usize,
    /// `N`.
    pub outer: usize,
    /// `max |kernel − matmul| / max |matmul|` of `x · wᵀ`.
    pub relative_difference: f64,
    /// The same for `x · wᵀ + bias + residual`.
    pub bias_relative_difference: f64,
    /// The same for the gated form `silu(x · wᵀ) ⊙ (x · upᵀ)`, against burn's `silu` and
    /// products (each rounded to the dtype).
    pub gated_relative_difference: f64,
}

impl KernelCheck {
    /// The largest of the three differences (NaN when any is).
    fn worst(&self) -> f64 {
        [self.relative_difference, self.bias_relative_difference, self.gated_relative_difference].into_iter().fold(0.0, |w, d| if d.is_nan() || w.is_nan() { f64::NAN } else { w.max(d) })
    }
}

/// Largest relative difference [`kernels`] accepts between the decode-product kernel and burn's
/// `matmul`: both accumulate in f32 but round inputs and outputs to the compute dtype.
pub fn kernel_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 | DType::F32 => 1e-5,
        _ => 1e-2,
    }
}

/// Runs the kernel benchmark.
pub fn kernels(bench: &KernelBench, device: &Device, dtype: DType) -> Result<KernelReport> {
    if bench.batch == 0 || bench.prompt_len < 8 || bench.micro_batch == 0 || bench.seq_len == 0 {
        return Err(Error::InvalidArgument("batch, micro batch and sequence length must be ≥ 1, prompt length ≥ 8".into()));
    }
    let config = bench.shape.config()?;
    device.seed(bench.seed);
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let (q, kv) = (config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim);
    let maps = [
        ("q_proj", h, q),
        ("kv_proj", h, kv),
        ("o_proj", q, h),
        ("gate_up_proj", h, i),
        ("down_proj", i, h),
        ("lm_head", h, config.vocab_size),
    ];
    let mut products = Vec::new();
    for (map, inner, outer) in maps.into_iter().filter(|_| !bench.checks_only) {
        for rows in [bench.batch, bench.micro_batch * bench.seq_len] {
            let mut forms = vec![ProductForm::InOut, ProductForm::OutInView];
            if rows == bench.batch {
                forms.extend([ProductForm::DecodeKernel, ProductForm::WeightLhs]);
                if map == "gate_up_proj" {
                    forms.push(ProductForm::GatedKernel);
                }
                forms.extend([4, 16].into_iter().filter(|s| inner % s == 0).map(|splits| ProductForm::SplitK { splits }));
            }
            for form in forms {
                let (secs, queue_secs) = time_product(device, dtype, rows, inner, outer, form, bench.iterations)?;
                let (ms, queue_ms) = (1e3 * secs, 1e3 * queue_secs);
                let weights = if form == ProductForm::GatedKernel { 2 } else { 1 };
                let flop = 2.0 * (weights * rows * inner * outer) as f64;
                let weight_bytes = (weights * inner * outer * dtype.size()) as f64;
                products.push(ProductTiming { map, rows, inner, outer, form, ms, queue_ms, tflops: flop / ms / 1e9, weight_gbps: weight_bytes / ms / 1e6 });
            }
        }
    }
    let mut shapes = vec![(16, 16, 16), (48, 320, 272), (32, 1040, 48), (bench.batch + 3, 68, 9)];
    shapes.extend(maps.iter().map(|&(_, inner, outer)| (bench.batch, inner, outer)));
    let mut kernel_checks = Vec::new();
    for (rows, inner, outer) in shapes {
        kernel_checks.push(check_kernel(device, dtype, rows, inner, outer)?);
    }
    let mut norm_checks = Vec::new();
    for (rows, hidden) in [(bench.batch, h), (bench.batch + 3, 200), (1, 4 * norm_kernel::UNITS + 1)] {
        let relative_difference = check_norm(device, dtype, rows, hidden)?;
        norm_checks.push(NormCheck { rows, hidden, relative_difference });
    }
    let mut rotary_checks = Vec::new();
    for (rows, seq) in [(bench.batch, 1), (2, 3)] {
        for heads in [config.num_heads, config.num_kv_heads] {
            rotary_checks.push(check_rotary(device, dtype, [rows, seq, heads, config.head_dim])?);
        }
    }
    let (nh, nkv, hd) = (config.num_heads, config.num_kv_heads, config.head_dim);
    let mut attention_checks = Vec::new();
    for (rows, heads, kv_heads, keys) in [(bench.batch, nh, nkv, bench.prompt_len + 1), (3, 4, 2, 1), (3, 12, 1, 127), (2, 2, 2, 5000)] {
        let relative_difference = check_attention(device, dtype, [rows, heads, kv_heads, keys, hd])?;
        attention_checks.push(AttentionCheck { rows, heads, kv_heads, keys, relative_difference });
    }
    let mut sampler_checks = Vec::new();
    for (rows, vocab, temperature) in [(bench.batch, config.vocab_size, 1.0), (bench.batch, config.vocab_size, 0.0), (3, config.vocab_size, 0.7), (2, 1000, 1.0)] {
        sampler_checks.push(check_sampler(device, rows, vocab, temperature)?);
    }
    let mut attention_timings = Vec::new();
    for heads in [nkv, nh] {
        for keys in [64, 256, 512] {
            let (secs, recorded) = time_attention(device, dtype, [bench.batch, heads, nkv, keys, hd], bench.iterations)?;
            let kv_bytes = (2 * bench.batch * nkv * keys * hd * dtype.size()) as f64;
            attention_timings.push(AttentionTiming { rows: bench.batch, heads, kv_heads: nkv, keys, us: 1e6 * secs, recorded, kv_gbps: kv_bytes / secs / 1e9 });
        }
    }
    let lm = CausalLm::load(config, &RandomWeights { std: 0.02 }, device, dtype)?;
    let attention = compare_attention(&lm, bench)?;
    Ok(KernelReport {
        settings: bench.clone(),
        dtype: format!("{dtype:?}"),
        device: format!("{device:?}"),
        products,
        kernel_checks,
        norm_checks,
        rotary_checks,
        attention_checks,
        sampler_checks,
        attention_timings,
        kernel_tolerance: kernel_tolerance(dtype),
        attention,
    })
}

/// Seconds of one product `[rows, inner] · W → [rows, outer]` in `form`, and the host seconds
/// to queue it (means over `iterations` after one untimed run).
fn time_product(device: &Device, dtype: DType, rows: usize, inner: usize, outer: usize, form: ProductForm, iterations: usize) -> Result<(f64, f64)> {
    let random = |shape| random_matrix(shape, 0.02, device, dtype);
    let x = random([rows, inner]);
    let w = match form {
        ProductForm::OutInView | ProductForm::WeightLhs | ProductForm::DecodeKernel | ProductForm::GatedKernel => random([outer, inner]).transpose(),
        _ => random([inner, outer]),
    };
    // The gated form's second weight; the other forms never read it (a view of `w`, no
    // allocation: the `lm_head`'s would be 467 MB at the 1.5B shape).
    let up = if form == ProductForm::GatedKernel { random([outer, inner]) } else { w.clone().transpose() };
    let product = || match form {
        ProductForm::InOut | ProductForm::OutInView => x.clone().matmul(w.clone()),
        ProductForm::WeightLhs => w.clone().transpose().matmul(x.clone().transpose()).transpose(),
        ProductForm::DecodeKernel => decode_product(x.clone(), w.clone().transpose(), None, None),
        ProductForm::GatedKernel => decode_gated_product(x.clone(), w.clone().transpose(), up.clone()),
        ProductForm::SplitK { splits } => {
            let part = inner / splits;
            let xs = x.clone().reshape([rows, splits, part]).swap_dims(0, 1);
            let ws = w.clone().reshape([splits, part, outer]);
            xs.matmul(ws).sum_dim(0).reshape([rows, outer])
        }
    };
    time_kept(device, iterations, product)
}

/// Seconds per call of `launch` and the host seconds to queue it: means over `iterations` calls
/// after one untimed, every output kept alive until the end so that no launch reuses the buffer
/// of another.
fn time_kept<T>(device: &Device, iterations: usize, mut launch: impl FnMut() -> T) -> Result<(f64, f64)> {
    let mut outputs = vec![launch()];
    sync(device)?;
    let n = iterations.max(1);
    let start = Instant::now();
    outputs.extend((0..n).map(|_| launch()));
    let queued = start.elapsed().as_secs_f64();
    sync(device)?;
    let secs = start.elapsed().as_secs_f64();
    drop(outputs);
    Ok((secs / n as f64, queued / n as f64))
}

/// Seconds of one decode-attention launch on random `q [B, H_q, 1, hd]` and keys and values
/// `[B, H_kv, T, hd]` with every key unmasked (`dims` is `[B, H_q, H_kv, T, hd]`), and whether the
/// backend recorded the launches: [`ATTENTION_LAUNCHES`] launches are recorded once as a graph
/// and replayed `iterations` times, so that the time is the device's, not the host's work to
/// issue them (where nothing is recorded, the replays issue the launches again).
// A replay of a recorded graph is `unsafe`: everything the launches touched must outlive it.
#[allow(unsafe_code)]
fn time_attention(device: &Device, dtype: DType, dims: [usize; 5], iterations: usize) -> Result<(f64, bool)> {
    let [b, nh, nkv, t, hd] = dims;
    let q = random_matrix([b * nh, hd], 1.0, device, dtype).reshape([b, nh, 1, hd]);
    let (k, v) = (random_matrix([b * nkv * t, hd], 1.0, device, dtype).reshape([b, nkv, t, hd]), random_matrix([b * nkv * t, hd], 1.0, device, dtype).reshape([b, nkv, t, hd]));
    let mask = Tensor::<4>::zeros([b, 1, 1, t], (device, dtype));
    let mut launches = || (0..ATTENTION_LAUNCHES).map(|_| decode_attention(q.clone(), k.clone(), v.clone(), mask.clone())).collect::<Vec<_>>();
    let (mut graph, recording) = StepGraph::capture(device, &mut launches);
    // Safety: the launches read `q`, `k`, `v` and `mask` and write their outputs (held by
    // `graph`); all outlive the replays, which run on this thread, and `time_synced` waits for
    // the device before returning.
    let secs = time_synced(device, iterations, || unsafe { graph.replay(&mut launches).map(drop) })?;
    Ok((secs / ATTENTION_LAUNCHES as f64, recording == Recording::Recorded))
}

/// A `shape` matrix of normal values with standard deviation `std`.
fn random_matrix(shape: [usize; 2], std: f64, device: &Device, dtype: DType) -> Tensor<2> {
    Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, std), (device, dtype))
}

/// The decode-product kernel's three forms against burn's operations on random operands
/// `x [rows, inner]`, weights `[outer, inner]`, a bias `[outer]` and a residual `[rows, outer]`
/// (unit normal values).
fn check_kernel(device: &Device, dtype: DType, rows: usize, inner: usize, outer: usize) -> Result<KernelCheck> {
    let x = random_matrix([rows, inner], 1.0, device, dtype);
    let (w, up) = (random_matrix([outer, inner], 1.0, device, dtype), random_matrix([outer, inner], 1.0, device, dtype));
    let (bias, residual) = (random_matrix([1, outer], 1.0, device, dtype), random_matrix([rows, outer], 1.0, device, dtype));
    let product = |w: &Tensor<2>| x.clone().matmul(w.clone().transpose());
    // The gated form's weights are scaled by 1/√inner, so that `silu(x·gateᵀ) ⊙ (x·upᵀ)` stays
    // O(1) (with unit weights it is O(inner) and overflows f16 at inner = 8960).
    let scale = 1.0 / (inner as f64).sqrt();
    let (gate, up) = (w.clone().mul_scalar(scale), up.mul_scalar(scale));
    let gated = burn::tensor::activation::silu(product(&gate)) * product(&up);
    let affine = decode_product(x.clone(), w.clone(), Some(bias.clone().reshape([outer])), Some(residual.clone()));
    Ok(KernelCheck {
        rows,
        inner,
        outer,
        relative_difference: relative_difference(decode_product(x.clone(), w.clone(), None, None), product(&w))?,
        bias_relative_difference: relative_difference(affine, product(&w) + bias + residual)?,
        gated_relative_difference: relative_difference(decode_gated_product(x, gate, up), gated)?,
    })
}

/// The relative difference of the RMSNorm kernel from burn's composed norm on random `[rows, hidden]`.
fn check_norm(device: &Device, dtype: DType, rows: usize, hidden: usize) -> Result<f64> {
    let x = random_matrix([rows, hidden], 1.0, device, dtype);
    let weight = random_matrix([1, hidden], 1.0, device, dtype).reshape([hidden]);
    let norm = RmsNorm { weight: weight.clone(), eps: 1e-6 };
    let expected = norm.forward(x.clone().unsqueeze::<3>());
    relative_difference(rms_norm_rows(x, weight, norm.eps).unsqueeze::<3>(), expected)
}

/// The relative difference of the rotary kernel from burn's composed rotation of random
/// `x [B, S, n·hd]` with random tables, `[B, S, n, hd]` given as `dims`.
fn check_rotary(device: &Device, dtype: DType, dims: [usize; 4]) -> Result<f64> {
    let [b, s, n, hd] = dims;
    let x = random_matrix([b * s, n * hd], 1.0, device, dtype).reshape([b, s, n * hd]);
    let table = || random_matrix([b * s, hd], 1.0, device, dtype).reshape([b, 1, s, hd]);
    let (cos, sin) = (table(), table());
    let expected = apply_rotary(x.clone().reshape([b, s, n, hd]).swap_dims(1, 2), &cos, &sin);
    relative_difference(rotary_heads(x, cos, sin), expected)
}

/// The relative difference of the decode-attention kernel from burn's materialised attention
/// (the model's formulation: scores in f32, probabilities cast to the compute dtype) on random
/// `q [B, H_q, 1, hd]` and keys and values `[B, H_kv, T, hd]` viewed from a cache of `T + 5`
/// positions, row `b` padded by `b mod T` positions; `dims` is `[B, H_q, H_kv, T, hd]`.
fn check_attention(device: &Device, dtype: DType, dims: [usize; 5]) -> Result<f64> {
    let [b, nh, nkv, t, hd] = dims;
    let q = random_matrix([b * nh, hd], 1.0, device, dtype).reshape([b, nh, 1, hd]);
    let cache = || random_matrix([b * nkv * (t + 5), hd], 1.0, device, dtype).reshape([b, nkv, t + 5, hd]).slice([0..b, 0..nkv, 0..t, 0..hd]);
    let (k, v) = (cache(), cache());
    let mask = BatchLayout { pads: (0..b).map(|r| r % t).collect() }.mask(t - 1, 1, t, device);
    let rep = nh / nkv;
    let scores = q.clone().reshape([b, nkv, rep, hd]).matmul(k.clone().swap_dims(2, 3)).mul_scalar(1.0 / (hd as f64).sqrt());
    let probs = burn::tensor::activation::softmax(scores.cast(DType::F32) + mask.clone(), 3).cast(dtype);
    let expected = probs.matmul(v.clone()).reshape([b, nh, 1, hd]);
    relative_difference(decode_attention(q, k, v, mask.cast(dtype)), expected)
}

/// The sampler of a decode step ([`DeviceSampler::sample_pairs`]) on random logits
/// `[rows, vocab]` (normal, standard deviation 2) and evenly spread uniforms, against a float64
/// recomputation on the host of each row's weights `exp((x − max) / T)`.
fn check_sampler(device: &Device, rows: usize, vocab: usize, temperature: f32) -> Result<SamplerCheck> {
    let logits = random_matrix([rows, vocab], 2.0, device, DType::F32);
    let uniforms: Vec<f32> = (0..rows).map(|r| ((r * 37 % rows) as f32 + 0.5) / rows as f32).collect();
    let params = SamplingParams { temperature, ..SamplingParams::default() };
    let pairs = DeviceSampler::new(&params, vocab, device, true).sample_pairs(logits.clone(), uniform_tensor(&uniforms, device));
    let (pairs, logits) = (host_f32(pairs, "the sampled ids")?, host_f32(logits, "the logits")?);
    let scale = if temperature == 0.0 { 1.0 } else { 1.0 / f64::from(temperature) };
    let (mut misplaced, mut logprob_difference) = (0, 0.0f64);
    for (r, row) in logits.chunks_exact(vocab).enumerate() {
        let scaled: Vec<f64> = row.iter().map(|&x| f64::from(x) * scale).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scaled.iter().map(|x| (x - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let id = pairs[2 * r] as usize;
        let placed = match (id < vocab, temperature == 0.0) {
            (false, _) => false,
            (true, true) => scaled[id] == max,
            (true, false) => {
                let (before, target) = (weights[..id].iter().sum::<f64>(), f64::from(uniforms[r]) * total);
                let slack = SAMPLER_CDF_TOLERANCE * total;
                before <= target + slack && before + weights[id] >= target - slack
            }
        };
        let difference = (f64::from(pairs[2 * r + 1]) - (scaled[id.min(vocab - 1)] - max - total.ln())).abs();
        // A log-probability that is not a number fails the check, as a misplaced id does.
        misplaced += usize::from(!placed || !difference.is_finite());
        logprob_difference = logprob_difference.max(if difference.is_finite() { difference } else { 0.0 });
    }
    Ok(SamplerCheck { rows, vocab, temperature, misplaced, logprob_difference })
}

/// Prefill and one decode step with fused and with materialised attention, and the decode step
/// with the trainer's decode-attention kernel.
fn compare_attention(lm: &CausalLm, bench: &KernelBench) -> Result<AttentionComparison> {
    let device = &lm.device;
    let vocab = lm.config.vocab_size as u64;
    let prompts: Vec<Vec<u32>> = (0..bench.batch).map(|b| synthetic_prompt(b, bench.prompt_len - b % 8, vocab)).collect();
    let steps = bench.iterations + 2;
    let (tokens, width, layout) = lm.left_pad(&prompts, 0, steps);
    let prompt_ids = token_tensor(&tokens, [bench.batch, width], device);
    let next_ids: Vec<u32> = (0..bench.batch as u32).collect();
    let next = token_tensor(&next_ids, [bench.batch, 1], device);
    // (prefill seconds, decode seconds, prefill hidden, first decode hidden) of one mode: fused
    // attention, the decode-attention kernel, and the other decode kernels (on by default on the
    // GPU) kept or all turned off.
    let run = |fused: bool, kernel: bool, other_kernels: bool| -> Result<(f64, f64, Tensor<3>, Tensor<3>)> {
        let mut lm = lm.clone();
        lm.fused_attention = fused;
        lm.decode_attention = kernel;
        if !other_kernels {
            (lm.decode_kernel, lm.fused_norm, lm.rotary_kernel) = (false, false, false);
        }
        let prefill = |cache: Option<&mut KvCache>| lm.forward(prompt_ids.clone(), &layout, cache, &Steering::None, &[]).map(|o| o.hidden);
        let prefill_secs = time_synced(device, bench.iterations, || prefill(None).map(drop))?;
        let mut cache = lm.kv_cache(bench.batch, width + steps);
        let hidden = prefill(Some(&mut cache))?;
        let first = lm.forward(next.clone(), &layout, Some(&mut cache), &Steering::None, &[])?.hidden;
        let decode_secs = time_synced(device, bench.iterations, || {
            lm.forward(next.clone(), &layout, Some(&mut cache), &Steering::None, &[]).map(drop)
        })?;
        Ok((prefill_secs, decode_secs, hidden, first))
    };
    let (prefill_fused, decode_fused, hidden_fused, first_fused) = run(true, false, true)?;
    let (prefill_materialised, decode_materialised, hidden, first) = run(false, false, true)?;
    let (_, decode_kernel, _, first_kernel) = run(false, true, true)?;
    let (_, decode_composed, _, first_composed) = run(false, false, false)?;
    let (decode_graph, recording, first_replayed) = replayed_decode(lm, bench, &prompt_ids, &next, &layout, width + steps)?;
    Ok(AttentionComparison {
        prefill_fused_ms: 1e3 * prefill_fused,
        prefill_materialised_ms: 1e3 * prefill_materialised,
        prefill_relative_difference: relative_difference(hidden_fused, hidden)?,
        decode_fused_ms: 1e3 * decode_fused,
        decode_materialised_ms: 1e3 * decode_materialised,
        decode_relative_difference: relative_difference(first_fused, first.clone())?,
        decode_kernel_ms: 1e3 * decode_kernel,
        decode_kernel_relative_difference: relative_difference(first_kernel.clone(), first)?,
        decode_composed_ms: 1e3 * decode_composed,
        decode_composed_relative_difference: relative_difference(first_kernel.clone(), first_composed)?,
        decode_graph_ms: 1e3 * decode_graph,
        decode_graph_recorded: recording == Recording::Recorded,
        decode_graph_refusal: match recording {
            Recording::Failed(reason) => Some(reason),
            _ => None,
        },
        decode_graph_relative_difference: relative_difference(first_replayed, first_kernel)?,
    })
}

/// The first decode step after the prefill of `prompt_ids` as generation replays it
/// ([`CausalLm::decode_step`], every kernel on, the whole cache attended), recorded as a graph
/// and replayed: seconds per replay, what became of the recording, and the replayed step's
/// hidden states.
// A replay of a recorded graph is `unsafe`: everything the step touched must outlive it.
#[allow(unsafe_code)]
fn replayed_decode(lm: &CausalLm, bench: &KernelBench, prompt_ids: &Tensor<2, Int>, next: &Tensor<2, Int>, layout: &BatchLayout, capacity: usize) -> Result<(f64, Recording, Tensor<3>)> {
    let mut lm = lm.clone();
    (lm.rotary_kernel, lm.decode_attention) = (true, true);
    let device = &lm.device;
    let mut cache = lm.kv_cache(bench.batch, capacity);
    lm.forward(prompt_ids.clone(), layout, Some(&mut cache), &Steering::None, &[])?;
    let step = lm
        .replayable_step(layout, &cache, &Steering::None, &[])?
        .ok_or_else(|| Error::InvalidArgument(format!("a decode step of {} rows cannot be replayed (at most {} rows can)", bench.batch, norm_kernel::MAX_ROWS)))?;
    let (ids, column) = (next.clone().float(), position_tensor(cache.len(), device));
    let (mut graph, recording) = StepGraph::capture(device, || lm.decode_step(&step, &ids, &column, &mut cache));
    // Safety: the step reads the model's weights, `step`, `ids`, `column` and `cache` and writes
    // `cache` and its own outputs (held by `graph`); all outlive the replays, which run on this
    // thread, and `time_synced` waits for the device before returning.
    let secs = time_synced(device, bench.iterations, || unsafe { graph.replay(|| lm.decode_step(&step, &ids, &column, &mut cache)).map(drop) })?;
    Ok((secs, recording, graph.output().clone()))
}

/// `max |a − b| / max |b|`, computed in f32.
fn relative_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Result<f64> {
    let (a, b) = (a.cast(DType::F32), b.cast(DType::F32));
    let scale = host_f32(b.clone().abs().max(), "the reference's largest magnitude")?[0];
    let diff = host_f32((a - b).abs().max(), "the largest difference from the reference")?[0];
    Ok(f64::from(diff) / f64::from(scale).max(f64::MIN_POSITIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(differences: &[f64], norm_difference: f64, attention_difference: f64) -> KernelReport {
        KernelReport {
            settings: KernelBench {
                shape: ShapeSpec::Preset(super::super::Shape::QwenMath1_5b),
                batch: 64,
                prompt_len: 256,
                micro_batch: 4,
                seq_len: 1024,
                iterations: 8,
                checks_only: true,
                seed: 0,
            },
            dtype: "F16".into(),
            device: "test".into(),
            products: Vec::new(),
            kernel_checks: differences
                .iter()
                .map(|&d| KernelCheck { rows: 5, inner: 1542, outer: 257, relative_difference: 0.0, bias_relative_difference: d / 2.0, gated_relative_difference: d })
                .collect(),
            norm_checks: vec![NormCheck { rows: 64, hidden: 1536, relative_difference: norm_difference }],
            rotary_checks: vec![0.0],
            attention_checks: vec![AttentionCheck { rows: 3, heads: 4, kv_heads: 1, keys: 127, relative_difference: attention_difference }],
            sampler_checks: Vec::new(),
            attention_timings: Vec::new(),
            kernel_tolerance: kernel_tolerance(DType::F16),
            attention: AttentionComparison {
                prefill_fused_ms: 1.0,
                prefill_materialised_ms: 1.0,
                prefill_relative_difference: 0.0,
                decode_fused_ms: 1.0,
                decode_materialised_ms: 1.0,
                decode_relative_difference: 0.0,
                decode_kernel_ms: 1.0,
                decode_kernel_relative_difference: 0.0,
                decode_composed_ms: 1.0,
                decode_composed_relative_difference: 0.0,
                decode_graph_ms: 1.0,
                decode_graph_recorded: false,
                decode_graph_refusal: None,
                decode_graph_relative_difference: 0.0,
            },
        }
    }

    #[test]
    fn verification_fails_on_a_difference_beyond_the_tolerance_or_not_a_number() {
        assert!(report(&[0.0, 5e-4], 1e-3, 2e-3).verify().is_ok());
        let err = report(&[5e-4, 0.03], 0.0, 0.0).verify().expect_err("3 % exceeds the f16 tolerance").to_string();
        assert!(err.contains("[5, 1542] × [1542, 257]") && err.contains("3e-2 (gated)") && err.contains("1.5e-2 (with a bias and a residual)"), "{err}");
        assert!(report(&[f64::NAN], 0.0, 0.0).verify().is_err(), "NaN is a failure");
        let err = report(&[0.0], 0.02, 0.0).verify().expect_err("the norm kernel's 2 % exceeds the tolerance").to_string();
        assert!(err.contains("RMSNorm kernel") && err.contains("[64, 1536]"), "{err}");
        assert!(report(&[0.0], f64::NAN, 0.0).verify().is_err(), "NaN is a failure");
        let err = report(&[0.0], 0.0, 0.05).verify().expect_err("the attention kernel's 5 % exceeds the tolerance").to_string();
        assert!(err.contains("decode-attention kernel") && err.contains("127 keys"), "{err}");
        assert!(report(&[0.0], 0.0, f64::NAN).verify().is_err(), "NaN is a failure");
    }

    #[test]
    fn verification_fails_on_a_misplaced_sampled_id_or_a_log_probability_off_the_recomputation() {
        let with_sampler = |misplaced: usize, logprob_difference: f64| {
            let mut r = report(&[0.0], 0.0, 0.0);
            r.sampler_checks = vec![SamplerCheck { rows: 64, vocab: 151_936, temperature: 1.0, misplaced, logprob_difference }];
            r.verify()
        };
        assert!(with_sampler(0, 5e-4).is_ok());
        let err = with_sampler(2, 0.0).expect_err("two ids outside their interval").to_string();
        assert!(err.contains("sampler") && err.contains("64 rows of 151936 columns") && err.contains("2 ids"), "{err}");
        assert!(with_sampler(0, 0.01).is_err(), "a log-probability 0.01 off");
        assert!(with_sampler(0, f64::NAN).is_err(), "NaN is a failure");
    }
}
