//! Parity with PyTorch/transformers on the tiny fixtures of every architecture (made by
//! `tests/fixtures/make_fixtures.py`): logits (relative error < 1e-4 in f32), per-layer hidden
//! states, greedy generations (identical tokens, batched with padding and a KV cache), the same
//! with non-zero `down_proj` biases as steering vectors, and the gradient of completion
//! log-probabilities with respect to those vectors (relative error < 1e-3). Generation and
//! log-probabilities are also checked with sequence lengths padded to a multiple of 16 (what GPU
//! models do, `CausalLm::length_multiple`), and with attention and log-probabilities computed in
//! small pieces (`CausalLm::chunk_bytes`), and with the backend's fused attention kernel and every
//! decode-step kernel's routing in passes without autodiff (`CausalLm::fused_attention`,
//! `decode_kernel`, `fused_norm`, `rotary_kernel`, `decode_attention`; on the CPU the kernels'
//! routes compose burn's operations).
#![allow(clippy::unwrap_used)]

mod common;

use burn::tensor::{DType, Int, Tensor, TensorData};
use common::{ARCHS, Reference, device, fixture, relative_error, values};
use indicatif::ProgressBar;
use trainer::model::{self, BatchLayout, CausalLm, ModelTokenizer};
use trainer::rl::completion_logprobs;
use trainer::rollout::{GenerationRequest, SamplingParams, generate};
use trainer::steering::Steering;
use trainer::steering::intervention::Intervention;

const LOGIT_TOLERANCE: f32 = 1e-4;
const GRAD_TOLERANCE: f32 = 1e-3;

/// How the model runs: `None` keeps the backend's default.
#[derive(Debug, Clone, Copy, Default)]
struct Variant {
    length_multiple: Option<usize>,
    chunk_bytes: Option<usize>,
    fused_attention: Option<bool>,
    /// Every decode-step kernel's route (products, norms, rotary embedding and cache writes,
    /// attention) and generation's recorded decode steps, on or off.
    kernels: Option<bool>,
}

/// Lengths padded to multiples of 16, as GPU models pad to 64.
const PADDED: Variant = Variant { length_multiple: Some(16), chunk_bytes: None, fused_attention: None, kernels: None };
/// Pieces so small that attention takes a few query positions at a time and the log-probability
/// pass one position at a time.
const CHUNKED: Variant = Variant { length_multiple: None, chunk_bytes: Some(2048), fused_attention: None, kernels: None };
/// Attention of passes without autodiff as one fused kernel and every decode-step kernel's
/// route (on the CPU: the same arithmetic composed of burn's operations), with padded lengths.
const FUSED: Variant = Variant { length_multiple: Some(16), chunk_bytes: None, fused_attention: Some(true), kernels: Some(true) };

fn load(name: &str) -> (CausalLm, Reference) {
    load_variant(name, Variant::default())
}

fn load_variant(name: &str, variant: Variant) -> (CausalLm, Reference) {
    let mut lm = model::load(&fixture(name), &device(), DType::F32).expect("model loads");
    if let Some(m) = variant.length_multiple {
        lm.length_multiple = m;
    }
    if let Some(bytes) = variant.chunk_bytes {
        lm.chunk_bytes = bytes;
    }
    if let Some(fused) = variant.fused_attention {
        lm.fused_attention = fused;
    }
    if let Some(on) = variant.kernels {
        (lm.decode_kernel, lm.fused_norm, lm.rotary_kernel, lm.decode_attention, lm.decode_graph) = (on, on, on, on, on);
    }
    (lm, Reference::load(name))
}

fn reference_steering(lm: &CausalLm, reference: &Reference) -> Steering {
    let (_, v) = reference.tensor("steering_vectors");
    Steering::per_layer(v, lm.config.num_layers, lm.config.hidden_size, &lm.device).unwrap()
}

