//! `trainer eval` and `trainer eval-merge`: the math benchmarks with the reference protocol.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use trainer::bench::Shape;
use trainer::data;
use trainer::device::{Backend, Precision};
use trainer::eval::{self, BenchmarkJob, EvalConfig, EvalModel, EvalSettings, Shard, checkpoint_context};
use trainer::model::prompt::PromptStyle;
use trainer::model::{self, CausalLm, ModelTokenizer, RandomWeights};
use trainer::rollout::{self, GenerationRequest, SamplingParams};
use trainer::steering::Steering;

use shared::eval::EvalContext;

/// Arguments of `trainer eval`.
#[derive(Debug, Args)]
#[command(after_help = "Results go to <results>/<Model>/<dataset>/<setup>/<run>/checkpoint-<n>/temp_<T>_top_p_<P>/\
eval_seed-<k>/<bench>.jsonl and <bench>.summary.json (a base model: <results>/<Model>/base/temp_…). \
Complete results are skipped and an interrupted run resumes. See docs/evaluation.md.")]
pub struct EvalArgs {
    /// Evaluation config (`configs/eval/<model>.yml`).
    #[arg(long)]
    pub config: PathBuf,
    /// Hugging Face model directory (weights, tokenizer, generation config).
    #[arg(long)]
    pub model: PathBuf,
    /// Steering vectors: a steerlab `.safetensors` file, a reference checkpoint directory with
    /// `down_proj` biases, or an `[L, H]` `.npy` matrix.
    #[arg(long, conflicts_with = "checkpoint")]
    pub steering: Option<PathBuf>,
    /// A training checkpoint folder: written by `trainer train` (any setup: steering, rank, at-place,
    /// LoRA, full weights; `--model` is the base model it started from), or any folder holding
    /// `steering_vectors.safetensors`. In the results layout
    /// (`…/<Model>/<dataset>/<setup>/<run>/checkpoint-<n>`) its results are written below it.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Eval seed (default: the config's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Results root (default: the config's `results`).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Only these benchmark ids of the config (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub benchmarks: Vec<String>,
    /// Only the first N problems of each benchmark.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Evaluate shard i of N (problems i, i+N, …); join the shards with `trainer eval-merge`.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Sampling temperature (0: greedy, one sample per problem).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Samples per problem for every benchmark (default: 32 for the small sets, 1 otherwise).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Prompt plus completion tokens.
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Cap on completion tokens.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Append the single token "To" to every prompt.
    #[arg(long)]
    pub append_to: bool,
    /// Rows (problems × samples) decoded together.
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Folder of `<id>.jsonl` benchmark files (default: the config's `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Model name in result paths (default: the config's `model_name`, else the folder name).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Training dataset name in result paths (default: from the checkpoint path, else `custom`).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Setup name in result paths (default: from the checkpoint path or the vectors file).
    #[arg(long)]
    pub setup: Option<String>,
    /// Run name in result paths (default: from the checkpoint path, else the vectors file name).
    #[arg(long)]
    pub run: Option<String>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Compute precision.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// Before the first benchmark, generate 4 untimed tokens for its first batch (kernel
    /// compilation and autotuning happen there), so that tokens/s measures the steady state.
    #[arg(long)]
    pub warmup: bool,
    /// Random weights of this shape instead of the model's (performance measurements; the
    /// tokenizer still comes from --model; results are filed under `random-<shape>`).
    #[arg(long, value_enum)]
    pub random_weights: Option<Shape>,
    /// Devices and processes: one shard per device of every process, merged at the end.
    #[command(flatten)]
    pub parallel: super::ParallelArgs,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

/// Arguments of `trainer eval-merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// A results folder; every sharded benchmark below it is merged.
    pub dir: PathBuf,
    /// Delete the shard files after a successful merge.
    #[arg(long)]
    pub remove_shards: bool,
}

