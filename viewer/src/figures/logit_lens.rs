//! Logit lens (reference §7.4): the tokens each layer's steering vector points at through the
//! unembedding (top by cosine and by dot product), the vector norms by layer, the singular values
//! (with the stable rank) and the pairwise cosine matrix.

use serde::Serialize;
use shared::experiments::{Histogram, LogitLensResult, TokenScore};

use crate::chart::{Bar, Figure, HeatmapPanel, Panel, PlotPanel, Series, TablePanel};
use crate::theme::{self, Colormap};

/// What to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Tokens per layer in the overview table.
    pub top_k: usize,
    /// One layer in the reference's layout (rows "Cos. Sim." and "Dot Prod."), or all layers.
    pub layer: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            top_k: 6,
            layer: None,
        }
    }
}

/// The prepared data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    /// The model.
    pub model: String,
    /// Per layer (sorted): layer, norm, top tokens by cosine (at most `top_k`), by dot.
    pub layers: Vec<(u32, f64, Vec<TokenScore>, Vec<TokenScore>)>,
    /// The selected layer, if any.
    pub layer: Option<u32>,
    /// Singular values.
    pub singular_values: Vec<f64>,
    /// Stable rank.
    pub stable_rank: f64,
    /// Cosine matrix.
    pub cosine_matrix: Option<Vec<Vec<Option<f64>>>>,
    /// Per layer: histogram of dot products and of cosines over the vocabulary.
    pub histograms: Vec<(u32, Option<Histogram>, Option<Histogram>)>,
}

/// Shows a token visibly: spaces as "·", newlines as "¶", the empty token as "(empty)" (glyphs the
/// embedded Ubuntu font has, so screen and files show them).
pub fn show_token(t: &str) -> String {
    if t.is_empty() {
        "(empty)".into()
    } else {
        t.replace(' ', "·").replace('\n', "¶")
    }
}

/// Prepares the tables (tokens re-sorted by score, descending, truncated to `top_k`).
pub fn prepare(r: &LogitLensResult, o: &Options) -> Data {
    let k = if o.layer.is_some() {
        10
    } else {
        o.top_k.max(1)
    };
    let mut layers: Vec<_> = r
        .layers
        .iter()
        .map(|l| {
            let mut cos = l.top_by_cos.clone();
            cos.sort_by(|a, b| b.cos.total_cmp(&a.cos));
            cos.truncate(k);
            let mut dot = l.top_by_dot.clone();
            dot.sort_by(|a, b| b.dot.total_cmp(&a.dot));
            dot.truncate(k);
            (l.layer, l.norm, cos, dot)
        })
        .collect();
    layers.sort_by_key(|l| l.0);
    let cosine_matrix = r.cosine_matrix.as_ref().and_then(|m| m.to_rows());
    let mut histograms: Vec<_> = r
        .layers
        .iter()
        .filter(|l| l.histogram_dot.is_some() || l.histogram_cos.is_some())
        .map(|l| (l.layer, l.histogram_dot.clone(), l.histogram_cos.clone()))
        .collect();
    histograms.sort_by_key(|h| h.0);
    Data {
        model: r.model.clone(),
        layers,
        layer: o.layer,
        singular_values: r.singular_values.clone(),
        stable_rank: r.stable_rank,
        cosine_matrix,
        histograms,
    }
}

