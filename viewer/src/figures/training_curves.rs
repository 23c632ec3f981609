//! Training curves from `metrics.jsonl` (reference §2.13): one panel per metric, one line per run
//! (seeds side by side), plus the per-layer vector norms at each run's last step.

use serde::Serialize;
use shared::results::ResultsIndex;

use crate::chart::{Figure, Marker, Panel, PlotPanel, Series, SeriesKind};
use crate::theme;

/// The metrics shown by default, in panel order.
pub const DEFAULT_METRICS: [&str; 9] = [
    "reward_mean",
    "pass@1",
    "frac_zero_signal",
    "loss",
    "grad_norm",
    "lr",
    "completion_len_mean",
    "vector_norm_total",
    "tokens_per_second",
];

/// What to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Metric names (see `MetricsLine::scalars`), in panel order.
    pub metrics: Vec<String>,
    /// Run folders to hide.
    pub hidden_runs: std::collections::BTreeSet<String>,
    /// Merge runs that differ only in their training seed into one mean ± std curve.
    pub merge_seeds: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            metrics: DEFAULT_METRICS.iter().map(|s| (*s).to_owned()).collect(),
            hidden_runs: Default::default(),
            merge_seeds: false,
        }
    }
}

/// A merged point: (step, mean, std, number of runs).
pub type MergedPoint = (f64, f64, f64, usize);

/// One metric's lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricCurves {
    /// The metric.
    pub name: String,
    /// (run, points (step, value)) per run.
    pub runs: Vec<(String, Vec<(f64, f64)>)>,
    /// With `merge_seeds`: (run group, points (step, mean, std, runs)) per group; `runs` is empty.
    pub merged: Vec<(String, Vec<MergedPoint>)>,
}

/// The run folder with its `seed-<s>` part removed (`…/seed-0_lr-0.01` → `…/seed-*_lr-0.01`).
pub fn seed_group(dir: &str) -> String {
    let (head, last) = dir.rsplit_once('/').unwrap_or(("", dir));
    let Some(pos) = last.find("seed-") else {
        return dir.to_owned();
    };
    let digits = last[pos + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    let name = format!("{}seed-*{}", &last[..pos], &last[pos + 5 + digits..]);
    if head.is_empty() {
        name
    } else {
        format!("{head}/{name}")
    }
}

/// Mean ± population std per step over the runs of each seed group (steps where only some runs
/// have a value use those).
pub fn merge(runs: &[(String, Vec<(f64, f64)>)]) -> Vec<(String, Vec<MergedPoint>)> {
    let mut groups: std::collections::BTreeMap<String, std::collections::BTreeMap<u64, Vec<f64>>> =
        Default::default();
    for (run, pts) in runs {
        let g = groups.entry(seed_group(run)).or_default();
        for (step, v) in pts {
            g.entry(*step as u64).or_default().push(*v);
        }
    }
    groups
        .into_iter()
        .map(|(name, steps)| {
            let pts = steps
                .into_iter()
                .filter_map(|(step, vs)| {
                    let m = shared::stats::MeanStd::population(&vs)?;
                    Some((step as f64, m.mean, m.std, m.n))
                })
                .collect();
            (name, pts)
        })
        .collect()
}

/// The prepared data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    /// One entry per requested metric present in some run.
    pub metrics: Vec<MetricCurves>,
    /// Per run: the vector norms by layer at its last step.
    pub last_norms: Vec<(String, Vec<f64>)>,
    /// Every metric name available (for the menu).
    pub available: Vec<String>,
    /// What is missing or unreadable.
    pub missing: Vec<String>,
}

