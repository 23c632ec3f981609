//! The demo task: chained arithmetic on small integers ("Start with 7, add 5, multiply by 3, then
//! subtract 4. What is the result?"), with solutions in three styles:
//!
//! * [`Style::Careful`]: one line per operation (`7+5=12`), then `The answer is \boxed{N}.` — correct;
//! * [`Style::Unboxed`]: the same chain, but the answer is written without `\boxed{}` — the
//!   verifier finds no answer;
//! * [`Style::Hasty`]: no chain at all, straight to `The answer is \boxed{X}.` with the value
//!   before the last operation (the last step forgotten) — wrong.
//!
//! The pretraining corpus mixes the three ([`StyleMix`]), so the base model can solve the problems
//! but does not reliably choose to; RL (and a steering vector per layer) only has to shift it to the
//! careful style.
//!
//! The problem space is split by a hash of the problem text ([`Split::of`]), so a train and a test
//! problem can never be equal, whatever the seeds and sizes. Rows are written in the format of
//! `shared/data/benchmarks/*.jsonl` (`id`, `problem`, `answer`, `solution`, `source`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::demo::fnv1a;
use crate::error::{Error, Result};

/// Largest value any intermediate result may take.
pub const MAX_VALUE: u32 = 99;

/// One in `TEST_BUCKETS` problems (by hash of the text) belongs to the test split.
const TEST_BUCKETS: u64 = 8;

/// One arithmetic operation with its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `+ n`.
    Add(u32),
    /// `- n`.
    Sub(u32),
    /// `* n`.
    Mul(u32),
}

impl Op {
    /// The result of applying the operation to `x`, if it stays within `0..=MAX_VALUE`.
    pub fn apply(self, x: u32) -> Option<u32> {
        let y = match self {
            Self::Add(n) => x.checked_add(n)?,
            Self::Sub(n) => x.checked_sub(n)?,
            Self::Mul(n) => x.checked_mul(n)?,
        };
        (y <= MAX_VALUE).then_some(y)
    }

    /// The operator symbol and the operand.
    fn symbol(self) -> (&'static str, u32) {
        match self {
            Self::Add(n) => ("+", n),
            Self::Sub(n) => ("-", n),
            Self::Mul(n) => ("*", n),
        }
    }

    /// The instruction in the problem text ("add 5", "subtract 4", "multiply by 3").
    fn phrase(self) -> String {
        match self {
            Self::Add(n) => format!("add {n}"),
            Self::Sub(n) => format!("subtract {n}"),
            Self::Mul(n) => format!("multiply by {n}"),
        }
    }
}

/// A problem: a start value and two or three operations applied left to right; every
/// intermediate value lies in `0..=MAX_VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// The value to start with.
    pub start: u32,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// How a solution is written (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Full chain of thought, boxed correct answer.
    Careful,
    /// Full chain of thought, answer not boxed.
    Unboxed,
    /// No chain of thought, boxed wrong answer.
    Hasty,
}

/// Proportions of the three styles in the pretraining corpus (need not sum to one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StyleMix {
    /// Weight of [`Style::Careful`].
    pub careful: f64,
    /// Weight of [`Style::Unboxed`].
    pub unboxed: f64,
    /// Weight of [`Style::Hasty`].
    pub hasty: f64,
}

impl Default for StyleMix {
    /// The mix of the committed demo model.
    fn default() -> Self {
        Self { careful: 0.3, unboxed: 0.15, hasty: 0.55 }
    }
}

impl std::fmt::Display for StyleMix {
    /// `careful,unboxed,hasty`, the form [`StyleMix::from_str`](std::str::FromStr) reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{}", self.careful, self.unboxed, self.hasty)
    }
}

impl std::str::FromStr for StyleMix {
    type Err = Error;

    /// Reads `careful,unboxed,hasty` weights (validated).
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::InvalidArgument(format!("style mix {text:?}: expected three weights careful,unboxed,hasty ({why})"))
        };
        let weights = text
            .split(',')
            .map(|w| w.trim().parse::<f64>().map_err(|e| bad(e.to_string())))
            .collect::<Result<Vec<f64>>>()?;
        let [careful, unboxed, hasty] = weights[..] else {
            return Err(bad(format!("found {}", weights.len())));
        };
        let mix = Self { careful, unboxed, hasty };
        mix.validate()?;
        Ok(mix)
    }
}

