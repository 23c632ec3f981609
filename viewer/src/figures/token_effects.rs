//! Token effects (reference §7.0–§7.3): how steering changes next-token probabilities along
//! completions. Box plots of the top diffs (`max_v q − p`) of the most affected groups of positions
//! (by promoted token `dst`, context token `src`, vanilla argmax `would_be`, ...), of the bottom
//! diffs and of the KL; the steering token's diff at the first position against all others
//! (`token_to_prob_diff.pdf`); histograms of the diffs; and one completion's tokens coloured by
//! their top diff (the reference's HTML heat-maps).

use serde::Serialize;
use shared::analysis::BoxStats;
use shared::experiments::{Histogram, TokenEffectsResult, TokenSample};

use super::logit_lens::show_token;
use crate::chart::{Bar, BoxMark, Figure, HeatmapPanel, Panel, PlotPanel, Series};
use crate::theme::{self, Colormap};

/// Which statistic orders the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Sort {
    /// By mean (the reference's `prob_diff_by. mean_sorted`).
    Mean,
    /// By the extreme value (`max_sorted`; the bottom boxes by their minimum).
    #[default]
    Max,
}

/// What to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The grouping (`dst`, `src`, `would_be`, ...).
    pub grouping: String,
    /// Which statistic orders the groups.
    pub sort: Sort,
    /// Keep only groups seen more than once (the reference's `is_filtered`).
    pub only_repeated: bool,
    /// Boxes per panel.
    pub top_k: usize,
    /// Which of the result's sample completions to colour.
    pub sample: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            grouping: "dst".into(),
            sort: Sort::Max,
            only_repeated: true,
            top_k: 15,
            sample: 0,
        }
    }
}

/// One box, named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedBox {
    /// The group's label as written (`" To"`).
    pub label: String,
    /// Its statistics.
    pub stats: BoxStats,
}

/// The prepared panels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    /// Model and analysis, for titles.
    pub title: String,
    /// The grouping shown.
    pub grouping: String,
    /// Every grouping the result has.
    pub groupings: Vec<String>,
    /// The most promoting groups, largest first.
    pub top: Vec<NamedBox>,
    /// The most suppressing groups (bottom diffs), smallest first.
    pub bottom: Vec<NamedBox>,
    /// The groups with the largest KL, largest first (empty where no KL was computed).
    pub kl: Vec<NamedBox>,
    /// The steering token at position 0 and elsewhere: (token, first, other).
    pub token_at_first: Option<(String, Option<BoxStats>, Option<BoxStats>)>,
    /// Histogram of the top diffs.
    pub histogram_top_diff: Option<Histogram>,
    /// Histogram of the KL.
    pub histogram_kl: Option<Histogram>,
    /// The sample completion shown token by token.
    pub sample: Option<TokenSample>,
    /// Counts and fractions, one line each.
    pub summary: Vec<String>,
    /// What is missing.
    pub missing: Vec<String>,
}

fn select(r: &TokenEffectsResult, o: &Options, measure: &str, descending: bool) -> Vec<NamedBox> {
    let mut boxes: Vec<NamedBox> = r
        .groups
        .iter()
        .filter(|g| g.by == o.grouping && g.measure == measure)
        .filter(|g| !o.only_repeated || g.stats.count > 1)
        .map(|g| NamedBox {
            label: g.label.clone(),
            stats: g.stats,
        })
        .collect();
    let key = |b: &NamedBox| match (o.sort, descending) {
        (Sort::Mean, _) => b.stats.mean,
        (Sort::Max, true) => b.stats.max,
        (Sort::Max, false) => b.stats.min,
    };
    boxes.sort_by(|a, b| {
        let order = key(a).total_cmp(&key(b));
        if descending { order.reverse() } else { order }
    });
    boxes.truncate(o.top_k);
    boxes
}

