//! Add place (reference §5.2, the `bad_layers` bars of §6.8): accuracy when the vector is added
//! after another module than the last MLP. One orange bar per site (mean, ±std error bar over eval
//! seeds), sites ordered by layer then by module in forward order, dashed baselines.

use shared::experiments::AddPlaceResult;

use super::BenchOptions;
use super::curves::{
    Curve, CurveData, baseline_series, baselines, bench_title, sorted_points, sweep_spec,
};
use crate::chart::{Bar, Figure, Panel, PlotPanel, Series};
use crate::theme;

/// Sort key of a site (`model.layers.27.mlp`): layer, then the module's place in the forward pass.
pub fn site_key(site: &str) -> (u32, u8, String) {
    let rest = site.split("layers.").nth(1).unwrap_or(site);
    let (layer, module) = rest.split_once('.').unwrap_or((rest, ""));
    let rank = match module {
        "input_layernorm" => 0,
        "self_attn" => 1,
        "post_attention_layernorm" => 2,
        "mlp" => 3,
        _ => 4,
    };
    (layer.parse().unwrap_or(u32::MAX), rank, module.to_owned())
}

/// A site's short name for tick labels (`27.mlp`).
pub fn short_site(site: &str) -> String {
    site.trim_start_matches("model.")
        .trim_start_matches("layers.")
        .to_owned()
}

/// Prepares one point per site: x is the site's position in forward order, the label the site.
pub fn prepare(r: &AddPlaceResult, o: &BenchOptions) -> CurveData {
    let spec = sweep_spec(r.sites.iter().map(|s| &s.variant), &r.baselines);
    let mut missing = Vec::new();
    let mut sites: Vec<_> = r.sites.iter().collect();
    sites.sort_by_key(|s| site_key(&s.site));
    let mut points = sorted_points(
        sites
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64, &s.variant)),
        o,
        &spec,
        &mut missing,
    );
    // the site, not the variant's label, names a bar
    for p in &mut points {
        p.label = sites[p.x as usize].site.clone();
    }
    CurveData {
        title: format!(
            "{} · steering after other modules · {}",
            r.model,
            bench_title(&o.bench, &spec)
        ),
        x_label: "Site (layer.module)".into(),
        y_label: o.metric.label().into(),
        bench: o.bench.clone(),
        curves: vec![Curve {
            name: "sites".into(),
            points,
        }],
        baselines: baselines(&r.baselines, &o.bench, o.metric, &spec, &mut missing),
        missing,
        integer_x: true,
    }
}

/// One figure: the bars with error bars, the baselines, site names as ticks.
pub fn figures(d: &CurveData) -> Vec<Figure> {
    let points = d.curves.iter().flat_map(|c| &c.points);
    let mut p = PlotPanel::new(d.title.clone(), d.x_label.clone(), d.y_label.clone());
    p.x_ticks = Some(
        points
            .clone()
            .map(|p| (p.x, short_site(&p.label)))
            .collect(),
    );
    let bars = points
        .map(|p| Bar {
            x: p.x,
            height: p.mean,
            err: Some(p.std),
        })
        .collect();
    p.series
        .push(Series::bars("site", theme::ORANGE, bars, 0.7));
    p.series.extend(baseline_series(&d.baselines));
    let mut f = Figure::single(
        format!("add-place-{}", d.bench),
        "",
        Panel::Plot(p),
        (1000, 420),
    );
    f.notes = d.missing.clone();
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::SeriesKind;

    #[test]
    fn sites_are_ordered_by_layer_then_forward_order_with_their_short_names() {
        let mut rng = shared::fixtures::Rng::new(44);
        let mut r = shared::fixtures::add_place(&mut rng);
        r.sites.reverse();
        let d = prepare(&r, &BenchOptions::default());
        let names: Vec<String> = d.curves[0].points[..5]
            .iter()
            .map(|p| short_site(&p.label))
            .collect();
        assert_eq!(
            names,
            [
                "23.input_layernorm",
                "23.self_attn",
                "23.post_attention_layernorm",
                "23.mlp",
                "24.input_layernorm"
            ]
        );
        assert_eq!(d.curves[0].points.len(), 16);
        assert_eq!(d.baselines.len(), 2);
        let fig = &figures(&d)[0];
        let Panel::Plot(p) = &fig.panels[0] else {
            panic!()
        };
        let SeriesKind::Bars { bars, .. } = &p.series[0].kind else {
            panic!()
        };
        let first = &d.curves[0].points[0];
        assert_eq!((bars[0].height, bars[0].err), (first.mean, Some(first.std)));
        assert_eq!(p.series.len(), 1 + 2);
    }

    #[test]
    fn a_site_without_scores_is_named_and_an_unparsable_site_sorts_last() {
        let mut rng = shared::fixtures::Rng::new(44);
        let mut r = shared::fixtures::add_place(&mut rng);
        r.sites[0].variant.scores.clear();
        r.sites[1].site = "lm_head".into();
        let d = prepare(&r, &BenchOptions::default());
        assert_eq!(d.curves[0].points.len(), 15);
        assert_eq!(d.curves[0].points.last().unwrap().label, "lm_head");
        assert!(
            d.missing
                .iter()
                .any(|m| m.starts_with("model.layers.23.input_layernorm")),
            "{:?}",
            d.missing
        );
    }
}
