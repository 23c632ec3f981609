//! Math problems from local files: the benchmark JSONL files of `shared/data/benchmarks`, Parquet
//! files, Arrow IPC files and Hugging Face dataset directories, mapped to one [`Problem`] type
//! that evaluation and training share.
//!
//! # Sources
//! * `*.jsonl` (or `*.json` with one object per line, or one array of objects): the schema of
//!   `shared/data/README.md` (`problem`, `answer`, optional `solution`; other keys ignored).
//! * `*.parquet`: any flat schema; list columns are read as lists (OlympiadBench's `solution`).
//! * `*.arrow`: Arrow IPC stream files (what `datasets.save_to_disk` writes) or IPC files.
//! * A directory: a `save_to_disk` dataset (`dataset_dict.json` with one folder per split, or
//!   `state.json` + `data-*.arrow`), or a hub snapshot (`*.parquet`, `*.arrow` or `*.jsonl` files
//!   whose path names the split, such as `data/test-00000-of-00001.parquet`; files that name no
//!   split at all form the requested split, as the hub's loader treats them).
//!
//! # Mapping (reference §3.2)
//! A [`ColumnMapping`] names the columns tried in order for the problem, answer and solution.
//! The default covers every benchmark of the reference: `problem`/`Problem`/`question`,
//! `answer`/`Answer`, `solution`/`Solution`; a list-valued solution gives its first element
//! (OlympiadBench's `solution[0]`); MinervaMath's preset takes the answer from the last
//! `\boxed{}` of the solution. Answers are cast to strings like Python's `str` (`27`, `27.0`),
//! and a boxed answer is unwrapped (its last box, with [`crate::reward::extract`]). Rows whose
//! answer is empty are dropped; [`Problem::index`] is the position among the rows kept (the
//! reference's `idx`). [`Benchmark`] holds the presets (file stem, split, mapping) per id.
//!
//! # Helpers for training
//! [`subsample`] (seeded, without replacement; reference §2.4 step 4), [`shuffle`] (seeded;
//! step 6) and [`retain_short_prompts`] (the length filter of step 6). The permutations come
//! from ChaCha8 streams: deterministic, but not numpy's.
//!
//! Every error names the file and the row (or line) and says what was expected and found.
//!
//! ```no_run
//! use trainer::data::{Benchmark, load};
//! let bench = Benchmark::find("math500").expect("a preset");
//! let problems = load(&["../shared/data/benchmarks/math500.jsonl".into()], bench.split, &bench.mapping())?;
//! assert_eq!(problems[0].index, 0);
//! # Ok::<(), trainer::data::DataError>(())
//! ```

mod arrow;
mod columnar;
mod hf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::reward::extract::{box_contents, last_boxed_only_string};

pub use hf::data_files;

/// One math problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Position among the rows kept (after rows with empty answers are dropped): the reference's
    /// `idx` / `ds_idx`, and the `id` of evaluation records.
    pub index: usize,
    /// The problem statement.
    pub problem: String,
    /// The gold answer, bare (no `\boxed{}`).
    pub answer: String,
    /// A reference solution (empty when the source has none).
    pub solution: String,
}

/// Where a row came from, for error messages: `file: line 7` (JSONL) or `file: row 7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRef {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (JSONL) or row number within the file.
    pub number: usize,
    /// Whether `number` is a line of a text file.
    pub is_line: bool,
}

impl std::fmt::Display for RowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.is_line { "line" } else { "row" };
        write!(f, "{}: {what} {}", self.path.display(), self.number)
    }
}

