//! The tokenizer of a model directory: `tokenizer.json` (Hugging Face tokenizers), the special
//! tokens of `tokenizer_config.json`, the chat template (rendered with minijinja in the Jinja
//! environment transformers uses, so prompts equal `apply_chat_template(...,
//! add_generation_prompt=True)`), and the stop tokens of `generation_config.json`.

use std::path::{Path, PathBuf};

use minijinja::value::Value as JinjaValue;
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::config::{Keys, read_json};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_owned(),
            content: content.to_owned(),
        }
    }
}

/// Tokenizer, special tokens, chat template and stop tokens of a model directory.
pub struct ModelTokenizer {
    dir: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    /// `bos_token` of tokenizer_config.json.
    pub bos_token: Option<String>,
    /// `eos_token` of tokenizer_config.json.
    pub eos_token: Option<String>,
    /// `pad_token` of tokenizer_config.json.
    pub pad_token: Option<String>,
    /// `unk_token` of tokenizer_config.json.
    pub unk_token: Option<String>,
    /// The Jinja chat template, if the tokenizer has one.
    pub chat_template: Option<String>,
    /// `eos_token_id` of generation_config.json (one or several ids), if present.
    pub generation_eos_ids: Vec<u32>,
}

impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// A special token as written in tokenizer_config.json: a string or `{"content": ...}`.
fn special_token(keys: &Keys<'_>, key: &str) -> Option<String> {
    match keys.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl ModelTokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json` (optional), the chat template and
    /// `generation_config.json` (optional) from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found"),
            ));
        }
        let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.exists() { read_json(&config_path)? } else { Value::Object(Default::default()) };
        let keys = Keys::new(&config_path, &config)?;
        let chat_template = chat_template(dir, &config_path, &keys)?;
        let generation_path = dir.join("generation_config.json");
        let generation_eos_ids = if generation_path.exists() {
            let value = read_json(&generation_path)?;
            Keys::new(&generation_path, &value)?.token_ids("eos_token_id")?
        } else {
            Vec::new()
        };
        Ok(Self {
            dir: dir.to_owned(),
            tokenizer,
            bos_token: special_token(&keys, "bos_token"),
            eos_token: special_token(&keys, "eos_token"),
            pad_token: special_token(&keys, "pad_token"),
            unk_token: special_token(&keys, "unk_token"),
            chat_template,
            generation_eos_ids,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's post-processor (BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| self.error(e))
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer.decode(ids, skip_special_tokens).map_err(|e| self.error(e))
    }

    /// The id of a token string (special or regular), if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The stop tokens: generation_config.json's `eos_token_id`, else `fallback` (config.json's),
    /// else the tokenizer's `eos_token`.
    pub fn stop_token_ids(&self, fallback: &[u32]) -> Vec<u32> {
        if !self.generation_eos_ids.is_empty() {
            return self.generation_eos_ids.clone();
        }
        if !fallback.is_empty() {
            return fallback.to_vec();
        }
        self.eos_token.as_deref().and_then(|t| self.token_id(t)).into_iter().collect()
    }

    /// The stop tokens of a config's `stop_token` (a text that must be exactly one token), else
    /// [`stop_token_ids`](Self::stop_token_ids) with `fallback`.
    pub fn configured_stop_ids(&self, stop_token: Option<&str>, fallback: &[u32]) -> Result<Vec<u32>> {
        let Some(token) = stop_token else {
            return Ok(self.stop_token_ids(fallback));
        };
        let ids = self.encode(token, false)?;
        if ids.len() != 1 {
            return Err(Error::InvalidArgument(format!("stop_token {token:?} must encode to exactly one token, found {ids:?}")));
        }
        Ok(ids)
    }

    /// A token id usable for padding (never attended to): `pad_token`, else `eos_token`, else 0.
    pub fn pad_token_id(&self) -> u32 {
        [&self.pad_token, &self.eos_token]
            .into_iter()
            .flatten()
            .find_map(|t| self.token_id(t))
            .unwrap_or(0)
    }

    /// Renders the chat template like transformers' `apply_chat_template(messages,
    /// tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::MissingChatTemplate { dir: self.dir.clone() })?;
        let env = jinja_environment();
        let tmpl = env
            .template_from_str(template)
            .map_err(|e| Error::Template(format!("{}: {e:#}", self.dir.display())))?;
        let ctx = minijinja::context! {
            messages => JinjaValue::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
            pad_token => self.pad_token.clone().unwrap_or_default(),
            unk_token => self.unk_token.clone().unwrap_or_default(),
        };
        tmpl.render(ctx).map_err(|e| Error::Template(format!("{}: {e:#}", self.dir.display())))
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer {
            path: self.dir.join("tokenizer.json"),
            message: e.to_string(),
        }
    }
}

