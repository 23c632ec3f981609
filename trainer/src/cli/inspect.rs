//! `trainer inspect`: what a model directory holds, without loading the weights onto a device.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use trainer::model::{ModelConfig, ModelTokenizer, Weights};

/// Arguments of `trainer inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Hugging Face model directory (config.json, safetensors, tokenizer files).
    #[arg(long)]
    pub model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `trainer inspect`.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let dir = &args.model;
    let config = ModelConfig::from_dir(dir)?;
    let weights = Weights::open(dir)?;
    let tokenizer = ModelTokenizer::from_dir(dir).context("loading the tokenizer")?;
    let steering_in_checkpoint = (0..config.num_layers)
        .filter(|l| weights.contains(&format!("model.layers.{l}.mlp.down_proj.bias")))
        .count();
    let stop_ids = tokenizer.stop_token_ids(&config.eos_token_ids);
    let summary = json!({
        "model": dir.display().to_string(),
        "architecture": config.architecture.hf_name(),
        "layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "attention_heads": config.num_heads,
        "kv_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_theta": config.rope.theta,
        "rope_llama3_scaling": config.rope.llama3_scaling.is_some(),
        "tie_word_embeddings": config.tie_word_embeddings,
        "stored_dtype": config.stored_dtype,
        "weight_dtypes": weights.dtype_counts(),
        "parameters": config.parameter_count(),
        "steering_parameters": config.steering_parameter_count(),
        "steering_vectors_in_checkpoint": steering_in_checkpoint,
        "tokenizer_vocab_size": tokenizer.vocab_size(),
        "chat_template": tokenizer.chat_template.is_some(),
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "stop_token_ids": stop_ids,
    });
    if args.json {
        println!("{summary}");
        return Ok(());
    }
    let obj = summary.as_object().context("summary is an object")?;
    let width = obj.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in obj {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{key:<width$}  {text}");
    }
    Ok(())
}
