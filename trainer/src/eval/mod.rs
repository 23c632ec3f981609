//! Evaluation on math benchmarks with the reference protocol (§4): prompts built with the
//! model's template, batched KV-cache generation, answers verified by [`crate::reward`], and the
//! results written as `shared::eval` records and summaries that the viewer reads.
//!
//! * [`EvalConfig`] (`configs/eval/<model>.yml`): sampling, token budget, samples per problem,
//!   benchmarks.
//! * [`evaluate_benchmark`]: one benchmark (or one shard of it) of one model into one folder,
//!   `<bench>.jsonl` + `<bench>.summary.json`, resuming what a previous run left.
//! * [`merge_shards`]: joins `--shard i/N` outputs (`<bench>.shard-<i>-of-<N>.*`) into the
//!   unsharded files, refusing incomplete or duplicated problem indices (reference §4.5).
//! * [`checkpoint_context`]: the [`EvalContext`] of a checkpoint folder in the results layout;
//!   [`load_steering`]: the vectors of a file or checkpoint, per layer or at a place.
//!
//! Records are written as generation goes (one line per problem, appended), then rewritten
//! sorted by problem index and followed by the summary, each atomically (temporary file, then
//! rename). A benchmark whose summary exists and whose records are complete is skipped; an
//! interrupted one keeps the records it has (same prompt, same number of samples) and generates
//! the rest. Sampling is seeded by the eval seed; the random stream of a sample is keyed by the
//! problem's index in its benchmark and the sample's index, so results are the same however the
//! problems are batched, sharded or resumed (same tokens, up to float rounding that depends on
//! the padded batch shape and can, rarely, flip a sampled token at a near tie).

pub mod config;
mod merge;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use indicatif::ProgressBar;
use shared::Versioned;
use shared::eval::{EvalContext, EvalRecord, EvalSample, EvalSummary};

use crate::data::{DataError, Problem};
use crate::fsutil::write_atomic;
use crate::model::prompt::{PromptStyle, TemplateType};
use crate::model::{CausalLm, ModelTokenizer};
use crate::reward::{self, AnswerFormat};
use crate::rollout::{self, GenerationRequest, SamplingParams};
use crate::steering::intervention::{Intervention, Place};
use crate::steering::{Steering, SteeringFile};

pub use config::{BenchmarkEntry, EvalConfig};
pub use merge::{MergeOutcome, has_shards, merge_shards};

/// Errors of evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A config file is invalid (the message names the key).
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A benchmark could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model, tokenizer, steering or generation failed, or a file could not be written.
    #[error(transparent)]
    Trainer(#[from] crate::Error),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Result files are inconsistent (merging shards).
    #[error("{path}: {message}")]
    Results {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An argument is out of range or inconsistent.
    #[error("{0}")]
    InvalidArgument(String),
}

impl EvalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), source }
    }

    fn results(path: &Path, message: impl Into<String>) -> Self {
        Self::Results { path: path.to_owned(), message: message.into() }
    }
}

