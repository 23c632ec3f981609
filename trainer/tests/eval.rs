//! End-to-end evaluation on the tiny Qwen2 fixture (CPU): results the viewer's readers load,
//! shard + merge equal to one run, resume after an interrupted run, skipping complete results.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::DType;
use indicatif::ProgressBar;
use shared::eval::{EvalContext, EvalRecord, EvalSummary, read_records};
use shared::results::ResultsIndex;
use trainer::data::Problem;
use trainer::eval::{self, BenchmarkJob, EvalModel, EvalSettings, Shard};
use trainer::model::prompt::PromptStyle;
use trainer::model::{self, CausalLm, ModelTokenizer};
use trainer::steering::Steering;

struct Fixture {
    lm: CausalLm,
    tokenizer: ModelTokenizer,
}

impl Fixture {
    fn load() -> Self {
        let dir = common::fixture("qwen2");
        Self {
            lm: model::load(&dir, &common::device(), DType::F32).expect("fixture model"),
            tokenizer: ModelTokenizer::from_dir(&dir).expect("fixture tokenizer"),
        }
    }

    fn model<'a>(&'a self, steering: &'a Steering) -> EvalModel<'a> {
        EvalModel { lm: &self.lm, tokenizer: &self.tokenizer, steering, interventions: &[] }
    }
}

/// Short problems (the fixture model has 256 positions); the second answer is one the random
/// model cannot produce, the others are never checked by value.
fn problems(n: usize) -> Vec<Problem> {
    (0..n)
        .map(|i| Problem { index: i, problem: format!("What is {i} + {i}?"), answer: format!("{}", 2 * i), solution: String::new() })
        .collect()
}

fn settings(temperature: f64, shard: Shard) -> EvalSettings {
    EvalSettings {
        context: EvalContext { model: "tiny-qwen2".into(), dataset: "base".into(), setup: "base".into(), ..Default::default() },
        seed: 3,
        temperature,
        top_p: 1.0,
        top_k: None,
        max_seq_length: 256,
        max_new_tokens: Some(12),
        prompt_style: PromptStyle::default(),
        batch_rows: 8,
        save_text: true,
        shard,
        stop_token: None,
    }
}

fn run(f: &Fixture, bench: &str, problems: &[Problem], samples: usize, s: &EvalSettings, root: &Path) -> eval::BenchmarkOutcome {
    let steering = Steering::None;
    let job = BenchmarkJob { id: bench, problems, samples };
    eval::evaluate_benchmark(&f.model(&steering), &job, s, &s.output_dir(root), &ProgressBar::hidden()).expect("evaluation")
}

fn records(path: &Path) -> Vec<EvalRecord> {
    let read = read_records(&std::fs::read(path).expect("records file"), "records");
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    read.records
}

fn records_of(text: &str) -> Vec<EvalRecord> {
    read_records(text.as_bytes(), "records").records
}

/// Equal records, up to the float rounding that depends on how rows are batched (padding changes
/// the shapes of the matrix products): same tokens, verdicts and stops; log-probabilities within
/// 1e-5 relative.
fn assert_same_records(a: &[EvalRecord], b: &[EvalRecord]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!((x.id, &x.prompt, &x.answer, x.samples.len()), (y.id, &y.prompt, &y.answer, y.samples.len()));
        for (s, t) in x.samples.iter().zip(&y.samples) {
            assert_eq!((&s.text, s.num_tokens, s.correct, s.finished_with_stop), (&t.text, t.num_tokens, t.correct, t.finished_with_stop));
            assert!((s.logprob - t.logprob).abs() <= 1e-5 * t.logprob.abs(), "{} vs {}", s.logprob, t.logprob);
        }
    }
}

