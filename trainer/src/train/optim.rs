//! AdamW with the reference's settings (PyTorch semantics: decoupled weight decay, bias-corrected
//! moments, `eps` added after the square root), global gradient-norm clipping, and the
//! `constant_with_warmup` learning-rate schedule of Hugging Face.
//!
//! Parameters, gradients and moments are [`WeightMap`]s of f32 tensors on the training device; the
//! update runs there, element-wise on each tensor's flat view.

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::model::weights::WeightMap;

/// AdamW hyper-parameters (defaults: the reference's 0.9, 0.999, 1e-8, weight decay 0).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamW {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the square root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The optimiser's state: the number of steps taken and the two moments of every parameter.
#[derive(Debug, Clone)]
pub struct AdamWState {
    /// Steps taken so far.
    pub step: u64,
    /// First moments, by parameter name.
    pub m: WeightMap,
    /// Second moments, by parameter name.
    pub v: WeightMap,
}

impl AdamWState {
    /// Zero moments shaped like `params`.
    pub fn new(params: &WeightMap) -> Self {
        let zeros = params.map_flat(|_, t| t.zeros_like());
        Self { step: 0, m: zeros.clone(), v: zeros }
    }

    /// Bytes held by the moments (the "optimiser bytes" of the demo table).
    pub fn bytes(&self) -> usize {
        (self.m.numel() + self.v.numel()) * std::mem::size_of::<f32>()
    }
}

impl AdamW {
    /// One update of `params` with `grads` at learning rate `lr`; returns the new parameters.
    pub fn step(&self, params: &WeightMap, grads: &WeightMap, state: &mut AdamWState, lr: f64) -> Result<WeightMap> {
        check_same_names(params, grads, "gradients")?;
        check_same_names(params, &state.m, "optimiser state")?;
        state.step += 1;
        let t = state.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        let mut out = WeightMap::default();
        for group in groups(params, GROUP_ELEMENTS) {
            let g = gather(grads, &group);
            let m = gather(&state.m, &group).mul_scalar(self.beta1) + g.clone().mul_scalar(1.0 - self.beta1);
            let v = gather(&state.v, &group).mul_scalar(self.beta2) + g.square().mul_scalar(1.0 - self.beta2);
            let mut x = gather(params, &group);
            if self.weight_decay != 0.0 {
                x = x.mul_scalar(1.0 - lr * self.weight_decay);
            }
            let denom = v.clone().sqrt().div_scalar(bias2.sqrt()).add_scalar(self.eps);
            x = x - (m.clone() / denom).mul_scalar(lr / bias1);
            scatter(&mut state.m, params, &group, m);
            scatter(&mut state.v, params, &group, v);
            scatter(&mut out, params, &group, x);
        }
        Ok(out)
    }
}

/// Most elements concatenated into one group of [`groups`] (64 MiB of f32).
const GROUP_ELEMENTS: usize = 1 << 24;

/// The names of `params` in groups of at most `limit` elements whose tensors are updated as one concatenated vector: on a GPU
/// every element-wise operation on a tensor is a launch with host-side cost, so the 28 steering
/// vectors of a model take a few launches instead of a dozen each. A tensor larger than half the
/// limit is usually a group of its own (no copy of large weights).
fn groups(params: &WeightMap, limit: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for (name, w) in &params.0 {
        let n = w.numel();
        match out.last_mut() {
            Some(group) if size + n <= limit => group.push(name.clone()),
            _ => {
                out.push(vec![name.clone()]);
                size = 0;
            }
        }
        size += n;
    }
    out
}

/// The flat values `[Σ numel]` of the tensors `names` of `map`, concatenated in order.
fn gather(map: &WeightMap, names: &[String]) -> Tensor<1> {
    let mut flats: Vec<Tensor<1>> = names.iter().map(|name| map.0[name].flat()).collect();
    if flats.len() == 1 { flats.remove(0) } else { Tensor::cat(flats, 0) }
}

/// Splits `flat` (a [`gather`] of `names`) back into tensors shaped like those of `like`, into `out`.
fn scatter(out: &mut WeightMap, like: &WeightMap, names: &[String], flat: Tensor<1>) {
    let mut offset = 0;
    for name in names {
        let w = &like.0[name];
        let n = w.numel();
        out.0.insert(name.clone(), w.with_flat(flat.clone().narrow(0, offset, n)));
        offset += n;
    }
}

