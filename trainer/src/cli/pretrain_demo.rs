//! `trainer pretrain-demo`: writes the demo task and tokenizer, pretrains the small demo model
//! from scratch, saves it as a Hugging Face directory and measures its sampled accuracy.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use trainer::demo::pretrain::{self, DemoShape, PretrainConfig, Pretraining};
use trainer::demo::task::{self, StyleMix};
use trainer::device::Backend;
use trainer::steering::Steering;

/// Arguments of `trainer pretrain-demo`.
#[derive(Debug, Args)]
pub struct PretrainDemoArgs {
    /// Output model directory (created; files of an earlier run are replaced).
    #[arg(long, default_value = "trainer/demo-model")]
    pub out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = PretrainConfig::default().steps)]
    pub steps: u64,
    /// Seed of the task rows, the initial weights and the batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sequences per step.
    #[arg(long, default_value_t = PretrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = PretrainConfig::default().learning_rate)]
    pub lr: f64,
    /// Width of the residual stream.
    #[arg(long, default_value_t = DemoShape::default().hidden_size)]
    pub hidden_size: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = DemoShape::default().num_layers)]
    pub layers: usize,
    /// Width of the MLP.
    #[arg(long, default_value_t = DemoShape::default().intermediate_size)]
    pub intermediate_size: usize,
    /// Proportions of the careful, unboxed and hasty solution styles in the corpus.
    #[arg(long, value_name = "CAREFUL,UNBOXED,HASTY", default_value_t = StyleMix::default())]
    pub styles: StyleMix,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Test problems on which the sampled accuracy is measured at the end (0: skip).
    #[arg(long, default_value_t = PretrainConfig::default().test_rows)]
    pub eval_problems: usize,
    /// Samples per test problem (temperature 1) for pass@1 and pass@k.
    #[arg(long, default_value_t = 16)]
    pub eval_samples: usize,
}

/// Runs `trainer pretrain-demo`.
pub fn run(args: &PretrainDemoArgs, quiet: bool) -> anyhow::Result<()> {
    let config = PretrainConfig {
        seed: args.seed,
        steps: args.steps,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        shape: DemoShape {
            hidden_size: args.hidden_size,
            num_layers: args.layers,
            intermediate_size: args.intermediate_size,
            ..DemoShape::default()
        },
        styles: args.styles,
        ..PretrainConfig::default()
    };
    config.validate()?;
    let device = args.backend.device()?;
    let out = &args.out;
    let tokenizer = pretrain::write_task_and_tokenizer(&config, out)
        .with_context(|| format!("writing the task and tokenizer into {}", out.display()))?;
    tracing::info!(vocab = tokenizer.vocab_size(), dir = %out.display(), "task and tokenizer written");
    let mut run = Pretraining::new(&config, tokenizer, &device)?;
    let start = Instant::now();
    let bar = super::progress_bar(config.steps, "pretraining", quiet);
    let mut last = None;
    for _ in 0..config.steps {
        let report = run.step()?;
        bar.inc(1);
        bar.set_message(format!("pretraining (loss {:.3})", report.loss));
        if report.step % 50 == 0 || report.step == config.steps {
            tracing::info!(step = report.step, loss = report.loss, grad_norm = report.grad_norm, lr = report.lr, "pretraining");
        }
        last = Some(report);
    }
    bar.finish_and_clear();
    let train_secs = start.elapsed().as_secs_f64();
    run.save(out)?;
    let accuracy = if args.eval_problems > 0 && args.eval_samples > 0 {
        let rows = task::read_jsonl(&out.join("data/test.jsonl"))?;
        let rows = &rows[..args.eval_problems.min(rows.len())];
        let lm = trainer::model::load(out, &device, burn::tensor::DType::F32)?;
        let acc = pretrain::sampled_accuracy(&lm, &Steering::None, run.tokenizer(), rows, args.eval_samples, 1.0, config.seed)?;
        eprintln!(
            "base model on {} test problems, {} samples at T = 1: pass@1 {:.1} %, pass@{} {:.1} % ({:.1} % without a boxed answer, {:.1} % with a chain of thought, {:.1} % correct when careful)",
            acc.problems,
            acc.samples,
            100.0 * acc.pass_at_1,
            acc.samples,
            100.0 * acc.pass_at_k,
            100.0 * acc.no_answer,
            100.0 * acc.with_chain,
            100.0 * acc.careful_accuracy
        );
        Some(acc)
    } else {
        None
    };
    let manifest = json!({
        "command": std::iter::once("trainer".to_owned()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" "),
        "trainer_version": env!("CARGO_PKG_VERSION"),
        "config": config,
        "parameters": run.weights().numel(),
        "final_step": last,
        "train_seconds": train_secs,
        "base_accuracy": accuracy,
    });
    trainer::fsutil::write_json(&out.join("pretrain.json"), &manifest)?;
    eprintln!("wrote {} ({} steps in {train_secs:.0} s)", out.display(), config.steps);
    Ok(())
}
