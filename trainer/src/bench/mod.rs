//! Benchmarks on random weights at the real shapes of the models the reference system uses (no
//! download): generation throughput with a profile of one decode step and the copy-bandwidth
//! roofline, the RL training micro-step (forward, backward to the trainable parameters, AdamW),
//! whole GRPO steps on one or several devices, and the kernels of a forward pass ([`kernels`]).
//! Results are measured on the machine that runs them and recorded in docs/performance.md.

use std::time::Instant;

use burn::tensor::{DType, Device, Distribution, Tensor};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::config::{Architecture, Llama3RopeScaling, ModelConfig, RopeConfig};
use crate::model::overwrite::overwrite;
use crate::model::{CausalLm, RandomWeights, token_tensor};
use crate::rollout::{self, GenerationRequest, SamplingParams, sampling};
use crate::steering::Steering;

mod kernels;
pub mod streamed_product;
pub mod tensor_cores;
pub use kernels::{AttentionComparison, KernelBench, KernelCheck, KernelReport, ProductForm, ProductTiming, kernel_tolerance, kernels};

/// The model shapes with presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Shape {
    /// Qwen2.5-Math-1.5B: 28 layers, hidden 1536, MLP 8960, 12 heads / 2 KV heads, tied embeddings.
    #[value(name = "qwen2.5-math-1.5b")]
    QwenMath1_5b,
    /// Qwen2.5-Math-7B: 28 layers, hidden 3584, MLP 18944, 28 heads / 4 KV heads.
    #[value(name = "qwen2.5-math-7b")]
    QwenMath7b,
    /// Llama-3.1-8B: 32 layers, hidden 4096, MLP 14336, 32 heads / 8 KV heads, llama3 RoPE.
    #[value(name = "llama3.1-8b")]
    Llama3_1_8b,
}

impl Shape {
    /// The model configuration of this shape.
    pub fn config(self) -> ModelConfig {
        let (arch, h, i, l, nh, nkv, v, tie, theta, max_pos) = match self {
            Self::QwenMath1_5b => (Architecture::Qwen2, 1536, 8960, 28, 12, 2, 151_936, true, 10_000.0, 4096),
            Self::QwenMath7b => (Architecture::Qwen2, 3584, 18944, 28, 28, 4, 152_064, false, 10_000.0, 4096),
            Self::Llama3_1_8b => (Architecture::Llama, 4096, 14336, 32, 32, 8, 128_256, false, 500_000.0, 131_072),
        };
        let llama3_scaling = (arch == Architecture::Llama).then_some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        });
        ModelConfig {
            architecture: arch,
            hidden_size: h,
            intermediate_size: i,
            num_layers: l,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: h / nh,
            vocab_size: v,
            max_position_embeddings: max_pos,
            rms_norm_eps: 1e-6,
            rope: RopeConfig { theta, llama3_scaling },
            tie_word_embeddings: tie,
            qkv_bias: arch == Architecture::Qwen2,
            o_bias: false,
            mlp_bias: false,
            stored_dtype: None,
            eos_token_ids: Vec::new(),
            bos_token_id: None,
        }
    }
}

/// The shape a benchmark runs at: a preset, or the `config.json` of any supported model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ShapeSpec {
    /// A preset shape.
    Preset(Shape),
    /// A Hugging Face `config.json` (its weights are not read).
    ConfigFile(std::path::PathBuf),
}

impl std::str::FromStr for ShapeSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if let Ok(preset) = <Shape as clap::ValueEnum>::from_str(s, true) {
            return Ok(Self::Preset(preset));
        }
        let path = std::path::PathBuf::from(s);
        if path.extension().is_some_and(|e| e == "json") {
            return Ok(Self::ConfigFile(path));
        }
        Err(format!("`{s}` is neither a preset (qwen2.5-math-1.5b, qwen2.5-math-7b, llama3.1-8b) nor a config.json path"))
    }
}

impl ShapeSpec {
    /// The model configuration: the preset's, or the file's.
    pub fn config(&self) -> Result<ModelConfig> {
        match self {
            Self::Preset(shape) => Ok(shape.config()),
            Self::ConfigFile(path) => ModelConfig::from_json(path, &crate::model::config::read_json(path)?),
        }
    }
}

