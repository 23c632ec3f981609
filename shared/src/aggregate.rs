//! Aggregation over eval seeds and benchmarks (reference §6.0, §6.1): per-benchmark mean ± std,
//! the paper's "Average", best-checkpoint selection and the Table-1 CSVs.
//!
//! Accuracies are reported in percent (×100), with the population std over eval seeds; lengths use
//! a NaN-ignoring mean and an n−1 std (reference §13.4 item 39).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::benchmarks::{self, AVERAGE, Headline};
use crate::eval::EvalSummary;
use crate::stats::MeanStd;

/// The numbers of one benchmark at one eval seed (a compact [`EvalSummary`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedScore {
    /// The eval seed.
    pub seed: u64,
    /// First-sample accuracy in [0, 1].
    pub pass_at_1: f64,
    /// Mean fraction of correct samples per problem, in [0, 1].
    pub avg_at_n: f64,
    /// Samples per problem.
    #[serde(default = "one")]
    pub samples_per_problem: u32,
    /// Mean length of all samples (tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_length: Option<f64>,
    /// Mean length of correct samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_length_correct: Option<f64>,
    /// Mean length of incorrect samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_length_incorrect: Option<f64>,
}

fn one() -> u32 {
    1
}

impl From<&EvalSummary> for SeedScore {
    fn from(s: &EvalSummary) -> Self {
        Self {
            seed: s.seed,
            pass_at_1: s.pass_at_1,
            avg_at_n: s.avg_at_n,
            samples_per_problem: s.samples_per_problem,
            mean_length: Some(s.mean_length),
            mean_length_correct: s.mean_length_correct,
            mean_length_incorrect: s.mean_length_incorrect,
        }
    }
}

/// Per-benchmark per-seed scores of one evaluated model variant. Keys are benchmark ids.
pub type Scores = BTreeMap<String, Vec<SeedScore>>;

/// Which number of a [`SeedScore`] a table or figure shows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The benchmark's headline accuracy (avg@n for the small sets, pass@1 otherwise), in %.
    #[default]
    Accuracy,
    /// First-sample accuracy, in %.
    PassAt1,
    /// avg@n, in %.
    AvgAtN,
    /// Mean length of all samples.
    Length,
    /// Mean length of correct samples.
    CorrectLength,
    /// Mean length of incorrect samples.
    IncorrectLength,
}

impl Metric {
    /// Every metric, in menu order.
    pub const ALL: [Metric; 6] = [
        Metric::Accuracy,
        Metric::PassAt1,
        Metric::AvgAtN,
        Metric::Length,
        Metric::CorrectLength,
        Metric::IncorrectLength,
    ];

    /// A short human name ("Mean Acc.", "Mean length", ...).
    pub fn label(self) -> &'static str {
        match self {
            Metric::Accuracy => "Mean Acc.",
            Metric::PassAt1 => "PASS@1",
            Metric::AvgAtN => "AVG@n",
            Metric::Length => "Mean length",
            Metric::CorrectLength => "Mean correct length",
            Metric::IncorrectLength => "Mean incorrect length",
        }
    }

    /// The file-name stem of its table (`accuracies`, `lens`, ...).
    pub fn file_stem(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracies",
            Metric::PassAt1 => "pass_at_1",
            Metric::AvgAtN => "avg_accuracies",
            Metric::Length => "lens",
            Metric::CorrectLength => "correct",
            Metric::IncorrectLength => "incorrect",
        }
    }

    /// Whether this is an accuracy (population std) rather than a length (n−1 std, NaN-mean).
    pub fn is_accuracy(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::PassAt1 | Metric::AvgAtN)
    }

    /// The value of one seed's score for `bench` (NaN when a length is unknown).
    pub fn value(self, bench: &str, s: &SeedScore) -> f64 {
        match self {
            Metric::Accuracy => match benchmarks::headline(bench) {
                Headline::PassAt1 => s.pass_at_1 * 100.0,
                Headline::AvgAtN => s.avg_at_n * 100.0,
            },
            Metric::PassAt1 => s.pass_at_1 * 100.0,
            Metric::AvgAtN => s.avg_at_n * 100.0,
            Metric::Length => s.mean_length.unwrap_or(f64::NAN),
            Metric::CorrectLength => s.mean_length_correct.unwrap_or(f64::NAN),
            Metric::IncorrectLength => s.mean_length_incorrect.unwrap_or(f64::NAN),
        }
    }

    fn reduce(self, xs: &[f64]) -> Option<MeanStd> {
        if self.is_accuracy() {
            MeanStd::population(xs)
        } else {
            MeanStd::sample_nan(xs)
        }
    }
}

