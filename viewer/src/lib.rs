//! The steerlab results viewer: an egui application that opens a results root written by the
//! trainer and shows the figures of the reference system (accuracy table, training curves, layer
//! sweeps, pair-layer grids, seed alignment, head patching, exchange heatmaps, logit-lens tables).
//!
//! The same library runs natively (`main.rs`, with the `viewer export` batch exporter) and in the
//! browser (`web.rs`, started from `web/index.html`).

pub mod app;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use app::ViewerApp;