/// Errors of loading problems.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not in the format its name promises.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A row is not valid JSON or not an object.
    #[error("{at}: {message}")]
    Row {
        /// The row.
        at: RowRef,
        /// What is wrong.
        message: String,
    },
    /// A row has none of the columns a field can come from.
    #[error("{at}: expected a column {} for the {field}, found columns {}", quoted(.expected), quoted(.found))]
    MissingColumn {
        /// The row.
        at: RowRef,
        /// `problem`, `answer` or `solution`.
        field: &'static str,
        /// The columns tried.
        expected: Vec<String>,
        /// The columns of the row.
        found: Vec<String>,
    },
    /// A value has the wrong type.
    #[error("{at}: column `{column}`: expected {expected}, found {found}")]
    InvalidValue {
        /// The row.
        at: RowRef,
        /// The column.
        column: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A directory holds no data file for the split asked for.
    #[error("{path}: no data files for split `{split}`; splits found: {}", splits(.found))]
    NoSplit {
        /// The directory.
        path: PathBuf,
        /// The split asked for.
        split: String,
        /// The splits present.
        found: Vec<String>,
    },
    /// A source has no problem left.
    #[error("{path}: no problems (every row was empty or had an empty answer)")]
    Empty {
        /// The file or directory.
        path: PathBuf,
    },
}

fn splits(found: &[String]) -> String {
    if found.is_empty() { "none".to_owned() } else { found.join(", ") }
}

fn quoted(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    if q.is_empty() { "(none)".into() } else { q.join(", ") }
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), source }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        Self::Format { path: path.to_owned(), message: message.into() }
    }
}

/// A cell of a row, whatever the file format.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing or null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// An unsigned integer that does not fit `i64`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// Anything else (nested objects, binary, dates), named by its type.
    Other(String),
}

impl Value {
    fn type_name(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(_) => "a boolean".into(),
            Value::Int(_) | Value::UInt(_) => "an integer".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a string".into(),
            Value::List(_) => "a list".into(),
            Value::Other(t) => t.clone(),
        }
    }

    /// The value as Python's `str()` writes it, for strings and numbers (`None` for null).
    fn to_text(&self) -> Option<std::result::Result<String, String>> {
        match self {
            Value::Null => None,
            Value::Str(s) => Some(Ok(s.clone())),
            Value::Int(i) => Some(Ok(i.to_string())),
            Value::UInt(u) => Some(Ok(u.to_string())),
            Value::Float(x) => Some(Ok(shared::eval::python_float(*x))),
            Value::Bool(b) => Some(Ok(if *b { "True" } else { "False" }.into())),
            other => Some(Err(other.type_name())),
        }
    }
}

/// One row: column name → value.
pub type Row = BTreeMap<String, Value>;

/// How the columns of a row become a [`Problem`] (reference §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    /// Columns tried in order for the problem statement.
    #[serde(default = "default_problem")]
    pub problem: Vec<String>,
    /// Columns tried in order for the answer.
    #[serde(default = "default_answer")]
    pub answer: Vec<String>,
    /// Columns tried in order for the solution (none present: empty solution).
    #[serde(default = "default_solution")]
    pub solution: Vec<String>,
    /// Take the answer from the last `\boxed{}` of the solution instead (MinervaMath).
    #[serde(default)]
    pub answer_from_solution: bool,
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

fn default_problem() -> Vec<String> {
    names(&["problem", "Problem", "question"])
}

fn default_answer() -> Vec<String> {
    names(&["answer", "Answer"])
}

fn default_solution() -> Vec<String> {
    names(&["solution", "Solution"])
}

impl Default for ColumnMapping {
    fn default() -> Self {
        Self {
            problem: default_problem(),
            answer: default_answer(),
            solution: default_solution(),
            answer_from_solution: false,
        }
    }
}

/// A benchmark preset: its id (the result file stem), the Hugging Face split the reference reads,
/// and how its answer is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Benchmark {
    /// The id (`math500`, `aime24`, ...; see `shared::benchmarks`), also the stem of its file in
    /// `shared/data/benchmarks`.
    pub id: &'static str,
    /// The split of the Hugging Face dataset (reference §3.2).
    pub split: &'static str,
    /// The Hugging Face id, for messages and docs.
    pub hf_id: &'static str,
    /// MinervaMath: the answer is the last `\boxed{}` of the solution.
    pub answer_from_solution: bool,
}