/// The benchmarks whose per-seed mean is the "Average" of a collection of results, and the paper
/// benchmarks that are missing from it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AverageSpec {
    /// Benchmarks averaged (sorted).
    pub benches: Vec<String>,
    /// Paper benchmarks absent from the results (the Average is then over fewer than six).
    pub missing: Vec<String>,
}

impl AverageSpec {
    /// The paper's six benchmarks that occur in `present`; if none of them occurs (e.g. the demo
    /// task), every present benchmark. A conscious deviation from the reference, which drops a model
    /// unless all six exist: results without AIME 2025 still get an Average, labelled as partial.
    pub fn for_benches<'a>(present: impl IntoIterator<Item = &'a String>) -> Self {
        let present: BTreeSet<&String> = present
            .into_iter()
            .filter(|b| b.as_str() != AVERAGE)
            .collect();
        let paper: Vec<String> = benchmarks::PAPER_AVERAGE
            .iter()
            .map(|(b, _)| (*b).to_owned())
            .filter(|b| present.contains(b))
            .collect();
        if paper.is_empty() {
            Self {
                benches: present.into_iter().cloned().collect(),
                missing: vec![],
            }
        } else {
            let missing = benchmarks::PAPER_AVERAGE
                .iter()
                .map(|(b, _)| (*b).to_owned())
                .filter(|b| !present.contains(b))
                .collect();
            let mut benches = paper;
            benches.sort();
            Self { benches, missing }
        }
    }

    /// The spec for all benchmarks occurring in any of `scores`.
    pub fn for_scores<'a>(scores: impl IntoIterator<Item = &'a Scores>) -> Self {
        let present: BTreeSet<&String> = scores.into_iter().flat_map(|s| s.keys()).collect();
        Self::for_benches(present)
    }

    /// A label for figures: "Average" or "Average (5 of 6: AIME25 missing)".
    pub fn label(&self) -> String {
        if self.missing.is_empty() {
            "Average".into()
        } else {
            let names: Vec<String> = self
                .missing
                .iter()
                .map(|b| benchmarks::display_name(b))
                .collect();
            format!(
                "Average ({} of 6; missing {})",
                6 - self.missing.len(),
                names.join(", ")
            )
        }
    }
}

/// Mean ± std over seeds of `metric` on `bench` (or on the Average when `bench == "Average"`).
pub fn aggregate(
    scores: &Scores,
    bench: &str,
    metric: Metric,
    spec: &AverageSpec,
) -> Option<MeanStd> {
    metric.reduce(&per_seed(scores, bench, metric, spec)?)
}

/// The per-seed values of `metric` on `bench`, sorted by seed. For the Average: the mean over the
/// spec's benchmarks at each seed present in all of them (reference §6.0); `None` if a benchmark
/// of the spec is missing.
pub fn per_seed(
    scores: &Scores,
    bench: &str,
    metric: Metric,
    spec: &AverageSpec,
) -> Option<Vec<f64>> {
    if bench != AVERAGE {
        let mut v: Vec<&SeedScore> = scores.get(bench)?.iter().collect();
        v.sort_by_key(|s| s.seed);
        let out: Vec<f64> = v.iter().map(|s| metric.value(bench, s)).collect();
        return if out.is_empty() { None } else { Some(out) };
    }
    if spec.benches.is_empty() {
        return None;
    }
    let mut seeds: Option<BTreeSet<u64>> = None;
    for b in &spec.benches {
        let s: BTreeSet<u64> = scores.get(b)?.iter().map(|x| x.seed).collect();
        seeds = Some(match seeds {
            None => s,
            Some(prev) => prev.intersection(&s).copied().collect(),
        });
    }
    let seeds = seeds?;
    let mut out = Vec::new();
    for seed in seeds {
        let vals: Vec<f64> = spec
            .benches
            .iter()
            .filter_map(|b| {
                scores
                    .get(b)?
                    .iter()
                    .find(|s| s.seed == seed)
                    .map(|s| metric.value(b, s))
            })
            .collect();
        let finite: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
        out.push(crate::stats::mean(&finite).unwrap_or(f64::NAN));
    }
    if out.is_empty() { None } else { Some(out) }
}

