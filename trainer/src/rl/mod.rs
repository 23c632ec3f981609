//! Reinforcement-learning pieces: per-token log-probabilities of given completions, differentiable
//! with respect to the steering vectors only.

pub mod logprobs;

pub use logprobs::{CompletionBatch, CompletionLogprobs, completion_logprobs};