impl Benchmark {
    /// Every preset.
    pub const ALL: [Benchmark; 9] = [
        Self::new("aime24", "train", "Maxwell-Jia/AIME_2024", false),
        Self::new("aime25", "test", "opencompass/AIME2025", false),
        Self::new("amc23", "train", "knoveleng/AMC-23", false),
        Self::new("amc22_23", "train", "agentica-org (rllm) amc.json", false),
        Self::new("minerva_math", "train", "knoveleng/Minerva-Math", true),
        Self::new("olympiadbench", "train", "knoveleng/OlympiadBench", false),
        Self::new("math500", "test", "HuggingFaceH4/MATH-500", false),
        Self::new("gsm8k", "test", "openai/gsm8k", false),
        Self::new("math_test", "test", "hendrycks MATH test", false),
    ];

    const fn new(id: &'static str, split: &'static str, hf_id: &'static str, answer_from_solution: bool) -> Self {
        Self { id, split, hf_id, answer_from_solution }
    }

    /// The preset of an id, if there is one.
    pub fn find(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.id == id)
    }

    /// The column mapping of this benchmark.
    pub fn mapping(&self) -> ColumnMapping {
        ColumnMapping { answer_from_solution: self.answer_from_solution, ..ColumnMapping::default() }
    }
}

/// Reads the raw rows of one file or directory (see the module docs for what is accepted).
pub fn read_rows(path: &Path, split: &str) -> Result<Vec<(RowRef, Row)>, DataError> {
    if path.is_dir() {
        let mut rows = Vec::new();
        for file in data_files(path, split)? {
            rows.extend(read_file_rows(&file)?);
        }
        return Ok(rows);
    }
    read_file_rows(path)
}

fn read_file_rows(path: &Path) -> Result<Vec<(RowRef, Row)>, DataError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let numbered = |rows: Vec<Row>| -> Vec<(RowRef, Row)> {
        rows.into_iter()
            .enumerate()
            .map(|(i, r)| (RowRef { path: path.to_owned(), number: i + 1, is_line: false }, r))
            .collect()
    };
    match ext {
        "jsonl" | "json" => read_jsonl(path),
        "parquet" => Ok(numbered(columnar::read_parquet(path)?)),
        "arrow" => Ok(numbered(arrow::read_ipc(path)?)),
        _ => Err(DataError::format(
            path,
            format!("expected a .jsonl, .json, .parquet or .arrow file or a dataset directory, found extension `{ext}`"),
        )),
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<(RowRef, Row)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "json") && text.trim_start().starts_with('[') {
        return read_json_array(path, &text);
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = RowRef { path: path.to_owned(), number: i + 1, is_line: true };
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Err(DataError::Row { at, message: format!("expected a JSON object, found invalid JSON ({e})") }),
        };
        let serde_json::Value::Object(map) = value else {
            return Err(DataError::Row { at, message: format!("expected a JSON object, found {}", json_kind(&value)) });
        };
        rows.push((at, map.into_iter().map(|(k, v)| (k, from_json(v))).collect()));
    }
    Ok(rows)
}

/// A `.json` file holding one array of row objects (as some hub repositories store data).
fn read_json_array(path: &Path, text: &str) -> Result<Vec<(RowRef, Row)>, DataError> {
    let items: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| DataError::format(path, format!("expected JSON lines or a JSON array of objects: {e}")))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let at = RowRef { path: path.to_owned(), number: i + 1, is_line: false };
            match value {
                serde_json::Value::Object(map) => Ok((at, map.into_iter().map(|(k, v)| (k, from_json(v))).collect())),
                other => Err(DataError::Row { at, message: format!("expected a JSON object, found {}", json_kind(&other)) }),
            }
        })
        .collect()
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(_) => Value::Other("an object".into()),
    }
}