/// The reference's seed requirement: at least 3 eval seeds, or 1 for greedy evaluation.
pub fn enough_seeds(num_seeds: usize, temperature: f64) -> bool {
    num_seeds >= 3 || (temperature == 0.0 && num_seeds >= 1)
}

/// One row of the accuracy table: a model × setup × run at its chosen checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    /// The base model's name.
    pub model: String,
    /// The setup's display name (`Base`, `Steering`, `Full-Tune`, or the setup as written).
    pub setup: String,
    /// The run name.
    pub run: String,
    /// The checkpoint chosen (best Average) or `None` for base models.
    pub checkpoint: Option<u64>,
    /// Mean ± std per column (benchmark id or "Average").
    pub cells: BTreeMap<String, MeanStd>,
    /// Value / Full-Tune × 100 on the Average, rounded to 0.1.
    pub relative_pct: Option<f64>,
    /// (value − Base) / (Full-Tune − Base) × 100 on the Average, rounded to 0.1.
    pub relative_improvement_pct: Option<f64>,
}

/// Suffix of the extra first-sample-accuracy columns of the sampled small sets (`aime24|pass@1`).
pub const PASS_AT_1_SUFFIX: &str = "|pass@1";

/// The paper's Table 1: rows in the reference order, benchmark columns then "Average".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyTable {
    /// Which number the cells hold.
    pub metric: Metric,
    /// Column ids: `<bench>|pass@1` for sampled small sets (accuracy tables only), then benchmark
    /// ids sorted by display name, then "Average".
    pub columns: Vec<String>,
    /// Column headers as the paper prints them.
    pub headers: Vec<String>,
    /// The rows.
    pub rows: Vec<TableRow>,
    /// The benchmarks of the Average.
    pub average: AverageSpec,
}

/// The display name of a setup at an evaluation temperature: the paper's "Base" is the greedy
/// base model; a sampled base is "Base τ=1"; other setups evaluated greedily get "(greedy)".
pub fn setup_label(setup: &str, temperature: f64) -> String {
    let name = setup_display(setup);
    match (name.as_str(), temperature == 0.0) {
        ("Base", true) => name,
        ("Base", false) => format!("Base τ={temperature}"),
        (_, true) => format!("{name} (greedy)"),
        _ => name,
    }
}

/// The display name of a setup (reference `SetupMapping`).
pub fn setup_display(setup: &str) -> String {
    match setup {
        "steering" => "Steering".into(),
        "base" | "Base Model" => "Base".into(),
        "full_model" => "Full-Tune".into(),
        other => other.to_owned(),
    }
}

/// Row-group order of the reference: Qwen2.5-{N}B by N, then Qwen2.5-Math-{N}B by N, then
/// llama3.1-{N}b-chat, then everything else (ties keep first appearance: a stable sort).
pub fn model_order_key(model: &str) -> (u8, u64) {
    let lower = model.to_ascii_lowercase();
    let size = |s: &str| -> u64 {
        let digits: String = s
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        (digits.parse::<f64>().unwrap_or(0.0) * 10.0) as u64
    };
    if let Some(rest) = lower.strip_prefix("qwen2.5-math-") {
        (1, size(rest))
    } else if let Some(rest) = lower.strip_prefix("qwen2.5-") {
        (0, size(rest))
    } else if lower.starts_with("llama3.1-") && lower.contains("chat") {
        (2, size(&lower["llama3.1-".len()..]))
    } else {
        (3, 0)
    }
}

fn setup_order_key(setup: &str) -> u8 {
    match setup {
        "base" | "Base Model" => 0,
        "steering" => 1,
        s if s.starts_with("steering") => 2,
        s if s.starts_with("lora") => 3,
        "full_model" => 5,
        _ => 4,
    }
}

/// One evaluated (model, setup, run, checkpoint) with its scores: the input of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedRun {
    /// Where it came from.
    pub context: crate::eval::EvalContext,
    /// Sampling temperature of the evaluation.
    pub temperature: f64,
    /// The scores.
    pub scores: Scores,
}