/// Settings of the generation benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateBench {
    /// Model shape.
    pub shape: ShapeSpec,
    /// Prompts decoded together.
    pub batch: usize,
    /// Tokens per prompt.
    pub prompt_len: usize,
    /// New tokens per prompt (no stop token, so every row runs to its budget).
    pub new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Seed of weights and sampling.
    pub seed: u64,
    /// Also time the parts of a decode step and the copy bandwidth.
    pub profile: bool,
    /// Give each prompt its own budget between `new_tokens / 8` and `new_tokens` (deterministic),
    /// like completions that stop at different lengths, so rows finish at different steps.
    pub varied_lengths: bool,
    /// Attention as one fused kernel ([`CausalLm::fused_attention`]).
    pub fused_attention: bool,
    /// Decode-step products as burn's `matmul`, not the trainer's kernel
    /// ([`CausalLm::decode_kernel`]).
    pub burn_products: bool,
    /// RMSNorms as burn's operations, not the trainer's kernel ([`CausalLm::fused_norm`]).
    pub composed_norm: bool,
    /// The rotary embedding as burn's operations, not the trainer's kernel
    /// ([`CausalLm::rotary_kernel`]).
    pub composed_rotary: bool,
    /// A decode step's attention as burn's operations, not the trainer's kernel
    /// ([`CausalLm::decode_attention`]).
    pub composed_attention: bool,
    /// Issue every decode step launch by launch through burn instead of replaying a recorded step
    /// ([`CausalLm::decode_graph`]).
    pub unrecorded_steps: bool,
    /// Generate with a random steering vector `[L, H]` after every layer's MLP (an RL
    /// rollout's setting) instead of the base model.
    pub steered: bool,
    /// Sample each step's rows with burn's operations, not the trainer's sampling kernel
    /// ([`CausalLm::sampling_kernel`]).
    pub composed_sampling: bool,
}

impl GenerateBench {
    /// The new-token budget of prompt `index`.
    fn budget(&self, index: usize) -> usize {
        if !self.varied_lengths {
            return self.new_tokens;
        }
        let shortest = (self.new_tokens / 8).max(1);
        shortest + (index.wrapping_mul(2_654_435_761) >> 7) % (self.new_tokens - shortest + 1)
    }
}

/// What the generation benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    /// The settings.
    pub settings: GenerateBench,
    /// Compute dtype.
    pub dtype: String,
    /// Device description.
    pub device: String,
    /// Seconds to create the random weights.
    pub load_secs: f64,
    /// Generated tokens per second over the timed run (prefill included).
    pub tokens_per_sec: f64,
    /// Seconds of the timed run.
    pub total_secs: f64,
    /// Prefill seconds (all prompts, with the first sampled token).
    pub prefill_secs: f64,
    /// Mean milliseconds per decode step.
    pub decode_step_ms: f64,
    /// Tokens generated in the timed run.
    pub generated_tokens: usize,
    /// Decode steps of the timed run.
    pub decode_steps: usize,
    /// Rows the decode steps computed (summed over steps): below `batch × decode_steps` once
    /// rows finish at different steps and the batch halves.
    pub decoded_rows: usize,
    /// Decode steps replayed from a recorded step ([`GenerationStats::replayed_steps`](crate::rollout::GenerationStats::replayed_steps)).
    pub replayed_steps: usize,
    /// Bytes the device allocator holds after the run, when the backend reports it.
    pub device_bytes_reserved: Option<u64>,
    /// Bytes a mean decode step reads at least: every weight once (the tied embedding once, as
    /// the output layer) plus the KV cache at the mean sequence length (of the full batch).
    pub decode_bytes_per_step: f64,
    /// Floating-point operations of a mean decode step's products and attention (2 per
    /// multiply-add): every weight matrix once per row, the output layer included, and the
    /// scores and values of attention at the mean sequence length.
    pub decode_flops_per_step: f64,
    /// Where a decode step's time goes, and the roofline (with `--profile`).
    pub profile: Option<DecodeProfile>,
    /// Token ids generated for the first prompt in the timed run. The same shape, seed and
    /// settings give the same ids, so runs with other kernels or with steering can be compared.
    pub first_completion: Vec<u32>,
}

