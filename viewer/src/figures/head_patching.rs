//! Head patching (reference §6.6, P2 Figures 5, 20, 21): accuracy against the patched head, one
//! panel per projection type, with the baselines (skip attention, skip layer, the vectors alone);
//! and the combined q/k/v panel ("Steer Q-Proj", "Steer K-Proj", "Steer V-Proj").

use serde::Serialize;
use shared::experiments::HeadPatchingResult;

use super::BenchOptions;
use super::curves::{self, Curve, CurveData, baselines, sorted_points, sweep_spec};
use crate::chart::{Figure, Panel};

/// Which panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// One panel per projection type.
    #[default]
    PerProjType,
    /// The paper's combined q/k/v figure (or inverse q/k/v).
    Combined {
        /// Use the `inverse_*` projection types.
        inverse: bool,
    },
}

impl View {
    /// Every view, in the order of the app's choices (`viewer export` writes each).
    pub const ALL: [Self; 3] = [
        Self::PerProjType,
        Self::Combined { inverse: false },
        Self::Combined { inverse: true },
    ];

    /// What the view appends to file names and figure ids (nothing for the default view), so
    /// that the views of one result export to distinct files.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::PerProjType => "",
            Self::Combined { inverse: false } => "-combined",
            Self::Combined { inverse: true } => "-combined-inverse",
        }
    }
}

/// What to show.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    /// Benchmark and metric.
    pub bench: BenchOptions,
    /// Which panels.
    pub view: View,
}

/// The prepared panels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    /// The model.
    pub model: String,
    /// One curve panel per projection type, in the order q, k, v, inverse q/k/v, then others.
    pub panels: Vec<CurveData>,
    /// Which panels these are.
    pub view: View,
}

fn proj_order(p: &str) -> (u8, String) {
    let rank = match p {
        "q_proj" => 0,
        "k_proj" => 1,
        "v_proj" => 2,
        "inverse_q_proj" => 3,
        "inverse_k_proj" => 4,
        "inverse_v_proj" => 5,
        _ => 6,
    };
    (rank, p.to_owned())
}

/// The paper's panel title of a projection type.
pub fn proj_title(p: &str, combined: bool) -> String {
    match (p, combined) {
        ("head_all" | "head", _) => "Skip-Head".into(),
        ("inverse_head_all" | "inverse_head", _) => "Steer-Head".into(),
        ("q_proj" | "inverse_q_proj", true) => "Steer Q-Proj".into(),
        ("k_proj" | "inverse_k_proj", true) => "Steer K-Proj".into(),
        ("v_proj" | "inverse_v_proj", true) => "Steer V-Proj".into(),
        _ => format!("Projection type: {p}"),
    }
}

