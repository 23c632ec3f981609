//! The steerlab results viewer: an egui application that opens a results root written by the
//! trainer and shows the figures of the reference system (accuracy table, training curves, layer
//! sweeps, magnitude, pair-layer grids, seed alignment, head patching, exchange heatmaps,
//! logit-lens tables).
//!
//! Layout: [`figures`] holds one module per figure kind, each with a pure `prepare` and a
//! description of the drawing ([`chart::Figure`]); [`draw_egui`] draws it on screen,
//! [`draw_plotters`] into SVG (both targets) and PNG files (native), [`export`] writes every figure of a results
//! root headless. The same library runs natively (`main.rs`) and in the browser (`web.rs`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod chart;
pub mod draw_egui;
pub mod draw_plotters;
#[cfg(not(target_arch = "wasm32"))]
pub mod export;
pub mod figures;
pub mod source;
pub mod theme;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use app::ViewerApp;
