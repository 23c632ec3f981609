//! Exchange (reference §6.2, P2 Table 1): accuracy of recipient models (rows) steered with donor
//! models' vectors (columns, plus the recipient's own "Base"), raw and row-normalised so that Base
//! is 0 and the recipient's own vector is 1. The reference swapped the axis labels (§13.4 item 34);
//! here they name what the data is.

use serde::Serialize;
use shared::aggregate::{AverageSpec, aggregate};
use shared::experiments::ExchangeResult;
use shared::stats::MeanStd;

use super::BenchOptions;
use crate::chart::{Figure, HeatmapPanel, Panel};
use crate::theme::Colormap;

/// The column name of the recipient's own base.
pub const BASE: &str = "Base";

/// The prepared grids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    /// The group.
    pub group: String,
    /// The benchmark.
    pub bench: String,
    /// Recipients (rows), natural order.
    pub rows: Vec<String>,
    /// Donors then "Base" (columns), natural order.
    pub cols: Vec<String>,
    /// Raw mean ± std.
    pub raw: Vec<Vec<Option<MeanStd>>>,
    /// Row-normalised (value, std); rows without both anchors stay raw and are listed.
    pub normalized: Vec<Vec<Option<(f64, f64)>>>,
    /// Rows left unnormalised.
    pub unnormalized_rows: Vec<String>,
    /// What is missing.
    pub missing: Vec<String>,
}