/// The token table, the norms and singular values, and the cosine matrix.
pub fn figures(d: &Data) -> Vec<Figure> {
    let mut out = Vec::new();
    let table = match d.layer.and_then(|l| d.layers.iter().find(|x| x.0 == l)) {
        Some((layer, _, cos, _)) => TablePanel {
            title: format!("{} · layer {layer}: top tokens by cosine", d.model),
            headers: std::iter::once(String::new())
                .chain(cos.iter().map(|t| show_token(&t.token)))
                .collect(),
            rows: vec![
                std::iter::once("Cos. Sim.".to_owned())
                    .chain(cos.iter().map(|t| format!("{:.2}", t.cos)))
                    .collect(),
                std::iter::once("Dot Prod.".to_owned())
                    .chain(cos.iter().map(|t| format!("{:.2}", t.dot)))
                    .collect(),
            ],
        },
        None => {
            let k = d.layers.iter().map(|l| l.2.len()).max().unwrap_or(0);
            TablePanel {
                title: format!("{} · top tokens by cosine with W_U (cosine)", d.model),
                headers: ["Layer".to_owned(), "norm".to_owned()]
                    .into_iter()
                    .chain((1..=k).map(|i| format!("#{i}")))
                    .collect(),
                rows: d
                    .layers
                    .iter()
                    .map(|(l, n, cos, _)| {
                        [l.to_string(), format!("{n:.2}")]
                            .into_iter()
                            .chain(
                                cos.iter()
                                    .map(|t| format!("{} ({:.2})", show_token(&t.token), t.cos)),
                            )
                            .collect()
                    })
                    .collect(),
            }
        }
    };
    let rows = table.rows.len() as u32;
    out.push(Figure::single(
        "logit-lens-tokens",
        "",
        Panel::Table(table),
        (1000, 60 + 20 * rows),
    ));
    let mut norms = PlotPanel::new("Norm by layer", "Layer", "vector norm");
    norms.series.push(Series::line(
        "norm",
        theme::ORANGE,
        d.layers.iter().map(|l| (f64::from(l.0), l.1)).collect(),
        None,
    ));
    let mut sv = PlotPanel::new(
        format!("Singular values (stable rank {:.2})", d.stable_rank),
        "Index",
        "σ",
    );
    sv.series.push(Series::line(
        "σ",
        theme::C0,
        d.singular_values
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64, *s))
            .collect(),
        None,
    ));
    out.push(Figure {
        id: "logit-lens-stats".into(),
        title: String::new(),
        panels: vec![Panel::Plot(norms), Panel::Plot(sv)],
        columns: 2,
        panel_size: (480, 340),
        notes: vec![],
    });
    for (which, name) in [(0, "dot_sims"), (1, "cos_sims")] {
        let panels: Vec<Panel> = d
            .histograms
            .iter()
            .filter_map(|(layer, dot, cos)| {
                let h = if which == 0 {
                    dot.as_ref()?
                } else {
                    cos.as_ref()?
                };
                let width = (h.max - h.min) / h.counts.len().max(1) as f64;
                let bars = h
                    .counts
                    .iter()
                    .enumerate()
                    .map(|(k, c)| Bar {
                        x: h.center(k),
                        height: (1.0 + *c as f64).log10(),
                        err: None,
                    })
                    .collect();
                let mut p = PlotPanel::new(
                    format!("Layer {layer}"),
                    if which == 0 { "W_U·s" } else { "cosine" },
                    "log10(1 + count)",
                );
                p.series.push(Series::bars("", theme::C0, bars, width));
                Some(Panel::Plot(p))
            })
            .collect();
        if !panels.is_empty() {
            let columns = panels.len().div_ceil(4).max(1);
            out.push(Figure {
                id: format!("logit-lens-{name}"),
                title: format!("{} · {name} over the vocabulary", d.model),
                panels,
                columns,
                panel_size: (260, 200),
                notes: vec![],
            });
        }
    }
    if let Some(m) = &d.cosine_matrix {
        let n = m.len();
        let panel = HeatmapPanel {
            title: "Pairwise cosine of the layers' vectors".into(),
            x_label: "Layer".into(),
            y_label: "Layer".into(),
            row_labels: (0..n).map(|i| i.to_string()).collect(),
            col_labels: (0..n).map(|i| i.to_string()).collect(),
            cell_text: vec![],
            values: m.clone(),
            colormap: Colormap::Vlag { center: 0.0 },
            range: (-1.0, 1.0),
            markers: vec![],
            colorbar_label: "cosine".into(),
            tick_every: if n > 16 { 2 } else { 1 },
        };
        out.push(Figure::single(
            "logit-lens-cossims",
            "",
            Panel::Heatmap(panel),
            (620, 540),
        ));
    }
    out
}

/// CSV: `layer,rank,token,id,cos,dot` (by cosine).
pub fn csv(d: &Data) -> String {
    let mut out = String::from("layer,rank,token,id,cos,dot\n");
    for (l, _, cos, _) in &d.layers {
        for (i, t) in cos.iter().enumerate() {
            out.push_str(&format!(
                "{l},{},{},{},{:.4},{:.4}\n",
                i + 1,
                shared::aggregate::csv_field(&t.token),
                t.id,
                t.cos,
                t.dot
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_sorted_by_score_and_truncated_and_one_layer_uses_the_reference_layout() {
        let mut rng = shared::fixtures::Rng::new(13);
        let mut r = shared::fixtures::logit_lens(&mut rng);
        r.layers[0].top_by_cos.reverse();
        let d = prepare(&r, &Options::default());
        assert_eq!(d.layers.len(), 28);
        let cos = &d.layers[0].2;
        assert_eq!(cos.len(), 6);
        assert!(cos.windows(2).all(|w| w[0].cos >= w[1].cos));
        let best = r.layers[0]
            .top_by_cos
            .iter()
            .map(|t| t.cos)
            .fold(f64::MIN, f64::max);
        assert_eq!(cos[0].cos, best);
        let one = prepare(
            &r,
            &Options {
                layer: Some(3),
                ..Options::default()
            },
        );
        let Panel::Table(t) = &figures(&one)[0].panels[0] else {
            panic!()
        };
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0][0], "Cos. Sim.");
        assert_eq!(t.headers.len(), 11);
        assert_eq!(show_token(" To"), "·To");
        // one histogram panel per layer, 4 rows; bar heights are log10(1 + count)
        let figs = figures(&d);
        let hist = figs.iter().find(|f| f.id == "logit-lens-dot_sims").unwrap();
        assert_eq!((hist.panels.len(), hist.rows()), (28, 4));
        let Panel::Plot(p) = &hist.panels[0] else {
            panic!()
        };
        let crate::chart::SeriesKind::Bars { bars, .. } = &p.series[0].kind else {
            panic!()
        };
        let h = r.layers[0].histogram_dot.as_ref().unwrap();
        assert_eq!(bars.len(), h.counts.len());
        assert!((bars[3].height - (1.0 + h.counts[3] as f64).log10()).abs() < 1e-12);
    }
}
