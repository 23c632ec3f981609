//! A results root as the viewer sees it: every file (relative path + bytes) classified and parsed,
//! with a message for each file that could not be read. Built from bytes, so the same code serves
//! a folder (native), a `.zip` or picked files (browser) and tests.

use std::collections::BTreeMap;

use crate::eval::{EvalContext, EvalSummary};
use crate::experiments::ExperimentResult;
use crate::metrics::{MetricsLine, read_metrics};
use crate::vectors::{VectorFileHeader, read_header};
use crate::version::Versioned;

/// What a file is, judged from its path alone (so loaders can skip bytes they will not need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `<bench>.summary.json`.
    EvalSummary,
    /// `<bench>.jsonl` under an `eval_seed-<k>` folder (per-problem records: listed, not loaded).
    EvalRecords,
    /// `metrics.jsonl` of a training run.
    Metrics,
    /// A `.safetensors` steering-vector file (only its header is read).
    Vectors,
    /// Any other `.json`: an experiment result if it has a known `type`.
    Json,
    /// Anything else (ignored).
    Other,
}

/// Classifies a path (with `/` separators).
pub fn file_kind(path: &str) -> FileKind {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.ends_with(".summary.json") {
        FileKind::EvalSummary
    } else if name == "metrics.jsonl" {
        FileKind::Metrics
    } else if name.ends_with(".jsonl") && path.contains("eval_seed-") {
        FileKind::EvalRecords
    } else if name.ends_with(".safetensors") {
        FileKind::Vectors
    } else if name.ends_with(".json") {
        FileKind::Json
    } else {
        FileKind::Other
    }
}

/// Whether a loader needs the bytes of this path ([`FileKind::EvalRecords`] and
/// [`FileKind::Other`] are only listed).
pub fn wants_bytes(path: &str) -> bool {
    !matches!(file_kind(path), FileKind::EvalRecords | FileKind::Other)
}

/// A training run found by its `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRun {
    /// The run folder (relative path).
    pub dir: String,
    /// Model, dataset, setup and run parsed from the folder, when it follows the layout.
    pub context: EvalContext,
    /// The training seed parsed from `seed-<s>` in the run name.
    pub seed: Option<u64>,
    /// The lines read.
    pub lines: Vec<MetricsLine>,
    /// Lines that could not be read.
    pub errors: Vec<String>,
}

/// Everything read from a results root.
#[derive(Debug, Clone, Default)]
pub struct ResultsIndex {
    /// Evaluation summaries, by path.
    pub summaries: BTreeMap<String, EvalSummary>,
    /// Per-problem record files (paths only).
    pub record_files: Vec<String>,
    /// Training runs, by folder.
    pub training_runs: BTreeMap<String, TrainingRun>,
    /// Experiment results, by path.
    pub experiments: BTreeMap<String, ExperimentResult>,
    /// Steering-vector files, by path.
    pub vectors: BTreeMap<String, VectorFileHeader>,
    /// One message per file that could not be read (path → message).
    pub problems: BTreeMap<String, String>,
}

impl ResultsIndex {
    /// Reads files given as (relative path, bytes). Paths use `/`; a leading `./` is dropped.
    pub fn from_files<'a>(files: impl IntoIterator<Item = (String, &'a [u8])>) -> Self {
        let mut index = Self::default();
        for (path, bytes) in files {
            index.add_file(path, bytes);
        }
        index
    }

    /// Adds (or replaces) one file.
    pub fn add_file(&mut self, path: String, bytes: &[u8]) {
        let path = path.trim_start_matches("./").replace('\\', "/");
        self.problems.remove(&path);
        match file_kind(&path) {
            FileKind::EvalSummary => match EvalSummary::from_json(bytes, &path) {
                Ok(mut s) => {
                    if s.context.model.is_empty()
                        && let Some(c) = context_from_eval_path(&path)
                    {
                        s.context = c;
                    }
                    self.summaries.insert(path, s);
                }
                Err(e) => {
                    self.problems.insert(path, e.to_string());
                }
            },
            FileKind::EvalRecords => {
                if !self.record_files.contains(&path) {
                    self.record_files.push(path);
                    self.record_files.sort();
                }
            }
            FileKind::Metrics => {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
                let read = read_metrics(bytes, &path);
                if !read.errors.is_empty() {
                    self.problems.insert(
                        path.clone(),
                        format!(
                            "{} unreadable line(s): {}",
                            read.errors.len(),
                            read.errors[0]
                        ),
                    );
                }
                let context = context_from_run_dir(&dir);
                let seed = dir.rsplit('/').next().and_then(parse_seed);
                self.training_runs.insert(
                    dir.clone(),
                    TrainingRun {
                        dir,
                        context,
                        seed,
                        lines: read.lines,
                        errors: read.errors,
                    },
                );
            }
            FileKind::Vectors => match read_header(bytes, &path) {
                Ok(h) => {
                    if let Err(e) = &h.meta {
                        self.problems.insert(path.clone(), e.to_string());
                    }
                    self.vectors.insert(path, h);
                }
                Err(e) => {
                    self.problems.insert(path, e.to_string());
                }
            },
            FileKind::Json => {
                // Only files that declare a `type` are experiment results; other JSON (configs,
                // manifests) is ignored silently.
                let declares_type = serde_json::from_slice::<serde_json::Value>(bytes)
                    .map(|v| v.get("type").is_some() && v.get("format_version").is_some())
                    .unwrap_or(true);
                if declares_type {
                    match ExperimentResult::from_json(bytes, &path) {
                        Ok(r) => {
                            self.experiments.insert(path, r);
                        }
                        Err(e) => {
                            self.problems.insert(path, e.to_string());
                        }
                    }
                }
            }
            FileKind::Other => {}
        }
    }

    /// Whether nothing at all was found.
    pub fn is_empty(&self) -> bool {
        self.summaries.is_empty()
            && self.training_runs.is_empty()
            && self.experiments.is_empty()
            && self.vectors.is_empty()
            && self.record_files.is_empty()
    }
}