fn check_same_names(params: &WeightMap, other: &WeightMap, what: &str) -> Result<()> {
    let a: Vec<&String> = params.0.keys().collect();
    let b: Vec<&String> = other.0.keys().collect();
    if a != b {
        return Err(Error::InvalidArgument(format!("{what} are for {b:?}, the parameters are {a:?}")));
    }
    Ok(())
}

/// The global L2 norm of all gradients (one host read).
pub fn global_norm(grads: &WeightMap) -> Result<f64> {
    let squares: Vec<Tensor<1>> = groups(grads, GROUP_ELEMENTS).iter().map(|group| gather(grads, group).square().sum()).collect();
    if squares.is_empty() {
        return Ok(0.0);
    }
    let total = crate::device::host_f32(Tensor::cat(squares, 0).sum(), "gradient norm")?[0];
    Ok(f64::from(total).sqrt())
}

/// Scales `grads` so that their global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below one). Returns the clipped
/// gradients and the norm before clipping.
pub fn clip_grad_norm(grads: WeightMap, max_norm: f64) -> Result<(WeightMap, f64)> {
    let norm = global_norm(&grads)?;
    let coef = max_norm / (norm + 1e-6);
    if coef >= 1.0 {
        return Ok((grads, norm));
    }
    let mut clipped = WeightMap::default();
    for group in groups(&grads, GROUP_ELEMENTS) {
        scatter(&mut clipped, &grads, &group, gather(&grads, &group).mul_scalar(coef));
    }
    Ok((clipped, norm))
}

/// Hugging Face's `constant_with_warmup` schedule: the learning rate of optimizer step `step`
/// (counted from 0) rises linearly from 0 over `warmup_steps` steps, then stays at `lr`.
/// As in Hugging Face, the first step runs at learning rate 0 when there is a warm-up.
pub fn warmup_lr(lr: f64, step: u64, warmup_steps: u64) -> f64 {
    if step < warmup_steps { lr * step as f64 / warmup_steps.max(1) as f64 } else { lr }
}

