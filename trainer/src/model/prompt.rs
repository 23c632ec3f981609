//! Prompt construction of the reference system (§3.3), shared by training, evaluation and the
//! analyses.
//!
//! * Chat path (the tokenizer has a chat template; `template_type` must be `qwen_math`): a system
//!   message with the guidance sentence and a user message with the problem, rendered with
//!   `add_generation_prompt=True`, tokenized without adding special tokens.
//! * Plain path (no chat template): `bos_token` + the `qwen_math` or `r1` template, tokenized
//!   without adding special tokens.
//! * `append_to`: the single token `To` appended after the prompt ("Base + To").

use crate::error::{Error, Result};
use crate::model::tokenizer::{ChatMessage, ModelTokenizer};

/// The system message of the chat path, and the instruction of the `qwen_math` template.
pub const GUIDANCE_PROMPT: &str = "Please reason step by step, and put your final answer within \\boxed{}.";

const QWEN_MATH_PREFIX: &str = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. Please reason step by step, and put your final answer within \\boxed{}.";

const R1_PREFIX: &str = "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. The Assistant first thinks about the reasoning process in the mind and then provides the User with the answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.";

/// The reference's `template_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(clap::ValueEnum)]
pub enum TemplateType {
    /// Chat template with the guidance system prompt, or the plain `qwen_math` text template.
    #[default]
    QwenMath,
    /// The DeepSeek-R1 style plain template (`<think>` … `<answer>`); answers are read from the
    /// last `<answer>` block.
    R1,
}

/// How prompts are built for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PromptStyle {
    /// Template to use.
    pub template: TemplateType,
    /// Append the single token `To` after the prompt.
    pub append_to: bool,
}

/// A built prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The prompt text (without the appended `To`).
    pub text: String,
    /// Its token ids (with the appended `To` when asked for).
    pub ids: Vec<u32>,
}

impl PromptStyle {
    /// Builds the prompt of one problem.
    pub fn build(&self, tokenizer: &ModelTokenizer, problem: &str) -> Result<Prompt> {
        let text = match (&tokenizer.chat_template, self.template) {
            (Some(_), TemplateType::QwenMath) => tokenizer.apply_chat_template(
                &[ChatMessage::new("system", GUIDANCE_PROMPT), ChatMessage::new("user", problem)],
                true,
            )?,
            (Some(_), TemplateType::R1) => {
                return Err(Error::InvalidArgument(format!(
                    "{}: the tokenizer has a chat template, which the reference uses only with template_type qwen_math, not r1",
                    tokenizer.dir().display()
                )));
            }
            (None, TemplateType::QwenMath) => plain(tokenizer, &format!("{QWEN_MATH_PREFIX}\n\nUser: {problem} Assistant:")),
            (None, TemplateType::R1) => plain(tokenizer, &format!("{R1_PREFIX}\nUser: {problem}\nAssistant: <think>")),
        };
        let mut ids = tokenizer.encode(&text, false)?;
        if self.append_to {
            let to = tokenizer.encode("To", false)?;
            if to.len() != 1 {
                return Err(Error::InvalidArgument(format!(
                    "append_to: \"To\" must encode to exactly one token, but this tokenizer gives {to:?}"
                )));
            }
            ids.extend(to);
        }
        Ok(Prompt { text, ids })
    }
}

fn plain(tokenizer: &ModelTokenizer, body: &str) -> String {
    format!("{}{body}", tokenizer.bos_token.as_deref().unwrap_or(""))
}
