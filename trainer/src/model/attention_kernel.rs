//! Attention of one query position (a decode step) as one CubeCL kernel: `q [B, H_q, 1, hd]`
//! over the cached keys and values `[B, H_kv, T, hd]` with an additive mask `[B, 1, 1, T]`,
//! grouped-query (query head `h` reads kv head `h / (H_q / H_kv)`), softmax in f32.
//!
//! Composed from burn's operations, a decode step's attention is a product for the scores, a
//! scale, casts, the mask's add, a softmax (burn's fused reduce-and-broadcast: 169 µs of GPU time
//! per layer of the 1.5B shape at 64 rows on an H200, docs/performance.md) and a product with
//! the values: six to eight launches per layer. Here one cube computes one (row, kv head) for
//! all the query heads that share it, so that each key and value is read once: the head's
//! elements are split across the units of a plane (warp), each loading its part of a key or a
//! value with one vector load. The cube's planes (up to [`PLANES`], as many as [`planes_for`]
//! fits in shared memory) take every `planes`-th run of [`KEY_RUN`] keys, whose loads are issued
//! together. A run's dot products are summed across the plane by halving: each unit sends half
//! of its keys' partial dots to another and adds the other half, until every unit holds the
//! whole score of one key of the run: 9 exchanges per query head for a run of 8 keys on 32 units,
//! where a sum over the plane per key takes 40. Each unit then
//! weighs its own key; the plane's running maximum, sum of exponentials and weighted sum of
//! values per query head (the online softmax of flash decoding) are updated once per run, and
//! the planes' partial results meet in shared memory at the end. No score is stored, so any
//! number of keys is taken. Keys whose mask is −∞ (past a row's filled positions in a decode
//! step's fixed-capacity cache, or its padding) are neither read nor scored. The keys and values
//! may be views of the cache (any strides but the last, which must be 1): nothing is copied.
//!
//! Splitting the keys between more cubes as well (flash decoding's second launch combining the
//! splits) made a 1.5B decode step slower on an H200 with the previous version of this kernel
//! (one plane sum per key), 7.47 against 7.21 ms at 64 rows: it was bound by instructions, not
//! warps; the halving sums took a layer from 49.9 to 26.0 µs (docs/performance.md).
//!
//! It runs on CubeCL backends with plane operations where a head splits into the plane's units
//! in vectors of at most [`MAX_PER_UNIT`] elements (heads of 32 to 256 elements on 32-unit
//! planes); elsewhere (CubeCL grants no plane operations to CPU devices such as lavapipe), and
//! on other backends (the CPU's flex), the same arithmetic runs as burn's operations in f32.
//! The lanes are laid out for the largest plane size the device reports, which is the size it
//! runs on NVIDIA and AMD GPUs; a device that runs smaller planes would need the layout to
//! follow the plane size at run time. The kernel is checked against the materialised attention on the
//! device by `trainer bench kernels`;
//! [`CausalLm::decode_attention`](crate::model::CausalLm::decode_attention) says where it runs.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::features::Plane;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::decode_attention_kernel;

/// Most planes per cube of the kernel; each takes every `planes`-th run of keys.
const PLANES: usize = 8;
/// Shared memory the planes' partial results may take (Vulkan guarantees 16 KiB; NVIDIA's GPUs
/// give 48 KiB).
const SHARED_BYTES: usize = 40 * 1024;
/// Most elements of a head one unit holds (heads of up to `MAX_PER_UNIT` × the plane size).
const MAX_PER_UNIT: usize = 8;
/// Keys whose keys and values a plane loads before it uses any of them, and whose scores its
/// units then hold one key each (a power of two, at most the plane size).
const KEY_RUN: usize = 8;

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
        composed::<Self>(q, k, v, mask)
    }
}

