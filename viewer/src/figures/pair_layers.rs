//! Pair layers (reference §6.5, P2 Figure 13): the N×N grid of accuracies when two single-layer
//! vectors i ≤ j are combined, and the three relative-improvement maps (prev, next, max) with the
//! blue–white–orange diverging map centred at 0 and an X on cells above 0.99.

use serde::Serialize;
use shared::aggregate::{AverageSpec, Metric, aggregate};
use shared::analysis::{Relative, relative_improvement};
use shared::benchmarks::AVERAGE;
use shared::experiments::PairLayersResult;

use super::BenchOptions;
use crate::chart::{Figure, HeatmapPanel, Panel, cell_texts};
use crate::theme::Colormap;

/// The prepared grids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    /// The model.
    pub model: String,
    /// N.
    pub n: usize,
    /// The benchmark of `grid`.
    pub bench: String,
    /// `grid[i][j]` = mean (None outside i ≤ j or when missing).
    pub grid: Vec<Vec<Option<f64>>>,
    /// The Average grid the relative maps are computed from.
    pub average_grid: Vec<Vec<Option<f64>>>,
    /// S, the all-layer steering reference.
    pub steering_reference: Option<f64>,
    /// prev, next, max maps (empty without S).
    pub relative: Vec<(Relative, Vec<Vec<Option<f64>>>)>,
    /// What is missing.
    pub missing: Vec<String>,
}

/// The largest grid drawn (a corrupt `num_layers` must not allocate gigabytes).
pub const MAX_LAYERS: usize = 512;

fn grid_of(
    r: &PairLayersResult,
    bench: &str,
    metric: Metric,
    spec: &AverageSpec,
    missing: &mut Vec<String>,
) -> Vec<Vec<Option<f64>>> {
    let n = (r.num_layers as usize).min(MAX_LAYERS);
    let mut g = vec![vec![None; n]; n];
    for p in &r.pairs {
        let (i, j) = (p.i as usize, p.j as usize);
        if i >= n || j >= n || i > j {
            missing.push(format!(
                "pair ({i}, {j}) is outside the {n}×{n} upper triangle"
            ));
            continue;
        }
        match aggregate(&p.variant.scores, bench, metric, spec) {
            Some(m) if m.mean.is_finite() => g[i][j] = Some(m.mean),
            _ => missing.push(format!("pair ({i}, {j}): no scores for {bench}")),
        }
    }
    g
}

/// Prepares the grid of `o.bench` and the relative maps of the Average grid.
pub fn prepare(r: &PairLayersResult, o: &BenchOptions) -> Data {
    let spec = AverageSpec::for_scores(r.pairs.iter().map(|p| &p.variant.scores));
    let mut missing = Vec::new();
    let grid = grid_of(r, &o.bench, o.metric, &spec, &mut missing);
    let average_grid = if o.bench == AVERAGE && o.metric == Metric::Accuracy {
        grid.clone()
    } else {
        grid_of(r, AVERAGE, Metric::Accuracy, &spec, &mut Vec::new())
    };
    let relative = match r.steering_reference {
        Some(s) => [Relative::Prev, Relative::Next, Relative::Max]
            .into_iter()
            .map(|w| (w, relative_improvement(&average_grid, s, w)))
            .collect(),
        None => {
            missing.push(
                "no steering_reference (S): the relative-improvement maps are not drawn".into(),
            );
            vec![]
        }
    };
    missing.dedup();
    if r.num_layers as usize > MAX_LAYERS {
        missing.push(format!(
            "num_layers {} is more than {MAX_LAYERS}: only the first {MAX_LAYERS} are drawn",
            r.num_layers
        ));
    }
    Data {
        model: r.model.clone(),
        n: (r.num_layers as usize).min(MAX_LAYERS),
        bench: o.bench.clone(),
        grid,
        average_grid,
        steering_reference: r.steering_reference,
        relative,
        missing,
    }
}

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// The grid figure and one figure per relative map.
pub fn figures(d: &Data) -> Vec<Figure> {
    let n = d.n;
    let every = if n > 16 { 2 } else { 1 };
    let size = |base: f64| ((base.max(60.0 * n as f64 / 1.0)).min(1100.0)) as u32;
    let grid = HeatmapPanel {
        title: format!(
            "{} · {}",
            d.model,
            shared::benchmarks::display_name(&d.bench)
        ),
        x_label: "j".into(),
        y_label: "i".into(),
        row_labels: labels(n),
        col_labels: labels(n),
        cell_text: cell_texts(&d.grid, 1),
        range: HeatmapPanel::finite_range(&d.grid),
        values: d.grid.clone(),
        colormap: Colormap::YlOrBrLower,
        markers: vec![],
        colorbar_label: "mean".into(),
        tick_every: every,
    };
    let side = size(480.0);
    let mut out = vec![Figure {
        notes: d.missing.clone(),
        ..Figure::single(
            format!("pair-layers-{}", d.bench),
            "",
            Panel::Heatmap(grid),
            (side + 80, side),
        )
    }];
    for (which, map) in &d.relative {
        let (lo, _) = HeatmapPanel::finite_range(map);
        let markers = map
            .iter()
            .enumerate()
            .flat_map(|(i, row)| {
                row.iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_some_and(|v| v > 0.99))
                    .map(move |(j, _)| (i, j))
            })
            .collect();
        let name = match which {
            Relative::Prev => "prev",
            Relative::Next => "next",
            Relative::Max => "max",
        };
        let panel = HeatmapPanel {
            title: format!("relative improvement ({name})"),
            x_label: "Layer".into(),
            y_label: "Layer".into(),
            row_labels: labels(n),
            col_labels: labels(n),
            cell_text: vec![],
            values: map.clone(),
            colormap: Colormap::BlueWhiteOrange { center: 0.0 },
            range: (lo.min(0.0), 1.0),
            markers,
            colorbar_label: "Relative Improvement".into(),
            tick_every: 2,
        };
        let side = size(420.0);
        out.push(Figure::single(
            format!("relative_improvement_average_across_benchmarks_{name}"),
            "",
            Panel::Heatmap(panel),
            (side + 80, side),
        ));
    }
    out
}

