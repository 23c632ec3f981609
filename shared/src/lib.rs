//! The contract between steerlab's trainer and viewer.
//!
//! Every file the trainer writes for the viewer is defined here as a serde type with a
//! `format_version` (see `docs/formats.md`), together with the pure analysis code both sides must
//! compute identically (summaries of evaluation records, aggregation over eval seeds, the paper's
//! "Average", best-checkpoint selection, the Table-1 CSVs, cosine analyses).
//!
//! Bytes in, bytes out: nothing here touches the file system, so the crate builds for wasm32.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod aggregate;
pub mod analysis;
pub mod benchmarks;
pub mod eval;
pub mod experiments;
pub mod fixtures;
pub mod metrics;
pub mod results;
pub mod stats;
pub mod vectors;
pub mod version;

pub use version::{FormatError, Versioned};