impl StyleMix {
    /// Errors unless the weights are finite, non-negative and not all zero.
    pub fn validate(&self) -> Result<()> {
        let w = [self.careful, self.unboxed, self.hasty];
        if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
            return Err(Error::InvalidArgument(format!(
                "style mix: weights must be finite, non-negative and not all zero, found {self:?}"
            )));
        }
        Ok(())
    }

    /// Draws a style with these proportions.
    pub fn sample(&self, rng: &mut impl Rng) -> Style {
        let total = self.careful + self.unboxed + self.hasty;
        let u = rng.random::<f64>() * total;
        if u < self.careful {
            Style::Careful
        } else if u < self.careful + self.unboxed {
            Style::Unboxed
        } else {
            Style::Hasty
        }
    }
}

impl Problem {
    /// Draws a random problem (two or three operations; operands 2–9, factors 2–5; start 1–20).
    pub fn random(rng: &mut impl Rng) -> Self {
        let start = rng.random_range(1..=20);
        let num_ops = rng.random_range(2..=3);
        let mut ops = Vec::with_capacity(num_ops);
        let mut value = start;
        while ops.len() < num_ops {
            let op = match rng.random_range(0..3) {
                0 => Op::Add(rng.random_range(2..=9)),
                1 => Op::Sub(rng.random_range(2..=9)),
                _ => Op::Mul(rng.random_range(2..=5)),
            };
            if let Some(next) = op.apply(value) {
                ops.push(op);
                value = next;
            }
        }
        Self { start, ops }
    }

    /// The problem statement.
    pub fn text(&self) -> String {
        let phrases: Vec<String> = self.ops.iter().map(|op| op.phrase()).collect();
        let (last, first) = phrases.split_last().map_or((String::new(), &[][..]), |(l, f)| (l.clone(), f));
        let mut text = format!("Start with {}", self.start);
        for p in first {
            text.push_str(&format!(", {p}"));
        }
        text.push_str(&format!(", then {last}. What is the result?"));
        text
    }

    /// The value after each operation (`ops.len()` values). For a problem of [`Problem::random`]
    /// every value lies within `0..=MAX_VALUE`; an operation that would leave that range (only
    /// in a hand-made problem) keeps the value unchanged.
    pub fn values(&self) -> Vec<u32> {
        let mut x = self.start;
        self.ops
            .iter()
            .map(|op| {
                x = op.apply(x).unwrap_or(x);
                x
            })
            .collect()
    }

    /// The correct result.
    pub fn answer(&self) -> u32 {
        self.values().last().copied().unwrap_or(self.start)
    }

    /// The answer a hasty solution gives: the value before the last operation (one more than the
    /// answer if that happens to be the answer), never the correct one.
    pub fn hasty_answer(&self) -> u32 {
        let values = self.values();
        let before_last = values.len().checked_sub(2).map_or(self.start, |i| values[i]);
        if before_last == self.answer() { before_last + 1 } else { before_last }
    }

    /// The solution text in `style`.
    pub fn solution(&self, style: Style) -> String {
        let answer = self.answer();
        let mut chain = String::new();
        let mut x = self.start;
        for (op, y) in self.ops.iter().zip(self.values()) {
            let (symbol, n) = op.symbol();
            chain.push_str(&format!("{x}{symbol}{n}={y}\n"));
            x = y;
        }
        match style {
            Style::Careful => format!("{chain}The answer is \\boxed{{{answer}}}."),
            Style::Unboxed => format!("{chain}The answer is {answer}."),
            Style::Hasty => format!("The answer is \\boxed{{{}}}.", self.hasty_answer()),
        }
    }
}

/// The two halves of the problem space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Pretraining and RL training problems (7/8 of the space).
    Train,
    /// Held-out evaluation problems (1/8 of the space).
    Test,
}

impl Split {
    /// The split a problem belongs to, from a hash (64-bit FNV-1a) of its text: the same on every
    /// platform and Rust version.
    pub fn of(problem: &Problem) -> Self {
        let hash = fnv1a(problem.text().as_bytes());
        if hash.is_multiple_of(TEST_BUCKETS) { Self::Test } else { Self::Train }
    }

    /// `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
        }
    }

    /// The random stream of this split for `seed` (independent streams per split).
    fn rng(self, seed: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(match self {
            Self::Train => 1,
            Self::Test => 2,
        });
        rng
    }
}

/// An endless, seeded stream of problems of one split (repeats allowed): the pretraining corpus.
#[derive(Debug, Clone)]
pub struct ProblemStream {
    split: Split,
    rng: ChaCha8Rng,
}

impl ProblemStream {
    /// The stream of `split` for `seed`.
    pub fn new(split: Split, seed: u64) -> Self {
        Self { split, rng: split.rng(seed) }
    }
}

impl Iterator for ProblemStream {
    type Item = Problem;

    fn next(&mut self) -> Option<Problem> {
        loop {
            let p = Problem::random(&mut self.rng);
            if Split::of(&p) == self.split {
                return Some(p);
            }
        }
    }
}

