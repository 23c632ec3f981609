//! `config.json` of a Hugging Face model directory: the architecture (dispatched on
//! `architectures[0]`) and the sizes, norms and rotary settings the forward pass needs.
//!
//! Both the older key layout (`rope_theta`, `rope_scaling`) and the transformers ≥ 5 one
//! (`rope_parameters`) are read.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The decoder architectures steerlab implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `Qwen2ForCausalLM`: Qwen2, Qwen2.5, Qwen2.5-Math (q/k/v biases, tied or untied embeddings).
    Qwen2,
    /// `LlamaForCausalLM`: Llama 3 / 3.1 (optional `llama3` RoPE scaling).
    Llama,
    /// `Olmo2ForCausalLM`: OLMo 2 (RMSNorm on q and k, norms after each sub-layer instead of before).
    Olmo2,
}

impl Architecture {
    /// The Hugging Face class names, in the order of [`Architecture::ALL`].
    pub const NAMES: [&'static str; 3] = ["Qwen2ForCausalLM", "LlamaForCausalLM", "Olmo2ForCausalLM"];
    /// Every supported architecture.
    pub const ALL: [Architecture; 3] = [Self::Qwen2, Self::Llama, Self::Olmo2];

    /// The architecture named by a Hugging Face class name, if supported.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
    }

    /// The Hugging Face class name.
    pub fn hf_name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether the sub-layer norms come after the sub-layer (OLMo2) instead of before it.
    pub fn post_norm(self) -> bool {
        self == Self::Olmo2
    }

    /// Whether q and k are RMS-normalised over all heads before RoPE (OLMo2).
    pub fn qk_norm(self) -> bool {
        self == Self::Olmo2
    }
}

/// Llama 3.1's frequency-dependent RoPE scaling (`rope_type: llama3`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    /// Overall factor applied to low frequencies.
    pub factor: f64,
    /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled fully.
    pub low_freq_factor: f64,
    /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// Context length of pre-training.
    pub original_max_position_embeddings: f64,
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    /// Base of the geometric frequency series.
    pub theta: f64,
    /// Optional `llama3` scaling.
    pub llama3_scaling: Option<Llama3RopeScaling>,
}

/// The parts of `config.json` the model needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which decoder architecture.
    pub architecture: Architecture,
    /// Width of the residual stream `H`.
    pub hidden_size: usize,
    /// Width of the MLP `I`.
    pub intermediate_size: usize,
    /// Number of decoder layers `L`.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size `V` (rows of the embedding).
    pub vocab_size: usize,
    /// Longest supported sequence.
    pub max_position_embeddings: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Rotary embedding settings.
    pub rope: RopeConfig,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry biases (always for Qwen2; `attention_bias` otherwise).
    pub qkv_bias: bool,
    /// Whether the output projection carries a bias (`attention_bias` for Llama and OLMo2).
    pub o_bias: bool,
    /// Whether gate/up/down projections carry biases (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// `torch_dtype` / `dtype` as written in the file, if any.
    pub stored_dtype: Option<String>,
    /// `eos_token_id` of config.json (one or several ids).
    pub eos_token_ids: Vec<u32>,
    /// `bos_token_id` of config.json.
    pub bos_token_id: Option<u32>,
}

/// Reads `path` as JSON.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

/// Typed access to the keys of one JSON object, with errors that name the file and key.
pub(crate) struct Keys<'a> {
    path: PathBuf,
    map: &'a Map<String, Value>,
}

impl<'a> Keys<'a> {
    /// Wraps the object `value` read from `path`.
    pub(crate) fn new(path: &Path, value: &'a Value) -> Result<Self> {
        let map = value.as_object().ok_or_else(|| Error::InvalidValue {
            path: path.to_owned(),
            key: "(top level)".into(),
            expected: "a JSON object".into(),
            found: kind_of(value),
        })?;
        Ok(Self {
            path: path.to_owned(),
            map,
        })
    }

    fn invalid(&self, key: &str, expected: &str, found: &Value) -> Error {
        Error::InvalidValue {
            path: self.path.clone(),
            key: key.into(),
            expected: expected.into(),
            found: kind_of(found),
        }
    }