/// The parts of one decode step, each timed alone with a device synchronisation after it (means
/// over `iterations` steps at the benchmark's batch and prompt length), and the bandwidth they
/// are measured against.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeProfile {
    /// Decode steps timed.
    pub iterations: usize,
    /// The transformer layers of one step (embedding, every layer with its KV-cache append and
    /// attention, final norm), ms.
    pub layers_ms: f64,
    /// The output projection to the vocabulary (`[B, H] × [H, V]`), ms.
    pub logits_ms: f64,
    /// Sampling (softmax, inverse CDF, read-back of ids and log-probabilities), ms.
    pub sample_ms: f64,
    /// One MLP-shaped product `[B, H] × [H, I]` (the gate projection's shape) alone, ms.
    pub mlp_matmul_ms: f64,
    /// The weight bandwidth that product reaches, GB/s.
    pub mlp_matmul_gbps: f64,
    /// Device copy bandwidth (read + write of a 1 GiB buffer), GB/s.
    pub copy_gbps: f64,
    /// `decode_bytes_per_step / decode step time / copy bandwidth` of the timed run.
    pub roofline_fraction: f64,
    /// The device's rate of `16 × 16 × 16` tile products of the dtype into f32
    /// ([`tensor_cores::tensor_core_rate`]), TFLOP/s; `None` on the CPU.
    pub tensor_core_tflops: Option<f64>,
    /// Largest relative difference of those tile products from burn's product of the same pair.
    pub tensor_core_max_rel_diff: Option<f64>,
    /// The same rate measured earlier in the same process, at each stage of the benchmark (empty
    /// on the CPU).
    pub tensor_core_tflops_by_stage: Vec<StageRate>,
    /// `decode_flops_per_step` at the highest tile-product rate measured in the process (the
    /// rate varies between stages, docs/performance.md): the least time a decode step's
    /// products take on tensor cores, ms.
    pub compute_floor_ms: Option<f64>,
    /// `decode_bytes_per_step` at the copy bandwidth: the least time a decode step's reads take, ms.
    pub memory_floor_ms: f64,
}

/// The tensor-core rate ([`tensor_cores::tensor_core_rate`]) at one stage of a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct StageRate {
    /// What the process had done before the measurement.
    pub stage: &'static str,
    /// TFLOP/s.
    pub tflops: f64,
}

/// Appends the tensor-core rate at `stage` to `rates` when `profile` asks for it.
fn probe_stage(rates: &mut Vec<StageRate>, profile: bool, stage: &'static str, device: &Device, dtype: DType) -> Result<()> {
    if profile && let Some(rate) = tensor_cores::tensor_core_rate(device, dtype, TENSOR_CORE_PLANES, TENSOR_CORE_REPEATS)? {
        rates.push(StageRate { stage, tflops: rate.tflops });
    }
    Ok(())
}

/// Planes of the tensor-core probe: 8 cubes of 4 planes per streaming multiprocessor of a large
/// GPU (132 on an H100 or H200).
pub const TENSOR_CORE_PLANES: usize = 4224;
/// Rounds of tile products per plane of the tensor-core probe.
pub const TENSOR_CORE_REPEATS: usize = 2048;

