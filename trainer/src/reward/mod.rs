//! Math answer verifier: extracts the final answer of a completion and decides whether it is
//! equivalent to the gold answer, the way Hugging Face's `math-verify` does, natively.
//!
//! The reward of every RL step and every evaluation number goes through [`verify`]. The rules
//! (what is extracted, how answers are normalised and compared, the precision rules, the limits
//! and every deliberate difference from math-verify) are documented in `docs/verifier.md`.
//!
//! * [`verify`]: gold answer + completion + prompt template → [`Verification`] (verdict and the
//!   extracted answer, for logs).
//! * [`answers_equivalent`]: math-verify's `verify(parse(gold), parse(pred))` on two raw strings.
//! * [`verify_json_lines`]: the batch mode behind `trainer verify` (JSON lines in, JSON lines out).
//!
//! Nothing here panics on any input, and one verification stops after [`budget::TIME_LIMIT`]
//! (the answer is then judged incorrect, with [`Verdict::LimitExceeded`]).

pub mod budget;
mod compare;
mod expr;
pub mod extract;
mod latex;
mod normalize;
mod scan;

#[cfg(test)]
mod data_tests;
#[cfg(test)]
mod property_tests;

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use self::budget::{Budget, Exhausted};
use self::scan::{Parsed, parse_answer};

pub use self::compare::{FLOAT_ROUNDING, MAX_SET_ELEMENTS};
pub use self::latex::{MAX_DEPTH, MAX_PARSE_BYTES};
pub use self::scan::MAX_SCAN_BYTES;

/// How the answer is marked in a completion (the prompt template of the reference system).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFormat {
    /// `qwen_math`: the answer is the last `\boxed{...}` (or `\fbox{...}`) of the completion.
    #[default]
    #[value(alias = "qwen_math")]
    QwenMath,
    /// `r1`: the answer is the last `<answer>...</answer>` block.
    R1,
    /// No marker required: math-verify's own search of the whole text (boxes first, then
    /// "final answer is ...", "answer: ...", then the last math environment or number).
    #[value(alias = "free_text")]
    FreeText,
}

/// Outcome of one verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The extracted answer is equivalent to the gold answer.
    Correct,
    /// An answer was found and it is not equivalent to the gold answer.
    Incorrect,
    /// The completion has no answer in the expected format (no box, no `<answer>` block).
    NoAnswer,
    /// Nothing could be read from the gold answer (the completion is judged incorrect).
    GoldUnparseable,
    /// The work or time limit of one verification was reached (judged incorrect).
    LimitExceeded,
}

/// Result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Whether the completion earns the reward (`verdict == Correct`).
    pub correct: bool,
    /// Why.
    pub verdict: Verdict,
    /// The answer taken from the completion, for logs: the box contents (`qwen_math`), the
    /// `<answer>` contents (`r1`), or the normalised text of the chosen candidate (`free_text`).
    pub extracted: Option<String>,
    /// The reference system's logged `strict` flag: the gold `\boxed{...}` string equals the
    /// extracted box string exactly (always false for `free_text`).
    pub strict_match: bool,
}

impl Verification {
    fn new(verdict: Verdict, extracted: Option<String>, strict_match: bool) -> Self {
        Self {
            correct: verdict == Verdict::Correct,
            verdict,
            extracted,
            strict_match,
        }
    }
}

/// Wraps a gold answer as the reference system does (`\boxed{<answer>}`), unless it is boxed
/// already.
fn boxed_gold(gold: &str) -> String {
    let g = gold.trim();
    if g.starts_with("\\boxed") {
        g.to_string()
    } else {
        format!("\\boxed{{{g}}}")
    }
}

fn equivalent_parsed(gold: &Parsed, pred: &Parsed, b: &Budget) -> Result<bool, Exhausted> {
    if let (Some(g), Some(p)) = (&gold.value, &pred.value)
        && compare::is_comparable(g)
        && compare::values_equal(g, p, b)?
    {
        return Ok(true);
    }
    Ok(match (&gold.fallback, &pred.fallback) {
        (Some(g), Some(p)) => {
            let (g, p) = (g.trim(), p.trim());
            !g.is_empty() && g == p
        }
        _ => false,
    })
}

fn judge(gold_text: &str, candidate: &str, b: &Budget) -> Result<Verdict, Exhausted> {
    let gold = parse_answer(gold_text, b)?;
    if gold.value.is_none() && gold.fallback.is_none() {
        return Ok(Verdict::GoldUnparseable);
    }
    let pred = parse_answer(candidate, b)?;
    Ok(if equivalent_parsed(&gold, &pred, b)? {
        Verdict::Correct
    } else {
        Verdict::Incorrect
    })
}

