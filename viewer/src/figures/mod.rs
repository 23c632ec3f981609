//! One module per figure kind. Each has a pure `prepare(...) -> Data` (the numbers behind the
//! figure, serialisable for CSV/JSON export) and a `figures(&Data) -> Vec<Figure>` that describes
//! the drawing once for the screen, PNG/SVG files and snapshot tests.

pub mod accuracy_table;
pub mod add_place;
pub mod curves;
pub mod exchange;
pub mod head_patching;
pub mod layers;
pub mod logit_lens;
pub mod magnitude;
pub mod pair_layers;
pub mod seed_alignment;
pub mod token_effects;
pub mod training_curves;

use shared::aggregate::Metric;
use shared::benchmarks::AVERAGE;
use shared::experiments::ExperimentResult;
use shared::results::ResultsIndex;

use crate::chart::Figure;

/// A prepared figure set, ready to draw and export.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// File-name stem (`experiments_Qwen2.5-Math-7B_layers`; a non-default head-patching view
    /// appends [`head_patching::View::suffix`]).
    pub id: String,
    /// The figures.
    pub figures: Vec<Figure>,
    /// CSV files (name suffix, text), e.g. `("", ...)`, `("_std", ...)`.
    pub csv: Vec<(String, String)>,
    /// The prepared data as JSON.
    pub json: String,
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The benchmark and the number a sweep figure shows (layers, magnitude, pair layers, exchange,
/// head patching).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// A benchmark id or "Average".
    pub bench: String,
    /// Which number.
    pub metric: Metric,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            bench: AVERAGE.into(),
            metric: Metric::Accuracy,
        }
    }
}

/// The options of every experiment view together (what the app's option bar sets).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ViewOptions {
    /// Benchmark and metric of the sweep figures.
    pub bench: BenchOptions,
    /// The head-patching panels.
    pub head_view: head_patching::View,
    /// The logit-lens layer (`None`: all).
    pub logit_layer: Option<u32>,
    /// The token-effects grouping, order and sample.
    pub tokens: token_effects::Options,
}

impl Prepared {
    /// The file-name stem of one of its figures: the set's id, followed by `--{figure id}` when
    /// the set has several figures.
    pub fn figure_stem(&self, fig: &Figure) -> String {
        if self.figures.len() > 1 {
            format!("{}--{}", self.id, fig.id)
        } else {
            self.id.clone()
        }
    }

    /// A prepared set with its data serialised as the JSON export.
    pub fn new<T: serde::Serialize>(
        id: impl Into<String>,
        figures: Vec<Figure>,
        csv: Vec<(String, String)>,
        data: &T,
    ) -> Self {
        Self {
            id: id.into(),
            figures,
            csv,
            json: serde_json::to_string_pretty(data).unwrap_or_default(),
        }
    }
}

/// Prepares the figures of one experiment result (`path` names the export files).
pub fn prepare_experiment(path: &str, result: &ExperimentResult, o: &ViewOptions) -> Prepared {
    let id = slug(path.trim_end_matches(".json"));
    let one = |csv: String| vec![(String::new(), csv)];
    match result {
        ExperimentResult::Layers(r) => {
            let d = layers::prepare(r, &o.bench);
            Prepared::new(
                id,
                curves::curve_figures("layers", &d),
                one(curves::csv(&d)),
                &d,
            )
        }
        ExperimentResult::Magnitude(r) => {
            let d = magnitude::prepare(r, &o.bench);
            Prepared::new(
                id,
                curves::curve_figures("magnitude", &d),
                one(curves::csv(&d)),
                &d,
            )
        }
        ExperimentResult::PairLayers(r) => {
            let d = pair_layers::prepare(r, &o.bench);
            Prepared::new(id, pair_layers::figures(&d), one(pair_layers::csv(&d)), &d)
        }
        ExperimentResult::SeedAlignment(r) => {
            let d = seed_alignment::prepare(r);
            Prepared::new(
                id,
                seed_alignment::figures(&d),
                one(seed_alignment::csv(&d)),
                &d,
            )
        }
        ExperimentResult::HeadPatching(r) => {
            let opts = head_patching::Options {
                bench: o.bench.clone(),
                view: o.head_view,
            };
            let d = head_patching::prepare(r, &opts);
            Prepared::new(
                format!("{id}{}", o.head_view.suffix()),
                head_patching::figures(&d),
                one(head_patching::csv(&d)),
                &d,
            )
        }
        ExperimentResult::Exchange(r) => {
            let d = exchange::prepare(r, &o.bench);
            Prepared::new(id, exchange::figures(&d), one(exchange::csv(&d)), &d)
        }
        ExperimentResult::LogitLens(r) => {
            let opts = logit_lens::Options {
                layer: o.logit_layer,
                ..Default::default()
            };
            let d = logit_lens::prepare(r, &opts);
            Prepared::new(id, logit_lens::figures(&d), one(logit_lens::csv(&d)), &d)
        }
        ExperimentResult::TokenEffects(r) => {
            let d = token_effects::prepare(r, &o.tokens);
            Prepared::new(
                id,
                token_effects::figures(&d),
                one(token_effects::csv(&d)),
                &d,
            )
        }
        ExperimentResult::AddPlace(r) => {
            let d = add_place::prepare(r, &o.bench);
            Prepared::new(id, add_place::figures(&d), one(curves::csv(&d)), &d)
        }
    }
}

