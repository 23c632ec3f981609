//! Seed alignment (reference §6.7 and `steering_vectors_alignment` of §6.8): per-layer cosine
//! between two seeds' vectors as bars with the accuracy difference as bars on a twin axis; the
//! merged-vs-joint cosines; greedy axis-removal curves; the joint-vs-merged cosine matrix.

use serde::Serialize;
use shared::experiments::SeedAlignmentResult;

use crate::chart::{Bar, Figure, HeatmapPanel, Panel, PlotPanel, Series, cell_texts};
use crate::theme::{self, Colormap};

/// One layer's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRow {
    /// The layer.
    pub layer: u32,
    /// Cosine between the seeds' vectors.
    pub cosine: f64,
    /// |acc(seed a) − acc(seed b)| in points.
    pub perf_diff: f64,
    /// Cosine merged vs joint.
    pub cosine_merged_vs_joint: Option<f64>,
}

/// The prepared data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    /// The model.
    pub model: String,
    /// The two seeds.
    pub seeds: [u64; 2],
    /// Rows sorted by layer.
    pub layers: Vec<LayerRow>,
    /// Axis-removal curves: (layer, points (dimensions left, cosine)).
    pub curves: Vec<(u32, Vec<(f64, f64)>)>,
    /// The joint (rows) vs merged (columns) cosine matrix.
    pub matrix: Option<Vec<Vec<Option<f64>>>>,
    /// What is missing.
    pub missing: Vec<String>,
}

/// Prepares the rows (sorted by layer; perf diff = |a − b|), the curves and the matrix.
pub fn prepare(r: &SeedAlignmentResult) -> Data {
    let mut layers: Vec<LayerRow> = r
        .layers
        .iter()
        .map(|l| LayerRow {
            layer: l.layer,
            cosine: l.cosine,
            perf_diff: (l.accuracy[0] - l.accuracy[1]).abs(),
            cosine_merged_vs_joint: l.cosine_merged_vs_joint,
        })
        .collect();
    layers.sort_by_key(|l| l.layer);
    let mut curves: Vec<(u32, Vec<(f64, f64)>)> = r
        .axis_removal
        .iter()
        .map(|c| {
            (
                c.layer,
                c.cosines
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (f64::from(c.hidden_size) - k as f64, *v))
                    .collect(),
            )
        })
        .collect();
    curves.sort_by_key(|c| c.0);
    let mut missing = Vec::new();
    if r.axis_removal.is_empty() {
        missing.push("no axis-removal curves in the file".into());
    }
    let matrix = r.joint_vs_merged.as_ref().and_then(|m| m.to_rows());
    if matrix.is_none() {
        missing.push(match &r.joint_vs_merged {
            Some(m) => format!(
                "the joint-vs-merged matrix says {}×{} but holds {} values",
                m.rows,
                m.cols,
                m.values.len()
            ),
            None => "no joint-vs-merged cosine matrix in the file".into(),
        });
    }
    Data {
        model: r.model.clone(),
        seeds: r.seeds,
        layers,
        curves,
        matrix,
        missing,
    }
}

