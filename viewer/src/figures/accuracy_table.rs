//! The accuracy table (reference §6.1, P1 Table 1): one row per model × setup at its best
//! checkpoint (by Average), mean ± std over eval seeds per benchmark, the Average, and the
//! relative-to-full-tune columns.

use shared::aggregate::{
    AccuracyTable, CsvStyle, Metric, accuracy_table, best_checkpoints, group_summaries, table_csv,
};
use shared::aggregate::{AverageSpec, EvaluatedRun};
use shared::results::ResultsIndex;

use crate::chart::{Figure, Panel, TablePanel};

/// What to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Which number the cells hold.
    pub metric: Metric,
    /// Keep only the best checkpoint of each run (otherwise every checkpoint is a row).
    pub best_only: bool,
    /// Only evaluations at this temperature (`None`: all; greedy and sampled rows are kept apart).
    pub temperature: Option<f64>,
    /// Eval seeds left out of the statistics.
    pub excluded_seeds: std::collections::BTreeSet<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            metric: Metric::Accuracy,
            best_only: true,
            temperature: None,
            excluded_seeds: Default::default(),
        }
    }
}

/// The evaluated runs of an index, filtered by the options.
pub fn runs(index: &ResultsIndex, o: &Options) -> Vec<EvaluatedRun> {
    let mut runs = group_summaries(
        index
            .summaries
            .values()
            .filter(|s| !o.excluded_seeds.contains(&s.seed)),
    );
    if let Some(t) = o.temperature {
        runs.retain(|r| r.temperature == t);
    }
    if o.best_only {
        let spec = AverageSpec::for_scores(runs.iter().map(|r| &r.scores));
        runs = best_checkpoints(&runs, &spec);
    }
    runs
}

/// Prepares the table.
pub fn prepare(index: &ResultsIndex, o: &Options) -> AccuracyTable {
    accuracy_table(&runs(index, o), o.metric)
}

/// The table as one table figure (cells "mean ± std").
pub fn figures(t: &AccuracyTable) -> Vec<Figure> {
    let mut headers = vec!["Model".to_owned(), "Setup".to_owned()];
    headers.extend(t.headers.iter().cloned());
    headers.extend(["Relative (%)".to_owned(), "Rel. Improvement (%)".to_owned()]);
    let rows: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| {
            let setup = match r.checkpoint {
                Some(c) => format!("{} (ckpt {c})", r.setup),
                None => r.setup.clone(),
            };
            let mut row = vec![r.model.clone(), setup];
            row.extend(t.columns.iter().map(|c| {
                r.cells
                    .get(c)
                    .map(|m| format!("{:.1} ± {:.1}", m.mean, m.std))
                    .unwrap_or_default()
            }));
            row.extend(
                [r.relative_pct, r.relative_improvement_pct]
                    .iter()
                    .map(|v| v.map(|v| format!("{v:.1}")).unwrap_or_default()),
            );
            row
        })
        .collect();
    let n = rows.len() as u32;
    let mut notes = Vec::new();
    if !t.average.missing.is_empty() {
        notes.push(t.average.label());
    }
    let title = format!("{} (mean ± std over eval seeds)", t.metric.label());
    let mut f = Figure::single(
        "accuracy-table",
        "",
        Panel::Table(TablePanel {
            title,
            headers,
            rows,
        }),
        (1200, 70 + 20 * n),
    );
    f.notes = notes;
    vec![f]
}

/// The reference's three CSVs: `X.csv`, `X_std.csv`, `X_with_rel.csv` (X = the metric's stem).
pub fn csvs(t: &AccuracyTable) -> Vec<(String, String)> {
    let stem = t.metric.file_stem();
    vec![
        (format!("-{stem}"), table_csv(t, CsvStyle::Mean)),
        (format!("-{stem}_std"), table_csv(t, CsvStyle::MeanStd)),
        (
            format!("-{stem}_with_rel"),
            table_csv(t, CsvStyle::WithRelative),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ResultsIndex {
        let files = shared::fixtures::bundle();
        ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())))
    }

    #[test]
    fn rows_are_best_checkpoints_in_reference_order_with_relative_columns() {
        let t = prepare(&index(), &Options::default());
        let rows: Vec<(String, String, Option<u64>)> = t
            .rows
            .iter()
            .map(|r| (r.model.clone(), r.setup.clone(), r.checkpoint))
            .collect();
        // Qwen2.5-1.5B before Qwen2.5-Math-7B; base rows (greedy and sampled) first, full tune last.
        assert_eq!(rows.first().unwrap().0, "Qwen2.5-1.5B");
        assert_eq!(rows.last().unwrap().0, "Qwen2.5-Math-7B");
        assert_eq!(rows.last().unwrap().1, "Full-Tune");
        let steering: Vec<_> = rows
            .iter()
            .filter(|r| r.0 == "Qwen2.5-Math-7B" && r.1 == "Steering")
            .collect();
        assert_eq!(steering.len(), 1, "one best checkpoint per run");
        let full = t
            .rows
            .iter()
            .find(|r| r.model == "Qwen2.5-Math-7B" && r.setup == "Full-Tune")
            .unwrap();
        assert_eq!(full.relative_pct, Some(100.0));
        // best-checkpoint selection agrees with the shared aggregation
        let all = runs(
            &index(),
            &Options {
                best_only: false,
                ..Options::default()
            },
        );
        let spec = AverageSpec::for_scores(all.iter().map(|r| &r.scores));
        let best = all
            .iter()
            .filter(|r| r.context.model == "Qwen2.5-Math-7B" && r.context.setup == "steering")
            .max_by(|a, b| {
                let f = |r: &EvaluatedRun| {
                    shared::aggregate::aggregate(&r.scores, "Average", Metric::Accuracy, &spec)
                        .unwrap()
                        .mean
                };
                f(a).total_cmp(&f(b))
            })
            .unwrap();
        assert_eq!(steering[0].2, best.context.checkpoint);
    }

    #[test]
    fn the_figure_has_one_row_per_table_row_and_three_csvs() {
        let t = prepare(&index(), &Options::default());
        let f = &figures(&t)[0];
        let Panel::Table(tp) = &f.panels[0] else {
            panic!()
        };
        assert_eq!(tp.rows.len(), t.rows.len());
        assert_eq!(tp.headers.len(), 2 + t.columns.len() + 2);
        let c = csvs(&t);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].1.lines().count(), 1 + t.rows.len());
        assert!(c[1].1.contains("$\\pm$"));
    }
}
