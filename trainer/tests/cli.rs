//! The `trainer` binary: `inspect` and `generate` on the fixture models, and their errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::fixture;

fn trainer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().expect("run trainer");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn inspect_reports_architecture_sizes_and_counts() {
    let model = fixture("olmo2");
    let (ok, stdout, stderr) = trainer(&["inspect", "--model", model.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["architecture"], "Olmo2ForCausalLM");
    assert_eq!(v["layers"], 3);
    assert_eq!(v["steering_parameters"], 3 * 64);
    assert!(v["weight_dtypes"]["F16"].as_u64().unwrap() > 0);
    // Embeddings + LM head + 3 layers of attention, q/k norms, MLP and norms + final norm.
    let (h, i, v_, kv) = (64u64, 128u64, 400u64, 32u64);
    let per_layer = h * h + 2 * h * kv + h * h + (h + kv) + 3 * h * i + 2 * h;
    assert_eq!(v["parameters"], 2 * v_ * h + 3 * per_layer + h);
}

#[test]
fn generate_prints_json_lines_and_is_reproducible() {
    let model = fixture("qwen2");
    let args = [
        "generate", "--model", model.to_str().unwrap(), "--prompt", "What is 12 + 35?", "--prompt", "Hi",
        "-n", "2", "--max-new-tokens", "6", "--seed", "5", "--json",
    ];
    let (ok, first, stderr) = trainer(&args);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    for line in &lines {
        let n = line["num_tokens"].as_u64().unwrap();
        assert!((1..=6).contains(&n));
        assert!(line["sum_logprob"].as_f64().unwrap() < 0.0);
    }
    assert_eq!(lines[2]["prompt"], "Hi");
    let (_, second, _) = trainer(&args);
    assert_eq!(first, second, "same seed, same completions");
}

#[test]
fn generate_with_steering_uses_the_vectors() {
    let model = fixture("llama");
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("v.safetensors");
    let mut file = trainer::steering::SteeringFile::zeros(3, 64, Default::default());
    file.vectors.iter_mut().enumerate().for_each(|(i, x)| *x = ((i % 7) as f32 - 3.0) * 0.8);
    file.save(&vectors).unwrap();
    let base = ["generate", "--model", model.to_str().unwrap(), "--prompt", "Hi", "--temperature", "0", "--max-new-tokens", "8", "--json"];
    let (ok, plain, stderr) = trainer(&base);
    assert!(ok, "{stderr}");
    let mut with = base.to_vec();
    with.extend(["--steering", vectors.to_str().unwrap()]);
    let (ok, steered, stderr) = trainer(&with);
    assert!(ok, "{stderr}");
    assert_ne!(plain, steered);
    with.extend(["--scale", "0"]);
    let (_, zero, _) = trainer(&with);
    assert_eq!(plain, zero, "scale 0 switches steering off");
}

#[test]
fn bad_arguments_fail_with_a_message_not_a_panic() {
    let model = fixture("qwen2");
    let (ok, _, stderr) = trainer(&["generate", "--model", "/nonexistent/model", "--prompt", "x"]);
    assert!(!ok && stderr.contains("/nonexistent/model"), "{stderr}");
    let (ok, _, stderr) = trainer(&["generate", "--model", model.to_str().unwrap(), "--prompt", "x", "--top-p", "0"]);
    assert!(!ok && stderr.contains("top_p"), "{stderr}");
    let (ok, _, stderr) = trainer(&["generate", "--model", model.to_str().unwrap(), "--prompt", "x", "--max-new-tokens", "100000"]);
    assert!(!ok && stderr.contains("exceed"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn verify_judges_one_pair_and_json_lines() {
    let (ok, stdout, _) = trainer(&["verify", "--gold", "\\frac{1}{2}", "--pred", "The answer is $\\boxed{0.5}$."]);
    assert!(ok);
    assert_eq!(stdout.trim(), "true");
    let (_, stdout, _) = trainer(&["verify", "--gold", "3", "--pred", "\\boxed{4}", "--template", "qwen-math"]);
    assert_eq!(stdout.trim(), "false");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("verify")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"{\"gold\": \"1,234\", \"pred\": \"\\\\boxed{1234}\"}\n{\"gold\": \"2\", \"pred\": \"3\"}\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["correct"], true);
    assert_eq!(lines[1]["correct"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 lines, 1 correct"));
}
