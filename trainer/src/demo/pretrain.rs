//! Pretraining the demo model from scratch with the project's own model code: a small
//! Qwen2-architecture [`CausalLm`] whose weights are tracked by autodiff, next-token
//! cross-entropy on the completion tokens of chat-formatted task examples (prompt built by
//! [`PromptStyle`] exactly as RL and evaluation build it, completion = a solution in a style drawn
//! from the [`StyleMix`], then `<|im_end|>`), and the project's [`AdamW`] with global-norm
//! clipping.
//!
//! Deterministic: weights are initialised on the host from ChaCha streams (one per tensor, keyed
//! by the seed and the tensor name), batches are drawn from seeded streams, so the same
//! configuration gives bit-identical weights on the CPU backend.
//!
//! The result is a normal Hugging Face model directory ([`write_task_and_tokenizer`] then
//! [`Pretraining::save`]): `config.json`, `model.safetensors`, `generation_config.json`,
//! `tokenizer.json`, `tokenizer_config.json`, and the task's `data/train.jsonl`, `data/test.jsonl`.

use std::path::Path;

use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::demo::task::{self, Problem, ProblemStream, Split, Style, StyleMix, TaskRow};
use crate::demo::{fnv1a, tokenizer as demo_tokenizer};
use crate::error::{Error, Result};
use crate::model::prompt::PromptStyle;
use crate::model::weights::{TensorSource, WeightMap};
use crate::model::{BatchLayout, CausalLm, ModelConfig, ModelTokenizer, token_tensor};
use crate::reward::{self, AnswerFormat};
use crate::rollout::{self, GenerationRequest, SamplingParams};
use crate::steering::Steering;
use crate::train::optim::{AdamW, AdamWState, clip_grad_norm, warmup_lr};

/// The sizes of the demo model (a Qwen2 decoder with tied embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoShape {
    /// Width of the residual stream `H`.
    pub hidden_size: usize,
    /// Number of decoder layers `L`.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Longest sequence (prompt + completion).
    pub max_position_embeddings: usize,
}

impl Default for DemoShape {
    /// The shape of the committed demo model.
    fn default() -> Self {
        Self {
            hidden_size: 64,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            intermediate_size: 192,
            max_position_embeddings: 256,
        }
    }
}

/// Everything that determines a pretraining run (and so its weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// Seeds the task rows, the initial weights and the batches.
    pub seed: u64,
    /// Optimiser steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Linear warm-up steps; afterwards the rate decays linearly to 10 % of the peak.
    pub warmup_steps: u64,
    /// AdamW hyper-parameters.
    pub optimizer: AdamW,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Standard deviation of the initial matrices (norm weights start at one, biases at zero).
    pub init_std: f64,
    /// Model sizes.
    pub shape: DemoShape,
    /// Proportions of the solution styles in the corpus.
    pub styles: StyleMix,
    /// Rows of `data/train.jsonl`.
    pub train_rows: usize,
    /// Rows of `data/test.jsonl`.
    pub test_rows: usize,
}

impl Default for PretrainConfig {
    /// The configuration of the committed demo model.
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 2000,
            batch_size: 32,
            learning_rate: 3e-3,
            warmup_steps: 50,
            optimizer: AdamW { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.01 },
            max_grad_norm: 1.0,
            init_std: 0.02,
            shape: DemoShape::default(),
            styles: StyleMix::default(),
            train_rows: 3000,
            test_rows: 500,
        }
    }
}

