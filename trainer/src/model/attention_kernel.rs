//! Attention of one query position (a decode step) as one CubeCL kernel: `q [B, H_q, 1, hd]`
//! over the cached keys and values `[B, H_kv, T, hd]` with an additive mask `[B, 1, 1, T]`,
//! grouped-query (query head `h` reads kv head `h / (H_q / H_kv)`), softmax in f32.
//!
//! Composed from burn's operations, a decode step's attention is a product for the scores, a
//! scale, casts, the mask's add, a softmax (burn's fused reduce-and-broadcast: 169 µs of GPU time
//! per layer of the 1.5B shape at 64 rows on an H200, docs/performance.md) and a product with
//! the values: six to eight launches per layer. Here one cube computes one (row, query head):
//! its units take the dot products of the query with every `UNITS`-th key into shared memory,
//! the row's maximum and the sum of the exponentials meet in shared-memory tree reductions, and
//! the units then sum the values weighted by the probabilities: `UNITS / hd` groups of `hd`
//! units each take every group-th run of [`RUN`] keys (their loads independent, so that many
//! are in flight: a first version summing one key at a time took as long as burn's softmax),
//! and the groups' sums meet in shared memory. The keys and values may be views of the cache
//! (any strides but the last, which must be 1): nothing is copied.
//!
//! It runs where [`supports`] says (at most [`MAX_KEYS`] keys, heads of at most [`UNITS`]
//! elements); on backends other than CubeCL (the CPU's flex) the same
//! arithmetic runs as burn's operations in f32. The kernel is checked against the materialised
//! attention on the device by `trainer bench kernels`;
//! [`CausalLm::decode_attention`](crate::model::CausalLm::decode_attention) says where it runs.

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::decode_attention_kernel;

/// Units per cube (a power of two), and the longest head the kernel takes.
pub const UNITS: usize = 256;
/// Keys whose values one unit loads before it adds them up.
const RUN: usize = 8;
/// Most keys the kernel attends to (their scores are kept in shared memory, 4 bytes each);
/// [`CausalLm`](crate::model::CausalLm) sends longer attention through burn's operations.
pub const MAX_KEYS: usize = 4096;

/// Whether the kernel takes `keys` keys of heads of `head_dim` elements.
pub fn supports(keys: usize, head_dim: usize) -> bool {
    keys <= MAX_KEYS && head_dim <= UNITS
}

/// Attention of one query position, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait DecodeAttentionOps: Backend {
    /// `q [B, H_q, 1, hd]`, `k` and `v` `[B, H_kv, T, hd]`, `mask [B, 1, 1, T]` (additive, in
    /// `q`'s dtype) → `[B, H_q, 1, hd]` in `q`'s dtype.
    #[fusion(dtype = q, shape = q)]
    fn decode_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, mask: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl DecodeAttentionOps for burn::backend::Flex {
    fn decode_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, mask: FloatTensor<Self>) -> FloatTensor<Self> {
        let dtype = q.dtype();
        let [b, nh, _, hd] = dims4(&q.shape());
        let [_, nkv, t, _] = dims4(&k.shape());
        let acc = FloatDType::from(if dtype == DType::F64 { DType::F64 } else { DType::F32 });
        let f = |t: FloatTensor<Self>| Self::float_cast(t, acc);
        // The `rep` query heads of a kv head as rows: `[B, H_kv, rep, hd] · [B, H_kv, hd, T]`.
        let grouped = Self::float_reshape(f(q), Shape::new([b, nkv, nh / nkv, hd]));
        let scores = Self::float_matmul(grouped, Self::float_transpose(f(k)));
        let scale = burn::tensor::Scalar::new(1.0 / (hd as f64).sqrt(), &DType::from(acc));
        let scores = Self::float_add(Self::float_mul_scalar(scores, scale), Self::float_reshape(f(mask), Shape::new([b, 1, 1, t])));
        let max = Self::float_max_dim(scores.clone(), 3);
        let exp = Self::float_exp(Self::float_sub(scores, max));
        let probs = Self::float_div(exp.clone(), Self::float_sum_dim(exp, 3));
        let out = Self::float_matmul(probs, f(v));
        Self::float_cast(Self::float_reshape(out, Shape::new([b, nh, 1, hd])), FloatDType::from(dtype))
    }
}

