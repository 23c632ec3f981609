//! A training run: data, run directory, the step loop, metrics, checkpoints, resumption and
//! Ctrl-C.
//!
//! Layout of `<output_dir>/<Model>/<dataset>/<job_type>/seed-<s>_lr-<lr>/`:
//! `config.yml` (the resolved config), `manifest.json` (versions, seed, git revision, device),
//! `metrics.jsonl` (one [`MetricsLine`] per step) and `checkpoint-<step>/` (see
//! [`checkpoint`](crate::train::checkpoint)).
//!
//! Determinism: the prompt order of epoch e is a seeded permutation (`seed`, e) of the filtered
//! training set, step s takes the next `prompts_per_step` prompts, and its sampling streams are
//! seeded by (`seed`, s). Everything a step needs is therefore a function of the checkpointed
//! state, and on the CPU backend `--resume` continues bit-exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use shared::metrics::MetricsLine;

use crate::data::{self, ColumnMapping, Problem};
use crate::device::Backend;
use crate::error::{Error, Result};
use crate::model::prompt::PromptStyle;
use crate::model::{self, ModelTokenizer};
use crate::parallel::{Collective, DeviceSelection, SingleProcess};
use crate::train::checkpoint;
use crate::train::config::TrainConfig;
use crate::train::optim::AdamWState;
use crate::train::policy::{Policy, Setup};
use crate::train::step::{StepContext, TrainPrompt, TrainState, train_step};

/// How a run reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    /// A progress bar on the terminal (step, reward, tokens/s, ETA).
    Bar,
    /// One JSON metrics line per step on stdout.
    JsonLines,
    /// Nothing.
    Silent,
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Backend of the model.
    pub backend: Backend,
    /// The devices of this process, one worker each (data parallelism; see
    /// [`parallel`](crate::parallel)).
    pub devices: DeviceSelection,
    /// Progress output.
    pub reporting: Reporting,
    /// Stop after this many steps of this invocation (the run stays resumable); `None`: to the end.
    pub max_steps_now: Option<u64>,
}

/// What a finished (or interrupted) invocation leaves.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Steps completed in total.
    pub steps_done: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// The newest checkpoint.
    pub last_checkpoint: Option<PathBuf>,
    /// Whether Ctrl-C stopped it early.
    pub interrupted: bool,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Bytes of optimiser state.
    pub optimizer_bytes: usize,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
}

/// `manifest.json`.
#[derive(Debug, Serialize)]
struct Manifest<'a> {
    steerlab_version: &'static str,
    burn_version: &'static str,
    git_revision: Option<String>,
    seed: u64,
    backend: Backend,
    job_type: String,
    model_path: &'a Path,
    dataset_path: &'a Path,
    training_problems: usize,
    total_steps: u64,
    trainable_parameters: usize,
    processes: usize,
    devices_per_process: usize,
    started_at_unix: u64,
}

/// The flag set by Ctrl-C (installed once per process; a second Ctrl-C exits at once).
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                eprintln!("second Ctrl-C: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("Ctrl-C: finishing the current step, writing a checkpoint, then stopping (Ctrl-C again to quit now)");
        });
        if let Err(e) = installed {
            tracing::warn!("cannot install the Ctrl-C handler: {e}");
        }
        flag
    })
    .clone()
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The training problems of a config: loaded, subsampled, tokenized, filtered by length.
pub fn training_prompts(config: &TrainConfig, tokenizer: &ModelTokenizer) -> Result<Vec<TrainPrompt>> {
    let path = &config.dataset_path;
    let files = if path.is_dir() { data::data_files(path, "train")? } else { vec![path.clone()] };
    let mut problems: Vec<Problem> = data::load(&files, "train", &ColumnMapping::default())?;
    if let Some(n) = config.num_train_samples {
        problems = data::subsample(&problems, n, config.subsample_ds_seed);
    }
    let style = PromptStyle { template: config.template_type, append_to: config.append_to };
    let mut prompts = Vec::with_capacity(problems.len());
    for p in &problems {
        let ids = style.build(tokenizer, &p.problem)?.ids;
        if ids.len() < config.max_seq_length {
            prompts.push(TrainPrompt { index: p.index, ids, answer: p.answer.clone() });
        }
    }
    let dropped = problems.len() - prompts.len();
    if dropped > 0 {
        tracing::info!(dropped, max_seq_length = config.max_seq_length, "dropped prompts that leave no room to generate");
    }
    if prompts.len() < config.prompts_per_step {
        return Err(Error::InvalidArgument(format!(
            "{}: {} usable training problems, fewer than prompts_per_step = {}",
            path.display(),
            prompts.len(),
            config.prompts_per_step
        )));
    }
    Ok(prompts)
}

/// Steps of a run: `max_steps` when positive, else `epochs × ⌊problems / prompts_per_step⌋`.
pub fn total_steps(config: &TrainConfig, problems: usize) -> u64 {
    if config.max_steps > 0 {
        config.max_steps as u64
    } else {
        (config.num_train_epochs * (problems / config.prompts_per_step)) as u64
    }
}

