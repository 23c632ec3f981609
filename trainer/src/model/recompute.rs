//! Gradients with respect to steering tensors by recomputing one decoder layer at a time
//! (activation checkpointing at layer granularity).
//!
//! A whole-graph backward pass keeps every intermediate of every layer alive until it runs:
//! attention scores and probabilities, MLP activations (about 1 GB per layer for 4 × 1024 tokens
//! at the 1.5B shape). Here the forward pass runs without autodiff and keeps only the residual
//! stream entering each layer (`L` tensors `[B, S, H]`); the backward pass then rebuilds one
//! layer's graph at a time, from the last layer down to the first one with steering, and carries
//! the gradient of the residual stream down:
//!
//! `g_L = ∂loss/∂x_L` (through the head), `g_l = ∂⟨layer_l(x_l), g_{l+1}⟩ / ∂x_l`.
//!
//! Each rebuilt layer reads its steering tensors (its vector, its at-place vectors, its LoRA
//! factors) as fresh autodiff leaves. Their gradients are taken back to the trainable parameters
//! at the end, in one backward pass through the steering's own parameterisation:
//! `Σ_l ⟨t_l(θ), ∂loss/∂t_l⟩` with `t_l(θ)` the same tensors built from the tracked parameters, so
//! that parameters shared by all layers (steering_rank's `A` and `B`) get the sum over layers.
//! The cost is one more forward pass through the layers; the peak memory is one layer's graph.

use burn::tensor::{DType, Gradients, Int, Tensor};

use crate::error::{Error, Result};
use crate::model::transformer::{BatchLayout, CausalLm, Plan};
use crate::steering::intervention::Place;
use crate::steering::{LoraPair, Steering};

/// A fresh autodiff leaf with the values of `t` (whatever `t`'s own tracking).
fn leaf<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
    t.clone().inner().autodiff().require_grad()
}

/// `⟨tracked, ∂/∂leaf⟩` (one element, summed in f32), or `None` when `leaf` got no gradient.
fn pulled_back<const D: usize>(tracked: &Tensor<D>, leaf: &Tensor<D>, grads: &Gradients) -> Option<Tensor<1>> {
    leaf.grad(grads).map(|g| (tracked.clone().cast(DType::F32) * g.cast(DType::F32)).sum())
}

/// The steering tensors one layer reads, as the leaves that stand for them in its rebuilt graph.
struct LayerLeaves {
    layer: usize,
    after_mlp: Option<Tensor<1>>,
    at_place: Vec<(Place, Tensor<1>)>,
    lora: Option<LoraPair>,
}

impl LayerLeaves {
    /// Replaces layer `l`'s entries of `plan` by leaves holding the same values.
    fn take(plan: &mut Plan, l: usize) -> Self {
        let after_mlp = plan.after_mlp[l].as_mut().map(|v| {
            *v = leaf(v);
            v.clone()
        });
        let at_place = plan
            .at_place
            .iter_mut()
            .filter(|(place, _)| place.layer == l)
            .map(|(place, v)| {
                *v = leaf(v);
                (*place, v.clone())
            })
            .collect();
        let lora = plan.lora[l].as_mut().map(|pair| {
            *pair = LoraPair { a: leaf(&pair.a), b: leaf(&pair.b) };
            pair.clone()
        });
        Self { layer: l, after_mlp, at_place, lora }
    }

    /// The terms `⟨t(θ), ∂loss/∂leaf⟩` of these leaves, with `t(θ)` the matching entries of
    /// `tracked` (the plan of the tracked parameters).
    fn pulled_back(&self, grads: &Gradients, tracked: &Plan) -> Vec<Tensor<1>> {
        let l = self.layer;
        let mut terms = Vec::new();
        if let (Some(leaf), Some(t)) = (&self.after_mlp, &tracked.after_mlp[l]) {
            terms.extend(pulled_back(t, leaf, grads));
        }
        for (place, leaf) in &self.at_place {
            if let Some(t) = tracked.at_place.get(place) {
                terms.extend(pulled_back(t, leaf, grads));
            }
        }
        if let (Some(leaf), Some(t)) = (&self.lora, &tracked.lora[l]) {
            terms.extend(pulled_back(&t.a, &leaf.a, grads));
            terms.extend(pulled_back(&t.b, &leaf.b, grads));
        }
        terms
    }
}

/// The gradients of a loss with respect to the parameters behind `tracked`, recomputing one layer
/// at a time (see the module docs), and the loss itself (one element, without autodiff).
///
/// The model runs on `tokens` `[B, S]` laid out by `layout` with `steering` (the values; any
/// tracking is ignored); `head` maps the final-normed hidden states `[B, S, H]` to the loss
/// `[1]`. `tracked` is the same steering built from tracked parameters: read the parameters'
/// gradients from the result with [`Tensor::grad`]. The model's weights must be frozen (not
/// tracked): their gradients are not computed.
pub fn steering_gradients(
    model: &CausalLm,
    tokens: Tensor<2, Int>,
    layout: &BatchLayout,
    steering: &Steering,
    tracked: &Steering,
    head: impl FnOnce(Tensor<3>) -> Result<Tensor<1>>,
) -> Result<(Gradients, Tensor<1>)> {
    let [_, s] = tokens.dims();
    model.check_pass(&tokens, layout, 0)?;
    let mut pass = model.pass(layout, 0, s, s, steering, &[])?;
    let layers = model.config.num_layers;
    // Below the first steered layer nothing has a gradient: the backward pass stops there.
    let first = (0..layers).find(|&l| pass.plan.steers(l)).unwrap_or(layers);
    let mut inputs = Vec::with_capacity(layers - first);
    let mut x = model.embed(tokens);
    for l in 0..layers {
        if l >= first {
            inputs.push(x.clone());
        }
        x = model.layer(l, x, &pass, None);
    }
    let last = leaf(&x);
    let loss = head(model.final_norm(last.clone()))?;
    let grads = loss.backward();
    let mut upstream = last.grad(&grads).ok_or_else(|| Error::Backend("the loss does not depend on the hidden states".into()))?;
    let loss = loss.inner();
    let tracked_plan = model.plan(tracked, &[])?;
    let mut terms = Vec::new();
    for (l, input) in (first..layers).zip(inputs).rev() {
        let input = if l > first { leaf(&input) } else { input };
        let leaves = LayerLeaves::take(&mut pass.plan, l);
        let output = model.layer(l, input.clone(), &pass, None);
        let grads = (output * upstream).sum().backward();
        terms.extend(leaves.pulled_back(&grads, &tracked_plan));
        if l == first {
            break;
        }
        upstream = input.grad(&grads).ok_or_else(|| Error::Backend(format!("no gradient reached the input of layer {l}")))?;
    }
    match terms.into_iter().reduce(|a, b| a + b) {
        Some(total) if total.is_tracked() => Ok((total.backward(), loss)),
        _ => Err(Error::InvalidArgument("layer-wise recomputation needs tracked steering tensors, found none".into())),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device, TensorData};

    use super::*;

    #[test]
    fn recomputation_without_tracked_steering_is_an_error() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2");
        let model = crate::model::load(&dir, &Device::flex(), DType::F32).expect("fixture");
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, 6, 7], [1, 3]), &model.device);
        let layout = BatchLayout { pads: vec![0] };
        let Err(err) = steering_gradients(&model, tokens, &layout, &Steering::None, &Steering::None, |hidden| Ok(hidden.sum())) else {
            panic!("nothing to differentiate, yet gradients came back");
        };
        assert!(err.to_string().contains("tracked steering"), "{err}");
    }
}
