//! `trainer eval` and `trainer eval-merge` on the tiny Qwen2 fixture: results layout of base
//! models, vector files and checkpoints, sharding through the command line, and config errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture;

fn trainer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().expect("run trainer");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A config and its two short benchmark files in `dir`.
fn setup(dir: &Path) -> String {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let lines: String = (0..4).map(|i| format!("{{\"problem\": \"What is {i} + 1?\", \"answer\": \"{}\"}}\n", i + 1)).collect();
    std::fs::write(data.join("amc23.jsonl"), &lines).unwrap();
    std::fs::write(data.join("gsm8k.jsonl"), &lines).unwrap();
    let config = dir.join("tiny.yml");
    let yaml = format!(
        "model_name: tiny\nmax_seq_length: 256\nmax_new_tokens: 6\nsmall_datasets_num_generations: 3\nbatch_rows: 4\n\
         data_dir: {}\nbenchmarks:\n  - id: amc23\n  - id: gsm8k\n",
        data.display()
    );
    std::fs::write(&config, yaml).unwrap();
    config.to_str().unwrap().to_owned()
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn eval_of_a_base_model_writes_the_layout_and_a_second_run_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let results = dir.path().join("results");
    let model = fixture("qwen2");
    let args = ["eval", "--config", &config, "--model", model.to_str().unwrap(), "--results", results.to_str().unwrap(), "--seed", "1"];
    let (ok, stdout, stderr) = trainer(&args);
    assert!(ok, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2);
    // Protocol: the small set gets the config's small-set samples, the other one sample.
    assert_eq!((lines[0]["benchmark"].as_str(), lines[0]["samples_per_problem"].as_u64()), (Some("amc23"), Some(3)));
    assert_eq!((lines[1]["benchmark"].as_str(), lines[1]["samples_per_problem"].as_u64()), (Some("gsm8k"), Some(1)));
    let out = results.join("tiny/base/temp_1.0_top_p_1.0/eval_seed-1");
    for f in ["amc23.jsonl", "amc23.summary.json", "gsm8k.jsonl", "gsm8k.summary.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let (ok, stdout, _) = trainer(&args);
    assert!(ok);
    assert!(json_lines(&stdout).iter().all(|l| l["skipped"] == true), "{stdout}");
    // Greedy: one sample everywhere, its own folder (with an untimed warm-up first).
    let mut greedy = args.to_vec();
    greedy.extend(["--temperature", "0", "--benchmarks", "amc23", "--warmup"]);
    let (ok, stdout, stderr) = trainer(&greedy);
    assert!(ok, "{stderr}");
    assert_eq!(json_lines(&stdout)[0]["samples_per_problem"], 1);
    assert!(results.join("tiny/base/temp_0.0_top_p_1.0/eval_seed-1/amc23.summary.json").is_file());
}

#[test]
fn a_checkpoint_in_the_results_layout_is_evaluated_into_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let checkpoint = dir.path().join("res/tiny-qwen/deepscaler/steering/seed-0_lr-0.01/checkpoint-7");
    std::fs::create_dir_all(&checkpoint).unwrap();
    let mut vectors = trainer::steering::SteeringFile::zeros(3, 64, Default::default());
    vectors.vectors.iter_mut().enumerate().for_each(|(i, x)| *x = ((i % 5) as f32 - 2.0) * 0.5);
    vectors.save(&checkpoint.join("steering_vectors.safetensors")).unwrap();
    let model = fixture("qwen2");
    let (ok, _, stderr) = trainer(&[
        "eval", "--config", &config, "--model", model.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap(),
        "--benchmarks", "gsm8k", "--temperature", "0",
    ]);
    assert!(ok, "{stderr}");
    let summary = checkpoint.join("temp_0.0_top_p_1.0/eval_seed-0/gsm8k.summary.json");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["context"]["model"], "tiny-qwen");
    assert_eq!(s["context"]["dataset"], "deepscaler");
    assert_eq!(s["context"]["setup"], "steering");
    assert_eq!(s["context"]["run"], "seed-0_lr-0.01");
    assert_eq!(s["context"]["checkpoint"], 7);
    // A folder without vectors is refused with what was expected.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, stderr) = trainer(&["eval", "--config", &config, "--model", model.to_str().unwrap(), "--checkpoint", empty.to_str().unwrap()]);
    assert!(!ok && stderr.contains("expected a training checkpoint holding steering_vectors.safetensors"), "{stderr}");
}

