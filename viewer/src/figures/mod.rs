//! One module per figure kind. Each has a pure `prepare(...) -> Data` (the numbers behind the
//! figure, serialisable for CSV/JSON export) and a `figures(&Data) -> Vec<Figure>` that describes
//! the drawing once for the screen, PNG/SVG files and snapshot tests.

pub mod accuracy_table;
pub mod curves;
pub mod exchange;
pub mod head_patching;
pub mod layers;
pub mod logit_lens;
pub mod magnitude;
pub mod pair_layers;
pub mod seed_alignment;
pub mod training_curves;

use shared::experiments::ExperimentResult;
use shared::results::ResultsIndex;

use crate::chart::Figure;

/// A prepared figure set, ready to draw and export.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// File-name stem (`layers-Qwen2.5-Math-7B`).
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

/// Prepares the figures of one experiment result with default options.
pub fn prepare_experiment(path: &str, result: &ExperimentResult) -> Prepared {
    let stem = slug(path.trim_end_matches(".json"));
    match result {
        ExperimentResult::Layers(r) => {
            let d = layers::prepare(r, &layers::Options::default());
            Prepared {
                id: stem,
                figures: layers::figures(&d),
                csv: vec![(String::new(), curves::csv(&d))],
                json: to_json(&d),
            }
        }
        ExperimentResult::Magnitude(r) => {
            let d = magnitude::prepare(r, &magnitude::Options::default());
            Prepared {
                id: stem,
                figures: magnitude::figures(&d),
                csv: vec![(String::new(), curves::csv(&d))],
                json: to_json(&d),
            }
        }
        ExperimentResult::PairLayers(r) => {
            let d = pair_layers::prepare(r, &pair_layers::Options::default());
            Prepared {
                id: stem,
                figures: pair_layers::figures(&d),
                csv: vec![(String::new(), pair_layers::csv(&d))],
                json: to_json(&d),
            }
        }
        ExperimentResult::SeedAlignment(r) => {
            let d = seed_alignment::prepare(r);
            Prepared {
                id: stem,
                figures: seed_alignment::figures(&d),
                csv: vec![(String::new(), seed_alignment::csv(&d))],
                json: to_json(&d),
            }
        }
        ExperimentResult::HeadPatching(r) => {
            let d = head_patching::prepare(r, &head_patching::Options::default());
            Prepared {
                id: stem,
                figures: head_patching::figures(&d),
                csv: vec![(String::new(), head_patching::csv(&d))],
                json: to_json(&d),
            }
        }
        ExperimentResult::Exchange(r) => {
            let d = exchange::prepare(r, &exchange::Options::default());
            Prepared {
                id: stem,
                figures: exchange::figures(&d),
                csv: vec![(String::new(), exchange::csv(&d))],
                json: to_json(&d),
            }
        }
        ExperimentResult::LogitLens(r) => {
            let d = logit_lens::prepare(r, &logit_lens::Options::default());
            Prepared {
                id: stem,
                figures: logit_lens::figures(&d),
                csv: vec![(String::new(), logit_lens::csv(&d))],
                json: to_json(&d),
            }
        }
    }
}

/// Every figure of a results root with default options: the accuracy table, the training curves,
/// and each experiment result (sorted by path).
pub fn prepare_all(index: &ResultsIndex) -> Vec<Prepared> {
    let mut out = Vec::new();
    if !index.summaries.is_empty() {
        let d = accuracy_table::prepare(index, &accuracy_table::Options::default());
        out.push(Prepared {
            id: "accuracy-table".into(),
            figures: accuracy_table::figures(&d),
            csv: accuracy_table::csvs(&d),
            json: to_json(&d),
        });
    }
    if !index.training_runs.is_empty() {
        let d = training_curves::prepare(index, &training_curves::Options::default());
        out.push(Prepared {
            id: "training-curves".into(),
            figures: training_curves::figures(&d),
            csv: vec![(String::new(), training_curves::csv(&d))],
            json: to_json(&d),
        });
    }
    for (path, r) in &index.experiments {
        out.push(prepare_experiment(path, r));
    }
    out
}

/// The sweep variants of a result (empty for seed alignment and logit lens).
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
        ExperimentResult::SeedAlignment(_) | ExperimentResult::LogitLens(_) => vec![],
    }
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

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
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
            &layers::Options {
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