/// Warm-up length of the reference: `ceil(warmup_ratio · total_steps)`.
pub fn warmup_steps(warmup_ratio: f64, total_steps: u64) -> u64 {
    (warmup_ratio * total_steps as f64).ceil() as u64
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;
    use crate::model::weights::Weight;

    fn map(values: &[f32]) -> WeightMap {
        let t = Tensor::<1>::from_data(TensorData::new(values.to_vec(), [values.len()]), &Device::flex());
        WeightMap(BTreeMap::from([("w".to_owned(), Weight::Vector(t))]))
    }

    fn host(m: &WeightMap) -> Vec<f64> {
        m.0["w"].flat().into_data().iter::<f32>().map(f64::from).collect()
    }

    /// PyTorch's AdamW in float64 for one scalar parameter.
    fn reference(p0: f64, grads: &[f64], lr: f64, wd: f64) -> f64 {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
        for (i, g) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            p *= 1.0 - lr * wd;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let denom = (v.sqrt() / (1.0 - b2.powi(t)).sqrt()) + eps;
            p -= lr / (1.0 - b1.powi(t)) * m / denom;
        }
        p
    }

    #[test]
    fn adamw_matches_a_float64_recomputation_of_pytorch_over_several_steps() {
        let opt = AdamW { weight_decay: 0.1, ..AdamW::default() };
        let grads = [[0.5f32, -2.0, 1e-3], [0.25, 1.0, -1e-3], [-0.75, 0.5, 2.0]];
        let mut params = map(&[1.0, -0.5, 0.0]);
        let mut state = AdamWState::new(&params);
        for g in &grads {
            params = opt.step(&params, &map(g), &mut state, 0.01).unwrap();
        }
        let got = host(&params);
        for (i, (&p0, got)) in [1.0, -0.5, 0.0].iter().zip(got).enumerate() {
            let g: Vec<f64> = grads.iter().map(|g| f64::from(g[i])).collect();
            let want = reference(p0, &g, 0.01, 0.1);
            assert!((got - want).abs() < 1e-6, "element {i}: {got} vs {want}");
        }
        assert_eq!(state.step, 3);
    }

    #[test]
    fn adamw_updates_tensors_of_a_group_as_it_updates_each_alone() {
        let device = Device::flex();
        let named = |a: [f32; 3], b: [f32; 4]| {
            WeightMap(BTreeMap::from([
                ("a".to_owned(), Weight::Vector(Tensor::from_data(TensorData::new(a.to_vec(), [3]), &device))),
                ("b".to_owned(), Weight::Matrix(Tensor::from_data(TensorData::new(b.to_vec(), [2, 2]), &device))),
            ]))
        };
        let start = ([1.0, -0.5, 0.0], [0.25, 2.0, -1.0, 0.5]);
        let grads = [([0.5f32, -2.0, 1e-3], [1.0f32, -1.0, 0.25, 3.0]), ([0.25, 1.0, -1e-3], [-0.5, 0.5, 2.0, -0.125])];
        let mut params = named(start.0, start.1);
        let mut state = AdamWState::new(&params);
        for (a, b) in &grads {
            params = AdamW::default().step(&params, &named(*a, *b), &mut state, 0.01).unwrap();
        }
        assert_eq!(params.0["b"].dims(), vec![2, 2], "shapes are kept");
        let values = |name: &str| -> Vec<f64> { params.0[name].flat().into_data().iter::<f32>().map(f64::from).collect() };
        for (i, got) in values("a").into_iter().enumerate() {
            let want = reference(f64::from(start.0[i]), &grads.map(|g| f64::from(g.0[i])), 0.01, 0.0);
            assert!((got - want).abs() < 1e-6, "a[{i}]: {got} vs {want}");
        }
        for (i, got) in values("b").into_iter().enumerate() {
            let want = reference(f64::from(start.1[i]), &grads.map(|g| f64::from(g.1[i])), 0.01, 0.0);
            assert!((got - want).abs() < 1e-6, "b[{i}]: {got} vs {want}");
        }
    }

    #[test]
    fn groups_fill_up_to_their_limit_in_name_order() {
        let device = Device::flex();
        let vector = |n: usize| Weight::Vector(Tensor::zeros([n], &device));
        let params = WeightMap(BTreeMap::from([
            ("a".to_owned(), vector(3)),
            ("b".to_owned(), vector(4)),
            ("c".to_owned(), vector(10)),
            ("d".to_owned(), vector(2)),
            ("e".to_owned(), vector(6)),
        ]));
        let names = |group: &[&str]| group.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(groups(&params, 8), vec![names(&["a", "b"]), names(&["c"]), names(&["d", "e"])]);
        assert_eq!(groups(&params, 100), vec![names(&["a", "b", "c", "d", "e"])]);
    }

    #[test]
    fn clipping_scales_to_the_global_norm_and_leaves_small_gradients_alone() {
        let (clipped, norm) = clip_grad_norm(map(&[3.0, 4.0]), 2.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let c = host(&clipped);
        assert!((c[0] - 3.0 * 2.0 / (5.0 + 1e-6)).abs() < 1e-6 && (c[1] - 4.0 * 2.0 / (5.0 + 1e-6)).abs() < 1e-6);
        let (kept, norm) = clip_grad_norm(map(&[0.3, 0.4]), 2.0).unwrap();
        assert!((norm - 0.5).abs() < 1e-6);
        assert_eq!(host(&kept), vec![0.30000001192092896, 0.4000000059604645]);
    }

    #[test]
    fn warmup_is_linear_from_zero_then_constant_like_hugging_face() {
        assert_eq!(warmup_steps(0.03, 314), 10);
        assert_eq!(warmup_steps(0.0, 314), 0);
        let lrs: Vec<f64> = (0..5).map(|s| warmup_lr(1.0, s, 3)).collect();
        assert_eq!(lrs, vec![0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0]);
        assert_eq!(warmup_lr(0.5, 0, 0), 0.5);
    }

    #[test]
    fn mismatched_gradient_names_are_an_error() {
        let params = map(&[1.0]);
        let mut state = AdamWState::new(&params);
        let other = WeightMap(BTreeMap::from([("x".to_owned(), params.0["w"].clone())]));
        let err = AdamW::default().step(&params, &other, &mut state, 0.1).unwrap_err().to_string();
        assert!(err.contains("gradients"), "{err}");
    }
}