/// The attention composed of `B`'s operations in f32 (f64 for f64 inputs): the CPU's route, and
/// the GPU's for heads the kernel does not take.
fn composed<B: Backend>(q: FloatTensor<B>, k: FloatTensor<B>, v: FloatTensor<B>, mask: FloatTensor<B>) -> FloatTensor<B> {
    let dtype = q.dtype();
    let [b, nh, _, hd] = dims4(&q.shape());
    let [_, nkv, t, _] = dims4(&k.shape());
    let acc = FloatDType::from(if dtype == DType::F64 { DType::F64 } else { DType::F32 });
    let f = |t: FloatTensor<B>| B::float_cast(t, acc);
    // The `rep` query heads of a kv head as rows: `[B, H_kv, rep, hd] · [B, H_kv, hd, T]`.
    let grouped = B::float_reshape(f(q), Shape::new([b, nkv, nh / nkv, hd]));
    let scores = B::float_matmul(grouped, B::float_transpose(f(k)));
    let scale = burn::tensor::Scalar::new(1.0 / (hd as f64).sqrt(), &DType::from(acc));
    let scores = B::float_add(B::float_mul_scalar(scores, scale), B::float_reshape(f(mask), Shape::new([b, 1, 1, t])));
    let max = B::float_max_dim(scores.clone(), 3);
    let exp = B::float_exp(B::float_sub(scores, max));
    let probs = B::float_div(exp.clone(), B::float_sum_dim(exp, 3));
    let out = B::float_matmul(probs, f(v));
    B::float_cast(B::float_reshape(out, Shape::new([b, nh, 1, hd])), FloatDType::from(dtype))
}

/// Planes per cube for `rep` query heads per kv head of `head_dim` elements: the most (a power
/// of two up to [`PLANES`]) whose partial results (a maximum, a sum and `head_dim` weighted
/// values per query head, f32) fit in [`SHARED_BYTES`]; `None` when not even one plane's fit.
fn planes_for(rep: usize, head_dim: usize) -> Option<usize> {
    let per_plane = rep * (head_dim + 2) * 4;
    let most = (SHARED_BYTES / per_plane.max(1)).min(PLANES);
    (most >= 1).then(|| 1 << most.ilog2())
}

/// How the kernel lays out one (row, kv head) on planes of `plane` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KernelLayout {
    /// Planes per cube ([`planes_for`]).
    planes: usize,
    /// Elements of a head each unit holds.
    per_unit: usize,
}

/// The kernel's layout for heads of `head_dim` elements, `rep` query heads per kv head, on planes
/// of `plane` units; `None` where the kernel does not take them: the head must split into the
/// plane's units in vectors of a power of two of at most [`MAX_PER_UNIT`] elements, a run of
/// [`KEY_RUN`] keys must fit in a plane of a power-of-two size, and one plane's partial results in
/// shared memory.
fn kernel_layout(plane: usize, head_dim: usize, rep: usize) -> Option<KernelLayout> {
    let per_unit = head_dim / plane;
    let fits = plane.is_power_of_two() && KEY_RUN <= plane && head_dim.is_multiple_of(plane) && (1..=MAX_PER_UNIT).contains(&per_unit) && per_unit.is_power_of_two();
    planes_for(rep, head_dim).filter(|_| fits).map(|planes| KernelLayout { planes, per_unit })
}

/// The four dimensions of `shape`.
fn dims4(shape: &Shape) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

impl DecodeAttentionOps for CubeBackend {
    fn decode_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, mask: FloatTensor<Self>) -> FloatTensor<Self> {
        let ([_, nh, _, hd], nkv) = (dims4(q.meta.shape()), k.meta.shape()[1]);
        let plane = q.client.properties().hardware.plane_size_max.max(1) as usize;
        let layout = kernel_layout(plane, hd, nh / nkv).filter(|_| q.client.properties().features.plane.contains(Plane::Ops));
        let Some(KernelLayout { planes, per_unit }) = layout else {
            tracing::debug!(plane, head_dim = hd, heads = nh, kv_heads = nkv, "decode attention composed of burn's operations: the kernel does not take this shape or device");
            return composed::<Self>(q, k, v, mask);
        };
        // The cache's views are read in place when their rows are contiguous.
        let rows_contiguous = |t: FloatTensor<Self>| if t.meta.strides()[3] == 1 { t } else { into_contiguous(t) };
        let (q, mask) = (into_contiguous(q), into_contiguous(mask));
        let (k, v) = (rows_contiguous(k), rows_contiguous(v));
        let b = q.meta.shape()[0];
        let out = empty_device_dtype(q.client.clone(), q.device.clone(), q.meta.shape().clone(), q.dtype);
        let client = q.client.clone();
        let dtype = burn::backend::cubecl::dtype_to_storage_type(q.dtype);
        let address = [&q, &k, &v, &mask, &out].iter().fold(AddressType::U32, |a, t| a.max(t.required_address_type()));
        decode_attention_kernel::launch(
            &client,
            CubeCount::new_1d((b * nkv) as u32),
            CubeDim::new_2d(plane as u32, planes as u32),
            address,
            per_unit,
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            mask.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            (1.0 / (hd as f64).sqrt()) as f32,
            nh / nkv,
            planes,
            plane,
            KEY_RUN,
            per_unit,
            dtype,
        );
        out
    }
}

