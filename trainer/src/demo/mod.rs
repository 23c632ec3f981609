//! The embedded demo: a synthetic arithmetic task ([`task`]), a tokenizer made for it
//! ([`tokenizer`]), and a small Qwen2-architecture model pretrained on it from scratch by the
//! project's own code ([`pretrain`]), so that `trainer demo` can show steering vectors at work
//! without downloading anything. The committed model lives in [`committed_model_dir`].

pub mod pretrain;
pub mod task;
pub mod tokenizer;

use std::path::PathBuf;

/// The pretrained demo model committed with the repository (`trainer/demo-model/`): a Hugging
/// Face directory with `data/train.jsonl` and `data/test.jsonl` beside the weights.
pub fn committed_model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo-model")
}

/// 64-bit FNV-1a hash: stable across platforms and Rust versions (used to split the problem
/// space and to key the per-tensor random streams).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
pub mod story;