/// Runs the generation benchmark: a warm-up, then the timed run. The warm-up generates 4 tokens
/// per prompt, or with `varied_lengths` the whole varied run, so that the timed run meets the
/// batch shapes of its halvings again, as every RL step after the first does.
pub fn generate(bench: &GenerateBench, device: &Device, dtype: DType, progress: &ProgressBar) -> Result<GenerateReport> {
    if bench.batch == 0 || bench.prompt_len == 0 || bench.new_tokens == 0 {
        return Err(Error::InvalidArgument("batch, prompt length and new tokens must be ≥ 1".into()));
    }
    let config = bench.shape.config()?;
    let vocab = config.vocab_size as u64;
    device.seed(bench.seed);
    let mut rates = Vec::new();
    probe_stage(&mut rates, bench.profile, "before loading the model", device, dtype)?;
    let start = Instant::now();
    let mut lm = CausalLm::load(config, &RandomWeights { std: 0.02 }, device, dtype)?;
    lm.fused_attention = bench.fused_attention;
    lm.decode_kernel &= !bench.burn_products;
    lm.fused_norm &= !bench.composed_norm;
    lm.rotary_kernel &= !bench.composed_rotary;
    lm.decode_attention &= !bench.composed_attention;
    lm.decode_graph &= !bench.unrecorded_steps;
    lm.sampling_kernel &= !bench.composed_sampling;
    crate::device::sync(device, "loading the weights")?;
    let load_secs = start.elapsed().as_secs_f64();
    probe_stage(&mut rates, bench.profile, "after loading the model", device, dtype)?;
    // Deterministic pseudo-random prompt tokens.
    let prompts: Vec<Vec<u32>> = (0..bench.batch).map(|b| synthetic_prompt(b, bench.prompt_len, vocab)).collect();
    let request = |budget: &dyn Fn(usize) -> usize| GenerationRequest {
        max_new_tokens: (0..prompts.len()).map(budget).collect(),
        prompts: prompts.clone(),
        samples_per_prompt: 1,
        sampling: SamplingParams { temperature: bench.temperature, top_p: 1.0, top_k: None, seed: bench.seed },
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
        max_batch_rows: bench.batch,
        prompt_keys: None,
    };
    let warmup: &dyn Fn(usize) -> usize = if bench.varied_lengths { &|b| bench.budget(b) } else { &|_| 4 };
    let steering = if bench.steered {
        let c = &lm.config;
        Steering::PerLayer(Tensor::random([c.num_layers, c.hidden_size], Distribution::Normal(0.0, 0.02), device))
    } else {
        Steering::None
    };
    rollout::generate(&lm, &steering, &[], &request(warmup), &ProgressBar::hidden())?;
    probe_stage(&mut rates, bench.profile, "after the warm-up generation", device, dtype)?;
    // Again at once: whether a slow rate there (docs/performance.md) lasts or passes.
    probe_stage(&mut rates, bench.profile, "after the warm-up generation and one probe", device, dtype)?;
    let start = Instant::now();
    let generation = rollout::generate(&lm, &steering, &[], &request(&|b| bench.budget(b)), progress)?;
    let total_secs = start.elapsed().as_secs_f64();
    probe_stage(&mut rates, bench.profile, "after the timed generation", device, dtype)?;
    let stats = generation.stats;
    let first_completion = generation
        .completions
        .into_iter()
        .find(|c| c.prompt_index == 0)
        .map(|c| c.tokens)
        .unwrap_or_default();
    let decode_step_ms = 1e3 * stats.decode_secs / stats.decode_steps.max(1) as f64;
    let mean_len = bench.prompt_len + bench.new_tokens / 2;
    let decode_bytes_per_step = decode_bytes(&lm, bench.batch, mean_len, dtype);
    let decode_flops_per_step = decode_flops(&lm, bench.batch, mean_len);
    let profile = if bench.profile {
        let step = StepCost { ms: decode_step_ms, bytes: decode_bytes_per_step, flops: decode_flops_per_step };
        Some(decode_profile(&lm, &steering, &prompts, bench, step, rates, progress)?)
    } else {
        None
    };
    Ok(GenerateReport {
        settings: bench.clone(),
        dtype: format!("{dtype:?}"),
        device: format!("{device:?}"),
        load_secs,
        tokens_per_sec: stats.generated_tokens as f64 / total_secs,
        total_secs,
        prefill_secs: stats.prefill_secs,
        decode_step_ms,
        generated_tokens: stats.generated_tokens,
        decode_steps: stats.decode_steps,
        decoded_rows: stats.decoded_rows,
        replayed_steps: stats.replayed_steps,
        device_bytes_reserved: device.memory_pool_usage().map(|u| u.bytes_reserved),
        decode_bytes_per_step,
        decode_flops_per_step,
        profile,
        first_completion,
    })
}

/// Prompt `index` of a benchmark: `len` deterministic pseudo-random token ids below `vocab`.
fn synthetic_prompt(index: usize, len: usize, vocab: u64) -> Vec<u32> {
    let index = index as u64;
    (0..len as u64).map(|i| ((index * 7919 + i * 104_729 + 13) % vocab) as u32).collect()
}

/// Bytes of one decode step at sequence length `len`: all weights once (the embedding matrix is
/// read as the output layer; the input lookup reads `batch` rows) and keys and values of `len`
/// positions per row and layer.
pub fn decode_bytes(lm: &CausalLm, batch: usize, len: usize, dtype: DType) -> f64 {
    let c = &lm.config;
    let weights: usize = lm.named_weights().numel();
    let kv = 2 * c.num_layers * batch * c.num_kv_heads * c.head_dim * len;
    ((weights + kv) * dtype.size()) as f64
}

