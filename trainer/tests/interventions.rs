//! Each intervention changes exactly what it names, checked on the tiny fixtures by comparing
//! against an equivalent plain steering configuration and against the layers it must not touch.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use burn::tensor::{DType, Int, Tensor, TensorData};
use common::{Reference, device, fixture, relative_error, values};
use trainer::model::{self, BatchLayout, CausalLm};
use trainer::steering::Steering;
use trainer::steering::intervention::{Intervention, LayerInputPatch, Place, Projection, Site};

struct Case {
    lm: CausalLm,
    ids: Vec<u32>,
    vectors: Vec<f32>,
}

impl Case {
    fn new(name: &str) -> Self {
        let lm = model::load(&fixture(name), &device(), DType::F32).unwrap();
        let reference = Reference::load(name);
        let ids = reference.ids("prompt_ids")[1].clone();
        let (_, vectors) = reference.tensor("steering_vectors");
        Self { lm, ids, vectors }
    }

    fn h(&self) -> usize {
        self.lm.config.hidden_size
    }

    fn steering(&self, rows: &[Vec<f32>]) -> Steering {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Steering::per_layer(flat, self.lm.config.num_layers, self.h(), &self.lm.device).unwrap()
    }

    fn trained(&self) -> Steering {
        self.steering(&self.rows())
    }

    fn rows(&self) -> Vec<Vec<f32>> {
        self.vectors.chunks(self.h()).map(<[f32]>::to_vec).collect()
    }

    /// (logits of every position, residual stream after every layer).
    fn run(&self, steering: &Steering, interventions: &[Intervention]) -> (Vec<f32>, Vec<Vec<f32>>) {
        let tokens: Vec<i64> = self.ids.iter().map(|&x| i64::from(x)).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, self.ids.len()]), &self.lm.device);
        let mut all = interventions.to_vec();
        all.push(Intervention::RecordHiddenStates);
        let out = self.lm.forward(tokens, &BatchLayout { pads: vec![0] }, None, steering, &all).unwrap();
        let hidden = out.hidden_states.into_iter().map(values).collect();
        (values(self.lm.logits(out.hidden)), hidden)
    }
}

fn same(a: &[f32], b: &[f32]) -> bool {
    relative_error(a, b) < 1e-5
}

#[test]
fn scaling_multiplies_every_vector() {
    let c = Case::new("qwen2");
    let doubled: Vec<Vec<f32>> = c.rows().iter().map(|r| r.iter().map(|x| 2.0 * x).collect()).collect();
    let (scaled, _) = c.run(&c.trained(), &[Intervention::ScaleVectors(2.0)]);
    assert!(same(&scaled, &c.run(&c.steering(&doubled), &[]).0));
    let (zeroed, _) = c.run(&c.trained(), &[Intervention::ScaleVectors(0.0)]);
    assert!(same(&zeroed, &c.run(&Steering::None, &[]).0));
    assert!(!same(&scaled, &zeroed));
}

#[test]
fn keeping_layers_zeroes_the_others_and_leaves_earlier_layers_alone() {
    let c = Case::new("qwen2");
    let mut rows = c.rows();
    rows[0].fill(0.0);
    rows[2].fill(0.0);
    let (kept, kept_hidden) = c.run(&c.trained(), &[Intervention::KeepLayers(BTreeSet::from([1]))]);
    assert!(same(&kept, &c.run(&c.steering(&rows), &[]).0));
    let (_, base_hidden) = c.run(&Steering::None, &[]);
    assert!(same(&kept_hidden[0], &base_hidden[0]), "layer 0 is untouched");
    assert!(!same(&kept_hidden[1], &base_hidden[1]), "layer 1 is steered");
}

#[test]
fn replacing_a_vector_changes_that_layer_only() {
    let c = Case::new("llama");
    let new: Vec<f32> = (0..c.h()).map(|i| (i as f32 * 0.1).cos()).collect();
    let mut rows = c.rows();
    rows[2] = new.clone();
    let (replaced, hidden) = c.run(&c.trained(), &[Intervention::ReplaceVector { layer: 2, vector: new }]);
    assert!(same(&replaced, &c.run(&c.steering(&rows), &[]).0));
    let (_, trained_hidden) = c.run(&c.trained(), &[]);
    assert!(same(&hidden[1], &trained_hidden[1]) && !same(&hidden[2], &trained_hidden[2]));
}

#[test]
fn adding_at_the_mlp_is_steering_and_other_places_act_later_in_the_layer() {
    for name in ["qwen2", "olmo2"] {
        let c = Case::new(name);
        let v = c.rows()[1].clone();
        let mut rows = vec![vec![0.0; c.h()]; c.lm.config.num_layers];
        rows[1] = v.clone();
        let at = |site| Intervention::AddAt { place: Place { layer: 1, site }, vector: v.clone() };
        let (mlp, _) = c.run(&Steering::None, &[at(Site::Mlp)]);
        assert!(same(&mlp, &c.run(&c.steering(&rows), &[]).0), "{name}: mlp place == layer-1 steering");
        let (_, base_hidden) = c.run(&Steering::None, &[]);
        let (_, attn_hidden) = c.run(&Steering::None, &[at(Site::SelfAttn)]);
        assert!(same(&attn_hidden[0], &base_hidden[0]) && !same(&attn_hidden[1], &base_hidden[1]));
    }
    let c = Case::new("olmo2");
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2], [1, 2]), &c.lm.device);
    let bad = Intervention::AddAt { place: "1.input_layernorm".parse().unwrap(), vector: vec![0.0; c.h()] };
    let err = c.lm.forward(tokens, &BatchLayout { pads: vec![0] }, None, &Steering::None, &[bad]).unwrap_err();
    assert!(err.to_string().contains("no `input_layernorm`"), "{err}");
}

