//! The whole app drawn headless with egui (layout only, no GPU): every view of the example data
//! renders without panicking, and a results root without anything says so.

#![allow(clippy::unwrap_used)]

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
    assert_eq!(tabs.len(), 2 + 7);
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
