//! PiSSA initialisation of LoRA (reference §1.3, `lora_init: pissa`): with the top-r singular
//! triplets `W ≈ U S Vᵀ` of `down_proj`'s weight `W [H, I]`, `lora_A = √S Vᵀ [r, I]`,
//! `lora_B = U √S [H, r]`, and the frozen weight becomes the residual `W − B·A`, so the adapted
//! model starts equal to the base model.
//!
//! The top-r subspace is found on the host in float64 by orthogonal (block power) iteration from
//! a seeded start, then resolved exactly inside the subspace with a Jacobi eigen-decomposition of
//! the `r × r` Gram matrix: deterministic, no LAPACK.

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::weights::{Weight, WeightMap};
use crate::model::CausalLm;
use crate::train::policy::lora_name;

/// Iterations of the block power method (the gap between the r-th and (r+1)-th singular values
/// of trained weight matrices makes this ample; convergence is checked in the tests).
const ITERATIONS: usize = 60;

/// Row-major dense matrix in f64.
#[derive(Debug, Clone)]
struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Mat {
    fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// `self · other`.
    fn mul(&self, other: &Mat) -> Mat {
        let mut data = vec![0.0; self.rows * other.cols];
        for r in 0..self.rows {
            for k in 0..self.cols {
                let a = self.at(r, k);
                if a == 0.0 {
                    continue;
                }
                for c in 0..other.cols {
                    data[r * other.cols + c] += a * other.at(k, c);
                }
            }
        }
        Mat { rows: self.rows, cols: other.cols, data }
    }

    fn transpose(&self) -> Mat {
        let mut data = vec![0.0; self.data.len()];
        for r in 0..self.rows {
            for c in 0..self.cols {
                data[c * self.rows + r] = self.at(r, c);
            }
        }
        Mat { rows: self.cols, cols: self.rows, data }
    }

    /// Orthonormalises the columns (modified Gram–Schmidt).
    fn orthonormalize(mut self) -> Mat {
        for c in 0..self.cols {
            for p in 0..c {
                let dot: f64 = (0..self.rows).map(|r| self.at(r, c) * self.at(r, p)).sum();
                for r in 0..self.rows {
                    self.data[r * self.cols + c] -= dot * self.at(r, p);
                }
            }
            let norm = (0..self.rows).map(|r| self.at(r, c).powi(2)).sum::<f64>().sqrt().max(1e-300);
            for r in 0..self.rows {
                self.data[r * self.cols + c] /= norm;
            }
        }
        self
    }
}

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: eigenvalues and
/// eigenvectors (columns), sorted by decreasing eigenvalue.
fn symmetric_eigen(m: &Mat) -> (Vec<f64>, Mat) {
    let n = m.rows;
    let mut a = m.clone();
    let mut v = Mat { rows: n, cols: n, data: (0..n * n).map(|i| f64::from(u8::from(i / n == i % n))).collect() };
    for _ in 0..100 {
        let off: f64 = (0..n).flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q))).map(|(p, q)| a.at(p, q).powi(2)).sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a.at(p, q);
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a.at(q, q) - a.at(p, p)) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (akp, akq) = (a.at(k, p), a.at(k, q));
                    a.data[k * n + p] = c * akp - s * akq;
                    a.data[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a.at(p, k), a.at(q, k));
                    a.data[p * n + k] = c * apk - s * aqk;
                    a.data[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v.at(k, p), v.at(k, q));
                    v.data[k * n + p] = c * vkp - s * vkq;
                    v.data[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a.at(j, j).total_cmp(&a.at(i, i)));
    let values = order.iter().map(|&i| a.at(i, i)).collect();
    let mut vectors = Mat { rows: n, cols: n, data: vec![0.0; n * n] };
    for (new, &old) in order.iter().enumerate() {
        for k in 0..n {
            vectors.data[k * n + new] = v.at(k, old);
        }
    }
    (values, vectors)
}

/// Top-`rank` singular triplets of `w`: `(U [rows, r], S [r], V [cols, r])`.
fn top_svd(w: &Mat, rank: usize, seed: u64) -> (Mat, Vec<f64>, Mat) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0050_4953_5341);
    let start = Mat { rows: w.cols, cols: rank, data: (0..w.cols * rank).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let wt = w.transpose();
    let mut q = start.orthonormalize();
    for _ in 0..ITERATIONS {
        let p = w.mul(&q).orthonormalize();
        q = wt.mul(&p).orthonormalize();
    }
    let y = w.mul(&q);
    let (values, e) = symmetric_eigen(&y.transpose().mul(&y));
    let s: Vec<f64> = values.iter().map(|x| x.max(0.0).sqrt()).collect();
    let v = q.mul(&e);
    let mut u = y.mul(&e);
    for (c, sc) in s.iter().enumerate().take(rank) {
        for r in 0..u.rows {
            u.data[r * rank + c] /= sc.max(1e-300);
        }
    }
    (u, s, v)
}

