//! Bad inputs give errors that name the file and the problem (never a panic).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use burn::tensor::DType;
use common::{device, fixture};
use safetensors::tensor::{Dtype, TensorView};
use trainer::model::prompt::{PromptStyle, TemplateType};
use trainer::model::{self, ModelTokenizer};
use trainer::steering::{SteeringFile, SteeringMetadata};

/// A copy of the qwen2 fixture in a temporary directory.
fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture("qwen2")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn load_error(dir: &Path) -> String {
    model::load(dir, &device(), DType::F32).unwrap_err().to_string()
}

/// Rewrites model.safetensors with `edit` applied to the tensor list.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

#[test]
fn a_missing_weights_file_is_named() {
    let dir = copy_fixture();
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("model.safetensors") && err.contains("no model.safetensors"), "{err}");
}

#[test]
fn a_truncated_weights_file_is_reported_as_such() {
    let dir = copy_fixture();
    let path = dir.path().join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");
    fs::write(&path, &bytes[..4]).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("invalid safetensors"), "{err}");
}

#[test]
fn a_tensor_with_the_wrong_shape_names_tensor_and_shapes() {
    let dir = copy_fixture();
    rewrite_weights(dir.path(), |t| {
        let q = t.iter_mut().find(|x| x.0 == "model.layers.1.self_attn.q_proj.weight").unwrap();
        q.2 = vec![32, 128];
    });
    let err = load_error(dir.path());
    assert!(err.contains("model.layers.1.self_attn.q_proj.weight") && err.contains("[64, 64]") && err.contains("[32, 128]"), "{err}");
}

#[test]
fn a_tensor_with_an_integer_dtype_is_rejected() {
    let dir = copy_fixture();
    rewrite_weights(dir.path(), |t| {
        let n = t.iter_mut().find(|x| x.0 == "model.norm.weight").unwrap();
        n.1 = Dtype::I32;
    });
    let err = load_error(dir.path());
    assert!(err.contains("model.norm.weight") && err.contains("I32"), "{err}");
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = copy_fixture();
    rewrite_weights(dir.path(), |t| t.retain(|x| x.0 != "model.layers.2.mlp.up_proj.weight"));
    let err = load_error(dir.path());
    assert!(err.contains("model.layers.2.mlp.up_proj.weight") && err.contains("missing"), "{err}");
}

#[test]
fn an_unknown_architecture_lists_the_supported_ones() {
    let dir = copy_fixture();
    let path = dir.path().join("config.json");
    let text = fs::read_to_string(&path).unwrap().replace("Qwen2ForCausalLM", "GPT2LMHeadModel");
    fs::write(&path, text).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("GPT2LMHeadModel") && err.contains("Olmo2ForCausalLM"), "{err}");
}

#[test]
fn a_config_missing_a_key_names_it() {
    let dir = copy_fixture();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("num_hidden_layers");
    fs::write(&path, config.to_string()).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("config.json") && err.contains("num_hidden_layers"), "{err}");
    fs::write(&path, "{ not json").unwrap();
    assert!(load_error(dir.path()).contains("not valid JSON"));
}

#[test]
fn a_missing_chat_template_is_an_error_only_where_one_is_required() {
    let dir = copy_fixture();
    fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    let tokenizer = ModelTokenizer::from_dir(dir.path()).unwrap();
    let err = tokenizer.apply_chat_template(&[model::ChatMessage::new("user", "hi")], true).unwrap_err();
    assert!(err.to_string().contains("no chat template"), "{err}");
    // The plain templates of the reference need none.
    let plain = PromptStyle { template: TemplateType::R1, append_to: false }.build(&tokenizer, "What is 1+1?").unwrap();
    assert!(plain.text.ends_with("User: What is 1+1?\nAssistant: <think>"), "{}", plain.text);
}

#[test]
fn a_chat_template_inside_tokenizer_config_is_used() {
    let dir = copy_fixture();
    let template = fs::read_to_string(dir.path().join("chat_template.jinja")).unwrap();
    fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    let path = dir.path().join("tokenizer_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config["chat_template"] = serde_json::Value::String(template);
    fs::write(&path, config.to_string()).unwrap();
    let from_config = ModelTokenizer::from_dir(dir.path()).unwrap();
    let original = ModelTokenizer::from_dir(&fixture("qwen2")).unwrap();
    let messages = [model::ChatMessage::new("user", "hi")];
    assert_eq!(
        from_config.apply_chat_template(&messages, true).unwrap(),
        original.apply_chat_template(&messages, true).unwrap()
    );
}

#[test]
fn a_steering_file_of_the_wrong_shape_says_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.safetensors");
    SteeringFile::zeros(4, 64, SteeringMetadata::default()).save(&path).unwrap();
    let file = SteeringFile::load(&path).unwrap();
    let err = file.check_shape(&path, 3, 64).unwrap_err().to_string();
    assert!(err.contains("v.safetensors") && err.contains("[4, 64]") && err.contains("[3, 64]"), "{err}");
    fs::write(&path, b"garbage").unwrap();
    assert!(SteeringFile::load(&path).unwrap_err().to_string().contains("v.safetensors"));
}

#[test]
fn a_garbage_tokenizer_is_reported_with_its_path() {
    let dir = copy_fixture();
    fs::write(dir.path().join("tokenizer.json"), "{\"not\": \"a tokenizer\"}").unwrap();
    let err = ModelTokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
