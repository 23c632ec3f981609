//! Snapshot and robustness tests of every figure, through the headless exporter (plotters; no
//! window, no GPU). `UPDATE_SNAPSHOTS=1 cargo test -p steerlab-viewer --test figures` rewrites
//! `tests/snapshots/*.svg`; a mismatch writes `*.new.svg` beside the snapshot and fails, and so
//! does a snapshot that no figure matches any more.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use shared::experiments::ExperimentResult;
use shared::results::ResultsIndex;
use viewer::chart::{Figure, Marker, Panel, SeriesKind};
use viewer::draw_plotters::{to_png, to_rgb, to_svg};
use viewer::figures::{
    Prepared, accuracy_table, add_place, prepare_all, seed_alignment, token_effects,
};
use viewer::theme::Rgb;

fn fixture_index() -> ResultsIndex {
    let files = shared::fixtures::bundle();
    ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())))
}

fn all() -> Vec<Prepared> {
    prepare_all(&fixture_index())
}

fn count(svg: &str, tag: &str) -> usize {
    svg.matches(&format!("<{tag}")).count()
}

/// Checks that the SVG parses as XML with balanced tags; returns the number of elements.
fn well_formed(svg: &str) -> usize {
    let mut reader = quick_xml::Reader::from_str(svg);
    let mut depth = 0i64;
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => {
                depth += 1;
                elements += 1;
            }
            Ok(quick_xml::events::Event::Empty(_)) => elements += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "SVG is not well-formed at {}: {e}",
                reader.buffer_position()
            ),
        }
    }
    assert_eq!(depth, 0, "unbalanced SVG");
    elements
}

/// The `<tag …>` elements of the SVG whose attribute `attr` (`fill`, `stroke`) is `color`.
fn count_coloured(svg: &str, tag: &str, attr: &str, color: Rgb) -> usize {
    let want = format!("{attr}=\"{}\"", color.to_hex());
    svg.split(&format!("<{tag} "))
        .skip(1)
        .filter(|e| {
            e.split('>')
                .next()
                .is_some_and(|attrs| attrs.to_lowercase().contains(&want))
        })
        .count()
}

/// What a figure's plot panels draw in one colour: filled rectangles (one per bar, box, reference
/// line band and square marker) and boxes.
#[derive(Debug, Default)]
struct Marks {
    rects: usize,
    boxes: usize,
}

/// The marks of every colour that has bars or boxes.
fn bar_and_box_marks(f: &Figure) -> BTreeMap<String, (Rgb, Marks)> {
    let series: Vec<_> = f
        .panels
        .iter()
        .filter_map(|p| match p {
            Panel::Plot(p) => Some(&p.series),
            _ => None,
        })
        .flatten()
        .collect();
    let mut out = BTreeMap::new();
    for s in &series {
        if matches!(s.kind, SeriesKind::Bars { .. } | SeriesKind::Boxes { .. }) {
            out.insert(s.color.to_hex(), (s.color, Marks::default()));
        }
    }
    for s in series {
        let Some((_, m)) = out.get_mut(&s.color.to_hex()) else {
            continue;
        };
        match &s.kind {
            SeriesKind::Bars { bars, .. } => m.rects += bars.len(),
            SeriesKind::Boxes { boxes, .. } => {
                m.rects += boxes.len();
                m.boxes += boxes.len();
            }
            SeriesKind::HLine { band, .. } => m.rects += usize::from(band.is_some()),
            SeriesKind::Line {
                points,
                marker: Some(Marker::Square),
                ..
            } => m.rects += points.iter().filter(|p| p.1.is_finite()).count(),
            SeriesKind::Line { .. } => {}
        }
    }
    out
}

/// The rectangles of the SVG in the colours of the figure's bars and boxes.
fn bar_and_box_rects(svg: &str, f: &Figure) -> usize {
    bar_and_box_marks(f)
        .values()
        .map(|(c, _)| count_coloured(svg, "rect", "fill", *c))
        .sum()
}

