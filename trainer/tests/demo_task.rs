//! The demo task, its tokenizer, pretraining, and the committed demo model.

use std::collections::BTreeSet;

use burn::tensor::{DType, Device};
use trainer::demo::pretrain::{self, Batch, DemoShape, PretrainConfig, Pretraining};
use trainer::demo::task::{self, Split, Style};
use trainer::demo::{committed_model_dir, tokenizer as demo_tokenizer};
use trainer::model::prompt::{GUIDANCE_PROMPT, PromptStyle};
use trainer::model::{self, ModelTokenizer};
use trainer::reward::{AnswerFormat, Verdict, verify};
use trainer::rollout::{self, GenerationRequest, SamplingParams};
use trainer::steering::Steering;

/// A model small enough to take a few steps in a test.
fn tiny_config(seed: u64) -> PretrainConfig {
    PretrainConfig {
        seed,
        steps: 10,
        batch_size: 8,
        learning_rate: 1e-2,
        warmup_steps: 0,
        shape: DemoShape {
            hidden_size: 16,
            num_layers: 1,
            num_heads: 2,
            num_kv_heads: 1,
            intermediate_size: 32,
            max_position_embeddings: 128,
        },
        train_rows: 200,
        test_rows: 20,
        ..PretrainConfig::default()
    }
}

#[test]
fn task_generation_is_deterministic_and_the_splits_never_overlap() {
    let train = task::distinct_problems(Split::Train, 11, 3000);
    assert_eq!(train, task::distinct_problems(Split::Train, 11, 3000));
    let test = task::distinct_problems(Split::Test, 11, 500);
    assert_eq!(test, task::distinct_problems(Split::Test, 11, 500));
    assert_ne!(test, task::distinct_problems(Split::Test, 12, 500));
    let train_texts: BTreeSet<String> = train.iter().map(|p| p.text()).collect();
    assert_eq!(train_texts.len(), train.len(), "train problems are distinct");
    assert!(test.iter().all(|p| !train_texts.contains(&p.text())));
    // The split is a property of the problem, so other seeds cannot overlap either.
    let other_seed = task::distinct_problems(Split::Train, 99, 3000);
    assert!(other_seed.iter().chain(&train).all(|p| Split::of(p) == Split::Train));
    assert!(test.iter().all(|p| Split::of(p) == Split::Test));
}

#[test]
fn every_careful_solution_verifies_and_the_other_styles_do_not() {
    for split in [Split::Train, Split::Test] {
        let problems = task::distinct_problems(split, 5, 400);
        for (problem, row) in problems.iter().zip(task::rows(split, 5, &problems)) {
            let careful = verify(&row.answer, &row.solution, AnswerFormat::QwenMath);
            assert!(careful.correct, "{row:?}: {careful:?}");
            assert_eq!(row.solution, problem.solution(Style::Careful));
            let unboxed = verify(&row.answer, &problem.solution(Style::Unboxed), AnswerFormat::QwenMath);
            assert_eq!(unboxed.verdict, Verdict::NoAnswer, "{row:?}");
            let hasty = verify(&row.answer, &problem.solution(Style::Hasty), AnswerFormat::QwenMath);
            assert_eq!(hasty.verdict, Verdict::Incorrect, "{row:?}");
        }
    }
}

#[test]
fn rows_round_trip_through_jsonl_in_the_benchmark_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.jsonl");
    let rows = task::rows(Split::Test, 2, &task::distinct_problems(Split::Test, 2, 30));
    task::write_jsonl(&path, &rows).unwrap();
    assert_eq!(task::read_jsonl(&path).unwrap(), rows);
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
    for key in ["id", "problem", "answer", "solution", "source"] {
        assert!(first[key].is_string(), "{key} in {first}");
    }
}

#[test]
fn the_tokenizer_round_trips_task_text_and_renders_the_chat_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = pretrain::write_task_and_tokenizer(&tiny_config(0), dir.path()).unwrap();
    let unk = tokenizer.token_id(demo_tokenizer::UNK).unwrap();
    for problem in task::distinct_problems(Split::Test, 0, 200) {
        for text in [problem.text(), problem.solution(Style::Careful), problem.solution(Style::Hasty)] {
            let ids = tokenizer.encode(&text, false).unwrap();
            assert!(!ids.contains(&unk), "{text:?} has unknown pieces");
            assert_eq!(tokenizer.decode(&ids, true).unwrap(), text);
        }
    }
    let problem = "Start with 7, add 5, then subtract 4. What is the result?";
    let prompt = PromptStyle::default().build(&tokenizer, problem).unwrap();
    assert_eq!(
        prompt.text,
        format!("<|im_start|>system\n{GUIDANCE_PROMPT}<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n")
    );
    // The guidance sentence is one token: 14 tokens of scaffolding around the problem's 16.
    assert_eq!(prompt.ids.len(), 14 + tokenizer.encode(problem, false).unwrap().len());
    assert_eq!(tokenizer.pad_token_id(), tokenizer.token_id(demo_tokenizer::ENDOFTEXT).unwrap());
}

