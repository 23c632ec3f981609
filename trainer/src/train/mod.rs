//! Training: the optimiser and schedule, trainable parameter sets of every setup, the GRPO step,
//! run directories, checkpoints and resumption.

pub mod optim;
