//! `trainer generate`: completions for prompts with the reference system's prompt templates,
//! optionally steered.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use trainer::device::{Backend, Precision};
use trainer::model::prompt::{PromptStyle, TemplateType};
use trainer::model::{self, ModelTokenizer};
use trainer::rollout::{self, GenerationRequest, SamplingParams};
use trainer::steering::intervention::Intervention;
use trainer::steering::{Steering, SteeringFile};

/// Arguments of `trainer generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Hugging Face model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Steering vectors: a steerlab `.safetensors` file, a reference checkpoint directory with
    /// `down_proj` biases, or an `[L, H]` `.npy` matrix.
    #[arg(long)]
    pub steering: Option<PathBuf>,
    /// Multiply the steering vectors by this factor.
    #[arg(long, default_value_t = 1.0, requires = "steering")]
    pub scale: f32,
    /// A prompt (repeatable).
    #[arg(long, conflicts_with = "prompts")]
    pub prompt: Vec<String>,
    /// A JSON-lines file of prompts: one object per line with a `prompt`, `problem` or
    /// `question` string.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Completions per prompt.
    #[arg(short, long, default_value_t = 1)]
    pub n: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// New-token budget per completion.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Random seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Compute precision of weights and activations.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// Prompt template (the chat template is used when the tokenizer has one).
    #[arg(long, value_enum, default_value_t = TemplateType::QwenMath)]
    pub template: TemplateType,
    /// Append the single token "To" after the prompt (the reference's `append_to`).
    #[arg(long)]
    pub append_to: bool,
    /// Use the prompt text as is (tokenized with the tokenizer's special tokens), no template.
    #[arg(long, conflicts_with_all = ["template", "append_to"])]
    pub raw: bool,
    /// Rows decoded together.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `trainer generate`.
pub fn run(args: &GenerateArgs, quiet: bool) -> anyhow::Result<()> {
    let texts = prompt_texts(args)?;
    let device = args.backend.device_for(args.dtype)?;
    let tokenizer = ModelTokenizer::from_dir(&args.model)?;
    let lm = model::load(&args.model, &device, args.dtype.dtype())?;
    let style = PromptStyle { template: args.template, append_to: args.append_to };
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| if args.raw { tokenizer.encode(t, true) } else { style.build(&tokenizer, t).map(|p| p.ids) })
        .collect::<Result<_, _>>()?;
    let (steering, interventions) = match &args.steering {
        None => (Steering::None, Vec::new()),
        Some(path) => {
            let file = SteeringFile::load(path)?;
            file.check_shape(path, lm.config.num_layers, lm.config.hidden_size)?;
            let steering = Steering::per_layer(file.vectors, file.num_layers, file.hidden_size, &device)?;
            (steering, vec![Intervention::ScaleVectors(args.scale)])
        }
    };
    let request = GenerationRequest {
        max_new_tokens: vec![args.max_new_tokens; prompts.len()],
        prompts,
        samples_per_prompt: args.n,
        sampling: SamplingParams { temperature: args.temperature, top_p: args.top_p, top_k: args.top_k, seed: args.seed },
        stop_token_ids: tokenizer.stop_token_ids(&lm.config.eos_token_ids),
        pad_token_id: tokenizer.pad_token_id(),
        max_batch_rows: args.batch_size,
        prompt_keys: None,
    };
    let total = (request.prompts.len() * args.n * args.max_new_tokens) as u64;
    let bar = super::progress_bar(total, "generating", quiet);
    let start = std::time::Instant::now();
    let generation = rollout::generate(&lm, &steering, &interventions, &request, &bar)?;
    bar.finish_and_clear();
    let stats = generation.stats;
    tracing::info!(
        tokens = stats.generated_tokens,
        secs = start.elapsed().as_secs_f64(),
        prefill_secs = stats.prefill_secs,
        decode_steps = stats.decode_steps,
        decoded_rows = stats.decoded_rows,
        "generation done"
    );
    for c in &generation.completions {
        let text = tokenizer.decode(&c.tokens, true)?;
        if args.json {
            let line = json!({
                "prompt_index": c.prompt_index,
                "sample_index": c.sample_index,
                "prompt": texts[c.prompt_index],
                "completion": text,
                "tokens": c.tokens,
                "num_tokens": c.tokens.len(),
                "stopped": c.stopped,
                "sum_logprob": c.logprobs.iter().map(|&x| f64::from(x)).sum::<f64>(),
            });
            println!("{line}");
        } else {
            println!("=== prompt {} sample {} ({} tokens{}) ===", c.prompt_index, c.sample_index, c.tokens.len(), if c.stopped { ", stopped" } else { "" });
            println!("{text}");
        }
    }
    Ok(())
}

fn prompt_texts(args: &GenerateArgs) -> anyhow::Result<Vec<String>> {
    match &args.prompts {
        Some(path) => read_prompts(path),
        None if !args.prompt.is_empty() => Ok(args.prompt.clone()),
        None => bail!("give --prompt TEXT (repeatable) or --prompts FILE.jsonl"),
    }
}

/// Reads the `prompt` / `problem` / `question` field of each JSON line.
fn read_prompts(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: reading line {}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))?;
        let text = ["prompt", "problem", "question"]
            .iter()
            .find_map(|k| value.get(*k).and_then(|v| v.as_str()))
            .with_context(|| format!("{}:{}: expected a string field `prompt`, `problem` or `question`", path.display(), i + 1))?;
        prompts.push(text.to_owned());
    }
    if prompts.is_empty() {
        bail!("{}: no prompts", path.display());
    }
    Ok(prompts)
}