/// Groups eval summaries by (context, temperature) into [`EvaluatedRun`]s, sorted by context.
pub fn group_summaries<'a>(
    summaries: impl IntoIterator<Item = &'a EvalSummary>,
) -> Vec<EvaluatedRun> {
    let mut map: BTreeMap<(crate::eval::EvalContext, u64), Scores> = BTreeMap::new();
    for s in summaries {
        map.entry((s.context.clone(), s.temperature.to_bits()))
            .or_default()
            .entry(s.benchmark.clone())
            .or_default()
            .push(SeedScore::from(s));
    }
    map.into_iter()
        .map(|((context, t), mut scores)| {
            for v in scores.values_mut() {
                v.sort_by_key(|s| s.seed);
                v.dedup_by_key(|s| s.seed);
            }
            EvaluatedRun {
                context,
                temperature: f64::from_bits(t),
                scores,
            }
        })
        .collect()
}

/// Best checkpoint per (model, setup, run, temperature) by Average mean. Runs without an Average
/// never beat one with it (the reference let a NaN win: §13.4 item 32, fixed on purpose).
pub fn best_checkpoints(runs: &[EvaluatedRun], spec: &AverageSpec) -> Vec<EvaluatedRun> {
    type Key = (String, String, String, u64);
    let mut best: BTreeMap<Key, (Option<f64>, &EvaluatedRun)> = BTreeMap::new();
    for r in runs {
        let key = (
            r.context.model.clone(),
            r.context.setup.clone(),
            r.context.run.clone(),
            r.temperature.to_bits(),
        );
        let avg = aggregate(&r.scores, AVERAGE, Metric::Accuracy, spec)
            .map(|m| m.mean)
            .filter(|m| m.is_finite());
        match best.get(&key) {
            Some((Some(b), _)) if avg.is_none_or(|a| a <= *b) => {}
            Some((None, _)) if avg.is_none() => {}
            _ => {
                best.insert(key, (avg, r));
            }
        }
    }
    best.into_values().map(|(_, r)| r.clone()).collect()
}

