//! `trainer bench` on the CPU at the tiny fixture's shape (its config.json): the reports are
//! complete and consistent. (Speed itself is measured on the GPU machine, docs/performance.md.)
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::fixture;

fn bench(args: &[&str]) -> Vec<serde_json::Value> {
    let shape = fixture("qwen2").join("config.json");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("bench")
        .args(args)
        .args(["--shape", shape.to_str().unwrap(), "--backend", "flex", "--dtype", "f32"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn positive(v: &serde_json::Value) -> bool {
    v.as_f64().is_some_and(|x| x > 0.0 && x.is_finite())
}

#[test]
fn generate_reports_throughput_bytes_per_step_and_a_profile() {
    let report = &bench(&["generate", "--batch", "2", "--prompt-len", "5", "--new-tokens", "4", "--profile"])[0];
    assert!(positive(&report["tokens_per_sec"]) && positive(&report["decode_step_ms"]), "{report}");
    // The tiny model: 3 layers, hidden 64, 2 KV heads of 16, vocabulary 400 (tied).
    let weights = 400 * 64 + 3 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 128 + 64 + 2 * 32 + 2 * 64) + 64;
    let kv = 2 * 3 * 2 * 2 * 16 * (5 + 2);
    assert_eq!(report["decode_bytes_per_step"].as_f64(), Some(((weights + kv) * 4) as f64), "{report}");
    let profile = &report["profile"];
    // Two rows: every weight twice (a multiply-add each), and 4 heads of 16 attending 7 positions in 3 layers.
    let attention = 4 * 3 * 7 * 4 * 16;
    assert_eq!(report["decode_flops_per_step"].as_f64(), Some((2 * 2 * weights + 2 * attention) as f64), "{report}");
    for key in ["layers_ms", "logits_ms", "sample_ms", "mlp_matmul_ms", "mlp_matmul_gbps", "copy_gbps", "roofline_fraction", "memory_floor_ms"] {
        assert!(positive(&profile[key]), "{key}: {profile}");
    }
    for key in ["tensor_core_tflops", "tensor_core_max_rel_diff", "compute_floor_ms"] {
        assert!(profile[key].is_null(), "no tensor cores on the CPU: {key}: {profile}");
    }
    assert_eq!(profile["tensor_core_tflops_by_stage"], serde_json::json!([]), "{profile}");
}

#[test]
fn tensor_cores_measures_nothing_on_the_cpu_and_rejects_a_malformed_shape() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_trainer")).args(["bench", "tensor-cores", "--backend", "flex", "--dtype", "f32"]).args(args).output().unwrap();
    let out = run(&["--rounds", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "the CPU has no tensor cores: {}", String::from_utf8_lossy(&out.stdout));
    let out = run(&["--cube-shapes", "64x128"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cube-shapes") && stderr.contains("expected three sizes MxNxK, found 2"), "{stderr}");
}

#[test]
fn the_composed_sampling_flag_samples_the_same_tokens_on_the_cpu_which_keeps_burns_operations() {
    let args = ["generate", "--batch", "3", "--prompt-len", "4", "--new-tokens", "5"];
    let plain = &bench(&args)[0];
    let flagged = &bench(&[&args[..], &["--composed-sampling"]].concat())[0];
    assert_eq!(plain["settings"]["composed_sampling"], false, "{plain}");
    assert_eq!(flagged["settings"]["composed_sampling"], true, "{flagged}");
    assert_eq!(plain["first_completion"], flagged["first_completion"], "{plain} {flagged}");
}

#[test]
fn varied_lengths_finish_rows_early_and_the_batch_halves() {
    let fixed = &bench(&["generate", "--batch", "8", "--prompt-len", "3", "--new-tokens", "16"])[0];
    let steps = fixed["decode_steps"].as_u64().unwrap();
    assert_eq!(steps, 15, "{fixed}");
    assert_eq!(fixed["generated_tokens"].as_u64(), Some(8 * 16), "{fixed}");
    assert_eq!(fixed["decoded_rows"].as_u64(), Some(8 * steps), "every row runs to the end: {fixed}");
    let varied = &bench(&["generate", "--batch", "8", "--prompt-len", "3", "--new-tokens", "16", "--varied-lengths"])[0];
    let (tokens, steps, rows) = (varied["generated_tokens"].as_u64().unwrap(), varied["decode_steps"].as_u64().unwrap(), varied["decoded_rows"].as_u64().unwrap());
    assert!((8 * 2..8 * 16).contains(&tokens), "budgets between 2 and 16: {varied}");
    assert!(rows < 8 * steps && rows >= tokens - 8, "the batch halved, yet every token was decoded: {varied}");
}

#[test]
fn sampled_tokens_repeat_at_a_seed_and_change_with_steering() {
    // Sampled at temperature 1 with the seed's uniforms: greedy decoding of random weights repeats
    // one token, which a small steering vector does not move.
    let sampled = ["generate", "--batch", "3", "--prompt-len", "4", "--new-tokens", "8"];
    let tokens = |extra: &[&str]| {
        let report = &bench(&[&sampled[..], extra].concat())[0];
        let ids: Vec<u64> = report["first_completion"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
        assert_eq!(ids.len(), 8, "{report}");
        ids
    };
    let base = tokens(&[]);
    assert_eq!(tokens(&[]), base, "the same seed and settings generate the same tokens");
    assert_ne!(tokens(&["--steered"]), base, "a steering vector after every layer changes the sampled tokens");
}

#[test]
fn train_step_reports_every_setup() {
    for (setup, trainable) in [("steering", 3 * 64), ("lora", 3 * 4 * (128 + 64))] {
        let report = &bench(&["train-step", "--setup", setup, "--micro-batch", "2", "--seq-len", "9", "--repeats", "1"])[0];
        assert_eq!(report["trainable_parameters"].as_u64(), Some(trainable), "{report}");
        assert!(positive(&report["micro_step_secs"]) && positive(&report["tokens_per_sec"]), "{report}");
        assert_eq!(report["step_secs"].as_array().map(Vec::len), Some(1), "one time per timed micro-step: {report}");
        assert_eq!(report["warmup_secs"].as_array().map(Vec::len), Some(2), "two untimed micro-steps: {report}");
        let phases = ["gradient_secs", "clip_secs", "optimizer_secs", "sync_secs"].map(|k| report["phases"][k].as_f64().unwrap_or(-1.0));
        assert!(phases.iter().all(|&p| p >= 0.0), "{report}");
        let sum: f64 = phases.iter().sum();
        assert!((sum - report["micro_step_secs"].as_f64().unwrap_or(0.0)).abs() < 1e-9, "the phases add up to the step: {report}");
    }
    let full = &bench(&["train-step", "--setup", "full-model", "--micro-batch", "1", "--seq-len", "4", "--repeats", "1"])[0];
    assert!(full["trainable_parameters"].as_u64().unwrap() > 30_000, "{full}");
}

#[test]
fn kernels_time_every_product_form_and_fused_attention_matches_the_materialised_one() {
    let report = &bench(&["kernels", "--batch", "4", "--prompt-len", "12", "--micro-batch", "2", "--seq-len", "16", "--iterations", "2"])[0];
    let products = report["products"].as_array().unwrap();
    // 6 maps; at 4 rows: two layouts, the decode kernel, the weight on the left, and K split in
    // 4 and 16 (every K of the tiny model is a multiple of 16), and for gate_up_proj the gated
    // kernel; at 2 × 16 rows: the two layouts.
    assert_eq!(products.len(), 6 * (6 + 2) + 1, "{report}");
    let gated = products.iter().find(|p| p["form"] == "gated_kernel").expect("the gated kernel is timed");
    assert_eq!(gated["map"], "gate_up_proj", "{gated}");
    for p in products {
        assert!(positive(&p["ms"]) && positive(&p["tflops"]) && positive(&p["weight_gbps"]), "{p}");
        assert!(positive(&p["queue_ms"]) && p["queue_ms"].as_f64() <= p["ms"].as_f64(), "{p}");
        let rows = p["rows"].as_u64().unwrap();
        assert!(rows == 4 || rows == 32, "{p}");
    }
    let gate = products.iter().find(|p| p["map"] == "gate_up_proj").unwrap();
    assert_eq!((gate["inner"].as_u64(), gate["outer"].as_u64()), (Some(64), Some(128)), "{gate}");
    let checks = report["kernel_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4 + 6, "three tiled sizes, one off the tiles, and every map: {report}");
    for c in checks {
        for form in ["relative_difference", "bias_relative_difference", "gated_relative_difference"] {
            let d = c[form].as_f64().unwrap();
            assert!((0.0..1e-5).contains(&d), "the decode kernel's CPU path is burn's operations ({form}): {c}");
        }
    }
    let norms = report["norm_checks"].as_array().unwrap();
    assert_eq!(norms.len(), 3, "{report}");
    for c in norms {
        let d = c["relative_difference"].as_f64().unwrap();
        assert!((0.0..1e-5).contains(&d), "the norm kernel's CPU path is burn's operations: {c}");
    }
    let rotary = report["rotary_checks"].as_array().unwrap();
    assert_eq!(rotary.len(), 4, "q and k at a decode step and a prefill: {report}");
    for d in rotary {
        assert!((0.0..1e-5).contains(&d.as_f64().unwrap()), "the rotary kernel's CPU path is burn's operations: {report}");
    }
    let checks = report["attention_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "{report}");
    for c in checks {
        let d = c["relative_difference"].as_f64().unwrap();
        assert!((0.0..1e-5).contains(&d), "the attention kernel's CPU path is burn's operations in f32: {c}");
    }
    let samplers = report["sampler_checks"].as_array().unwrap();
    let cases: Vec<(u64, f64)> = samplers.iter().map(|c| (c["vocab"].as_u64().unwrap(), c["temperature"].as_f64().unwrap())).collect();
    assert_eq!(cases, [(400, 1.0), (400, 0.0), (400, 0.7), (1000, 1.0)], "{report}");
    for c in samplers {
        assert_eq!(c["misplaced"], 0, "{c}");
        assert!((0.0..1e-4).contains(&c["logprob_difference"].as_f64().unwrap()), "{c}");
    }
    let timings = report["attention_timings"].as_array().unwrap();
    let cases: Vec<(u64, u64)> = timings.iter().map(|t| (t["heads"].as_u64().unwrap(), t["keys"].as_u64().unwrap())).collect();
    assert_eq!(cases, [(2, 64), (2, 256), (2, 512), (4, 64), (4, 256), (4, 512)], "one and two query heads per kv head of the fixture: {report}");
    for t in timings {
        assert!(positive(&t["us"]) && positive(&t["kv_gbps"]) && t["recorded"] == false, "the CPU records no graphs: {t}");
    }
    let attention = &report["attention"];
    for key in ["prefill_fused_ms", "prefill_materialised_ms", "decode_fused_ms", "decode_materialised_ms", "decode_kernel_ms", "decode_composed_ms", "decode_graph_ms"] {
        assert!(positive(&attention[key]), "{key}: {attention}");
    }
    for key in ["prefill_relative_difference", "decode_relative_difference", "decode_kernel_relative_difference", "decode_composed_relative_difference", "decode_graph_relative_difference"] {
        let d = attention[key].as_f64().unwrap();
        assert!((0.0..1e-5).contains(&d), "{key} {d}: the fused kernel computes the same attention in f32");
    }
}

#[test]
fn kernels_with_checks_only_time_no_product_but_run_every_check() {
    let report = &bench(&["kernels", "--batch", "4", "--prompt-len", "12", "--micro-batch", "2", "--seq-len", "16", "--iterations", "1", "--checks-only"])[0];
    assert_eq!(report["products"].as_array().map(Vec::len), Some(0), "{report}");
    assert_eq!(report["settings"]["checks_only"], true, "{report}");
    let counts = ["kernel_checks", "norm_checks", "rotary_checks", "attention_checks", "sampler_checks", "attention_timings"].map(|k| report[k].as_array().map(Vec::len));
    assert_eq!(counts, [Some(10), Some(3), Some(4), Some(4), Some(4), Some(6)], "{report}");
    assert!(positive(&report["attention"]["decode_graph_ms"]), "{report}");
}

#[test]
fn rl_step_runs_on_one_and_two_workers() {
    let tokenizer = fixture("qwen2");
    let runs = bench(&[
        "rl-step", "--devices", "0,1", "--prompts", "3", "--generations", "2", "--prompt-len", "6", "--new-tokens", "3",
        "--micro-batch", "2", "--steps", "1", "--tokenizer", tokenizer.to_str().unwrap(),
    ]);
    // A line as each step ends, then a summary per worker count.
    assert_eq!(runs.len(), 4);
    assert_eq!((runs[0]["workers"].as_u64(), runs[1]["workers"].as_u64()), (Some(1), Some(2)));
    assert_eq!(runs[0]["step"], runs[2]["run"]["steps"][0]);
    let runs: Vec<&serde_json::Value> = runs.iter().filter(|l| l.get("run").is_some()).collect();
    assert_eq!(runs.len(), 2);
    for (run, workers) in runs.iter().zip([1, 2]) {
        assert_eq!(run["run"]["workers"], workers);
        let step = &run["run"]["steps"][0];
        assert_eq!(step["num_completion_tokens"], 3 * 2 * 3, "{step}");
        assert_eq!(step["num_workers"], workers);
        assert!(positive(&run["run"]["last_step_tokens_per_sec"]), "{run}");
    }
}