/// Runs `trainer eval`; prints one JSON line per benchmark. With several devices or MPI ranks,
/// device `d` of rank `r` evaluates shard `r·D + d` of `R·D`; rank 0 merges the shards when all
/// are done and prints the merged lines.
pub fn run(args: &EvalArgs, quiet: bool) -> anyhow::Result<()> {
    let collective = args.parallel.collective()?;
    let mut devices = args.parallel.devices.devices(args.backend, args.dtype)?;
    let local = devices.len();
    let world = collective.size() * local;
    if world == 1 {
        for line in evaluate_on(args, devices.remove(0), args.shard.unwrap_or(Shard::WHOLE), quiet)?.1 {
            println!("{line}");
        }
        return Ok(());
    }
    if args.shard.is_some() {
        bail!("--shard splits the work by hand; with {world} devices/processes the split is automatic: drop --shard");
    }
    let first = collective.rank() * local;
    let outcomes = trainer::parallel::for_each_worker(&mut devices, |i, device| {
        evaluate_on(args, device.clone(), Shard { index: first + i, count: world }, true)
            .map_err(|e| trainer::Error::InvalidArgument(format!("shard {} of {world}: {e:#}", first + i)))
    })?;
    // Every shard of every process is written before rank 0 merges.
    collective.all_reduce_sum(&mut [0.0])?;
    if collective.rank() != 0 {
        return Ok(());
    }
    let Some((dir, lines)) = outcomes.first() else {
        return Ok(());
    };
    // Shards finished now or by an earlier, interrupted run are merged; when every benchmark
    // was already merged there is nothing left to do.
    if !eval::has_shards(dir)? {
        for line in lines {
            println!("{line}");
        }
        return Ok(());
    }
    run_merge(&MergeArgs { dir: dir.clone(), remove_shards: true })
}

/// Evaluates shard `shard` of every selected benchmark on `device`; returns the results folder
/// and one JSON line per benchmark. A sharded run skips benchmarks whose merged results exist.
fn evaluate_on(args: &EvalArgs, device: burn::tensor::Device, shard: Shard, quiet: bool) -> anyhow::Result<(PathBuf, Vec<serde_json::Value>)> {
    let mut config = EvalConfig::from_file(&args.config)?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let benchmarks: Vec<&eval::BenchmarkEntry> =
        config.benchmarks.iter().filter(|b| args.benchmarks.is_empty() || args.benchmarks.contains(&b.id)).collect();
    for id in &args.benchmarks {
        if !config.benchmarks.iter().any(|b| &b.id == id) {
            let known: Vec<&str> = config.benchmarks.iter().map(|b| b.id.as_str()).collect();
            bail!("--benchmarks: `{id}` is not in {} (it has {})", args.config.display(), known.join(", "));
        }
    }
    let tokenizer = ModelTokenizer::from_dir(&args.model)?;
    let lm = match args.random_weights {
        Some(shape) => {
            tracing::info!(?shape, "random weights");
            CausalLm::load(shape.config(), &RandomWeights { std: 0.02 }, &device, args.dtype.dtype())?
        }
        None => model::load(&args.model, &device, args.dtype.dtype())?,
    };
    // A checkpoint written by `trainer train` (any setup: vectors, LoRA, full weights).
    let (lm, (steering, mut context, checkpoint_root)) = match &args.checkpoint {
        Some(dir) if dir.join("trainer_state.json").is_file() => trained_policy(dir, lm)?,
        _ => {
            let found = steering_and_context(args, &config, &lm)?;
            (lm, found)
        }
    };
    let temperature = args.temperature.unwrap_or(config.temperature);
    let append_to = args.append_to || config.append_to;
    if append_to {
        context.run = if context.run.is_empty() { "append_to".into() } else { format!("{}_append_to", context.run) };
    }
    let settings = EvalSettings {
        context,
        seed: args.seed.unwrap_or(config.seed),
        temperature,
        top_p: args.top_p.unwrap_or(config.top_p),
        top_k: config.top_k,
        max_seq_length: args.max_seq_length.unwrap_or(config.max_seq_length),
        max_new_tokens: args.max_new_tokens.or(config.max_new_tokens),
        prompt_style: PromptStyle { template: config.template, append_to },
        batch_rows: args.batch_rows.unwrap_or(config.batch_rows),
        save_text: config.save_text,
        shard,
        stop_token: config.stop_token.clone(),
    };
    let results = args.results.clone().or(checkpoint_root).unwrap_or_else(|| config.results.clone());
    let dir = settings.output_dir(&results);
    tracing::info!(dir = %dir.display(), temperature = settings.temperature, seed = settings.seed, "evaluating");
    let model = EvalModel { lm: &lm, tokenizer: &tokenizer, steering: &steering, interventions: &[] };
    let mut warmup = args.warmup;
    let mut lines = Vec::new();
    for entry in benchmarks {
        let merged = dir.join(Shard::WHOLE.summary_name(&entry.id));
        if !shard.is_whole() && merged.is_file() {
            tracing::info!(benchmark = %entry.id, path = %merged.display(), "merged results exist; skipped");
            lines.push(json!({ "benchmark": entry.id, "summary": merged, "skipped": true }));
            continue;
        }
        let (split, mapping) = EvalConfig::split_and_mapping(entry);
        let mut problems = data::load(&config.paths_for(entry), &split, &mapping)?;
        if let Some(n) = args.limit {
            problems.truncate(n);
        }
        let samples = match args.samples {
            Some(n) if temperature != 0.0 => n,
            _ => config.samples_for(entry, temperature),
        };
        if std::mem::take(&mut warmup) {
            warm_up(&model, &problems, samples, &settings)?;
        }
        let job = BenchmarkJob { id: &entry.id, problems: &problems, samples };
        let bar = super::progress_bar(problems.len() as u64, &entry.id, quiet);
        let outcome = eval::evaluate_benchmark(&model, &job, &settings, &dir, &bar)
            .with_context(|| format!("evaluating {}", entry.id))?;
        bar.finish_and_clear();
        let s = &outcome.summary;
        tracing::info!(
            benchmark = %entry.id,
            pass_at_1 = s.pass_at_1,
            avg_at_n = s.avg_at_n,
            tokens_per_sec = outcome.tokens_per_sec(),
            "done"
        );
        let line = json!({
            "benchmark": entry.id,
            "summary": outcome.summary_path,
            "skipped": outcome.skipped,
            "resumed_problems": outcome.resumed,
            "generated_problems": outcome.generated_problems,
            "num_problems": s.num_problems,
            "samples_per_problem": s.samples_per_problem,
            "pass_at_1": s.pass_at_1,
            "avg_at_n": s.avg_at_n,
            "mean_length": s.mean_length,
            "stop_rate": s.stop_rate,
            "prompt_tokens": outcome.prompt_tokens,
            "generated_tokens": outcome.generated_tokens,
            "generation_secs": outcome.generation_secs,
            "total_secs": outcome.total_secs,
            "tokens_per_sec": outcome.tokens_per_sec(),
        });
        lines.push(line);
    }
    Ok((dir, lines))
}