/// Every file below `root` as (relative path, bytes), as the viewer hands them to `shared`.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("below root").to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read(&p).expect("file")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn an_evaluation_writes_records_and_summaries_that_the_viewer_readers_load() {
    let f = Fixture::load();
    let root = tempfile::tempdir().unwrap();
    let s = settings(1.0, Shard::WHOLE);
    let ps = problems(3);
    let a = run(&f, "aime24", &ps, 4, &s, root.path());
    let m = run(&f, "math500", &problems(5), 1, &s, root.path());
    assert!(!a.skipped && a.generated_problems == 3 && a.generated_tokens > 0);
    let dir = s.output_dir(root.path());
    assert!(dir.ends_with("tiny-qwen2/base/temp_1.0_top_p_1.0/eval_seed-3"), "{}", dir.display());
    let recs = records(&dir.join("aime24.jsonl"));
    assert_eq!(recs.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2]);
    for (r, p) in recs.iter().zip(&ps) {
        assert_eq!(r.answer, p.answer);
        assert!(r.prompt.contains(&p.problem) && r.prompt.starts_with("<|im_start|>system"), "{}", r.prompt);
        assert_eq!(r.samples.len(), 4);
        for smp in &r.samples {
            assert!(smp.num_tokens >= 1 && smp.num_tokens <= 12);
            assert!(smp.finished_with_stop || smp.num_tokens == 12);
            assert!(smp.logprob < 0.0 && smp.text.is_some());
        }
    }
    // The summary is the shared computation over the records.
    assert_eq!(a.summary, EvalSummary::from_records("aime24", s.context.clone(), 3, 1.0, 1.0, &recs));
    assert_eq!((a.summary.num_problems, a.summary.samples_per_problem, a.summary.num_samples), (3, 4, 12));
    // What the viewer reads: both summaries with their context, records listed, no problem.
    let files = files(root.path());
    let index = ResultsIndex::from_files(files.iter().map(|(p, b)| (p.clone(), b.as_slice())));
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    assert_eq!(index.summaries.len(), 2);
    assert_eq!(index.record_files.len(), 2);
    let read: Vec<&EvalSummary> = index.summaries.values().collect();
    assert!(read.contains(&&a.summary) && read.contains(&&m.summary));
    // ... and aggregates them into a table row for the base model.
    let runs = shared::aggregate::group_summaries(index.summaries.values());
    let table = shared::aggregate::accuracy_table(&runs, shared::aggregate::Metric::Accuracy);
    assert_eq!(table.rows.len(), 1);
    assert_eq!((table.rows[0].model.as_str(), table.rows[0].setup.as_str()), ("tiny-qwen2", "Base τ=1"));
    assert_eq!(table.rows[0].cells["aime24"].mean, 100.0 * a.summary.avg_at_n);
}

#[test]
fn shards_merged_equal_one_unsharded_greedy_run() {
    let f = Fixture::load();
    let ps = problems(5);
    let whole_root = tempfile::tempdir().unwrap();
    let whole = settings(0.0, Shard::WHOLE);
    run(&f, "math500", &ps, 1, &whole, whole_root.path());
    let shard_root = tempfile::tempdir().unwrap();
    for index in 0..2 {
        let s = settings(0.0, Shard { index, count: 2 });
        let out = run(&f, "math500", &ps, 1, &s, shard_root.path());
        assert_eq!(out.summary.num_problems, if index == 0 { 3 } else { 2 });
    }
    let dir = whole.output_dir(shard_root.path());
    assert!(!dir.join("math500.summary.json").exists(), "a shard must not write the benchmark's summary");
    let merged = eval::merge_shards(shard_root.path(), true).expect("merge");
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].shards, 2);
    let whole_dir = whole.output_dir(whole_root.path());
    let summary = |d: &Path| std::fs::read_to_string(d.join("math500.summary.json")).unwrap();
    assert_eq!(summary(&whole_dir), summary(&dir));
    assert_same_records(&records(&whole_dir.join("math500.jsonl")), &records(&dir.join("math500.jsonl")));
    let left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left.len(), 2, "shard files are removed: {left:?}");
}

#[test]
fn merging_refuses_missing_unfinished_and_duplicated_shards() {
    let f = Fixture::load();
    let ps = problems(4);
    let root = tempfile::tempdir().unwrap();
    let dir = settings(0.0, Shard::WHOLE).output_dir(root.path());
    let s0 = Shard { index: 0, count: 2 };
    let s1 = Shard { index: 1, count: 2 };
    run(&f, "math500", &ps, 1, &settings(0.0, s0), root.path());
    let e = eval::merge_shards(root.path(), false).unwrap_err().to_string();
    assert!(e.contains("math500: incomplete: shard(s) 1 of 2 missing"), "{e}");
    run(&f, "math500", &ps, 1, &settings(0.0, s1), root.path());
    // An unfinished shard: records without its shard summary.
    let summary1 = dir.join(s1.summary_name("math500"));
    let saved = std::fs::read(&summary1).unwrap();
    std::fs::remove_file(&summary1).unwrap();
    let e = eval::merge_shards(root.path(), false).unwrap_err().to_string();
    assert!(e.contains("incomplete: shard 1 of 2 has not finished"), "{e}");
    // Duplicated indices: shard 1's files replaced by shard 0's.
    std::fs::copy(dir.join(s0.records_name("math500")), dir.join(s1.records_name("math500"))).unwrap();
    std::fs::copy(dir.join(s0.summary_name("math500")), &summary1).unwrap();
    let e = eval::merge_shards(root.path(), false).unwrap_err().to_string();
    assert!(e.contains("duplicated problem indices 0, 2"), "{e}");
    assert!(!dir.join("math500.summary.json").exists());
    // Run again, shard 1 replaces the foreign records and the merge succeeds.
    let redone = run(&f, "math500", &ps, 1, &settings(0.0, s1), root.path());
    assert_eq!((redone.resumed, redone.generated_problems), (0, 2));
    assert_eq!(std::fs::read(&summary1).unwrap(), saved);
    // Shards of another total are refused.
    assert_eq!(eval::merge_shards(root.path(), false).unwrap()[0].summary.num_problems, 4);
    run(&f, "math500", &ps, 1, &settings(0.0, Shard { index: 0, count: 3 }), root.path());
    let e = eval::merge_shards(root.path(), false).unwrap_err().to_string();
    assert!(e.contains("shards of different totals {2, 3}"), "{e}");
}