#[test]
fn layer_input_patches_route_the_previous_layers_vector() {
    let c = Case::new("llama");
    let k = 2;
    let patch = |patch| [Intervention::PatchLayerInput { layer: k, patch }];
    let (trained, trained_hidden) = c.run(&c.trained(), &[]);
    let mut dropped = c.rows();
    let s = std::mem::replace(&mut dropped[k - 1], vec![0.0; c.h()]);
    let (base, base_hidden) = c.run(&c.steering(&dropped), &[]);

    let (no_patch, _) = c.run(&c.trained(), &patch(LayerInputPatch::NoPatch));
    assert!(same(&no_patch, &trained), "no_patch is ordinary steering");
    let (as_base, _) = c.run(&c.trained(), &patch(LayerInputPatch::Base));
    assert!(same(&as_base, &base), "base drops the vector");

    // skip_layer: layer k runs unsteered, then s is added after it.
    let (_, skip_hidden) = c.run(&c.trained(), &patch(LayerInputPatch::SkipLayer));
    assert!(same(&skip_hidden[k - 1], &base_hidden[k - 1]));
    let expected: Vec<f32> = base_hidden[k]
        .chunks(c.h())
        .flat_map(|row| row.iter().zip(&s).map(|(a, b)| a + b).collect::<Vec<_>>())
        .collect();
    assert!(same(&skip_hidden[k], &expected), "skip_layer adds s after the layer");

    // skip_attn and head patches lie strictly between base and full steering.
    let mut outputs = vec![trained.clone(), base.clone()];
    for p in [
        LayerInputPatch::SkipAttention,
        LayerInputPatch::RemoveHead { projection: Projection::Q, head: 0 },
        LayerInputPatch::RemoveHead { projection: Projection::Q, head: 3 },
        LayerInputPatch::KeepHead { projection: Projection::K, head: 1 },
        LayerInputPatch::KeepHead { projection: Projection::V, head: 0 },
        LayerInputPatch::RemoveProjection(Projection::V),
        LayerInputPatch::KeepProjection(Projection::V),
    ] {
        let (out, hidden) = c.run(&c.trained(), &patch(p));
        assert!(same(&hidden[k - 1], &base_hidden[k - 1]), "{p:?}: s no longer enters at layer {}", k - 1);
        assert!(outputs.iter().all(|o| !same(o, &out)), "{p:?} must differ from every other patch");
        outputs.push(out);
    }
    assert!(!same(&trained_hidden[k - 1], &base_hidden[k - 1]));
}

#[test]
fn patches_are_no_ops_when_the_moved_vector_is_zero() {
    let c = Case::new("qwen2");
    let mut rows = c.rows();
    rows[0].fill(0.0);
    let steering = c.steering(&rows);
    let (plain, _) = c.run(&steering, &[]);
    for p in [
        LayerInputPatch::SkipAttention,
        LayerInputPatch::SkipLayer,
        LayerInputPatch::KeepHead { projection: Projection::Q, head: 2 },
        LayerInputPatch::RemoveProjection(Projection::K),
    ] {
        let (out, _) = c.run(&steering, &[Intervention::PatchLayerInput { layer: 1, patch: p }]);
        assert!(same(&out, &plain), "{p:?}");
    }
}

#[test]
fn rank_r_steering_is_the_product_of_its_factors() {
    let c = Case::new("qwen2");
    let (l, h, r) = (c.lm.config.num_layers, c.h(), 2);
    let a: Vec<f32> = (0..l * r).map(|i| (i as f32 * 0.7).sin()).collect();
    let b: Vec<f32> = (0..r * h).map(|i| (i as f32 * 0.3).cos()).collect();
    let product: Vec<Vec<f32>> = (0..l)
        .map(|i| (0..h).map(|j| (0..r).map(|k| a[i * r + k] * b[k * h + j]).sum()).collect())
        .collect();
    let low_rank = Steering::LowRank {
        a: Tensor::from_data(TensorData::new(a, [l, r]), &c.lm.device),
        b: Tensor::from_data(TensorData::new(b, [r, h]), &c.lm.device),
    };
    assert!(same(&c.run(&low_rank, &[]).0, &c.run(&c.steering(&product), &[]).0));
}

#[test]
fn at_place_steering_equals_the_add_at_intervention() {
    let c = Case::new("llama");
    let v = c.rows()[0].clone();
    let place: Place = "model.layers.1.self_attn".parse().unwrap();
    let at_place = Steering::AtPlace { place, vector: Tensor::from_data(TensorData::new(v.clone(), [c.h()]), &c.lm.device) };
    let (steered, hidden) = c.run(&at_place, &[]);
    assert!(same(&steered, &c.run(&Steering::None, &[Intervention::AddAt { place, vector: v }]).0));
    let (base, base_hidden) = c.run(&Steering::None, &[]);
    assert!(!same(&steered, &base) && same(&hidden[0], &base_hidden[0]));
}