/// Logits `[S, V]` of each prompt, all prompts run together in one left-padded batch.
fn batched_logits(lm: &CausalLm, prompts: &[Vec<u32>], steering: &Steering) -> Vec<Vec<f32>> {
    let (tokens, width, layout) = BatchLayout::left_pad(prompts, 0);
    let tokens: Vec<i64> = tokens.into_iter().map(i64::from).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [prompts.len(), width]), &lm.device);
    let out = lm.forward(tokens, &layout, None, steering, &[]).unwrap();
    let v = lm.config.vocab_size;
    let all = values(lm.logits(out.hidden));
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let row = &all[i * width * v..(i + 1) * width * v];
            row[(width - p.len()) * v..].to_vec()
        })
        .collect()
}

fn check_logits(name: &str, steered: bool, variant: Variant) {
    let (lm, reference) = load_variant(name, variant);
    let steering = if steered { reference_steering(&lm, &reference) } else { Steering::None };
    let prefix = if steered { "steered_logits" } else { "logits" };
    let prompts = reference.ids("prompt_ids");
    for (i, actual) in batched_logits(&lm, &prompts, &steering).iter().enumerate() {
        let (_, expected) = reference.tensor(&format!("{prefix}.{i}"));
        let err = relative_error(actual, &expected);
        assert!(err < LOGIT_TOLERANCE, "{name} {prefix}.{i} ({variant:?}): relative error {err:e}");
    }
}

fn check_hidden_states(name: &str, steered: bool) {
    let (lm, reference) = load(name);
    let steering = if steered { reference_steering(&lm, &reference) } else { Steering::None };
    let key = if steered { "steered_hidden_states.0" } else { "hidden_states.0" };
    let ids = &reference.ids("prompt_ids")[0];
    let (_, expected) = reference.tensor(key);
    let tokens: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, ids.len()]), &lm.device);
    let layout = BatchLayout { pads: vec![0] };
    let out = lm.forward(tokens, &layout, None, &steering, &[Intervention::RecordHiddenStates]).unwrap();
    assert_eq!(out.hidden_states.len(), lm.config.num_layers);
    let per_layer = ids.len() * lm.config.hidden_size;
    for (l, h) in out.hidden_states.into_iter().enumerate() {
        let err = relative_error(&values(h), &expected[l * per_layer..(l + 1) * per_layer]);
        assert!(err < LOGIT_TOLERANCE, "{name} {key} layer {l}: relative error {err:e}");
    }
}

fn check_greedy(name: &str, steered: bool, variant: Variant) {
    let (lm, reference) = load_variant(name, variant);
    let steering = if steered { reference_steering(&lm, &reference) } else { Steering::None };
    let prompts = reference.ids("prompt_ids");
    let expected = reference.ids(if steered { "steered_greedy" } else { "greedy" });
    let n = expected[0].len();
    let request = GenerationRequest {
        max_new_tokens: vec![n; prompts.len()],
        prompts,
        samples_per_prompt: 1,
        sampling: SamplingParams::greedy(),
        stop_token_ids: Vec::new(),
        pad_token_id: 0,
        max_batch_rows: 8,
        prompt_keys: None,
    };
    let generation = generate(&lm, &steering, &[], &request, &ProgressBar::hidden()).unwrap();
    let actual: Vec<Vec<u32>> = generation.completions.into_iter().map(|c| c.tokens).collect();
    assert_eq!(actual, expected, "{name} greedy (steered: {steered}, {variant:?})");
}

