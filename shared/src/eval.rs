//! Evaluation output: `<bench>.jsonl` (one [`EvalRecord`] per problem) and
//! `<bench>.summary.json` (one [`EvalSummary`]), written under
//! `<results>/<Model>/<dataset>/<job_type>/<run>/checkpoint-<n>/temp_<T>_top_p_<P>/eval_seed-<k>/`.

use serde::{Deserialize, Serialize};

use crate::version::{FormatError, Versioned, current_version};

/// One sampled completion of a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSample {
    /// The generated text (may be omitted to save space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Generated tokens (the reference's `gen_length`).
    pub num_tokens: u32,
    /// Whether the verifier accepted the answer (the reference's `reward == 1`).
    pub correct: bool,
    /// Whether generation ended on the stop token (not on the token budget).
    pub finished_with_stop: bool,
    /// Sum of the sampled tokens' log-probabilities.
    pub logprob: f64,
}

/// One line of `<bench>.jsonl`: a problem and its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Always [`crate::version::FORMAT_VERSION`] when written.
    #[serde(default = "current_version")]
    pub format_version: u32,
    /// The problem's index in the benchmark file (the reference's `ds_idx`).
    pub id: u64,
    /// The prompt as given to the model (after the template).
    pub prompt: String,
    /// The gold answer.
    pub answer: String,
    /// The samples, in generation order; the first is the "PASS@1" sample.
    pub samples: Vec<EvalSample>,
}

/// Where an evaluation came from: written into every summary so the viewer does not need to parse
/// paths (a path parser exists as a fallback in [`crate::results`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct EvalContext {
    /// The base model's name, e.g. `Qwen2.5-Math-7B`.
    pub model: String,
    /// The training dataset of the run (`deepscaler`), or `base` for an untrained model.
    #[serde(default)]
    pub dataset: String,
    /// The training setup (`steering`, `lora`, `full_model`, ...), or `base`.
    pub setup: String,
    /// The run directory name, e.g. `seed-0_lr-0.01`, or a variant name such as `steering-layer-5`.
    #[serde(default)]
    pub run: String,
    /// The training checkpoint step, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// `<bench>.summary.json`: the numbers of one benchmark at one eval seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    /// Format version (1).
    pub format_version: u32,
    /// The benchmark id (`math500`, `aime24`, ...; see [`crate::benchmarks`]).
    pub benchmark: String,
    /// Which model/run/checkpoint was evaluated.
    #[serde(default)]
    pub context: EvalContext,
    /// The eval seed.
    pub seed: u64,
    /// Sampling temperature (0 = greedy).
    pub temperature: f64,
    /// Top-p.
    pub top_p: f64,
    /// Problems evaluated.
    pub num_problems: u32,
    /// Samples per problem (32 for the small sets, 1 otherwise, by default).
    pub samples_per_problem: u32,
    /// First-sample accuracy in [0, 1] (reference "PASS@1").
    pub pass_at_1: f64,
    /// Mean over problems of the fraction of correct samples, in [0, 1] (reference "AVG@n").
    pub avg_at_n: f64,
    /// Mean token count over all samples.
    pub mean_length: f64,
    /// Mean token count of correct samples (`None` when there are none).
    #[serde(default)]
    pub mean_length_correct: Option<f64>,
    /// Mean token count of incorrect samples (`None` when there are none).
    #[serde(default)]
    pub mean_length_incorrect: Option<f64>,
    /// Longest correct sample (`None` when there are none).
    #[serde(default)]
    pub max_length_correct: Option<u32>,
    /// Fraction of samples that ended on the stop token.
    pub stop_rate: f64,
    /// Total samples.
    pub num_samples: u64,
    /// Correct samples.
    pub num_correct: u64,
}

impl Versioned for EvalSummary {}