#[test]
fn an_interrupted_evaluation_resumes_and_complete_results_are_skipped() {
    let f = Fixture::load();
    let ps = problems(5);
    let root = tempfile::tempdir().unwrap();
    let s = settings(0.0, Shard::WHOLE);
    let first = run(&f, "math500", &ps, 1, &s, root.path());
    let dir = s.output_dir(root.path());
    let jsonl = dir.join("math500.jsonl");
    let summary = dir.join("math500.summary.json");
    let complete = std::fs::read_to_string(&jsonl).unwrap();
    let complete_summary = std::fs::read_to_string(&summary).unwrap();
    // Complete: skipped, nothing rewritten.
    let again = run(&f, "math500", &ps, 1, &s, root.path());
    assert!(again.skipped && again.generated_problems == 0);
    assert_eq!(again.summary, first.summary);
    // A killed run: no summary, two whole lines and half of the third.
    let lines: Vec<&str> = complete.lines().collect();
    std::fs::write(&jsonl, format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..lines[2].len() / 2])).unwrap();
    std::fs::remove_file(&summary).unwrap();
    let resumed = run(&f, "math500", &ps, 1, &s, root.path());
    assert_eq!((resumed.skipped, resumed.resumed, resumed.generated_problems), (false, 2, 3));
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), complete_summary);
    let after = records(&jsonl);
    assert_eq!(after[..2], records_of(&complete)[..2], "kept records are kept as they were");
    assert_same_records(&after, &records_of(&complete));
    // Records that no longer fit (another number of samples) are generated again.
    let sampled = settings(1.0, Shard::WHOLE);
    run(&f, "aime24", &ps, 2, &sampled, root.path());
    let redo = run(&f, "aime24", &ps, 3, &sampled, root.path());
    assert_eq!((redo.resumed, redo.generated_problems, redo.summary.samples_per_problem), (0, 5, 3));
}

#[test]
fn steering_changes_the_completions_and_a_prompt_too_long_is_a_clear_error() {
    let f = Fixture::load();
    let ps = problems(2);
    let root = tempfile::tempdir().unwrap();
    let s = settings(0.0, Shard::WHOLE);
    let base = run(&f, "math500", &ps, 1, &s, root.path());
    let (layers, hidden) = (f.lm.config.num_layers, f.lm.config.hidden_size);
    let steering = Steering::per_layer(vec![3.0; layers * hidden], layers, hidden, &f.lm.device).unwrap();
    let steered_settings = EvalSettings {
        context: EvalContext { setup: "steering".into(), dataset: "d".into(), run: "r".into(), checkpoint: Some(1), ..s.context.clone() },
        ..s.clone()
    };
    let job = BenchmarkJob { id: "math500", problems: &ps, samples: 1 };
    let dir = steered_settings.output_dir(root.path());
    assert!(dir.ends_with("tiny-qwen2/d/steering/r/checkpoint-1/temp_0.0_top_p_1.0/eval_seed-3"));
    let steered = eval::evaluate_benchmark(&f.model(&steering), &job, &steered_settings, &dir, &ProgressBar::hidden()).unwrap();
    let texts = |p: &PathBuf| records(p).into_iter().map(|r| r.samples[0].text.clone()).collect::<Vec<_>>();
    assert_ne!(texts(&base.records_path), texts(&steered.records_path));
    let long = vec![Problem { index: 0, problem: "x ".repeat(300), answer: "1".into(), solution: String::new() }];
    let job = BenchmarkJob { id: "long", problems: &long, samples: 1 };
    let e = eval::evaluate_benchmark(&f.model(&Steering::None), &job, &s, &dir, &ProgressBar::hidden()).unwrap_err().to_string();
    assert!(e.starts_with("long problem 0: the prompt has") && e.contains("max_seq_length is 256"), "{e}");
    assert!(!dir.join("long.jsonl").exists());
}

