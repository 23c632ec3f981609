//! Log-probabilities of given completions under the steered model, in one batched forward pass.
//!
//! Prompts are left-padded and completions right-padded, so every completion starts at the same
//! column. When the steering tensors are tracked (`tensor.autodiff().require_grad()`), the result
//! is differentiable with respect to them and nothing else: the base weights live on a device
//! without autodiff and are constants of the graph, so no weight gradient is computed and no
//! matmul input is kept for one.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::{BatchLayout, CausalLm};
use crate::steering::Steering;
use crate::steering::intervention::Intervention;

/// Per-token log-probabilities of a batch of completions.
#[derive(Debug)]
pub struct CompletionLogprobs {
    /// `[B, T]` log π(token | prefix) of each completion token; 0 beyond a completion's length.
    pub logprobs: Tensor<2>,
    /// `[B, T]` 1 where a completion has a token, 0 in the right padding.
    pub mask: Tensor<2>,
    /// Length of each completion.
    pub lengths: Vec<usize>,
}

/// `log softmax(logits / temperature)` at `targets` `[B, T, 1]` for final hidden states
/// `hidden` `[B, T, H]`, computing the logits of `chunk` positions at a time: `[B, T]`.
fn target_logprobs(model: &CausalLm, hidden: Tensor<3>, targets: Tensor<3, Int>, temperature: f64, chunk: usize) -> Tensor<2> {
    let [b, t, _] = hidden.dims();
    let chunk = chunk.clamp(1, t.max(1));
    let mut parts = Vec::with_capacity(t.div_ceil(chunk));
    for start in (0..t).step_by(chunk) {
        let len = chunk.min(t - start);
        let logits = model.logits(hidden.clone().narrow(1, start, len));
        let logits = if temperature == 1.0 { logits } else { logits.div_scalar(temperature) };
        let logp = log_softmax(logits, 2);
        parts.push(logp.gather(2, targets.clone().narrow(1, start, len)).reshape([b, len]));
    }
    if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(parts, 1) }
}

/// Prompts and completions laid out for one forward pass: prompts left-padded, completions
/// right-padded, so every completion starts at the same column.
#[derive(Debug)]
pub struct CompletionBatch {
    /// `[B, W + T]` prompt columns then completion columns.
    pub tokens: Tensor<2, Int>,
    /// The prompts' padding.
    pub layout: BatchLayout,
    /// `W`: the padded prompt width.
    width: usize,
    /// `T`: the padded completion width.
    completion_width: usize,
    /// `[B, T, 1]` the completion tokens (padding beyond a completion's length).
    targets: Tensor<3, Int>,
    /// `[B, T]` 1 where a completion has a token.
    mask: Tensor<2>,
    /// Length of each completion.
    lengths: Vec<usize>,
    /// The log-probabilities are those of `softmax(logits / temperature)`.
    temperature: f64,
}