fn check_gradient(name: &str, variant: Variant) {
    let (lm, reference) = load_variant(name, variant);
    let (_, v) = reference.tensor("steering_vectors");
    let (l, h) = (lm.config.num_layers, lm.config.hidden_size);
    let vectors = Tensor::<2>::from_data(TensorData::new(v, [l, h]), &lm.device).autodiff().require_grad();
    let steering = Steering::PerLayer(vectors.clone());
    let prompt = reference.json["completion_prompt_ids"].clone();
    let completion = reference.json["completion_ids"].clone();
    let prompt: Vec<u32> = serde_json::from_value(prompt).unwrap();
    let completion: Vec<u32> = serde_json::from_value(completion).unwrap();
    // A second, shorter row checks that padding does not leak into the first row's gradient.
    let short = completion[..2].to_vec();
    let out = completion_logprobs(&lm, &steering, &[], &[prompt.clone(), prompt[1..].to_vec()], &[completion.clone(), short], 0, 1.0)
        .unwrap();
    // Columns past the longest completion (padding to the length multiple) are masked.
    let row0 = out.logprobs.clone().narrow(0, 0, 1).narrow(1, 0, completion.len());
    let masked_tail = values(out.mask.clone().narrow(0, 0, 1)).iter().skip(completion.len()).all(|&m| m == 0.0);
    assert!(masked_tail, "{name}: padded completion columns are masked");
    let grads = row0.clone().sum().backward();
    let (_, expected_lp) = reference.tensor("completion_logprobs");
    let err = relative_error(&values(row0), &expected_lp);
    assert!(err < LOGIT_TOLERANCE, "{name} completion log-probs ({variant:?}): relative error {err:e}");
    let grad = vectors.grad(&grads).expect("the steering vectors get a gradient");
    let (_, expected) = reference.tensor("steering_grad");
    let err = relative_error(&values(grad), &expected);
    assert!(err < GRAD_TOLERANCE, "{name} steering gradient ({variant:?}): relative error {err:e}");
}

#[test]
fn logits_match_transformers_for_every_architecture() {
    for name in ARCHS {
        check_logits(name, false, Variant::default());
    }
}

#[test]
fn steered_logits_match_transformers_with_down_proj_biases() {
    for name in ARCHS {
        check_logits(name, true, Variant::default());
    }
}

#[test]
fn hidden_states_after_every_layer_match_transformers() {
    for name in ARCHS {
        check_hidden_states(name, false);
        check_hidden_states(name, true);
    }
}

#[test]
fn batched_greedy_generation_with_kv_cache_matches_transformers() {
    for name in ARCHS {
        check_greedy(name, false, Variant::default());
    }
}

#[test]
fn greedy_generation_with_padded_lengths_matches_transformers() {
    for name in ARCHS {
        check_greedy(name, false, PADDED);
        check_greedy(name, true, PADDED);
    }
}

#[test]
fn attention_and_log_probabilities_in_small_pieces_match_transformers() {
    for name in ARCHS {
        check_logits(name, true, CHUNKED);
        check_greedy(name, true, CHUNKED);
        check_gradient(name, CHUNKED);
    }
}

#[test]
fn fused_attention_and_the_decode_product_routing_match_transformers() {
    for name in ARCHS {
        check_logits(name, true, FUSED);
        check_greedy(name, true, FUSED);
        check_gradient(name, FUSED);
    }
}

#[test]
fn steered_greedy_generation_matches_transformers() {
    for name in ARCHS {
        check_greedy(name, true, Variant::default());
    }
}

#[test]
fn steering_gradient_of_completion_logprobs_matches_torch_autograd() {
    for name in ARCHS {
        check_gradient(name, Variant::default());
    }
}

#[test]
fn steering_gradient_with_padded_lengths_matches_torch_autograd() {
    for name in ARCHS {
        check_gradient(name, PADDED);
    }
}

#[test]
fn prompts_tokenize_and_chat_templates_render_like_transformers() {
    for name in ARCHS {
        let tokenizer = ModelTokenizer::from_dir(&fixture(name)).unwrap();
        let reference = Reference::load(name);
        let texts: Vec<String> = serde_json::from_value(reference.json["prompts"].clone()).unwrap();
        let ids = reference.ids("prompt_ids");
        for (text, expected) in texts.iter().zip(&ids) {
            assert_eq!(&tokenizer.encode(text, false).unwrap(), expected, "{name}: {text:?}");
        }
        for case in reference.json["chat"].as_array().unwrap() {
            let messages: Vec<trainer::model::ChatMessage> = case["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| trainer::model::ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
                .collect();
            let text = tokenizer.apply_chat_template(&messages, true).unwrap();
            assert_eq!(text, case["text"].as_str().unwrap(), "{name} chat template");
            let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(tokenizer.encode(&text, false).unwrap(), ids, "{name} chat ids");
        }
    }
}