/// Verifies one completion against a gold answer.
///
/// `gold` is the dataset's answer, bare LaTeX as in `shared/data/benchmarks` (`\frac{14}{3}`,
/// `18`); like the reference system it is read as `\boxed{<gold>}`. `completion` is the model's
/// whole output; `format` says where its answer is (see [`AnswerFormat`]).
///
/// Never panics; takes at most about [`budget::TIME_LIMIT`].
///
/// ```
/// use trainer::reward::{verify, AnswerFormat};
/// let v = verify("\\frac{1}{2}", "... so the answer is $\\boxed{0.5}$.", AnswerFormat::QwenMath);
/// assert!(v.correct);
/// assert_eq!(v.extracted.as_deref(), Some("0.5"));
/// ```
pub fn verify(gold: &str, completion: &str, format: AnswerFormat) -> Verification {
    let budget = Budget::new();
    let gold_text = boxed_gold(gold);
    let (candidate, extracted, strict) = match format {
        AnswerFormat::QwenMath => match extract::last_boxed_only_string(completion) {
            Some(boxed) => (
                boxed.to_string(),
                Some(extract::box_contents(boxed).to_string()),
                boxed == gold_text,
            ),
            None => return Verification::new(Verdict::NoAnswer, None, false),
        },
        AnswerFormat::R1 => {
            let inner = extract::last_answer_tag(completion).unwrap_or("");
            let boxed = format!("\\boxed{{{inner}}}");
            let strict = boxed == gold_text;
            if inner.trim().is_empty() {
                return Verification::new(Verdict::NoAnswer, Some(inner.to_string()), false);
            }
            (boxed, Some(inner.to_string()), strict)
        }
        AnswerFormat::FreeText => {
            let result = (|| -> Result<Verification, Exhausted> {
                let gold_parsed = parse_answer(&gold_text, &budget)?;
                if gold_parsed.value.is_none() && gold_parsed.fallback.is_none() {
                    return Ok(Verification::new(Verdict::GoldUnparseable, None, false));
                }
                let pred = parse_answer(completion, &budget)?;
                let extracted = pred.text.clone().or_else(|| pred.fallback.clone());
                if pred.value.is_none() && pred.fallback.is_none() {
                    return Ok(Verification::new(Verdict::NoAnswer, None, false));
                }
                let ok = equivalent_parsed(&gold_parsed, &pred, &budget)?;
                Ok(Verification::new(
                    if ok {
                        Verdict::Correct
                    } else {
                        Verdict::Incorrect
                    },
                    extracted,
                    false,
                ))
            })();
            return result.unwrap_or_else(|Exhausted| {
                Verification::new(Verdict::LimitExceeded, None, false)
            });
        }
    };
    match judge(&gold_text, &candidate, &budget) {
        Ok(verdict) => Verification::new(verdict, extracted, strict),
        Err(Exhausted) => Verification::new(Verdict::LimitExceeded, extracted, strict),
    }
}

/// math-verify's `verify(parse(gold), parse(pred))` with its default configuration, on two raw
/// strings: both are searched as free text (so a bare `\sqrt{51}` finds nothing; write
/// `$\sqrt{51}$` or `\boxed{\sqrt{51}}`).
///
/// ```
/// use trainer::reward::answers_equivalent;
/// assert!(answers_equivalent("$\\frac{1}{3}$", "$0.333333$"));
/// assert!(!answers_equivalent("$x > 5$", "$x < 5$"));
/// ```
pub fn answers_equivalent(gold: &str, pred: &str) -> bool {
    let budget = Budget::new();
    let run = || -> Result<bool, Exhausted> {
        let g = parse_answer(gold, &budget)?;
        let p = parse_answer(pred, &budget)?;
        equivalent_parsed(&g, &p, &budget)
    };
    run().unwrap_or(false)
}

/// Counts from [`verify_json_lines`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Lines verified (blank lines are skipped and not counted).
    pub lines: u64,
    /// Lines judged correct.
    pub correct: u64,
    /// Lines where the completion had no answer in the expected format.
    pub no_answer: u64,
    /// Lines stopped by the time or work limit (judged incorrect).
    pub limit_exceeded: u64,
}

/// Errors of [`verify_json_lines`]. A wrong answer is never an error.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading the input or writing the output failed.
    #[error("verify: I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a JSON object.
    #[error(
        "verify: line {line}: expected a JSON object like {{\"gold\": \"...\", \"pred\": \"...\"}}: {source}"
    )]
    Json {
        /// 1-based line number.
        line: u64,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A line lacks a string field.
    #[error("verify: line {line}: expected a string field \"{field}\", found {found}")]
    Field {
        /// 1-based line number.
        line: u64,
        /// The missing field (`gold` or `pred`).
        field: &'static str,
        /// What was there instead.
        found: String,
    },
    /// The optional `template` field names no known template.
    #[error(
        "verify: line {line}: unknown template {found:?}, expected \"qwen_math\", \"r1\" or \"free_text\""
    )]
    Template {
        /// 1-based line number.
        line: u64,
        /// The value found.
        found: String,
    },
}

