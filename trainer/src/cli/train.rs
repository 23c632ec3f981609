//! `trainer train`: GRPO training of steering vectors (or LoRA / full fine-tuning baselines).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use trainer::device::Backend;
use trainer::train::config;
use trainer::train::run::{self, Reporting, RunOptions};

/// Arguments of `trainer train`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["config", "resume"])))]
pub struct TrainArgs {
    /// YAML config (configs/train/rl/<model>/<dataset>/<setup>.yml); see docs/training.md.
    #[arg(long, value_name = "FILE.yml")]
    pub config: Option<PathBuf>,
    /// Override a config key (repeatable): `--set learning_rate=5e-4 --set seed=2`.
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "config")]
    pub overrides: Vec<String>,
    /// Continue the run in this directory from its newest checkpoint (exactly: same data order
    /// and sampling streams).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Compute backend: flex (CPU), wgpu, or vulkan.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Stop after this many steps of this invocation (a checkpoint is written; resume later).
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Print one JSON metrics line per step on stdout (the default when stderr, where the
    /// progress bar goes, is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Devices and processes.
    #[command(flatten)]
    pub parallel: super::ParallelArgs,
}

/// Runs `trainer train`.
pub fn run(args: &TrainArgs, quiet: bool) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Some(config::load(path, &args.overrides)?),
        None => None,
    };
    let reporting = if quiet {
        Reporting::Silent
    } else if args.json || !std::io::stderr().is_terminal() {
        Reporting::JsonLines
    } else {
        Reporting::Bar
    };
    let collective = args.parallel.collective()?;
    let options = RunOptions { backend: args.backend, devices: args.parallel.devices.clone(), reporting, max_steps_now: args.steps };
    let outcome = run::train_in(config, args.resume.as_deref(), &options, collective.as_ref()).context("training failed")?;
    if collective.rank() != 0 {
        return Ok(());
    }
    let status = if outcome.interrupted { "interrupted" } else { "done" };
    eprintln!(
        "{status}: {}/{} steps in {:.1} s; run {}{}",
        outcome.steps_done,
        outcome.total_steps,
        outcome.seconds,
        outcome.run_dir.display(),
        outcome.last_checkpoint.map(|p| format!("; checkpoint {}", p.display())).unwrap_or_default()
    );
    Ok(())
}