/// Floating-point operations of one decode step of `batch` rows at sequence length `len`: `2 ·
/// batch` per weight of every product (the output layer included, the embedding lookup not)
/// and `4 · batch · len · heads · head_dim` per layer for attention's scores and values.
pub fn decode_flops(lm: &CausalLm, batch: usize, len: usize) -> f64 {
    let c = &lm.config;
    let product_weights = lm.named_weights().numel() - if c.tie_word_embeddings { 0 } else { c.vocab_size * c.hidden_size };
    let attention = 4 * c.num_layers * len * c.num_heads * c.head_dim;
    (2 * batch * product_weights + batch * attention) as f64
}

fn sync(device: &Device) -> Result<()> {
    crate::device::sync(device, "device synchronisation")
}

/// Seconds of `f` (with a device synchronisation) averaged over `n` runs after one warm-up run.
fn time_synced(device: &Device, n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    sync(device)?;
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    sync(device)?;
    Ok(start.elapsed().as_secs_f64() / n.max(1) as f64)
}

/// Device copy bandwidth in GB/s: 2^28 f32 (1 GiB) read and written into a buffer allocated
/// beforehand ([`overwrite`]), so that no allocation or first-use initialisation is timed.
pub fn copy_bandwidth(device: &Device) -> Result<f64> {
    let n = 1usize << 28;
    let src = Tensor::<1>::ones([n], (device, DType::F32));
    let mut dst = Tensor::<1>::zeros([n], (device, DType::F32));
    let secs = time_synced(device, 5, || {
        dst = overwrite(dst.clone(), src.clone());
        Ok(())
    })?;
    Ok(2.0 * (n * 4) as f64 / secs / 1e9)
}

/// A measured decode step: its time, and the bytes it reads and FLOPs it does.
#[derive(Debug, Clone, Copy)]
struct StepCost {
    ms: f64,
    bytes: f64,
    flops: f64,
}

/// Times the parts of a decode step at the benchmark's shape, with the benchmark's `steering`:
/// the prompts are prefilled, then each part runs alone (synchronised) for a few steps; `step`
/// (the generation's) is set against the copy bandwidth and the tensor-core rate measured here.
fn decode_profile(lm: &CausalLm, steering: &Steering, prompts: &[Vec<u32>], bench: &GenerateBench, step: StepCost, tensor_core_tflops_by_stage: Vec<StageRate>, progress: &ProgressBar) -> Result<DecodeProfile> {
    let device = &lm.device;
    let iterations = 8;
    let b = prompts.len();
    // Padded as generation pads them, so the parts are timed at the shapes a decode step has.
    let (tokens, width, layout) = lm.left_pad(prompts, 0, 2 * iterations + 2);
    let mut cache = lm.kv_cache(b, width + 2 * iterations + 2);
    let out = lm.forward(token_tensor(&tokens, [b, width], device), &layout, Some(&mut cache), steering, &[])?;
    let h = lm.config.hidden_size;
    let mut hidden = out.hidden.narrow(1, width - 1, 1);
    sync(device)?;
    progress.set_message("profiling");
    let next: Vec<u32> = (0..b as u32).collect();
    let layers = time_synced(device, iterations, || {
        hidden = lm.forward(token_tensor(&next, [b, 1], device), &layout, Some(&mut cache), steering, &[])?.hidden;
        Ok(())
    })?;
    let mut logits = lm.logits(hidden.clone()).reshape([b, lm.config.vocab_size]);
    let logits_secs = time_synced(device, iterations, || {
        logits = lm.logits(hidden.clone()).reshape([b, lm.config.vocab_size]);
        Ok(())
    })?;
    let params = SamplingParams { temperature: bench.temperature, top_p: 1.0, top_k: None, seed: bench.seed };
    let uniforms = vec![0.5; b];
    let sample = time_synced(device, iterations, || {
        sampling::sample(logits.clone(), &params, &uniforms, device).map(|_| ())
    })?;
    let i = lm.config.intermediate_size;
    let x = Tensor::<2>::ones([b, h], (device, lm.dtype));
    let w = Tensor::<2>::ones([h, i], (device, lm.dtype)).mul_scalar(0.01);
    let mut y = None;
    let mlp = time_synced(device, 4 * iterations, || {
        y = Some(x.clone().matmul(w.clone()));
        Ok(())
    })?;
    drop(y);
    let tensor_core = tensor_cores::tensor_core_rate(device, lm.dtype, TENSOR_CORE_PLANES, TENSOR_CORE_REPEATS)?;
    let copy_gbps = copy_bandwidth(device)?;
    let tensor_core_tflops = tensor_core.map(|r| r.tflops);
    let compute_floor_ms = tensor_core_tflops.map(|last| {
        let best = tensor_core_tflops_by_stage.iter().map(|r| r.tflops).fold(last, f64::max);
        1e3 * step.flops / (best * 1e12)
    });
    Ok(DecodeProfile {
        iterations,
        layers_ms: 1e3 * layers,
        logits_ms: 1e3 * logits_secs,
        sample_ms: 1e3 * sample,
        mlp_matmul_ms: 1e3 * mlp,
        mlp_matmul_gbps: (h * i * lm.dtype.size()) as f64 / mlp / 1e9,
        copy_gbps,
        roofline_fraction: step.bytes / (step.ms * 1e-3) / (copy_gbps * 1e9),
        tensor_core_tflops,
        tensor_core_max_rel_diff: tensor_core.map(|r| r.max_rel_diff),
        tensor_core_tflops_by_stage,
        compute_floor_ms,
        memory_floor_ms: 1e3 * step.bytes / (copy_gbps * 1e9),
    })
}