/// Builds the accuracy table for `metric` from evaluated runs (already filtered to one checkpoint
/// per run with [`best_checkpoints`], or not: each checkpoint is then its own row).
pub fn accuracy_table(runs: &[EvaluatedRun], metric: Metric) -> AccuracyTable {
    let spec = AverageSpec::for_scores(runs.iter().map(|r| &r.scores));
    let mut benches: Vec<String> = runs
        .iter()
        .flat_map(|r| r.scores.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let samples = |b: &str| {
        runs.iter()
            .filter_map(|r| r.scores.get(b))
            .flat_map(|v| v.iter().map(|s| s.samples_per_problem))
            .max()
            .unwrap_or(1)
    };
    benches.sort_by_key(|b| benchmarks::column_name(b, samples(b)));
    // Reference §6.1 step 4: the sampled small sets also get their first-sample accuracy, first.
    let mut columns: Vec<String> = if metric == Metric::Accuracy {
        benches
            .iter()
            .filter(|b| benchmarks::headline(b) == Headline::AvgAtN && samples(b) > 1)
            .map(|b| format!("{b}{PASS_AT_1_SUFFIX}"))
            .collect()
    } else {
        Vec::new()
    };
    columns.extend(benches.iter().cloned());
    columns.push(AVERAGE.to_owned());
    let headers = columns
        .iter()
        .map(|b| match (b.strip_suffix(PASS_AT_1_SUFFIX), metric) {
            (Some(bench), _) => format!("{} PASS@1", benchmarks::display_name(bench)),
            (None, Metric::Accuracy) => benchmarks::column_name(b, samples(b)),
            _ => benchmarks::display_name(b),
        })
        .collect();
    let mut rows: Vec<TableRow> = runs
        .iter()
        .map(|r| TableRow {
            model: r.context.model.clone(),
            setup: setup_label(&r.context.setup, r.temperature),
            run: r.context.run.clone(),
            checkpoint: r.context.checkpoint,
            cells: columns
                .iter()
                .filter_map(|c| {
                    let m = match c.strip_suffix(PASS_AT_1_SUFFIX) {
                        Some(bench) => aggregate(&r.scores, bench, Metric::PassAt1, &spec)?,
                        None => aggregate(&r.scores, c, metric, &spec)?,
                    };
                    Some((c.clone(), m))
                })
                .collect(),
            relative_pct: None,
            relative_improvement_pct: None,
        })
        .collect();
    let order: Vec<(u8, u64)> = runs
        .iter()
        .map(|r| model_order_key(&r.context.model))
        .collect();
    let setup_keys: Vec<u8> = runs
        .iter()
        .map(|r| setup_order_key(&r.context.setup))
        .collect();
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    let temps: Vec<u64> = runs.iter().map(|r| r.temperature.to_bits()).collect();
    idx.sort_by_key(|&i| (order[i], rows[i].model.clone(), setup_keys[i], temps[i]));
    rows = idx.into_iter().map(|i| rows[i].clone()).collect();
    // Relative columns, within each model, on the Average.
    let avg_of = |rows: &[TableRow], model: &str, setup: &str| {
        rows.iter()
            .find(|r| r.model == model && r.setup == setup)
            .and_then(|r| r.cells.get(AVERAGE))
            .map(|m| m.mean)
    };
    let snapshot = rows.clone();
    for row in &mut rows {
        let Some(v) = row.cells.get(AVERAGE).map(|m| m.mean) else {
            continue;
        };
        let full = avg_of(&snapshot, &row.model, "Full-Tune");
        let base = avg_of(&snapshot, &row.model, "Base");
        row.relative_pct = full.filter(|f| *f != 0.0).map(|f| round1(v / f * 100.0));
        row.relative_improvement_pct = match (full, base) {
            (Some(f), Some(b)) if f != b => Some(round1((v - b) / (f - b) * 100.0)),
            _ => None,
        };
    }
    AccuracyTable {
        metric,
        columns,
        headers,
        rows,
        average: spec,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// How the cells of a CSV are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvStyle {
    /// `X.csv`: `"{mean:.1f}"`.
    Mean,
    /// `X_std.csv`: `"{mean:.1f} $\pm$ {std:.1f}"`.
    MeanStd,
    /// `X_with_rel.csv`: means plus `Relative (%)` and `Relative Improvement (%)`.
    WithRelative,
}

/// Writes the table as the reference's CSVs (rows `Model,Setup`, then one column per header;
/// missing cells empty).
pub fn table_csv(table: &AccuracyTable, style: CsvStyle) -> String {
    let mut out = String::from("Model,Setup");
    for h in &table.headers {
        out.push(',');
        out.push_str(&csv_field(h));
    }
    if style == CsvStyle::WithRelative {
        out.push_str(",Relative (%),Relative Improvement (%)");
    }
    out.push('\n');
    for r in &table.rows {
        let setup = match r.checkpoint {
            Some(c) if !r.setup.starts_with("Base") => format!("{} (ckpt {c})", r.setup),
            _ => r.setup.clone(),
        };
        out.push_str(&format!("{},{}", csv_field(&r.model), csv_field(&setup)));
        for c in &table.columns {
            out.push(',');
            if let Some(m) = r.cells.get(c) {
                match style {
                    CsvStyle::MeanStd => {
                        out.push_str(&csv_field(&format!("{:.1} $\\pm$ {:.1}", m.mean, m.std)))
                    }
                    _ => out.push_str(&format!("{:.1}", m.mean)),
                }
            }
        }
        if style == CsvStyle::WithRelative {
            for v in [r.relative_pct, r.relative_improvement_pct] {
                out.push(',');
                if let Some(v) = v {
                    out.push_str(&format!("{v:.1}"));
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Quotes a CSV field when needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::EvalContext;

    fn score(seed: u64, pass: f64, avg: f64) -> SeedScore {
        SeedScore {
            seed,
            pass_at_1: pass,
            avg_at_n: avg,
            samples_per_problem: 1,
            mean_length: Some(100.0 + seed as f64),
            mean_length_correct: None,
            mean_length_incorrect: Some(10.0),
        }
    }

    fn six(seed: u64, x: f64) -> Scores {
        // every paper bench; small sets get avg@n = x, others pass@1 = x; the "other" metric is 0
        crate::benchmarks::PAPER_AVERAGE
            .iter()
            .map(|(b, h)| {
                let s = match h {
                    Headline::AvgAtN => score(seed, 0.0, x),
                    Headline::PassAt1 => score(seed, x, 0.0),
                };
                ((*b).to_owned(), vec![s])
            })
            .collect()
    }

    fn merge(mut a: Scores, b: Scores) -> Scores {
        for (k, v) in b {
            a.entry(k).or_default().extend(v);
        }
        a
    }

    #[test]
    fn the_average_uses_the_headline_metric_per_bench_then_population_std_over_seeds() {
        // seed 0: all six at 0.2 → 20 %; seed 1: all at 0.4 → 40 %: mean 30, population std 10
        let scores = merge(six(0, 0.2), six(1, 0.4));
        let spec = AverageSpec::for_scores([&scores]);
        assert!(spec.missing.is_empty());
        let m = aggregate(&scores, AVERAGE, Metric::Accuracy, &spec).unwrap();
        assert!(
            (m.mean - 30.0).abs() < 1e-9 && (m.std - 10.0).abs() < 1e-9 && m.n == 2,
            "{m:?}"
        );
        // pass@1 on a small set is 0 here, so PassAt1's Average is half of the six at 20/40
        let p = aggregate(&scores, AVERAGE, Metric::PassAt1, &spec).unwrap();
        assert!((p.mean - 15.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_missing_paper_bench_gives_a_labelled_partial_average_and_a_run_lacking_one_has_none() {
        let mut scores = six(0, 0.5);
        scores.remove("aime25");
        let spec = AverageSpec::for_scores([&scores]);
        assert_eq!(spec.missing, vec!["aime25".to_owned()]);
        assert!(spec.label().contains("AIME25"));
        assert!(aggregate(&scores, AVERAGE, Metric::Accuracy, &spec).is_some());
        let mut partial = scores.clone();
        partial.remove("math500");
        assert!(aggregate(&partial, AVERAGE, Metric::Accuracy, &spec).is_none());
    }

    #[test]
    fn lengths_use_the_n_minus_1_std() {
        let scores: Scores = [(
            "math500".to_owned(),
            vec![score(0, 0.1, 0.1), score(1, 0.1, 0.1), score(2, 0.1, 0.1)],
        )]
        .into_iter()
        .collect();
        let spec = AverageSpec::for_scores([&scores]);
        let m = aggregate(&scores, "math500", Metric::Length, &spec).unwrap();
        assert_eq!(m.mean, 101.0);
        assert!((m.std - 1.0).abs() < 1e-12); // 100, 101, 102 → sample std 1
        assert!(aggregate(&scores, "math500", Metric::CorrectLength, &spec).is_none());
    }

    fn run(model: &str, setup: &str, ckpt: Option<u64>, x: f64) -> EvaluatedRun {
        EvaluatedRun {
            context: EvalContext {
                model: model.into(),
                dataset: "deepscaler".into(),
                setup: setup.into(),
                run: "seed-0".into(),
                checkpoint: ckpt,
            },
            temperature: if setup == "base" { 0.0 } else { 1.0 },
            scores: six(0, x),
        }
    }

    #[test]
    fn best_checkpoint_is_the_highest_average_and_relative_columns_are_hand_computed() {
        let runs = vec![
            run("Qwen2.5-Math-7B", "steering", Some(106), 0.30),
            run("Qwen2.5-Math-7B", "steering", Some(212), 0.35),
            run("Qwen2.5-Math-7B", "steering", Some(314), 0.32),
            run("Qwen2.5-Math-7B", "full_model", Some(314), 0.40),
            run("Qwen2.5-Math-7B", "base", None, 0.20),
            run("Qwen2.5-1.5B", "base", None, 0.10),
        ];
        let spec = AverageSpec::for_scores(runs.iter().map(|r| &r.scores));
        let best = best_checkpoints(&runs, &spec);
        assert_eq!(best.len(), 4);
        let steering = best.iter().find(|r| r.context.setup == "steering").unwrap();
        assert_eq!(steering.context.checkpoint, Some(212));
        let table = accuracy_table(&best, Metric::Accuracy);
        let order: Vec<(&str, &str)> = table
            .rows
            .iter()
            .map(|r| (r.model.as_str(), r.setup.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("Qwen2.5-1.5B", "Base"),
                ("Qwen2.5-Math-7B", "Base"),
                ("Qwen2.5-Math-7B", "Steering"),
                ("Qwen2.5-Math-7B", "Full-Tune")
            ]
        );
        let s = &table.rows[2];
        // 35 / 40 = 87.5 %; (35 − 20) / (40 − 20) = 75 %
        assert_eq!(s.relative_pct, Some(87.5));
        assert_eq!(s.relative_improvement_pct, Some(75.0));
        assert_eq!(*table.columns.last().unwrap(), AVERAGE);
        let csv = table_csv(&table, CsvStyle::MeanStd);
        assert!(
            csv.lines().nth(3).unwrap().contains("35.0 $\\pm$ 0.0"),
            "{csv}"
        );
        let rel = table_csv(&table, CsvStyle::WithRelative);
        assert!(rel.lines().nth(3).unwrap().ends_with(",87.5,75.0"), "{rel}");
    }

    #[test]
    fn sampled_small_sets_get_a_first_sample_column_in_front() {
        let mut scores = six(0, 0.5);
        for v in scores.values_mut() {
            v[0].samples_per_problem = if v[0].avg_at_n > 0.0 { 32 } else { 1 };
        }
        let r = EvaluatedRun {
            context: EvalContext::default(),
            temperature: 1.0,
            scores,
        };
        let t = accuracy_table(&[r], Metric::Accuracy);
        assert_eq!(
            &t.columns[..3],
            ["aime24|pass@1", "aime25|pass@1", "amc23|pass@1"]
        );
        assert_eq!(t.headers[0], "AIME24 PASS@1");
        assert_eq!(t.headers[3], "AIME24 AVG@32");
        // pass@1 of the small sets is 0 in `six`, avg@n is 50
        assert_eq!(t.rows[0].cells["aime24|pass@1"].mean, 0.0);
        assert_eq!(t.rows[0].cells["aime24"].mean, 50.0);
        assert_eq!(
            accuracy_table(&t_runs(), Metric::Length)
                .columns
                .iter()
                .filter(|c| c.contains('|'))
                .count(),
            0
        );
    }

    fn t_runs() -> Vec<EvaluatedRun> {
        vec![EvaluatedRun {
            context: EvalContext::default(),
            temperature: 1.0,
            scores: six(0, 0.5),
        }]
    }

    #[test]
    fn a_sampled_base_is_labelled_with_its_temperature_and_greedy_runs_are_marked() {
        assert_eq!(setup_label("base", 0.0), "Base");
        assert_eq!(setup_label("base", 1.0), "Base τ=1");
        assert_eq!(setup_label("steering", 0.0), "Steering (greedy)");
        assert_eq!(setup_label("full_model", 1.0), "Full-Tune");
    }

    #[test]
    fn a_run_without_an_average_never_replaces_one_with_it() {
        let mut bad = run("M", "steering", Some(2), 0.9);
        bad.scores.remove("math500");
        let runs = vec![run("M", "steering", Some(1), 0.1), bad];
        let spec = AverageSpec::for_scores(runs.iter().map(|r| &r.scores));
        let best = best_checkpoints(&runs, &spec);
        assert_eq!(best[0].context.checkpoint, Some(1));
    }

    /// Scores of the six paper benchmarks at one seed: (pass@1, avg@n) per benchmark in
    /// `PAPER_AVERAGE` order, with `samples` per problem on the small sets.
    fn seed_scores(seed: u64, values: [(f64, f64); 6], samples: u32) -> Scores {
        crate::benchmarks::PAPER_AVERAGE
            .iter()
            .zip(values)
            .map(|((b, h), (pass, avg))| {
                let mut s = score(seed, pass, avg);
                s.samples_per_problem = if *h == Headline::AvgAtN { samples } else { 1 };
                ((*b).to_owned(), vec![s])
            })
            .collect()
    }

    fn evaluated(setup: &str, ckpt: Option<u64>, temperature: f64, scores: Scores) -> EvaluatedRun {
        EvaluatedRun {
            context: EvalContext {
                model: "Qwen2.5-Math-1.5B".into(),
                dataset: if setup == "base" { "base" } else { "deepscaler" }.into(),
                setup: setup.into(),
                run: if setup == "base" { "" } else { "seed-0" }.into(),
                checkpoint: ckpt,
            },
            temperature,
            scores,
        }
    }

    #[test]
    fn table_one_csvs_match_a_hand_computed_example() {
        // Steering, checkpoint 212, three eval seeds; small sets (avg@32) first, pass@1 0.25 there:
        //            AIME24 AIME25 AMC23 | MATH500 Minerva Olympiad | Average
        //   seed 0:   0.2    0.1    0.5  |   0.8     0.4     0.4    |  40
        //   seed 1:   0.3    0.2    0.6  |   0.8     0.4     0.4    |  45
        //   seed 2:   0.1    0.1    0.4  |   0.8     0.3     0.4    |  35
        // means 20, 13.3, 50, 80, 36.7, 40, 40; population stds 8.2, 4.7, 8.2, 0, 4.7, 0, 4.1.
        let rows = [
            [0.2, 0.1, 0.5, 0.8, 0.4, 0.4],
            [0.3, 0.2, 0.6, 0.8, 0.4, 0.4],
            [0.1, 0.1, 0.4, 0.8, 0.3, 0.4],
        ];
        let steering = rows.iter().enumerate().fold(Scores::new(), |acc, (seed, r)| {
            let v = std::array::from_fn(|i| if i < 3 { (0.25, r[i]) } else { (r[i], 0.0) });
            merge(acc, seed_scores(seed as u64, v, 32))
        });
        let flat = |x: f64, seeds: u64, samples: u32| (0..seeds).fold(Scores::new(), |acc, s| merge(acc, seed_scores(s, [(x, x); 6], samples)));
        let runs = vec![
            evaluated("steering", Some(106), 1.0, flat(0.3, 3, 32)),
            evaluated("steering", Some(212), 1.0, steering),
            evaluated("full_model", Some(314), 1.0, flat(0.5, 3, 32)),
            evaluated("base", None, 0.0, flat(0.2, 1, 1)),
        ];
        let spec = AverageSpec::for_scores(runs.iter().map(|r| &r.scores));
        let best = best_checkpoints(&runs, &spec);
        let steering = best.iter().find(|r| r.context.setup == "steering").unwrap();
        assert_eq!(steering.context.checkpoint, Some(212));
        let avg = aggregate(&steering.scores, AVERAGE, Metric::Accuracy, &spec).unwrap();
        assert!((avg.mean - 40.0).abs() < 1e-9 && (avg.std - (50.0f64 / 3.0).sqrt()).abs() < 1e-9, "{avg:?}");
        let table = accuracy_table(&best, Metric::Accuracy);
        let header = "Model,Setup,AIME24 PASS@1,AIME25 PASS@1,AMC23 PASS@1,AIME24 AVG@32,AIME25 AVG@32,AMC23 AVG@32,MATH500,MinervaMath,OlympiadBench,Avg.";
        assert_eq!(
            table_csv(&table, CsvStyle::Mean),
            format!(
                "{header}\n\
                 Qwen2.5-Math-1.5B,Base,20.0,20.0,20.0,20.0,20.0,20.0,20.0,20.0,20.0,20.0\n\
                 Qwen2.5-Math-1.5B,Steering (ckpt 212),25.0,25.0,25.0,20.0,13.3,50.0,80.0,36.7,40.0,40.0\n\
                 Qwen2.5-Math-1.5B,Full-Tune (ckpt 314),50.0,50.0,50.0,50.0,50.0,50.0,50.0,50.0,50.0,50.0\n"
            )
        );
        let std_csv = table_csv(&table, CsvStyle::MeanStd);
        let p = |m: &str, s: &str| format!("{m} $\\pm$ {s}");
        let steering_row: Vec<String> = [
            ("25.0", "0.0"), ("25.0", "0.0"), ("25.0", "0.0"), ("20.0", "8.2"), ("13.3", "4.7"), ("50.0", "8.2"),
            ("80.0", "0.0"), ("36.7", "4.7"), ("40.0", "0.0"), ("40.0", "4.1"),
        ]
        .iter()
        .map(|(m, s)| p(m, s))
        .collect();
        assert_eq!(std_csv.lines().nth(2).unwrap(), format!("Qwen2.5-Math-1.5B,Steering (ckpt 212),{}", steering_row.join(",")));
        // Relative: 40 / 50 = 80 %; improvement (40 − 20) / (50 − 20) = 66.7 %.
        let csv = table_csv(&table, CsvStyle::WithRelative);
        let rel: Vec<Vec<&str>> = csv.lines().map(|l| l.rsplit(',').take(2).collect()).collect();
        assert_eq!(rel, [["Relative Improvement (%)", "Relative (%)"], ["0.0", "40.0"], ["66.7", "80.0"], ["100.0", "100.0"]]);
    }

    #[test]
    fn model_groups_follow_the_reference_order() {
        let mut names = vec![
            "llama3.1-8b-chat",
            "other",
            "Qwen2.5-Math-7B",
            "Qwen2.5-14B",
            "Qwen2.5-Math-1.5B",
            "Qwen2.5-1.5B",
        ];
        names.sort_by_key(|n| model_order_key(n));
        assert_eq!(
            names,
            [
                "Qwen2.5-1.5B",
                "Qwen2.5-14B",
                "Qwen2.5-Math-1.5B",
                "Qwen2.5-Math-7B",
                "llama3.1-8b-chat",
                "other"
            ]
        );
    }
}
