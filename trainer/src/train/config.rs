//! The training config: YAML with the reference system's keys where they mean the same
//! (reference §2.2), validated, with the derived run names of reference §2.3.
//!
//! Unknown keys and wrong types are errors that name the key (serde's `deny_unknown_fields`);
//! `--set key=value` overrides are applied to the YAML document before it is parsed, so they are
//! checked the same way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device::Precision;
use crate::error::{Error, Result};
use crate::model::prompt::TemplateType;
use crate::steering::intervention::Place;

/// The parameterisation being trained (`training_setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingSetup {
    /// One vector per layer (all layers, or `steering_at_layer`).
    Steering,
    /// Rank-r steering `A·B`.
    SteeringRank,
    /// One vector at `steering_at_place`.
    SteeringAtPlace,
    /// LoRA of rank `lora_rank` on `down_proj`.
    Lora,
    /// Every weight.
    FullModel,
}

/// Advantage estimator (`reward_processor_type`, reference §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageKind {
    /// Reward minus the mean of the other G−1 rewards of the group.
    #[default]
    Rloo,
    /// Group-normalised: `(r − mean)/std` (unbiased std; 0 → 1).
    Grpo,
    /// `r − mean` of the group.
    GrpoNoStd,
    /// The raw reward.
    Reinforce,
    /// Reward minus a running mean of the batch mean reward.
    ReinforceWithBaseline,
}

/// KL estimator (`kl_type`, reference §2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KlType {
    /// `Σ_t (log π − log π_ref)`.
    Vanilla,
    /// `e^D − D − 1` with `D = Σ_t (log π_ref − log π)`.
    ShulmanSequenceLevel,
    /// `Σ_t (e^{d_t} − d_t − 1)` with `d_t = log π_ref − log π` (k3).
    #[default]
    ShulmanTokenLevel,
}

/// LoRA initialisation (`lora_init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoraInit {
    /// PEFT's default: A Kaiming-uniform (a = √5), B zero.
    #[default]
    #[serde(alias = "True", alias = "TRUE")]
    True,
    /// PiSSA: A, B from the top-r singular triplets of `down_proj`, which keeps their residual.
    Pissa,
}

fn default_seed() -> u64 {
    0
}
fn default_prompts_per_step() -> usize {
    16
}
fn default_num_generations() -> usize {
    16
}
fn default_batch_size() -> usize {
    1
}
fn default_epochs() -> usize {
    1
}
fn default_max_steps() -> i64 {
    -1
}
fn default_warmup_ratio() -> f64 {
    0.03
}
fn default_max_grad_norm() -> f64 {
    2.0
}
fn default_max_seq_length() -> usize {
    4096
}
fn default_num_evals() -> usize {
    6
}
fn default_save_total_limit() -> usize {
    5
}
fn default_output_dir() -> PathBuf {
    PathBuf::from("train_output")
}
fn default_mean_baseline_coef() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

fn default_one() -> f64 {
    1.0
}
fn default_top_k() -> i64 {
    -1
}
fn default_precision() -> Precision {
    Precision::F32
}
fn default_rollout_batch() -> usize {
    256
}

