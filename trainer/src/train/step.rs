//! One optimizer step of GRPO-style training (reference §2.5–§2.11): sample G completions per
//! prompt with the current parameters, score them with the verifier, compute advantages, and
//! minimise
//!
//! `L(θ) = (1/N_tok) Σ_{p,g} [ −A_{p,g} Σ_t log π_θ(y_t | x_p, y_<t) / T  + β·KL_{p,g} ]`
//!
//! (`N_tok`: the step's completion tokens; log-probabilities of the temperature-scaled
//! distribution) over micro-batches of `batch_size` sequences with gradient accumulation, then
//! clip the global gradient norm and take one AdamW step. Strictly on-policy: no ratio, no
//! clipping of the objective.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use indicatif::ProgressBar;
use shared::metrics::{MetricsLine, PhaseSeconds};

use crate::error::{Error, Result};
use crate::model::weights::WeightMap;
use crate::model::ModelTokenizer;
use crate::parallel::{self, Collective};
use crate::reward::{self, AnswerFormat};
use crate::model::recompute;
use crate::rl::{CompletionBatch, CompletionLogprobs, completion_logprobs};
use crate::rollout::{self, Completion, GenerationRequest, SamplingParams};
use crate::train::advantage::{self, RunningBaseline};
use crate::train::config::{KlType, TrainConfig};
use crate::train::optim::{self, AdamW, AdamWState};
use crate::train::policy::Policy;

/// One training problem, tokenized.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPrompt {
    /// Row index in the training set.
    pub index: usize,
    /// Prompt token ids.
    pub ids: Vec<u32>,
    /// Gold answer.
    pub answer: String,
}

/// What a step needs besides the policy: settings, tokenizer and token ids.
#[derive(Debug, Clone)]
pub struct StepContext<'a> {
    /// The run's config.
    pub config: &'a TrainConfig,
    /// Decodes completions for the verifier.
    pub tokenizer: &'a ModelTokenizer,
    /// Generation stops at these.
    pub stop_token_ids: Vec<u32>,
    /// Padding id.
    pub pad_token_id: u32,
    /// Where answers are read (from `template_type`).
    pub answer_format: AnswerFormat,
    /// Total optimizer steps of the run (for the warm-up).
    pub total_steps: u64,
}

/// The trainable state that changes every step and is checkpointed.
#[derive(Debug, Clone)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    /// AdamW moments.
    pub optimizer: AdamWState,
    /// `reinforce_with_baseline`'s running mean.
    pub baseline: RunningBaseline,
}

/// The seed of step `step`'s sampling streams: a SplitMix64 mix of the run seed and the step, so
/// a resumed run samples exactly what an uninterrupted one would.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sequences of one micro-batch and their advantages.
#[derive(Debug, Clone, PartialEq)]
pub struct LossBatch {
    /// Prompt ids of each sequence.
    pub prompts: Vec<Vec<u32>>,
    /// Completion ids of each sequence.
    pub completions: Vec<Vec<u32>>,
    /// Advantage of each sequence.
    pub advantages: Vec<f64>,
}

/// Settings of the loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSettings {
    /// Padding id.
    pub pad_token_id: u32,
    /// Temperature of the log-probabilities (the sampling temperature).
    pub temperature: f64,
    /// KL estimator and coefficient, when the KL term is on.
    pub kl: Option<(KlType, f64)>,
    /// The step's completion-token count `N_tok` (the loss's denominator).
    pub num_tokens: usize,
    /// Compute the gradient recomputing one decoder layer at a time
    /// ([`model::recompute`](crate::model::recompute)): the memory of one layer's activations
    /// instead of all, for one more forward pass. Full fine-tuning always keeps the whole graph.
    pub recompute_layers: bool,
}

/// The loss of one micro-batch, `Σ_i (−A_i Σ_t log π(y_t) + β·KL_i) / N_tok` (a one-element
/// tensor, differentiable with respect to the tracked tensors in `params`), and the batch's
/// summed KL (0 without KL).
pub fn micro_batch_loss(policy: &Policy, params: &WeightMap, batch: &LossBatch, settings: &LossSettings) -> Result<(Tensor<1>, f64)> {
    let model = policy.model(params)?;
    let steering = policy.steering(params)?;
    let out = completion_logprobs(&model, &steering, &[], &batch.prompts, &batch.completions, settings.pad_token_id, settings.temperature)?;
    objective(policy, out, batch, settings)
}

