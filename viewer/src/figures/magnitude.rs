//! Magnitude (reference §6.4): accuracy against the factor a trained vector is scaled by.

use shared::aggregate::{AverageSpec, Metric};
use shared::benchmarks::AVERAGE;
use shared::experiments::MagnitudeResult;

use super::curves::{
    Curve, CurveData, CurvePoint, aggregate_variant, baselines, bench_title, panel, paper_panel,
};
use crate::chart::{Figure, Panel};

/// What to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// A benchmark id or "Average".
    pub bench: String,
    /// Which number.
    pub metric: Metric,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bench: AVERAGE.into(),
            metric: Metric::Accuracy,
        }
    }
}

/// Prepares one curve over factors (sorted), plus baselines.
pub fn prepare(r: &MagnitudeResult, o: &Options) -> CurveData {
    let spec = AverageSpec::for_scores(
        r.points
            .iter()
            .map(|p| &p.variant.scores)
            .chain(r.baselines.iter().map(|v| &v.scores)),
    );
    let mut missing = Vec::new();
    let mut points: Vec<CurvePoint> = r
        .points
        .iter()
        .filter_map(|p| {
            let (mean, std, seeds) =
                aggregate_variant(&p.variant, &o.bench, o.metric, &spec, &mut missing)?;
            Some(CurvePoint {
                x: p.factor,
                label: p.variant.label.clone(),
                mean,
                std,
                seeds,
            })
        })
        .collect();
    points.sort_by(|a, b| a.x.total_cmp(&b.x));
    CurveData {
        title: format!(
            "{} · vector {} · {}",
            r.model,
            r.vector,
            bench_title(&o.bench, &spec)
        ),
        x_label: "Magnitude Factor".into(),
        y_label: o.metric.label().into(),
        bench: o.bench.clone(),
        curves: vec![Curve {
            name: "scaled vector".into(),
            points,
        }],
        baselines: baselines(&r.baselines, &o.bench, o.metric, &spec, &mut missing),
        missing,
        integer_x: false,
    }
}

/// Two figures: the curve panel with a legend, and the paper's version.
pub fn figures(d: &CurveData) -> Vec<Figure> {
    let mut f = Figure::single(
        format!("magnitude-{}", d.bench),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_are_sorted_including_negative_ones() {
        let mut rng = shared::fixtures::Rng::new(1);
        let mut r = shared::fixtures::magnitude(&mut rng);
        r.points.reverse();
        let d = prepare(&r, &Options::default());
        let xs: Vec<f64> = d.curves[0].points.iter().map(|p| p.x).collect();
        assert_eq!(xs.len(), 20);
        assert_eq!(xs[0], -1.0);
        assert_eq!(*xs.last().unwrap(), 10.0);
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(d.baselines.len(), 2);
        assert!(d.missing.is_empty());
    }
}
