//! Curves of mean ± std over eval seeds against a swept quantity, with dashed baselines: shared by
//! the layers, magnitude and head-patching figures (reference `plot_benchmark_curves`).

use serde::Serialize;
use shared::aggregate::{AverageSpec, Metric, aggregate};
use shared::experiments::Variant;

use super::BenchOptions;
use crate::chart::{Figure, Marker, Panel, PlotPanel, Series, SeriesKind};
use crate::theme;

/// One point: x, the variant's label, mean ± std over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// The swept value.
    pub x: f64,
    /// The variant's label.
    pub label: String,
    /// Mean over seeds.
    pub mean: f64,
    /// Std over seeds.
    pub std: f64,
    /// Number of seeds.
    pub seeds: usize,
}

/// A named curve, sorted by x.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    /// The series name.
    pub name: String,
    /// Its points.
    pub points: Vec<CurvePoint>,
}

/// A horizontal reference line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// Its label.
    pub label: String,
    /// Mean over seeds.
    pub mean: f64,
    /// Std over seeds.
    pub std: f64,
    /// Number of seeds.
    pub seeds: usize,
}

/// The data of one curve panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveData {
    /// Panel title.
    pub title: String,
    /// X label.
    pub x_label: String,
    /// Y label.
    pub y_label: String,
    /// The benchmark shown (id or "Average").
    pub bench: String,
    /// The curves.
    pub curves: Vec<Curve>,
    /// The baselines.
    pub baselines: Vec<Baseline>,
    /// What is missing.
    pub missing: Vec<String>,
    /// Integer ticks (layers, heads).
    #[serde(skip)]
    pub integer_x: bool,
}

/// The Average of a sweep: over the benchmarks of its points and baselines.
pub fn sweep_spec<'a>(
    points: impl Iterator<Item = &'a Variant>,
    baselines: &'a [Variant],
) -> AverageSpec {
    AverageSpec::for_scores(points.chain(baselines).map(|v| &v.scores))
}

/// Aggregates a variant; records what is missing.
pub fn aggregate_variant(
    v: &Variant,
    bench: &str,
    metric: Metric,
    spec: &AverageSpec,
    missing: &mut Vec<String>,
) -> Option<(f64, f64, usize)> {
    match aggregate(&v.scores, bench, metric, spec) {
        Some(m) if m.mean.is_finite() => Some((m.mean, m.std, m.n)),
        _ => {
            let absent: Vec<&str> = if bench == shared::benchmarks::AVERAGE {
                spec.benches
                    .iter()
                    .filter(|b| !v.scores.contains_key(*b))
                    .map(String::as_str)
                    .collect()
            } else {
                vec![bench]
            };
            missing.push(format!(
                "{}: no scores for {}",
                v.label,
                if absent.is_empty() {
                    bench.to_owned()
                } else {
                    absent.join(", ")
                }
            ));
            None
        }
    }
}

/// The points of one curve from (x, variant) pairs, sorted by x; variants without the benchmark
/// are left out and recorded in `missing`.
pub fn sorted_points<'a>(
    items: impl IntoIterator<Item = (f64, &'a Variant)>,
    o: &BenchOptions,
    spec: &AverageSpec,
    missing: &mut Vec<String>,
) -> Vec<CurvePoint> {
    let mut points: Vec<CurvePoint> = items
        .into_iter()
        .filter_map(|(x, v)| {
            let (mean, std, seeds) = aggregate_variant(v, &o.bench, o.metric, spec, missing)?;
            Some(CurvePoint {
                x,
                label: v.label.clone(),
                mean,
                std,
                seeds,
            })
        })
        .collect();
    points.sort_by(|a, b| a.x.total_cmp(&b.x));
    points
}

/// The two figures of a curve sweep (layers, magnitude): the panel with a legend and the notes,
/// and the paper's version. Ids are `{prefix}-{bench}` and `paper-{bench}`.
pub fn curve_figures(prefix: &str, d: &CurveData) -> Vec<Figure> {
    let mut f = Figure::single(
        format!("{prefix}-{}", d.bench),
        "",
        Panel::Plot(panel(d)),
        (900, 380),
    );
    f.notes = d.missing.clone();
    let paper = Figure::single(
        format!("paper-{}", d.bench),
        "",
        Panel::Plot(paper_panel(d)),
        (900, 350),
    );
    vec![f, paper]
}

