//! Layers (reference §6.3, P2 Figures 1, 9–11): accuracy of single-layer steering against the layer
//! index, mean ± std band over eval seeds, dashed baselines (base, all-layer steering, full tune).

use shared::experiments::LayersResult;

use super::BenchOptions;
use super::curves::{Curve, CurveData, baselines, bench_title, sorted_points, sweep_spec};

/// Prepares the curves: one per series (`steering`, then others sorted), points sorted by layer.
pub fn prepare(r: &LayersResult, o: &BenchOptions) -> CurveData {
    let spec = sweep_spec(r.points.iter().map(|p| &p.variant), &r.baselines);
    let mut missing = Vec::new();
    let mut names: Vec<String> = r
        .points
        .iter()
        .map(|p| p.series.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    names.sort_by_key(|n| (n != "steering", n.clone()));
    let curves = names
        .into_iter()
        .map(|name| {
            let points = sorted_points(
                r.points
                    .iter()
                    .filter(|p| p.series == name)
                    .map(|p| (f64::from(p.layer), &p.variant)),
                o,
                &spec,
                &mut missing,
            );
            let label = if name == "steering" {
                "steering-layer".to_owned()
            } else {
                format!("steering-layer {}", name.replace('_', " "))
            };
            Curve {
                name: label,
                points,
            }
        })
        .collect();
    let present: std::collections::BTreeSet<u32> = r
        .points
        .iter()
        .filter(|p| p.series == "steering")
        .map(|p| p.layer)
        .collect();
    // a corrupt num_layers must not make millions of names
    let absent: Vec<String> = (0..r.num_layers.min(super::pair_layers::MAX_LAYERS as u32))
        .filter(|l| !present.contains(l))
        .map(|l| l.to_string())
        .collect();
    if !absent.is_empty() {
        missing.push(format!("layers without results: {}", absent.join(", ")));
    }
    CurveData {
        title: format!("{} · {}", r.model, bench_title(&o.bench, &spec)),
        x_label: "Layer".into(),
        y_label: o.metric.label().into(),
        bench: o.bench.clone(),
        curves,
        baselines: baselines(&r.baselines, &o.bench, o.metric, &spec, &mut missing),
        missing,
        integer_x: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::Panel;
    use shared::aggregate::{Metric, SeedScore};
    use shared::experiments::{LayerPoint, Variant};

    fn v(label: &str, vals: &[f64]) -> Variant {
        let scores = [(
            "math500".to_owned(),
            vals.iter()
                .enumerate()
                .map(|(s, x)| SeedScore {
                    seed: s as u64,
                    pass_at_1: *x,
                    avg_at_n: *x,
                    samples_per_problem: 1,
                    mean_length: None,
                    mean_length_correct: None,
                    mean_length_incorrect: None,
                })
                .collect(),
        )]
        .into_iter()
        .collect();
        Variant {
            label: label.into(),
            checkpoint: None,
            scores,
        }
    }

    #[test]
    fn points_are_sorted_by_layer_with_population_std_and_missing_layers_are_named() {
        let r = LayersResult {
            format_version: 1,
            model: "m".into(),
            temperature: 1.0,
            num_layers: 4,
            points: vec![
                LayerPoint {
                    layer: 2,
                    series: "steering".into(),
                    variant: v("l2", &[0.5, 0.7]),
                },
                LayerPoint {
                    layer: 0,
                    series: "steering".into(),
                    variant: v("l0", &[0.1, 0.1, 0.4]),
                },
                LayerPoint {
                    layer: 3,
                    series: "append_to".into(),
                    variant: v("l3 to", &[0.9]),
                },
            ],
            baselines: vec![v("Base", &[0.2])],
        };
        let d = prepare(
            &r,
            &BenchOptions {
                bench: "math500".into(),
                metric: Metric::Accuracy,
            },
        );
        assert_eq!(d.curves.len(), 2);
        assert_eq!(d.curves[0].name, "steering-layer");
        let xs: Vec<f64> = d.curves[0].points.iter().map(|p| p.x).collect();
        assert_eq!(xs, [0.0, 2.0]);
        let p2 = &d.curves[0].points[1];
        assert!((p2.mean - 60.0).abs() < 1e-9 && (p2.std - 10.0).abs() < 1e-9 && p2.seeds == 2);
        let p0 = &d.curves[0].points[0];
        assert!((p0.mean - 20.0).abs() < 1e-9 && (p0.std - 200f64.sqrt()).abs() < 1e-9);
        assert_eq!(d.baselines[0].mean, 20.0);
        assert!(
            d.missing.iter().any(|m| m.contains("1, 3")),
            "{:?}",
            d.missing
        );
        let figs = super::super::curves::curve_figures("layers", &d);
        let Panel::Plot(p) = &figs[0].panels[0] else {
            panic!()
        };
        assert_eq!(p.series.len(), 3);
        // the paper version: one orange line and black labelled baselines, no legend names
        let Panel::Plot(paper) = &figs[1].panels[0] else {
            panic!()
        };
        assert_eq!(paper.series.len(), 2);
        assert!(paper.series.iter().all(|s| s.name.is_empty()));
        assert!(
            matches!(&paper.series[1].kind, crate::chart::SeriesKind::HLine { label: Some(l), .. } if l == "Base")
        );
    }

    #[test]
    fn a_variant_without_the_benchmark_is_reported_not_plotted() {
        let r = LayersResult {
            format_version: 1,
            model: "m".into(),
            temperature: 1.0,
            num_layers: 1,
            points: vec![LayerPoint {
                layer: 0,
                series: "steering".into(),
                variant: v("l0", &[0.5]),
            }],
            baselines: vec![],
        };
        let d = prepare(
            &r,
            &BenchOptions {
                bench: "aime24".into(),
                metric: Metric::Accuracy,
            },
        );
        assert!(d.curves[0].points.is_empty());
        assert_eq!(d.missing, ["l0: no scores for aime24"]);
    }
}