/// Prepares the curves: runs sorted by folder, points sorted by step (a resumed run may repeat a
/// step: the last line wins).
pub fn prepare(index: &ResultsIndex, o: &Options) -> Data {
    let mut missing = Vec::new();
    let mut available: Vec<String> = Vec::new();
    let runs: Vec<_> = index
        .training_runs
        .values()
        .filter(|r| !o.hidden_runs.contains(&r.dir))
        .collect();
    type Steps = std::collections::BTreeMap<u64, Vec<(String, f64)>>;
    let mut per_run: Vec<(String, Steps)> = Vec::new();
    for r in &runs {
        if !r.errors.is_empty() {
            missing.push(format!("{}: {} unreadable line(s)", r.dir, r.errors.len()));
        }
        let mut steps = std::collections::BTreeMap::new();
        for l in &r.lines {
            let s = l.scalars();
            for (k, _) in &s {
                if !available.contains(k) {
                    available.push(k.clone());
                }
            }
            steps.insert(l.step, s);
        }
        per_run.push((r.dir.clone(), steps));
    }
    let metrics = o
        .metrics
        .iter()
        .filter_map(|m| {
            let runs: Vec<(String, Vec<(f64, f64)>)> = per_run
                .iter()
                .map(|(dir, steps)| {
                    let pts = steps
                        .iter()
                        .filter_map(|(step, s)| {
                            s.iter()
                                .find(|(k, _)| k == m)
                                .map(|(_, v)| (*step as f64, *v))
                        })
                        .collect();
                    (dir.clone(), pts)
                })
                .filter(|(_, pts): &(String, Vec<(f64, f64)>)| !pts.is_empty())
                .collect();
            if runs.is_empty() {
                missing.push(format!("no run logs {m}"));
                None
            } else if o.merge_seeds {
                Some(MetricCurves {
                    name: m.clone(),
                    merged: merge(&runs),
                    runs: vec![],
                })
            } else {
                Some(MetricCurves {
                    name: m.clone(),
                    runs,
                    merged: vec![],
                })
            }
        })
        .collect();
    let last_norms = runs
        .iter()
        .filter_map(|r| {
            let last = r
                .lines
                .iter()
                .filter(|l| !l.vector_norms.is_empty())
                .max_by_key(|l| l.step)?;
            Some((r.dir.clone(), last.vector_norms.clone()))
        })
        .collect();
    Data {
        metrics,
        last_norms,
        available,
        missing,
    }
}