fn parse_seed(run: &str) -> Option<u64> {
    let rest = run.split("seed-").nth(1)?;
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Parses `…/<Model>/<dataset>/<job_type>/<run>/checkpoint-<n>/temp_<T>_top_p_<P>/eval_seed-<k>/<file>`
/// (or `…/<Model>/base/temp_…/eval_seed-<k>/<file>`) into a context; used when a summary lacks one.
pub fn context_from_eval_path(path: &str) -> Option<EvalContext> {
    let comps: Vec<&str> = path.split('/').collect();
    let t = comps.iter().position(|c| c.starts_with("temp_"))?;
    let mut before = &comps[..t];
    let mut checkpoint = None;
    if let Some(last) = before.last()
        && let Some(n) = last.strip_prefix("checkpoint-")
    {
        checkpoint = n.parse().ok();
        before = &before[..before.len() - 1];
    }
    if before.last() == Some(&"base") && before.len() >= 2 {
        return Some(EvalContext {
            model: before[before.len() - 2].to_owned(),
            dataset: "base".into(),
            setup: "base".into(),
            run: String::new(),
            checkpoint,
        });
    }
    let mut c = context_from_run_dir(&before.join("/"));
    c.checkpoint = checkpoint;
    if c.model.is_empty() { None } else { Some(c) }
}

/// Parses `…/<Model>/<dataset>/<job_type>/<run>` (the last four components).
pub fn context_from_run_dir(dir: &str) -> EvalContext {
    let comps: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    let n = comps.len();
    if n >= 4 {
        EvalContext {
            model: comps[n - 4].into(),
            dataset: comps[n - 3].into(),
            setup: comps[n - 2].into(),
            run: comps[n - 1].into(),
            checkpoint: None,
        }
    } else {
        EvalContext {
            run: comps.last().map(|s| (*s).to_owned()).unwrap_or_default(),
            ..EvalContext::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_paths_parse_into_contexts() {
        let c = context_from_eval_path("res/Qwen2.5-Math-7B/deepscaler/steering/seed-0_lr-0.01/checkpoint-314/temp_1.0_top_p_1.0/eval_seed-2/math500.summary.json").unwrap();
        assert_eq!(
            (
                c.model.as_str(),
                c.dataset.as_str(),
                c.setup.as_str(),
                c.run.as_str(),
                c.checkpoint
            ),
            (
                "Qwen2.5-Math-7B",
                "deepscaler",
                "steering",
                "seed-0_lr-0.01",
                Some(314)
            )
        );
        let b = context_from_eval_path(
            "Qwen2.5-1.5B/base/temp_0.0_top_p_1.0/eval_seed-0/aime24.summary.json",
        )
        .unwrap();
        assert_eq!(
            (b.model.as_str(), b.setup.as_str(), b.checkpoint),
            ("Qwen2.5-1.5B", "base", None)
        );
        assert!(context_from_eval_path("x/y.summary.json").is_none());
    }

    #[test]
    fn files_are_classified_and_bad_ones_reported_without_stopping_the_rest() {
        let files: Vec<(String, &[u8])> = vec![
            (
                "a/metrics.jsonl".into(),
                b"{\"step\":1,\"reward_mean\":0.5,\"loss\":0.1}\n{\"st",
            ),
            (
                "exp/layers.json".into(),
                br#"{"type":"layers","format_version":2}"#,
            ),
            ("exp/config.json".into(), br#"{"learning_rate":0.1}"#),
            (
                "m/base/temp_0.0_top_p_1.0/eval_seed-0/math500.summary.json".into(),
                b"{trunc",
            ),
            (
                "m/base/temp_0.0_top_p_1.0/eval_seed-0/math500.jsonl".into(),
                b"",
            ),
        ];
        let idx = ResultsIndex::from_files(files);
        assert_eq!(idx.training_runs["a"].lines.len(), 1);
        assert_eq!(idx.record_files.len(), 1);
        assert!(idx.experiments.is_empty());
        let problems: Vec<&String> = idx.problems.keys().collect();
        assert_eq!(
            problems,
            [
                "a/metrics.jsonl",
                "exp/layers.json",
                "m/base/temp_0.0_top_p_1.0/eval_seed-0/math500.summary.json"
            ]
        );
        assert!(idx.problems["exp/layers.json"].contains("format_version 2"));
        assert_eq!(parse_seed("seed-12_lr-0.1"), Some(12));
    }
}