/// The loss of [`micro_batch_loss`] from the policy's log-probabilities `out`, and the summed KL.
fn objective(policy: &Policy, out: CompletionLogprobs, batch: &LossBatch, settings: &LossSettings) -> Result<(Tensor<1>, f64)> {
    let b = batch.prompts.len();
    let dtype = out.logprobs.dtype();
    let a = Tensor::<1>::from_data(TensorData::new(batch.advantages.clone(), [b]), &policy.base.device).cast(dtype);
    let seq_logp = out.logprobs.clone().sum_dim(1).reshape([b]);
    let mut loss = (seq_logp * a).neg();
    let mut kl_sum = 0.0;
    if let Some((kind, coef)) = settings.kl {
        let reference = completion_logprobs(
            &policy.base,
            &policy.reference_steering()?,
            &[],
            &batch.prompts,
            &batch.completions,
            settings.pad_token_id,
            settings.temperature,
        )?;
        let kl = kl_per_sequence(kind, out.logprobs, reference.logprobs, out.mask);
        kl_sum = f64::from(crate::device::host_f32(kl.clone().sum(), "KL")?[0]);
        loss = loss + kl.mul_scalar(coef);
    }
    Ok((loss.sum().div_scalar(settings.num_tokens.max(1) as f64), kl_sum))
}

/// A micro-batch's loss and its gradient.
#[derive(Debug)]
pub struct MicroBatchGradient {
    /// The loss (one element, without autodiff).
    pub loss: Tensor<1>,
    /// The gradient of every trainable parameter (zero for one the loss does not reach).
    pub grads: WeightMap,
    /// The batch's summed KL (0 without KL).
    pub kl: f64,
}

/// The loss of [`micro_batch_loss`] at the policy's parameters and its gradient with respect to
/// them: through the whole graph, or with `settings.recompute_layers` one layer at a time.
pub fn micro_batch_gradient(policy: &Policy, batch: &LossBatch, settings: &LossSettings) -> Result<MicroBatchGradient> {
    let tracked = policy.tracked();
    if !settings.recompute_layers || policy.setup.trains_weights() {
        let (loss, kl) = micro_batch_loss(policy, &tracked, batch, settings)?;
        let grads = tracked.gradients(&loss.backward());
        return Ok(MicroBatchGradient { loss: loss.inner(), grads, kl });
    }
    let model = &policy.base;
    let completions = CompletionBatch::new(model, &batch.prompts, &batch.completions, settings.pad_token_id, settings.temperature)?;
    let mut kl = 0.0;
    let (grads, loss) = recompute::steering_gradients(
        model,
        completions.tokens.clone(),
        &completions.layout,
        &policy.steering(&policy.params)?,
        &policy.steering(&tracked)?,
        |hidden| {
            let out = completions.logprobs(model, hidden);
            let (loss, batch_kl) = objective(policy, out, batch, settings)?;
            kl = batch_kl;
            Ok(loss)
        },
    )?;
    Ok(MicroBatchGradient { loss, grads: tracked.gradients(&grads), kl })
}

/// KL of each sequence from per-token log-probabilities `logp`, `ref_logp` and `mask` `[B, T]`.
pub fn kl_per_sequence(kind: KlType, logp: Tensor<2>, ref_logp: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let d = (ref_logp - logp) * mask.clone();
    let kl = match kind {
        KlType::Vanilla => d.neg().sum_dim(1),
        KlType::ShulmanTokenLevel => ((d.clone().exp() - d).sub_scalar(1.0) * mask).sum_dim(1),
        KlType::ShulmanSequenceLevel => {
            let total = d.sum_dim(1);
            (total.clone().exp() - total).sub_scalar(1.0)
        }
    };
    let [b, _] = kl.dims();
    kl.reshape([b])
}

