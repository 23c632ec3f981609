//! Data parallelism on the CPU: a step split over two device workers in one process, and (with
//! the `mpi` feature) over two MPI ranks, gives the parameters of the same step on one worker;
//! `trainer eval --devices` gives the results of one unsharded run.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use burn::tensor::DType;
use common::fixture;
use trainer::device::Backend;
use trainer::eval;
use trainer::model::weights::WeightMap;
use trainer::parallel::DeviceSelection;
use trainer::train::checkpoint;
use trainer::train::config::{self, TrainConfig};
use trainer::train::run::{self, Reporting, RunOptions};

/// A steering run on the tiny fixture: 3 prompts per step (split 2 + 1 over two workers), G = 2,
/// RLOO with KL so that every sequence carries a gradient, 2 steps.
fn config(dir: &Path, out: &str, extra: &[&str]) -> TrainConfig {
    let data = dir.join("arith.jsonl");
    let rows: String = (0..9)
        .map(|i| serde_json::json!({"problem": format!("What is {i} plus {}?", i + 2), "answer": format!("{}", 2 * i + 2)}).to_string() + "\n")
        .collect();
    std::fs::write(&data, rows).unwrap();
    let text = format!(
        "model_path: {}\ndataset_path: {}\noutput_dir: {}\nlearning_rate: 0.05\ntraining_setup: steering\n\
         reward_processor_type: reinforce\nkl_coef: 0.05\nprompts_per_step: 3\nnum_generations: 2\nbatch_size: 2\n\
         max_seq_length: 120\nwarmup_ratio: 0.0\nmax_steps: 2\nsave_steps: 2\n",
        fixture("qwen2").display(),
        data.display(),
        dir.join(out).display()
    );
    let overrides: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    config::parse(&text, Path::new("parallel.yml"), &overrides).unwrap()
}

fn train(config: TrainConfig, devices: &[usize]) -> run::RunOutcome {
    let options = RunOptions {
        backend: Backend::Flex,
        devices: DeviceSelection::List(devices.to_vec()),
        reporting: Reporting::Silent,
        max_steps_now: None,
    };
    run::train(Some(config), None, &options).unwrap()
}

/// Every trained value of a run's last checkpoint.
fn trained(run_dir: &Path) -> Vec<f64> {
    let dir = checkpoint::dir(run_dir, 2);
    let path = ["trainable.safetensors", "adapter_model.safetensors"].map(|f| dir.join(f)).into_iter().find(|p| p.is_file()).unwrap();
    let params = WeightMap::load_safetensors(&path, &burn::tensor::Device::flex()).unwrap();
    params.0.values().flat_map(|w| w.flat().cast(DType::F64).into_data().iter::<f64>().collect::<Vec<_>>()).collect()
}

fn metrics(run_dir: &Path) -> Vec<shared::metrics::MetricsLine> {
    let bytes = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();
    shared::metrics::read_metrics(&bytes, "metrics.jsonl").lines
}

/// The two runs sampled the same completions, were rewarded alike and end with the same
/// parameters (to 1e-6: the workers' gradients are summed in another order).
fn assert_same_training(one: &Path, split: &Path, workers: u64) {
    let (a, b) = (metrics(one), metrics(split));
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.reward_mean, x.completion_len_mean, x.stop_rate), (y.reward_mean, y.completion_len_mean, y.stop_rate));
        assert_eq!(x.extra["num_completion_tokens"], y.extra["num_completion_tokens"]);
        assert!((x.loss - y.loss).abs() <= 1e-6 * x.loss.abs().max(1.0), "loss {} vs {}", x.loss, y.loss);
        assert!((x.grad_norm - y.grad_norm).abs() <= 1e-6 * x.grad_norm.max(1.0), "grad norm {} vs {}", x.grad_norm, y.grad_norm);
        assert_eq!(y.extra["num_workers"], workers);
    }
    let (a, b) = (trained(one), trained(split));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|x| *x != 0.0), "training changed nothing");
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-6, "parameters differ by up to {worst:e}");
}

#[test]
fn two_device_workers_take_the_steps_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let one = train(config(dir.path(), "one", &[]), &[0]);
    let two = train(config(dir.path(), "two", &[]), &[0, 1]);
    assert_same_training(&one.run_dir, &two.run_dir, 2);
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(two.run_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["processes"].as_u64(), manifest["devices_per_process"].as_u64()), (Some(1), Some(2)));
}

#[test]
fn lora_gradients_are_reduced_over_workers_too() {
    let dir = tempfile::tempdir().unwrap();
    let lora = ["training_setup=lora", "lora_rank=2", "learning_rate=0.01"];
    let one = train(config(dir.path(), "one", &lora), &[0]);
    let three = train(config(dir.path(), "three", &lora), &[0, 1, 2]);
    assert_same_training(&one.run_dir, &three.run_dir, 3);
}

fn trainer_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

