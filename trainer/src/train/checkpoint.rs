//! Checkpoints of a training run: `checkpoint-<step>/` holds everything needed to continue
//! exactly, and to use the trained policy (evaluation, experiments):
//!
//! - `train_config.yml`: the run's resolved config;
//! - `trainer_state.json`: step, total steps, data position, sampling seed of the next step,
//!   `reinforce_with_baseline`'s running mean;
//! - the parameters (f32): `trainable.safetensors` (steering setups), `adapter_model.safetensors`
//!   with `adapter_config.json` (LoRA, PEFT's names and layout), or `model.safetensors` with the
//!   base model's `config.json`, `generation_config.json` and tokenizer files (full fine-tuning: a
//!   normal Hugging Face directory);
//! - `steering_vectors.safetensors`: the effective per-layer vectors (or the at-place vector) in
//!   steerlab's steering format, for steering setups;
//! - `optimizer.safetensors`: AdamW's moments (`m.<name>`, `v.<name>`).
//!
//! A checkpoint is written into `checkpoint-<step>.partial/` and renamed when complete, so an
//! interrupted write never leaves a checkpoint that looks complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::weights::{Weight, WeightMap};
use crate::model::CausalLm;
use crate::steering::{Steering, SteeringMetadata};
use crate::train::advantage::RunningBaseline;
use crate::train::config::{self, TrainConfig};
use crate::train::optim::AdamWState;
use crate::train::policy::{Policy, Setup};
use crate::train::step::{TrainState, step_seed};

/// Format version of `trainer_state.json`.
pub const STATE_VERSION: u32 = 1;

/// `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerStateFile {
    /// Format version (1).
    pub format_version: u32,
    /// Optimizer steps taken.
    pub step: u64,
    /// Total steps of the run.
    pub total_steps: u64,
    /// The run's seed.
    pub seed: u64,
    /// Epoch and offset in that epoch's prompt order of the next step's first prompt.
    pub data_epoch: u64,
    /// See `data_epoch`.
    pub data_offset: u64,
    /// Seed of the next step's sampling streams (derived from the run seed and the step).
    pub next_sampling_seed: u64,
    /// `reinforce_with_baseline`'s running mean.
    pub baseline: RunningBaseline,
    /// `job_type` of the run (`steering`, `lora-4`, ...).
    pub job_type: String,
}

/// Name of the parameter file of a setup.
fn params_file(setup: &Setup) -> &'static str {
    match setup {
        Setup::FullModel => "model.safetensors",
        Setup::Lora { .. } => "adapter_model.safetensors",
        _ => "trainable.safetensors",
    }
}

/// The directory of checkpoint `step` in `run_dir`.
pub fn dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join(format!("checkpoint-{step}"))
}