/// What a training micro-step benchmark trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchSetup {
    /// One vector per layer (the product's subject).
    Steering,
    /// LoRA of rank 4 on every `down_proj`.
    Lora,
    /// Every weight.
    FullModel,
}

/// Settings of the training micro-step benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct TrainStepBench {
    /// Model shape.
    pub shape: ShapeSpec,
    /// What is trained.
    pub setup: BenchSetup,
    /// Sequences per micro-step.
    pub micro_batch: usize,
    /// Tokens per sequence (one prompt token, the rest completion: the log-probabilities of
    /// `seq_len − 1` tokens, as PyTorch's peer computes them).
    pub seq_len: usize,
    /// Timed micro-steps (after two untimed).
    pub repeats: usize,
    /// Seed of weights, tokens and advantages.
    pub seed: u64,
    /// Recompute one layer at a time in the backward pass (see [`LossSettings::recompute_layers`](crate::train::step::LossSettings::recompute_layers)).
    pub recompute_layers: bool,
    /// Attention without autodiff (the forward pass of layer recomputation) as one fused kernel.
    pub fused_attention: bool,
}

/// What the training micro-step benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct TrainStepReport {
    /// The settings.
    pub settings: TrainStepBench,
    /// Compute dtype.
    pub dtype: String,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Seconds of the untimed micro-steps: the first compiles and autotunes kernels; the second
    /// still ran ~1 s slower than the rest on an H200 (one-time work of the first optimizer step
    /// and memory-pool growth), so both are left out of the mean.
    pub warmup_secs: Vec<f64>,
    /// Mean seconds of a timed micro-step: forward, loss, backward to the trainable parameters,
    /// global-norm clip and AdamW, synchronised.
    pub micro_step_secs: f64,
    /// Seconds of each timed micro-step, in order (their spread shows run-to-run variation).
    pub step_secs: Vec<f64>,
    /// Where a timed micro-step's host time goes (means): device work is queued asynchronously,
    /// so a phase that only records work is host overhead, and the waits show up where the host
    /// reads a result.
    pub phases: TrainStepPhases,
    /// Tokens per second of the timed micro-steps.
    pub tokens_per_sec: f64,
    /// Bytes burn's memory pool holds after the micro-steps (its high-water mark).
    pub device_bytes_reserved: Option<u64>,
}

/// Host seconds of the phases of a training micro-step.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TrainStepPhases {
    /// The forward pass, the loss and the backward pass to the trainable parameters (work
    /// queued; with layer recomputation the loss is read back once).
    pub gradient_secs: f64,
    /// The global gradient norm, read on the host: waits for the queued work.
    pub clip_secs: f64,
    /// AdamW (queued).
    pub optimizer_secs: f64,
    /// The final device synchronisation: work still running or queued on the device.
    pub sync_secs: f64,
}

impl TrainStepPhases {
    fn add(&mut self, other: &Self, weight: f64) {
        self.gradient_secs += weight * other.gradient_secs;
        self.clip_secs += weight * other.clip_secs;
        self.optimizer_secs += weight * other.optimizer_secs;
        self.sync_secs += weight * other.sync_secs;
    }

    fn total(&self) -> f64 {
        self.gradient_secs + self.clip_secs + self.optimizer_secs + self.sync_secs
    }
}

