//! Prompt construction of the reference system (§3.3) on the fixture tokenizers.
#![allow(clippy::unwrap_used)]

mod common;

use common::fixture;
use trainer::model::ModelTokenizer;
use trainer::model::prompt::{GUIDANCE_PROMPT, PromptStyle, TemplateType};

fn without_chat_template(name: &str) -> (tempfile::TempDir, ModelTokenizer) {
    let dir = tempfile::tempdir().unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture(name).join(file), dir.path().join(file)).unwrap();
    }
    let tokenizer = ModelTokenizer::from_dir(dir.path()).unwrap();
    (dir, tokenizer)
}

#[test]
fn the_chat_path_renders_the_guidance_system_prompt() {
    let tokenizer = ModelTokenizer::from_dir(&fixture("qwen2")).unwrap();
    let prompt = PromptStyle::default().build(&tokenizer, "What is 2+2?").unwrap();
    let expected = format!("<|im_start|>system\n{GUIDANCE_PROMPT}<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(prompt.text, expected);
    assert_eq!(prompt.ids, tokenizer.encode(&expected, false).unwrap());
    let r1 = PromptStyle { template: TemplateType::R1, append_to: false }.build(&tokenizer, "x");
    assert!(r1.unwrap_err().to_string().contains("qwen_math"));
}

#[test]
fn the_plain_qwen_math_template_starts_with_the_bos_token() {
    let (_dir, tokenizer) = without_chat_template("llama");
    let prompt = PromptStyle::default().build(&tokenizer, "What is 2+2?").unwrap();
    assert!(prompt.text.starts_with("<|begin_of_text|>A conversation between User and Assistant."));
    assert!(prompt.text.ends_with("\\boxed{}.\n\nUser: What is 2+2? Assistant:"), "{}", prompt.text);
    assert_eq!(prompt.ids[0], tokenizer.token_id("<|begin_of_text|>").unwrap());
}

#[test]
fn append_to_adds_exactly_one_token() {
    let tokenizer = ModelTokenizer::from_dir(&fixture("qwen2")).unwrap();
    let plain = PromptStyle::default().build(&tokenizer, "Hi").unwrap();
    let to = tokenizer.encode("To", false).unwrap();
    let style = PromptStyle { template: TemplateType::QwenMath, append_to: true };
    match style.build(&tokenizer, "Hi") {
        Ok(with_to) => {
            assert_eq!(to.len(), 1);
            assert_eq!(with_to.ids[..plain.ids.len()], plain.ids[..]);
            assert_eq!(with_to.ids[plain.ids.len()..], to[..]);
        }
        Err(err) => {
            assert!(to.len() != 1, "{err}");
            assert!(err.to_string().contains("exactly one token"), "{err}");
        }
    }
}
