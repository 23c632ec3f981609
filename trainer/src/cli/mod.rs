//! Command-line interface: argument definitions and dispatch to the subcommands.

mod bench;
mod demo;
mod eval;
mod generate;
mod inspect;
mod train;
mod pretrain_demo;
mod verify;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// steerlab trainer: load Hugging Face Qwen2 / Llama 3 / OLMo2 checkpoints, steer them with one
/// vector per layer, and generate.
#[derive(Debug, Parser)]
#[command(name = "trainer", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bars and no log output below errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model directory's architecture, sizes, dtypes, parameter and steering counts.
    Inspect(inspect::InspectArgs),
    /// Generate completions for prompts, optionally with steering vectors.
    Generate(generate::GenerateArgs),
    /// Decide whether answers are mathematically equivalent (math-verify semantics).
    Verify(verify::VerifyArgs),
    /// The whole story on the committed demo model: base, steering (3 seeds), LoRA and full
    /// fine-tuning trained with GRPO, evaluated on held-out problems, compared in a table.
    Demo(demo::DemoArgs),
    /// Train steering vectors (or LoRA / full fine-tuning) with GRPO from a YAML config.
    Train(train::TrainArgs),
    /// Measure performance on random weights at real model shapes.
    Bench(bench::BenchArgs),
    /// Evaluate a model (base, steered, or a training checkpoint) on math benchmarks.
    Eval(eval::EvalArgs),
    /// Join the outputs of `trainer eval --shard i/N` runs.
    EvalMerge(eval::MergeArgs),
    /// Pretrain the small demo model from scratch on the synthetic arithmetic task.
    PretrainDemo(pretrain_demo::PretrainDemoArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Generate(args) => generate::run(&args, cli.quiet),
        Command::Verify(args) => verify::run(&args),
        Command::Demo(args) => demo::run(&args, cli.quiet),
        Command::Train(args) => train::run(&args, cli.quiet),
        Command::Bench(args) => bench::run(&args, cli.quiet),
        Command::Eval(args) => eval::run(&args, cli.quiet),
        Command::EvalMerge(args) => eval::run_merge(&args),
        Command::PretrainDemo(args) => pretrain_demo::run(&args, cli.quiet),
    }
}

/// Where a command runs in parallel: `--devices` of this process and, with `--mpi`, the other
/// processes of an MPI job.
#[derive(Debug, Clone, clap::Args)]
pub struct ParallelArgs {
    /// Devices of this process, one worker each: indices (`0,1,2,3`) or `all` (every GPU of the
    /// backend). Training splits each step's prompts over them and sums the gradients;
    /// evaluation runs one shard per device and merges. On the CPU backend the indices only
    /// count workers, which share the cores. Default: one worker on the backend's default device.
    #[arg(long, value_name = "0,1,...|all|default", default_value_t)]
    pub devices: trainer::parallel::DeviceSelection,
    /// Join the MPI job this process was launched in (`mpirun -np N trainer ... --mpi`, or
    /// Slurm's `srun`): every rank takes its share of the work; rank 0 writes the results.
    /// Needs a binary built with `--features mpi`.
    #[arg(long)]
    pub mpi: bool,
}

impl ParallelArgs {
    /// The processes of the job: this one alone, or the MPI world.
    pub fn collective(&self) -> anyhow::Result<Box<dyn trainer::parallel::Collective>> {
        if !self.mpi {
            return Ok(Box::new(trainer::parallel::SingleProcess));
        }
        #[cfg(feature = "mpi")]
        {
            Ok(Box::new(trainer::parallel::mpi::MpiWorld::init()?))
        }
        #[cfg(not(feature = "mpi"))]
        {
            anyhow::bail!("--mpi: this binary was built without MPI; rebuild with `cargo build --release -p steerlab-trainer --features mpi`")
        }
    }
}

/// Sets up `tracing` output on stderr.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// A progress bar on stderr, hidden when `quiet` or when stderr is not a terminal.
pub fn progress_bar(total: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}
