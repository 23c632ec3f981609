//! Training: the optimiser and schedule, trainable parameter sets of every setup, the GRPO step,
//! run directories, checkpoints and resumption.

pub mod optim;
pub mod config;
pub mod advantage;
pub mod pissa;
pub mod policy;
pub mod step;
pub mod checkpoint;
pub mod run;