/// Prepares the boxes of one grouping, the first-position comparison and one sample.
pub fn prepare(r: &TokenEffectsResult, o: &Options) -> Data {
    let mut groupings: Vec<String> = r.groups.iter().map(|g| g.by.clone()).collect();
    groupings.sort();
    groupings.dedup();
    let mut missing = Vec::new();
    let top = select(r, o, "top_diff", true);
    let bottom = select(r, o, "bottom_diff", false);
    let kl = select(r, o, "kl", true);
    if top.is_empty() {
        missing.push(format!(
            "no top-diff groups for the grouping {:?}{} (groupings present: {})",
            o.grouping,
            if o.only_repeated {
                " seen more than once"
            } else {
                ""
            },
            if groupings.is_empty() {
                "none".into()
            } else {
                groupings.join(", ")
            }
        ));
    }
    if r.samples.is_empty() {
        missing.push("no sample completions stored".into());
    } else if o.sample >= r.samples.len() {
        missing.push(format!(
            "sample {} asked for, the result has {}",
            o.sample,
            r.samples.len()
        ));
    }
    let share = |n: u64| {
        if r.num_samples > 0 {
            format!("{n}/{}", r.num_samples)
        } else {
            n.to_string()
        }
    };
    let mut summary = vec![format!(
        "{} completions ({} correct, {} ended on the stop token), {} positions",
        r.num_samples,
        share(r.num_correct),
        share(r.num_stopped),
        r.num_positions
    )];
    if let Some(f) = r.frac_same {
        summary.push(format!(
            "steering reinforces the vanilla top token at {:.1} % of positions",
            100.0 * f
        ));
    }
    if let Some(f) = r.frac_change_top {
        summary.push(format!(
            "the top token changes at {:.1} % of positions",
            100.0 * f
        ));
    }
    Data {
        title: format!("{} · {}", r.model, r.analysis.replace('_', " ")),
        grouping: o.grouping.clone(),
        groupings,
        top,
        bottom,
        kl,
        token_at_first: r
            .token_at_first
            .as_ref()
            .map(|t| (t.token.clone(), t.first, t.other)),
        histogram_top_diff: r.histogram_top_diff.clone(),
        histogram_kl: r.histogram_kl.clone(),
        sample: r.samples.get(o.sample).cloned(),
        summary,
        missing,
    }
}

fn box_panel(title: String, y_label: &str, boxes: &[NamedBox], color: theme::Rgb) -> PlotPanel {
    let mut p = PlotPanel::new(title, "", y_label);
    p.x_ticks = Some(
        boxes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    i as f64,
                    format!("\"{}\" ({})", show_token(&b.label), b.stats.count),
                )
            })
            .collect(),
    );
    let marks = boxes
        .iter()
        .enumerate()
        .map(|(i, b)| BoxMark {
            x: i as f64,
            stats: b.stats,
        })
        .collect();
    p.series.push(Series::boxes("", color, marks, 0.5));
    p
}

fn histogram_panel(title: &str, x_label: &str, h: &Histogram) -> PlotPanel {
    let mut p = PlotPanel::new(title, x_label, "positions");
    let width = (h.max - h.min) / h.counts.len().max(1) as f64;
    let bars = (0..h.counts.len())
        .map(|k| Bar {
            x: h.center(k),
            height: h.counts[k] as f64,
            err: None,
        })
        .collect();
    p.series.push(Series::bars("", theme::C0, bars, width));
    p
}

/// Tokens per row of the sample heat-map.
pub const TOKENS_PER_ROW: usize = 12;

