//! Sampled generation keyed by stable prompt keys gives the same completions however the prompts
//! are batched (what makes sharded, resumed and re-batched evaluations agree).

mod common;

use burn::tensor::DType;
use common::{Reference, fixture};
use indicatif::ProgressBar;
use trainer::model;
use trainer::rollout::{GenerationRequest, SamplingParams, generate};
use trainer::steering::Steering;

#[test]
fn keyed_sampling_does_not_depend_on_batching() {
    let lm = model::load(&fixture("qwen2"), &common::device(), DType::F32).expect("fixture");
    let prompts = Reference::load("qwen2").ids("prompt_ids");
    let keys: Vec<u64> = (0..prompts.len() as u64).map(|i| 100 + 7 * i).collect();
    let request = |prompts: Vec<Vec<u32>>, keys: Vec<u64>, rows: usize| GenerationRequest {
        max_new_tokens: vec![12; prompts.len()],
        prompts,
        samples_per_prompt: 3,
        sampling: SamplingParams { temperature: 1.0, seed: 5, ..SamplingParams::default() },
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
        max_batch_rows: rows,
        prompt_keys: Some(keys),
    };
    let run = |r: GenerationRequest| -> Vec<Vec<u32>> {
        generate(&lm, &Steering::None, &[], &r, &ProgressBar::hidden()).expect("generate").completions.into_iter().map(|c| c.tokens).collect()
    };
    let together = run(request(prompts.clone(), keys.clone(), 64));
    let mut apart = Vec::new();
    for (p, k) in prompts.iter().zip(&keys).rev() {
        let mut one = run(request(vec![p.clone()], vec![*k], 2));
        one.extend(apart);
        apart = one;
    }
    assert_eq!(together, apart, "completions depend on batching");
    let unkeyed = GenerationRequest { prompt_keys: None, ..request(prompts.clone(), keys, 64) };
    assert_ne!(run(unkeyed), together, "keys select the streams");
    let bad = GenerationRequest { prompt_keys: Some(vec![1]), ..request(prompts, vec![], 64) };
    assert!(generate(&lm, &Steering::None, &[], &bad, &ProgressBar::hidden()).is_err());
}

#[test]
fn rows_that_finish_early_shrink_the_batch_without_changing_any_completion() {
    let lm = model::load(&fixture("qwen2"), &common::device(), DType::F32).expect("fixture");
    let prompts = Reference::load("qwen2").ids("prompt_ids");
    let keys: Vec<u64> = (0..prompts.len() as u64).collect();
    // Budgets from 1 to 14 tokens: rows finish at different steps and the batch halves.
    let budgets: Vec<usize> = (0..prompts.len()).map(|i| 1 + (5 * i) % 14).collect();
    let request = |prompts: Vec<Vec<u32>>, keys: Vec<u64>, budgets: Vec<usize>| GenerationRequest {
        max_new_tokens: budgets,
        prompts,
        samples_per_prompt: 4,
        sampling: SamplingParams { temperature: 1.0, seed: 9, ..SamplingParams::default() },
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
        max_batch_rows: 64,
        prompt_keys: Some(keys),
    };
    let together = generate(&lm, &Steering::None, &[], &request(prompts.clone(), keys.clone(), budgets.clone()), &ProgressBar::hidden())
        .expect("generate");
    let rows = 4 * prompts.len();
    let steps = together.stats.decode_steps;
    assert_eq!(steps, budgets.iter().max().unwrap() - 1, "one decode step per token after the first");
    assert!(together.stats.decoded_rows < rows * steps, "the batch shrank: {} rows decoded in {steps} steps of {rows}", together.stats.decoded_rows);
    for (i, prompt) in prompts.iter().enumerate() {
        let alone = generate(&lm, &Steering::None, &[], &request(vec![prompt.clone()], vec![keys[i]], vec![budgets[i]]), &ProgressBar::hidden())
            .expect("generate one");
        let batched: Vec<&Vec<u32>> = together.completions.iter().filter(|c| c.prompt_index == i).map(|c| &c.tokens).collect();
        let single: Vec<&Vec<u32>> = alone.completions.iter().map(|c| &c.tokens).collect();
        assert_eq!(batched, single, "prompt {i} (budget {})", budgets[i]);
        assert!(batched.iter().all(|t| t.len() == budgets[i]));
    }
}

#[test]
fn replayed_decode_steps_sample_the_completions_of_steps_run_directly() {
    let mut lm = model::load(&fixture("qwen2"), &common::device(), DType::F32).expect("fixture");
    // The replayed step writes the cache through the rotary kernel's route.
    (lm.rotary_kernel, lm.decode_attention) = (true, true);
    let prompts = Reference::load("qwen2").ids("prompt_ids");
    // Budgets from 1 to 14 tokens: the batch halves, and each new batch shape is recorded anew.
    let budgets: Vec<usize> = (0..prompts.len()).map(|i| 1 + (5 * i) % 14).collect();
    let request = GenerationRequest {
        max_new_tokens: budgets.clone(),
        prompts,
        samples_per_prompt: 3,
        // Without top-p and top-k, whose sort runs on the host (no recorded step then).
        sampling: SamplingParams { temperature: 0.8, seed: 3, ..SamplingParams::default() },
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
        max_batch_rows: 64,
        prompt_keys: None,
    };
    let run = |graph: bool| {
        let mut lm = lm.clone();
        lm.decode_graph = graph;
        generate(&lm, &Steering::None, &[], &request, &ProgressBar::hidden()).expect("generate")
    };
    let (direct, replayed) = (run(false), run(true));
    assert_eq!(replayed.stats.decode_steps, direct.stats.decode_steps);
    assert_eq!((direct.stats.replayed_steps, replayed.stats.replayed_steps), (0, direct.stats.decode_steps));
    assert!(direct.completions.iter().any(|c| c.tokens.len() > 1), "some rows decode more than the prefill's token");
    for (d, r) in direct.completions.iter().zip(&replayed.completions) {
        assert_eq!((d.prompt_index, d.sample_index, &d.tokens), (r.prompt_index, r.sample_index, &r.tokens));
        for (a, b) in d.logprobs.iter().zip(&r.logprobs) {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "log-probabilities {a} and {b}");
        }
    }
}