/// A training run's settings (`trainer train --config FILE.yml`). Field names follow the
/// reference system's config where they mean the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Hugging Face model directory.
    pub model_path: PathBuf,
    /// Training data: a JSONL file, a Parquet file, or a Hugging Face dataset directory.
    pub dataset_path: PathBuf,
    /// Name of the dataset in the output path; default: `deepscaler` for the DeepScaleR
    /// dataset, else the file or folder stem.
    #[serde(default)]
    pub dataset_name: Option<String>,
    /// Seed of shuffling, initialisation and sampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Seed of the subsampling of the training set.
    #[serde(default = "default_seed")]
    pub subsample_ds_seed: u64,
    /// Use this many training problems (null: all).
    #[serde(default)]
    pub num_train_samples: Option<usize>,
    /// Prompts per optimizer step (the reference's per-device count × devices).
    #[serde(default = "default_prompts_per_step")]
    pub prompts_per_step: usize,
    /// Completions per prompt (`G`).
    #[serde(default = "default_num_generations")]
    pub num_generations: usize,
    /// Sequences per micro-batch of the loss (gradient accumulation over the step's sequences).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Passes over the training set.
    #[serde(default = "default_epochs")]
    pub num_train_epochs: usize,
    /// Stop after this many optimizer steps (−1: derived from the data and epochs).
    #[serde(default = "default_max_steps")]
    pub max_steps: i64,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of the steps with linear warm-up.
    #[serde(default = "default_warmup_ratio")]
    pub warmup_ratio: f64,
    /// Global gradient-norm clip.
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
    /// Longest prompt + completion, in tokens.
    #[serde(default = "default_max_seq_length")]
    pub max_seq_length: usize,
    /// Checkpoints every `save_steps` steps (null: `ceil(steps / num_evals)`, as the reference).
    #[serde(default)]
    pub save_steps: Option<usize>,
    /// Used to derive `save_steps`.
    #[serde(default = "default_num_evals")]
    pub num_evals: usize,
    /// Checkpoints kept (the newest).
    #[serde(default = "default_save_total_limit")]
    pub save_total_limit: usize,
    /// Root of the run directories.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Advantage estimator.
    #[serde(default)]
    pub reward_processor_type: AdvantageKind,
    /// Running-mean coefficient of `reinforce_with_baseline`.
    #[serde(default = "default_mean_baseline_coef")]
    pub mean_baseline_coef: f64,
    /// Weight of the KL term in the loss (0: no reference model).
    #[serde(default)]
    pub kl_coef: f64,
    /// KL estimator.
    #[serde(default)]
    pub kl_type: KlType,
    /// Reward discount per completion token (`r · gamma^len`).
    #[serde(default = "default_one")]
    pub gamma: f64,
    /// Incorrect completions get 0 instead of −1.
    #[serde(default)]
    pub neg_reward_is_zero: bool,
    /// Sampling temperature of the rollouts (and of the loss's log-probabilities).
    #[serde(default = "default_one")]
    pub generation_temperature: f64,
    /// Nucleus sampling.
    #[serde(default = "default_one")]
    pub top_p: f64,
    /// Top-k sampling (−1: off).
    #[serde(default = "default_top_k")]
    pub top_k: i64,
    /// The stop token (one token); default: the model's generation config / eos.
    #[serde(default)]
    pub stop_token: Option<String>,
    /// What is trained.
    pub training_setup: TrainingSetup,
    /// Train only this layer (steering, lora).
    #[serde(default)]
    pub steering_at_layer: Option<usize>,
    /// Rank of `steering_rank`.
    #[serde(default)]
    pub steering_rank: Option<usize>,
    /// Place of `steering_at_place`, a dotted module path (`model.layers.24.mlp`).
    #[serde(default)]
    pub steering_at_place: Option<String>,
    /// LoRA rank (required for `lora`, null otherwise).
    #[serde(default)]
    pub lora_rank: Option<usize>,
    /// LoRA initialisation.
    #[serde(default)]
    pub lora_init: LoraInit,
    /// Prompt template.
    #[serde(default)]
    pub template_type: TemplateType,
    /// Append the token `To` to every prompt.
    #[serde(default)]
    pub append_to: bool,
    /// Compute precision of the model (`f32`, `f16`, `bf16`); vectors and optimiser stay f32.
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// Most sequences decoded together during rollouts.
    #[serde(default = "default_rollout_batch")]
    pub rollout_batch_size: usize,
    /// Recompute one decoder layer at a time in the backward pass instead of keeping every
    /// layer's activations: one more forward pass, the activation memory of one layer instead of
    /// all (steering, steering_rank, at-place and LoRA; full fine-tuning keeps the whole graph).
    #[serde(default = "default_true")]
    pub recompute_layers: bool,
}

/// Reads a YAML config and applies `key=value` overrides (values are YAML scalars).
pub fn load(path: &Path, overrides: &[String]) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path, overrides)
}

/// Parses a YAML config text (`path` names it in errors) with overrides, and validates it.
pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<TrainConfig> {
    let invalid = |message: String| Error::Config { path: path.to_owned(), message };
    let mut doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let map = doc
        .as_mapping_mut()
        .ok_or_else(|| invalid("expected a mapping of keys to values at the top level".into()))?;
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| invalid(format!("--set {o:?}: expected key=value")))?;
        let value: serde_norway::Value =
            serde_norway::from_str(value).map_err(|e| invalid(format!("--set {key}: {e}")))?;
        map.insert(serde_norway::Value::String(key.trim().to_owned()), value);
    }
    let config: TrainConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
        let key = e.path().to_string();
        invalid(if key == "." { e.into_inner().to_string() } else { format!("key `{key}`: {}", e.into_inner()) })
    })?;
    config.validate().map_err(invalid)?;
    Ok(config)
}

