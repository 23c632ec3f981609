//! Helpers shared by the integration tests: fixture paths, the backend under test, comparisons.
#![allow(dead_code, missing_docs)]

use std::path::PathBuf;

use burn::tensor::Device;
use trainer::device::Backend;
use trainer::model::Weights;

/// `trainer/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The architectures with fixtures.
pub const ARCHS: [&str; 3] = ["qwen2", "llama", "olmo2"];

/// The backend under test: `STEERLAB_TEST_BACKEND` (flex, wgpu, vulkan), flex by default.
pub fn device() -> Device {
    let backend = match std::env::var("STEERLAB_TEST_BACKEND").as_deref() {
        Ok("wgpu") => Backend::Wgpu,
        Ok("vulkan") => Backend::Vulkan,
        _ => Backend::Flex,
    };
    backend.device().expect("test backend")
}

/// The reference tensors and JSON written by make_fixtures.py.
pub struct Reference {
    pub tensors: Weights,
    pub json: serde_json::Value,
}

impl Reference {
    pub fn load(name: &str) -> Self {
        let dir = fixture(name);
        let tensors = Weights::from_files(&dir, &[dir.join("reference.safetensors")]).expect("reference.safetensors");
        let json = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"))
            .expect("reference.json is JSON");
        Self { tensors, json }
    }

    pub fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let shape = self.tensors.entry(name).expect(name).shape;
        let values = self.tensors.f32_vec(name, &shape).expect(name);
        (shape, values)
    }

    pub fn ids(&self, key: &str) -> Vec<Vec<u32>> {
        serde_json::from_value(self.json[key].clone()).expect(key)
    }
}

/// max |a − b| / max |b|.
pub fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE);
    let diff = actual.iter().zip(expected).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Reads a tensor back as f32.
pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().convert_dtype(burn::tensor::DType::F32).try_to_vec().expect("f32 data")
}