fn sample_panel(s: &TokenSample) -> HeatmapPanel {
    let rows: Vec<&[shared::experiments::TokenPosition]> =
        s.positions.chunks(TOKENS_PER_ROW).collect();
    let values: Vec<Vec<Option<f64>>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|p| Some(p.top_diff).filter(|v| v.is_finite()))
                .collect()
        })
        .collect();
    let (_, hi) = HeatmapPanel::finite_range(&values);
    HeatmapPanel {
        title: format!(
            "completion {} ({}, {}): tokens coloured by top diff",
            s.index,
            if s.correct { "correct" } else { "incorrect" },
            if s.stopped { "stopped" } else { "truncated" }
        ),
        x_label: String::new(),
        y_label: "position".into(),
        row_labels: (0..rows.len())
            .map(|i| (i * TOKENS_PER_ROW).to_string())
            .collect(),
        col_labels: vec![String::new(); TOKENS_PER_ROW],
        cell_text: rows
            .iter()
            .map(|r| r.iter().map(|p| show_token(&p.token)).collect())
            .collect(),
        values,
        colormap: Colormap::YlOrBrLower,
        range: (0.0, hi.max(1e-9)),
        markers: vec![],
        colorbar_label: "top diff".into(),
        tick_every: 1,
    }
}

/// The box-plot figure (top diffs, bottom diffs, KL), the first-position figure, the histograms
/// and the sample heat-map; each only where its data is present.
pub fn figures(d: &Data) -> Vec<Figure> {
    let k = d.top.len().max(d.bottom.len());
    let mut panels = vec![
        Panel::Plot(box_panel(
            format!("{} · most promoted, by {}", d.title, d.grouping),
            "Probability Difference",
            &d.top,
            theme::ORANGE,
        )),
        Panel::Plot(box_panel(
            format!("most suppressed (bottom diffs), by {}", d.grouping),
            "Probability Difference",
            &d.bottom,
            theme::BLUE,
        )),
    ];
    if !d.kl.is_empty() {
        panels.push(Panel::Plot(box_panel(
            format!("largest KL(p||q), by {}", d.grouping),
            "KL",
            &d.kl,
            theme::GREY,
        )));
    }
    let mut notes = d.summary.clone();
    notes.extend(d.missing.iter().cloned());
    let mut out = vec![Figure {
        id: format!(
            "token-effects-{}",
            d.grouping.replace("->", "-to-").replace(':', "-")
        ),
        title: String::new(),
        panels,
        columns: 1,
        panel_size: ((120 + 70 * k as u32).clamp(600, 1400), 340),
        notes,
    }];
    if let Some((token, first, other)) = &d.token_at_first {
        let boxes: Vec<NamedBox> = [
            (format!("{token} at Pos. 0"), first),
            (format!("{token} elsewhere"), other),
        ]
        .into_iter()
        .filter_map(|(label, s)| {
            Some(NamedBox {
                label,
                stats: (*s)?,
            })
        })
        .collect();
        let p = box_panel(
            format!("\"{token}\": probability difference"),
            "Probability Difference",
            &boxes,
            theme::ORANGE,
        );
        out.push(Figure::single(
            "token-at-first",
            "",
            Panel::Plot(p),
            (500, 420),
        ));
    }
    let hists: Vec<Panel> = [
        (&d.histogram_top_diff, "top diffs", "max_v (q − p)"),
        (&d.histogram_kl, "KL(p||q)", "KL"),
    ]
    .into_iter()
    .filter_map(|(h, title, x)| Some(Panel::Plot(histogram_panel(title, x, h.as_ref()?))))
    .collect();
    if !hists.is_empty() {
        out.push(Figure {
            id: "histograms".into(),
            title: String::new(),
            columns: hists.len(),
            panels: hists,
            panel_size: (520, 340),
            notes: vec![],
        });
    }
    if let Some(s) = &d.sample {
        let rows = s.positions.len().div_ceil(TOKENS_PER_ROW) as u32;
        out.push(Figure::single(
            format!("sample-{}", s.index),
            "",
            Panel::Heatmap(sample_panel(s)),
            (1100, 110 + 34 * rows.max(1)),
        ));
    }
    out
}

