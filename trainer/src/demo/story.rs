//! `trainer demo`: the whole story on the committed demo model — evaluate the base model, train
//! steering vectors with GRPO (several seeds), train the LoRA and full fine-tuning baselines with
//! the same code, evaluate every result on the held-out split, and compare.
//!
//! Everything is written under one folder the viewer opens: `runs/` (training runs, with
//! `metrics.jsonl` and checkpoints) and `results/` (evaluation records and summaries).

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::ProgressBar;
use serde::Serialize;
use shared::eval::EvalContext;

use crate::data::{self, ColumnMapping};
use crate::device::Backend;
use crate::error::{Error, Result};
use crate::eval::{self, BenchmarkJob, EvalModel, EvalSettings, Shard};
use crate::model::prompt::PromptStyle;
use crate::model::{self, CausalLm, ModelTokenizer};
use crate::steering::Steering;
use crate::train::{checkpoint, config, run};

/// The benchmark id of the demo's held-out split in result files.
pub const BENCHMARK: &str = "demo_test";

/// What `trainer demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Output folder.
    pub out: PathBuf,
    /// The demo model directory (with `data/train.jsonl` and `data/test.jsonl`).
    pub model: PathBuf,
    /// Optimizer steps of every training run.
    pub steps: u64,
    /// Seeds of the steering runs.
    pub seeds: Vec<u64>,
    /// Held-out problems evaluated.
    pub eval_problems: usize,
    /// Samples per held-out problem (temperature 1).
    pub eval_samples: usize,
    /// Compute backend.
    pub backend: Backend,
}

/// One training setup of the demo.
#[derive(Debug, Clone, Copy)]
struct DemoSetup {
    label: &'static str,
    yaml: &'static str,
    learning_rate: f64,
}

/// The setups compared, with learning rates tuned for the demo model.
const SETUPS: [DemoSetup; 3] = [
    DemoSetup { label: "steering", yaml: "training_setup: steering\n", learning_rate: 0.05 },
    DemoSetup { label: "LoRA r=4", yaml: "training_setup: lora\nlora_rank: 4\n", learning_rate: 0.01 },
    DemoSetup { label: "full fine-tune", yaml: "training_setup: full_model\n", learning_rate: 0.0003 },
];

/// One row of the final table.
#[derive(Debug, Clone, Serialize)]
pub struct DemoRow {
    /// What was evaluated.
    pub label: String,
    /// Accuracy (avg@n at T = 1) of each seed.
    pub accuracy: Vec<f64>,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Bytes of AdamW state.
    pub optimizer_bytes: usize,
    /// Seconds of training (summed over seeds).
    pub train_seconds: f64,
}

impl DemoRow {
    /// Mean and (population) std of the accuracy over seeds.
    pub fn mean_std(&self) -> (f64, f64) {
        let n = self.accuracy.len().max(1) as f64;
        let mean = self.accuracy.iter().sum::<f64>() / n;
        let var = self.accuracy.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }
}

fn train_config(options: &DemoOptions, setup: &DemoSetup, seed: u64) -> Result<config::TrainConfig> {
    let yaml = format!(
        "model_path: {model}\ndataset_path: {data}\ndataset_name: demo\noutput_dir: {out}\nlearning_rate: {lr}\nseed: {seed}\n\
         prompts_per_step: 16\nnum_generations: 8\nbatch_size: 128\nmax_seq_length: 100\nwarmup_ratio: 0.0\n\
         max_steps: {steps}\nsave_steps: {steps}\nsave_total_limit: 1\n{setup}",
        model = options.model.display(),
        data = options.model.join("data/train.jsonl").display(),
        out = options.out.join("runs").display(),
        lr = setup.learning_rate,
        steps = options.steps,
        setup = setup.yaml,
    );
    config::parse(&yaml, Path::new("(trainer demo)"), &[])
}

/// Evaluates `lm` + `steering` on the held-out split; returns avg@n.
fn evaluate(
    lm: &CausalLm,
    steering: &Steering,
    tokenizer: &ModelTokenizer,
    problems: &[data::Problem],
    context: EvalContext,
    options: &DemoOptions,
) -> Result<f64> {
    let settings = EvalSettings {
        context,
        seed: 0,
        temperature: 1.0,
        top_p: 1.0,
        top_k: None,
        max_seq_length: 100,
        max_new_tokens: None,
        prompt_style: PromptStyle::default(),
        batch_rows: 512,
        save_text: true,
        shard: Shard::WHOLE,
        stop_token: None,
    };
    let model = EvalModel { lm, tokenizer, steering, interventions: &[] };
    let job = BenchmarkJob { id: BENCHMARK, problems, samples: options.eval_samples };
    let dir = settings.output_dir(&options.out.join("results"));
    let outcome = eval::evaluate_benchmark(&model, &job, &settings, &dir, &ProgressBar::hidden())
        .map_err(|e| Error::InvalidArgument(format!("evaluating {}: {e}", dir.display())))?;
    Ok(outcome.summary.avg_at_n)
}

