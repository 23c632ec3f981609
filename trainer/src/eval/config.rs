//! `configs/eval/<model>.yml`: the evaluation protocol of a model (reference §4.1), every key
//! optional except `benchmarks`, unknown keys refused.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EvalError;
use crate::data::{Benchmark, ColumnMapping};
use crate::model::prompt::TemplateType;

/// The evaluation config of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// The model's name in result paths (`Qwen2.5-Math-1.5B`); default: the model folder's name.
    #[serde(default)]
    pub model_name: Option<String>,
    /// The eval seed (`--seed` overrides).
    #[serde(default)]
    pub seed: u64,
    /// Prompt plus completion tokens; the budget of a completion is `max_seq_length − prompt
    /// length` (4096 for Qwen2.5-Math and OLMo2, 32768 for Qwen2.5 and Llama 3.1 in the reference).
    #[serde(default = "default_max_seq_length")]
    pub max_seq_length: usize,
    /// Caps the budget further (not in the reference; for quick runs and benchmarks).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// `qwen_math` (chat template, or the plain qwen_math text) or `r1`.
    #[serde(default)]
    pub template: TemplateType,
    /// Append the single token `To` after the prompt.
    #[serde(default)]
    pub append_to: bool,
    /// Sampling temperature; 0 is greedy with one sample per problem.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus sampling threshold.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Keep only the k most likely tokens (`null`: all, the reference's −1).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Samples per problem of the other benchmarks (reference `num_generations`).
    #[serde(default = "one_usize")]
    pub num_generations: usize,
    /// Samples per problem of the small sets (reference `small_datasets_num_generations`).
    #[serde(default = "default_small_generations")]
    pub small_datasets_num_generations: usize,
    /// The small sets (benchmark ids).
    #[serde(default = "default_small_datasets")]
    pub small_datasets: Vec<String>,
    /// Rows (problems × samples) decoded together.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Folder of the benchmark files named `<id>.jsonl`, for entries without `path` (relative
    /// paths are relative to the working directory).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Results root (`--results` overrides; a `--checkpoint` in the results layout writes next
    /// to itself).
    #[serde(default = "default_results")]
    pub results: PathBuf,
    /// Keep the generated text in the records.
    #[serde(default = "yes")]
    pub save_text: bool,
    /// The token that ends a completion (one token, e.g. `<|im_end|>`; reference `stop_token`);
    /// default: the model's `generation_config.json` EOS ids.
    #[serde(default)]
    pub stop_token: Option<String>,
    /// The benchmarks, in evaluation order.
    pub benchmarks: Vec<BenchmarkEntry>,
}

/// One benchmark of a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkEntry {
    /// The benchmark id, also the stem of its result files.
    pub id: String,
    /// Files or dataset folders, concatenated (default: `<data_dir>/<id>.jsonl`).
    #[serde(default)]
    pub path: Vec<PathBuf>,
    /// The split of a dataset folder (default: the preset's, else `test`).
    #[serde(default)]
    pub split: Option<String>,
    /// Samples per problem (default: by the small-set rule).
    #[serde(default)]
    pub samples: Option<usize>,
    /// Column mapping (default: the preset's).
    #[serde(default)]
    pub columns: Option<ColumnMapping>,
}

fn default_max_seq_length() -> usize {
    4096
}
fn one() -> f64 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_small_generations() -> usize {
    32
}
fn default_small_datasets() -> Vec<String> {
    ["aime24", "aime25", "amc23"].map(str::to_owned).to_vec()
}
fn default_batch_rows() -> usize {
    64
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("../shared/data/benchmarks")
}
fn default_results() -> PathBuf {
    PathBuf::from("results")
}

