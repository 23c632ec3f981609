//! Magnitude (reference §6.4): accuracy against the factor a trained vector is scaled by.

use shared::experiments::MagnitudeResult;

use super::BenchOptions;
use super::curves::{Curve, CurveData, baselines, bench_title, sorted_points, sweep_spec};

/// Prepares one curve over factors (sorted), plus baselines.
pub fn prepare(r: &MagnitudeResult, o: &BenchOptions) -> CurveData {
    let spec = sweep_spec(r.points.iter().map(|p| &p.variant), &r.baselines);
    let mut missing = Vec::new();
    let points = sorted_points(
        r.points.iter().map(|p| (p.factor, &p.variant)),
        o,
        &spec,
        &mut missing,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_are_sorted_including_negative_ones() {
        let mut rng = shared::fixtures::Rng::new(1);
        let mut r = shared::fixtures::magnitude(&mut rng);
        r.points.reverse();
        let d = prepare(&r, &BenchOptions::default());
        let xs: Vec<f64> = d.curves[0].points.iter().map(|p| p.x).collect();
        assert_eq!(xs.len(), 20);
        assert_eq!(xs[0], -1.0);
        assert_eq!(*xs.last().unwrap(), 10.0);
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(d.baselines.len(), 2);
        assert!(d.missing.is_empty());
    }
}