impl PretrainConfig {
    /// Errors on values that cannot train a model.
    pub fn validate(&self) -> Result<()> {
        let s = &self.shape;
        let bad = |what: &str| Err(Error::InvalidArgument(format!("pretraining: {what}")));
        if self.steps == 0 || self.batch_size == 0 {
            return bad("steps and batch size must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(&format!("learning rate must be positive, found {}", self.learning_rate));
        }
        if !(self.init_std > 0.0 && self.init_std.is_finite() && self.max_grad_norm > 0.0) {
            return bad("init std and max grad norm must be positive");
        }
        if s.hidden_size == 0 || s.num_layers == 0 || s.intermediate_size == 0 || s.num_kv_heads == 0 {
            return bad(&format!("every model size must be at least 1, found {s:?}"));
        }
        let even_heads = s.num_heads > 0 && s.hidden_size.is_multiple_of(s.num_heads) && (s.hidden_size / s.num_heads).is_multiple_of(2);
        if !even_heads || !s.num_heads.is_multiple_of(s.num_kv_heads) {
            return bad(&format!("heads must divide the hidden size into even head widths and be a multiple of the KV heads, found {s:?}"));
        }
        if self.train_rows == 0 || self.test_rows == 0 {
            return bad("train and test rows must be at least 1");
        }
        self.styles.validate()
    }
}

/// Writes the task rows (`data/train.jsonl`, `data/test.jsonl`) and the tokenizer trained on the
/// task's texts into `dir`, and loads that tokenizer back as the rest of the code will.
pub fn write_task_and_tokenizer(config: &PretrainConfig, dir: &Path) -> Result<ModelTokenizer> {
    config.validate()?;
    let train = task::distinct_problems(Split::Train, config.seed, config.train_rows);
    task::write_jsonl(&dir.join("data/train.jsonl"), &task::rows(Split::Train, config.seed, &train))?;
    let test = task::distinct_problems(Split::Test, config.seed, config.test_rows);
    task::write_jsonl(&dir.join("data/test.jsonl"), &task::rows(Split::Test, config.seed, &test))?;
    let tokenizer = demo_tokenizer::train(&corpus(&train))?;
    demo_tokenizer::write(&tokenizer, dir, config.shape.max_position_embeddings)?;
    ModelTokenizer::from_dir(dir)
}

/// The tokenizer's training texts: every problem with its solution in each style.
fn corpus(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .flat_map(|p| [p.text(), p.solution(Style::Careful), p.solution(Style::Unboxed), p.solution(Style::Hasty)])
        .collect()
}

/// The `config.json` of the demo model of `shape` for `tokenizer` (its vocabulary size and special
/// token ids).
pub fn model_config_json(shape: &DemoShape, tokenizer: &ModelTokenizer) -> Result<Value> {
    let id = |t: &str| demo_tokenizer::token_id(tokenizer, t);
    Ok(json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": id(demo_tokenizer::ENDOFTEXT)?,
        "eos_token_id": id(demo_tokenizer::IM_END)?,
        "pad_token_id": id(demo_tokenizer::ENDOFTEXT)?,
        "hidden_act": "silu",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads,
        "max_position_embeddings": shape.max_position_embeddings,
        "max_window_layers": shape.num_layers,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "sliding_window": null,
        "use_sliding_window": false,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        "use_cache": true,
        "vocab_size": tokenizer.vocab_size(),
    }))
}

/// Seeded host-side initial weights: a [`TensorSource`] drawing each tensor from its own ChaCha
/// stream (keyed by the seed and the tensor's name, so the order of loading does not matter):
/// norm weights one, biases zero, everything else normal with standard deviation `std`.
#[derive(Debug, Clone, Copy)]
pub struct SeededInit {
    /// The seed.
    pub seed: u64,
    /// Standard deviation of the matrices.
    pub std: f64,
}

impl TensorSource for SeededInit {
    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D], device: &Device, dtype: DType) -> Result<Tensor<D>> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(fnv1a(name.as_bytes()));
            (0..n).map(|_| (normal(&mut rng) * self.std) as f32).collect()
        };
        Ok(Tensor::<D>::from_data(TensorData::new(values, shape), device).cast(dtype))
    }
}

/// One standard normal draw (Box–Muller on two uniforms).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One training batch: prompt + completion rows, left-padded (built by [`Batch::new`], so its
/// parts always agree in shape).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Input ids `[B, S]` (each row without its last token).
    inputs: Vec<u32>,
    /// Target ids `[B, S]` (each row shifted by one).
    targets: Vec<u32>,
    /// `[B, S]`: 1 where the target is a completion token, else 0.
    mask: Vec<f32>,
    /// Rows `B`.
    rows: usize,
    /// Columns `S`.
    width: usize,
    /// Left padding of each row.
    layout: BatchLayout,
}

