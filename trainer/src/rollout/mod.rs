//! Batched generation with a KV cache: prompts of different lengths are left-padded into one
//! batch, the prefix is run once (prefill), then one token per step is decoded for every row;
//! rows stop at a stop token or at their own token budget. Once at most half of a batch's rows
//! are still generating, the batch is halved (the live rows' KV cache kept, finished rows filling
//! up the rest), so a long tail of one or two rows does not cost a full batch per step; halving
//! keeps the number of distinct batch shapes, each of which costs a GPU process host-side
//! planning, to a handful. Each step's sampled ids stay on the device as the next step's input,
//! and the next step is queued before their read-back is waited for, so the host's work for one
//! step overlaps the device's for the previous one.

pub mod graph;
pub mod sampling;
pub mod sampling_kernel;

use indicatif::ProgressBar;

use crate::error::{Error, Result};
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::{BatchLayout, CausalLm, token_tensor};
use crate::steering::Steering;
use crate::steering::intervention::Intervention;
use graph::GraphDecoder;
use sampling::{DeviceSampler, PendingSample};
pub use sampling::SamplingParams;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// Prompt token ids.
    pub prompts: Vec<Vec<u32>>,
    /// New-token budget of each prompt (same length as `prompts`).
    pub max_new_tokens: Vec<usize>,
    /// Completions per prompt (the group size `G`).
    pub samples_per_prompt: usize,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Generation stops for a row when it samples one of these.
    pub stop_token_ids: Vec<u32>,
    /// Token id used for left padding (never attended to).
    pub pad_token_id: u32,
    /// Most rows decoded together in one batch.
    pub max_batch_rows: usize,
    /// The key of each prompt's random streams (with the sample index); `None`: its position in
    /// `prompts`. Stable keys (e.g. dataset indices) make sampled results independent of how
    /// problems are batched, sharded or resumed.
    pub prompt_keys: Option<Vec<u64>>,
}

/// One generated completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Index into the request's prompts.
    pub prompt_index: usize,
    /// Which of the prompt's samples.
    pub sample_index: usize,
    /// Generated ids (ending with the stop token when `stopped`).
    pub tokens: Vec<u32>,
    /// Log-probability of each generated token (see [`sampling::sample`]).
    pub logprobs: Vec<f32>,
    /// Whether a stop token ended it (otherwise the budget did).
    pub stopped: bool,
}

/// Wall-clock time spent in each phase of a generation (host-measured, between the read-backs
/// of consecutive steps' sampled ids, so the device work is included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerationStats {
    /// Seconds in prefill forward passes (including sampling the first token).
    pub prefill_secs: f64,
    /// Seconds in one-token decode steps.
    pub decode_secs: f64,
    /// Number of decode steps (summed over batches).
    pub decode_steps: usize,
    /// Rows computed in decode steps, generating or finished (summed over steps): what the
    /// decode steps cost, against `generated_tokens`.
    pub decoded_rows: usize,
    /// Tokens generated (summed over rows).
    pub generated_tokens: usize,
    /// Decode steps issued as a recorded step ([`CausalLm::decode_graph`]): replayed where the
    /// backend recorded it, run again where it records no graphs (the CPU).
    pub replayed_steps: usize,
}

impl GenerationStats {
    fn add(&mut self, other: &Self) {
        self.prefill_secs += other.prefill_secs;
        self.decode_secs += other.decode_secs;
        self.decode_steps += other.decode_steps;
        self.decoded_rows += other.decoded_rows;
        self.generated_tokens += other.generated_tokens;
        self.replayed_steps += other.replayed_steps;
    }
}

/// Completions in the order (prompt, sample), and timings.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// One per prompt and sample.
    pub completions: Vec<Completion>,
    /// Timings.
    pub stats: GenerationStats,
}