impl TrainConfig {
    /// Checks ranges and the combinations of setup keys (reference §2.3).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("prompts_per_step", self.prompts_per_step),
            ("num_generations", self.num_generations),
            ("batch_size", self.batch_size),
            ("num_train_epochs", self.num_train_epochs),
            ("max_seq_length", self.max_seq_length),
            ("save_total_limit", self.save_total_limit),
            ("num_evals", self.num_evals),
            ("rollout_batch_size", self.rollout_batch_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("key `{key}`: expected a positive integer, found 0"));
            }
        }
        if self.save_steps == Some(0) {
            return Err("key `save_steps`: expected a positive integer or null, found 0".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(format!("key `learning_rate`: expected a positive number, found {}", self.learning_rate));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(format!("key `warmup_ratio`: expected a number in [0, 1], found {}", self.warmup_ratio));
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return Err(format!("key `max_grad_norm`: expected a positive number, found {}", self.max_grad_norm));
        }
        if self.kl_coef.is_nan() || self.kl_coef < 0.0 {
            return Err(format!("key `kl_coef`: expected a number ≥ 0, found {}", self.kl_coef));
        }
        if self.generation_temperature.is_nan() || self.generation_temperature <= 0.0 {
            return Err(format!(
                "key `generation_temperature`: expected a positive number (training samples), found {}",
                self.generation_temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("key `top_p`: expected a number in (0, 1], found {}", self.top_p));
        }
        if self.top_k == 0 || self.top_k < -1 {
            return Err(format!("key `top_k`: expected −1 (off) or a positive integer, found {}", self.top_k));
        }
        if !(0.0..1.0).contains(&self.mean_baseline_coef) {
            return Err(format!("key `mean_baseline_coef`: expected a number in [0, 1), found {}", self.mean_baseline_coef));
        }
        if self.reward_processor_type == AdvantageKind::Rloo && self.num_generations < 2 {
            return Err("key `num_generations`: rloo needs at least 2 completions per prompt".into());
        }
        let setup = self.training_setup;
        let only = |key: &str, set: bool, allowed: &[TrainingSetup]| {
            if set && !allowed.contains(&setup) {
                Err(format!("key `{key}` is set but training_setup is {setup:?}; it applies to {allowed:?} only"))
            } else {
                Ok(())
            }
        };
        only("steering_at_layer", self.steering_at_layer.is_some(), &[TrainingSetup::Steering, TrainingSetup::Lora])?;
        only("steering_rank", self.steering_rank.is_some(), &[TrainingSetup::SteeringRank])?;
        only("steering_at_place", self.steering_at_place.is_some(), &[TrainingSetup::SteeringAtPlace])?;
        only("lora_rank", self.lora_rank.is_some(), &[TrainingSetup::Lora])?;
        match setup {
            TrainingSetup::Lora if self.lora_rank.is_none_or(|r| r == 0) => {
                return Err("key `lora_rank`: training_setup lora needs a positive rank".into());
            }
            TrainingSetup::SteeringRank if self.steering_rank.is_none_or(|r| r == 0) => {
                return Err("key `steering_rank`: training_setup steering_rank needs a positive rank".into());
            }
            TrainingSetup::SteeringAtPlace => {
                let place = self
                    .steering_at_place
                    .as_deref()
                    .ok_or("key `steering_at_place`: training_setup steering_at_place needs a module path")?;
                place.parse::<Place>().map_err(|e| format!("key `steering_at_place`: {e}"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The dataset's name in the output path (reference §2.3).
    pub fn dataset(&self) -> String {
        if let Some(name) = &self.dataset_name {
            return name.clone();
        }
        let path = self.dataset_path.to_string_lossy();
        if path.trim_end_matches('/').ends_with("deep_scale_r-preview-dataset") {
            return "deepscaler".into();
        }
        stem(&self.dataset_path)
    }

    /// `job_type` of reference §2.3: the setup, `-{rank}` for lora and steering_rank,
    /// `-layer-{k}` for one layer, `add_place_{…}` for a place.
    pub fn job_type(&self) -> String {
        let mut job = match self.training_setup {
            TrainingSetup::Steering => "steering".to_owned(),
            TrainingSetup::SteeringRank => format!("steering_rank-{}", self.steering_rank.unwrap_or(0)),
            TrainingSetup::Lora => format!("lora-{}", self.lora_rank.unwrap_or(0)),
            TrainingSetup::FullModel => "full_model".to_owned(),
            TrainingSetup::SteeringAtPlace => {
                let place = self.steering_at_place.as_deref().unwrap_or("");
                let parts: Vec<&str> = place.split('.').skip(2).collect();
                return format!("add_place_{}", parts.join("_"));
            }
        };
        if let Some(k) = self.steering_at_layer {
            job.push_str(&format!("-layer-{k}"));
        }
        job
    }

    /// Run name of reference §2.3: `seed-{seed}_lr-{lr}` (Python float repr), plus
    /// `_append_to_True` when `append_to`.
    pub fn run_name(&self) -> String {
        let mut name = format!("seed-{}_lr-{}", self.seed, shared::eval::python_float(self.learning_rate));
        if self.append_to {
            name.push_str("_append_to_True");
        }
        name
    }

    /// `<output_dir>/<Model>/<dataset>/<job_type>/<run>`.
    pub fn run_dir(&self) -> PathBuf {
        self.output_dir
            .join(stem(&self.model_path))
            .join(self.dataset())
            .join(self.job_type())
            .join(self.run_name())
    }
}

/// The last path component without a known data extension.
fn stem(path: &Path) -> String {
    let name = path
        .components()
        .next_back()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [".jsonl", ".parquet", ".json", ".arrow"] {
        if let Some(s) = name.strip_suffix(ext) {
            return s.to_owned();
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "model_path: models/Qwen2.5-Math-7B\ndataset_path: agentica-org/deep_scale_r-preview-dataset\nlearning_rate: 0.001\ntraining_setup: steering\n";

    fn parse_text(text: &str, overrides: &[&str]) -> Result<TrainConfig> {
        let o: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
        parse(text, Path::new("test.yml"), &o)
    }

    #[test]
    fn run_directories_follow_the_reference_naming_rules() {
        let c = parse_text(MINIMAL, &[]).unwrap();
        assert_eq!(c.run_dir(), Path::new("train_output/Qwen2.5-Math-7B/deepscaler/steering/seed-0_lr-0.001"));
        let c = parse_text(MINIMAL, &["steering_at_layer=5", "seed=2", "learning_rate=5e-5", "append_to=true"]).unwrap();
        assert_eq!(c.job_type(), "steering-layer-5");
        assert_eq!(c.run_name(), "seed-2_lr-5e-05_append_to_True");
        let c = parse_text(MINIMAL, &["training_setup=lora", "lora_rank=4", "dataset_path=data/gsm8k.jsonl"]).unwrap();
        assert_eq!(c.job_type(), "lora-4");
        assert_eq!(c.dataset(), "gsm8k");
        let c = parse_text(MINIMAL, &["training_setup=steering_at_place", "steering_at_place=model.layers.24.mlp"]).unwrap();
        assert_eq!(c.job_type(), "add_place_24_mlp");
        let c = parse_text(MINIMAL, &["training_setup=steering_rank", "steering_rank=1"]).unwrap();
        assert_eq!(c.job_type(), "steering_rank-1");
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_combinations_are_errors_naming_the_key() {
        let err = parse_text(&format!("{MINIMAL}deepspeed: x.json\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("deepspeed") && err.contains("test.yml"), "{err}");
        let err = parse_text(MINIMAL, &["num_generations=many"]).unwrap_err().to_string();
        assert!(err.contains("num_generations"), "{err}");
        let err = parse_text(MINIMAL, &["lora_rank=4"]).unwrap_err().to_string();
        assert!(err.contains("lora_rank"), "{err}");
        let err = parse_text(MINIMAL, &["training_setup=lora"]).unwrap_err().to_string();
        assert!(err.contains("lora_rank"), "{err}");
        let err = parse_text(MINIMAL, &["training_setup=steering_at_place", "steering_at_place=model.layers.x.mlp"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("steering_at_place"), "{err}");
        let err = parse_text(MINIMAL, &["learning_rate=0"]).unwrap_err().to_string();
        assert!(err.contains("learning_rate"), "{err}");
        let err = parse_text("- a\n- b\n", &[]).unwrap_err().to_string();
        assert!(err.contains("mapping"), "{err}");
        let err = parse_text(MINIMAL, &["no_equals_sign"]).unwrap_err().to_string();
        assert!(err.contains("key=value"), "{err}");
        let err = parse_text("model_path: m\n", &[]).unwrap_err().to_string();
        assert!(err.contains("dataset_path"), "{err}");
    }
}
