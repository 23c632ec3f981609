//! Data-driven tests: math-verify's own test cases and the gold answers of every benchmark file.

use std::path::Path;

use super::{AnswerFormat, answers_equivalent, verify};

const UPSTREAM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/verifier/math-verify-upstream-cases.jsonl"
);
const BENCHMARKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/benchmarks");

/// Agreement required with math-verify's default-configuration verdicts.
const REQUIRED_AGREEMENT: f64 = 0.97;

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn text_field<'a>(row: &'a serde_json::Value, name: &str) -> &'a str {
    row.get(name)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("row without {name}: {row}"))
}

#[test]
fn agreement_with_math_verify_upstream_cases_is_at_least_97_percent() {
    let rows = read_jsonl(Path::new(UPSTREAM));
    assert_eq!(rows.len(), 260, "the upstream file has 260 cases");
    let mut disagreements = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let gold = text_field(row, "gold");
        let pred = text_field(row, "pred");
        let want = row
            .get("math_verify")
            .and_then(serde_json::Value::as_bool)
            .expect("math_verify verdict");
        let got = answers_equivalent(gold, pred);
        if got != want {
            disagreements.push((
                i,
                want,
                got,
                row.get("origin")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                gold.to_string(),
                pred.to_string(),
            ));
        }
    }
    let agreement = 1.0 - disagreements.len() as f64 / rows.len() as f64;
    println!(
        "agreement with math-verify: {}/{} = {:.2}%",
        rows.len() - disagreements.len(),
        rows.len(),
        100.0 * agreement
    );
    for (i, want, got, origin, gold, pred) in &disagreements {
        let clip = |s: &str| {
            s.chars()
                .rev()
                .take(160)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        };
        println!(
            "case {i} ({origin}): math-verify {want}, ours {got}\n  gold: {:?}\n  pred: …{:?}",
            clip(gold),
            clip(pred)
        );
    }
    assert!(
        agreement >= REQUIRED_AGREEMENT,
        "agreement {agreement:.4} below {REQUIRED_AGREEMENT}"
    );
}

/// An independent, deliberately simple reading of an answer, used only to decide which pairs of
/// consecutive gold answers are "the same" and must be skipped: whitespace and layout commands
/// removed, fraction commands unified.
fn layout_normalised(s: &str) -> String {
    let mut t = s.to_string();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\ ", ""),
        ("$", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\displaystyle", ""),
        ("\\text{ }", ""),
        ("{,}", ""),
    ] {
        t = t.replace(from, to);
    }
    t.retain(|c| !c.is_whitespace());
    // A trailing unit word in `\text{}` / `\mbox{}` (`21\text{ dogs}`).
    for cmd in ["\\text{", "\\mbox{"] {
        if let Some(p) = t.rfind(cmd)
            && p > 0
            && t.ends_with('}')
            && !t[p + cmd.len()..t.len() - 1].contains(['{', '}'])
        {
            t.truncate(p);
        }
    }
    // An assignment `x=5`, `K=8` is its value.
    if let Some((lhs, rhs)) = t.split_once('=')
        && !lhs.is_empty()
        && lhs.chars().all(|c| c.is_ascii_alphabetic())
        && !rhs.contains('=')
    {
        t = rhs.to_string();
    }
    t.trim_end_matches('.').to_string()
}

/// An independent numeric reading of plain numbers and simple fractions (`12`, `-3.5`, `1,234`,
/// `7/2`, `\frac{7}{2}`), or `None`.
fn plain_number(s: &str) -> Option<f64> {
    let t = layout_normalised(s);
    let t = t.strip_prefix('+').unwrap_or(&t);
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let number = |x: &str| -> Option<f64> {
        let x = x.replace(',', "");
        if x.is_empty() || !x.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return None;
        }
        x.parse::<f64>().ok()
    };
    let v = if let Some(rest) = t
        .strip_prefix("\\frac")
        .filter(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_digit()))
    {
        number(&rest[..1])? / number(&rest[1..])?
    } else if let Some(rest) = t.strip_prefix("\\frac{") {
        let (a, rest) = rest.split_once("}{")?;
        let b = rest.strip_suffix('}')?;
        number(a)? / number(b)?
    } else if let Some((a, b)) = t.split_once('/') {
        number(a)? / number(b)?
    } else {
        number(t)?
    };
    Some(if neg { -v } else { v })
}

/// Gold answers whose self-check is known to fail, with the reason (see `docs/verifier.md`).
const KNOWN_SELF_CHECK_FAILURES: &[(&str, &str)] = &[];