#[test]
fn pretraining_from_the_same_seed_gives_bit_identical_weights_and_lowers_the_loss() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(3);
    let tokenizer = || ModelTokenizer::from_dir(dir.path()).unwrap();
    pretrain::write_task_and_tokenizer(&config, dir.path()).unwrap();
    let bytes = |run: &Pretraining| -> Vec<(String, Vec<u8>)> {
        let weights = run.weights().0.iter();
        weights.map(|(name, w)| (name.clone(), w.flat().into_data().bytes().to_vec())).collect()
    };
    let mut a = Pretraining::new(&config, tokenizer(), &device).unwrap();
    let mut b = Pretraining::new(&config, tokenizer(), &device).unwrap();
    let held_out: Batch = Pretraining::new(&tiny_config(4), tokenizer(), &device).unwrap().next_batch().unwrap();
    let loss = |run: &Pretraining| {
        let lm = run.model().unwrap();
        f64::from(pretrain::completion_loss(&lm, &held_out).unwrap().into_scalar::<f32>())
    };
    let before = loss(&a);
    for _ in 0..config.steps {
        let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
        assert_eq!(ra.loss.to_bits(), rb.loss.to_bits());
    }
    assert_eq!(bytes(&a), bytes(&b));
    let after = loss(&a);
    assert!(after < before - 0.3, "held-out loss {before} → {after}");
    let other = Pretraining::new(&tiny_config(5), tokenizer(), &device).unwrap();
    assert_ne!(bytes(&other), bytes(&Pretraining::new(&config, tokenizer(), &device).unwrap()));
}

#[test]
fn the_saved_model_directory_loads_like_any_hugging_face_model() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let config = PretrainConfig { steps: 1, ..tiny_config(1) };
    let mut run = Pretraining::new(&config, pretrain::write_task_and_tokenizer(&config, dir.path()).unwrap(), &device).unwrap();
    run.step().unwrap();
    run.save(dir.path()).unwrap();
    let lm = model::load(dir.path(), &device, DType::F32).unwrap();
    assert_eq!(lm.config.num_layers, 1);
    assert_eq!(lm.config.vocab_size, run.tokenizer().vocab_size());
    let tokenizer = ModelTokenizer::from_dir(dir.path()).unwrap();
    let (eos, pad) = (tokenizer.token_id(demo_tokenizer::IM_END).unwrap(), tokenizer.pad_token_id());
    assert_eq!(tokenizer.stop_token_ids(&lm.config.eos_token_ids), vec![eos, pad]);
    for (name, w) in &lm.named_weights().0 {
        let saved = &run.weights().0[name];
        assert_eq!(w.flat().into_data().bytes(), saved.flat().into_data().bytes(), "{name}");
    }
}

#[test]
fn the_committed_demo_model_answers_an_easy_problem_with_a_boxed_answer() {
    let dir = committed_model_dir();
    let device = Device::flex();
    let lm = model::load(&dir, &device, DType::F32).unwrap();
    let tokenizer = ModelTokenizer::from_dir(&dir).unwrap();
    let rows = task::read_jsonl(&dir.join("data/test.jsonl")).unwrap();
    assert!(rows.len() >= 200 && task::read_jsonl(&dir.join("data/train.jsonl")).unwrap().len() >= 2000);
    let easy = rows.iter().find(|r| r.problem.matches(", ").count() == 2).unwrap();
    let request = GenerationRequest {
        prompts: vec![PromptStyle::default().build(&tokenizer, &easy.problem).unwrap().ids],
        max_new_tokens: vec![pretrain::MAX_NEW_TOKENS],
        samples_per_prompt: 1,
        sampling: SamplingParams::greedy(),
        stop_token_ids: tokenizer.stop_token_ids(&lm.config.eos_token_ids),
        pad_token_id: tokenizer.pad_token_id(),
        max_batch_rows: 1,
        prompt_keys: None,
    };
    let generation = rollout::generate(&lm, &Steering::None, &[], &request, &indicatif::ProgressBar::hidden()).unwrap();
    let completion = &generation.completions[0];
    let text = tokenizer.decode(&completion.tokens, true).unwrap();
    assert!(completion.stopped, "{text:?}");
    let verdict = verify(&easy.answer, &text, AnswerFormat::QwenMath).verdict;
    assert!(text.contains("\\boxed{") && verdict != Verdict::NoAnswer, "{text:?}");
}

#[test]
fn the_committed_demo_model_can_solve_test_problems_but_does_not_reliably_choose_to() {
    let dir = committed_model_dir();
    let device = Device::flex();
    let lm = model::load(&dir, &device, DType::F32).unwrap();
    let tokenizer = ModelTokenizer::from_dir(&dir).unwrap();
    let rows = task::read_jsonl(&dir.join("data/test.jsonl")).unwrap();
    let acc = pretrain::sampled_accuracy(&lm, &Steering::None, &tokenizer, &rows[..40], 8, 1.0, 0).unwrap();
    assert!((0.08..0.5).contains(&acc.pass_at_1), "{acc:?}");
    assert!(acc.pass_at_k > 0.6 && acc.careful_accuracy > 0.5, "{acc:?}");
}