fn circle_markers(f: &Figure) -> usize {
    f.panels
        .iter()
        .map(|p| match p {
            Panel::Plot(p) => p
                .series
                .iter()
                .map(|s| match &s.kind {
                    SeriesKind::Line {
                        points,
                        marker: Some(viewer::chart::Marker::Circle),
                        ..
                    } => points.iter().filter(|p| p.1.is_finite()).count(),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        })
        .sum()
}

#[test]
fn every_figure_matches_its_svg_snapshot() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok();
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in all() {
        for f in &p.figures {
            let svg = to_svg(f, 1.0).unwrap();
            let path = dir.join(format!("{}--{}.svg", p.id, f.id));
            assert!(
                seen.insert(path.clone()),
                "two figures share {}",
                path.display()
            );
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &svg).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(old) if old == svg => {}
                Ok(_) => {
                    std::fs::write(path.with_extension("new.svg"), &svg).unwrap();
                    failures.push(format!("{} changed (see .new.svg)", path.display()));
                }
                Err(_) => failures.push(format!(
                    "{} missing (run with UPDATE_SNAPSHOTS=1)",
                    path.display()
                )),
            }
        }
    }
    assert!(
        seen.len() >= 16,
        "expected every figure of the fixtures, got {}",
        seen.len()
    );
    // a snapshot no figure matches is a figure that is no longer drawn (or exported)
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy();
        if name.ends_with(".svg") && !name.ends_with(".new.svg") && !seen.contains(&path) {
            failures.push(format!("{name}: no figure draws it any more (delete it)"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_svg_is_well_formed_and_has_one_circle_per_marker() {
    for p in all() {
        for f in &p.figures {
            let svg = to_svg(f, 1.0).unwrap();
            assert!(well_formed(&svg) > 10, "{}: almost empty", f.id);
            assert_eq!(
                count(&svg, "circle"),
                circle_markers(f),
                "{} / {}: circles",
                p.id,
                f.id
            );
        }
    }
}

#[test]
fn every_bar_and_box_is_one_rect_and_every_box_six_strokes_of_its_colour() {
    let mut boxes = 0;
    let mut rects = 0;
    for p in all() {
        for f in &p.figures {
            let svg = to_svg(f, 1.0).unwrap();
            for (hex, (color, m)) in bar_and_box_marks(f) {
                let at = format!("{} / {} / {hex}", p.id, f.id);
                assert_eq!(
                    count_coloured(&svg, "rect", "fill", color),
                    m.rects,
                    "{at}: rects"
                );
                // a box is outlined, has a median and two whiskers with caps, all in its colour
                if m.boxes > 0 {
                    assert_eq!(
                        count_coloured(&svg, "polyline", "stroke", color),
                        6 * m.boxes,
                        "{at}: box strokes"
                    );
                }
                rects += m.rects;
                boxes += m.boxes;
            }
        }
    }
    assert!(rects > 100 && boxes > 10, "{rects} rects, {boxes} boxes");
}

/// Checks that the figure `id` of `figs` draws `n` (> 0) rects in its bars' and boxes' colours.
fn assert_bar_rects(figs: &[Figure], id: &str, n: usize) {
    let f = figs.iter().find(|f| f.id == id).unwrap();
    let svg = to_svg(f, 1.0).unwrap();
    assert!(n > 0, "{id}: the fixture has nothing to draw");
    assert_eq!(bar_and_box_rects(&svg, f), n, "{id}");
}

#[test]
fn bar_box_and_table_svgs_have_one_mark_per_item_of_their_prepared_data() {
    let index = fixture_index();
    let mut kinds = 0;
    for r in index.experiments.values() {
        match r {
            ExperimentResult::SeedAlignment(r) => {
                let d = seed_alignment::prepare(r);
                let figs = seed_alignment::figures(&d);
                // a cosine bar and a perf-diff bar per layer
                assert_bar_rects(&figs, "cossims", 2 * d.layers.len());
                let merged = d
                    .layers
                    .iter()
                    .filter(|l| l.cosine_merged_vs_joint.is_some());
                assert_bar_rects(&figs, "cossims_merged_vs_vanilla", merged.count());
            }
            ExperimentResult::AddPlace(r) => {
                let d = add_place::prepare(r, &Default::default());
                let figs = add_place::figures(&d);
                let sites = d.curves[0].points.len();
                assert_bar_rects(&figs, &format!("add-place-{}", d.bench), sites);
            }
            ExperimentResult::TokenEffects(r) => {
                let d = token_effects::prepare(r, &Default::default());
                let figs = token_effects::figures(&d);
                let groups = d.top.len() + d.bottom.len() + d.kl.len();
                assert_bar_rects(&figs, &figs[0].id, groups);
                let (_, first, other) = d.token_at_first.as_ref().unwrap();
                let at_first = usize::from(first.is_some()) + usize::from(other.is_some());
                assert_bar_rects(&figs, "token-at-first", at_first);
                let bins = [&d.histogram_top_diff, &d.histogram_kl]
                    .into_iter()
                    .flatten()
                    .map(|h| h.counts.len())
                    .sum();
                assert_bar_rects(&figs, "histograms", bins);
            }
            _ => continue,
        }
        kinds += 1;
    }
    assert_eq!(kinds, 3, "seed alignment, add place and token effects");
    // the accuracy table: its title, then a text per header and per cell
    let t = accuracy_table::prepare(&index, &Default::default());
    let f = &accuracy_table::figures(&t)[0];
    let Panel::Table(table) = &f.panels[0] else {
        panic!("the accuracy table is a table")
    };
    let columns = 2 + t.headers.len() + 2;
    assert_eq!(table.headers.len(), columns);
    assert!(t.rows.len() > 5, "{} rows", t.rows.len());
    let svg = to_svg(f, 1.0).unwrap();
    assert_eq!(
        count(&svg, "text"),
        1 + columns * (t.rows.len() + 1),
        "accuracy table: texts"
    );
}

#[test]
fn the_layers_figure_draws_every_layer_and_every_baseline() {
    let p = all()
        .into_iter()
        .find(|p| p.id.ends_with("_layers"))
        .unwrap();
    let f = &p.figures[0];
    let svg = to_svg(f, 1.0).unwrap();
    // 28 layers + 2 "on to" points are markers: 28 circles and 2 squares
    assert_eq!(count(&svg, "circle"), shared::fixtures::NUM_LAYERS as usize);
    for label in ["Base", "Steering", "Full-Tune", "steering-layer"] {
        assert!(
            svg.contains(&format!(">\n{label}\n</text>")),
            "legend entry {label}"
        );
    }
}

#[test]
fn heatmaps_draw_one_rect_per_present_cell_plus_colour_bar() {
    for p in all() {
        for f in &p.figures {
            let Panel::Heatmap(h) = &f.panels[0] else {
                continue;
            };
            let svg = to_svg(f, 1.0).unwrap();
            let cells = h.values.iter().flatten().filter(|v| v.is_some()).count();
            let bar = if h.colorbar_label.is_empty() {
                0
            } else {
                viewer::chart::COLORBAR_STEPS
            };
            // + 1 for the background
            assert_eq!(count(&svg, "rect"), cells + bar + 1, "{} / {}", p.id, f.id);
            // an X is four strokes (white under black, two diagonals)
            assert_eq!(
                count(&svg, "polyline"),
                4 * h.markers.len(),
                "{} / {}: markers",
                p.id,
                f.id
            );
        }
    }
}

#[test]
fn png_export_scales_and_is_not_blank() {
    let p = all()
        .into_iter()
        .find(|p| p.id == "training-curves")
        .unwrap();
    let f = &p.figures[0];
    let (w1, h1, px1) = to_rgb(f, 1.0).unwrap();
    let (w2, h2, _) = to_rgb(f, 2.0).unwrap();
    assert_eq!((w2, h2), (2 * w1, 2 * h1));
    let non_white = px1.chunks(3).filter(|c| c != &[255, 255, 255]).count();
    let frac = non_white as f64 / (w1 * h1) as f64;
    assert!(frac > 0.02 && frac < 0.6, "fraction of drawn pixels {frac}");
    let png = to_png(f, 1.0).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn truncated_and_wrong_version_files_never_crash_and_are_reported() {
    let mut files = shared::fixtures::bundle();
    for (i, (path, bytes)) in files.iter_mut().enumerate() {
        if path.ends_with(".json") || path.ends_with(".jsonl") {
            match i % 3 {
                0 => bytes.truncate(bytes.len() / 2),
                1 => {
                    *bytes = String::from_utf8_lossy(bytes)
                        .replacen("\"format_version\":1", "\"format_version\":99", 1)
                        .into_bytes()
                }
                _ => {}
            }
        }
    }
    let index = ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())));
    assert!(!index.problems.is_empty());
    assert!(
        index
            .problems
            .values()
            .any(|m| m.contains("format_version 99"))
    );
    for p in prepare_all(&index) {
        for f in &p.figures {
            to_svg(f, 1.0).unwrap();
        }
    }
}

#[test]
fn a_partial_experiment_says_what_is_missing() {
    let mut rng = shared::fixtures::Rng::new(1);
    let mut r = shared::fixtures::layers(&mut rng);
    r.points.retain(|p| p.layer != 7);
    r.points[0].variant.scores.remove("aime25");
    let d = viewer::figures::layers::prepare(&r, &Default::default());
    let f = &viewer::figures::curves::curve_figures("layers", &d)[0];
    assert!(
        f.notes
            .iter()
            .any(|n| n.contains("layers without results: 7")),
        "{:?}",
        f.notes
    );
    assert!(
        f.notes
            .iter()
            .any(|n| n.contains("steering-layer-0") && n.contains("aime25")),
        "{:?}",
        f.notes
    );
    let svg = to_svg(f, 1.0).unwrap();
    assert_eq!(count(&svg, "circle"), 26);
}

#[test]
fn export_writes_images_csv_and_json_for_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let report = viewer::export::export_all(
        &fixture_index(),
        dir.path(),
        viewer::export::Format::Svg,
        1.0,
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let written = report.written;
    let n_figures: usize = all().iter().map(|p| p.figures.len()).sum();
    let svgs = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .count();
    let jsons = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .count();
    assert_eq!(svgs, n_figures);
    assert_eq!(jsons, all().len());
    let distinct: std::collections::BTreeSet<_> = written.iter().collect();
    assert_eq!(distinct.len(), written.len(), "a file was written twice");
    assert!(
        written
            .iter()
            .any(|p| p.ends_with("accuracy-table-accuracies_with_rel.csv"))
    );
}

#[test]
fn empty_and_inconsistent_experiments_draw_and_explain_themselves() {
    use shared::experiments::Matrix;
    for (path, bytes) in shared::fixtures::bundle() {
        if !path.starts_with("experiments/") {
            continue;
        }
        let mut r = ExperimentResult::from_json(&bytes, &path).unwrap();
        match &mut r {
            ExperimentResult::Layers(x) => {
                x.points.clear();
                x.baselines.clear();
            }
            ExperimentResult::Magnitude(x) => x.points.clear(),
            ExperimentResult::PairLayers(x) => {
                x.pairs.clear();
                x.num_layers = 4_000_000_000;
            }
            ExperimentResult::SeedAlignment(x) => {
                x.layers.clear();
                x.axis_removal.clear();
                x.joint_vs_merged = Some(Matrix {
                    rows: 100_000,
                    cols: 100_000,
                    values: vec![Some(1.0)],
                });
            }
            ExperimentResult::HeadPatching(x) => x.points.clear(),
            ExperimentResult::Exchange(x) => x.cells.clear(),
            ExperimentResult::LogitLens(x) => {
                x.layers.clear();
                x.singular_values.clear();
                x.cosine_matrix = Some(Matrix {
                    rows: 3,
                    cols: 3,
                    values: vec![],
                });
            }
            ExperimentResult::TokenEffects(x) => {
                x.groups.clear();
                x.samples.clear();
                x.histogram_top_diff = None;
                x.histogram_kl = None;
                x.token_at_first = None;
            }
            ExperimentResult::AddPlace(x) => {
                x.sites.truncate(1);
                x.sites[0].variant.scores.clear();
            }
        }
        let p = viewer::figures::prepare_experiment(&path, &r, &Default::default());
        for f in &p.figures {
            let svg = to_svg(f, 1.0).unwrap();
            well_formed(&svg);
        }
        if matches!(
            r,
            ExperimentResult::SeedAlignment(_)
                | ExperimentResult::PairLayers(_)
                | ExperimentResult::TokenEffects(_)
                | ExperimentResult::AddPlace(_)
        ) {
            let notes: Vec<&String> = p.figures.iter().flat_map(|f| &f.notes).collect();
            assert!(!notes.is_empty(), "{path}: says what is wrong");
        }
    }
}

#[test]
fn token_effects_and_add_place_files_cut_anywhere_or_too_new_are_reported_not_drawn() {
    for (path, bytes) in shared::fixtures::bundle() {
        if !(path.ends_with("token_effects.json") || path.ends_with("add_place.json")) {
            continue;
        }
        for tenth in 0..10 {
            let cut = &bytes[..bytes.len() * tenth / 10];
            let index = ResultsIndex::from_files([(path.clone(), cut)]);
            assert!(index.experiments.is_empty(), "{path} cut at {tenth}/10");
            assert!(
                index.problems[&path].contains(&path),
                "{:?}",
                index.problems
            );
        }
        let newer = String::from_utf8_lossy(&bytes).replacen(
            "\"format_version\":1",
            "\"format_version\":2",
            1,
        );
        let index = ResultsIndex::from_files([(path.clone(), newer.as_bytes())]);
        let problem = &index.problems[&path];
        assert!(problem.contains('2') && problem.contains('1'), "{problem}");
    }
}

#[test]
fn nonsensical_box_statistics_still_draw() {
    let mut r = shared::fixtures::token_effects(&mut shared::fixtures::Rng::new(43));
    for g in &mut r.groups {
        g.stats.whisker_low = f64::NAN;
        g.stats.q3 = g.stats.q1 - 1.0;
        g.stats.max = f64::INFINITY;
    }
    let d = viewer::figures::token_effects::prepare(&r, &Default::default());
    for f in viewer::figures::token_effects::figures(&d) {
        well_formed(&to_svg(&f, 1.0).unwrap());
        to_png(&f, 1.0).unwrap();
    }
}