    /// The value of `key`, `None` when absent or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A required positive integer.
    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| Error::MissingKey {
            path: self.path.clone(),
            key: key.into(),
        })
    }

    /// An optional non-negative integer.
    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.invalid(key, "a non-negative integer", v)),
        }
    }

    /// An optional number.
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "a number", v)),
        }
    }

    /// An optional boolean.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "true or false", v)),
        }
    }

    /// An optional string.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "a string", v)),
        }
    }

    /// An optional token id or list of token ids.
    pub(crate) fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        let to_id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| to_id(v).ok_or_else(|| self.invalid(key, "a list of token ids", v)))
                .collect(),
            Some(v) => to_id(v)
                .map(|id| vec![id])
                .ok_or_else(|| self.invalid(key, "a token id or a list of token ids", v)),
        }
    }

    /// A nested object, if present.
    pub(crate) fn object(&self, key: &str) -> Result<Option<Keys<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_object() => Ok(Some(Keys {
                path: self.path.clone(),
                map: v.as_object().expect("checked above"),
            })),
            Some(v) => Err(self.invalid(key, "an object", v)),
        }
    }
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl ModelConfig {
    /// Reads `config.json` from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let value = read_json(&path)?;
        Self::from_json(&path, &value)
    }

    /// Parses an already-read `config.json` (`path` is used in error messages).
    pub fn from_json(path: &Path, value: &Value) -> Result<Self> {
        let keys = Keys::new(path, value)?;
        let arch_name = match keys.get("architectures") {
            Some(Value::Array(names)) if !names.is_empty() => {
                names[0].as_str().unwrap_or_default().to_owned()
            }
            Some(other) => {
                return Err(keys.invalid("architectures", "a non-empty list of class names", other));
            }
            None => {
                return Err(Error::MissingKey {
                    path: path.to_owned(),
                    key: "architectures".into(),
                });
            }
        };
        let architecture =
            Architecture::from_hf_name(&arch_name).ok_or_else(|| Error::UnknownArchitecture {
                path: path.to_owned(),
                found: arch_name.clone(),
                supported: Architecture::NAMES.to_vec(),
            })?;

        let hidden_size = keys.usize("hidden_size")?;
        let num_heads = keys.usize("num_attention_heads")?;
        let num_kv_heads = keys.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match keys.opt_usize("head_dim")? {
            Some(d) => d,
            None if num_heads > 0 && hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(Error::InvalidValue {
                    path: path.to_owned(),
                    key: "num_attention_heads".into(),
                    expected: format!("a divisor of hidden_size {hidden_size}"),
                    found: num_heads.to_string(),
                });
            }
        };
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(Error::InvalidValue {
                path: path.to_owned(),
                key: "num_key_value_heads".into(),
                expected: format!("a divisor of num_attention_heads {num_heads}"),
                found: num_kv_heads.to_string(),
            });
        }
        if head_dim % 2 != 0 {
            return Err(Error::InvalidValue {
                path: path.to_owned(),
                key: "head_dim".into(),
                expected: "an even number (rotary embeddings rotate pairs)".into(),
                found: head_dim.to_string(),
            });
        }
        if let Some(act) = keys.opt_str("hidden_act")?
            && act != "silu"
        {
            return Err(Error::InvalidValue {
                path: path.to_owned(),
                key: "hidden_act".into(),
                expected: "\"silu\"".into(),
                found: format!("{act:?}"),
            });
        }
        let attention_bias = keys.opt_bool("attention_bias")?.unwrap_or(false);
        let rope = rope_config(&keys)?;

        Ok(Self {
            architecture,
            hidden_size,
            intermediate_size: keys.usize("intermediate_size")?,
            num_layers: keys.usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: keys.usize("vocab_size")?,
            max_position_embeddings: keys.usize("max_position_embeddings")?,
            rms_norm_eps: keys.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope,
            tie_word_embeddings: keys.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture != Architecture::Qwen2 && attention_bias,
            mlp_bias: keys.opt_bool("mlp_bias")?.unwrap_or(false),
            stored_dtype: keys
                .opt_str("torch_dtype")?
                .or(keys.opt_str("dtype")?)
                .map(str::to_owned),
            eos_token_ids: keys.token_ids("eos_token_id")?,
            bos_token_id: keys.token_ids("bos_token_id")?.first().copied(),
        })
    }

    /// Number of parameters of the base model (embeddings, layers, final norm, LM head).
    pub fn parameter_count(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let attn = h * q + 2 * h * kv + q * h
            + if self.qkv_bias { q + 2 * kv } else { 0 }
            + if self.o_bias { h } else { 0 }
            + if self.architecture.qk_norm() { q + kv } else { 0 };
        let mlp = 3 * h * i + if self.mlp_bias { 2 * i + h } else { 0 };
        // Two norms per layer: before (Qwen2, Llama) or after (OLMo2) each sub-layer.
        let norms = 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_layers * (attn + mlp + norms) + h + head
    }

    /// Number of steering parameters: one vector of `H` per layer.
    pub fn steering_parameter_count(&self) -> usize {
        self.num_layers * self.hidden_size
    }
}

