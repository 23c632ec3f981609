//! `trainer bench`: performance measurements on random weights at real model shapes.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use trainer::bench::{self, BenchSetup, GenerateBench, KernelBench, RlStepBench, ShapeSpec, TrainStepBench};
use trainer::device::{Backend, Precision};
use trainer::model::ModelTokenizer;
use trainer::parallel::DeviceSelection;

/// Arguments of `trainer bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub which: BenchCommand,
}

/// Where a benchmark runs.
#[derive(Debug, Args)]
pub struct BenchDevice {
    /// Model shape (random weights): qwen2.5-math-1.5b, qwen2.5-math-7b, llama3.1-8b, or the path
    /// of a Hugging Face config.json.
    #[arg(long, default_value = "qwen2.5-math-1.5b")]
    pub shape: ShapeSpec,
    /// Seed of weights, tokens and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Vulkan)]
    pub backend: Backend,
    /// Compute precision.
    #[arg(long, value_enum, default_value_t = Precision::F16)]
    pub dtype: Precision,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Batched sampled generation: tokens/s, prefill time, ms per decode step, bytes per step;
    /// with --profile also the parts of a decode step, the copy bandwidth and the roofline fraction.
    Generate {
        /// Shape, seed, backend, dtype.
        #[command(flatten)]
        on: BenchDevice,
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
        /// Time the parts of a decode step (layers, logits, sampling, one MLP-shaped product)
        /// and the device copy bandwidth.
        #[arg(long)]
        profile: bool,
        /// Give each prompt its own budget between new-tokens/8 and new-tokens, like completions
        /// that stop at different lengths (the batch halves as rows finish).
        #[arg(long)]
        varied_lengths: bool,
        /// Run attention as one fused kernel (`CausalLm::fused_attention`) instead of
        /// materialising its scores.
        #[arg(long)]
        fused_attention: bool,
        /// Run the decode step's products as burn's `matmul` (with the bias, residual and gating
        /// as burn's operations) instead of the trainer's kernel (`CausalLm::decode_kernel`, on
        /// by default on GPU backends).
        #[arg(long)]
        burn_products: bool,
        /// Run the RMSNorms as burn's operations instead of the trainer's kernel
        /// (`CausalLm::fused_norm`, on by default on GPU backends).
        #[arg(long)]
        composed_norm: bool,
        /// Run the rotary embedding and the KV-cache writes as burn's operations instead of the
        /// trainer's kernel (`CausalLm::rotary_kernel`, on by default on GPU backends).
        #[arg(long)]
        composed_rotary: bool,
        /// Run a decode step's attention as burn's operations instead of the trainer's kernel
        /// (`CausalLm::decode_attention`, on by default on GPU backends).
        #[arg(long)]
        composed_attention: bool,
        /// Issue every decode step launch by launch through burn instead of replaying a step
        /// recorded once per batch shape (`CausalLm::decode_graph`, on by default on GPU backends).
        #[arg(long)]
        unrecorded_steps: bool,
        /// Add a random steering vector after every layer's MLP, as the rollouts of a steering
        /// run do (the default generates with the base model).
        #[arg(long)]
        steered: bool,
        /// Sample each step's rows with burn's operations (about twenty launches) instead of the
        /// trainer's sampling kernel, one launch per step (`CausalLm::sampling_kernel`, on by
        /// default on GPU backends).
        #[arg(long)]
        composed_sampling: bool,
    },
    /// One RL training micro-step (forward, backward to the trainable parameters, clip, AdamW):
    /// seconds, tokens/s, device memory, and the host time of each phase.
    TrainStep {
        /// Shape, seed, backend, dtype.
        #[command(flatten)]
        on: BenchDevice,
        /// What is trained.
        #[arg(long, value_enum, default_value_t = BenchSetup::Steering)]
        setup: BenchSetup,
        /// Sequences per micro-step.
        #[arg(long, default_value_t = 4)]
        micro_batch: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 1024)]
        seq_len: usize,
        /// Timed micro-steps (after two untimed).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Keep every layer's activations for the backward pass instead of recomputing one
        /// layer at a time (the trainer's `recompute_layers: false`).
        #[arg(long)]
        whole_graph: bool,
        /// Run the forward pass's attention as one fused kernel (passes with autodiff always
        /// materialise the scores).
        #[arg(long)]
        fused_attention: bool,
    },
    /// The matrix products of the shape's linear maps at a decode step's and a training
    /// micro-step's row counts, in several layouts and formulations (ms, TFLOP/s, weight GB/s),
    /// the trainer's kernels (decode product, RMSNorm, rotary embedding, decode attention)
    /// against burn's operations on random inputs (fails when one differs by more than the
    /// dtype's tolerance), the sampler with the sampling kernel against a float64
    /// recomputation (fails on a misplaced id), the decode-attention kernel alone over 64, 256
    /// and 512 keys (µs, GB/s of keys and values read), and the fused attention and the
    /// decode-attention kernel against the materialised attention in a prefill and a decode step
    /// (ms, and the relative difference of the hidden states).
    Kernels {
        /// Shape, seed, backend, dtype.
        #[command(flatten)]
        on: BenchDevice,
        /// Rows of a decode step.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Tokens per prompt of the attention comparison (≥ 8).
        #[arg(long, default_value_t = 256)]
        prompt_len: usize,
        /// Sequences of a training micro-step.
        #[arg(long, default_value_t = 4)]
        micro_batch: usize,
        /// Tokens per training sequence.
        #[arg(long, default_value_t = 1024)]
        seq_len: usize,
        /// Timed runs of each kernel (after one untimed).
        #[arg(long, default_value_t = 16)]
        iterations: usize,
        /// Only the checks and the attention comparison: no product is timed (the timings'
        /// products at the micro-step's rows tune burn's kernels, minutes on a fresh machine).
        #[arg(long)]
        checks_only: bool,
    },
    /// The device's tensor-core rate: `16 × 16 × 16` subgroup-scope tile products (what the
    /// decode-product kernel runs) and workgroup-scope products (`VK_NV_cooperative_matrix2`) of
    /// each `--cube-shapes` shape, accumulated in f32 with no memory traffic in the timed loop and
    /// checked against burn's product. One JSON line per measurement.
    TensorCores {
        /// Compute backend.
        #[arg(long, value_enum, default_value_t = Backend::Vulkan)]
        backend: Backend,
        /// Compute precision.
        #[arg(long, value_enum, default_value_t = Precision::F16)]
        dtype: Precision,
        /// Workgroup-scope product shapes `MxNxK` (M · N at most 12,288: one f32 copy of the
        /// accumulator is staged in shared memory).
        #[arg(long, value_delimiter = ',', default_value = "64x64x16,64x128x32,64x64x64,64x128x64,32x128x64,64x192x32")]
        cube_shapes: Vec<bench::tensor_cores::ProductShape>,
        /// Cubes (workgroups) per workgroup-scope measurement.
        #[arg(long, default_value_t = 528)]
        cubes: usize,
        /// Rounds of products per cube of a workgroup-scope measurement.
        #[arg(long, default_value_t = 512)]
        repeats: usize,
        /// Measurements of each kind and shape (the rate varies between runs).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Decode-shaped products `MxNxK` (`x [M, K] · w [N, K]ᵀ`) to stream through
        /// workgroup-scope matrices, the weight read from memory (default: the 1.5B shape's q/k/v,
        /// o_proj, gate/up and down_proj at 64 rows).
        #[arg(long, value_delimiter = ',', default_value = "64x2048x1536,64x1536x1536,64x17920x1536,64x1536x8960")]
        streamed: Vec<bench::tensor_cores::ProductShape>,
        /// Each cube's block of a streamed product, `MxBNxBK` (`M` the product's rows).
        #[arg(long, default_value = "64x128x32")]
        stream_block: bench::tensor_cores::ProductShape,
    },
    /// Whole GRPO steering steps (generation, rewards, forward-backward, AdamW) on 1, 2, …
    /// devices: the data-parallel scaling. Prints each step's metrics as it ends, then a summary
    /// per worker count.
    RlStep {
        /// Shape, seed, backend, dtype.
        #[command(flatten)]
        on: BenchDevice,
        /// The devices (the first n are used for n workers; default: the backend's default device).
        #[arg(long, default_value_t)]
        devices: DeviceSelection,
        /// Worker counts to measure, in order (default: 1 and every count of --devices).
        #[arg(long, value_delimiter = ',')]
        workers: Vec<usize>,
        /// Prompts per step.
        #[arg(long, default_value_t = 8)]
        prompts: usize,
        /// Completions per prompt.
        #[arg(long, default_value_t = 8)]
        generations: usize,
        /// Tokens per prompt.
        #[arg(long, default_value_t = 128)]
        prompt_len: usize,
        /// New tokens per completion.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Sequences per backward micro-batch.
        #[arg(long, default_value_t = 4)]
        micro_batch: usize,
        /// Steps per worker count (the first includes kernel compilation).
        #[arg(long, default_value_t = 2)]
        steps: usize,
        /// A tokenizer folder (decodes completions for the verifier).
        #[arg(long, default_value = "trainer/demo-model")]
        tokenizer: PathBuf,
    },
}