/// Builds the baselines of a curve panel.
pub fn baselines(
    vs: &[Variant],
    bench: &str,
    metric: Metric,
    spec: &AverageSpec,
    missing: &mut Vec<String>,
) -> Vec<Baseline> {
    vs.iter()
        .filter_map(|v| {
            let (mean, std, seeds) = aggregate_variant(v, bench, metric, spec, missing)?;
            Some(Baseline {
                label: v.label.clone(),
                mean,
                std,
                seeds,
            })
        })
        .collect()
}

/// The title of a benchmark panel ("Average performance across benches", "MATH500 performance").
pub fn bench_title(bench: &str, spec: &AverageSpec) -> String {
    if bench == shared::benchmarks::AVERAGE {
        format!("{} across benchmarks", spec.label())
    } else {
        format!("{} performance", shared::benchmarks::display_name(bench))
    }
}

/// The plot panel of curve data: the first curve orange with circles (the paper's style), further
/// curves with squares; baselines dashed in the reference's baseline colours, with ±std bands.
pub fn panel(d: &CurveData) -> PlotPanel {
    let mut p = PlotPanel::new(d.title.clone(), d.x_label.clone(), d.y_label.clone());
    for (i, c) in d.curves.iter().enumerate() {
        let color = if i == 0 {
            theme::ORANGE
        } else {
            [theme::BLUE, theme::GREY][(i - 1) % 2]
        };
        let pts = c.points.iter().map(|p| (p.x, p.mean)).collect();
        let band = c
            .points
            .iter()
            .map(|p| (p.x, p.mean - p.std, p.mean + p.std))
            .collect();
        let mut s = Series::line(c.name.clone(), color, pts, Some(band));
        if i > 0
            && let SeriesKind::Line { marker, .. } = &mut s.kind
        {
            *marker = Some(Marker::Square);
        }
        p.series.push(s);
    }
    p.series.extend(baseline_series(&d.baselines));
    if d.integer_x {
        let xs: std::collections::BTreeSet<i64> = d
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.x as i64))
            .collect();
        let step = ((xs.len() as f64 / 16.0).ceil() as i64).max(1);
        p.x_ticks = Some(
            xs.into_iter()
                .filter(|x| x % step == 0)
                .map(|x| (x as f64, x.to_string()))
                .collect(),
        );
    }
    p
}

/// The baselines as dashed lines in the reference's baseline colours, with ±std bands.
pub fn baseline_series(baselines: &[Baseline]) -> Vec<Series> {
    baselines
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let band = (b.std > 0.0).then_some((b.mean - b.std, b.mean + b.std));
            Series::hline(b.label.clone(), theme::baseline(i), b.mean, band)
        })
        .collect()
}

/// The paper's version (reference `plot_benchmark_curves`, paper variant): one orange line
/// (width 2.5, circles) with its band, at most 3 baselines as black dashed lines with a light band
/// and their label written at the right edge, no legend.
pub fn paper_panel(d: &CurveData) -> PlotPanel {
    let mut p = panel(d);
    p.title.clear();
    p.series
        .retain(|s| !matches!(s.kind, SeriesKind::HLine { .. }));
    p.series.truncate(1);
    for s in &mut p.series {
        s.name.clear();
        if let SeriesKind::Line { width, .. } = &mut s.kind {
            *width = 2.5;
        }
    }
    for b in d.baselines.iter().take(3) {
        let band = if b.std > 0.0 {
            Some((b.mean - b.std, b.mean + b.std))
        } else {
            None
        };
        let mut s = Series::hline("", theme::BLACK, b.mean, band);
        if let SeriesKind::HLine { width, label, .. } = &mut s.kind {
            *width = 2.0;
            *label = Some(b.label.clone());
        }
        p.series.push(s);
    }
    // 5 % headroom at the top
    let ((_, _), (y0, y1)) = p.bounds(crate::chart::Axis::Left);
    p.y_range = Some((y0, y1 + 0.05 * (y1 - y0)));
    p
}

/// CSV of curve data: `series,x,label,mean,std,seeds` rows then baselines with an empty x.
pub fn csv(d: &CurveData) -> String {
    let mut out = String::from("series,x,label,mean,std,seeds\n");
    for c in &d.curves {
        for p in &c.points {
            out.push_str(&format!(
                "{},{},{},{:.4},{:.4},{}\n",
                shared::aggregate::csv_field(&c.name),
                p.x,
                shared::aggregate::csv_field(&p.label),
                p.mean,
                p.std,
                p.seeds
            ));
        }
    }
    for b in &d.baselines {
        out.push_str(&format!(
            "baseline,,{},{:.4},{:.4},{}\n",
            shared::aggregate::csv_field(&b.label),
            b.mean,
            b.std,
            b.seeds
        ));
    }
    out
}