/// Complete checkpoints of a run, by step (ascending).
pub fn list(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(run_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(run_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix("checkpoint-").and_then(|s| s.parse::<u64>().ok())
            && entry.path().join("trainer_state.json").is_file()
        {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes checkpoint `state.step` of `policy` into `run_dir` and deletes the oldest ones beyond
/// `keep`. Returns its directory.
#[allow(clippy::too_many_arguments)]
pub fn save(
    run_dir: &Path,
    config: &TrainConfig,
    policy: &Policy,
    state: &TrainState,
    total_steps: u64,
    data_position: (u64, u64),
    keep: usize,
) -> Result<PathBuf> {
    let final_dir = dir(run_dir, state.step);
    let partial = run_dir.join(format!("checkpoint-{}.partial", state.step));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let yaml = serde_norway::to_string(config).map_err(|e| Error::Run { path: partial.clone(), message: e.to_string() })?;
    crate::fsutil::write_atomic(&partial.join("train_config.yml"), yaml.as_bytes())?;
    policy.params.save_safetensors(&partial.join(params_file(&policy.setup)), None)?;
    let mut moments = BTreeMap::new();
    for (name, w) in &state.optimizer.m.0 {
        moments.insert(format!("m.{name}"), w.clone());
    }
    for (name, w) in &state.optimizer.v.0 {
        moments.insert(format!("v.{name}"), w.clone());
    }
    WeightMap(moments).save_safetensors(&partial.join("optimizer.safetensors"), None)?;
    let metadata = SteeringMetadata {
        model: model_name(config),
        layers: (0..policy.base.config.num_layers).collect(),
        setup: config.job_type(),
        step: state.step,
        seed: config.seed,
        place: None,
    };
    if let Some(file) = policy.steering_file(metadata)? {
        file.save(&partial.join("steering_vectors.safetensors"))?;
    }
    match &policy.setup {
        Setup::Lora { rank, layers, .. } => {
            let adapter = serde_json::json!({
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": rank,
                "lora_alpha": rank,
                "lora_dropout": 0.0,
                "bias": "none",
                "target_modules": ["down_proj"],
                "layers_to_transform": layers,
                "init_lora_weights": match config.lora_init { config::LoraInit::True => serde_json::json!(true), config::LoraInit::Pissa => serde_json::json!("pissa") },
                "base_model_name_or_path": config.model_path,
            });
            crate::fsutil::write_json(&partial.join("adapter_config.json"), &adapter)?;
        }
        Setup::FullModel => {
            for name in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"] {
                let src = config.model_path.join(name);
                if src.is_file() {
                    std::fs::copy(&src, partial.join(name)).map_err(|e| Error::io(&src, e))?;
                }
            }
        }
        _ => {}
    }
    let state_file = TrainerStateFile {
        format_version: STATE_VERSION,
        step: state.step,
        total_steps,
        seed: config.seed,
        data_epoch: data_position.0,
        data_offset: data_position.1,
        next_sampling_seed: step_seed(config.seed, state.step),
        baseline: state.baseline,
        job_type: config.job_type(),
    };
    crate::fsutil::write_json(&partial.join("trainer_state.json"), &state_file)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&partial, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    let all = list(run_dir)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
    }
    Ok(final_dir)
}

/// The model's name in output paths: the last component of `model_path`.
pub fn model_name(config: &TrainConfig) -> String {
    config.model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Reads a checkpoint's config and state.
pub fn read_state(checkpoint: &Path) -> Result<(TrainConfig, TrainerStateFile)> {
    let config = config::load(&checkpoint.join("train_config.yml"), &[])?;
    let path = checkpoint.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let state: TrainerStateFile =
        serde_json::from_str(&text).map_err(|e| Error::Run { path: path.clone(), message: e.to_string() })?;
    if state.format_version != STATE_VERSION {
        return Err(Error::Run {
            path,
            message: format!("format_version {}: this build reads version {STATE_VERSION}", state.format_version),
        });
    }
    Ok((config, state))
}

/// Loads the policy of a checkpoint on top of `base` (the base model the run started from):
/// the parameters, and with `with_optimizer` the training state to continue from.
pub fn load_policy(checkpoint: &Path, base: CausalLm, with_optimizer: bool) -> Result<(Policy, Option<TrainState>)> {
    let (config, state_file) = read_state(checkpoint)?;
    let setup = Setup::from_config(&config, &base)?;
    let device = base.device.clone();
    let mut policy = Policy::new(base, setup, config.seed)?;
    let path = checkpoint.join(params_file(&policy.setup));
    let params = WeightMap::load_safetensors(&path, &device)?;
    let expected: Vec<(&String, Vec<usize>)> = policy.params.0.iter().map(|(k, w)| (k, w.dims())).collect();
    let found: Vec<(&String, Vec<usize>)> = params.0.iter().map(|(k, w)| (k, w.dims())).collect();
    if expected != found {
        return Err(Error::Run {
            path,
            message: format!(
                "the parameters do not fit this model and setup ({} tensors expected, {} found; first difference: {:?})",
                expected.len(),
                found.len(),
                expected.iter().zip(&found).find(|(a, b)| a != b)
            ),
        });
    }
    policy.params = params;
    if !with_optimizer {
        return Ok((policy, None));
    }
    let path = checkpoint.join("optimizer.safetensors");
    let moments = WeightMap::load_safetensors(&path, &device)?;
    let pick = |prefix: &str| -> Result<WeightMap> {
        let mut out = BTreeMap::new();
        for name in policy.params.0.keys() {
            let w: &Weight = moments.0.get(&format!("{prefix}{name}")).ok_or_else(|| Error::Run {
                path: path.clone(),
                message: format!("optimizer state lacks `{prefix}{name}`"),
            })?;
            out.insert(name.clone(), w.clone());
        }
        Ok(WeightMap(out))
    };
    let optimizer = AdamWState { step: state_file.step, m: pick("m.")?, v: pick("v.")? };
    Ok((policy, Some(TrainState { step: state_file.step, optimizer, baseline: state_file.baseline })))
}

/// The model and steering a checkpoint of any setup defines, on top of `base`: the model the run
/// started from (`model_path` of the checkpoint's `train_config.yml`, or wherever it now lives).
pub fn load_for_inference(checkpoint: &Path, base: CausalLm) -> Result<(CausalLm, Steering)> {
    let (policy, _) = load_policy(checkpoint, base, false)?;
    let steering = policy.steering(&policy.params)?;
    let model = policy.model(&policy.params)?.into_owned();
    Ok((model, steering))
}
