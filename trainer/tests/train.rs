//! GRPO training: configs, the loss and its gradient against float64 finite differences, every
//! setup, checkpoints, and exact resumption — on the tiny Qwen2 fixture, CPU backend.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Tensor, TensorData};
use common::{Reference, fixture};
use trainer::device::Backend;
use trainer::model::weights::{Weight, WeightMap};
use trainer::model::{self, BatchLayout, CausalLm};
use trainer::steering::Steering;
use trainer::train::checkpoint;
use trainer::train::config::{self, KlType, TrainConfig};
use trainer::train::policy::{Policy, Setup, bias_name};
use trainer::train::run::{self, Reporting, RunOptions};
use trainer::train::step::{LossBatch, LossSettings, micro_batch_gradient, micro_batch_loss};

fn load_f64() -> CausalLm {
    model::load(&fixture("qwen2"), &burn::tensor::Device::flex(), DType::F64).expect("fixture loads in f64")
}

fn host(w: &Weight) -> Vec<f64> {
    w.flat().cast(DType::F64).into_data().iter::<f64>().collect()
}

/// A loss batch from the fixture's reference completion: the full completion and a shorter
/// one after a shorter prompt.
fn batch(advantages: [f64; 2]) -> LossBatch {
    let reference = Reference::load("qwen2");
    let prompt: Vec<u32> = serde_json::from_value(reference.json["completion_prompt_ids"].clone()).expect("ids");
    let completion: Vec<u32> = serde_json::from_value(reference.json["completion_ids"].clone()).expect("ids");
    LossBatch {
        prompts: vec![prompt.clone(), prompt[1..].to_vec()],
        completions: vec![completion.clone(), completion[..3].to_vec()],
        advantages: advantages.to_vec(),
    }
}

fn settings(kl: Option<(KlType, f64)>) -> LossSettings {
    LossSettings { pad_token_id: 0, temperature: 0.7, kl, num_tokens: 11, recompute_layers: false }
}

fn loss_value(policy: &Policy, params: &WeightMap, batch: &LossBatch, settings: &LossSettings) -> f64 {
    let (loss, _) = micro_batch_loss(policy, params, batch, settings).expect("loss");
    loss.cast(DType::F64).into_scalar::<f64>()
}

/// Checks the autodiff gradient of every parameter element against central differences, through
/// the whole graph and with layer recomputation.
fn check_gradient(policy: &Policy, settings: &LossSettings) {
    for recompute_layers in [false, true] {
        check_gradient_with(policy, &LossSettings { recompute_layers, ..*settings });
    }
}

fn check_gradient_with(policy: &Policy, settings: &LossSettings) {
    let batch = batch([1.0, -0.5]);
    let micro = micro_batch_gradient(policy, &batch, settings).expect("gradient");
    let grads = micro.grads;
    let loss = micro.loss.cast(DType::F64).into_scalar::<f64>();
    let want = loss_value(policy, &policy.params, &batch, settings);
    assert!((loss - want).abs() <= 1e-12 * want.abs().max(1.0), "loss {loss} vs {want} ({settings:?})");
    // Central differences in f64 with a step where their truncation (O(eps²)) and the forward's
    // rounding (O(1e-13)/eps) are both far below the tolerance.
    let eps = 1e-3;
    for (name, w) in &policy.params.0 {
        let analytic = host(&grads.0[name]);
        let scale = analytic.iter().fold(0f64, |m, g| m.max(g.abs()));
        assert!(scale > 0.0, "{name}: zero gradient");
        let base = host(w);
        // Every 7th element keeps the test fast; all of them for small tensors.
        let step = if base.len() > 64 { 7 } else { 1 };
        for i in (0..base.len()).step_by(step) {
            let shifted = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let t = Tensor::<1>::from_data(TensorData::new(v, [base.len()]), &policy.base.device);
                let mut params = policy.params.clone();
                params.0.insert(name.clone(), w.with_flat(t));
                loss_value(policy, &params, &batch, settings)
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            let err = (numeric - analytic[i]).abs() / scale;
            // The backend's backward kernels round like f32 in places: agreement is ~1e-6.
            assert!(
                err < 2e-5,
                "{name}[{i}]: autodiff {} vs finite differences {numeric} (relative {err:e}; recompute_layers: {})",
                analytic[i],
                settings.recompute_layers
            );
        }
    }
}