impl Batch {
    /// Builds a batch from `(prompt, completion)` id pairs (completions must not be empty).
    pub fn new(examples: &[(Vec<u32>, Vec<u32>)], pad_id: u32) -> Result<Self> {
        if examples.is_empty() || examples.iter().any(|(p, c)| p.is_empty() || c.is_empty()) {
            return Err(Error::InvalidArgument("a batch needs examples with non-empty prompts and completions".into()));
        }
        let full: Vec<Vec<u32>> = examples.iter().map(|(p, c)| [p.as_slice(), c.as_slice()].concat()).collect();
        let (tokens, total, layout) = BatchLayout::left_pad(&full, pad_id);
        let (rows, width) = (examples.len(), total - 1);
        let (mut inputs, mut targets, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for (r, (_, completion)) in examples.iter().enumerate() {
            let row = &tokens[r * total..(r + 1) * total];
            inputs.extend_from_slice(&row[..width]);
            targets.extend_from_slice(&row[1..]);
            // Target column j is token j + 1: the completion occupies the last `len` columns.
            mask.extend((0..width).map(|j| if j + 1 >= total - completion.len() { 1.0f32 } else { 0.0 }));
        }
        Ok(Self { inputs, targets, mask, rows, width, layout })
    }

    /// Number of completion tokens (the loss's denominator).
    pub fn completion_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }
}

/// Mean next-token cross-entropy `[1]` of `lm` over the completion tokens of `batch`
/// (differentiable with respect to tracked weights).
pub fn completion_loss(lm: &CausalLm, batch: &Batch) -> Result<Tensor<1>> {
    let device = &lm.device;
    let (b, s) = (batch.rows, batch.width);
    let out = lm.forward(token_tensor(&batch.inputs, [b, s], device), &batch.layout, None, &Steering::None, &[])?;
    let logp = log_softmax(lm.logits(out.hidden), 2);
    let targets: Tensor<3, Int> = token_tensor(&batch.targets, [b, s], device).reshape([b, s, 1]);
    let mask = Tensor::<2>::from_data(TensorData::new(batch.mask.clone(), [b, s]), device);
    let picked = logp.gather(2, targets).reshape([b, s]) * mask;
    Ok(picked.sum().neg().div_scalar(batch.completion_tokens().max(1) as f64))
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepReport {
    /// Steps done, this one included.
    pub step: u64,
    /// Loss of the step's batch before the update.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the update.
    pub lr: f64,
}

/// A pretraining run in progress: weights, optimiser state and the seeded data streams.
pub struct Pretraining {
    config: PretrainConfig,
    model_config: Value,
    tokenizer: ModelTokenizer,
    lm: CausalLm,
    params: WeightMap,
    state: AdamWState,
    problems: ProblemStream,
    styles: ChaCha8Rng,
    step: u64,
}

impl std::fmt::Debug for Pretraining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pretraining").field("config", &self.config).field("step", &self.step).finish()
    }
}

impl Pretraining {
    /// Initialises the model of `config` for `tokenizer` (the demo tokenizer of
    /// [`write_task_and_tokenizer`]) on `device`, in f32.
    pub fn new(config: &PretrainConfig, tokenizer: ModelTokenizer, device: &Device) -> Result<Self> {
        config.validate()?;
        let model_config = model_config_json(&config.shape, &tokenizer)?;
        let parsed = ModelConfig::from_json(Path::new("(demo config.json)"), &model_config)?;
        let lm = CausalLm::load(parsed, &SeededInit { seed: config.seed, std: config.init_std }, device, DType::F32)?;
        let params = lm.named_weights();
        let state = AdamWState::new(&params);
        let mut styles = ChaCha8Rng::seed_from_u64(config.seed);
        styles.set_stream(3);
        Ok(Self {
            config: config.clone(),
            model_config,
            tokenizer,
            lm,
            params,
            state,
            problems: ProblemStream::new(Split::Train, config.seed),
            styles,
            step: 0,
        })
    }

    /// The current weights (checkpoint names and layout).
    pub fn weights(&self) -> &WeightMap {
        &self.params
    }