/// An eval config over `benchmarks` (each `rows` problems) in `dir`.
fn eval_config(dir: &Path, benchmarks: &[&str], rows: usize) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let lines: String = (0..rows).map(|i| format!("{{\"problem\": \"What is {i} + 1?\", \"answer\": \"{}\"}}\n", i + 1)).collect();
    let mut entries = String::new();
    for b in benchmarks {
        std::fs::write(data.join(format!("{b}.jsonl")), &lines).unwrap();
        entries.push_str(&format!("  - id: {b}\n"));
    }
    let config = dir.join("tiny.yml");
    let yaml = format!(
        "model_name: tiny\nmax_seq_length: 256\nmax_new_tokens: 6\nsmall_datasets_num_generations: 3\nbatch_rows: 4\n\
         data_dir: {}\nbenchmarks:\n{entries}",
        data.display()
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// Runs `trainer eval` of the fixture model with `config` into `results`; returns stdout.
fn eval(config: &Path, results: &Path, extra: &[&str]) -> String {
    let out = trainer_command()
        .args(["eval", "--config", config.to_str().unwrap(), "--model", fixture("qwen2").to_str().unwrap()])
        .args(["--results", results.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The results folder of the tiny base model.
fn base_folder(results: &Path) -> std::path::PathBuf {
    results.join("tiny/base/temp_1.0_top_p_1.0/eval_seed-0")
}

#[test]
fn eval_on_two_devices_merges_into_the_results_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = eval_config(dir.path(), &["amc23", "gsm8k"], 5);
    let texts = |results: &Path, devices: &str| -> Vec<Vec<Option<String>>> {
        eval(&config, results, &["--devices", devices]);
        let folder = base_folder(results);
        assert!(!eval::has_shards(&folder).unwrap(), "shard files left behind");
        ["amc23", "gsm8k"]
            .iter()
            .flat_map(|b| {
                let read = shared::eval::read_records(&std::fs::read(folder.join(format!("{b}.jsonl"))).unwrap(), b);
                assert!(read.errors.is_empty(), "{:?}", read.errors);
                read.records.into_iter().map(|r| r.samples.iter().map(|s| s.text.clone()).collect())
            })
            .collect()
    };
    let one = texts(&dir.path().join("one"), "0");
    let two = texts(&dir.path().join("two"), "0,1");
    assert_eq!(one.len(), 10);
    assert_eq!(one, two);
    // Run again: everything is complete and skipped.
    let stdout = eval(&config, &dir.path().join("two"), &["--devices", "0,1"]);
    assert!(stdout.lines().count() == 2 && stdout.lines().all(|l| l.contains("\"skipped\":true")), "{stdout}");
}

#[test]
fn shards_finished_by_an_interrupted_multi_device_eval_are_merged_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = eval_config(dir.path(), &["gsm8k"], 3);
    let results = dir.path().join("results");
    // What two devices leave when the process dies before merging: both shards, complete.
    eval(&config, &results, &["--shard", "0/2"]);
    eval(&config, &results, &["--shard", "1/2"]);
    let stdout = eval(&config, &results, &["--devices", "0,1"]);
    assert!(stdout.contains("\"shards\":2") && stdout.contains("\"num_problems\":3"), "{stdout}");
    assert!(base_folder(&results).join("gsm8k.summary.json").is_file());
    assert!(!eval::has_shards(&base_folder(&results)).unwrap(), "shard files left behind");
}

#[test]
fn bad_device_lists_and_mpi_without_the_feature_are_clear_errors() {
    let out = trainer_command().args(["train", "--config", "x.yml", "--devices", "0,zero"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`zero` is not a device index"), "{stderr}");
    if !cfg!(feature = "mpi") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yml");
        std::fs::write(&path, serde_norway::to_string(&config(dir.path(), "x", &[])).unwrap()).unwrap();
        let out = trainer_command().args(["train", "--config", path.to_str().unwrap(), "--mpi"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("built without MPI"), "{stderr}");
    }
}

/// `mpirun -np 2 trainer train --mpi` (two ranks of one worker each, launched as CI launches
/// it: as root, oversubscribing the two cores) trains what one process trains.
#[cfg(feature = "mpi")]
#[test]
fn two_mpi_ranks_take_the_steps_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let one = train(config(dir.path(), "one", &[]), &[0]);
    let ranks = config(dir.path(), "ranks", &[]);
    let path = dir.path().join("ranks.yml");
    std::fs::write(&path, serde_norway::to_string(&ranks).unwrap()).unwrap();
    let out = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe", "--allow-run-as-root"])
        .arg(env!("CARGO_BIN_EXE_trainer"))
        .args(["train", "--config", path.to_str().unwrap(), "--mpi", "--json"])
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .output()
        .expect("mpirun (Open MPI) is installed");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Rank 0 alone reports and writes.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with('{')).count(), 2, "{stdout}");
    let run_dir: std::path::PathBuf = ranks.run_dir();
    assert_same_training(&one.run_dir, &run_dir, 2);
}