impl EvalConfig {
    /// Reads and checks a YAML config; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        Self::from_yaml(&text, path)
    }

    /// Parses and checks YAML text (`path` is for messages).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, EvalError> {
        let config: Self = serde_norway::from_str(text)
            .map_err(|e| EvalError::Config { path: path.to_owned(), message: e.to_string() })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), EvalError> {
        let bad = |key: &str, expected: &str, found: String| EvalError::Config {
            path: path.to_owned(),
            message: format!("key `{key}`: expected {expected}, found {found}"),
        };
        if self.benchmarks.is_empty() {
            return Err(bad("benchmarks", "at least one benchmark", "an empty list".into()));
        }
        if self.max_seq_length < 2 {
            return Err(bad("max_seq_length", "at least 2", self.max_seq_length.to_string()));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(bad("temperature", "a number ≥ 0", self.temperature.to_string()));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(bad("top_p", "a number in (0, 1]", self.top_p.to_string()));
        }
        for (key, v) in [
            ("num_generations", self.num_generations),
            ("small_datasets_num_generations", self.small_datasets_num_generations),
            ("batch_rows", self.batch_rows),
        ] {
            if v == 0 {
                return Err(bad(key, "at least 1", "0".into()));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, b) in self.benchmarks.iter().enumerate() {
            if b.id.is_empty() || b.id.contains(['/', '\\', '.']) {
                let expected = "a file-name stem (no `/`, `\\` or `.`)";
                return Err(bad(&format!("benchmarks[{i}].id"), expected, format!("`{}`", b.id)));
            }
            if !seen.insert(&b.id) {
                return Err(bad(&format!("benchmarks[{i}].id"), "each benchmark once", format!("`{}` again", b.id)));
            }
            if b.samples == Some(0) {
                return Err(bad(&format!("benchmarks[{i}].samples"), "at least 1", "0".into()));
            }
        }
        Ok(())
    }

    /// Samples per problem of a benchmark: 1 when greedy; else the entry's `samples`, else 32 for
    /// the small sets and 1 for the others (reference §4.2).
    pub fn samples_for(&self, entry: &BenchmarkEntry, temperature: f64) -> usize {
        if temperature == 0.0 {
            return 1;
        }
        entry.samples.unwrap_or(if self.small_datasets.contains(&entry.id) {
            self.small_datasets_num_generations
        } else {
            self.num_generations
        })
    }

    /// The files of a benchmark entry.
    pub fn paths_for(&self, entry: &BenchmarkEntry) -> Vec<PathBuf> {
        if entry.path.is_empty() { vec![self.data_dir.join(format!("{}.jsonl", entry.id))] } else { entry.path.clone() }
    }

    /// The split and column mapping of a benchmark entry (its own, else its preset's).
    pub fn split_and_mapping(entry: &BenchmarkEntry) -> (String, ColumnMapping) {
        let preset = Benchmark::find(&entry.id);
        let split = entry.split.clone().unwrap_or_else(|| preset.map_or("test", |b| b.split).to_owned());
        let mapping = entry.columns.clone().unwrap_or_else(|| preset.map(|b| b.mapping()).unwrap_or_default());
        (split, mapping)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference_protocol() {
        let c = EvalConfig::from_yaml("benchmarks:\n  - id: aime24\n  - id: math500\n", Path::new("c.yml")).unwrap();
        assert_eq!((c.max_seq_length, c.temperature, c.top_p, c.top_k), (4096, 1.0, 1.0, None));
        assert_eq!(c.samples_for(&c.benchmarks[0], 1.0), 32);
        assert_eq!(c.samples_for(&c.benchmarks[1], 1.0), 1);
        assert_eq!(c.samples_for(&c.benchmarks[0], 0.0), 1);
        assert_eq!(c.paths_for(&c.benchmarks[1]), [PathBuf::from("../shared/data/benchmarks/math500.jsonl")]);
        let (split, mapping) = EvalConfig::split_and_mapping(&c.benchmarks[0]);
        assert_eq!((split.as_str(), mapping), ("train", ColumnMapping::default()));
    }

    #[test]
    fn unknown_and_invalid_keys_are_named() {
        let e = EvalConfig::from_yaml("benchmarks: [{id: x}]\ntemprature: 1\n", Path::new("c.yml")).unwrap_err();
        assert!(e.to_string().starts_with("c.yml: unknown field `temprature`"), "{e}");
        let e = EvalConfig::from_yaml("benchmarks: [{id: x, sample: 2}]\n", Path::new("c.yml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `sample`"), "{e}");
        let e = EvalConfig::from_yaml("benchmarks: [{id: x}]\ntop_p: 0\n", Path::new("c.yml")).unwrap_err();
        assert_eq!(e.to_string(), "c.yml: key `top_p`: expected a number in (0, 1], found 0");
        let e = EvalConfig::from_yaml("benchmarks: [{id: x}, {id: x}]\n", Path::new("c.yml")).unwrap_err();
        assert!(e.to_string().contains("key `benchmarks[1].id`: expected each benchmark once"), "{e}");
        let e = EvalConfig::from_yaml("max_seq_length: many\nbenchmarks: [{id: x}]\n", Path::new("c.yml")).unwrap_err();
        assert!(e.to_string().contains("max_seq_length"), "{e}");
    }
}
