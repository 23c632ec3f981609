//! steerlab's trainer library: Hugging Face models in burn, steering vectors and interventions,
//! batched KV-cache generation, and log-probability gradients with respect to steering vectors.
//!
//! The binary `trainer` (see `main.rs`) is a thin command line over this library.

pub mod bench;
pub mod data;
pub mod demo;
pub mod device;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod model;
pub mod parallel;
pub mod reward;
pub mod rl;
pub mod rollout;
pub mod steering;
pub mod train;

pub use error::{Error, Result};