/// Generates completions for every prompt of `request` with `steering` and `interventions`.
pub fn generate(
    model: &CausalLm,
    steering: &Steering,
    interventions: &[Intervention],
    request: &GenerationRequest,
    progress: &ProgressBar,
) -> Result<Generation> {
    request.sampling.validate()?;
    if request.prompt_keys.as_ref().is_some_and(|k| k.len() != request.prompts.len()) {
        return Err(Error::InvalidArgument(format!(
            "{} prompts but {} stream keys",
            request.prompts.len(),
            request.prompt_keys.as_ref().map_or(0, Vec::len)
        )));
    }
    if request.max_new_tokens.len() != request.prompts.len() {
        return Err(Error::InvalidArgument(format!(
            "{} prompts but {} token budgets",
            request.prompts.len(),
            request.max_new_tokens.len()
        )));
    }
    let limit = model.config.max_position_embeddings;
    for (i, (p, &n)) in request.prompts.iter().zip(&request.max_new_tokens).enumerate() {
        if p.is_empty() {
            return Err(Error::InvalidArgument(format!("prompt {i} is empty")));
        }
        if p.len() + n > limit {
            return Err(Error::InvalidArgument(format!(
                "prompt {i}: {} prompt tokens + {n} new tokens exceed the model's {limit} positions",
                p.len()
            )));
        }
    }
    let rows: Vec<(usize, usize)> = (0..request.prompts.len())
        .flat_map(|p| (0..request.samples_per_prompt).map(move |s| (p, s)))
        .collect();
    let mut completions = Vec::with_capacity(rows.len());
    let mut stats = GenerationStats::default();
    for chunk in rows.chunks(request.max_batch_rows.max(1)) {
        let part = generate_chunk(model, steering, interventions, request, chunk, progress)?;
        completions.extend(part.completions);
        stats.add(&part.stats);
    }
    Ok(Generation { completions, stats })
}

fn generate_chunk(
    model: &CausalLm,
    steering: &Steering,
    interventions: &[Intervention],
    request: &GenerationRequest,
    rows: &[(usize, usize)],
    progress: &ProgressBar,
) -> Result<Generation> {
    let device = &model.device;
    let mut stats = GenerationStats::default();
    let prompts: Vec<Vec<u32>> = rows.iter().map(|&(p, _)| request.prompts[p].clone()).collect();
    let budgets: Vec<usize> = rows.iter().map(|&(p, _)| request.max_new_tokens[p]).collect();
    let max_budget = budgets.iter().copied().max().unwrap_or(0);
    let (tokens, width, mut layout) = model.left_pad(&prompts, request.pad_token_id, max_budget);
    let b = rows.len();
    // The cache is held by `decoder` while a recorded step decodes the batch.
    let mut cache = Some(model.kv_cache(b, width + max_budget));
    let mut decoder: Option<GraphDecoder> = None;
    let sampler = DeviceSampler::new(&request.sampling, model.config.vocab_size, device, model.sampling_kernel);
    let mut recordable = model.decode_graph && sampler.stays_on_device();
    let key = |p: usize| request.prompt_keys.as_ref().map_or(p as u64, |k| k[p]);
    let mut streams: Vec<_> = rows.iter().map(|&(p, s)| request.sampling.stream(key(p), s)).collect();
    let mut completions: Vec<Completion> = rows
        .iter()
        .map(|&(prompt_index, sample_index)| Completion {
            prompt_index,
            sample_index,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            stopped: false,
        })
        .collect();
    let mut active: Vec<bool> = budgets.iter().map(|&n| n > 0).collect();
    // `slots[r]`: the completion that batch row `r` decodes.
    let mut slots: Vec<usize> = (0..b).collect();
    let mut input = token_tensor(&tokens, [b, width], device);
    let mut step_width = width;
    // Step t is queued before the sampled ids of step t − 1 are read (its input is step t − 1's
    // ids, on the device), so the host prepares each step while the device runs the previous
    // one. A row that stopped at step t − 1 is still decoded at step t, and that token dropped.
    let mut in_flight: Option<QueuedStep> = None;
    let mut last_done = std::time::Instant::now();
    loop {
        // Whether a row may still need a token once the step in flight is read: a row stops
        // early only at a stop token, so a final step is queued needlessly only after one.
        let in_flight_tokens = usize::from(in_flight.is_some());
        let wanted = (0..completions.len()).any(|c| active[c] && completions[c].tokens.len() + in_flight_tokens < budgets[c]);
        let queued = if wanted {
            let uniforms: Vec<f32> = slots.iter().map(|&c| sampling::next_uniform(&mut streams[c])).collect();
            let sample = match (decoder.as_mut(), cache.take()) {
                (Some(recorded), _) => {
                    stats.replayed_steps += 1;
                    recorded.next(&uniforms)?
                }
                (None, Some(batch_cache)) => {
                    let step = match step_width == 1 && recordable {
                        true => model.replayable_step(&layout, &batch_cache, steering, interventions)?,
                        false => None,
                    };
                    recordable &= step.is_some() || step_width > 1;
                    match step {
                        Some(step) => {
                            stats.replayed_steps += 1;
                            let (recorded, sample) = GraphDecoder::start(model, step, sampler.clone(), batch_cache, input.clone(), &uniforms)?;
                            decoder = Some(recorded);
                            sample
                        }
                        None => {
                            let mut batch_cache = batch_cache;
                            let out = model.forward(input.clone(), &layout, Some(&mut batch_cache), steering, interventions)?;
                            cache = Some(batch_cache);
                            let [rows_now, _, h] = out.hidden.dims();
                            let last = out.hidden.narrow(1, step_width - 1, 1).reshape([rows_now, 1, h]);
                            let logits = model.logits(last).reshape([rows_now, model.config.vocab_size]);
                            let pairs = sampler.sample_pairs(logits, sampling::uniform_tensor(&uniforms, device));
                            input = pairs.clone().narrow(1, 0, 1).int();
                            PendingSample::read(pairs)
                        }
                    }
                }
                (None, None) => return Err(Error::Backend("generation lost its KV cache".into())),
            };
            Some(QueuedStep { sample, slots: slots.clone(), prefill: step_width > 1 })
        } else {
            None
        };
        step_width = 1;
        if let Some(step) = in_flight.take() {
            let (ids, lps) = step.sample.wait()?;
            let mut generated = 0;
            for (r, &c) in step.slots.iter().enumerate() {
                if !active[c] {
                    continue;
                }
                let completion = &mut completions[c];
                completion.tokens.push(ids[r]);
                completion.logprobs.push(lps[r]);
                generated += 1;
                if request.stop_token_ids.contains(&ids[r]) {
                    completion.stopped = true;
                    active[c] = false;
                } else if completion.tokens.len() >= budgets[c] {
                    active[c] = false;
                }
            }
            progress.inc(generated as u64);
            stats.generated_tokens += generated;
            let secs = last_done.elapsed().as_secs_f64();
            last_done = std::time::Instant::now();
            if step.prefill {
                stats.prefill_secs += secs;
            } else {
                stats.decode_secs += secs;
                stats.decode_steps += 1;
                stats.decoded_rows += step.slots.len();
            }
            // The queued step decodes the rows as they were; from the next one on, the batch
            // may halve (recorded anew for its new shape).
            if let Some(keep) = halved_rows(&slots, &active) {
                if let Some(recorded) = decoder.take() {
                    let (batch_cache, ids) = recorded.finish();
                    cache = Some(batch_cache);
                    input = ids.int();
                }
                if let Some(batch_cache) = cache.as_mut() {
                    batch_cache.retain_rows(&keep, device);
                }
                layout = BatchLayout { pads: keep.iter().map(|&r| layout.pads[r]).collect() };
                let index: Vec<i64> = keep.iter().map(|&r| r as i64).collect();
                input = input.select(0, Tensor::<1, Int>::from_data(TensorData::new(index, [keep.len()]), device));
                slots = keep.iter().map(|&r| slots[r]).collect();
            }
        }
        match queued {
            Some(step) => in_flight = Some(step),
            None => break,
        }
    }
    Ok(Generation { completions, stats })
}