#[test]
fn every_benchmark_gold_answer_verifies_against_itself_and_not_against_a_different_next_one() {
    let mut files: Vec<_> = std::fs::read_dir(BENCHMARKS)
        .unwrap_or_else(|e| panic!("reading {BENCHMARKS}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the 10 benchmark files, found {}",
        files.len()
    );
    let mut self_failures = Vec::new();
    let mut false_matches = Vec::new();
    let mut text_only = Vec::new();
    let (mut rows_checked, mut pairs_checked, mut pairs_skipped) = (0usize, 0usize, 0usize);
    for path in &files {
        let rows = read_jsonl(path);
        let answers: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    text_field(r, "id").to_string(),
                    text_field(r, "answer").to_string(),
                )
            })
            .collect();
        for (i, (id, answer)) in answers.iter().enumerate() {
            rows_checked += 1;
            let completion = format!("The final answer is $\\boxed{{{answer}}}$.");
            let own = verify(answer, &completion, AnswerFormat::QwenMath);
            if !own.correct && !KNOWN_SELF_CHECK_FAILURES.iter().any(|(k, _)| k == id) {
                self_failures.push(format!("{id}: {answer:?} -> {:?}", own.verdict));
            }
            let parsed = super::scan::parse_answer(
                &format!("\\boxed{{{answer}}}"),
                &super::budget::Budget::new(),
            )
            .expect("budget");
            if parsed.value.is_none() {
                text_only.push(format!("{id}: {answer:?}"));
            }
            let Some((next_id, next)) = answers.get(i + 1) else {
                continue;
            };
            let same_layout = layout_normalised(answer) == layout_normalised(next);
            let same_number = matches!((plain_number(answer), plain_number(next)), (Some(a), Some(b)) if (a - b).abs() <= 1e-9 * (1.0 + a.abs()));
            if same_layout || same_number {
                pairs_skipped += 1;
                continue;
            }
            pairs_checked += 1;
            let other = verify(
                answer,
                &format!("The final answer is $\\boxed{{{next}}}$."),
                AnswerFormat::QwenMath,
            );
            if other.correct {
                false_matches.push(format!("{id} {answer:?} accepted {next_id} {next:?}"));
            }
        }
    }
    println!(
        "{rows_checked} gold answers, {pairs_checked} different consecutive pairs checked, {pairs_skipped} equal pairs skipped"
    );
    println!(
        "{} gold answers are compared as text only (not parsed):",
        text_only.len()
    );
    for f in &text_only {
        println!("  text only: {f}");
    }
    for f in &self_failures {
        println!("self-check failed: {f}");
    }
    for f in &false_matches {
        println!("different answers accepted: {f}");
    }
    assert!(
        self_failures.is_empty(),
        "{} gold answers fail against themselves",
        self_failures.len()
    );
    assert!(
        false_matches.is_empty(),
        "{} different answers accepted",
        false_matches.len()
    );
}

/// Throughput on one core (run with `cargo test --release -- --ignored --nocapture throughput`).
#[test]
#[ignore = "benchmark; run explicitly in release mode"]
fn verifier_throughput_on_benchmark_answers() {
    let rows = read_jsonl(&Path::new(BENCHMARKS).join("math_test.jsonl"));
    let answers: Vec<String> = rows
        .iter()
        .map(|r| text_field(r, "answer").to_string())
        .collect();
    let completions: Vec<String> = rows
        .iter()
        .map(|r| {
            let solution = r
                .get("solution")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            format!(
                "Let me think step by step. {solution}\nThe final answer is $\\boxed{{{}}}$.",
                text_field(r, "answer")
            )
        })
        .collect();
    let start = std::time::Instant::now();
    let mut correct = 0usize;
    let mut calls = 0usize;
    for round in 0..2 {
        for (i, gold) in answers.iter().enumerate() {
            // Half the checks against the right answer, half against the next row's.
            let completion = &completions[(i + round) % completions.len()];
            correct += usize::from(verify(gold, completion, AnswerFormat::QwenMath).correct);
            calls += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{calls} verifications ({correct} correct) in {secs:.3} s: {:.0} per second on one core",
        calls as f64 / secs
    );
    let start = std::time::Instant::now();
    for (i, gold) in answers.iter().enumerate() {
        let _ = verify(gold, &completions[i], AnswerFormat::FreeText);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "free_text: {} verifications in {secs:.3} s: {:.0} per second",
        answers.len(),
        answers.len() as f64 / secs
    );
}