    /// The model with the current weights.
    pub fn model(&self) -> Result<CausalLm> {
        self.lm.with_weights(&self.params)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ModelTokenizer {
        &self.tokenizer
    }

    /// The next batch of the seeded stream: train-split problems with solutions in styles drawn
    /// from the mix.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let style = PromptStyle::default();
        let eos = self.eos_id()?;
        let mut examples = Vec::with_capacity(self.config.batch_size);
        for _ in 0..self.config.batch_size {
            let problem = self.problems.next().ok_or_else(|| Error::InvalidArgument("the problem stream ended".into()))?;
            let solution = problem.solution(self.config.styles.sample(&mut self.styles));
            let prompt = style.build(&self.tokenizer, &problem.text())?.ids;
            let mut completion = self.tokenizer.encode(&solution, false)?;
            completion.push(eos);
            examples.push((prompt, completion));
        }
        Batch::new(&examples, self.tokenizer.pad_token_id())
    }

    fn eos_id(&self) -> Result<u32> {
        demo_tokenizer::token_id(&self.tokenizer, demo_tokenizer::IM_END)
    }

    /// One optimiser step on the next batch.
    pub fn step(&mut self) -> Result<StepReport> {
        let batch = self.next_batch()?;
        let tracked = self.params.tracked();
        let loss = completion_loss(&self.lm.with_weights(&tracked)?, &batch)?;
        let grads = loss.backward();
        let loss = f64::from(loss.inner().into_scalar::<f32>());
        let grad_map = tracked.gradients(&grads);
        let (clipped, grad_norm) = clip_grad_norm(grad_map, self.config.max_grad_norm)?;
        let lr = self.learning_rate();
        self.params = self.config.optimizer.step(&self.params, &clipped, &mut self.state, lr)?;
        self.step += 1;
        Ok(StepReport { step: self.step, loss, grad_norm, lr })
    }

    /// The learning rate of the next step: linear warm-up, then linear decay to 10 % of the peak.
    fn learning_rate(&self) -> f64 {
        let c = &self.config;
        let warm = warmup_lr(c.learning_rate, self.step, c.warmup_steps);
        let decay_steps = c.steps.saturating_sub(c.warmup_steps).max(1);
        let progress = self.step.saturating_sub(c.warmup_steps) as f64 / decay_steps as f64;
        warm * (1.0 - 0.9 * progress.min(1.0))
    }

    /// Writes `config.json`, `model.safetensors` (f32) and `generation_config.json` into `dir`
    /// (which already holds the tokenizer and data of [`write_task_and_tokenizer`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::fsutil::write_json(&dir.join("config.json"), &self.model_config)?;
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("format".to_owned(), "pt".to_owned());
        self.params.save_safetensors(&dir.join("model.safetensors"), Some(metadata))?;
        let (eos, pad) = (self.eos_id()?, self.tokenizer.pad_token_id());
        let generation = json!({
            "bos_token_id": pad,
            "eos_token_id": [eos, pad],
            "pad_token_id": pad,
            "do_sample": true,
            "temperature": 1.0,
            "top_p": 1.0,
        });
        crate::fsutil::write_json(&dir.join("generation_config.json"), &generation)
    }
}

/// Sampled accuracy of a model on task rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampledAccuracy {
    /// Problems evaluated.
    pub problems: usize,
    /// Samples per problem `k`.
    pub samples: usize,
    /// Temperature of the samples.
    pub temperature: f32,
    /// Mean fraction of correct samples (pass@1).
    pub pass_at_1: f64,
    /// Fraction of problems with at least one correct sample among `k` (pass@k).
    pub pass_at_k: f64,
    /// Fraction of samples with no boxed answer.
    pub no_answer: f64,
    /// Fraction of samples with a chain of thought (at least one `=`).
    pub with_chain: f64,
    /// Fraction correct among the samples with a chain of thought and a boxed answer (how well
    /// the model computes when it is careful).
    pub careful_accuracy: f64,
}