/// The four dimensions of `shape`.
fn dims4(shape: &Shape) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

impl DecodeAttentionOps for CubeBackend {
    fn decode_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, mask: FloatTensor<Self>) -> FloatTensor<Self> {
        // The cache's views are read in place when their rows are contiguous.
        let rows_contiguous = |t: FloatTensor<Self>| if t.meta.strides()[3] == 1 { t } else { into_contiguous(t) };
        let (q, mask) = (into_contiguous(q), into_contiguous(mask));
        let (k, v) = (rows_contiguous(k), rows_contiguous(v));
        let [b, nh, _, hd] = dims4(q.meta.shape());
        let [_, nkv, keys, _] = dims4(k.meta.shape());
        let out = empty_device_dtype(q.client.clone(), q.device.clone(), q.meta.shape().clone(), q.dtype);
        let client = q.client.clone();
        let dtype = burn::backend::cubecl::dtype_to_storage_type(q.dtype);
        let address = [&q, &k, &v, &mask, &out].iter().fold(AddressType::U32, |a, t| a.max(t.required_address_type()));
        decode_attention_kernel::launch(
            &client,
            CubeCount::new_1d((b * nh) as u32),
            CubeDim::new_1d(UNITS as u32),
            address,
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            mask.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            (1.0 / (hd as f64).sqrt()) as f32,
            nh / nkv,
            hd,
            UNITS,
            RUN,
            shared_keys(keys),
            dtype,
        );
        out
    }
}

/// The scores buffer of `keys` keys: a power of two of at least 256 (few kernel variants, and
/// no more shared memory than the keys need).
fn shared_keys(keys: usize) -> usize {
    keys.next_power_of_two().max(256)
}