/// The chat template: tokenizer_config.json's `chat_template` (a string, or a list of named
/// templates of which `default` is taken), else `chat_template.jinja`, else `chat_template.json`.
fn chat_template(dir: &Path, config_path: &Path, keys: &Keys<'_>) -> Result<Option<String>> {
    match keys.get("chat_template") {
        Some(Value::String(s)) => return Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let default = list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some("default"));
            return match default.and_then(|t| t.get("template")).and_then(Value::as_str) {
                Some(t) => Ok(Some(t.to_owned())),
                None => Err(Error::InvalidValue {
                    path: config_path.to_owned(),
                    key: "chat_template".into(),
                    expected: "a template string or a list with a template named \"default\"".into(),
                    found: "a list without one".into(),
                }),
            };
        }
        Some(_) => {
            return Err(Error::InvalidValue {
                path: config_path.to_owned(),
                key: "chat_template".into(),
                expected: "a template string".into(),
                found: "another JSON value".into(),
            });
        }
        None => {}
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja).map(Some).map_err(|e| Error::io(&jinja, e));
    }
    let json = dir.join("chat_template.json");
    if json.exists() {
        let value = read_json(&json)?;
        return Ok(Keys::new(&json, &value)?.opt_str("chat_template")?.map(str::to_owned));
    }
    Ok(None)
}

/// The Jinja environment of transformers' chat templates: `trim_blocks`, `lstrip_blocks`, loop
/// controls, Python string methods, `raise_exception`, `strftime_now` and a `tojson` that writes
/// like Python's `json.dumps` (`", "` and `": "` separators, non-ASCII kept).
fn jinja_environment() -> Environment<'static> {
    let mut env = Environment::new();
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build() {
        env.set_syntax(syntax);
    }
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> std::result::Result<JinjaValue, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
    });
    env.add_function("strftime_now", |format: String| fixed_strftime(&format));
    env.add_filter("tojson", |value: JinjaValue| -> std::result::Result<String, minijinja::Error> {
        let mut out = String::new();
        python_json(&value, &mut out)?;
        Ok(out)
    });
    env
}

/// `strftime` of a fixed date, 26 July 2024 (the default of Llama 3.1's template), so that prompts
/// are reproducible: chat templates use `strftime_now` only for a "Today Date" line.
/// Supports `%d`, `%m`, `%Y`, `%y`, `%b`, `%B`, `%A`, `%a` and `%%`.
fn fixed_strftime(format: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("26"),
            Some('m') => out.push_str("07"),
            Some('Y') => out.push_str("2024"),
            Some('y') => out.push_str("24"),
            Some('b') => out.push_str("Jul"),
            Some('B') => out.push_str("July"),
            Some('A') => out.push_str("Friday"),
            Some('a') => out.push_str("Fri"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Writes `v` as Python's `json.dumps(v, ensure_ascii=False)` does: keys in insertion order,
/// `", "` and `": "` separators.
fn python_json(v: &JinjaValue, out: &mut String) -> std::result::Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String => out.push_str(&Value::String(v.to_string()).to_string()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.to_string()).to_string());
                out.push_str(": ");
                python_json(&v.get_item(&key)?, out)?;
            }
            out.push('}');
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialise a value of kind {:?}", v.kind()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_now_formats_a_fixed_reproducible_date() {
        assert_eq!(fixed_strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(fixed_strftime("%Y-%m-%d 100%%"), "2024-07-26 100%");
    }

    #[test]
    fn tojson_uses_python_separators() {
        let env = jinja_environment();
        let t = env.template_from_str("{{ {'name': 'f', 'args': [1, 'ü', none, true]} | tojson }}").unwrap();
        assert_eq!(t.render(minijinja::context! {}).unwrap(), r#"{"name": "f", "args": [1, "ü", null, true]}"#);
    }

    #[test]
    fn templates_get_python_string_methods_and_trimmed_blocks() {
        let env = jinja_environment();
        let t = env
            .template_from_str("{% for m in messages %}\n  {% if m.role %}{{ m.content.strip() | upper }}{% endif %}|{% endfor %}")
            .unwrap();
        let out = t.render(minijinja::context! { messages => minijinja::value::Serde(vec![ChatMessage::new("user", "  hi ")]) }).unwrap();
        assert_eq!(out, "HI|");
    }

    #[test]
    fn raise_exception_becomes_a_template_error() {
        let env = jinja_environment();
        let t = env.template_from_str("{{ raise_exception('no tools') }}").unwrap();
        let err = t.render(minijinja::context! {}).unwrap_err();
        assert!(format!("{err:#}").contains("no tools"));
    }
}