/// CSV: `i,j,mean` for the grid, then `map,i,j,value` rows of the relative maps.
pub fn csv(d: &Data) -> String {
    let mut out = format!("i,j,{}\n", d.bench);
    for (i, row) in d.grid.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            if let Some(v) = v {
                out.push_str(&format!("{i},{j},{v:.4}\n"));
            }
        }
    }
    for (which, map) in &d.relative {
        for (i, row) in map.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                if let Some(v) = v {
                    out.push_str(&format!("relative_{which:?},{i},{j},{v:.4}\n").to_lowercase());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_fills_the_upper_triangle_and_relative_maps_use_the_diagonal() {
        let mut rng = shared::fixtures::Rng::new(5);
        let r = shared::fixtures::pair_layers(&mut rng);
        let d = prepare(&r, &BenchOptions::default());
        let n = d.n;
        assert_eq!(n, 8);
        let filled = d.grid.iter().flatten().filter(|v| v.is_some()).count();
        assert_eq!(filled, n * (n + 1) / 2);
        assert!(d.grid[3][1].is_none() && d.grid[1][3].is_some());
        let s = r.steering_reference.unwrap();
        let (i, j) = (1, 5);
        let a = d.grid[i][j].unwrap();
        let (di, dj) = (d.grid[i][i].unwrap(), d.grid[j][j].unwrap());
        let prev = &d.relative[0].1;
        let max = &d.relative[2].1;
        assert!((prev[i][j].unwrap() - (a - dj) / (s - dj)).abs() < 1e-12);
        assert!((max[i][j].unwrap() - (a - di.max(dj)) / (s - di.max(dj))).abs() < 1e-12);
        let figs = figures(&d);
        assert_eq!(figs.len(), 4);
        let Panel::Heatmap(h) = &figs[3].panels[0] else {
            panic!()
        };
        let expected: usize = max
            .iter()
            .flatten()
            .filter(|v| v.is_some_and(|v| v > 0.99))
            .count();
        assert_eq!(h.markers.len(), expected);
    }

    #[test]
    fn without_a_reference_value_only_the_grid_is_drawn_and_the_reason_is_given() {
        let mut rng = shared::fixtures::Rng::new(5);
        let mut r = shared::fixtures::pair_layers(&mut rng);
        r.steering_reference = None;
        r.pairs.push(shared::experiments::PairPoint {
            i: 6,
            j: 2,
            variant: r.pairs[0].variant.clone(),
        });
        let d = prepare(&r, &BenchOptions::default());
        assert!(d.relative.is_empty());
        assert_eq!(figures(&d).len(), 1);
        assert!(d.missing.iter().any(|m| m.contains("steering_reference")));
        assert!(d.missing.iter().any(|m| m.contains("(6, 2)")));
    }
}