/// `softmax(q·kᵀ/√hd + mask)·v` for `q [B, H_q, 1, hd]`, `k` and `v` `[B, H_kv, T, hd]`,
/// `mask [B, 1, 1, T]` → `[B, H_q, 1, hd]` (see the module).
///
/// All tensors must be without autodiff (the kernel has no backward pass) and of one dtype.
pub fn decode_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::decode_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), mask.into_dispatch()))
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    /// Cube `c` attends row `c / H_kv` with the `rep` query heads of kv head `c % H_kv` over
    /// `k.shape(2)` keys: `q`, `k`, `v` and `out` are read as vectors of `N = per_unit` elements,
    /// unit `lane` of each plane holding elements `N · lane..` of every head. Plane `p` of `planes`
    /// takes the keys `p · run, (p + planes) · run, …`, `run` at a time (their loads issued
    /// together, keys masked with −∞ skipped); the run's dot products are scattered over the
    /// plane's units by halving sums, one key per `plane_size / run` units, and each query head's
    /// running maximum, sum of exponentials and weighted sum of values (the online softmax, in
    /// f32) is updated once per run; the planes' partial results then meet in shared memory.
    #[allow(clippy::too_many_arguments)]
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn decode_attention_kernel<F: Float, N: Size>(
        q: &Tensor<Vector<F, N>>,
        k: &Tensor<Vector<F, N>>,
        v: &Tensor<Vector<F, N>>,
        mask: &Tensor<F>,
        out: &mut Tensor<Vector<F, N>>,
        scale: f32,
        #[comptime] rep: usize,
        #[comptime] planes: usize,
        #[comptime] plane_size: usize,
        #[comptime] run: usize,
        #[comptime] per_unit: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let head_dim = comptime!(per_unit * plane_size);
        let kv_heads = k.shape(1);
        let keys = k.shape(2);
        let cube = CUBE_POS_X as usize;
        let row = cube / kv_heads;
        let kv_head = cube % kv_heads;
        let lane = UNIT_POS_X as usize;
        let plane = UNIT_POS_Y as usize;
        // Element e of this unit's part of query head j is `query[j * per_unit + e]`, scaled.
        let mut query = Array::<f32>::new(comptime!(rep * per_unit));
        let q_base = (row * q.shape(1) + kv_head * rep) * plane_size + lane;
        #[unroll]
        for j in 0..rep {
            let part = q[q_base + j * plane_size];
            #[unroll]
            for e in 0..per_unit {
                query[j * per_unit + e] = f32::cast_from(part.extract(e)) * scale;
            }
        }
        let mut best = Array::<f32>::new(rep);
        let mut total = Array::<f32>::new(rep);
        let mut acc = Array::<f32>::new(comptime!(rep * per_unit));
        #[unroll]
        for j in 0..rep {
            best[j] = f32::new(-3.0e38);
            total[j] = f32::new(0.0);
            #[unroll]
            for e in 0..per_unit {
                acc[j * per_unit + e] = f32::new(0.0);
            }
        }
        // Strides in vectors (the rows of a head are contiguous).
        let k_base = (row * k.stride(0) + kv_head * k.stride(1)) / per_unit + lane;
        let v_base = (row * v.stride(0) + kv_head * v.stride(1)) / per_unit + lane;
        let (k_step, v_step) = (k.stride(2) / per_unit, v.stride(2) / per_unit);
        // After the sums that scatter a run's dot products, unit `lane` holds the score of key
        // `lane / lanes_per_key` of the run, as do the `lanes_per_key − 1` units beside it.
        let lanes_per_key = comptime!(plane_size / run);
        let own_key = lane / lanes_per_key;
        // Elements e of key i of the run at `i * per_unit + e`, in f32 (zero for masked keys).
        let mut key_parts = Array::<f32>::new(comptime!(run * per_unit));
        let mut value_parts = Array::<f32>::new(comptime!(run * per_unit));
        let mut masks = Array::<f32>::new(run);
        let mut dots = Array::<f32>::new(run);
        for first in range_stepped(plane * run, keys, planes * run) {
            // A run's keys past the last are masked. The run's mask values are loaded together
            // (every unit the same), then its unmasked keys and values together: a masked key is
            // neither read nor scored, and a run of masked keys is skipped.
            let mut live = false;
            #[unroll]
            for i in 0..run {
                let t = first + i;
                masks[i] = select(t < keys, f32::cast_from(mask[row * keys + select(t < keys, t, keys - 1)]), f32::new(f32::NEG_INFINITY));
                live = live || masks[i] > f32::new(f32::NEG_INFINITY);
            }
            if live {
                let own = first + own_key;
                let own_mask = select(own < keys, f32::cast_from(mask[row * keys + select(own < keys, own, keys - 1)]), f32::new(f32::NEG_INFINITY));
                #[unroll]
                for i in 0..run {
                    #[unroll]
                    for e in 0..per_unit {
                        key_parts[i * per_unit + e] = f32::new(0.0);
                        value_parts[i * per_unit + e] = f32::new(0.0);
                    }
                    if masks[i] > f32::new(f32::NEG_INFINITY) {
                        let key = first + i;
                        let (key_part, value_part) = (k[k_base + key * k_step], v[v_base + key * v_step]);
                        #[unroll]
                        for e in 0..per_unit {
                            key_parts[i * per_unit + e] = f32::cast_from(key_part.extract(e));
                            value_parts[i * per_unit + e] = f32::cast_from(value_part.extract(e));
                        }
                    }
                }
                #[unroll]
                for j in 0..rep {
                    #[unroll]
                    for i in 0..run {
                        let mut dot = 0.0f32;
                        #[unroll]
                        for e in 0..per_unit {
                            dot += query[j * per_unit + e] * key_parts[i * per_unit + e];
                        }
                        dots[i] = dot;
                    }
                    // Halving sums: each unit sends half of its keys' partial dots to the unit
                    // `mask` away and adds the other half's, until one key's sum is left.
                    #[unroll]
                    for r in 0..comptime!(run.ilog2() as usize) {
                        let half = comptime!(run >> (r + 1));
                        let upper = (lane & comptime!(plane_size >> (r + 1))) != 0;
                        #[unroll]
                        for i in 0..half {
                            let (low, high) = (dots[i], dots[i + half]);
                            dots[i] = select(upper, high, low) + plane_shuffle_xor(select(upper, low, high), comptime!((plane_size >> (r + 1)) as u32));
                        }
                    }
                    let mut score = dots[0];
                    #[unroll]
                    for r in 0..comptime!(lanes_per_key.ilog2() as usize) {
                        score += plane_shuffle_xor(score, comptime!((lanes_per_key >> (r + 1)) as u32));
                    }
                    score += own_mask;
                    // The run's maximum and sum of exponentials over its keys (units `lanes_per_key`
                    // apart), then its values weighted by each key's probability, shuffled from
                    // the key's units.
                    let mut run_best = score;
                    #[unroll]
                    for r in 0..comptime!(run.ilog2() as usize) {
                        run_best = f32::max(run_best, plane_shuffle_xor(run_best, comptime!((lanes_per_key << r) as u32)));
                    }
                    let new_best = f32::max(best[j], run_best);
                    let shrink = f32::exp(best[j] - new_best);
                    let p = f32::exp(score - new_best);
                    let mut run_total = p;
                    #[unroll]
                    for r in 0..comptime!(run.ilog2() as usize) {
                        run_total += plane_shuffle_xor(run_total, comptime!((lanes_per_key << r) as u32));
                    }
                    total[j] = total[j] * shrink + run_total;
                    best[j] = new_best;
                    #[unroll]
                    for e in 0..per_unit {
                        acc[j * per_unit + e] *= shrink;
                    }
                    #[unroll]
                    for i in 0..run {
                        let weight = plane_shuffle(p, comptime!((i * lanes_per_key) as u32));
                        #[unroll]
                        for e in 0..per_unit {
                            acc[j * per_unit + e] += weight * value_parts[i * per_unit + e];
                        }
                    }
                }
            }
        }
        // Plane p's results in shared memory: maxima and sums at `p * rep + j`, weighted sums at
        // `(p * rep + j) * head_dim + d`.
        let mut maxima = Shared::<[f32]>::new_slice(comptime!(planes * rep));
        let mut sums = Shared::<[f32]>::new_slice(comptime!(planes * rep));
        let mut weighted = Shared::<[f32]>::new_slice(comptime!(planes * rep * head_dim));
        #[unroll]
        for j in 0..rep {
            if lane == 0 {
                maxima[plane * rep + j] = best[j];
                sums[plane * rep + j] = total[j];
            }
            #[unroll]
            for e in 0..per_unit {
                weighted[(plane * rep + j) * head_dim + lane * per_unit + e] = acc[j * per_unit + e];
            }
        }
        sync_cube();
        // The units write the `rep` heads' outputs, one vector each.
        for unit in range_stepped(UNIT_POS as usize, comptime!(rep * plane_size), comptime!(planes * plane_size)) {
            let j = unit / plane_size;
            let part_lane = unit % plane_size;
            let mut overall = f32::new(-3.0e38);
            #[unroll]
            for p in 0..planes {
                overall = select(maxima[p * rep + j] > overall, maxima[p * rep + j], overall);
            }
            let mut norm = 0.0f32;
            let mut result = Vector::<F, N>::new(F::from_int(0));
            let mut values = Array::<f32>::new(per_unit);
            #[unroll]
            for e in 0..per_unit {
                values[e] = f32::new(0.0);
            }
            #[unroll]
            for p in 0..planes {
                let weight = f32::exp(maxima[p * rep + j] - overall);
                norm += sums[p * rep + j] * weight;
                #[unroll]
                for e in 0..per_unit {
                    values[e] += weighted[(p * rep + j) * head_dim + part_lane * per_unit + e] * weight;
                }
            }
            #[unroll]
            for e in 0..per_unit {
                result.insert(e, F::cast_from(values[e] / norm));
            }
            out[(row * q.shape(1) + kv_head * rep + j) * plane_size + part_lane] = result;
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn planes_shrink_to_fit_the_query_heads_of_a_kv_head_in_shared_memory() {
        // 1.5B (6 heads per kv head), 7B (7), Llama 3 8B (4): eight planes.
        assert_eq!([planes_for(6, 128), planes_for(7, 128), planes_for(4, 128)], [Some(8), Some(8), Some(8)]);
        assert_eq!(planes_for(12, 128), Some(4), "12 × 130 × 4 bytes per plane: 6 fit, a power of two is 4");
        assert_eq!(planes_for(40, 256), None, "one plane's 41,280 bytes exceed the budget");
        for rep in 1..=48 {
            if let Some(p) = planes_for(rep, 128) {
                assert!(p.is_power_of_two() && p <= PLANES && p * rep * 130 * 4 <= SHARED_BYTES, "{rep} heads: {p} planes");
            }
        }
    }

    #[test]
    fn the_kernel_takes_heads_that_split_into_a_planes_units_in_small_vectors() {
        // Qwen2.5 and Llama 3 heads of 128 on 32-unit planes (NVIDIA), 64-unit planes (AMD).
        assert_eq!(kernel_layout(32, 128, 6), Some(KernelLayout { planes: 8, per_unit: 4 }));
        assert_eq!(kernel_layout(64, 128, 4), Some(KernelLayout { planes: 8, per_unit: 2 }));
        assert_eq!(kernel_layout(32, 256, 1), Some(KernelLayout { planes: 8, per_unit: 8 }));
        assert_eq!(kernel_layout(8, 64, 2), Some(KernelLayout { planes: 8, per_unit: 8 }));
        assert_eq!(kernel_layout(32, 96, 6), None, "3 elements per unit is not a power of two");
        assert_eq!(kernel_layout(16, 256, 6), None, "16 elements per unit exceed the registers allowed");
        assert_eq!(kernel_layout(4, 16, 1), None, "a run of 8 keys needs at least 8 units");
        assert_eq!(kernel_layout(48, 96, 1), None, "a plane of 48 units cannot halve its sums down to one key");
        assert_eq!(kernel_layout(32, 256, 40), None, "40 query heads' results exceed shared memory");
    }

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