/// Prepares one curve per projection type (and path), heads sorted.
pub fn prepare(r: &HeadPatchingResult, o: &Options) -> Data {
    let spec = sweep_spec(r.points.iter().map(|p| &p.variant), &r.baselines);
    let mut kinds: Vec<String> = r
        .points
        .iter()
        .map(|p| match &p.path {
            Some(path) => format!("{}_{path}", p.proj_type),
            None => p.proj_type.clone(),
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    kinds.sort_by_key(|k| proj_order(k));
    let combined = matches!(o.view, View::Combined { .. });
    if let View::Combined { inverse } = o.view {
        let want: [&str; 3] = if inverse {
            ["inverse_q_proj", "inverse_k_proj", "inverse_v_proj"]
        } else {
            ["q_proj", "k_proj", "v_proj"]
        };
        kinds.retain(|k| want.contains(&k.as_str()));
    }
    let panels = kinds
        .iter()
        .map(|kind| {
            let mut missing = Vec::new();
            let points = sorted_points(
                r.points
                    .iter()
                    .filter(|p| match &p.path {
                        Some(path) => format!("{}_{path}", p.proj_type) == *kind,
                        None => p.proj_type == *kind,
                    })
                    .map(|p| (f64::from(p.head), &p.variant)),
                &o.bench,
                &spec,
                &mut missing,
            );
            CurveData {
                title: proj_title(kind, combined),
                x_label: "Head".into(),
                y_label: o.bench.metric.label().into(),
                bench: o.bench.bench.clone(),
                curves: vec![Curve {
                    name: kind.clone(),
                    points,
                }],
                baselines: baselines(
                    &r.baselines,
                    &o.bench.bench,
                    o.bench.metric,
                    &spec,
                    &mut missing,
                ),
                missing,
                integer_x: true,
            }
        })
        .collect();
    Data {
        model: r.model.clone(),
        panels,
        view: o.view,
    }
}

/// One figure with a panel per projection type (3 columns; the combined view shares one row).
pub fn figures(d: &Data) -> Vec<Figure> {
    let title = format!("{} · heads of the last layer", d.model);
    let combined = matches!(d.view, View::Combined { .. });
    // The combined view is the paper's figure: orange line, black labelled baselines, shared y range.
    let mut panels: Vec<Panel> = d
        .panels
        .iter()
        .map(|c| {
            if combined {
                let mut p = curves::paper_panel(c);
                p.title = c.title.clone();
                Panel::Plot(p)
            } else {
                Panel::Plot(curves::panel(c))
            }
        })
        .collect();
    if combined {
        let ranges: Vec<(f64, f64)> = panels
            .iter()
            .filter_map(|p| {
                if let Panel::Plot(p) = p {
                    p.y_range
                } else {
                    None
                }
            })
            .collect();
        let lo = ranges.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let hi = ranges.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi.is_finite() {
            for p in &mut panels {
                if let Panel::Plot(p) = p {
                    p.y_range = Some((lo, hi));
                }
            }
        }
    }
    let mut f = Figure {
        id: format!("head-patching{}", d.view.suffix()),
        title,
        panels,
        columns: 3,
        panel_size: (420, 360),
        notes: vec![],
    };
    let mut notes: Vec<String> = d
        .panels
        .iter()
        .flat_map(|p| p.missing.iter().cloned())
        .collect();
    notes.sort();
    notes.dedup();
    f.notes = notes;
    vec![f]
}

/// CSV: the curve CSVs of every panel, with a `proj_type` column first.
pub fn csv(d: &Data) -> String {
    let mut out = String::from("proj_type,series,x,label,mean,std,seeds\n");
    for p in &d.panels {
        for line in curves::csv(p).lines().skip(1) {
            out.push_str(&format!(
                "{},{line}\n",
                shared::aggregate::csv_field(&p.curves[0].name)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_follow_q_k_v_then_inverse_and_the_combined_view_keeps_three() {
        let mut rng = shared::fixtures::Rng::new(3);
        let r = shared::fixtures::head_patching(&mut rng);
        let d = prepare(&r, &Options::default());
        let names: Vec<&str> = d.panels.iter().map(|p| p.curves[0].name.as_str()).collect();
        assert_eq!(
            names,
            [
                "q_proj",
                "k_proj",
                "v_proj",
                "inverse_q_proj",
                "inverse_k_proj",
                "inverse_v_proj"
            ]
        );
        assert_eq!(d.panels[0].curves[0].points.len(), 28);
        assert_eq!(d.panels[1].curves[0].points.len(), 4);
        assert_eq!(d.panels[0].baselines.len(), 4);
        // the fixture makes head 9 of q_proj the one whose patching hurts
        let q = &d.panels[0].curves[0].points;
        let worst = q.iter().min_by(|a, b| a.mean.total_cmp(&b.mean)).unwrap();
        assert_eq!(worst.x, 9.0);
        let c = prepare(
            &r,
            &Options {
                view: View::Combined { inverse: false },
                ..Options::default()
            },
        );
        let titles: Vec<&str> = c.panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["Steer Q-Proj", "Steer K-Proj", "Steer V-Proj"]);
        let f = &figures(&c)[0];
        assert_eq!(f.id, "head-patching-combined");
        let inverse = prepare(
            &r,
            &Options {
                view: View::Combined { inverse: true },
                ..Options::default()
            },
        );
        let names: Vec<&str> = inverse
            .panels
            .iter()
            .map(|p| p.curves[0].name.as_str())
            .collect();
        assert_eq!(
            names,
            ["inverse_q_proj", "inverse_k_proj", "inverse_v_proj"]
        );
        assert_eq!(figures(&inverse)[0].id, "head-patching-combined-inverse");
        let ys: Vec<Option<(f64, f64)>> = f
            .panels
            .iter()
            .map(|p| {
                if let Panel::Plot(p) = p {
                    p.y_range
                } else {
                    None
                }
            })
            .collect();
        assert!(
            ys[0].is_some() && ys.iter().all(|y| *y == ys[0]),
            "the combined panels share y: {ys:?}"
        );
        // header + 2×28 + 4×4 head rows + 4 baselines per panel × 6 panels
        assert_eq!(csv(&d).lines().count(), 1 + 72 + 24);
    }
}
