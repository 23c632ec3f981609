//! Models: `config.json` parsing, safetensors loading, the decoder (Qwen2, Llama 3, OLMo2),
//! rotary embeddings, the tokenizer with its chat template, and prompt construction.

pub mod attention_kernel;
pub mod config;
pub mod decode_product;
pub mod norm_kernel;
pub mod overwrite;
pub mod rotary_kernel;
pub mod prompt;
pub mod recompute;
pub mod rope;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

use std::path::Path;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

pub use config::{Architecture, ModelConfig};
pub use tokenizer::{ChatMessage, ModelTokenizer};
pub use transformer::{BatchLayout, CausalLm, ForwardOutput, KvCache};
pub use weights::{RandomWeights, TensorSource, Weights};

use crate::error::Result;

/// Token ids as the `[rows, columns]` integer tensor a forward pass takes.
pub fn token_tensor(ids: &[u32], shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Loads the model of a Hugging Face directory onto `device`, computing in `dtype`.
pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<CausalLm> {
    let config = ModelConfig::from_dir(dir)?;
    let weights = Weights::open(dir)?;
    tracing::info!(
        dir = %dir.display(),
        architecture = config.architecture.hf_name(),
        layers = config.num_layers,
        hidden = config.hidden_size,
        ?dtype,
        "loading model"
    );
    CausalLm::load(config, &weights, device, dtype)
}