fn rope_config(keys: &Keys<'_>) -> Result<RopeConfig> {
    // transformers >= 5 writes `rope_parameters`; older files `rope_theta` + `rope_scaling`.
    let params = keys.object("rope_parameters")?;
    let scaling = match keys.object("rope_scaling")? {
        Some(s) => Some(s),
        None => keys.object("rope_parameters")?,
    };
    let theta = match &params {
        Some(p) => p.opt_f64("rope_theta")?,
        None => None,
    }
    .or(keys.opt_f64("rope_theta")?)
    .unwrap_or(10_000.0);
    let llama3_scaling = match scaling {
        None => None,
        Some(s) => {
            let kind = s.opt_str("rope_type")?.or(s.opt_str("type")?).unwrap_or("default");
            match kind {
                "default" => None,
                "llama3" => {
                    let need = |key: &str| {
                        s.opt_f64(key)?.ok_or_else(|| Error::MissingKey {
                            path: keys.path.clone(),
                            key: format!("rope_scaling.{key}"),
                        })
                    };
                    Some(Llama3RopeScaling {
                        factor: need("factor")?,
                        low_freq_factor: need("low_freq_factor")?,
                        high_freq_factor: need("high_freq_factor")?,
                        original_max_position_embeddings: need("original_max_position_embeddings")?,
                    })
                }
                other => {
                    return Err(Error::InvalidValue {
                        path: keys.path.clone(),
                        key: "rope_scaling.rope_type".into(),
                        expected: "\"default\" or \"llama3\"".into(),
                        found: format!("{other:?}"),
                    });
                }
            }
        }
    };
    Ok(RopeConfig {
        theta,
        llama3_scaling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn qwen_like() -> Value {
        json!({
            "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 400, "max_position_embeddings": 256, "rope_theta": 1e6,
            "tie_word_embeddings": true, "eos_token_id": [2, 0]
        })
    }

    #[test]
    fn qwen2_has_qkv_bias_and_derived_head_dim() {
        let c = ModelConfig::from_json(Path::new("config.json"), &qwen_like()).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen2);
        assert_eq!(c.head_dim, 16);
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.rope.theta, 1e6);
        assert_eq!(c.eos_token_ids, vec![2, 0]);
        assert_eq!(c.steering_parameter_count(), 3 * 64);
    }

    #[test]
    fn unknown_architecture_lists_the_supported_ones() {
        let mut v = qwen_like();
        v["architectures"] = json!(["MistralForCausalLM"]);
        let err = ModelConfig::from_json(Path::new("m/config.json"), &v).unwrap_err().to_string();
        assert!(err.contains("MistralForCausalLM"), "{err}");
        for name in Architecture::NAMES {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn a_missing_key_is_named_with_the_file() {
        let mut v = qwen_like();
        v.as_object_mut().unwrap().remove("intermediate_size");
        let err = ModelConfig::from_json(Path::new("m/config.json"), &v).unwrap_err().to_string();
        assert_eq!(err, "m/config.json: missing required key `intermediate_size`");
    }

    #[test]
    fn a_wrong_type_says_expected_and_found() {
        let mut v = qwen_like();
        v["hidden_size"] = json!("sixty-four");
        let err = ModelConfig::from_json(Path::new("c.json"), &v).unwrap_err().to_string();
        assert!(err.contains("`hidden_size`") && err.contains("non-negative integer") && err.contains("sixty-four"), "{err}");
    }

    #[test]
    fn llama3_scaling_is_read_from_both_key_layouts() {
        let scaling = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let mut old = qwen_like();
        old["architectures"] = json!(["LlamaForCausalLM"]);
        old["rope_theta"] = json!(500000.0);
        old["rope_scaling"] = scaling.clone();
        let mut new = old.clone();
        new.as_object_mut().unwrap().remove("rope_theta");
        new.as_object_mut().unwrap().remove("rope_scaling");
        let mut params = scaling;
        params["rope_theta"] = json!(500000.0);
        new["rope_parameters"] = params;
        let a = ModelConfig::from_json(Path::new("c"), &old).unwrap();
        let b = ModelConfig::from_json(Path::new("c"), &new).unwrap();
        assert_eq!(a.rope, b.rope);
        assert_eq!(a.rope.theta, 500000.0);
        assert_eq!(a.rope.llama3_scaling.unwrap().factor, 8.0);
    }

    #[test]
    fn unsupported_rope_type_is_an_error() {
        let mut v = qwen_like();
        v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        let err = ModelConfig::from_json(Path::new("c"), &v).unwrap_err().to_string();
        assert!(err.contains("yarn"), "{err}");
    }
}