/// Rewards of completions against their prompts' answers: +1 if correct, else −1 (0 with
/// `neg_reward_is_zero`), times `gamma^len`. Also returns correctness.
pub fn rewards(ctx: &StepContext<'_>, prompts: &[TrainPrompt], completions: &[Completion]) -> Result<(Vec<f64>, Vec<bool>)> {
    let c = ctx.config;
    let mut rewards = Vec::with_capacity(completions.len());
    let mut correct = Vec::with_capacity(completions.len());
    for completion in completions {
        let text = ctx.tokenizer.decode(&completion.tokens, false)?;
        let ok = reward::verify(&prompts[completion.prompt_index].answer, &text, ctx.answer_format).correct;
        let raw = if ok { 1.0 } else if c.neg_reward_is_zero { 0.0 } else { -1.0 };
        rewards.push(raw * c.gamma.powi(completion.tokens.len() as i32));
        correct.push(ok);
    }
    Ok((rewards, correct))
}

/// pass@k over the prompts for k = 1, 2, 4, … ≤ G: the fraction of prompts with a correct
/// completion among their first k.
pub fn pass_at_k(correct: &[bool], group: usize) -> BTreeMap<String, f64> {
    let groups: Vec<&[bool]> = correct.chunks(group.max(1)).collect();
    let mut out = BTreeMap::new();
    let mut k = 1;
    while k <= group {
        let solved = groups.iter().filter(|g| g[..k].iter().any(|c| *c)).count();
        out.insert(k.to_string(), solved as f64 / groups.len().max(1) as f64);
        k *= 2;
    }
    out
}

fn mean_std_max(x: &[f64]) -> (f64, f64, f64) {
    if x.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, std, x.iter().copied().fold(f64::MIN, f64::max))
}

/// Adds `b` into `a` (both gradients of the same parameters).
fn accumulate(a: Option<WeightMap>, b: WeightMap) -> WeightMap {
    match a {
        None => b,
        Some(a) => WeightMap(
            a.0.into_iter()
                .map(|(k, w)| {
                    let sum = w.flat() + b.0[&k].flat();
                    let w = w.with_flat(sum);
                    (k, w)
                })
                .collect(),
        ),
    }
}

/// One worker's share of a step's rollouts: the completions of prompts `prompts` (their
/// `prompt_index` counts in the whole step), scored.
#[derive(Debug, Clone)]
struct WorkerRollout {
    prompts: Range<usize>,
    completions: Vec<Completion>,
    rewards: Vec<f64>,
    correct: Vec<bool>,
    generated_tokens: usize,
    generation_seconds: f64,
    reward_seconds: f64,
}