fn to_host(w: &Tensor<2>) -> Mat {
    let [rows, cols] = w.dims();
    let data = w.clone().cast(burn::tensor::DType::F32).into_data().iter::<f32>().map(f64::from).collect();
    Mat { rows, cols, data }
}

fn to_device(m: &Mat, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = m.data.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [m.rows, m.cols]), device)
}

/// PiSSA factors `(lora_A [r, I], lora_B [H, r])` of a `down_proj` weight `w [H, I]`.
pub fn factors(w: &Tensor<2>, rank: usize, seed: u64) -> Result<(Tensor<2>, Tensor<2>)> {
    let [h, i] = w.dims();
    if rank == 0 || rank > h.min(i) {
        return Err(Error::InvalidArgument(format!("PiSSA rank {rank} must be in 1..={}", h.min(i))));
    }
    let (u, s, v) = top_svd(&to_host(w), rank, seed);
    let root: Vec<f64> = s.iter().map(|x| x.sqrt()).collect();
    let a = Mat { rows: rank, cols: i, data: (0..rank * i).map(|k| root[k / i] * v.at(k % i, k / i)).collect() };
    let b = Mat { rows: h, cols: rank, data: (0..h * rank).map(|k| u.at(k / rank, k % rank) * root[k % rank]).collect() };
    Ok((to_device(&a, &w.device()), to_device(&b, &w.device())))
}

/// `base` with `down_proj` of each adapted layer replaced by the residual `W − B·A` of the
/// initial factors in `params`.
pub fn residual_model(base: &CausalLm, layers: &[usize], params: &std::collections::BTreeMap<String, Weight>) -> Result<CausalLm> {
    let mut weights: WeightMap = base.named_weights();
    for &l in layers {
        let name = format!("model.layers.{l}.mlp.down_proj.weight");
        let (Some(Weight::Matrix(w)), Some(Weight::Matrix(a)), Some(Weight::Matrix(b))) =
            (weights.0.get(&name), params.get(&lora_name(l, "A")), params.get(&lora_name(l, "B")))
        else {
            return Err(Error::InvalidArgument(format!("PiSSA: layer {l} lacks down_proj or its factors")));
        };
        let residual = w.clone().cast(burn::tensor::DType::F32) - b.clone().matmul(a.clone());
        weights.0.insert(name, Weight::Matrix(residual));
    }
    base.with_weights(&weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pissa_factors_are_the_top_singular_triplets_of_a_float64_reference() {
        // W = U diag(5, 3, 1, 0.5) Vᵀ with known orthonormal U, V (Householder reflections).
        let (h, i) = (6usize, 5usize);
        let house = |n: usize, seed: f64| -> Mat {
            let x: Vec<f64> = (0..n).map(|k| (k as f64 + seed).sin()).collect();
            let nn: f64 = x.iter().map(|v| v * v).sum();
            Mat { rows: n, cols: n, data: (0..n * n).map(|k| f64::from(u8::from(k / n == k % n)) - 2.0 * x[k / n] * x[k % n] / nn).collect() }
        };
        let (u, v) = (house(h, 0.3), house(i, 1.7));
        let s = [5.0, 3.0, 1.0, 0.5];
        let mut w = Mat { rows: h, cols: i, data: vec![0.0; h * i] };
        for (k, sk) in s.iter().enumerate() {
            for r in 0..h {
                for c in 0..i {
                    w.data[r * i + c] += sk * u.at(r, k) * v.at(c, k);
                }
            }
        }
        let device = Device::flex();
        let (a, b) = factors(&to_device(&w, &device), 2, 7).unwrap();
        let ba = to_host(&b.matmul(a));
        // B·A is the best rank-2 approximation: Σ_{k<2} s_k u_k v_kᵀ.
        for r in 0..h {
            for c in 0..i {
                let want: f64 = (0..2).map(|k| s[k] * u.at(r, k) * v.at(c, k)).sum();
                assert!((ba.at(r, c) - want).abs() < 1e-5, "({r},{c}): {} vs {want}", ba.at(r, c));
            }
        }
        assert!(factors(&to_device(&w, &device), 6, 0).is_err());
    }

    #[test]
    fn jacobi_eigen_decomposition_sorts_and_reconstructs() {
        let m = Mat { rows: 3, cols: 3, data: vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0] };
        let (values, vectors) = symmetric_eigen(&m);
        assert!(values[0] >= values[1] && values[1] >= values[2]);
        for (k, lambda) in values.iter().enumerate() {
            for r in 0..3 {
                let mv: f64 = (0..3).map(|c| m.at(r, c) * vectors.at(c, k)).sum();
                assert!((mv - lambda * vectors.at(r, k)).abs() < 1e-10);
            }
        }
    }
}