/// Runs the demo; `stage` is told what happens next (for a progress display).
pub fn run_demo(options: &DemoOptions, stage: &dyn Fn(&str)) -> Result<Vec<DemoRow>> {
    let device = options.backend.device()?;
    let tokenizer = ModelTokenizer::from_dir(&options.model)?;
    let base = model::load(&options.model, &device, burn::tensor::DType::F32)?;
    let test_path = options.model.join("data/test.jsonl");
    let mut problems = data::load(&[test_path], "test", &ColumnMapping::default())?;
    problems.truncate(options.eval_problems);
    let model_name = options.model.file_name().map_or_else(|| "demo-model".into(), |n| n.to_string_lossy().into_owned());
    stage("evaluating the base model");
    let base_context = EvalContext { model: model_name.clone(), dataset: "base".into(), setup: "base".into(), run: String::new(), checkpoint: None };
    let base_accuracy = evaluate(&base, &Steering::None, &tokenizer, &problems, base_context, options)?;
    let mut rows = vec![DemoRow {
        label: "base model".into(),
        accuracy: vec![base_accuracy],
        trainable_parameters: 0,
        optimizer_bytes: 0,
        train_seconds: 0.0,
    }];
    for setup in &SETUPS {
        let seeds: &[u64] = if setup.label == "steering" { &options.seeds } else { &options.seeds[..1] };
        let mut row = DemoRow { label: setup.label.into(), accuracy: Vec::new(), trainable_parameters: 0, optimizer_bytes: 0, train_seconds: 0.0 };
        for &seed in seeds {
            let config = train_config(options, setup, seed)?;
            stage(&format!("training {} (seed {seed}, {} steps)", setup.label, options.steps));
            let started = Instant::now();
            let run_options = run::RunOptions {
                backend: options.backend,
                devices: crate::parallel::DeviceSelection::default(),
                reporting: run::Reporting::Silent,
                max_steps_now: None,
            };
            let outcome = match run::train(None, Some(&config.run_dir()), &run_options) {
                // A finished run of an earlier `trainer demo` is reused; otherwise start it.
                Ok(done) if done.steps_done == done.total_steps && done.last_checkpoint.is_some() => done,
                Ok(stopped) if stopped.interrupted => stopped,
                _ => run::train(Some(config.clone()), None, &run_options)?,
            };
            if outcome.interrupted {
                return Err(Error::Run {
                    path: outcome.run_dir,
                    message: format!(
                        "interrupted at step {} of {} (checkpoint written); run `trainer demo` again to resume",
                        outcome.steps_done, outcome.total_steps
                    ),
                });
            }
            row.train_seconds += started.elapsed().as_secs_f64();
            row.trainable_parameters = outcome.trainable_parameters;
            row.optimizer_bytes = outcome.optimizer_bytes;
            let ckpt = outcome.last_checkpoint.ok_or_else(|| Error::Run { path: outcome.run_dir.clone(), message: "no checkpoint".into() })?;
            stage(&format!("evaluating {} (seed {seed})", setup.label));
            let (lm, steering) = checkpoint::load_for_inference(&ckpt, base.clone())?;
            let context = EvalContext {
                model: model_name.clone(),
                dataset: "demo".into(),
                setup: config.job_type(),
                run: config.run_name(),
                checkpoint: Some(outcome.steps_done),
            };
            row.accuracy.push(evaluate(&lm, &steering, &tokenizer, &problems, context, options)?);
        }
        rows.push(row);
    }
    crate::fsutil::write_json(&options.out.join("demo_summary.json"), &rows)?;
    Ok(rows)
}

/// The final table as text.
pub fn table(rows: &[DemoRow], eval_problems: usize, eval_samples: usize) -> String {
    let mut out = format!(
        "held-out accuracy (avg@{eval_samples} at T = 1 over {eval_problems} problems; mean ± std over seeds)\n\
         {:<16} {:>16} {:>12} {:>12} {:>10}\n",
        "", "accuracy", "trainable", "optim bytes", "seconds"
    );
    for row in rows {
        let (mean, std) = row.mean_std();
        let acc = if row.accuracy.len() > 1 {
            format!("{:.1} ± {:.1} % ({})", 100.0 * mean, 100.0 * std, row.accuracy.len())
        } else {
            format!("{:.1} %", 100.0 * mean)
        };
        out.push_str(&format!(
            "{:<16} {:>16} {:>12} {:>12} {:>10.1}\n",
            row.label, acc, row.trainable_parameters, row.optimizer_bytes, row.train_seconds
        ));
    }
    out
}