/// Runs `trainer bench`; prints one JSON line per report.
pub fn run(args: &BenchArgs, quiet: bool) -> anyhow::Result<()> {
    match &args.which {
        BenchCommand::Generate { on, batch, prompt_len, new_tokens, temperature, profile, varied_lengths, fused_attention, burn_products, composed_norm, composed_rotary, composed_attention, unrecorded_steps, steered, composed_sampling } => {
            let device = on.backend.device_for(on.dtype)?;
            let settings = GenerateBench {
                shape: on.shape.clone(),
                batch: *batch,
                prompt_len: *prompt_len,
                new_tokens: *new_tokens,
                temperature: *temperature,
                seed: on.seed,
                profile: *profile,
                varied_lengths: *varied_lengths,
                fused_attention: *fused_attention,
                burn_products: *burn_products,
                composed_norm: *composed_norm,
                composed_rotary: *composed_rotary,
                composed_attention: *composed_attention,
                unrecorded_steps: *unrecorded_steps,
                steered: *steered,
                composed_sampling: *composed_sampling,
            };
            let bar = super::progress_bar((batch * new_tokens) as u64, "generating", quiet);
            let report = bench::generate(&settings, &device, on.dtype.dtype(), &bar)?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
        }
        BenchCommand::TensorCores { backend, dtype, cube_shapes, cubes, repeats, rounds, streamed, stream_block } => {
            let device = backend.device_for(*dtype)?;
            let tile = bench::tensor_cores::ProductShape { m: 16, n: 16, k: 16 };
            let print = |scope: &str, shape, rate: bench::tensor_cores::TileProductRate| -> anyhow::Result<()> {
                println!("{}", serde_json::to_string(&bench::tensor_cores::RateReport { scope, shape, tflops: rate.tflops, max_rel_diff: rate.max_rel_diff })?);
                Ok(())
            };
            for _ in 0..*rounds {
                if let Some(rate) = bench::tensor_cores::tensor_core_rate(&device, dtype.dtype(), bench::TENSOR_CORE_PLANES, bench::TENSOR_CORE_REPEATS)? {
                    print("subgroup", tile, rate)?;
                }
            }
            for &shape in cube_shapes {
                for _ in 0..*rounds {
                    if let Some(rate) = bench::tensor_cores::cube_tensor_core_rate(&device, dtype.dtype(), shape, *cubes, *repeats)? {
                        print("workgroup", shape, rate)?;
                    }
                }
            }
            for &shape in streamed {
                for _ in 0..*rounds {
                    if let Some(rate) = bench::streamed_product::streamed_product_rate(&device, dtype.dtype(), shape, *stream_block, bench::streamed_product::SMS, 16)? {
                        println!("{}", serde_json::to_string(&rate)?);
                    }
                }
            }
        }
        BenchCommand::TrainStep { on, setup, micro_batch, seq_len, repeats, whole_graph, fused_attention } => {
            let device = on.backend.device_for(on.dtype)?;
            let settings = TrainStepBench {
                shape: on.shape.clone(),
                setup: *setup,
                micro_batch: *micro_batch,
                seq_len: *seq_len,
                repeats: *repeats,
                seed: on.seed,
                recompute_layers: !*whole_graph,
                fused_attention: *fused_attention,
            };
            println!("{}", serde_json::to_string(&bench::train_step(&settings, &device, on.dtype.dtype())?)?);
        }
        BenchCommand::Kernels { on, batch, prompt_len, micro_batch, seq_len, iterations, checks_only } => {
            let device = on.backend.device_for(on.dtype)?;
            let settings = KernelBench {
                shape: on.shape.clone(),
                batch: *batch,
                prompt_len: *prompt_len,
                micro_batch: *micro_batch,
                seq_len: *seq_len,
                iterations: *iterations,
                checks_only: *checks_only,
                seed: on.seed,
            };
            let report = bench::kernels(&settings, &device, on.dtype.dtype())?;
            println!("{}", serde_json::to_string(&report)?);
            // After printing, so that a failed check still shows every measurement.
            report.verify()?;
        }
        BenchCommand::RlStep { on, devices, workers, prompts, generations, prompt_len, new_tokens, micro_batch, steps, tokenizer } => {
            let devices = devices.devices(on.backend, on.dtype)?;
            let counts = if workers.is_empty() {
                let mut counts = vec![1];
                if devices.len() > 1 {
                    counts.push(devices.len());
                }
                counts
            } else {
                workers.clone()
            };
            let settings = RlStepBench {
                shape: on.shape.clone(),
                prompts: *prompts,
                generations: *generations,
                prompt_len: *prompt_len,
                new_tokens: *new_tokens,
                micro_batch: *micro_batch,
                steps: *steps,
                seed: on.seed,
            };
            let tokenizer = ModelTokenizer::from_dir(tokenizer)?;
            // One line per step as it ends, then one summary line per worker count.
            let mut print_step = |workers: usize, line: &shared::metrics::MetricsLine| {
                println!("{}", serde_json::json!({ "workers": workers, "step": line }));
            };
            for run in bench::rl_step(&settings, &devices, &counts, on.dtype.dtype(), &tokenizer, &mut print_step)? {
                println!("{}", serde_json::json!({ "settings": settings, "run": run }));
            }
        }
    }
    Ok(())
}
