//! Training metrics: `metrics.jsonl` in a run directory, one [`MetricsLine`] per optimizer step
//! (the quantities of reference §2.13).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::version::{FormatError, Versioned, current_version};

/// Seconds spent in each phase of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSeconds {
    /// Sampling the completions.
    #[serde(default)]
    pub generation: f64,
    /// Verifying answers and computing rewards/advantages.
    #[serde(default)]
    pub reward: f64,
    /// Forward and backward passes of the loss.
    #[serde(default)]
    pub forward_backward: f64,
    /// The optimiser step (including clipping).
    #[serde(default)]
    pub optimizer: f64,
    /// The whole step.
    #[serde(default)]
    pub total: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// Format version (1).
    #[serde(default = "current_version")]
    pub format_version: u32,
    /// The optimizer step, from 1.
    pub step: u64,
    /// Mean raw reward over the step's completions.
    pub reward_mean: f64,
    /// Std of the raw reward over the step's completions.
    #[serde(default)]
    pub reward_std: f64,
    /// pass@k over the step's prompts, for k = 1, 2, 4, ... up to G; keys are k as text.
    #[serde(default)]
    pub pass_at_k: BTreeMap<String, f64>,
    /// Fraction of prompts whose G rewards are all equal (no learning signal).
    #[serde(default)]
    pub frac_zero_signal: f64,
    /// Mean completion length in tokens.
    #[serde(default)]
    pub completion_len_mean: f64,
    /// Std of completion lengths.
    #[serde(default)]
    pub completion_len_std: f64,
    /// Longest completion.
    #[serde(default)]
    pub completion_len_max: f64,
    /// Fraction of completions that ended on the stop token.
    #[serde(default)]
    pub stop_rate: f64,
    /// The loss.
    pub loss: f64,
    /// Global gradient norm before clipping.
    #[serde(default)]
    pub grad_norm: f64,
    /// Learning rate used for this step.
    #[serde(default)]
    pub lr: f64,
    /// KL term, when `kl_coef ≠ 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    /// L2 norm of each trained layer's steering vector after the step (for LoRA: of each adapted
    /// layer's `B`; empty for full fine-tuning).
    #[serde(default)]
    pub vector_norms: Vec<f64>,
    /// Seconds per phase.
    #[serde(default)]
    pub seconds: PhaseSeconds,
    /// Generated tokens per second in this step.
    #[serde(default)]
    pub tokens_per_second: f64,
    /// Peak accelerator memory in bytes, when known: the most that burn's memory pool held on any
    /// device after the step's rollouts, after its gradients and at its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Any further numeric metrics (kept, shown in the training-curves figure).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Versioned for MetricsLine {
    fn from_json(bytes: &[u8], what: &str) -> Result<Self, FormatError> {
        // A line may omit `format_version` (it defaults to 1); a present one is checked.
        crate::version::parse_versioned(bytes, what, false)
    }
}

impl MetricsLine {
    /// The named scalar metrics of this line, in a fixed order, for plotting: the fixed fields
    /// first (`reward_mean`, `pass@1`, ..., `seconds.total`), then numeric `extra` keys sorted.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut out = vec![
            ("reward_mean".to_owned(), self.reward_mean),
            ("reward_std".to_owned(), self.reward_std),
        ];
        let mut ks: Vec<(u64, f64)> = self
            .pass_at_k
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
            .collect();
        ks.sort_by_key(|(k, _)| *k);
        out.extend(ks.into_iter().map(|(k, v)| (format!("pass@{k}"), v)));
        out.extend([
            ("frac_zero_signal".to_owned(), self.frac_zero_signal),
            ("completion_len_mean".to_owned(), self.completion_len_mean),
            ("completion_len_max".to_owned(), self.completion_len_max),
            ("stop_rate".to_owned(), self.stop_rate),
            ("loss".to_owned(), self.loss),
            ("grad_norm".to_owned(), self.grad_norm),
            ("lr".to_owned(), self.lr),
        ]);
        if let Some(kl) = self.kl {
            out.push(("kl".to_owned(), kl));
        }
        if !self.vector_norms.is_empty() {
            let total = self.vector_norms.iter().map(|x| x * x).sum::<f64>().sqrt();
            out.push(("vector_norm_total".to_owned(), total));
        }
        out.extend([
            ("seconds.generation".to_owned(), self.seconds.generation),
            ("seconds.reward".to_owned(), self.seconds.reward),
            (
                "seconds.forward_backward".to_owned(),
                self.seconds.forward_backward,
            ),
            ("seconds.optimizer".to_owned(), self.seconds.optimizer),
            ("seconds.total".to_owned(), self.seconds.total),
            ("tokens_per_second".to_owned(), self.tokens_per_second),
        ]);
        if let Some(m) = self.peak_memory_bytes {
            out.push(("peak_memory_gib".to_owned(), m as f64 / (1u64 << 30) as f64));
        }
        for (k, v) in &self.extra {
            if let Some(x) = v.as_f64() {
                out.push((k.clone(), x));
            }
        }
        out
    }
}

/// The lines of a `metrics.jsonl` that could be read, and what could not.
#[derive(Debug, Clone, Default)]
pub struct MetricsRead {
    /// Lines that parsed, in file order.
    pub lines: Vec<MetricsLine>,
    /// One message per line that did not parse.
    pub errors: Vec<String>,
}

/// Reads `metrics.jsonl` leniently (a run being written may end in a partial line).
pub fn read_metrics(bytes: &[u8], what: &str) -> MetricsRead {
    let (lines, errors) = crate::version::read_json_lines(bytes, what, MetricsLine::from_json);
    MetricsRead { lines, errors }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_line_parses_and_unknown_numeric_keys_are_kept_in_order() {
        let line = br#"{"step":3,"reward_mean":0.25,"loss":-0.1,"pass_at_k":{"4":0.5,"1":0.25,"16":0.75},"zeta":1,"alpha":2}"#;
        let m = MetricsLine::from_json(line, "m").unwrap();
        assert_eq!(m.step, 3);
        let names: Vec<String> = m.scalars().into_iter().map(|(k, _)| k).collect();
        let p1 = names.iter().position(|k| k == "pass@1").unwrap();
        let p4 = names.iter().position(|k| k == "pass@4").unwrap();
        let p16 = names.iter().position(|k| k == "pass@16").unwrap();
        assert!(p1 < p4 && p4 < p16, "pass@k sorted numerically: {names:?}");
        assert_eq!(&names[names.len() - 2..], ["alpha", "zeta"]);
    }

    #[test]
    fn partial_and_wrong_version_lines_are_reported_not_fatal() {
        let bytes = b"{\"step\":1,\"reward_mean\":0,\"loss\":0}\n{\"format_version\":5,\"step\":2,\"reward_mean\":0,\"loss\":0}\n{\"step\":3,\"rew";
        let read = read_metrics(bytes, "metrics.jsonl");
        assert_eq!(read.lines.len(), 1);
        assert_eq!(read.errors.len(), 2);
        assert!(read.errors[0].contains("format_version 5"));
    }
}
