//! `trainer demo`: the main command on a fresh machine.

use std::path::PathBuf;

use clap::Args;

use trainer::demo::story::{self, DemoOptions};
use trainer::device::Backend;

/// Arguments of `trainer demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder (training runs in `runs/`, evaluations in `results/`; open it in the viewer).
    /// A finished run found there is reused, an interrupted one resumed.
    #[arg(long, default_value = "demo-output")]
    pub out: PathBuf,
    /// The demo model directory (default: the one committed in the repository).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Optimizer steps of each training run.
    #[arg(long, default_value_t = 40)]
    pub steps: u64,
    /// Seeds of the steering runs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Held-out problems evaluated.
    #[arg(long, default_value_t = 200)]
    pub eval_problems: usize,
    /// Samples per held-out problem (temperature 1).
    #[arg(long, default_value_t = 4)]
    pub eval_samples: usize,
    /// Compute backend: flex (CPU), wgpu, or vulkan.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
}

/// Runs `trainer demo` and prints the table.
pub fn run(args: &DemoArgs, quiet: bool) -> anyhow::Result<()> {
    if args.seeds.is_empty() {
        anyhow::bail!("--seeds: give at least one seed");
    }
    let options = DemoOptions {
        out: args.out.clone(),
        model: args.model.clone().unwrap_or_else(trainer::demo::committed_model_dir),
        steps: args.steps,
        seeds: args.seeds.clone(),
        eval_problems: args.eval_problems,
        eval_samples: args.eval_samples,
        backend: args.backend,
    };
    let bar = super::progress_bar(0, "demo", quiet);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let stage = |what: &str| {
        bar.set_message(what.to_owned());
        if bar.is_hidden() && !quiet {
            eprintln!("{what}");
        }
    };
    let rows = story::run_demo(&options, &stage)?;
    bar.finish_and_clear();
    println!("{}", story::table(&rows, options.eval_problems, options.eval_samples));
    println!("results: {} (open with: cargo run -p steerlab-viewer -- {})", options.out.display(), options.out.display());
    Ok(())
}