/// The model and steering of a `trainer train` checkpoint on top of `base`, the context of its
/// results (from the results layout of its path, else from its config and state) and that layout's
/// root.
fn trained_policy(dir: &Path, base: CausalLm) -> anyhow::Result<(CausalLm, SteeringAndContext)> {
    let (train_config, state) = trainer::train::checkpoint::read_state(dir)?;
    let (lm, steering) = trainer::train::checkpoint::load_for_inference(dir, base)?;
    let (context, root) = checkpoint_context(dir).map_or_else(
        || {
            let context = EvalContext {
                model: trainer::train::checkpoint::model_name(&train_config),
                dataset: train_config.dataset(),
                setup: state.job_type.clone(),
                run: train_config.run_name(),
                checkpoint: Some(state.step),
            };
            (context, None)
        },
        |(c, r)| (c, Some(r)),
    );
    tracing::info!(checkpoint = %dir.display(), ?context, "trained policy");
    Ok((lm, (steering, context, root)))
}

/// The steering to apply, the context of the results, and (for a checkpoint in the results
/// layout) the results root it belongs to.
type SteeringAndContext = (Steering, EvalContext, Option<PathBuf>);

/// The [`SteeringAndContext`] of the command line's `--steering` / `--checkpoint`.
fn steering_and_context(args: &EvalArgs, config: &EvalConfig, lm: &CausalLm) -> anyhow::Result<SteeringAndContext> {
    let model_name = args
        .model_name
        .clone()
        .or_else(|| {
            // Random weights are never filed under the real model's name.
            let shape = args.random_weights.and_then(|s| clap::ValueEnum::to_possible_value(&s))?;
            Some(format!("random-{}", shape.get_name()))
        })
        .or_else(|| config.model_name.clone())
        .unwrap_or_else(|| folder_name(&args.model));
    let vectors_path = match (&args.steering, &args.checkpoint) {
        (Some(file), _) => Some(file.clone()),
        (None, Some(dir)) => {
            let file = dir.join(eval::CHECKPOINT_VECTORS);
            if !file.exists() {
                bail!("{}: expected a training checkpoint holding {}", dir.display(), eval::CHECKPOINT_VECTORS);
            }
            Some(file)
        }
        (None, None) => None,
    };
    let Some(path) = vectors_path else {
        let context = EvalContext {
            model: model_name,
            dataset: "base".into(),
            setup: "base".into(),
            run: args.run.clone().unwrap_or_default(),
            checkpoint: None,
        };
        return Ok((Steering::None, context, None));
    };
    let (steering, file) = eval::load_steering(&path, lm)?;
    // A checkpoint folder in the results layout names model, dataset, setup, run and step.
    // (`--steering` may name the checkpoint folder itself: the reference format.)
    let folder = match (&args.checkpoint, path.is_dir()) {
        (Some(dir), _) => Some(dir.clone()),
        (None, true) => Some(path.clone()),
        (None, false) => path.parent().map(Path::to_owned),
    };
    let (mut context, root) = match folder.as_deref().and_then(checkpoint_context) {
        Some((context, root)) => (context, Some(root)),
        None => {
            let setup = match file.metadata.setup.as_str() {
                "" | "imported" => "steering".to_owned(),
                other => other.to_owned(),
            };
            let run = path.file_stem().map_or_else(|| "vectors".into(), |s| s.to_string_lossy().into_owned());
            (EvalContext { model: model_name.clone(), dataset: "custom".into(), setup, run, checkpoint: None }, None)
        }
    };
    if let Some(m) = &args.model_name {
        context.model = m.clone();
    }
    if let Some(d) = &args.dataset {
        context.dataset = d.clone();
    }
    if let Some(s) = &args.setup {
        context.setup = s.clone();
    }
    if let Some(r) = &args.run {
        context.run = r.clone();
    }
    tracing::info!(vectors = %path.display(), ?context, "steering");
    Ok((steering, context, root))
}