/// The accuracy table of a results root (`None` without evaluation summaries).
pub fn prepare_table(index: &ResultsIndex, o: &accuracy_table::Options) -> Option<Prepared> {
    if index.summaries.is_empty() {
        return None;
    }
    let d = accuracy_table::prepare(index, o);
    Some(Prepared::new(
        "accuracy-table",
        accuracy_table::figures(&d),
        accuracy_table::csvs(&d),
        &d,
    ))
}

/// The training curves of a results root (`None` without training runs).
pub fn prepare_training(index: &ResultsIndex, o: &training_curves::Options) -> Option<Prepared> {
    if index.training_runs.is_empty() {
        return None;
    }
    let d = training_curves::prepare(index, o);
    Some(Prepared::new(
        "training-curves",
        training_curves::figures(&d),
        vec![(String::new(), training_curves::csv(&d))],
        &d,
    ))
}

/// Every figure of a results root with default options: the accuracy table, the training curves,
/// and each experiment result (sorted by path); a head-patching result once per
/// [`head_patching::View`] (the combined q/k/v views are figures of their own).
pub fn prepare_all(index: &ResultsIndex) -> Vec<Prepared> {
    let mut out: Vec<Prepared> = prepare_table(index, &Default::default())
        .into_iter()
        .chain(prepare_training(index, &Default::default()))
        .collect();
    for (path, r) in &index.experiments {
        let views: &[head_patching::View] = match r {
            ExperimentResult::HeadPatching(_) => &head_patching::View::ALL,
            _ => &[head_patching::View::PerProjType],
        };
        for &head_view in views {
            let o = ViewOptions {
                head_view,
                ..ViewOptions::default()
            };
            out.push(prepare_experiment(path, r, &o));
        }
    }
    out
}

/// The sweep variants of a result (empty for seed alignment, logit lens and token effects).
pub fn variants_mut(r: &mut ExperimentResult) -> Vec<&mut shared::experiments::Variant> {
    match r {
        ExperimentResult::Layers(r) => r
            .points
            .iter_mut()
            .map(|p| &mut p.variant)
            .chain(r.baselines.iter_mut())
            .collect(),
        ExperimentResult::Magnitude(r) => r
            .points
            .iter_mut()
            .map(|p| &mut p.variant)
            .chain(r.baselines.iter_mut())
            .collect(),
        ExperimentResult::PairLayers(r) => r.pairs.iter_mut().map(|p| &mut p.variant).collect(),
        ExperimentResult::HeadPatching(r) => r
            .points
            .iter_mut()
            .map(|p| &mut p.variant)
            .chain(r.baselines.iter_mut())
            .collect(),
        ExperimentResult::Exchange(r) => r.cells.iter_mut().map(|c| &mut c.variant).collect(),
        ExperimentResult::AddPlace(r) => r
            .sites
            .iter_mut()
            .map(|s| &mut s.variant)
            .chain(r.baselines.iter_mut())
            .collect(),
        ExperimentResult::SeedAlignment(_)
        | ExperimentResult::LogitLens(_)
        | ExperimentResult::TokenEffects(_) => vec![],
    }
}

/// The benchmark choices of a result: "Average" first, then every benchmark of its variants.
pub fn benches_of(r: &ExperimentResult) -> Vec<String> {
    let mut r = r.clone();
    let set: std::collections::BTreeSet<String> = variants_mut(&mut r)
        .into_iter()
        .flat_map(|v| v.scores.keys().cloned().collect::<Vec<_>>())
        .collect();
    std::iter::once(AVERAGE.to_owned()).chain(set).collect()
}

/// The eval seeds occurring in a result's variants.
pub fn seeds_of(r: &ExperimentResult) -> std::collections::BTreeSet<u64> {
    let mut r = r.clone();
    variants_mut(&mut r)
        .into_iter()
        .flat_map(|v| {
            v.scores
                .values()
                .flatten()
                .map(|s| s.seed)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A copy of `r` without the eval seeds in `excluded` (the seed toggles of the app).
pub fn without_seeds(
    r: &ExperimentResult,
    excluded: &std::collections::BTreeSet<u64>,
) -> ExperimentResult {
    let mut r = r.clone();
    if !excluded.is_empty() {
        for v in variants_mut(&mut r) {
            for scores in v.scores.values_mut() {
                scores.retain(|s| !excluded.contains(&s.seed));
            }
            v.scores.retain(|_, s| !s.is_empty());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluding_a_seed_changes_the_mean_to_that_of_the_other_seeds() {
        let mut rng = shared::fixtures::Rng::new(2);
        let r = ExperimentResult::Layers(shared::fixtures::layers(&mut rng));
        assert_eq!(seeds_of(&r), [0, 1, 2].into_iter().collect());
        let only0 = without_seeds(&r, &[1, 2].into_iter().collect());
        let ExperimentResult::Layers(l) = &only0 else {
            panic!()
        };
        let d = layers::prepare(
            l,
            &BenchOptions {
                bench: "math500".into(),
                ..Default::default()
            },
        );
        let p = &d.curves[0].points[0];
        let ExperimentResult::Layers(orig) = &r else {
            panic!()
        };
        let seed0 = orig.points[0].variant.scores["math500"]
            .iter()
            .find(|s| s.seed == 0)
            .unwrap()
            .pass_at_1
            * 100.0;
        assert_eq!((p.seeds, p.std), (1, 0.0));
        assert!((p.mean - seed0).abs() < 1e-9);
    }
}