#[test]
fn shards_run_through_the_command_line_merge_into_one_result() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let results = dir.path().join("results");
    let model = fixture("qwen2");
    for shard in ["0/3", "1/3", "2/3"] {
        let (ok, stdout, stderr) = trainer(&[
            "eval", "--config", &config, "--model", model.to_str().unwrap(), "--results", results.to_str().unwrap(),
            "--shard", shard, "--benchmarks", "gsm8k",
        ]);
        assert!(ok, "{stderr}");
        let n = json_lines(&stdout)[0]["num_problems"].as_u64().unwrap();
        assert_eq!(n, if shard == "0/3" { 2 } else { 1 });
    }
    let (ok, stdout, stderr) = trainer(&["eval-merge", results.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let merged = json_lines(&stdout);
    assert_eq!((merged.len(), merged[0]["shards"].as_u64(), merged[0]["num_problems"].as_u64()), (1, Some(3), Some(4)));
    assert!(results.join("tiny/base/temp_1.0_top_p_1.0/eval_seed-0/gsm8k.summary.json").is_file());
    let (ok, _, stderr) = trainer(&["eval-merge", dir.path().join("data").to_str().unwrap()]);
    assert!(!ok && stderr.contains("no shard files"), "{stderr}");
    let (ok, _, stderr) = trainer(&["eval", "--config", &config, "--model", model.to_str().unwrap(), "--shard", "3/3"]);
    assert!(!ok && stderr.contains("expected i/N with 0 ≤ i < N"), "{stderr}");
}

#[test]
fn config_and_benchmark_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let model = fixture("qwen2");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "benchmarks: [{id: gsm8k}]\nsamples_per_problem: 4\n").unwrap();
    let (ok, _, stderr) = trainer(&["eval", "--config", bad.to_str().unwrap(), "--model", model.to_str().unwrap()]);
    assert!(!ok && stderr.contains("bad.yml: unknown field `samples_per_problem`"), "{stderr}");
    let (ok, _, stderr) = trainer(&["eval", "--config", &config, "--model", model.to_str().unwrap(), "--benchmarks", "aime24"]);
    assert!(!ok && stderr.contains("--benchmarks: `aime24` is not in"), "{stderr}");
    std::fs::write(dir.path().join("data/gsm8k.jsonl"), "{\"problem\": \"p\", \"answer\": \"1\"}\n{\"problem\": 1\n").unwrap();
    let (ok, _, stderr) = trainer(&["eval", "--config", &config, "--model", model.to_str().unwrap(), "--benchmarks", "gsm8k"]);
    assert!(!ok && stderr.contains("gsm8k.jsonl: line 2: expected a JSON object, found invalid JSON"), "{stderr}");
    let (ok, stdout, _) = trainer(&["eval", "--help"]);
    assert!(ok && stdout.contains("--shard") && stdout.contains("eval_seed-<k>"), "{stdout}");
}

#[test]
fn a_reference_checkpoint_with_down_proj_biases_evaluates_like_the_same_vectors_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let values: Vec<f32> = (0..3 * 64).map(|i| ((i % 9) as f32 - 4.0) * 0.4).collect();
    // The reference format: a checkpoint folder whose down_proj biases hold the vectors.
    let reference = dir.path().join("reference-checkpoint");
    std::fs::create_dir_all(&reference).unwrap();
    let rows: Vec<Vec<u8>> = values.chunks(64).map(|r| r.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let names: Vec<String> = (0..3).map(|l| format!("model.layers.{l}.mlp.down_proj.bias")).collect();
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = names
        .iter()
        .zip(&rows)
        .map(|(n, r)| (n.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![64], r).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &reference.join("model.safetensors")).unwrap();
    let mut own = trainer::steering::SteeringFile::zeros(3, 64, Default::default());
    own.vectors.clone_from(&values);
    let own_path = dir.path().join("vectors.safetensors");
    own.save(&own_path).unwrap();
    let model = fixture("qwen2");
    let results = dir.path().join("results");
    let texts = |steering: &Path, run: &str| {
        let (ok, _, stderr) = trainer(&[
            "eval", "--config", &config, "--model", model.to_str().unwrap(), "--steering", steering.to_str().unwrap(),
            "--results", results.to_str().unwrap(), "--run", run, "--temperature", "0", "--benchmarks", "gsm8k",
        ]);
        assert!(ok, "{stderr}");
        let path = results.join(format!("tiny/custom/steering/{run}/temp_0.0_top_p_1.0/eval_seed-0/gsm8k.jsonl"));
        let read = shared::eval::read_records(&std::fs::read(path).unwrap(), "records");
        read.records.into_iter().map(|r| r.samples[0].text.clone()).collect::<Vec<_>>()
    };
    let from_reference = texts(&reference, "reference");
    assert_eq!(from_reference, texts(&own_path, "own"));
    let (ok, _, stderr) = trainer(&[
        "eval", "--config", &config, "--model", model.to_str().unwrap(), "--results", results.to_str().unwrap(),
        "--temperature", "0", "--benchmarks", "gsm8k",
    ]);
    assert!(ok, "{stderr}");
    let base = shared::eval::read_records(
        &std::fs::read(results.join("tiny/base/temp_0.0_top_p_1.0/eval_seed-0/gsm8k.jsonl")).unwrap(),
        "records",
    );
    assert_ne!(base.records.into_iter().map(|r| r.samples[0].text.clone()).collect::<Vec<_>>(), from_reference);
}

#[test]
fn every_shipped_eval_config_parses_and_its_benchmark_files_load() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seen = 0;
    for entry in std::fs::read_dir(repo.join("configs/eval")).unwrap() {
        let path = entry.unwrap().path();
        let config = trainer::eval::EvalConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.model_name.is_some(), "{}", path.display());
        for b in &config.benchmarks {
            let (split, mapping) = trainer::eval::EvalConfig::split_and_mapping(b);
            let files: Vec<_> = config.paths_for(b).into_iter().map(|p| repo.join(p)).collect();
            let problems = trainer::data::load(&files, &split, &mapping).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!problems.is_empty());
        }
        seen += 1;
    }
    assert!(seen >= 5, "{seen} configs");
}