/// Bars, merged-vs-joint bars, axis-removal curves, cosine matrix.
pub fn figures(d: &Data) -> Vec<Figure> {
    let mut out = Vec::new();
    let w = 0.4;
    let mut p = PlotPanel::new(
        "Seed alignment of steering vectors — cosine vs. perf diff",
        "Layer",
        "Cosine similarity",
    );
    p.y2_label = Some("|Δ accuracy| (points)".into());
    p.y_range = Some((0.0, 1.0));
    p.series.push(Series::bars(
        format!("cosine (seed {} vs {})", d.seeds[0], d.seeds[1]),
        theme::C0,
        d.layers
            .iter()
            .map(|l| Bar {
                x: f64::from(l.layer) - w / 2.0,
                height: l.cosine,
                err: None,
            })
            .collect(),
        w,
    ));
    p.series.push(
        Series::bars(
            "perf diff",
            theme::C1,
            d.layers
                .iter()
                .map(|l| Bar {
                    x: f64::from(l.layer) + w / 2.0,
                    height: l.perf_diff,
                    err: None,
                })
                .collect(),
            w,
        )
        .on_right(),
    );
    p.x_ticks = Some(
        d.layers
            .iter()
            .map(|l| (f64::from(l.layer), l.layer.to_string()))
            .collect(),
    );
    out.push(Figure {
        notes: d.missing.clone(),
        ..Figure::single("cossims", "", Panel::Plot(p), (1000, 400))
    });
    if d.layers.iter().any(|l| l.cosine_merged_vs_joint.is_some()) {
        let mut p = PlotPanel::new(
            "Merged single-layer vs jointly trained vectors",
            "Layer",
            "Cosine similarity",
        );
        p.y_range = Some((-1.0, 1.0));
        p.series.push(Series::bars(
            "cosine (merged vs joint)",
            theme::C0,
            d.layers
                .iter()
                .filter_map(|l| {
                    Some(Bar {
                        x: f64::from(l.layer),
                        height: l.cosine_merged_vs_joint?,
                        err: None,
                    })
                })
                .collect(),
            0.6,
        ));
        p.x_ticks = Some(
            d.layers
                .iter()
                .map(|l| (f64::from(l.layer), l.layer.to_string()))
                .collect(),
        );
        out.push(Figure::single(
            "cossims_merged_vs_vanilla",
            "",
            Panel::Plot(p),
            (1000, 400),
        ));
    }
    if !d.curves.is_empty() {
        let mut p = PlotPanel::new(
            "Cosine similarity (greedy improvements by axis removal)",
            "Dimensions left",
            "Cosine similarity",
        );
        p.invert_x = true;
        for (i, (layer, pts)) in d.curves.iter().enumerate() {
            let mut s = Series::line(
                format!("layer {layer}"),
                theme::series(i),
                pts.clone(),
                None,
            );
            if let crate::chart::SeriesKind::Line { marker, .. } = &mut s.kind {
                *marker = None;
            }
            p.series.push(s);
        }
        out.push(Figure::single(
            "aligned_subspaces",
            "",
            Panel::Plot(p),
            (700, 420),
        ));
    }
    if let Some(m) = &d.matrix {
        let rows = m.len();
        let cols = m.first().map_or(0, Vec::len);
        let panel = HeatmapPanel {
            title: "Jointly trained vs merged single-layer vectors".into(),
            x_label: "Steering Vector Merged".into(),
            y_label: "Steering Vector".into(),
            row_labels: (0..rows).map(|i| i.to_string()).collect(),
            col_labels: (0..cols).map(|i| i.to_string()).collect(),
            cell_text: cell_texts(m, 1),
            values: m.clone(),
            colormap: Colormap::Vlag { center: 0.0 },
            range: (-1.0, 1.0),
            markers: vec![],
            colorbar_label: "cosine".into(),
            tick_every: if rows > 16 { 2 } else { 1 },
        };
        let side = (26 * rows.max(cols)).clamp(360, 1000) as u32;
        out.push(Figure::single(
            "steering_vectors_alignment",
            "",
            Panel::Heatmap(panel),
            (side + 90, side),
        ));
    }
    out
}

/// CSV: `layer,cosine,perf_diff,cosine_merged_vs_joint`.
pub fn csv(d: &Data) -> String {
    let mut out = String::from("layer,cosine,perf_diff,cosine_merged_vs_joint\n");
    for l in &d.layers {
        out.push_str(&format!(
            "{},{:.4},{:.4},{}\n",
            l.layer,
            l.cosine,
            l.perf_diff,
            l.cosine_merged_vs_joint
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_diff_is_the_absolute_difference_and_curves_count_dimensions_down() {
        let mut rng = shared::fixtures::Rng::new(9);
        let mut r = shared::fixtures::seed_alignment(&mut rng);
        r.layers.reverse();
        let d = prepare(&r);
        assert_eq!(d.layers.len(), 28);
        assert!(d.layers.windows(2).all(|w| w[0].layer < w[1].layer));
        let src = r.layers.iter().find(|l| l.layer == 4).unwrap();
        assert_eq!(
            d.layers[4].perf_diff,
            (src.accuracy[0] - src.accuracy[1]).abs()
        );
        let (_, pts) = &d.curves[0];
        assert_eq!(pts[0].0, shared::fixtures::HIDDEN as f64);
        assert_eq!(pts.last().unwrap().0, 1.0);
        let figs = figures(&d);
        assert_eq!(figs.len(), 4);
        let Panel::Plot(p) = &figs[0].panels[0] else {
            panic!()
        };
        assert_eq!(p.series[1].axis, crate::chart::Axis::Right);
    }
}