fn with_values(mut policy: Policy, seed: u64) -> Policy {
    // Non-zero parameters, so the KL term and every factor have a gradient.
    let mut state = seed;
    policy.params = policy.params.map_flat(|_, t| {
        let n = t.dims()[0];
        let v: Vec<f64> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2
            })
            .collect();
        Tensor::from_data(TensorData::new(v, [n]), &t.device())
    });
    policy
}

#[test]
fn steering_gradients_match_float64_finite_differences_with_and_without_kl() {
    let lm = load_f64();
    let layers = (0..lm.config.num_layers).collect();
    let policy = with_values(Policy::new(lm, Setup::Steering { layers }, 0).expect("policy"), 1);
    check_gradient(&policy, &settings(None));
    check_gradient(&policy, &settings(Some((KlType::ShulmanTokenLevel, 0.3))));
    check_gradient(&policy, &settings(Some((KlType::ShulmanSequenceLevel, 0.3))));
}

#[test]
fn rank_place_and_lora_gradients_match_float64_finite_differences() {
    let lm = load_f64();
    let rank = with_values(Policy::new(lm.clone(), Setup::SteeringRank { rank: 2 }, 0).expect("rank"), 2);
    check_gradient(&rank, &settings(None));
    let place: trainer::steering::intervention::Place = "model.layers.1.self_attn".parse().expect("place");
    let at = with_values(Policy::new(lm.clone(), Setup::AtPlace { place }, 0).expect("place"), 3);
    check_gradient(&at, &settings(Some((KlType::Vanilla, 0.5))));
    let lora = Setup::Lora { rank: 1, layers: vec![2], init: config::LoraInit::True };
    let lora = with_values(Policy::new(lm, lora, 0).expect("lora"), 4);
    check_gradient(&lora, &settings(None));
}

#[test]
fn the_loss_is_the_advantage_weighted_transformers_logprob_sum_over_the_token_count() {
    let lm = model::load(&fixture("qwen2"), &common::device(), DType::F32).expect("fixture");
    let reference = Reference::load("qwen2");
    // The reference log-probabilities were computed with the fixture's steering vectors.
    let (l, h) = (lm.config.num_layers, lm.config.hidden_size);
    let mut policy = Policy::new(lm, Setup::Steering { layers: (0..l).collect() }, 0).expect("policy");
    let (_, vectors) = reference.tensor("steering_vectors");
    for layer in 0..l {
        let row = Tensor::<1>::from_data(TensorData::new(vectors[layer * h..(layer + 1) * h].to_vec(), [h]), &policy.base.device);
        policy.params.0.insert(bias_name(layer), Weight::Vector(row));
    }
    let (_, logprobs) = reference.tensor("completion_logprobs");
    let mut batch = batch([-2.0, 0.0]);
    batch.prompts.truncate(1);
    batch.completions.truncate(1);
    batch.advantages.truncate(1);
    let s = LossSettings { pad_token_id: 0, temperature: 1.0, kl: None, num_tokens: 40, recompute_layers: false };
    let loss = loss_value(&policy, &policy.params, &batch, &s);
    let want = 2.0 * logprobs.iter().map(|&x| f64::from(x)).sum::<f64>() / 40.0;
    assert!((loss - want).abs() < 1e-4 * want.abs().max(1.0), "loss {loss} vs hand-computed {want}");
}

#[test]
fn default_lora_and_pissa_start_equal_to_the_base_model() {
    let lm = load_f64();
    let tokens: Vec<i64> = (5..17).collect();
    let logits = |model: &CausalLm, steering: &Steering| -> Vec<f64> {
        let t = Tensor::<2, burn::tensor::Int>::from_data(TensorData::new(tokens.clone(), [1, tokens.len()]), &model.device);
        let layout = BatchLayout { pads: vec![0] };
        let out = model.forward(t, &layout, None, steering, &[]).expect("forward");
        model.logits(out.hidden).into_data().iter::<f64>().collect()
    };
    let base = logits(&lm, &Steering::None);
    for init in [config::LoraInit::True, config::LoraInit::Pissa] {
        let setup = Setup::Lora { rank: 2, layers: vec![0, 2], init };
        let policy = Policy::new(lm.clone(), setup, 9).expect("lora");
        let model = policy.model(&policy.params).expect("model");
        let got = logits(&model, &policy.steering(&policy.params).expect("steering"));
        let err = got.iter().zip(&base).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        // Default init: B = 0, exact. PiSSA: the factors are stored in f32, so W − B·A + B·A
        // reproduces W to f32 rounding.
        let tolerance = if init == config::LoraInit::True { 1e-12 } else { 1e-5 };
        assert!(err < tolerance, "{init:?}: max |Δlogit| = {err:e}");
        if init == config::LoraInit::Pissa {
            let b = host(&policy.params.0[&trainer::train::policy::lora_name(0, "B")]);
            assert!(b.iter().any(|x| x.abs() > 1e-3), "PiSSA's B is not zero");
        }
    }
}

