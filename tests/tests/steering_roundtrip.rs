//! End to end: steering vectors written to disk in steerlab's format and in the reference
//! system's `.npy` format, read back, and used for generation, reproduce transformers' steered
//! greedy generations.

use std::path::PathBuf;

use burn::tensor::DType;
use indicatif::ProgressBar;
use trainer::device::Backend;
use trainer::model::{self, Weights};
use trainer::rollout::{GenerationRequest, SamplingParams, generate};
use trainer::steering::{Steering, SteeringFile, SteeringMetadata};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures").join(name)
}

#[test]
fn saved_and_imported_vectors_reproduce_transformers_steered_generation() {
    let dir = fixture("llama");
    let reference = Weights::from_files(&dir, &[dir.join("reference.safetensors")]).unwrap();
    let vectors = reference.f32_vec("steering_vectors", &[3, 64]).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let prompts: Vec<Vec<u32>> = serde_json::from_value(json["prompt_ids"].clone()).unwrap();
    let expected: Vec<Vec<u32>> = serde_json::from_value(json["steered_greedy"].clone()).unwrap();

    let out = tempfile::tempdir().unwrap();
    let native = out.path().join("vectors.safetensors");
    let file = SteeringFile {
        num_layers: 3,
        hidden_size: 64,
        vectors: vectors.clone(),
        metadata: SteeringMetadata { model: "llama fixture".into(), layers: vec![0, 1, 2], setup: "steering".into(), step: 1, seed: 0, place: None },
    };
    file.save(&native).unwrap();
    let npy = out.path().join("vectors.npy");
    std::fs::write(&npy, file.to_npy()).unwrap();

    let device = Backend::Flex.device().unwrap();
    let lm = model::load(&dir, &device, DType::F32).unwrap();
    for path in [native, npy] {
        let loaded = SteeringFile::load(&path).unwrap();
        loaded.check_shape(&path, 3, 64).unwrap();
        assert_eq!(loaded.vectors, vectors, "{}", path.display());
        let steering = Steering::per_layer(loaded.vectors, 3, 64, &device).unwrap();
        let request = GenerationRequest {
            max_new_tokens: vec![expected[0].len(); prompts.len()],
            prompts: prompts.clone(),
            samples_per_prompt: 1,
            sampling: SamplingParams::greedy(),
            stop_token_ids: Vec::new(),
            pad_token_id: 0,
            max_batch_rows: 2,
            prompt_keys: None,
        };
        let generation = generate(&lm, &steering, &[], &request, &ProgressBar::hidden()).unwrap();
        let tokens: Vec<Vec<u32>> = generation.completions.into_iter().map(|c| c.tokens).collect();
        assert_eq!(tokens, expected, "{}", path.display());
    }
}
