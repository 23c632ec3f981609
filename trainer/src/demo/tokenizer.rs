//! The demo model's tokenizer, made by the project with the `tokenizers` crate: a word-level
//! vocabulary trained (`WordLevelTrainer`, deterministic: ordered by count, then text) on the
//! task's texts. Words carry their leading space, digits are single tokens (so arithmetic is done
//! digit by digit), `\boxed{` is one token, and the guidance sentence of the chat prompt is one
//! added token, so prompts stay short. Decoding concatenates the pieces (`Fuse`), so every text
//! made of known pieces round-trips exactly.
//!
//! Written as a normal Hugging Face tokenizer: `tokenizer.json` and `tokenizer_config.json` with
//! ChatML special tokens (`<|endoftext|>` for BOS and padding, `<|im_end|>` as EOS) and a
//! ChatML chat template, so the chat path of [`PromptStyle`](crate::model::prompt::PromptStyle)
//! builds the reference's prompt (system = guidance sentence, user = problem).

use std::path::Path;

use serde_json::{Map, Value, json};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};
use crate::model::ModelTokenizer;
use crate::model::prompt::GUIDANCE_PROMPT;

/// End of text: BOS and padding token (id 0).
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Opens a chat message (id 1).
pub const IM_START: &str = "<|im_start|>";
/// Closes a chat message: the EOS and stop token (id 2).
pub const IM_END: &str = "<|im_end|>";
/// Unknown piece (id 3).
pub const UNK: &str = "<unk>";

/// The special tokens, in id order.
const SPECIAL_TOKENS: [&str; 4] = [ENDOFTEXT, IM_START, IM_END, UNK];

/// How text is cut into pieces before the vocabulary lookup: `\boxed{`, words and punctuation
/// marks (each with an optional leading space), single digits (never with a space: a digit is
/// the same token wherever it stands), then any other whitespace character alone. Every
/// character of any text falls into one piece.
pub const SPLIT_PATTERN: &str = r" ?\\boxed\{| ?[A-Za-z]+|[0-9]| ?[^\sA-Za-z0-9]|\s";

/// The ChatML chat template (Qwen's, without tools and without a default system message).
pub const CHAT_TEMPLATE: &str = "{%- for message in messages %}\n    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

/// Trains the tokenizer on `corpus` (the texts the model will see besides the chat scaffolding,
/// whose role names are added here, as are all digits). The result does not depend on the order of the corpus.
pub fn train(corpus: &[String]) -> Result<Tokenizer> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tokenizer {
        path: "(demo tokenizer)".into(),
        message: e.to_string(),
    };
    let split = Split::new(SplitPattern::Regex(SPLIT_PATTERN.into()), SplitDelimiterBehavior::Isolated, false)
        .map_err(err)?;
    let model = WordLevel::builder().unk_token(UNK.into()).build().map_err(err)?;
    let mut tokenizer = Tokenizer::new(ModelWrapper::WordLevel(model));
    tokenizer
        .with_pre_tokenizer(Some(PreTokenizerWrapper::Split(split)))
        .with_decoder(Some(DecoderWrapper::Fuse(Fuse::new())));
    let trainer = WordLevelTrainer::builder()
        .show_progress(false)
        .special_tokens(SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect())
        .build()
        .map_err(|e| err(e.into()))?;
    let mut trainer = TrainerWrapper::WordLevelTrainer(trainer);
    // The chat roles, and every digit.
    let scaffolding = "system\nuser\nassistant\n0123456789".to_owned();
    tokenizer
        .train(&mut trainer, corpus.iter().chain(std::iter::once(&scaffolding)))
        .map_err(err)?;
    tokenizer.add_tokens([AddedToken::from(GUIDANCE_PROMPT, false)]).map_err(err)?;
    Ok(tokenizer)
}

/// Writes `tokenizer.json` and `tokenizer_config.json` (special tokens, chat template,
/// `added_tokens_decoder` as transformers writes it) into `dir`.
pub fn write(tokenizer: &Tokenizer, dir: &Path, model_max_length: usize) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let text = tokenizer.to_string(true).map_err(|e| Error::Tokenizer { path: path.clone(), message: e.to_string() })?;
    crate::fsutil::write_atomic(&path, text.as_bytes())?;
    let added: Map<String, Value> = tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .map(|(id, t)| {
            let entry = json!({
                "content": t.content,
                "lstrip": t.lstrip,
                "normalized": t.normalized,
                "rstrip": t.rstrip,
                "single_word": t.single_word,
                "special": t.special,
            });
            (id.to_string(), entry)
        })
        .collect();
    let config = json!({
        "added_tokens_decoder": added,
        "bos_token": ENDOFTEXT,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": UNK,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "model_max_length": model_max_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    crate::fsutil::write_json(&dir.join("tokenizer_config.json"), &config)
}

/// The id of `token` (one of the special tokens above) in a loaded demo tokenizer; an error names
/// the tokenizer file when it lacks the token (not a demo tokenizer).
pub fn token_id(tokenizer: &ModelTokenizer, token: &str) -> Result<u32> {
    tokenizer.token_id(token).ok_or_else(|| Error::Tokenizer {
        path: tokenizer.dir().join("tokenizer.json"),
        message: format!("no `{token}` token: not a demo tokenizer"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_tokens_come_first_and_the_guidance_sentence_is_one_token() {
        let tok = train(&["Start with 7, add 5.".to_owned()]).unwrap();
        let ids: Vec<Option<u32>> = SPECIAL_TOKENS.iter().map(|t| tok.token_to_id(t)).collect();
        assert_eq!(ids, vec![Some(0), Some(1), Some(2), Some(3)]);
        let enc = tok.encode(format!("{IM_START}system\n{GUIDANCE_PROMPT}{IM_END}"), false).unwrap();
        assert_eq!(enc.get_ids().len(), 5, "{:?}", enc.get_tokens());
    }

    #[test]
    fn unknown_pieces_become_unk_instead_of_failing() {
        let tok = train(&["add 5".to_owned()]).unwrap();
        let enc = tok.encode("add 5 zebra", false).unwrap();
        assert_eq!(enc.get_tokens(), &["add", " ", "5", UNK]);
    }

    #[test]
    fn the_vocabulary_does_not_depend_on_corpus_order() {
        let a = ["7+5=12".to_owned(), "The answer is \\boxed{12}.".to_owned()];
        let b = [a[1].clone(), a[0].clone()];
        assert_eq!(train(&a).unwrap().to_string(false).unwrap(), train(&b).unwrap().to_string(false).unwrap());
    }
}