/// One untimed 4-token generation of the first batch of `problems`.
fn warm_up(
    model: &EvalModel<'_>,
    problems: &[data::Problem],
    samples: usize,
    settings: &EvalSettings,
) -> anyhow::Result<()> {
    let n = (settings.batch_rows / samples).clamp(1, problems.len().max(1));
    let prompts = problems
        .iter()
        .take(n)
        .map(|p| settings.prompt_style.build(model.tokenizer, &p.problem).map(|p| p.ids))
        .collect::<Result<Vec<_>, _>>()?;
    let request = GenerationRequest {
        max_new_tokens: vec![4; prompts.len()],
        prompts,
        samples_per_prompt: samples,
        sampling: SamplingParams {
            temperature: settings.temperature as f32,
            top_p: settings.top_p as f32,
            top_k: settings.top_k,
            seed: 0,
        },
        stop_token_ids: Vec::new(),
        pad_token_id: model.tokenizer.pad_token_id(),
        max_batch_rows: settings.batch_rows,
        prompt_keys: None,
    };
    let start = std::time::Instant::now();
    rollout::generate(model.lm, model.steering, model.interventions, &request, &indicatif::ProgressBar::hidden())?;
    tracing::info!(secs = start.elapsed().as_secs_f64(), rows = request.prompts.len() * samples, "warm-up done");
    Ok(())
}

fn folder_name(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
}

/// Runs `trainer eval-merge`; prints one JSON line per merged benchmark.
pub fn run_merge(args: &MergeArgs) -> anyhow::Result<()> {
    for m in eval::merge_shards(&args.dir, args.remove_shards)? {
        let line = json!({
            "dir": m.dir,
            "benchmark": m.benchmark,
            "shards": m.shards,
            "num_problems": m.summary.num_problems,
            "pass_at_1": m.summary.pass_at_1,
            "avg_at_n": m.summary.avg_at_n,
        });
        println!("{line}");
    }
    Ok(())
}