/// Generates and scores the completions of `prompts[range]` with the worker's current parameters
/// (no autodiff).
fn worker_rollout(policy: &Policy, ctx: &StepContext<'_>, prompts: &[TrainPrompt], range: Range<usize>, step: u64) -> Result<WorkerRollout> {
    let c = ctx.config;
    let mine = &prompts[range.clone()];
    let start = Instant::now();
    let request = GenerationRequest {
        prompts: mine.iter().map(|p| p.ids.clone()).collect(),
        max_new_tokens: mine.iter().map(|p| c.max_seq_length.saturating_sub(p.ids.len())).collect(),
        samples_per_prompt: c.num_generations,
        sampling: SamplingParams {
            temperature: c.generation_temperature as f32,
            top_p: c.top_p as f32,
            top_k: usize::try_from(c.top_k).ok(),
            seed: step_seed(c.seed, step),
        },
        stop_token_ids: ctx.stop_token_ids.clone(),
        pad_token_id: ctx.pad_token_id,
        max_batch_rows: c.rollout_batch_size,
        prompt_keys: Some(mine.iter().map(|p| p.index as u64).collect()),
    };
    let mut generation = if mine.is_empty() {
        rollout::Generation::default()
    } else {
        let model = policy.model(&policy.params)?;
        let steering = policy.steering(&policy.params)?;
        rollout::generate(&model, &steering, &[], &request, &ProgressBar::hidden())?
    };
    let generation_seconds = start.elapsed().as_secs_f64();
    for completion in &mut generation.completions {
        completion.prompt_index += range.start;
    }
    let t0 = Instant::now();
    let (rewards, correct) = rewards(ctx, prompts, &generation.completions)?;
    Ok(WorkerRollout {
        prompts: range,
        completions: generation.completions,
        rewards,
        correct,
        generated_tokens: generation.stats.generated_tokens,
        generation_seconds,
        reward_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// A worker's accumulated gradient (on its device; `None` when none of its sequences carries
/// one), summed loss and summed KL.
struct WorkerGradient {
    grads: Option<WeightMap>,
    loss: f64,
    kl: f64,
}

/// A worker's completions with their advantages and whether each carries a gradient (indexed
/// like `rollout.completions`).
struct WorkerShare<'a> {
    rollout: &'a WorkerRollout,
    advantages: &'a [f64],
    use_sequence: &'a [bool],
}

/// The gradient of the loss over a worker's share, in micro-batches of `batch_size` sequences.
fn worker_gradient(
    policy: &Policy,
    ctx: &StepContext<'_>,
    prompts: &[TrainPrompt],
    share: &WorkerShare<'_>,
    settings: &LossSettings,
    progress: &ProgressBar,
) -> Result<WorkerGradient> {
    let (completions, advantages) = (&share.rollout.completions, share.advantages);
    let rows: Vec<usize> = (0..completions.len()).filter(|&i| share.use_sequence[i]).collect();
    let mut out = WorkerGradient { grads: None, loss: 0.0, kl: 0.0 };
    for chunk in rows.chunks(ctx.config.batch_size) {
        let batch = LossBatch {
            prompts: chunk.iter().map(|&i| prompts[completions[i].prompt_index].ids.clone()).collect(),
            completions: chunk.iter().map(|&i| completions[i].tokens.clone()).collect(),
            advantages: chunk.iter().map(|&i| advantages[i]).collect(),
        };
        let micro = micro_batch_gradient(policy, &batch, settings)?;
        out.loss += f64::from(crate::device::host_f32(micro.loss, "loss")?[0]);
        out.kl += micro.kl;
        out.grads = Some(accumulate(out.grads.take(), micro.grads));
        progress.inc(chunk.len() as u64);
    }
    // The last backward pass is still queued: wait for it, so that the step's phase times say
    // where the device's time went.
    crate::device::sync(&policy.base.device, "the backward pass")?;
    Ok(out)
}

/// The sum of the workers' gradients, losses and KLs over every worker of every process, on the
/// leader's device. One worker in one process keeps its gradient on the device; otherwise the
/// gradients are summed on the host in float64 (in worker order, then across processes).
fn reduce_gradients(leader: &Policy, mut results: Vec<WorkerGradient>, collective: &dyn Collective) -> Result<(WeightMap, f64, f64)> {
    if collective.size() == 1
        && results.len() == 1
        && let Some(only) = results.pop()
    {
        let grads = only.grads.unwrap_or_else(|| leader.params.map_flat(|_, t| t.zeros_like()));
        return Ok((grads, only.loss, only.kl));
    }
    let numel = leader.params.numel();
    let mut sum = vec![0.0f64; numel + 2];
    for result in results {
        if let Some(grads) = result.grads {
            let mut offset = 0;
            for (name, g) in &grads.0 {
                for (s, v) in sum[offset..].iter_mut().zip(crate::device::host_f32(g.flat(), name)?) {
                    *s += f64::from(v);
                }
                offset += g.numel();
            }
        }
        sum[numel] += result.loss;
        sum[numel + 1] += result.kl;
    }
    collective.all_reduce_sum(&mut sum)?;
    let device = &leader.base.device;
    let mut offset = 0;
    let mut grads = WeightMap::default();
    for (name, p) in &leader.params.0 {
        let n = p.numel();
        let values: Vec<f32> = sum[offset..offset + n].iter().map(|&v| v as f32).collect();
        grads.0.insert(name.clone(), p.with_flat(Tensor::<1>::from_data(TensorData::new(values, [n]), device)));
        offset += n;
    }
    Ok((grads, sum[numel], sum[numel + 1]))
}

/// The largest device memory reserved by burn's pool on any of the workers' devices (`None` on
/// backends without a pool report).
fn reserved_memory(workers: &[Policy]) -> Option<u64> {
    workers.iter().filter_map(|w| w.base.device.memory_pool_usage().map(|u| u.bytes_reserved)).max()
}

/// Runs one optimizer step on `prompts` with one worker per policy in `workers` (one per device,
/// all holding the same parameters) and the processes of `collective`, and returns its metrics
/// line. Every worker of every process takes a contiguous share of the prompts; afterwards all
/// workers hold the same new parameters. `progress` is ticked per micro-batch sequence.
pub fn train_step(
    workers: &mut [Policy],
    state: &mut TrainState,
    ctx: &StepContext<'_>,
    prompts: &[TrainPrompt],
    collective: &dyn Collective,
    progress: &ProgressBar,
) -> Result<MetricsLine> {
    if workers.is_empty() {
        return Err(Error::InvalidArgument("a training step needs at least one device worker".into()));
    }
    let c = ctx.config;
    let g = c.num_generations;
    let start = Instant::now();
    // 1. Rollouts and rewards, each worker on its share of the prompts.
    let local = workers.len();
    let world = collective.size() * local;
    let first = collective.rank() * local;
    let step = state.step;
    let rollouts = parallel::for_each_worker(workers, |i, policy| {
        worker_rollout(policy, ctx, prompts, parallel::share(prompts.len(), world, first + i), step)
    })?;
    // 2. Every process assembles the whole step's scores and computes the same advantages.
    let n = prompts.len() * g;
    let pieces: Vec<(usize, Vec<f64>)> = rollouts
        .iter()
        .flat_map(|r| {
            let at = r.prompts.start * g;
            let lengths = r.completions.iter().map(|c| c.tokens.len() as f64).collect();
            let stopped = r.completions.iter().map(|c| f64::from(u8::from(c.stopped))).collect();
            let correct = r.correct.iter().map(|&c| f64::from(u8::from(c))).collect();
            [(at, r.rewards.clone()), (n + at, correct), (2 * n + at, lengths), (3 * n + at, stopped)]
        })
        .chain([(4 * n, vec![rollouts.iter().map(|r| r.generated_tokens as f64).sum()])])
        .collect();
    let all = parallel::gather(collective, 4 * n + 1, &pieces)?;
    let mut peak_memory = reserved_memory(workers);
    let (rewards, correct, lengths, stopped) = (&all[..n], &all[n..2 * n], &all[2 * n..3 * n], &all[3 * n..4 * n]);
    let correct: Vec<bool> = correct.iter().map(|&c| c > 0.5).collect();
    let generated_tokens = all[4 * n];
    let t_generation = rollouts.iter().map(|r| r.generation_seconds).fold(0.0, f64::max);
    let t_reward = rollouts.iter().map(|r| r.reward_seconds).fold(0.0, f64::max);
    let adv = advantage::advantages(c.reward_processor_type, rewards, g, &mut state.baseline, c.mean_baseline_coef);
    // 3. Gradients: each worker over its own completions, with the step's token count.
    let t0 = Instant::now();
    let n_tok = lengths.iter().sum::<f64>() as usize;
    let use_kl = c.kl_coef > 0.0;
    // Sequences that contribute a gradient: a non-zero advantage, or any with a KL term.
    let use_sequence: Vec<bool> = (0..n).map(|i| lengths[i] > 0.0 && (use_kl || adv.values[i] != 0.0)).collect();
    let settings = LossSettings {
        pad_token_id: ctx.pad_token_id,
        temperature: c.generation_temperature,
        kl: use_kl.then_some((c.kl_type, c.kl_coef)),
        num_tokens: n_tok,
        recompute_layers: c.recompute_layers,
    };
    let results = {
        let rollouts = &rollouts;
        parallel::for_each_worker(workers, |i, policy| {
            let r = &rollouts[i];
            let own = r.prompts.start * g..r.prompts.end * g;
            let share = WorkerShare { rollout: r, advantages: &adv.values[own.clone()], use_sequence: &use_sequence[own] };
            worker_gradient(policy, ctx, prompts, &share, &settings, progress)
        })?
    };
    peak_memory = peak_memory.max(reserved_memory(workers));
    let (grads, loss_total, kl_total) = reduce_gradients(&workers[0], results, collective)?;
    let t_backward = t0.elapsed().as_secs_f64();
    // 4. Clip, schedule, AdamW (the same update in every process), new parameters to every worker.
    let t0 = Instant::now();
    let (grads, grad_norm) = optim::clip_grad_norm(grads, c.max_grad_norm)?;
    let warmup = optim::warmup_steps(c.warmup_ratio, ctx.total_steps);
    let lr = optim::warmup_lr(c.learning_rate, state.step, warmup);
    let (leader, others) = workers.split_first_mut().ok_or_else(|| Error::InvalidArgument("no device worker".into()))?;
    leader.params = AdamW::default().step(&leader.params, &grads, &mut state.optimizer, lr)?;
    for worker in others {
        worker.params = leader.params.to_device(&worker.base.device)?;
    }
    state.step += 1;
    let vector_norms = leader.vector_norms()?;
    let t_optimizer = t0.elapsed().as_secs_f64();
    if !loss_total.is_finite() {
        return Err(Error::InvalidArgument(format!("step {}: the loss is not finite ({loss_total})", state.step)));
    }
    // 5. Metrics.
    let (len_mean, len_std, len_max) = mean_std_max(lengths);
    let (reward_mean, reward_std, _) = mean_std_max(rewards);
    let stopped = stopped.iter().sum::<f64>();
    let total = start.elapsed().as_secs_f64();
    let mut extra = BTreeMap::new();
    extra.insert("advantage_baseline".to_owned(), serde_json::json!(adv.baseline));
    extra.insert("reward_within_group_std".to_owned(), serde_json::json!(adv.within_group_std));
    extra.insert("num_completion_tokens".to_owned(), serde_json::json!(n_tok));
    extra.insert("num_sequences_with_gradient".to_owned(), serde_json::json!(use_sequence.iter().filter(|&&u| u).count()));
    extra.insert("num_workers".to_owned(), serde_json::json!(world));
    Ok(MetricsLine {
        format_version: 1,
        step: state.step,
        reward_mean,
        reward_std,
        pass_at_k: pass_at_k(&correct, g),
        frac_zero_signal: adv.zero_signal_groups as f64 / prompts.len().max(1) as f64,
        completion_len_mean: len_mean,
        completion_len_std: len_std,
        completion_len_max: len_max,
        stop_rate: stopped / n.max(1) as f64,
        loss: loss_total,
        grad_norm,
        lr,
        kl: use_kl.then(|| kl_total / n.max(1) as f64),
        vector_norms,
        seconds: PhaseSeconds {
            generation: t_generation,
            reward: t_reward,
            forward_backward: t_backward,
            optimizer: t_optimizer,
            total,
        },
        tokens_per_second: generated_tokens / t_generation.max(1e-9),
        peak_memory_bytes: peak_memory.max(reserved_memory(workers)),
        extra,
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn t2(values: &[f32], shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Device::flex())
    }

    fn host(t: Tensor<1>) -> Vec<f64> {
        t.into_data().iter::<f32>().map(f64::from).collect()
    }

    #[test]
    fn kl_estimators_match_hand_computed_values_and_ignore_padding() {
        let logp = t2(&[-1.0, -2.0, 0.0, -0.5, 0.0, 0.0], [2, 3]);
        let reference = t2(&[-1.5, -1.0, 7.0, -0.5, 0.0, 9.0], [2, 3]);
        let mask = t2(&[1.0, 1.0, 0.0, 1.0, 0.0, 0.0], [2, 3]);
        // Row 0: d = (−0.5, 1.0); row 1: d = (0).
        let k3 = host(kl_per_sequence(KlType::ShulmanTokenLevel, logp.clone(), reference.clone(), mask.clone()));
        let want0 = ((-0.5f64).exp() + 0.5 - 1.0) + (1.0f64.exp() - 1.0 - 1.0);
        assert!((k3[0] - want0).abs() < 1e-5 && k3[1].abs() < 1e-7, "{k3:?}");
        let vanilla = host(kl_per_sequence(KlType::Vanilla, logp.clone(), reference.clone(), mask.clone()));
        assert!((vanilla[0] - (-0.5)).abs() < 1e-6, "{vanilla:?}");
        let seq = host(kl_per_sequence(KlType::ShulmanSequenceLevel, logp, reference, mask));
        assert!((seq[0] - (0.5f64.exp() - 0.5 - 1.0)).abs() < 1e-5, "{seq:?}");
    }

    #[test]
    fn pass_at_k_counts_prompts_with_a_correct_completion_among_the_first_k() {
        let correct = [false, false, true, false, true, false, false, false];
        let p = pass_at_k(&correct, 4);
        assert_eq!(p["1"], 0.5);
        assert_eq!(p["2"], 0.5);
        assert_eq!(p["4"], 1.0);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn step_seeds_differ_per_step_and_are_reproducible() {
        assert_eq!(step_seed(3, 7), step_seed(3, 7));
        assert_ne!(step_seed(3, 7), step_seed(3, 8));
        assert_ne!(step_seed(3, 7), step_seed(4, 7));
    }
}