/// Samples `samples` completions per row with `steering` (temperature `temperature`, at most
/// [`MAX_NEW_TOKENS`] each, the chat prompt) and verifies them with [`reward::verify`].
pub fn sampled_accuracy(
    lm: &CausalLm,
    steering: &Steering,
    tokenizer: &ModelTokenizer,
    rows: &[TaskRow],
    samples: usize,
    temperature: f32,
    seed: u64,
) -> Result<SampledAccuracy> {
    if rows.is_empty() || samples == 0 {
        return Err(Error::InvalidArgument("sampled accuracy needs at least one row and one sample".into()));
    }
    let style = PromptStyle::default();
    let prompts = rows.iter().map(|r| style.build(tokenizer, &r.problem).map(|p| p.ids)).collect::<Result<Vec<_>>>()?;
    let request = GenerationRequest {
        max_new_tokens: vec![MAX_NEW_TOKENS; prompts.len()],
        prompts,
        samples_per_prompt: samples,
        sampling: SamplingParams { temperature, seed, ..SamplingParams::default() },
        stop_token_ids: tokenizer.stop_token_ids(&lm.config.eos_token_ids),
        pad_token_id: tokenizer.pad_token_id(),
        max_batch_rows: 256,
        prompt_keys: None,
    };
    let generation = rollout::generate(lm, steering, &[], &request, &indicatif::ProgressBar::hidden())?;
    let mut correct = vec![0usize; rows.len()];
    let (mut no_answer, mut with_chain, mut careful, mut careful_correct) = (0usize, 0usize, 0usize, 0usize);
    for c in &generation.completions {
        let text = tokenizer.decode(&c.tokens, true)?;
        let v = reward::verify(&rows[c.prompt_index].answer, &text, AnswerFormat::QwenMath);
        correct[c.prompt_index] += usize::from(v.correct);
        let (boxed, chain) = (v.verdict != reward::Verdict::NoAnswer, text.contains('='));
        no_answer += usize::from(!boxed);
        with_chain += usize::from(chain);
        careful += usize::from(chain && boxed);
        careful_correct += usize::from(chain && v.correct);
    }
    let total = (rows.len() * samples) as f64;
    Ok(SampledAccuracy {
        problems: rows.len(),
        samples,
        temperature,
        pass_at_1: correct.iter().sum::<usize>() as f64 / total,
        pass_at_k: correct.iter().filter(|&&c| c > 0).count() as f64 / rows.len() as f64,
        no_answer: no_answer as f64 / total,
        with_chain: with_chain as f64 / total,
        careful_accuracy: careful_correct as f64 / careful.max(1) as f64,
    })
}

/// New-token budget of a demo completion (the longest careful solution has about 40 tokens).
pub const MAX_NEW_TOKENS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_masks_everything_but_the_completion_targets_of_left_padded_rows() {
        let batch = Batch::new(&[(vec![10, 11, 12], vec![20, 21]), (vec![13], vec![22])], 0).unwrap();
        // Full rows [10 11 12 20 21] and [0 0 0 13 22]: inputs drop the last column, targets the first.
        assert_eq!((batch.rows, batch.width), (2, 4));
        assert_eq!(batch.inputs, vec![10, 11, 12, 20, 0, 0, 0, 13]);
        assert_eq!(batch.targets, vec![11, 12, 20, 21, 0, 0, 13, 22]);
        assert_eq!(batch.mask, vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(batch.layout.pads, vec![0, 3]);
        assert_eq!(batch.completion_tokens(), 3);
        assert!(Batch::new(&[(vec![1], vec![])], 0).is_err());
        assert!(Batch::new(&[], 0).is_err());
    }

    #[test]
    fn seeded_initial_weights_depend_on_seed_and_name_only() {
        let device = Device::flex();
        let init = SeededInit { seed: 1, std: 0.5 };
        let values = |init: SeededInit, name: &str| -> Vec<f32> {
            init.tensor::<2>(name, [4, 8], &device, DType::F32).unwrap().into_data().try_to_vec::<f32>().unwrap()
        };
        let a = values(init, "model.layers.0.mlp.up_proj.weight");
        assert_eq!(a, values(init, "model.layers.0.mlp.up_proj.weight"));
        assert_ne!(a, values(init, "model.layers.1.mlp.up_proj.weight"));
        assert_ne!(a, values(SeededInit { seed: 2, ..init }, "model.layers.0.mlp.up_proj.weight"));
        let std = (a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
        assert!((0.25..1.0).contains(&std), "{std}");
        assert!(values(init, "model.norm.weight").iter().all(|&x| x == 1.0));
        assert!(values(init, "model.layers.0.self_attn.q_proj.bias").iter().all(|&x| x == 0.0));
    }
}