/// CSV: `measure,grouping,label,count,mean,min,q1,median,q3,max` for the boxes shown.
pub fn csv(d: &Data) -> String {
    let mut out = String::from("measure,grouping,label,count,mean,min,q1,median,q3,max\n");
    for (measure, boxes) in [
        ("top_diff", &d.top),
        ("bottom_diff", &d.bottom),
        ("kl", &d.kl),
    ] {
        for b in boxes {
            let s = &b.stats;
            out.push_str(&format!(
                "{measure},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
                shared::aggregate::csv_field(&d.grouping),
                shared::aggregate::csv_field(&b.label),
                s.count,
                s.mean,
                s.min,
                s.q1,
                s.median,
                s.q3,
                s.max
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::SeriesKind;

    fn fixture() -> TokenEffectsResult {
        shared::fixtures::token_effects(&mut shared::fixtures::Rng::new(43))
    }

    #[test]
    fn the_most_promoted_token_comes_first_and_boxes_are_ordered_by_the_chosen_statistic() {
        let r = fixture();
        let d = prepare(&r, &Options::default());
        assert_eq!(
            d.top[0].label, " To",
            "the fixture's steering promotes \" To\""
        );
        assert!(d.top.windows(2).all(|w| w[0].stats.max >= w[1].stats.max));
        assert!(
            d.bottom
                .windows(2)
                .all(|w| w[0].stats.min <= w[1].stats.min)
        );
        assert!(d.top.len() <= 15 && d.top.iter().all(|b| b.stats.count > 1));
        let by_mean = prepare(
            &r,
            &Options {
                sort: Sort::Mean,
                ..Options::default()
            },
        );
        assert!(
            by_mean
                .top
                .windows(2)
                .all(|w| w[0].stats.mean >= w[1].stats.mean)
        );
        assert_eq!(
            d.groupings,
            ["dst", "pos_is_first", "src", "would_be", "would_be->dst"]
        );
        assert!(d.missing.is_empty(), "{:?}", d.missing);
    }

    #[test]
    fn figures_draw_one_box_per_group_and_the_sample_in_rows() {
        let d = prepare(&fixture(), &Options::default());
        let figs = figures(&d);
        let ids: Vec<&str> = figs.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "token-effects-dst",
                "token-at-first",
                "histograms",
                "sample-0"
            ]
        );
        let Panel::Plot(p) = &figs[0].panels[0] else {
            panic!()
        };
        let SeriesKind::Boxes { boxes, .. } = &p.series[0].kind else {
            panic!()
        };
        assert_eq!(boxes.len(), d.top.len());
        assert_eq!(figs[0].panels.len(), 3, "top, bottom and KL");
        let Panel::Heatmap(h) = &figs[3].panels[0] else {
            panic!()
        };
        assert_eq!(h.values.len(), 60 / TOKENS_PER_ROW);
        assert_eq!(
            h.cell_text[0][0],
            show_token(&d.sample.as_ref().unwrap().positions[0].token)
        );
        // one record per box (a token such as "\n" is quoted and spans two lines)
        let records = csv(&d)
            .lines()
            .filter(|l| {
                ["top_diff,", "bottom_diff,", "kl,"]
                    .iter()
                    .any(|m| l.starts_with(m))
            })
            .count();
        assert_eq!(records, d.top.len() + d.bottom.len() + d.kl.len());
    }

    #[test]
    fn a_result_without_groups_or_samples_says_so_and_still_draws() {
        let mut r = fixture();
        r.groups.clear();
        r.samples.clear();
        r.token_at_first = None;
        r.histogram_kl = None;
        let d = prepare(&r, &Options::default());
        assert!(d.missing.iter().any(|m| m.contains("no top-diff groups")));
        assert!(d.missing.iter().any(|m| m.contains("no sample")));
        let figs = figures(&d);
        assert_eq!(
            figs.len(),
            2,
            "the (empty) boxes and the top-diff histogram"
        );
        assert_eq!(figs[1].panels.len(), 1);
    }
}