/// Checkpoint interval: `save_steps`, or `ceil(total / num_evals)` as the reference.
pub fn save_interval(config: &TrainConfig, total: u64) -> u64 {
    config.save_steps.map_or_else(|| total.div_ceil(config.num_evals as u64).max(1), |s| s as u64)
}

/// The prompts of step `step` and the data position (epoch, offset) after it.
fn step_prompts(prompts: &[TrainPrompt], config: &TrainConfig, step: u64) -> (Vec<TrainPrompt>, (u64, u64)) {
    let per_epoch = (prompts.len() / config.prompts_per_step) as u64;
    let epoch = step / per_epoch;
    let offset = (step % per_epoch) as usize * config.prompts_per_step;
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    use rand::SeedableRng as _;
    use rand::seq::SliceRandom as _;
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9))));
    let chosen = order[offset..offset + config.prompts_per_step].iter().map(|&i| prompts[i].clone()).collect();
    let next = step + 1;
    (chosen, (next / per_epoch, (next % per_epoch) * config.prompts_per_step as u64))
}

/// Keeps the lines of `metrics.jsonl` up to `step` (a resumed run rewrites the steps after its
/// checkpoint).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    let read = shared::metrics::read_metrics(&bytes, &path.display().to_string());
    let mut out = String::new();
    for line in read.lines.iter().filter(|l| l.step <= step) {
        out.push_str(&serde_json::to_string(line).map_err(|e| Error::Run { path: path.to_owned(), message: e.to_string() })?);
        out.push('\n');
    }
    crate::fsutil::write_atomic(path, out.as_bytes())
}

/// Starts a run from `config`, or continues the run in `resume` (its `config.yml` and newest
/// checkpoint), in this process alone. Refuses to start over an existing run directory that has
/// checkpoints.
pub fn train(config: Option<TrainConfig>, resume: Option<&Path>, options: &RunOptions) -> Result<RunOutcome> {
    train_in(config, resume, options, &SingleProcess)
}