/// `--shard i/N`: the problems at positions `i, i + N, i + 2N, …` (reference
/// `rows[split_id::total_splits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// No sharding.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether this is the whole benchmark.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// The items of this shard.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().skip(self.index).step_by(self.count).cloned().collect()
    }

    /// The records file of a benchmark: `<bench>.jsonl`, or `<bench>.shard-<i>-of-<N>.jsonl`.
    pub fn records_name(&self, bench: &str) -> String {
        if self.is_whole() { format!("{bench}.jsonl") } else { format!("{bench}.shard-{}-of-{}.jsonl", self.index, self.count) }
    }

    /// The summary file: `<bench>.summary.json`, or `<bench>.shard-<i>-of-<N>.json` for a shard
    /// (a name the viewer does not take for a summary).
    pub fn summary_name(&self, bench: &str) -> String {
        if self.is_whole() {
            format!("{bench}.summary.json")
        } else {
            format!("{bench}.shard-{}-of-{}.json", self.index, self.count)
        }
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `i/N` with `0 ≤ i < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Self { index, count }),
            _ => Err(format!("expected i/N with 0 ≤ i < N (e.g. 0/4), found `{s}`")),
        }
    }
}

/// How answers are read from completions under a prompt template.
pub fn answer_format(template: TemplateType) -> AnswerFormat {
    match template {
        TemplateType::QwenMath => AnswerFormat::QwenMath,
        TemplateType::R1 => AnswerFormat::R1,
    }
}

/// The model being evaluated.
#[derive(Debug, Clone, Copy)]
pub struct EvalModel<'a> {
    /// The language model.
    pub lm: &'a CausalLm,
    /// Its tokenizer (prompts, stop tokens, decoding).
    pub tokenizer: &'a ModelTokenizer,
    /// Steering vectors (`Steering::None` for the base model).
    pub steering: &'a Steering,
    /// Interventions applied in every forward pass.
    pub interventions: &'a [Intervention],
}

/// Generation and output settings of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// Written into every summary.
    pub context: EvalContext,
    /// The eval seed.
    pub seed: u64,
    /// Sampling temperature (0 = greedy).
    pub temperature: f64,
    /// Nucleus sampling threshold.
    pub top_p: f64,
    /// Top-k truncation.
    pub top_k: Option<usize>,
    /// Prompt plus completion tokens.
    pub max_seq_length: usize,
    /// An extra cap on completion tokens.
    pub max_new_tokens: Option<usize>,
    /// Template and `append_to`.
    pub prompt_style: PromptStyle,
    /// Rows (problems × samples) decoded together.
    pub batch_rows: usize,
    /// Keep the generated text in the records.
    pub save_text: bool,
    /// Which part of each benchmark.
    pub shard: Shard,
    /// A configured stop token (one token); `None`: the model's EOS ids.
    pub stop_token: Option<String>,
}

impl EvalSettings {
    /// The summary of a benchmark's records under these settings.
    pub fn summary(&self, bench: &str, records: &[EvalRecord]) -> EvalSummary {
        EvalSummary::from_records(bench, self.context.clone(), self.seed, self.temperature, self.top_p, records)
    }

    /// The output folder under a results root (`shared::eval::eval_dir`).
    pub fn output_dir(&self, results_root: &Path) -> PathBuf {
        results_root.join(shared::eval::eval_dir(&self.context, self.temperature, self.top_p, self.seed))
    }
}

/// One benchmark to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct BenchmarkJob<'a> {
    /// The benchmark id (file stem of the results).
    pub id: &'a str,
    /// All its problems (the shard is taken by [`evaluate_benchmark`]).
    pub problems: &'a [Problem],
    /// Samples per problem.
    pub samples: usize,
}

/// What [`evaluate_benchmark`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkOutcome {
    /// The summary (of the shard, for a shard).
    pub summary: EvalSummary,
    /// The records file.
    pub records_path: PathBuf,
    /// The summary file.
    pub summary_path: PathBuf,
    /// Whether complete results existed and nothing was generated.
    pub skipped: bool,
    /// Problems whose records were kept from an interrupted run.
    pub resumed: usize,
    /// Problems generated now.
    pub generated_problems: usize,
    /// Prompt tokens of the problems generated now (each prompt counted once).
    pub prompt_tokens: usize,
    /// Tokens generated now.
    pub generated_tokens: usize,
    /// Seconds spent generating (prefill, decoding and sampling).
    pub generation_secs: f64,
    /// Seconds spent in total (prompts, generation, verification, writing).
    pub total_secs: f64,
}

impl BenchmarkOutcome {
    /// Generated tokens per second of generation time.
    pub fn tokens_per_sec(&self) -> f64 {
        if self.generation_secs > 0.0 { self.generated_tokens as f64 / self.generation_secs } else { 0.0 }
    }
}

/// Evaluates one benchmark (the settings' shard of it) into `dir`: generates `job.samples`
/// completions per problem, verifies them, writes the records and the summary. Complete results
/// are skipped; records left by an interrupted run are kept. `progress` counts problems.
pub fn evaluate_benchmark(
    model: &EvalModel<'_>,
    job: &BenchmarkJob<'_>,
    settings: &EvalSettings,
    dir: &Path,
    progress: &ProgressBar,
) -> Result<BenchmarkOutcome, EvalError> {
    let start = Instant::now();
    if job.samples == 0 || settings.batch_rows == 0 {
        return Err(EvalError::InvalidArgument(format!("{}: samples and batch rows must be ≥ 1", job.id)));
    }
    // A bad stop token is an error even where the results already exist.
    let stop_token_ids = model.tokenizer.configured_stop_ids(settings.stop_token.as_deref(), &model.lm.config.eos_token_ids)?;
    let problems = settings.shard.select(job.problems);
    let records_path = dir.join(settings.shard.records_name(job.id));
    let summary_path = dir.join(settings.shard.summary_name(job.id));
    let style = settings.prompt_style;
    let prompts = problems
        .iter()
        .map(|p| style.build(model.tokenizer, &p.problem))
        .collect::<Result<Vec<_>, _>>()?;
    let prompt_texts: Vec<String> =
        prompts.iter().map(|p| if style.append_to { format!("{}To", p.text) } else { p.text.clone() }).collect();
    let mut outcome = BenchmarkOutcome {
        summary: settings.summary(job.id, &[]),
        records_path: records_path.clone(),
        summary_path: summary_path.clone(),
        skipped: false,
        resumed: 0,
        generated_problems: 0,
        prompt_tokens: 0,
        generated_tokens: 0,
        generation_secs: 0.0,
        total_secs: 0.0,
    };
    progress.set_length(problems.len() as u64);
    progress.set_position(0);
    progress.set_message(job.id.to_owned());
    // Records of a previous run: the same problem, prompt and number of samples.
    let mut done: BTreeMap<u64, EvalRecord> = BTreeMap::new();
    if records_path.exists() {
        let bytes = std::fs::read(&records_path).map_err(|e| EvalError::io(&records_path, e))?;
        let read = shared::eval::read_records(&bytes, &records_path.display().to_string());
        for e in &read.errors {
            tracing::warn!("{e} (dropped)");
        }
        for r in read.records {
            let i = usize::try_from(r.id).ok().and_then(|id| problems.iter().position(|p| p.index == id));
            if let Some(i) = i
                && r.samples.len() == job.samples
                && r.prompt == prompt_texts[i]
                && r.answer == problems[i].answer
            {
                done.insert(r.id, r);
            }
        }
    }
    if done.len() == problems.len() && summary_path.exists() {
        let bytes = std::fs::read(&summary_path).map_err(|e| EvalError::io(&summary_path, e))?;
        match EvalSummary::from_json(&bytes, &summary_path.display().to_string()) {
            Ok(summary) => {
                tracing::info!(benchmark = job.id, path = %summary_path.display(), "complete results exist; skipped");
                progress.set_position(problems.len() as u64);
                outcome.summary = summary;
                outcome.skipped = true;
                outcome.resumed = done.len();
                outcome.total_secs = start.elapsed().as_secs_f64();
                return Ok(outcome);
            }
            Err(e) => tracing::warn!("{e}; the summary is written again"),
        }
    }
    outcome.resumed = done.len();
    if !done.is_empty() {
        tracing::info!(benchmark = job.id, kept = done.len(), of = problems.len(), "resuming an interrupted evaluation");
    }
    let todo: Vec<usize> = (0..problems.len()).filter(|&i| !done.contains_key(&(problems[i].index as u64))).collect();
    let budgets = todo
        .iter()
        .map(|&i| budget(model.lm, job.id, &problems[i], prompts[i].ids.len(), settings))
        .collect::<Result<Vec<_>, _>>()?;
    // Start the records file afresh with the kept records, then append as problems finish.
    write_atomic(&records_path, &jsonl(done.values())?)?;
    progress.set_position(done.len() as u64);
    let mut file = std::fs::OpenOptions::new().append(true).open(&records_path).map_err(|e| EvalError::io(&records_path, e))?;
    let sampling = SamplingParams {
        temperature: settings.temperature as f32,
        top_p: settings.top_p as f32,
        top_k: settings.top_k,
        seed: settings.seed,
    };
    let format = answer_format(style.template);
    let per_call = (settings.batch_rows / job.samples).max(1);
    for (chunk, chunk_budgets) in todo.chunks(per_call).zip(budgets.chunks(per_call)) {
        let request = GenerationRequest {
            prompts: chunk.iter().map(|&i| prompts[i].ids.clone()).collect(),
            max_new_tokens: chunk_budgets.to_vec(),
            samples_per_prompt: job.samples,
            sampling,
            stop_token_ids: stop_token_ids.clone(),
            pad_token_id: model.tokenizer.pad_token_id(),
            max_batch_rows: settings.batch_rows,
            // Streams keyed by the problem's index: the same samples however problems are
            // batched, sharded or resumed.
            prompt_keys: Some(chunk.iter().map(|&i| problems[i].index as u64).collect()),
        };
        let generation = rollout::generate(model.lm, model.steering, model.interventions, &request, &ProgressBar::hidden())?;
        outcome.generation_secs += generation.stats.prefill_secs + generation.stats.decode_secs;
        outcome.generated_tokens += generation.stats.generated_tokens;
        outcome.prompt_tokens += chunk.iter().map(|&i| prompts[i].ids.len()).sum::<usize>();
        let texts = generation
            .completions
            .iter()
            .map(|c| model.tokenizer.decode(&c.tokens, false))
            .collect::<Result<Vec<_>, _>>()?;
        let golds: Vec<&str> = generation.completions.iter().map(|c| problems[chunk[c.prompt_index]].answer.as_str()).collect();
        let correct = verify_all(&golds, &texts, format)?;
        let mut samples: Vec<Vec<EvalSample>> = vec![Vec::with_capacity(job.samples); chunk.len()];
        for ((c, text), correct) in generation.completions.iter().zip(texts).zip(correct) {
            samples[c.prompt_index].push(EvalSample {
                text: settings.save_text.then_some(text),
                num_tokens: c.tokens.len() as u32,
                correct,
                finished_with_stop: c.stopped,
                logprob: c.logprobs.iter().map(|&x| f64::from(x)).sum(),
            });
        }
        let records: Vec<EvalRecord> = chunk
            .iter()
            .zip(samples)
            .map(|(&i, samples)| EvalRecord {
                format_version: shared::version::FORMAT_VERSION,
                id: problems[i].index as u64,
                prompt: prompt_texts[i].clone(),
                answer: problems[i].answer.clone(),
                samples,
            })
            .collect();
        file.write_all(&jsonl(records.iter())?).and_then(|()| file.flush()).map_err(|e| EvalError::io(&records_path, e))?;
        outcome.generated_problems += records.len();
        done.extend(records.into_iter().map(|r| (r.id, r)));
        progress.inc(chunk.len() as u64);
        tracing::debug!(benchmark = job.id, done = done.len(), of = problems.len(), "problems evaluated");
    }
    drop(file);
    let records: Vec<EvalRecord> = done.into_values().collect();
    write_atomic(&records_path, &jsonl(records.iter())?)?;
    let summary = settings.summary(job.id, &records);
    write_summary(&summary_path, &summary)?;
    outcome.summary = summary;
    outcome.total_secs = start.elapsed().as_secs_f64();
    Ok(outcome)
}

/// The completion budget of a problem: `max_seq_length − prompt length` (reference §4.2), capped
/// by `max_new_tokens` and by the model's positions.
fn budget(
    lm: &CausalLm,
    bench: &str,
    problem: &Problem,
    prompt_len: usize,
    settings: &EvalSettings,
) -> Result<usize, EvalError> {
    let room = settings.max_seq_length.saturating_sub(prompt_len);
    if room == 0 {
        return Err(EvalError::InvalidArgument(format!(
            "{bench} problem {}: the prompt has {prompt_len} tokens, max_seq_length is {}: no room for a completion",
            problem.index, settings.max_seq_length
        )));
    }
    let positions = lm.config.max_position_embeddings.saturating_sub(prompt_len);
    if positions == 0 {
        return Err(EvalError::InvalidArgument(format!(
            "{bench} problem {}: the prompt has {prompt_len} tokens, the model only {} positions",
            problem.index, lm.config.max_position_embeddings
        )));
    }
    Ok(room.min(positions).min(settings.max_new_tokens.unwrap_or(usize::MAX)))
}

/// Verifies completions against their gold answers on all cores.
fn verify_all(golds: &[&str], texts: &[String], format: AnswerFormat) -> Result<Vec<bool>, EvalError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(texts.len()).max(1);
    let per_thread = texts.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = golds
            .chunks(per_thread)
            .zip(texts.chunks(per_thread))
            .map(|(g, t)| {
                scope.spawn(move || g.iter().zip(t).map(|(g, t)| reward::verify(g, t, format).correct).collect::<Vec<_>>())
            })
            .collect();
        let mut out = Vec::with_capacity(texts.len());
        for h in handles {
            out.extend(h.join().map_err(|_| EvalError::InvalidArgument("a verifier thread panicked".into()))?);
        }
        Ok(out)
    })
}

/// Records as JSON lines.
fn jsonl<'a>(records: impl Iterator<Item = &'a EvalRecord>) -> Result<Vec<u8>, EvalError> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(|e| EvalError::InvalidArgument(format!("record {}: {e}", r.id)))?;
        out.push(b'\n');
    }
    Ok(out)
}

fn write_summary(path: &Path, summary: &EvalSummary) -> Result<(), EvalError> {
    Ok(crate::fsutil::write_json(path, summary)?)
}

/// The vectors file of a training checkpoint folder.
pub const CHECKPOINT_VECTORS: &str = "steering_vectors.safetensors";

/// Loads steering vectors for `lm` from any format [`SteeringFile::load`] reads: per-layer
/// vectors `[L, H]` (steering, single-layer and rank-r setups, reference checkpoints), or one
/// vector at a named place (the file's `place` metadata: the at-place setup).
pub fn load_steering(path: &Path, lm: &CausalLm) -> Result<(Steering, SteeringFile), EvalError> {
    let file = SteeringFile::load(path)?;
    let steering = match &file.metadata.place {
        Some(place) => {
            if file.num_layers != 1 || file.hidden_size != lm.config.hidden_size {
                return Err(EvalError::InvalidArgument(format!(
                    "{}: an at-place vector must be one row of {} values, found [{}, {}]",
                    path.display(),
                    lm.config.hidden_size,
                    file.num_layers,
                    file.hidden_size
                )));
            }
            let place: Place = place.parse()?;
            let vector = Tensor::from_data(TensorData::new(file.vectors.clone(), [file.hidden_size]), &lm.device);
            Steering::AtPlace { place, vector }
        }
        None => {
            file.check_shape(path, lm.config.num_layers, lm.config.hidden_size)?;
            Steering::per_layer(file.vectors.clone(), file.num_layers, file.hidden_size, &lm.device)?
        }
    };
    Ok((steering, file))
}

/// The context and results root of a checkpoint folder in the results layout,
/// `<root>/<Model>/<dataset>/<job_type>/<run>/checkpoint-<n>`: results of evaluating it go
/// below the checkpoint itself. `None` when the path does not follow the layout.
pub fn checkpoint_context(dir: &Path) -> Option<(EvalContext, PathBuf)> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let checkpoint = dir.file_name()?.to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
    let run_dir = dir.parent()?;
    let mut context = shared::results::context_from_run_dir(&run_dir.to_string_lossy().replace('\\', "/"));
    if context.model.is_empty() {
        return None;
    }
    context.checkpoint = Some(checkpoint);
    let root = run_dir.ancestors().nth(4)?.to_owned();
    Some((context, root))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_select_every_nth_problem() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s.select(&[0, 1, 2, 3, 4, 5, 6]), [1, 4]);
        assert_eq!(s.records_name("math500"), "math500.shard-1-of-3.jsonl");
        assert_eq!(s.summary_name("math500"), "math500.shard-1-of-3.json");
        assert_eq!(Shard::WHOLE.summary_name("math500"), "math500.summary.json");
        for bad in ["3/3", "1", "a/2", "-1/2"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains(&format!("found `{bad}`")));
        }
        // A shard summary is not taken for a summary by the viewer.
        let kind = shared::results::file_kind("x/eval_seed-0/math500.shard-1-of-3.json");
        assert_ne!(kind, shared::results::FileKind::EvalSummary);
    }

    #[test]
    fn a_checkpoint_in_the_results_layout_gives_its_context_and_root() {
        let dir = Path::new("/r/Qwen2.5-Math-1.5B/deepscaler/steering/seed-0/checkpoint-106");
        let (c, root) = checkpoint_context(dir).unwrap();
        let parts = (c.model.as_str(), c.dataset.as_str(), c.setup.as_str(), c.run.as_str());
        assert_eq!(parts, ("Qwen2.5-Math-1.5B", "deepscaler", "steering", "seed-0"));
        assert_eq!((c.checkpoint, root), (Some(106), PathBuf::from("/r")));
        assert!(checkpoint_context(Path::new("/r/run/step-5")).is_none());
    }
}