impl EvalSummary {
    /// Computes the summary of a benchmark's records (the numbers of reference §4.6).
    /// Problems without samples count as incorrect for pass@1 and avg@n.
    pub fn from_records(
        benchmark: &str,
        context: EvalContext,
        seed: u64,
        temperature: f64,
        top_p: f64,
        records: &[EvalRecord],
    ) -> Self {
        let n = records.len().max(1) as f64;
        let pass_at_1 = records
            .iter()
            .filter(|r| r.samples.first().is_some_and(|s| s.correct))
            .count() as f64
            / n;
        let avg_at_n = records
            .iter()
            .map(|r| {
                if r.samples.is_empty() {
                    0.0
                } else {
                    r.samples.iter().filter(|s| s.correct).count() as f64 / r.samples.len() as f64
                }
            })
            .sum::<f64>()
            / n;
        let all: Vec<&EvalSample> = records.iter().flat_map(|r| &r.samples).collect();
        let lens = |pred: &dyn Fn(&EvalSample) -> bool| -> Vec<f64> {
            all.iter()
                .filter(|s| pred(s))
                .map(|s| f64::from(s.num_tokens))
                .collect()
        };
        let correct = lens(&|s| s.correct);
        let incorrect = lens(&|s| !s.correct);
        let num_samples = all.len() as u64;
        Self {
            format_version: current_version(),
            benchmark: benchmark.to_owned(),
            context,
            seed,
            temperature,
            top_p,
            num_problems: records.len() as u32,
            samples_per_problem: records.iter().map(|r| r.samples.len()).max().unwrap_or(0) as u32,
            pass_at_1,
            avg_at_n,
            mean_length: crate::stats::mean(&lens(&|_| true)).unwrap_or(0.0),
            mean_length_correct: crate::stats::mean(&correct),
            mean_length_incorrect: crate::stats::mean(&incorrect),
            max_length_correct: all.iter().filter(|s| s.correct).map(|s| s.num_tokens).max(),
            stop_rate: if num_samples == 0 {
                0.0
            } else {
                all.iter().filter(|s| s.finished_with_stop).count() as f64 / num_samples as f64
            },
            num_samples,
            num_correct: correct.len() as u64,
        }
    }
}

