//! The whole app drawn headless with egui (layout only, no GPU): every view of the example data
//! renders without panicking, and a results root without anything says so.

#![allow(clippy::unwrap_used)]

use egui_kittest::kittest::Queryable as _;
use viewer::ViewerApp;
use viewer::app::Tab;

fn frame(app: &mut ViewerApp, ctx: &egui::Context) {
    let input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1400.0, 900.0),
        )),
        ..Default::default()
    };
    let mut out = ctx.run_ui(input, |ui| app.ui_body(ui));
    // paint too (tessellation), as a renderer would; there is no renderer to upload textures to
    let primitives = ctx.tessellate(std::mem::take(&mut out.shapes), out.pixels_per_point);
    assert!(!primitives.is_empty());
    out.textures_delta.clear();
}

#[test]
fn every_view_of_the_example_data_draws() {
    let mut app = ViewerApp::with_files("example", shared::fixtures::bundle());
    let ctx = egui::Context::default();
    let mut tabs = vec![Tab::Table, Tab::Training];
    tabs.extend(
        app.index()
            .experiments
            .keys()
            .map(|p| Tab::Experiment(p.clone())),
    );
    assert_eq!(tabs.len(), 2 + 9);
    for tab in tabs {
        app.set_tab(tab.clone());
        frame(&mut app, &ctx);
        frame(&mut app, &ctx);
        assert!(app.current().is_some(), "{tab:?} has figures");
    }
}

#[test]
fn an_empty_root_draws_and_has_no_figures() {
    let mut app = ViewerApp::new();
    let ctx = egui::Context::default();
    frame(&mut app, &ctx);
    assert!(app.current().is_none());
}

#[test]
fn a_result_written_into_a_watched_folder_appears_in_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = shared::fixtures::bundle();
    let (metrics_path, metrics) = bundle
        .iter()
        .find(|(p, _)| p.ends_with("metrics.jsonl"))
        .unwrap();
    let (layers_path, layers) = bundle
        .iter()
        .find(|(p, _)| p.ends_with("layers.json"))
        .unwrap();
    let write = |rel: &str, bytes: &[u8]| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    // a run that has logged its first steps
    let first_line = metrics.split(|b| *b == b'\n').next().unwrap();
    write(metrics_path, first_line);
    let mut app = ViewerApp::new();
    app.open_folder(dir.path());
    assert_eq!(app.index().training_runs.len(), 1);
    assert!(app.index().experiments.is_empty());
    // while the app is open, the run logs more steps and an experiment writes its result
    write(metrics_path, metrics);
    write(layers_path, layers);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let steps = |app: &ViewerApp| {
        app.index()
            .training_runs
            .values()
            .map(|r| r.lines.len())
            .sum::<usize>()
    };
    let all_steps = metrics
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    while (app.index().experiments.is_empty() || steps(&app) < all_steps)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        app.apply_watched_changes();
    }
    assert!(
        app.index().experiments.contains_key(layers_path.as_str()),
        "{:?}",
        app.index().experiments.keys().collect::<Vec<_>>()
    );
    assert_eq!(steps(&app), all_steps);
    assert!(
        app.index().problems.is_empty(),
        "{:?}",
        app.index().problems
    );
}

#[test]
fn browse_folder_opens_the_folder_dialog_in_the_window() {
    let mut app = ViewerApp::new();
    // egui_file's path fields have no accessible name: the check would fail on the dialog itself
    let mut harness = egui_kittest::Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .with_accessibility_check(false)
        .build_ui(move |ui| app.ui_body(ui));
    harness.run();
    let title = "Choose a results folder";
    assert!(harness.query_by_label_contains(title).is_none());
    harness.get_by_label("Browse folder…").click();
    harness.run();
    assert!(harness.query_by_label_contains(title).is_some());
}
