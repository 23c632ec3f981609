//! Rotary position embeddings in Hugging Face's `rotate_half` convention (the first and second
//! halves of a head are the two coordinates of each rotated pair), with per-row positions so
//! that left-padded batches and KV-cache decoding rotate every token by its own position, and
//! Llama 3.1's `llama3` frequency scaling.
//!
//! The inverse frequencies and angles are computed in f32 exactly as transformers does, so long
//! positions round the same way.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::config::RopeConfig;

/// Inverse frequencies `1 / theta^(2i/d)` for `i < d/2`, scaled for `llama3`.
pub fn inverse_frequencies(rope: &RopeConfig, head_dim: usize) -> Vec<f32> {
    let theta = rope.theta as f32;
    let base: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let Some(s) = rope.llama3_scaling else {
        return base;
    };
    let (factor, low, high, old) = (
        s.factor as f32,
        s.low_freq_factor as f32,
        s.high_freq_factor as f32,
        s.original_max_position_embeddings as f32,
    );
    let low_freq_wavelen = old / low;
    let high_freq_wavelen = old / high;
    base.into_iter()
        .map(|freq| {
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                freq
            } else if wavelen > low_freq_wavelen {
                freq / factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 - smooth) * freq / factor + smooth * freq
            }
        })
        .collect()
}

/// Cosine and sine tables `[positions, head_dim]` (each half repeated, as `rotate_half` wants).
#[derive(Debug, Clone)]
pub struct RopeTables {
    cos: Tensor<2>,
    sin: Tensor<2>,
    positions: usize,
}

impl RopeTables {
    /// Tables for positions `0..positions` on `device` (f32).
    pub fn new(rope: &RopeConfig, head_dim: usize, positions: usize, device: &Device) -> Self {
        let inv = inverse_frequencies(rope, head_dim);
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * head_dim);
        let mut sin = Vec::with_capacity(positions * head_dim);
        for p in 0..positions {
            let angles: Vec<f32> = inv.iter().map(|f| f * p as f32).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        debug_assert_eq!(cos.len(), positions * 2 * half);
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [positions, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [positions, head_dim]), device),
            positions,
        }
    }

    /// Number of positions the tables cover.
    pub fn len(&self) -> usize {
        self.positions
    }

    /// Whether the tables cover no position.
    pub fn is_empty(&self) -> bool {
        self.positions == 0
    }

    /// Cos and sin for the given positions `[B, S]`, shaped `[B, 1, S, head_dim]` to broadcast over
    /// heads.
    pub fn gather(&self, positions: &Tensor<2, Int>) -> (Tensor<4>, Tensor<4>) {
        let [b, s] = positions.dims();
        let flat = positions.clone().reshape([b * s]);
        let d = self.cos.dims()[1];
        let cos = self.cos.clone().select(0, flat.clone()).reshape([b, 1, s, d]);
        let sin = self.sin.clone().select(0, flat).reshape([b, 1, s, d]);
        (cos, sin)
    }
}

/// Applies the rotation to `x` `[B, heads, S, head_dim]` with tables from [`RopeTables::gather`].
pub fn apply_rotary(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let half = d / 2;
    let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..half]);
    let x2 = x.clone().slice([0..b, 0..h, 0..s, half..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    let dtype = x.dtype();
    x * cos.clone().cast(dtype) + rotated * sin.clone().cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Llama3RopeScaling;

    #[test]
    fn llama3_scaling_keeps_high_scales_low_and_blends_middle_frequencies() {
        let plain = RopeConfig {
            theta: 500_000.0,
            llama3_scaling: None,
        };
        let scaled = RopeConfig {
            llama3_scaling: Some(Llama3RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64.0,
            }),
            ..plain
        };
        let a = inverse_frequencies(&plain, 16);
        let b = inverse_frequencies(&scaled, 16);
        // wavelength 2π ≈ 6.3 < 16: unchanged.
        assert_eq!(a[0], b[0]);
        // wavelength ≈ 32.5, between 16 and 64: blended, strictly between freq/8 and freq.
        assert!(b[1] < a[1] && b[1] > a[1] / 8.0);
        let wavelen = 2.0 * std::f64::consts::PI / a[1] as f64;
        let smooth = (64.0 / wavelen - 1.0) / 3.0;
        let expected = (1.0 - smooth) * a[1] as f64 / 8.0 + smooth * a[1] as f64;
        assert!((b[1] as f64 - expected).abs() < 1e-6 * expected);
        // wavelength ≥ 167 > 64: divided by the factor.
        for i in 2..8 {
            assert!((b[i] - a[i] / 8.0).abs() <= f32::EPSILON * a[i]);
        }
    }

    #[test]
    fn rotation_preserves_norms_and_is_identity_at_position_zero() {
        let device = Device::flex();
        let rope = RopeConfig {
            theta: 10_000.0,
            llama3_scaling: None,
        };
        let tables = RopeTables::new(&rope, 8, 16, &device);
        let values: Vec<f32> = (0..2 * 8).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(values.clone(), [1, 1, 2, 8]), &device);
        let positions = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 5], [1, 2]), &device);
        let (cos, sin) = tables.gather(&positions);
        let y: Vec<f32> = apply_rotary(x, &cos, &sin).into_data().try_to_vec().unwrap();
        for i in 0..8 {
            assert!((y[i] - values[i]).abs() < 1e-6);
        }
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm(&y[8..]) - norm(&values[8..])).abs() < 1e-5);
        // Pair (0, 4) at position 5 rotates by angle 5 * inv_freq[0] = 5 rad.
        let (c, s) = (5f32.cos(), 5f32.sin());
        assert!((y[8] - (values[8] * c - values[12] * s)).abs() < 1e-5);
        assert!((y[12] - (values[12] * c + values[8] * s)).abs() < 1e-5);
    }
}
