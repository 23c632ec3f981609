//! Benchmarks on random weights at the real shapes of the models the reference system uses (no
//! download): generation throughput for now. Results are measured on the machine that runs them
//! and recorded in docs/performance.md.

use std::time::Instant;

use burn::tensor::{DType, Device};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::config::{Architecture, Llama3RopeScaling, ModelConfig, RopeConfig};
use crate::model::{CausalLm, RandomWeights};
use crate::rollout::{self, GenerationRequest, SamplingParams};
use crate::steering::Steering;

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

/// Settings of the generation benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateBench {
    /// Model shape.
    pub shape: Shape,
    /// Prompts decoded together.
    pub batch: usize,
    /// Tokens per prompt.
    pub prompt_len: usize,
    /// New tokens per prompt (no stop token, so every row runs to the budget).
    pub new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Seed of weights and sampling.
    pub seed: u64,
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
    /// Bytes the device allocator holds after the run, when the backend reports it.
    pub device_bytes_reserved: Option<u64>,
}

/// Runs the generation benchmark: one short warm-up, then the timed run.
pub fn generate(bench: &GenerateBench, device: &Device, dtype: DType, progress: &ProgressBar) -> Result<GenerateReport> {
    if bench.batch == 0 || bench.prompt_len == 0 || bench.new_tokens == 0 {
        return Err(Error::InvalidArgument("batch, prompt length and new tokens must be ≥ 1".into()));
    }
    let config = bench.shape.config();
    let vocab = config.vocab_size as u64;
    device.seed(bench.seed);
    let start = Instant::now();
    let lm = CausalLm::load(config, &RandomWeights { std: 0.02 }, device, dtype)?;
    device.sync().map_err(|e| Error::Backend(format!("{e:?}")))?;
    let load_secs = start.elapsed().as_secs_f64();
    // Deterministic pseudo-random prompt tokens.
    let prompts: Vec<Vec<u32>> = (0..bench.batch as u64)
        .map(|b| (0..bench.prompt_len as u64).map(|i| ((b * 7919 + i * 104_729 + 13) % vocab) as u32).collect())
        .collect();
    let request = |new_tokens: usize| GenerationRequest {
        max_new_tokens: vec![new_tokens; prompts.len()],
        prompts: prompts.clone(),
        samples_per_prompt: 1,
        sampling: SamplingParams { temperature: bench.temperature, top_p: 1.0, top_k: None, seed: bench.seed },
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
        max_batch_rows: bench.batch,
        prompt_keys: None,
    };
    rollout::generate(&lm, &Steering::None, &[], &request(4), &ProgressBar::hidden())?;
    let start = Instant::now();
    let generation = rollout::generate(&lm, &Steering::None, &[], &request(bench.new_tokens), progress)?;
    let total_secs = start.elapsed().as_secs_f64();
    let stats = generation.stats;
    Ok(GenerateReport {
        settings: bench.clone(),
        dtype: format!("{dtype:?}"),
        device: format!("{device:?}"),
        load_secs,
        tokens_per_sec: stats.generated_tokens as f64 / total_secs,
        total_secs,
        prefill_secs: stats.prefill_secs,
        decode_step_ms: 1e3 * stats.decode_secs / stats.decode_steps.max(1) as f64,
        device_bytes_reserved: device.memory_pool_usage().map(|u| u.bytes_reserved),
    })
}