#[test]
fn an_at_place_vector_file_steers_that_place() {
    let f = Fixture::load();
    let dir = tempfile::tempdir().unwrap();
    let hidden = f.lm.config.hidden_size;
    let metadata = trainer::steering::SteeringMetadata { place: Some("model.layers.1.mlp".into()), ..Default::default() };
    let mut file = trainer::steering::SteeringFile::zeros(1, hidden, metadata);
    file.vectors.iter_mut().enumerate().for_each(|(i, x)| *x = (i % 3) as f32 - 1.0);
    let path = dir.path().join("place.safetensors");
    file.save(&path).unwrap();
    let (steering, read) = eval::load_steering(&path, &f.lm).unwrap();
    assert_eq!(read.metadata.place.as_deref(), Some("model.layers.1.mlp"));
    let (place, vector) = steering.place_vector().expect("an at-place steering");
    assert_eq!((place.to_string().as_str(), vector.dims()), ("model.layers.1.mlp", [hidden]));
    // A per-layer file of the wrong shape is refused with both shapes.
    let wrong = dir.path().join("wrong.safetensors");
    trainer::steering::SteeringFile::zeros(2, hidden, Default::default()).save(&wrong).unwrap();
    let e = eval::load_steering(&wrong, &f.lm).unwrap_err().to_string();
    assert!(e.contains("wrong.safetensors"), "{e}");
    // Evaluated, it changes the greedy completions.
    let ps = problems(2);
    let s = settings(0.0, Shard::WHOLE);
    let base = run(&f, "math500", &ps, 1, &s, dir.path());
    let job = BenchmarkJob { id: "math500", problems: &ps, samples: 1 };
    let out = dir.path().join("place");
    let steered = eval::evaluate_benchmark(&f.model(&steering), &job, &s, &out, &ProgressBar::hidden()).unwrap();
    let texts = |p: &PathBuf| records(p).into_iter().map(|r| r.samples[0].text.clone()).collect::<Vec<_>>();
    assert_ne!(texts(&base.records_path), texts(&steered.records_path));
}

#[test]
fn a_configured_stop_token_ends_completions_and_must_be_one_token() {
    let f = Fixture::load();
    let ps = problems(1);
    let plain_root = tempfile::tempdir().unwrap();
    let plain = run(&f, "gsm8k", &ps, 1, &settings(0.0, Shard::WHOLE), plain_root.path());
    let first = &records(&plain.records_path)[0].samples[0];
    let text = first.text.clone().unwrap();
    // A token of the greedy completion, past its start, that is one token on its own.
    let ids = f.tokenizer.encode(&text, false).unwrap();
    let stop = ids[2..]
        .iter()
        .map(|&id| f.tokenizer.decode(&[id], false).unwrap())
        .find(|t| f.tokenizer.encode(t, false).unwrap().len() == 1)
        .expect("a single-token piece of the completion");
    let root = tempfile::tempdir().unwrap();
    let stopped = run(&f, "gsm8k", &ps, 1, &EvalSettings { stop_token: Some(stop.clone()), ..settings(0.0, Shard::WHOLE) }, root.path());
    let sample = &records(&stopped.records_path)[0].samples[0];
    assert!(sample.finished_with_stop, "{stop:?} did not stop {text:?}");
    assert!(sample.num_tokens < first.num_tokens, "{} vs {}", sample.num_tokens, first.num_tokens);
    assert!(sample.text.as_deref().unwrap().ends_with(&stop));
    let job = BenchmarkJob { id: "gsm8k", problems: &ps, samples: 1 };
    let bad = EvalSettings { stop_token: Some("two words".into()), ..settings(0.0, Shard::WHOLE) };
    let steering = Steering::None;
    let err = eval::evaluate_benchmark(&f.model(&steering), &job, &bad, &bad.output_dir(root.path()), &ProgressBar::hidden()).unwrap_err();
    assert!(err.to_string().contains("must encode to exactly one token"), "{err}");
}