/// `softmax(q·kᵀ/√hd + mask)·v` for `q [B, H_q, 1, hd]`, `k` and `v` `[B, H_kv, T, hd]` (`T` and
/// `hd` as [`supports`] says), `mask [B, 1, 1, T]` → `[B, H_q, 1, hd]` (see the module).
///
/// All tensors must be without autodiff (the kernel has no backward pass) and of one dtype.
pub fn decode_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::decode_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), mask.into_dispatch()))
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    /// Halves the live partial values `log2(units)` times, combining pairs with `max` when
    /// `take_max`, with `+` otherwise; `partial[0]` then holds the result.
    #[cube]
    fn reduce(partial: &mut Shared<[f32]>, unit: usize, #[comptime] units: usize, #[comptime] take_max: bool) {
        #[unroll]
        for step in 1..units.trailing_zeros() as usize + 1 {
            let stride = units >> step;
            if unit < stride {
                let a = partial[unit];
                let b = partial[unit + stride];
                let both = if take_max { select(a > b, a, b) } else { a + b };
                partial[unit] = both;
            }
            sync_cube();
        }
    }

    /// Cube `c` attends row `c / H_q`, query head `c % H_q`, over `k.shape(2)` keys.
    // `(keys + run - 1) / run` is the form checked on the device (CubeCL expands it as is).
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn decode_attention_kernel<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        mask: &Tensor<F>,
        out: &mut Tensor<F>,
        scale: f32,
        #[comptime] rep: usize,
        #[comptime] head_dim: usize,
        #[comptime] units: usize,
        #[comptime] run: usize,
        #[comptime] max_keys: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let heads = q.shape(1);
        let keys = k.shape(2);
        let cube = CUBE_POS_X as usize;
        let row = cube / heads;
        let head = cube % heads;
        let unit = UNIT_POS as usize;
        let mut query = Shared::<[f32]>::new_slice(head_dim);
        let q_base = cube * head_dim;
        for d in range_stepped(unit, head_dim, units) {
            query[d] = f32::cast_from(q[q_base + d]) * scale;
        }
        sync_cube();
        let mut scores = Shared::<[f32]>::new_slice(max_keys);
        let kv_head = head / rep;
        let k_base = row * k.stride(0) + kv_head * k.stride(1);
        let k_step = k.stride(2);
        let m_base = row * keys;
        let mut local_max = f32::new(-3.0e38);
        for t in range_stepped(unit, keys, units) {
            let at = k_base + t * k_step;
            let mut dot = 0.0f32;
            #[unroll]
            for d in 0..head_dim {
                dot += query[d] * f32::cast_from(k[at + d]);
            }
            let s = dot + f32::cast_from(mask[m_base + t]);
            scores[t] = s;
            local_max = select(s > local_max, s, local_max);
        }
        let mut partial = Shared::<[f32]>::new_slice(units);
        partial[unit] = local_max;
        sync_cube();
        reduce(&mut partial, unit, units, true);
        let max = partial[0];
        sync_cube();
        let mut local_sum = 0.0f32;
        for t in range_stepped(unit, keys, units) {
            let e = f32::exp(scores[t] - max);
            scores[t] = e;
            local_sum += e;
        }
        sync_cube();
        partial[unit] = local_sum;
        sync_cube();
        reduce(&mut partial, unit, units, false);
        let total = partial[0];
        sync_cube();
        // Group g of hd units sums element d over the runs of keys g, g + groups, …; a run's
        // keys past the last read the last key's value with weight 0.
        let groups = units / head_dim;
        let group = unit / head_dim;
        let d = unit % head_dim;
        let v_base = row * v.stride(0) + kv_head * v.stride(1) + d;
        let v_step = v.stride(2);
        let mut sum = 0.0f32;
        if group < groups {
            for r in range_stepped(group, (keys + run - 1) / run, groups) {
                #[unroll]
                for j in 0..run {
                    let t = r * run + j;
                    let inside = t < keys;
                    let key = select(inside, t, keys - 1);
                    let p = select(inside, scores[key], 0.0f32);
                    sum += p * f32::cast_from(v[v_base + key * v_step]);
                }
            }
        }
        partial[unit] = sum;
        sync_cube();
        if unit < head_dim {
            let mut value = 0.0f32;
            #[unroll]
            for g in 0..groups {
                value += partial[g * head_dim + unit];
            }
            out[q_base + unit] = F::cast_from(value / total);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn one_query_attention_on_the_cpu_matches_a_float64_recomputation_with_grouped_heads_and_a_mask() {
        let (b, nh, nkv, t, hd) = (2, 4, 2, 5, 8);
        let value = |i: usize, salt: usize| (((i * 31 + salt * 17) % 23) as f32 - 11.0) / 7.0;
        let q: Vec<f32> = (0..b * nh * hd).map(|i| value(i, 1)).collect();
        let k: Vec<f32> = (0..b * nkv * t * hd).map(|i| value(i, 2)).collect();
        let v: Vec<f32> = (0..b * nkv * t * hd).map(|i| value(i, 3)).collect();
        // Row 0 sees every key, row 1 is padded by two positions.
        let pads = [0, 2];
        let mask: Vec<f32> = (0..b * t).map(|i| if i % t < pads[i / t] { f32::NEG_INFINITY } else { 0.0 }).collect();
        let device = Device::flex();
        let tensor = |data: &[f32], shape: [usize; 4]| Tensor::<4>::from_data(TensorData::new(data.to_vec(), shape), &device);
        let got: Vec<f32> = decode_attention(tensor(&q, [b, nh, 1, hd]), tensor(&k, [b, nkv, t, hd]), tensor(&v, [b, nkv, t, hd]), tensor(&mask, [b, 1, 1, t]))
            .into_data()
            .iter::<f32>()
            .collect();
        assert_eq!(got.len(), b * nh * hd);
        for row in 0..b {
            for head in 0..nh {
                let kv = (row * nkv + head / (nh / nkv)) * t * hd;
                let qv = &q[(row * nh + head) * hd..][..hd];
                let scores: Vec<f64> = (pads[row]..t)
                    .map(|key| (0..hd).map(|d| f64::from(qv[d]) * f64::from(k[kv + key * hd + d])).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for d in 0..hd {
                    let want: f64 = scores.iter().enumerate().map(|(i, s)| (s - max).exp() / total * f64::from(v[kv + (pads[row] + i) * hd + d])).sum();
                    let g = f64::from(got[(row * nh + head) * hd + d]);
                    assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "row {row} head {head} element {d}: {g} vs {want}");
                }
            }
        }
    }
}