/// Runs the training micro-step benchmark: random weights, random tokens and advantages, the
/// trainer's own loss and gradient ([`micro_batch_gradient`](crate::train::step::micro_batch_gradient))
/// and AdamW.
pub fn train_step(bench: &TrainStepBench, device: &Device, dtype: DType) -> Result<TrainStepReport> {
    use crate::train::config::LoraInit;
    use crate::train::optim::{self, AdamW, AdamWState};
    use crate::train::policy::{Policy, Setup};
    use crate::train::step::{LossBatch, LossSettings, micro_batch_gradient};
    use rand::{Rng, SeedableRng};

    if bench.micro_batch == 0 || bench.seq_len < 2 {
        return Err(Error::InvalidArgument("micro batch must be ≥ 1 and sequence length ≥ 2".into()));
    }
    let config = bench.shape.config()?;
    device.seed(bench.seed);
    let mut base = CausalLm::load(config, &RandomWeights { std: 0.02 }, device, dtype)?;
    base.fused_attention = bench.fused_attention;
    let layers: Vec<usize> = (0..base.config.num_layers).collect();
    let setup = match bench.setup {
        BenchSetup::Steering => Setup::Steering { layers },
        BenchSetup::Lora => Setup::Lora { rank: 4, layers, init: LoraInit::True },
        BenchSetup::FullModel => Setup::FullModel,
    };
    let vocab = base.config.vocab_size as u32;
    let mut policy = Policy::new(base, setup, bench.seed)?;
    let mut optimizer = AdamWState::new(&policy.params);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(bench.seed);
    let n_tok = bench.micro_batch * (bench.seq_len - 1);
    let settings = LossSettings { pad_token_id: 0, temperature: 1.0, kl: None, num_tokens: n_tok, recompute_layers: bench.recompute_layers };
    let mut micro_step = || -> Result<TrainStepPhases> {
        let batch = LossBatch {
            prompts: (0..bench.micro_batch).map(|_| vec![rng.random_range(0..vocab)]).collect(),
            completions: (0..bench.micro_batch).map(|_| (1..bench.seq_len).map(|_| rng.random_range(0..vocab)).collect()).collect(),
            advantages: (0..bench.micro_batch).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect(),
        };
        let mut lap = Instant::now();
        let mut split = || {
            let secs = lap.elapsed().as_secs_f64();
            lap = Instant::now();
            secs
        };
        let grads = micro_batch_gradient(&policy, &batch, &settings)?.grads;
        let gradient_secs = split();
        // The norm is read on the host: the synchronisation that ends the step.
        let (grads, _) = optim::clip_grad_norm(grads, 1.0)?;
        let clip_secs = split();
        policy.params = AdamW::default().step(&policy.params, &grads, &mut optimizer, 1e-3)?;
        let optimizer_secs = split();
        sync(device)?;
        Ok(TrainStepPhases { gradient_secs, clip_secs, optimizer_secs, sync_secs: split() })
    };
    let warmup_secs = vec![micro_step()?.total(), micro_step()?.total()];
    let repeats = bench.repeats.max(1);
    let mut phases = TrainStepPhases::default();
    let mut step_secs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let step = micro_step()?;
        step_secs.push(step.total());
        phases.add(&step, 1.0 / repeats as f64);
    }
    let micro_step_secs = phases.total();
    Ok(TrainStepReport {
        settings: bench.clone(),
        dtype: format!("{dtype:?}"),
        trainable_parameters: policy.num_trainable(),
        warmup_secs,
        micro_step_secs,
        step_secs,
        phases,
        tokens_per_sec: (bench.micro_batch * bench.seq_len) as f64 / micro_step_secs,
        device_bytes_reserved: device.memory_pool_usage().map(|u| u.bytes_reserved),
    })
}

/// Settings of the GRPO step benchmark on one or several devices.
#[derive(Debug, Clone, Serialize)]
pub struct RlStepBench {
    /// Model shape.
    pub shape: ShapeSpec,
    /// Prompts per step (split over the workers).
    pub prompts: usize,
    /// Completions per prompt (G).
    pub generations: usize,
    /// Tokens per prompt.
    pub prompt_len: usize,
    /// New tokens per completion (no stop token: every completion runs to the budget).
    pub new_tokens: usize,
    /// Sequences per backward micro-batch.
    pub micro_batch: usize,
    /// Steps per worker count (the first is a warm-up with kernel compilation).
    pub steps: usize,
    /// Seed of weights and prompts.
    pub seed: u64,
}