/// [`train`] as one process of `collective`: every process loads the model on its devices and
/// trains on its share of each step's prompts; rank 0 alone writes the run directory (config,
/// manifest, metrics, checkpoints). All processes must see the same files (a shared file system).
pub fn train_in(
    config: Option<TrainConfig>,
    resume: Option<&Path>,
    options: &RunOptions,
    collective: &dyn Collective,
) -> Result<RunOutcome> {
    let writer = collective.rank() == 0;
    let started = std::time::Instant::now();
    let (config, run_dir, resume_from) = match (config, resume) {
        (_, Some(dir)) => {
            let config = crate::train::config::load(&dir.join("config.yml"), &[])?;
            let last = checkpoint::list(dir)?.pop().map(|(_, p)| p);
            (config, dir.to_owned(), last)
        }
        (Some(config), None) => {
            let dir = config.run_dir();
            if !checkpoint::list(&dir)?.is_empty() {
                return Err(Error::Run {
                    path: dir,
                    message: "this run directory already has checkpoints; continue it with --resume, or change seed, learning_rate or output_dir".into(),
                });
            }
            (config, dir, None)
        }
        (None, None) => return Err(Error::InvalidArgument("a config or a run directory to resume is needed".into())),
    };
    let tokenizer = ModelTokenizer::from_dir(&config.model_path)?;
    let prompts = training_prompts(&config, &tokenizer)?;
    let total = total_steps(&config, prompts.len());
    let (mut workers, mut state) = load_workers(&config, resume_from.as_deref(), options)?;
    let policy = &workers[0];
    if writer {
        std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
        let yaml = serde_norway::to_string(&config).map_err(|e| Error::Run { path: run_dir.clone(), message: e.to_string() })?;
        crate::fsutil::write_atomic(&run_dir.join("config.yml"), yaml.as_bytes())?;
    }
    let manifest = Manifest {
        steerlab_version: env!("CARGO_PKG_VERSION"),
        burn_version: "0.22.1",
        git_revision: git_revision(),
        seed: config.seed,
        backend: options.backend,
        job_type: config.job_type(),
        model_path: &config.model_path,
        dataset_path: &config.dataset_path,
        training_problems: prompts.len(),
        total_steps: total,
        trainable_parameters: policy.num_trainable(),
        processes: collective.size(),
        devices_per_process: workers.len(),
        started_at_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut metrics_file = if writer {
        crate::fsutil::write_json(&run_dir.join("manifest.json"), &manifest)?;
        truncate_metrics(&metrics_path, state.step)?;
        Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&metrics_path)
                .map_err(|e| Error::io(&metrics_path, e))?,
        )
    } else {
        None
    };
    let ctx = StepContext {
        config: &config,
        tokenizer: &tokenizer,
        stop_token_ids: tokenizer.configured_stop_ids(config.stop_token.as_deref(), &policy.base.config.eos_token_ids)?,
        pad_token_id: tokenizer.pad_token_id(),
        answer_format: crate::eval::answer_format(config.template_type),
        total_steps: total,
    };
    let interrupted = interrupt_flag();
    let save_every = save_interval(&config, total);
    let bar = progress(if writer { options.reporting } else { Reporting::Silent }, total, state.step);
    let mut last_checkpoint = resume_from.clone();
    let mut data_position = (0, 0);
    let first = state.step;
    let mut was_interrupted = false;
    while state.step < total {
        if options.max_steps_now.is_some_and(|n| state.step - first >= n) {
            break;
        }
        let (step_prompts, next_position) = step_prompts(&prompts, &config, state.step);
        data_position = next_position;
        let line = train_step(&mut workers, &mut state, &ctx, &step_prompts, collective, &ProgressBar::hidden())?;
        if let Some(file) = metrics_file.as_mut() {
            report(options.reporting, &bar, &line, file, &metrics_path)?;
        }
        // Any process's Ctrl-C stops them all after the same step.
        let mut stop = [f64::from(u8::from(interrupted.load(Ordering::SeqCst)))];
        collective.all_reduce_sum(&mut stop)?;
        was_interrupted = stop[0] > 0.0;
        if state.step % save_every == 0 || state.step == total || was_interrupted {
            last_checkpoint = Some(save(writer, &run_dir, &config, &workers[0], &state, total, data_position)?);
        }
        if was_interrupted {
            break;
        }
    }
    // An invocation stopped by `max_steps_now` leaves a checkpoint at its last step.
    if last_checkpoint.as_ref().is_none_or(|p| !p.ends_with(format!("checkpoint-{}", state.step))) && state.step > first {
        last_checkpoint = Some(save(writer, &run_dir, &config, &workers[0], &state, total, data_position)?);
    }
    bar.finish_and_clear();
    Ok(RunOutcome {
        run_dir,
        steps_done: state.step,
        total_steps: total,
        last_checkpoint,
        interrupted: was_interrupted,
        trainable_parameters: workers[0].num_trainable(),
        optimizer_bytes: state.optimizer.bytes(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One policy per device of `options` (the same parameters on each) and the training state: a
/// fresh start, or the state of checkpoint `resume_from`.
fn load_workers(config: &TrainConfig, resume_from: Option<&Path>, options: &RunOptions) -> Result<(Vec<Policy>, TrainState)> {
    let devices = options.devices.devices(options.backend, config.precision)?;
    let mut workers = Vec::with_capacity(devices.len());
    let mut state = None;
    for (i, device) in devices.iter().enumerate() {
        let base = model::load(&config.model_path, device, config.precision.dtype())?;
        let leader = i == 0;
        let policy = match resume_from {
            Some(ckpt) => {
                let (policy, loaded) = checkpoint::load_policy(ckpt, base, leader)?;
                if leader {
                    let loaded = loaded.ok_or_else(|| Error::Run { path: ckpt.to_owned(), message: "no training state".into() })?;
                    tracing::info!(checkpoint = %ckpt.display(), step = loaded.step, "resuming");
                    state = Some(loaded);
                }
                policy
            }
            None => {
                let setup = Setup::from_config(config, &base)?;
                let policy = Policy::new(base, setup, config.seed)?;
                if leader {
                    state = Some(TrainState { step: 0, optimizer: AdamWState::new(&policy.params), baseline: Default::default() });
                }
                policy
            }
        };
        workers.push(policy);
    }
    let state = state.ok_or_else(|| Error::InvalidArgument("--devices selects no device".into()))?;
    Ok((workers, state))
}

/// Writes a checkpoint of `policy` (rank 0 only; the others return its path without writing).
fn save(
    writer: bool,
    run_dir: &Path,
    config: &TrainConfig,
    policy: &Policy,
    state: &TrainState,
    total: u64,
    data_position: (u64, u64),
) -> Result<PathBuf> {
    if writer {
        checkpoint::save(run_dir, config, policy, state, total, data_position, config.save_total_limit)
    } else {
        Ok(checkpoint::dir(run_dir, state.step))
    }
}

fn progress(reporting: Reporting, total: u64, done: u64) -> ProgressBar {
    if reporting != Reporting::Bar {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("step {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(done);
    bar
}

fn report(reporting: Reporting, bar: &ProgressBar, line: &MetricsLine, file: &mut std::fs::File, path: &Path) -> Result<()> {
    let json = serde_json::to_string(line).map_err(|e| Error::Run { path: path.to_owned(), message: e.to_string() })?;
    writeln!(file, "{json}").and_then(|()| file.flush()).map_err(|e| Error::io(path, e))?;
    match reporting {
        Reporting::Bar => {
            bar.set_position(line.step);
            bar.set_message(format!(
                "reward {:+.3}  pass@1 {:.2}  {:.0} tok/s",
                line.reward_mean,
                line.pass_at_k.get("1").copied().unwrap_or(0.0),
                line.tokens_per_second
            ));
        }
        Reporting::JsonLines => println!("{json}"),
        Reporting::Silent => {}
    }
    Ok(())
}