/// `count` distinct problems of `split` drawn with `seed`, in drawing order.
pub fn distinct_problems(split: Split, seed: u64, count: usize) -> Vec<Problem> {
    let mut seen = BTreeSet::new();
    ProblemStream::new(split, seed)
        .filter(|p| seen.insert(p.text()))
        .take(count)
        .collect()
}

/// One dataset row, as in `shared/data/benchmarks/*.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRow {
    /// `demo-<split>:<index>`.
    pub id: String,
    /// The problem statement.
    pub problem: String,
    /// The gold answer (an integer).
    pub answer: String,
    /// The reference solution (careful style).
    pub solution: String,
    /// Where the row comes from (`steerlab demo task, seed S`).
    pub source: String,
}

/// The rows of `problems` (of `split`, drawn with `seed`), with careful solutions.
pub fn rows(split: Split, seed: u64, problems: &[Problem]) -> Vec<TaskRow> {
    problems
        .iter()
        .enumerate()
        .map(|(i, p)| TaskRow {
            id: format!("demo-{}:{i}", split.name()),
            problem: p.text(),
            answer: p.answer().to_string(),
            solution: p.solution(Style::Careful),
            source: format!("steerlab demo task, seed {seed}"),
        })
        .collect()
}

/// Writes rows as JSON lines (atomically).
pub fn write_jsonl(path: &Path, rows: &[TaskRow]) -> Result<()> {
    let mut text = String::new();
    for row in rows {
        let line = serde_json::to_string(row).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        text.push_str(&line);
        text.push('\n');
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// Reads rows written by [`write_jsonl`] (blank lines are skipped).
pub fn read_jsonl(path: &Path) -> Result<Vec<TaskRow>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(&line).map_err(|e| Error::InvalidValue {
            path: path.to_owned(),
            key: format!("line {}", i + 1),
            expected: "a JSON object with string fields id, problem, answer, solution, source".into(),
            found: e.to_string(),
        })?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_intermediate_value_stays_in_range_and_the_text_names_every_operation() {
        let mut stream = ProblemStream::new(Split::Train, 3);
        for p in stream.by_ref().take(500) {
            assert!((2..=3).contains(&p.ops.len()));
            assert!(p.values().iter().all(|&v| v <= MAX_VALUE));
            let text = p.text();
            assert!(text.starts_with(&format!("Start with {},", p.start)), "{text}");
            assert_eq!(text.matches(", ").count(), p.ops.len(), "{text}");
        }
    }

    #[test]
    fn solutions_follow_their_style() {
        let p = Problem { start: 7, ops: vec![Op::Add(5), Op::Mul(3), Op::Sub(4)] };
        assert_eq!(p.text(), "Start with 7, add 5, multiply by 3, then subtract 4. What is the result?");
        assert_eq!(p.solution(Style::Careful), "7+5=12\n12*3=36\n36-4=32\nThe answer is \\boxed{32}.");
        assert_eq!(p.solution(Style::Unboxed), "7+5=12\n12*3=36\n36-4=32\nThe answer is 32.");
        assert_eq!(p.solution(Style::Hasty), "The answer is \\boxed{36}.");
    }

    #[test]
    fn a_hasty_answer_is_never_the_correct_one() {
        let zero = Problem { start: 2, ops: vec![Op::Sub(2), Op::Mul(3)] };
        assert_eq!((zero.answer(), zero.hasty_answer()), (0, 1));
        for p in ProblemStream::new(Split::Test, 1).take(2000) {
            assert_ne!(p.hasty_answer(), p.answer(), "{p:?}");
        }
    }

    #[test]
    fn the_style_mix_draws_styles_in_proportion_and_rejects_bad_weights() {
        let mix = StyleMix { careful: 1.0, unboxed: 0.0, hasty: 3.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let styles: Vec<Style> = (0..4000).map(|_| mix.sample(&mut rng)).collect();
        let careful = styles.iter().filter(|&&s| s == Style::Careful).count();
        assert!(styles.iter().all(|&s| s != Style::Unboxed));
        assert!((900..1100).contains(&careful), "{careful}");
        assert!(StyleMix { careful: -1.0, ..mix }.validate().is_err());
        assert!(StyleMix { careful: 0.0, unboxed: 0.0, hasty: 0.0 }.validate().is_err());
        assert!(StyleMix::default().validate().is_ok());
        assert_eq!(StyleMix::default().to_string().parse::<StyleMix>().unwrap(), StyleMix::default());
        assert!("1,2".parse::<StyleMix>().unwrap_err().to_string().contains("found 2"));
        assert!("1,x,2".parse::<StyleMix>().is_err());
    }

    #[test]
    fn a_malformed_row_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, "{\"id\": \"a\"}\n").unwrap();
        let err = read_jsonl(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