/// Builds the problem of one row; `Ok(None)` when its answer is empty (the row is dropped).
/// `index` is left 0 (set by [`load`]).
pub fn problem_from_row(at: &RowRef, row: &Row, mapping: &ColumnMapping) -> Result<Option<Problem>, DataError> {
    let lookup = |candidates: &[String]| candidates.iter().find_map(|c| row.get_key_value(c));
    let missing = |field: &'static str, candidates: &[String]| DataError::MissingColumn {
        at: at.clone(),
        field,
        expected: candidates.to_vec(),
        found: row.keys().cloned().collect(),
    };
    let text = |column: &str, value: &Value| -> Result<Option<String>, DataError> {
        value.to_text().transpose().map_err(|found| DataError::InvalidValue {
            at: at.clone(),
            column: column.to_owned(),
            expected: "a string or a number".into(),
            found,
        })
    };
    let (problem_col, problem_value) = lookup(&mapping.problem).ok_or_else(|| missing("problem", &mapping.problem))?;
    let problem = match text(problem_col, problem_value)? {
        Some(p) if !p.trim().is_empty() => p,
        other => {
            return Err(DataError::InvalidValue {
                at: at.clone(),
                column: problem_col.clone(),
                expected: "a non-empty problem statement".into(),
                found: if other.is_some() { "an empty string".into() } else { "null".into() },
            });
        }
    };
    let solution = match lookup(&mapping.solution) {
        None if mapping.answer_from_solution => return Err(missing("solution", &mapping.solution)),
        None => String::new(),
        // OlympiadBench: a list of solutions, the first is used (reference `solution[0]`).
        Some((col, Value::List(items))) => match items.first() {
            Some(first) => text(col, first)?.unwrap_or_default(),
            None => String::new(),
        },
        Some((col, v)) => text(col, v)?.unwrap_or_default(),
    };
    let raw_answer = if mapping.answer_from_solution {
        match last_boxed_only_string(&solution) {
            Some(b) => box_contents(b).to_owned(),
            None => String::new(),
        }
    } else {
        let (col, v) = lookup(&mapping.answer).ok_or_else(|| missing("answer", &mapping.answer))?;
        text(col, v)?.unwrap_or_default()
    };
    let answer = unbox_answer(&raw_answer).map_err(|found| DataError::InvalidValue {
        at: at.clone(),
        column: "answer".into(),
        expected: "an answer without `boxed` once its last box is unwrapped".into(),
        found,
    })?;
    if answer.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(Problem { index: 0, problem, answer, solution }))
}

/// The reference's answer clean-up: if the answer still contains `boxed`, take the contents of
/// its last box; the result must not contain `boxed` (the error holds the offending answer).
pub fn unbox_answer(answer: &str) -> Result<String, String> {
    if !answer.contains("boxed") {
        return Ok(answer.to_owned());
    }
    let inner = last_boxed_only_string(answer).map(box_contents).unwrap_or(answer);
    if inner.contains("boxed") { Err(format!("`{answer}`")) } else { Ok(inner.to_owned()) }
}

/// Loads and concatenates problems from files or directories (in the order given), drops rows
/// with an empty answer, and numbers the rest from 0.
pub fn load(paths: &[PathBuf], split: &str, mapping: &ColumnMapping) -> Result<Vec<Problem>, DataError> {
    let mut problems = Vec::new();
    let mut dropped = 0usize;
    for path in paths {
        for (at, row) in read_rows(path, split)? {
            match problem_from_row(&at, &row, mapping)? {
                Some(p) => problems.push(p),
                None => dropped += 1,
            }
        }
    }
    if dropped > 0 {
        tracing::warn!(dropped, paths = ?paths, "dropped rows with an empty answer");
    }
    if problems.is_empty() {
        return Err(DataError::Empty { path: paths.first().cloned().unwrap_or_default() });
    }
    for (i, p) in problems.iter_mut().enumerate() {
        p.index = i;
    }
    Ok(problems)
}

/// `n` problems drawn without replacement with `seed` (all of them, in their order, when
/// `n ≥ len`); the draw keeps the original order of the chosen problems and their `index`.
pub fn subsample(problems: &[Problem], n: usize, seed: u64) -> Vec<Problem> {
    if n >= problems.len() {
        return problems.to_vec();
    }
    let mut positions: Vec<usize> = (0..problems.len()).collect();
    positions.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    positions.truncate(n);
    positions.sort_unstable();
    positions.into_iter().map(|i| problems[i].clone()).collect()
}