/// Natural sort key: digit runs compare as numbers ("Qwen2.5-7B" < "Qwen2.5-14B").
pub fn natural_key(s: &str) -> Vec<(u8, u64, String)> {
    let mut out = Vec::new();
    let mut num = String::new();
    let mut text = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            if !text.is_empty() {
                out.push((1, 0, std::mem::take(&mut text)));
            }
            num.push(ch);
        } else {
            if !num.is_empty() {
                out.push((0, num.parse().unwrap_or(u64::MAX), String::new()));
                num.clear();
            }
            text.push(ch.to_ascii_lowercase());
        }
    }
    if !num.is_empty() {
        out.push((0, num.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((1, 0, text));
    }
    out
}

/// Prepares the raw and row-normalised grids.
pub fn prepare(r: &ExchangeResult, o: &BenchOptions) -> Data {
    let spec = AverageSpec::for_scores(r.cells.iter().map(|c| &c.variant.scores));
    let mut rows: Vec<String> = r
        .cells
        .iter()
        .map(|c| c.recipient.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    rows.sort_by_key(|s| natural_key(s));
    let mut cols: Vec<String> = r
        .cells
        .iter()
        .filter_map(|c| c.donor.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    cols.sort_by_key(|s| natural_key(s));
    cols.push(BASE.into());
    let mut missing = Vec::new();
    let mut raw = vec![vec![None; cols.len()]; rows.len()];
    for c in &r.cells {
        let i = rows.iter().position(|x| *x == c.recipient).unwrap_or(0);
        let col = c.donor.as_deref().unwrap_or(BASE);
        let j = cols.iter().position(|x| x == col).unwrap_or(0);
        match aggregate(&c.variant.scores, &o.bench, o.metric, &spec) {
            Some(m) if m.mean.is_finite() => raw[i][j] = Some(m),
            _ => missing.push(format!(
                "{} ← {col}: no scores for {}",
                c.recipient, o.bench
            )),
        }
    }
    let mut unnormalized_rows = Vec::new();
    let base_col = cols.len() - 1;
    let normalized = rows
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let own = cols.iter().position(|c| c == name).and_then(|j| raw[i][j]);
            let base = raw[i][base_col];
            match (base, own) {
                (Some(lo), Some(hi)) if hi.mean != lo.mean => {
                    let d = hi.mean - lo.mean;
                    raw[i]
                        .iter()
                        .map(|v| v.map(|m| ((m.mean - lo.mean) / d, m.std / d.abs())))
                        .collect()
                }
                _ => {
                    unnormalized_rows.push(name.clone());
                    raw[i].iter().map(|v| v.map(|m| (m.mean, m.std))).collect()
                }
            }
        })
        .collect();
    if !unnormalized_rows.is_empty() {
        missing.push(format!(
            "rows left unnormalised (no Base or own-vector cell, or they are equal): {}",
            unnormalized_rows.join(", ")
        ));
    }
    Data {
        group: r.group.clone(),
        bench: o.bench.clone(),
        rows,
        cols,
        raw,
        normalized,
        unnormalized_rows,
        missing,
    }
}

fn panel(d: &Data, values: Vec<Vec<Option<(f64, f64)>>>, title: String, bar: &str) -> HeatmapPanel {
    let v: Vec<Vec<Option<f64>>> = values
        .iter()
        .map(|r| r.iter().map(|c| c.map(|c| c.0)).collect())
        .collect();
    HeatmapPanel {
        title,
        x_label: "donor (vectors taken from)".into(),
        y_label: "recipient (vectors applied to)".into(),
        row_labels: d.rows.clone(),
        col_labels: d.cols.clone(),
        cell_text: values
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| {
                        c.map(|(v, s)| format!("{v:.2}\n±{s:.2}"))
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect(),
        range: HeatmapPanel::finite_range(&v),
        values: v,
        colormap: Colormap::Viridis,
        markers: vec![],
        colorbar_label: bar.into(),
        tick_every: 1,
    }
}

/// The raw and the row-normalised heatmap.
pub fn figures(d: &Data) -> Vec<Figure> {
    let bench = shared::benchmarks::display_name(&d.bench);
    let raw = d
        .raw
        .iter()
        .map(|r| r.iter().map(|m| m.map(|m| (m.mean, m.std))).collect())
        .collect();
    let size = (
        150 + 110 * d.cols.len() as u32 + 80,
        120 + 70 * d.rows.len() as u32,
    );
    vec![
        Figure {
            notes: d.missing.clone(),
            ..Figure::single(
                format!("exchange-unnorm-{}", d.bench),
                "",
                Panel::Heatmap(panel(d, raw, format!("{} · {bench}", d.group), "mean")),
                size,
            )
        },
        Figure::single(
            format!("exchange-norm-{}", d.bench),
            "",
            Panel::Heatmap(panel(
                d,
                d.normalized.clone(),
                format!("{} · {bench} (row-normalised)", d.group),
                "mean (row-normalized)",
            )),
            size,
        ),
    ]
}

/// CSV: `recipient,donor,mean,std,normalized,normalized_std`.
pub fn csv(d: &Data) -> String {
    let mut out = String::from("recipient,donor,mean,std,normalized,normalized_std\n");
    for (i, r) in d.rows.iter().enumerate() {
        for (j, c) in d.cols.iter().enumerate() {
            if let Some(m) = d.raw[i][j] {
                let (n, ns) = d.normalized[i][j].unwrap_or((f64::NAN, f64::NAN));
                out.push_str(&format!(
                    "{r},{c},{:.4},{:.4},{n:.4},{ns:.4}\n",
                    m.mean, m.std
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_normalise_base_to_0_and_the_own_vector_to_1() {
        let mut rng = shared::fixtures::Rng::new(11);
        let r = shared::fixtures::exchange(&mut rng);
        let d = prepare(&r, &BenchOptions::default());
        assert_eq!(
            d.rows,
            ["Qwen2.5-7B", "Qwen2.5-7B-Instruct", "Qwen2.5-Math-7B"]
        );
        assert_eq!(d.cols.last().unwrap(), BASE);
        for (i, name) in d.rows.iter().enumerate() {
            let own = d.cols.iter().position(|c| c == name).unwrap();
            assert!((d.normalized[i][own].unwrap().0 - 1.0).abs() < 1e-12);
            assert!(d.normalized[i][d.cols.len() - 1].unwrap().0.abs() < 1e-12);
            let (lo, hi) = (
                d.raw[i][d.cols.len() - 1].unwrap().mean,
                d.raw[i][own].unwrap().mean,
            );
            let m = d.raw[i][0].unwrap();
            assert!((d.normalized[i][0].unwrap().0 - (m.mean - lo) / (hi - lo)).abs() < 1e-12);
        }
        assert!(d.unnormalized_rows.is_empty());
    }

    #[test]
    fn a_row_without_its_base_is_left_raw_and_named() {
        let mut rng = shared::fixtures::Rng::new(11);
        let mut r = shared::fixtures::exchange(&mut rng);
        r.cells
            .retain(|c| !(c.recipient == "Qwen2.5-7B" && c.donor.is_none()));
        let d = prepare(&r, &BenchOptions::default());
        assert_eq!(d.unnormalized_rows, ["Qwen2.5-7B"]);
        assert_eq!(d.normalized[0][0].unwrap().0, d.raw[0][0].unwrap().mean);
    }

    #[test]
    fn natural_order_compares_numbers_numerically() {
        let mut v = vec!["m-14B", "m-7B", "m-1.5B"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, ["m-1.5B", "m-7B", "m-14B"]);
    }
}