/// A decode step queued on the device: the read of its sampled ids, the completion each batch
/// row decoded, and whether it was the prefill.
struct QueuedStep {
    sample: PendingSample,
    slots: Vec<usize>,
    prefill: bool,
}

/// The batch rows to keep when at most half of the rows in `slots` are still `active` (by
/// completion): the live rows, then finished ones up to the smallest halving of the batch that
/// holds them. `None` while more than half are live (or none are).
fn halved_rows(slots: &[usize], active: &[bool]) -> Option<Vec<usize>> {
    let (live, finished): (Vec<usize>, Vec<usize>) = (0..slots.len()).partition(|&r| active[slots[r]]);
    if live.is_empty() || live.len() * 2 > slots.len() {
        return None;
    }
    let mut target = slots.len();
    while target / 2 >= live.len() {
        target /= 2;
    }
    let filler = target - live.len();
    Some(live.into_iter().chain(finished.into_iter().take(filler)).collect())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_halves_once_half_its_rows_are_done_keeping_the_live_rows_first() {
        let slots: Vec<usize> = (10..18).collect();
        let mut active = vec![false; 18];
        for c in [10, 13, 15, 16, 17] {
            active[c] = true;
        }
        assert_eq!(halved_rows(&slots, &active), None, "5 of 8 rows live");
        active[16] = false;
        active[17] = false;
        assert_eq!(halved_rows(&slots, &active), Some(vec![0, 3, 5, 1]), "3 live rows and one finished in a batch of 4");
        active[13] = false;
        assert_eq!(halved_rows(&slots, &active), Some(vec![0, 5]), "2 live rows: a batch of 2");
        active[15] = false;
        assert_eq!(halved_rows(&slots, &active), Some(vec![0]));
        active[10] = false;
        assert_eq!(halved_rows(&slots, &active), None, "nothing live");
        let mut odd = vec![false; 10];
        odd[7] = true;
        assert_eq!(halved_rows(&[4, 7, 9], &odd), Some(vec![1]), "odd batches halve by integer division");
    }
}