/// The problems in a seeded random order (their `index` is kept).
pub fn shuffle(problems: &mut [Problem], seed: u64) {
    problems.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
}

/// Keeps the problems whose prompt length (by `prompt_len`, e.g. the token count of the built
/// prompt) is at most `max_len` (reference §2.4 step 6); returns how many were dropped.
pub fn retain_short_prompts<E>(
    problems: &mut Vec<Problem>,
    max_len: usize,
    mut prompt_len: impl FnMut(&Problem) -> Result<usize, E>,
) -> Result<usize, E> {
    let before = problems.len();
    let mut keep = Vec::with_capacity(before);
    for p in problems.drain(..) {
        if prompt_len(&p)? <= max_len {
            keep.push(p);
        }
    }
    *problems = keep;
    Ok(before - problems.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> Row {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    fn at() -> RowRef {
        RowRef { path: "x.parquet".into(), number: 3, is_line: false }
    }

    #[test]
    fn answers_are_cast_like_python_and_boxes_unwrapped() {
        let m = ColumnMapping::default();
        let p = |answer: Value| problem_from_row(&at(), &row(&[("Problem", Value::Str("q".into())), ("Answer", answer)]), &m);
        assert_eq!(p(Value::Int(27)).unwrap().unwrap().answer, "27");
        assert_eq!(p(Value::Float(27.0)).unwrap().unwrap().answer, "27.0");
        assert_eq!(p(Value::Str("\\boxed{\\frac{1}{2}}".into())).unwrap().unwrap().answer, "\\frac{1}{2}");
        assert!(p(Value::Str("  ".into())).unwrap().is_none());
        assert!(p(Value::Null).unwrap().is_none());
        let err = p(Value::List(vec![])).unwrap_err().to_string();
        assert_eq!(err, "x.parquet: row 3: column `Answer`: expected a string or a number, found a list");
    }

    #[test]
    fn minerva_takes_the_last_box_and_olympiad_the_first_solution() {
        let minerva = Benchmark::find("minerva_math").unwrap().mapping();
        let r = row(&[
            ("problem", Value::Str("q".into())),
            ("solution", Value::Str("so \\boxed{1} then \\boxed{2.5}".into())),
        ]);
        assert_eq!(problem_from_row(&at(), &r, &minerva).unwrap().unwrap().answer, "2.5");
        let r = row(&[
            ("question", Value::Str("q".into())),
            ("answer", Value::Str("5".into())),
            ("solution", Value::List(vec![Value::Str("first".into()), Value::Str("second".into())])),
        ]);
        let p = problem_from_row(&at(), &r, &ColumnMapping::default()).unwrap().unwrap();
        assert_eq!((p.problem.as_str(), p.solution.as_str()), ("q", "first"));
    }

    #[test]
    fn a_row_without_a_problem_column_names_what_was_expected_and_found() {
        let err = problem_from_row(&at(), &row(&[("text", Value::Str("q".into()))]), &ColumnMapping::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.parquet: row 3: expected a column `problem`, `Problem`, `question` for the problem, found columns `text`"
        );
    }

    #[test]
    fn subsample_and_shuffle_are_seeded_and_keep_indices() {
        let problems: Vec<Problem> = (0..20)
            .map(|i| Problem { index: i, problem: format!("p{i}"), answer: "1".into(), solution: String::new() })
            .collect();
        let a = subsample(&problems, 5, 7);
        assert_eq!(a, subsample(&problems, 5, 7));
        assert_ne!(a, subsample(&problems, 5, 8));
        assert!(a.windows(2).all(|w| w[0].index < w[1].index));
        let mut s = problems.clone();
        shuffle(&mut s, 1);
        assert_ne!(s, problems);
        let mut sorted = s.clone();
        sorted.sort_by_key(|p| p.index);
        assert_eq!(sorted, problems);
        let mut kept = problems.clone();
        let dropped = retain_short_prompts(&mut kept, 2, |p| Ok::<_, ()>(p.problem.len())).unwrap();
        assert_eq!((dropped, kept.len()), (10, 10));
    }
}
