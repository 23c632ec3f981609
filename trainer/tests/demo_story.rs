//! The demo story on the committed demo model (CPU): GRPO raises the reward of steering vectors,
//! and `trainer demo`'s pipeline writes results the viewer reads and reuses finished runs.

use std::path::Path;

use trainer::demo::committed_model_dir;
use trainer::demo::story::{DemoOptions, run_demo};
use trainer::device::Backend;
use trainer::train::config;
use trainer::train::run::{self, Reporting, RunOptions};

#[test]
fn grpo_on_steering_vectors_raises_the_reward_on_the_demo_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = committed_model_dir();
    let yaml = format!(
        "model_path: {}\ndataset_path: {}\noutput_dir: {}\ntraining_setup: steering\nlearning_rate: 0.05\n\
         prompts_per_step: 16\nnum_generations: 8\nbatch_size: 128\nmax_seq_length: 100\nwarmup_ratio: 0.0\nmax_steps: 30\n",
        model.display(),
        model.join("data/train.jsonl").display(),
        dir.path().display()
    );
    let config = config::parse(&yaml, Path::new("demo.yml"), &[]).expect("config");
    let options = RunOptions { backend: Backend::Flex, devices: Default::default(), reporting: Reporting::Silent, max_steps_now: None };
    let outcome = run::train(Some(config), None, &options).expect("training");
    let bytes = std::fs::read(outcome.run_dir.join("metrics.jsonl")).expect("metrics");
    let lines = shared::metrics::read_metrics(&bytes, "metrics.jsonl").lines;
    assert_eq!(lines.len(), 30);
    let mean = |l: &[shared::metrics::MetricsLine]| l.iter().map(|m| m.reward_mean).sum::<f64>() / l.len() as f64;
    let (first, last) = (mean(&lines[..10]), mean(&lines[20..]));
    // Measured: about −0.55 over the first ten steps and −0.1 over the last ten.
    assert!(last > first + 0.2, "reward did not rise: first ten steps {first:.3}, last ten {last:.3}");
    assert!(lines.last().is_some_and(|l| l.vector_norms.iter().all(|n| *n > 0.0)));
}

/// Every JSON / JSON-lines file below `root`, as (relative path, bytes): what the viewer reads.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json" || e == "jsonl") {
                let rel = path.strip_prefix(root).expect("below root").to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_demo_pipeline_writes_viewer_results_and_reuses_finished_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = DemoOptions {
        out: dir.path().to_owned(),
        model: committed_model_dir(),
        steps: 2,
        seeds: vec![0, 1],
        eval_problems: 12,
        eval_samples: 2,
        backend: Backend::Flex,
    };
    let rows = run_demo(&options, &|_| {}).expect("demo");
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["base model", "steering", "LoRA r=4", "full fine-tune"]);
    assert_eq!(rows[1].accuracy.len(), 2, "two steering seeds");
    assert_eq!(rows[1].trainable_parameters, 2 * 64, "one vector per layer of the 2-layer, 64-wide model");
    assert!(rows.iter().all(|r| r.accuracy.iter().all(|a| (0.0..=1.0).contains(a))));
    let index = shared::results::ResultsIndex::from_files(files(dir.path()).iter().map(|(p, b)| (p.clone(), b.as_slice())));
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    assert_eq!(index.summaries.len(), 5, "base, 2 steering, LoRA and full summaries");
    assert_eq!(index.training_runs.len(), 4, "2 steering, LoRA and full training runs");
    assert!(dir.path().join("demo_summary.json").is_file());
    // A second invocation reuses the finished runs and complete evaluations.
    let started = std::time::Instant::now();
    let again = run_demo(&options, &|_| {}).expect("demo again");
    assert_eq!(again[1].accuracy, rows[1].accuracy);
    assert!(started.elapsed().as_secs_f64() < 60.0);
}
