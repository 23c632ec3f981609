//! Pixel snapshots of every figure as the app draws it on screen (egui + egui_plot, rendered by
//! wgpu; on machines without a GPU, Mesa's software Vulkan driver lavapipe). The images live in
//! `tests/snapshots/pixels/*.png`; `UPDATE_SNAPSHOTS=1 cargo test -p steerlab-viewer --test pixels`
//! rewrites them, and a mismatch writes `*.new.png` and `*.diff.png` beside the snapshot.
//!
//! Tolerance: a pixel fails when its YIQ distance exceeds 0.6 (egui's default, enough for
//! anti-aliasing differences between Vulkan drivers), and a figure fails when more than 0.01 % of
//! its pixels fail (lavapipe reproduces every figure with no failing pixel; the 16 one-pixel error
//! bars of the add-place figure alone make 116). A broken figure (a lost series, a wrong colour
//! map, moved panels, the paper's baselines drawn black on the dark background) changes far more
//! than that: [`a_broken_figure_fails_its_snapshot`] checks it.

#![allow(clippy::unwrap_used)]

use egui_kittest::{Harness, SnapshotOptions};
use shared::results::ResultsIndex;
use viewer::chart::{Figure, Panel, SeriesKind};
use viewer::figures::prepare_all;

const THRESHOLD: f32 = 0.6;

fn output_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/pixels")
}

fn options(fig: &Figure) -> SnapshotOptions {
    let (w, h) = fig.size();
    SnapshotOptions::new()
        .threshold(THRESHOLD)
        .max_failed_pixels((w as usize * h as usize) / 10_000)
        .output_path(output_path())
}

/// A harness drawing one figure as the app does, sized to the figure.
fn harness(fig: &Figure) -> Harness<'_> {
    let (w, h) = fig.size();
    let notes = 22.0 * fig.notes.len() as f32;
    let mut harness = Harness::builder()
        .with_size(egui::vec2(w as f32 + 16.0, h as f32 + 16.0 + notes))
        .with_pixels_per_point(1.0)
        .wgpu()
        .build_ui(move |ui| viewer::draw_egui::show(ui, fig, &fig.id));
    harness.run();
    harness
}

fn fixture_figures() -> Vec<(String, Figure)> {
    let files = shared::fixtures::bundle();
    let index = ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())));
    prepare_all(&index)
        .into_iter()
        .flat_map(|p| {
            let id = p.id.clone();
            p.figures
                .into_iter()
                .map(move |f| (format!("{id}--{}", f.id), f))
        })
        .collect()
}

#[test]
fn every_figure_on_screen_matches_its_pixel_snapshot() {
    let figures = fixture_figures();
    assert!(figures.len() >= 20, "{} figures", figures.len());
    let mut failures = Vec::new();
    for (name, fig) in &figures {
        let mut h = harness(fig);
        if let Err(e) = h.try_snapshot_options(name, &options(fig)) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_broken_figure_fails_its_snapshot() {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        return; // rewriting snapshots: there is nothing to compare against
    }
    let (name, fig) = fixture_figures()
        .into_iter()
        .find(|(n, _)| n.ends_with("_layers--layers-Average"))
        .unwrap();
    // The figure as it would look had its main curve been lost, and had a heatmap been drawn in
    // another colour map: each must fail against the stored snapshot.
    let mut lost_curve = fig.clone();
    if let Panel::Plot(p) = &mut lost_curve.panels[0] {
        p.series.remove(0);
    }
    let (grid_name, grid) = fixture_figures()
        .into_iter()
        .find(|(n, _)| n.ends_with("_pair_layers--pair-layers-Average"))
        .unwrap();
    let mut recoloured = grid.clone();
    if let Panel::Heatmap(h) = &mut recoloured.panels[0] {
        h.colormap = viewer::theme::Colormap::Viridis;
    }
    // The paper's black baselines would vanish on the dark screen were they not drawn in the text
    // colour (`Rgb::readable_on`): the combined head-patching figure without them must fail too.
    let (paper_name, paper) = fixture_figures()
        .into_iter()
        .find(|(n, _)| n.ends_with("_head_patching-combined--head-patching-combined"))
        .unwrap();
    let mut lost_baselines = paper.clone();
    for panel in &mut lost_baselines.panels {
        if let Panel::Plot(p) = panel {
            p.series
                .retain(|s| !matches!(s.kind, SeriesKind::HLine { .. }));
        }
    }
    assert_ne!(lost_baselines, paper, "the figure has no baselines to lose");
    for (name, broken) in [
        (name, lost_curve),
        (grid_name, recoloured),
        (paper_name, lost_baselines),
    ] {
        // compare in a scratch folder, so the stored snapshot and its neighbours stay untouched
        let scratch = tempfile::tempdir().unwrap();
        let stored = output_path().join(format!("{name}.png"));
        std::fs::copy(&stored, scratch.path().join(format!("{name}.png"))).unwrap();
        let image = harness(&broken).render().unwrap();
        let result = egui_kittest::try_image_snapshot_options(
            &image,
            &name,
            &options(&broken).output_path(scratch.path()),
        );
        assert!(result.is_err(), "{name}: the broken figure passed");
    }
}