/// Batch mode of `trainer verify`: reads JSON lines `{"gold": G, "pred": P}` and writes each line
/// back with `"correct": true|false` added.
///
/// `gold` is the dataset answer (read as `\boxed{G}`); `pred` is a completion or a bare answer,
/// searched as free text unless the line has `"template": "qwen_math"` or `"r1"`. Other fields are
/// kept as they are. Blank lines are skipped. Stops at the first malformed line.
///
/// ```
/// use trainer::reward::verify_json_lines;
/// let input = "{\"gold\": \"\\\\frac{1}{2}\", \"pred\": \"so $\\\\boxed{0.5}$\"}\n";
/// let mut out = Vec::new();
/// let stats = verify_json_lines(input.as_bytes(), &mut out).expect("valid input");
/// assert_eq!(stats.correct, 1);
/// assert!(String::from_utf8(out).expect("utf-8").contains("\"correct\":true"));
/// ```
pub fn verify_json_lines(
    input: impl BufRead,
    mut output: impl Write,
) -> Result<Stats, VerifyError> {
    let mut stats = Stats::default();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let number = index as u64 + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|source| VerifyError::Json {
                line: number,
                source,
            })?;
        let field = |name: &'static str| -> Result<String, VerifyError> {
            match object.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                other => Err(VerifyError::Field {
                    line: number,
                    field: name,
                    found: other.map_or_else(|| "nothing".to_string(), ToString::to_string),
                }),
            }
        };
        let gold = field("gold")?;
        let pred = field("pred")?;
        let format = match object.get("template") {
            None | Some(serde_json::Value::Null) => AnswerFormat::FreeText,
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "qwen_math" => AnswerFormat::QwenMath,
                "r1" => AnswerFormat::R1,
                "free_text" => AnswerFormat::FreeText,
                _ => {
                    return Err(VerifyError::Template {
                        line: number,
                        found: s.clone(),
                    });
                }
            },
            Some(other) => {
                return Err(VerifyError::Template {
                    line: number,
                    found: other.to_string(),
                });
            }
        };
        let v = verify(&gold, &pred, format);
        stats.lines += 1;
        stats.correct += u64::from(v.correct);
        stats.no_answer += u64::from(v.verdict == Verdict::NoAnswer);
        stats.limit_exceeded += u64::from(v.verdict == Verdict::LimitExceeded);
        if object.contains_key("correct") || !trimmed.ends_with('}') {
            object.insert("correct".into(), serde_json::Value::Bool(v.correct));
            let text = serde_json::to_string(&object).map_err(|source| VerifyError::Json {
                line: number,
                source,
            })?;
            writeln!(output, "{text}")?;
        } else {
            // Keep the line as written, with the verdict appended before the closing brace.
            let body = trimmed[..trimmed.len() - 1].trim_end();
            writeln!(output, "{body},\"correct\":{}}}", v.correct)?;
        }
    }
    output.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_reads_the_last_box_for_qwen_math() {
        let table = [
            ("18", "so \\boxed{17}... no wait, \\boxed{18}", true),
            ("18", "so \\boxed{18}... no wait, \\boxed{17}", false),
            (
                "\\frac{14}{3}",
                "The final answer is $\\boxed{\\dfrac{14}{3}}$.",
                true,
            ),
            (
                "\\frac{14}{3}",
                "The final answer is $\\boxed{4.666667}$.",
                true,
            ),
            (
                "\\frac{14}{3}",
                "The final answer is $\\boxed{4.67}$.",
                false,
            ),
            ("5", "\\boxed 5", true),
            ("5", "the answer is 5", false),
        ];
        for (gold, completion, want) in table {
            let v = verify(gold, completion, AnswerFormat::QwenMath);
            assert_eq!(v.correct, want, "{gold} vs {completion}: {v:?}");
        }
    }

    #[test]
    fn a_completion_without_a_box_has_no_answer() {
        let v = verify("5", "I think it is 5", AnswerFormat::QwenMath);
        assert_eq!(v.verdict, Verdict::NoAnswer);
        assert_eq!(v.extracted, None);
    }

    #[test]
    fn verify_reads_the_last_answer_tag_for_r1() {
        let ok = verify(
            "\\frac{1}{2}",
            "<think>..</think> <answer>1/2</answer>",
            AnswerFormat::R1,
        );
        assert!(ok.correct, "{ok:?}");
        let missing = verify("1", "<think>1</think>", AnswerFormat::R1);
        assert_eq!(missing.verdict, Verdict::NoAnswer);
    }

    #[test]
    fn free_text_uses_math_verify_search() {
        let v = verify(
            "34",
            "Final Answer: The largest $n$ is 34.",
            AnswerFormat::FreeText,
        );
        assert!(v.correct, "{v:?}");
    }

    #[test]
    fn the_strict_flag_is_exact_string_equality_of_boxes() {
        assert!(verify("5", "\\boxed{5}", AnswerFormat::QwenMath).strict_match);
        assert!(!verify("5", "\\boxed{5.0}", AnswerFormat::QwenMath).strict_match);
    }

    #[test]
    fn json_lines_get_a_correct_field_and_keep_the_rest() {
        let input = "{\"gold\":\"2\",\"pred\":\"$\\\\boxed{2}$\",\"id\":7}\n\n{\"gold\":\"3\",\"pred\":\"4\"}\n";
        let mut out = Vec::new();
        let stats = verify_json_lines(input.as_bytes(), &mut out).expect("valid input");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "{\"gold\":\"2\",\"pred\":\"$\\\\boxed{2}$\",\"id\":7,\"correct\":true}",
                "{\"gold\":\"3\",\"pred\":\"4\",\"correct\":false}"
            ]
        );
        assert_eq!(
            stats,
            Stats {
                lines: 2,
                correct: 1,
                no_answer: 0,
                limit_exceeded: 0
            }
        );
    }

    #[test]
    fn malformed_json_lines_are_errors_with_their_line_number() {
        let table = [
            ("not json\n", "line 1"),
            ("{\"gold\":\"1\"}\n", "\"pred\""),
            ("{\"gold\":1,\"pred\":\"1\"}\n", "\"gold\""),
            (
                "{\"gold\":\"1\",\"pred\":\"1\",\"template\":\"x\"}\n",
                "unknown template",
            ),
        ];
        for (input, want) in table {
            let err = verify_json_lines(input.as_bytes(), Vec::new()).expect_err("malformed");
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn the_notations_of_the_issue_are_equivalent() {
        let table: &[(&str, &str, bool)] = &[
            ("1234", "1,234", true),
            ("1234", "1{,}234", true),
            ("1234", "1\\,234", true),
            ("7", "007", true),
            ("5", "5.0", true),
            ("1500", "1.5e3", true),
            ("\\frac{1}{2}", "\\tfrac12", true),
            ("\\frac{7}{2}", "3\\frac{1}{2}", true),
            ("2\\sqrt{2}", "\\sqrt{8}", true),
            ("\\frac{\\pi}{2}", "\\pi/2", true),
            ("1024", "2^{10}", true),
            ("(x+1)^2", "x^2+2x+1", true),
            ("(x+1)^2", "x^2+2x+2", false),
            ("50\\%", "50\\%", true),
            ("90^\\circ", "90", true),
            ("90^\\circ", "90°", true),
            ("5", "5 \\text{ cm}", true),
            ("5", "\\mbox{5}", true),
            ("5", "\\$5", true),
            ("5", "5 dollars", true),
            ("\\{1, 2\\}", "\\{2, 1\\}", true),
            ("(1, 2)", "(2, 1)", false),
            ("[0, 1)", "[0,1)", true),
            ("[0, 1)", "[0,1]", false),
            ("(-\\infty, 2) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2)", true),
            ("x < 3", "3 > x", true),
            ("x < 3", "x > 3", false),
            ("x = 5", "5", true),
            ("5", "x = 5", true),
            ("1, 2", "2, 1", true),
            ("\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{bmatrix} 1 & 2 \\end{bmatrix}", true),
            ("3+4i", "4i+3", true),
            ("i^2", "-1", true),
            ("204_5", "204_5", true),
            ("\\text{(C)}", "C", true),
            ("(C)", "\\text{C}", true),
            ("\\text{Evelyn}", "\\text{evelyn}", true),
            ("\\text{odd}", "\\text{even}", false),
            ("\\frac{1}{3}", "0.333333", true),
            ("\\frac{1}{3}", "0.33", false),
            ("1.24 \\times 10^{-8}", "2.55 \\times 10^{-10}", false),
            ("\\tan^2(y)+1", "\\sec^2(y)", true),
        ];
        let mut failures = Vec::new();
        for (gold, pred, want) in table {
            let v = verify(gold, &format!("so $\\boxed{{{pred}}}$"), AnswerFormat::QwenMath);
            if v.correct != *want {
                failures.push(format!("{gold} vs {pred}: expected {want}, got {:?}", v.verdict));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