impl CompletionBatch {
    /// Lays out `completions[i]` after `prompts[i]` for `model`, padding with `pad_token_id`, for
    /// log-probabilities under `softmax(logits / temperature)`.
    pub fn new(model: &CausalLm, prompts: &[Vec<u32>], completions: &[Vec<u32>], pad_token_id: u32, temperature: f64) -> Result<Self> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(Error::InvalidArgument(format!("temperature must be positive, found {temperature}")));
        }
        if prompts.len() != completions.len() || prompts.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "expected as many prompts as completions (at least one), found {} and {}",
                prompts.len(),
                completions.len()
            )));
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(Error::InvalidArgument("every prompt needs at least one token".into()));
        }
        let device = &model.device;
        let b = prompts.len();
        let lengths: Vec<usize> = completions.iter().map(Vec::len).collect();
        let longest_prompt = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let longest = lengths.iter().copied().max().unwrap_or(0).max(1);
        // Widths padded to the model's length multiple: GPU micro-batches then share shapes.
        let t = model.padded_len(longest, longest_prompt);
        let (prompt_tokens, width, layout) = model.left_pad(prompts, pad_token_id, t);
        let total = width + t;
        if total > model.config.max_position_embeddings {
            return Err(Error::InvalidArgument(format!(
                "{total} positions exceed the model's {}",
                model.config.max_position_embeddings
            )));
        }
        let mut tokens = Vec::with_capacity(b * total);
        let mut targets = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        for (row, completion) in completions.iter().enumerate() {
            tokens.extend(prompt_tokens[row * width..(row + 1) * width].iter().map(|&x| i64::from(x)));
            for j in 0..t {
                let tok = completion.get(j).copied();
                tokens.push(i64::from(tok.unwrap_or(pad_token_id)));
                targets.push(i64::from(tok.unwrap_or(pad_token_id)));
                mask.push(if tok.is_some() { 1.0f32 } else { 0.0 });
            }
        }
        Ok(Self {
            tokens: Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, total]), device),
            layout,
            width,
            completion_width: t,
            targets: Tensor::<3, Int>::from_data(TensorData::new(targets, [b, t, 1]), device),
            mask: Tensor::<2>::from_data(TensorData::new(mask, [b, t]), device),
            lengths,
            temperature,
        })
    }

    /// The completions' log-probabilities from the final-normed hidden states `hidden`
    /// `[B, W + T, H]` of [`CompletionBatch::tokens`].
    pub fn logprobs(&self, model: &CausalLm, hidden: Tensor<3>) -> CompletionLogprobs {
        let [b, _, h] = hidden.dims();
        let t = self.completion_width;
        // Position width-1+j predicts completion token j.
        let predicting = hidden.narrow(1, self.width - 1, t).reshape([b, t, h]);
        // The f32 logits `[B, T, V]` of a long completion exceed what one GPU buffer may hold (4 ×
        // 1023 × 151,936 floats = 2.5 GB; Vulkan refuses single buffers above ~2 GB): the
        // log-probabilities are taken over chunks of positions whose logits stay within
        // the model's `chunk_bytes` (one chunk for short completions).
        let per_position = b * model.config.vocab_size * 4;
        let chunk = (model.chunk_bytes / per_position.max(1)).clamp(1, t);
        let logprobs = target_logprobs(model, predicting, self.targets.clone(), self.temperature, chunk);
        let mask = self.mask.clone().cast(logprobs.dtype());
        let logprobs = logprobs * mask.clone();
        CompletionLogprobs { logprobs, mask, lengths: self.lengths.clone() }
    }
}

/// Log-probabilities of `completions[i]` after `prompts[i]` under the temperature-scaled
/// distribution `softmax(logits / temperature)` (the reference's loss uses the sampling
/// temperature, §2.9).
pub fn completion_logprobs(
    model: &CausalLm,
    steering: &Steering,
    interventions: &[Intervention],
    prompts: &[Vec<u32>],
    completions: &[Vec<u32>],
    pad_token_id: u32,
    temperature: f64,
) -> Result<CompletionLogprobs> {
    let batch = CompletionBatch::new(model, prompts, completions, pad_token_id, temperature)?;
    let out = model.forward(batch.tokens.clone(), &batch.layout, None, steering, interventions)?;
    Ok(batch.logprobs(model, out.hidden))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device, Distribution};

    use super::*;
    use crate::model::RandomWeights;

    #[test]
    fn log_probabilities_in_chunks_equal_those_in_one_piece() {
        let device = Device::flex();
        let config = crate::bench::Shape::QwenMath1_5b.config();
        let config = crate::model::ModelConfig {
            hidden_size: 32,
            intermediate_size: 64,
            num_layers: 1,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            vocab_size: 300,
            ..config
        };
        let model = CausalLm::load(config, &RandomWeights { std: 0.5 }, &device, DType::F32).expect("model");
        let hidden = Tensor::<3>::random([2, 7, 32], Distribution::Normal(0.0, 1.0), &device);
        let ids: Vec<i64> = (0..14).map(|i| (i * 37 % 300) as i64).collect();
        let targets = Tensor::<3, Int>::from_data(TensorData::new(ids, [2, 7, 1]), &device);
        let whole: Vec<f32> = target_logprobs(&model, hidden.clone(), targets.clone(), 0.7, 7).into_data().iter::<f32>().collect();
        for chunk in [1, 3] {
            let parts: Vec<f32> = target_logprobs(&model, hidden.clone(), targets.clone(), 0.7, chunk).into_data().iter::<f32>().collect();
            assert_eq!(parts, whole, "chunks of {chunk}");
        }
    }
}