/// A float as Python's `str()` / `repr()` writes it: the shortest digits that read back,
/// positional for decimal exponents in [−4, 16) with `.0` on integral values (`1.0`, `0.95`,
/// `27.0`, `0.0005`), else scientific with a sign and at least two exponent digits (`5e-05`,
/// `1e+16`); `inf`, `nan` as Python. Used for sampling folders, answers cast to text, and the
/// learning rate in run names (reference §2.3).
pub fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if x == 0.0 || (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// The folder of a sampling setting, as the reference names it: `temp_1.0_top_p_1.0`.
pub fn sampling_dir(temperature: f64, top_p: f64) -> String {
    format!("temp_{}_top_p_{}", python_float(temperature), python_float(top_p))
}

/// The folder of an eval seed: `eval_seed-3`.
pub fn seed_dir(seed: u64) -> String {
    format!("eval_seed-{seed}")
}

/// The folder of one evaluation, relative to a results root (the inverse of
/// [`crate::results::context_from_eval_path`]):
/// `<model>/<dataset>/<setup>/<run>/checkpoint-<n>/temp_<T>_top_p_<P>/eval_seed-<k>` for runs
/// (without `checkpoint-<n>` when there is none), `<model>/base/temp_<T>_top_p_<P>/eval_seed-<k>`
/// for a base model (setup `base`; a non-empty run adds a folder after `base`).
pub fn eval_dir(context: &EvalContext, temperature: f64, top_p: f64, seed: u64) -> String {
    let mut parts: Vec<String> = vec![context.model.clone()];
    if context.setup == "base" {
        parts.push("base".into());
        if !context.run.is_empty() {
            parts.push(context.run.clone());
        }
    } else {
        parts.extend([context.dataset.clone(), context.setup.clone(), context.run.clone()]);
        if let Some(c) = context.checkpoint {
            parts.push(format!("checkpoint-{c}"));
        }
    }
    parts.push(sampling_dir(temperature, top_p));
    parts.push(seed_dir(seed));
    parts.join("/")
}

/// The records of a `<bench>.jsonl` file that could be read, and what could not.
#[derive(Debug, Clone, Default)]
pub struct RecordsRead {
    /// Records that parsed, in file order.
    pub records: Vec<EvalRecord>,
    /// One message per line that did not parse ("line 7: ...").
    pub errors: Vec<String>,
}

/// Reads `<bench>.jsonl` leniently: a bad line (e.g. a truncated last line of a running
/// evaluation) is reported and skipped; blank lines are ignored.
pub fn read_records(bytes: &[u8], what: &str) -> RecordsRead {
    let (records, errors) = crate::version::read_json_lines(bytes, what, EvalRecord::from_json);
    RecordsRead { records, errors }
}

impl Versioned for EvalRecord {
    fn from_json(bytes: &[u8], what: &str) -> Result<Self, FormatError> {
        // A line may omit `format_version` (it defaults to 1); a present one is checked.
        crate::version::parse_versioned(bytes, what, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(correct: bool, num_tokens: u32, stop: bool) -> EvalSample {
        EvalSample {
            text: None,
            num_tokens,
            correct,
            finished_with_stop: stop,
            logprob: -1.0,
        }
    }

    fn record(id: u64, samples: Vec<EvalSample>) -> EvalRecord {
        EvalRecord {
            format_version: 1,
            id,
            prompt: "p".into(),
            answer: "a".into(),
            samples,
        }
    }

    #[test]
    fn summary_numbers_match_a_hand_computed_example() {
        // problem 0: samples [correct 10, wrong 20]; problem 1: [wrong 30 (no stop), correct 40]
        let records = vec![
            record(0, vec![sample(true, 10, true), sample(false, 20, true)]),
            record(1, vec![sample(false, 30, false), sample(true, 40, true)]),
        ];
        let s = EvalSummary::from_records("aime24", EvalContext::default(), 0, 1.0, 1.0, &records);
        assert_eq!(s.pass_at_1, 0.5); // only problem 0's first sample is correct
        assert_eq!(s.avg_at_n, 0.5); // (1/2 + 1/2) / 2
        assert_eq!(s.mean_length, 25.0);
        assert_eq!(s.mean_length_correct, Some(25.0));
        assert_eq!(s.mean_length_incorrect, Some(25.0));
        assert_eq!(s.max_length_correct, Some(40));
        assert_eq!(s.stop_rate, 0.75);
        assert_eq!(
            (s.num_samples, s.num_correct, s.samples_per_problem),
            (4, 2, 2)
        );
    }

    #[test]
    fn sampling_folders_use_python_float_formatting() {
        assert_eq!(sampling_dir(1.0, 1.0), "temp_1.0_top_p_1.0");
        assert_eq!(sampling_dir(0.0, 0.95), "temp_0.0_top_p_0.95");
        assert_eq!(python_float(0.6), "0.6");
        assert_eq!(seed_dir(2), "eval_seed-2");
    }

    #[test]
    fn python_float_matches_python_for_the_reference_learning_rates_and_extremes() {
        let cases = [
            (1e-3, "0.001"),
            (5e-4, "0.0005"),
            (1e-4, "0.0001"),
            (5e-5, "5e-05"),
            (1e-6, "1e-06"),
            (3e-2, "0.03"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (2e-6, "2e-06"),
            (8e-5, "8e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123.25, "123.25"),
            (27.0, "27.0"),
            (0.0, "0.0"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float(x), want, "{x}");
        }
    }

    #[test]
    fn eval_folders_parse_back_into_their_context() {
        let run = EvalContext {
            model: "Qwen2.5-Math-1.5B".into(),
            dataset: "deepscaler".into(),
            setup: "steering".into(),
            run: "seed-0_lr-0.01".into(),
            checkpoint: Some(314),
        };
        let dir = eval_dir(&run, 1.0, 1.0, 2);
        assert_eq!(dir, "Qwen2.5-Math-1.5B/deepscaler/steering/seed-0_lr-0.01/checkpoint-314/temp_1.0_top_p_1.0/eval_seed-2");
        assert_eq!(crate::results::context_from_eval_path(&format!("{dir}/math500.summary.json")), Some(run));
        let base = EvalContext { model: "M".into(), dataset: "base".into(), setup: "base".into(), ..Default::default() };
        let dir = eval_dir(&base, 0.0, 1.0, 0);
        assert_eq!(dir, "M/base/temp_0.0_top_p_1.0/eval_seed-0");
        assert_eq!(crate::results::context_from_eval_path(&format!("{dir}/x.summary.json")), Some(base));
    }

    #[test]
    fn a_truncated_last_line_is_reported_and_the_rest_is_kept() {
        let good = serde_json::to_string(&record(0, vec![sample(true, 5, true)])).unwrap();
        let bytes = format!("{good}\n{good}\n{}", &good[..good.len() / 2]);
        let read = read_records(bytes.as_bytes(), "math500.jsonl");
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.errors.len(), 1);
        assert!(read.errors[0].contains("line 3"), "{:?}", read.errors);
    }

    #[test]
    fn a_summary_from_a_newer_format_is_refused() {
        let s = EvalSummary::from_records("math500", EvalContext::default(), 0, 0.0, 1.0, &[]);
        let mut v = serde_json::to_value(&s).unwrap();
        v["format_version"] = 99.into();
        let err = EvalSummary::from_json(v.to_string().as_bytes(), "s.json").unwrap_err();
        assert!(matches!(
            err,
            FormatError::UnsupportedVersion { found: 99, .. }
        ));
    }
}
