//! `trainer bench`: performance measurements on random weights at real model shapes.

use clap::{Args, Subcommand};

use trainer::bench::{self, GenerateBench, Shape};
use trainer::device::{Backend, Precision};

/// Arguments of `trainer bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub which: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Batched sampled generation: tokens/s, prefill time, ms per decode step.
    Generate {
        /// Model shape (random weights).
        #[arg(long, value_enum, default_value_t = Shape::QwenMath1_5b)]
        shape: Shape,
        /// Prompts decoded together.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Tokens per prompt.
        #[arg(long, default_value_t = 256)]
        prompt_len: usize,
        /// New tokens per prompt.
        #[arg(long, default_value_t = 256)]
        new_tokens: usize,
        /// Sampling temperature (0 = greedy).
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// Seed of weights and sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Compute backend.
        #[arg(long, value_enum, default_value_t = Backend::Vulkan)]
        backend: Backend,
        /// Compute precision.
        #[arg(long, value_enum, default_value_t = Precision::F16)]
        dtype: Precision,
    },
}

/// Runs `trainer bench`; prints one JSON line with the report.
pub fn run(args: &BenchArgs, quiet: bool) -> anyhow::Result<()> {
    match &args.which {
        BenchCommand::Generate { shape, batch, prompt_len, new_tokens, temperature, seed, backend, dtype } => {
            let device = backend.device_for(*dtype)?;
            let settings = GenerateBench {
                shape: *shape,
                batch: *batch,
                prompt_len: *prompt_len,
                new_tokens: *new_tokens,
                temperature: *temperature,
                seed: *seed,
            };
            let bar = super::progress_bar((batch * new_tokens) as u64, "generating", quiet);
            let report = bench::generate(&settings, &device, dtype.dtype(), &bar)?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