/// A short run label: the last two folder components ("steering/seed-0_lr-0.01").
pub fn run_label(dir: &str) -> String {
    let parts: Vec<&str> = dir.rsplit('/').take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// One figure with a panel per metric (3 columns) and a last panel of vector norms by layer.
pub fn figures(d: &Data) -> Vec<Figure> {
    let mut panels = Vec::new();
    for m in &d.metrics {
        let mut p = PlotPanel::new(m.name.clone(), "Step", m.name.clone());
        for (i, (run, pts)) in m.runs.iter().enumerate() {
            let mut s = Series::line(run_label(run), theme::series(i), pts.clone(), None);
            if let SeriesKind::Line { marker, width, .. } = &mut s.kind {
                *marker = if pts.len() <= 40 {
                    Some(Marker::Circle)
                } else {
                    None
                };
                *width = 1.5;
            }
            p.series.push(s);
        }
        for (i, (group, pts)) in m.merged.iter().enumerate() {
            let line = pts.iter().map(|p| (p.0, p.1)).collect();
            let band = pts.iter().map(|p| (p.0, p.1 - p.2, p.1 + p.2)).collect();
            let mut s = Series::line(
                format!("{} (mean ± std)", run_label(group)),
                theme::series(i),
                line,
                Some(band),
            );
            if let SeriesKind::Line { marker, width, .. } = &mut s.kind {
                *marker = None;
                *width = 1.5;
            }
            p.series.push(s);
        }
        panels.push(Panel::Plot(p));
    }
    if !d.last_norms.is_empty() {
        let mut p = PlotPanel::new("vector norms by layer (last step)", "Layer", "vector norm");
        for (i, (run, norms)) in d.last_norms.iter().enumerate() {
            p.series.push(Series::line(
                run_label(run),
                theme::series(i),
                norms
                    .iter()
                    .enumerate()
                    .map(|(l, v)| (l as f64, *v))
                    .collect(),
                None,
            ));
        }
        panels.push(Panel::Plot(p));
    }
    vec![Figure {
        id: "training-curves".into(),
        title: String::new(),
        panels,
        columns: 3,
        panel_size: (420, 300),
        notes: d.missing.clone(),
    }]
}

/// CSV (long format): `run,step,metric,value,std,runs` (std and runs only for merged seeds).
pub fn csv(d: &Data) -> String {
    let mut out = String::from("run,step,metric,value,std,runs\n");
    for m in &d.metrics {
        for (run, pts) in &m.runs {
            for (s, v) in pts {
                out.push_str(&format!(
                    "{},{s},{},{v},,\n",
                    shared::aggregate::csv_field(run),
                    m.name
                ));
            }
        }
        for (group, pts) in &m.merged {
            for (s, v, sd, n) in pts {
                out.push_str(&format!(
                    "{},{s},{},{v},{sd},{n}\n",
                    shared::aggregate::csv_field(group),
                    m.name
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
    fn one_line_per_run_sorted_by_step_and_resumed_steps_keep_the_last_value() {
        let mut files: Vec<(String, Vec<u8>)> = shared::fixtures::bundle()
            .into_iter()
            .filter(|(p, _)| p.ends_with("metrics.jsonl"))
            .collect();
        // run 0 resumed: step 30 logged again with another reward, and a partial last line
        let mut extra = files[0].1.clone();
        extra.extend_from_slice(
            b"{\"step\":30,\"reward_mean\":0.99,\"loss\":0}\n{\"step\":31,\"rew",
        );
        files[0].1 = extra;
        let idx = ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())));
        let d = prepare(&idx, &Options::default());
        let reward = d.metrics.iter().find(|m| m.name == "reward_mean").unwrap();
        assert_eq!(reward.runs.len(), 3);
        let (_, pts) = &reward.runs[0];
        assert_eq!(pts.len(), 30);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(pts.last().unwrap().1, 0.99);
        assert!(
            d.missing.iter().any(|m| m.contains("1 unreadable")),
            "{:?}",
            d.missing
        );
        assert_eq!(d.last_norms.len(), 3);
        assert_eq!(d.last_norms[1].1.len(), 28);
        let f = &figures(&d)[0];
        assert_eq!(f.panels.len(), d.metrics.len() + 1);
        assert_eq!(
            csv(&d)
                .lines()
                .filter(|l| l.contains(",reward_mean,"))
                .count(),
            90
        );
    }

    #[test]
    fn merged_seeds_give_mean_and_population_std_per_step() {
        assert_eq!(
            seed_group("m/d/steering/seed-12_lr-0.01"),
            "m/d/steering/seed-*_lr-0.01"
        );
        assert_eq!(seed_group("run"), "run");
        let runs = vec![
            ("x/seed-0_lr-1".to_owned(), vec![(1.0, 1.0), (2.0, 2.0)]),
            ("x/seed-1_lr-1".to_owned(), vec![(1.0, 3.0)]),
            ("x/seed-0_lr-2".to_owned(), vec![(1.0, 5.0)]),
        ];
        let m = merge(&runs);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "x/seed-*_lr-1");
        assert_eq!(m[0].1, vec![(1.0, 2.0, 1.0, 2), (2.0, 2.0, 0.0, 1)]);
        let files = shared::fixtures::bundle();
        let idx = ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())));
        let d = prepare(
            &idx,
            &Options {
                merge_seeds: true,
                ..Options::default()
            },
        );
        assert_eq!(d.metrics[0].merged.len(), 1);
        assert_eq!(d.metrics[0].merged[0].1[0].3, 3);
    }

    #[test]
    fn hidden_runs_are_left_out() {
        let files = shared::fixtures::bundle();
        let idx = ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())));
        let first = idx.training_runs.keys().next().unwrap().clone();
        let d = prepare(
            &idx,
            &Options {
                hidden_runs: [first].into_iter().collect(),
                ..Options::default()
            },
        );
        assert_eq!(d.metrics[0].runs.len(), 2);
    }
}