/// A training set whose problems tokenize with the fixture's tokenizer.
fn dataset(dir: &Path, rows: usize) -> PathBuf {
    let path = dir.join("arith.jsonl");
    let text: String = (0..rows)
        .map(|i| serde_json::json!({"problem": format!("What is {i} plus {}?", i + 2), "answer": format!("{}", 2 * i + 2)}).to_string() + "\n")
        .collect();
    std::fs::write(&path, text).expect("write dataset");
    path
}

fn train_config(dir: &Path, out: &str, extra: &[&str]) -> TrainConfig {
    let data = dataset(dir, 8);
    let text = format!(
        "model_path: {}\ndataset_path: {}\noutput_dir: {}\nlearning_rate: 0.05\ntraining_setup: steering\n\
         reward_processor_type: reinforce\nprompts_per_step: 2\nnum_generations: 2\nbatch_size: 3\n\
         max_seq_length: 140\nwarmup_ratio: 0.0\nmax_steps: 4\nsave_steps: 2\n",
        fixture("qwen2").display(),
        data.display(),
        dir.join(out).display()
    );
    let overrides: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    config::parse(&text, Path::new("test.yml"), &overrides).expect("config")
}

fn options(steps: Option<u64>) -> RunOptions {
    RunOptions { backend: Backend::Flex, devices: Default::default(), reporting: Reporting::Silent, max_steps_now: steps }
}

#[test]
fn two_steps_then_resume_for_two_more_gives_the_vectors_of_four_steps_in_one_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let straight = run::train(Some(train_config(dir.path(), "a", &[])), None, &options(None)).expect("4 steps");
    assert_eq!((straight.steps_done, straight.total_steps), (4, 4));
    let first = run::train(Some(train_config(dir.path(), "b", &[])), None, &options(Some(2))).expect("2 steps");
    assert_eq!(first.steps_done, 2);
    let resumed = run::train(None, Some(&first.run_dir), &options(None)).expect("resume");
    assert_eq!(resumed.steps_done, 4);
    let read = |run: &run::RunOutcome| std::fs::read(checkpoint::dir(&run.run_dir, 4).join("trainable.safetensors")).expect("checkpoint");
    assert_eq!(read(&straight), read(&resumed), "vectors differ after resuming");
    let moments = |run: &run::RunOutcome| std::fs::read(checkpoint::dir(&run.run_dir, 4).join("optimizer.safetensors")).expect("optimizer");
    assert_eq!(moments(&straight), moments(&resumed));
    let metrics = |run: &run::RunOutcome| -> Vec<(u64, f64, f64)> {
        let bytes = std::fs::read(run.run_dir.join("metrics.jsonl")).expect("metrics");
        shared::metrics::read_metrics(&bytes, "metrics").lines.iter().map(|l| (l.step, l.reward_mean, l.loss)).collect()
    };
    assert_eq!(metrics(&straight), metrics(&resumed));
    assert_eq!(metrics(&straight).len(), 4);
    let vectors = Policy::new(
        model::load(&fixture("qwen2"), &burn::tensor::Device::flex(), DType::F32).expect("model"),
        Setup::Steering { layers: vec![0, 1, 2] },
        0,
    )
    .expect("policy");
    let (trained, _) = checkpoint::load_policy(&checkpoint::dir(&straight.run_dir, 4), vectors.base.clone(), false).expect("load");
    let norm: f64 = host(&trained.params.0[&bias_name(1)]).iter().map(|x| x * x).sum();
    assert!(norm > 0.0, "training changed nothing");
    assert!(checkpoint::dir(&straight.run_dir, 2).is_dir() && straight.run_dir.join("manifest.json").is_file());
    // Starting again over a run with checkpoints is refused (no lost work).
    let err = run::train(Some(train_config(dir.path(), "a", &[])), None, &options(None)).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn every_setup_trains_and_its_checkpoint_loads_for_inference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setups: [&[&str]; 6] = [
        &["steering_at_layer=1"],
        &["training_setup=steering_rank", "steering_rank=2"],
        &["training_setup=steering_at_place", "steering_at_place=model.layers.2.post_attention_layernorm"],
        &["training_setup=lora", "lora_rank=2", "kl_coef=0.1"],
        &["training_setup=lora", "lora_rank=1", "lora_init=pissa"],
        &["training_setup=full_model", "learning_rate=1e-3"],
    ];
    for (i, extra) in setups.iter().enumerate() {
        let mut overrides = extra.to_vec();
        overrides.push("max_steps=1");
        let config = train_config(dir.path(), &format!("s{i}"), &overrides);
        let outcome = run::train(Some(config), None, &options(None)).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        let ckpt = outcome.last_checkpoint.expect("a checkpoint");
        let base = model::load(&fixture("qwen2"), &burn::tensor::Device::flex(), DType::F32).expect("model");
        let (policy, state) = checkpoint::load_policy(&ckpt, base.clone(), true).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        assert_eq!(state.expect("state").step, 1);
        let fresh = Policy::new(base.clone(), policy.setup.clone(), 0).expect("fresh");
        let moved = policy.params.0.iter().any(|(k, w)| host(w) != host(&fresh.params.0[k]));
        assert!(moved, "{extra:?}: one step changed no parameter");
        let (model, steering) = checkpoint::load_for_inference(&ckpt, base).expect("inference");
        assert_eq!(model.config, policy.base.config);
        let expect_steering = !extra.iter().any(|s| s.contains("full_model"));
        assert_eq!(!matches!(steering, Steering::None), expect_steering, "{extra:?}");
        let has_vectors = ckpt.join("steering_vectors.safetensors").is_file();
        assert_eq!(has_vectors, !extra.iter().any(|s| s.contains("lora") || s.contains("full_model")), "{extra:?}");
    }
}