/// One worker count's steps.
#[derive(Debug, Clone, Serialize)]
pub struct RlStepRun {
    /// Devices used.
    pub workers: usize,
    /// The metrics line of every step (phases in `seconds`).
    pub steps: Vec<shared::metrics::MetricsLine>,
    /// Seconds of the last step (warm).
    pub last_step_secs: f64,
    /// Completion tokens per second of the last step (generated, scored and differentiated).
    pub last_step_tokens_per_sec: f64,
}

/// Runs whole GRPO steering steps (generation, rewards, forward-backward, AdamW; `reinforce`
/// advantages so that every sequence carries a gradient) on the first `n` of `devices` for each
/// `n` in `worker_counts`. Weights are random on the first device and copied to the others.
/// `on_step(workers, line)` sees every step as it ends (a run cut short still reports its steps).
pub fn rl_step(
    bench: &RlStepBench,
    devices: &[Device],
    worker_counts: &[usize],
    dtype: DType,
    tokenizer: &crate::model::ModelTokenizer,
    on_step: &mut dyn FnMut(usize, &shared::metrics::MetricsLine),
) -> Result<Vec<RlStepRun>> {
    use crate::parallel::SingleProcess;
    use crate::train::optim::AdamWState;
    use crate::train::policy::{Policy, Setup};
    use crate::train::step::{StepContext, TrainPrompt, TrainState, train_step};

    let Some(first) = devices.first() else {
        return Err(Error::InvalidArgument("no device".into()));
    };
    if let Some(&n) = worker_counts.iter().find(|&&n| n == 0 || n > devices.len()) {
        return Err(Error::InvalidArgument(format!("{n} workers asked for, {} devices given", devices.len())));
    }
    let yaml = format!(
        "model_path: random\ndataset_path: random\ntraining_setup: steering\nlearning_rate: 0.001\n\
         reward_processor_type: reinforce\nprompts_per_step: {}\nnum_generations: {}\nbatch_size: {}\n\
         max_seq_length: {}\nwarmup_ratio: 0.0\nrollout_batch_size: {}\nseed: {}\n",
        bench.prompts,
        bench.generations,
        bench.micro_batch,
        bench.prompt_len + bench.new_tokens,
        bench.prompts * bench.generations,
        bench.seed
    );
    let config = crate::train::config::parse(&yaml, std::path::Path::new("(rl-step benchmark)"), &[])?;
    first.seed(bench.seed);
    let base = CausalLm::load(bench.shape.config()?, &RandomWeights { std: 0.02 }, first, dtype)?;
    let weights = base.named_weights();
    let mut bases = vec![base];
    for device in &devices[1..] {
        bases.push(CausalLm::load(bench.shape.config()?, &weights.to_device(device)?, device, dtype)?);
    }
    drop(weights);
    let vocab = bases[0].config.vocab_size as u64;
    let prompts: Vec<TrainPrompt> = (0..bench.prompts as u64)
        .map(|p| TrainPrompt {
            index: p as usize,
            ids: synthetic_prompt(p as usize, bench.prompt_len, vocab),
            answer: "1".into(),
        })
        .collect();
    let ctx = StepContext {
        config: &config,
        tokenizer,
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
        answer_format: crate::reward::AnswerFormat::QwenMath,
        total_steps: bench.steps as u64,
    };
    let mut runs = Vec::new();
    for &n in worker_counts {
        let layers: Vec<usize> = (0..bases[0].config.num_layers).collect();
        let mut workers = bases[..n]
            .iter()
            .map(|b| Policy::new(b.clone(), Setup::Steering { layers: layers.clone() }, bench.seed))
            .collect::<Result<Vec<_>>>()?;
        let mut state = TrainState { step: 0, optimizer: AdamWState::new(&workers[0].params), baseline: Default::default() };
        let mut steps = Vec::new();
        for _ in 0..bench.steps.max(1) {
            let line = train_step(&mut workers, &mut state, &ctx, &prompts, &SingleProcess, &ProgressBar::hidden())?;
            on_step(n, &line);
            steps.push(line);
        }
        let last = steps.last().map_or(0.0, |l| l.seconds.total);
        let tokens = steps.last().and_then(|l| l.extra.get("num_completion_tokens")).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        tracing::info!(workers = n, last_step_secs = last, "rl-step");
        runs.push(RlStepRun { workers: n, last_step_secs: last, last_step_tokens_per_sec: tokens / last.max(1e-9), steps });
    }
    Ok(runs)
}