#[test]
fn malformed_training_rows_and_tiny_datasets_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = train_config(dir.path(), "x", &[]);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"problem\": \"1+1\", \"answer\": \"2\"}\n{\"problem\": 3\n").expect("write");
    config.dataset_path = bad;
    let err = run::train(Some(config.clone()), None, &options(None)).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl") && err.contains('2'), "{err}");
    config.dataset_path = dataset(dir.path(), 1);
    let err = run::train(Some(config), None, &options(None)).unwrap_err().to_string();
    assert!(err.contains("prompts_per_step"), "{err}");
}

#[test]
fn every_training_config_under_configs_parses() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/train");
    let mut stack = vec![root];
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("configs/train") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml") {
                let c = config::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                assert!(c.run_dir().starts_with("train_output"), "{}", path.display());
                count += 1;
            }
        }
    }
    assert!(count >= 50, "found only {count} training configs");
}

#[test]
fn only_the_newest_save_total_limit_checkpoints_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = train_config(dir.path(), "k", &["save_steps=1", "save_total_limit=2", "max_steps=3"]);
    let outcome = run::train(Some(config), None, &options(None)).expect("3 steps");
    let kept: Vec<u64> = checkpoint::list(&outcome.run_dir).expect("list").into_iter().map(|(step, _)| step).collect();
    assert_eq!(kept, vec![2, 3]);
    assert_eq!(outcome.last_checkpoint, Some(checkpoint::dir(&outcome.run_dir, 3)));
}

#[test]
fn the_train_command_prints_json_lines_and_resumes_a_stopped_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = train_config(dir.path(), "cli", &["max_steps=2"]);
    let path = dir.path().join("cli.yml");
    std::fs::write(&path, serde_norway::to_string(&config).expect("yaml")).expect("write");
    let trainer = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().expect("run trainer");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stdout, stderr) = trainer(&["train", "--config", path.to_str().expect("path"), "--steps", "1", "--json"]);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!((lines.len(), lines[0]["step"].as_u64()), (1, Some(1)), "{stdout}");
    assert!(stderr.contains("done: 1/2 steps"), "{stderr}");
    let run_dir = config.run_dir();
    let (ok, stdout, stderr) = trainer(&["train", "--resume", run_dir.to_str().expect("path"), "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stderr.contains("done: 2/2 steps"), "{stderr}");
    // A key of the wrong type is named.
    let (ok, _, stderr) = trainer(&["train", "--config", path.to_str().expect("path"), "--set", "learning_rate=fast"]);
    assert!(!ok && stderr.contains("learning_rate"), "{stderr}");
}
