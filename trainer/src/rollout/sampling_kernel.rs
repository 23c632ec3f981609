//! Sampling one token per row as one CubeCL kernel: greedy, or by the inverse-CDF method with a
//! uniform number per row (temperature, no top-k or top-p), with the sampled token's
//! log-probability, written as `[B, 2]` (id, log-probability) in f32.
//!
//! Composed of burn's operations, sampling a row of the vocabulary (151,936 columns at the 1.5B
//! shape) takes a log-softmax, an exponential, block sums and prefix sums in two levels and
//! gathers: 7 reductions of 58 µs each and a dozen smaller launches per decode step of 64 rows
//! on an H200, 0.5 ms in all (docs/performance.md). Here one cube samples one row in one launch
//! that reads the row once: its planes (warps) take runs of blocks of `plane size × vector`
//! columns, each unit loading one vector of a block, and keep each block's maximum and sum of
//! exponentials (relative to the block's maximum) in shared memory. The row's maximum and total
//! follow from those; one plane then finds the block whose cumulative weight reaches `u · total`
//! (each unit summing a range of blocks, a prefix sum across the plane, and the unit whose range
//! holds the target scanning it), reads that block again and finds the column inside it. The
//! id is the first column whose cumulative weight reaches `u · total`, as in the composed
//! sampler, so the same `u` picks the same token up to rounding. Greedy rows take the first
//! column of the largest logit. The log-probability is `logit / T − max − ln total` (`T = 1`
//! when greedy).
//!
//! It runs on CubeCL backends with plane operations where a row splits into whole blocks of at
//! most [`MAX_BLOCKS`]; elsewhere on CubeCL backends one unit per row samples it in sequence
//! (the same definition, for devices without plane operations such as CPU Vulkan drivers). The
//! CPU backend (flex) keeps burn's operations ([`DeviceSampler`](super::sampling::DeviceSampler)
//! routes it). The kernel is checked against a float64 recomputation on the device by
//! `trainer bench kernels`.
//!
//! On by default on GPU backends ([`CausalLm::sampling_kernel`](crate::model::CausalLm::sampling_kernel)).
//! On an H200 it places every id as the recomputation does and its log-probabilities are within
//! 9e-7, and it takes a 1.5B decode step of 64 rows from 6.08 to 5.88 ms (docs/performance.md).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::features::Plane;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::{sample_rows_kernel, sample_rows_serial_kernel};

/// Planes per cube of the kernel.
const PLANES: usize = 32;
/// Most blocks per row (their maxima and sums live in shared memory: 16 KiB).
pub const MAX_BLOCKS: usize = 2048;
/// Blocks whose loads a plane issues together.
const BLOCK_RUN: usize = 4;

/// One sampled token per row, routed to each CubeCL backend.
#[backend_extension(Cube, Fusion)]
pub trait SampleRowsOps: Backend {
    /// `logits [B, V]` and `uniforms [B, 1]` (both f32) → `[B, 2]` (f32): per row the id and its
    /// log-probability, greedy when `greedy` (then `inverse_temperature` is ignored).
    #[fusion(dtype = logits, shape = pairs_shape(logits))]
    fn sample_rows(logits: FloatTensor<Self>, uniforms: FloatTensor<Self>, inverse_temperature: f32, greedy: bool) -> FloatTensor<Self>;
}

/// `[B, 2]` for `logits [B, V]`.
fn pairs_shape(logits: &Shape) -> Shape {
    Shape::new([logits[0], 2])
}

/// How the kernel splits a row of `columns` logits on planes of `plane` units: the elements per
/// unit of a block (`vector`, 4, 2 or 1: the largest with whole blocks), or `None` where no
/// vector gives whole blocks, or they are more than [`MAX_BLOCKS`].
fn block_vector(plane: usize, columns: usize) -> Option<usize> {
    [4, 2, 1].into_iter().find(|v| columns.is_multiple_of(plane * v)).filter(|v| columns / (plane * v) <= MAX_BLOCKS)
}

impl SampleRowsOps for CubeBackend {
    fn sample_rows(logits: FloatTensor<Self>, uniforms: FloatTensor<Self>, inverse_temperature: f32, greedy: bool) -> FloatTensor<Self> {
        let (logits, uniforms) = (into_contiguous(logits), into_contiguous(uniforms));
        let [rows, columns] = logits.meta.shape().dims();
        let client = logits.client.clone();
        let out = empty_device_dtype(client.clone(), logits.device.clone(), pairs_shape(logits.meta.shape()), DType::F32);
        let plane = client.properties().hardware.plane_size_max.max(1) as usize;
        let dtype = burn::backend::cubecl::dtype_to_storage_type(logits.dtype);
        let address = [&logits, &uniforms, &out].iter().fold(AddressType::U32, |a, t| a.max(t.required_address_type()));
        let vector = block_vector(plane, columns).filter(|_| plane.is_power_of_two() && client.properties().features.plane.contains(Plane::Ops));
        match vector {
            Some(vector) => sample_rows_kernel::launch(
                &client,
                CubeCount::new_1d(rows as u32),
                CubeDim::new_2d(plane as u32, PLANES as u32),
                address,
                vector,
                logits.into_tensor_arg(),
                uniforms.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                inverse_temperature,
                greedy,
                PLANES,
                plane,
                vector,
                dtype,
            ),
            None => {
                tracing::debug!(plane, columns, "sampling one unit per row: no plane operations, or no whole blocks");
                sample_rows_serial_kernel::launch(
                    &client,
                    CubeCount::new_1d(rows as u32),
                    CubeDim::new_1d(1),
                    address,
                    logits.into_tensor_arg(),
                    uniforms.into_tensor_arg(),
                    out.clone().into_tensor_arg(),
                    inverse_temperature,
                    greedy,
                    dtype,
                )
            }
        }
        out
    }
}

/// Per row of `logits [B, V]` (f32, no autodiff) the sampled id and its log-probability, `[B, 2]`
/// in f32 (see the module): greedy when `temperature` is 0, else by the inverse CDF of
/// `softmax(logits / temperature)` at `uniforms [B, 1]`. CubeCL backends only (the CPU's flex
/// has no such operation: [`DeviceSampler`](super::sampling::DeviceSampler) routes it).
pub(crate) fn sample_rows(logits: Tensor<2>, uniforms: Tensor<2>, temperature: f32) -> Tensor<2> {
    let greedy = temperature == 0.0;
    let inverse_temperature = if greedy { 1.0 } else { 1.0 / temperature };
    Tensor::from_dispatch(Dispatch::sample_rows(logits.into_dispatch(), uniforms.into_dispatch(), inverse_temperature, greedy))
}

/// The kernels, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    use super::{BLOCK_RUN, MAX_BLOCKS};

    /// A larger magnitude than any logit, finite (so that differences of it stay numbers).
    const FAR: f32 = 3.0e38;

    /// Cube `r` samples row `r` of `logits [B, V]` (vectors of `N = vector` elements; blocks of
    /// `plane_size` vectors, `V / (plane_size · vector)` of them) into `pairs[r] = (id, logp)`.
    /// Plane `p` of `planes` takes blocks `p · run, (p + planes) · run, …`, `run` at a time,
    /// scaled by `inverse_temperature`, and keeps each block's maximum and sum of
    /// `exp(x − block max)` in shared memory and its own largest value (with its first column
    /// when `greedy`); plane 0 then finds the row's maximum and total and, unless `greedy`, the
    /// first column whose cumulative weight reaches `uniforms[r] · total`.
    #[allow(clippy::too_many_arguments)]
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn sample_rows_kernel<F: Float, N: Size>(
        logits: &Tensor<Vector<F, N>>,
        uniforms: &Tensor<F>,
        pairs: &mut Tensor<f32>,
        inverse_temperature: f32,
        #[comptime] greedy: bool,
        #[comptime] planes: usize,
        #[comptime] plane_size: usize,
        #[comptime] vector: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let block_width = comptime!(plane_size * vector);
        let row = CUBE_POS_X as usize;
        let lane = UNIT_POS_X as usize;
        let plane = UNIT_POS_Y as usize;
        // Shapes are in elements, indices in vectors.
        let columns = logits.shape(1);
        let row_vectors = columns / vector;
        let blocks = row_vectors / plane_size;
        let base = row * row_vectors;
        let mut block_max = Shared::<[f32]>::new_slice(MAX_BLOCKS);
        let mut block_sum = Shared::<[f32]>::new_slice(MAX_BLOCKS);
        let mut plane_best = Shared::<[f32]>::new_slice(planes);
        let mut plane_arg = Shared::<[f32]>::new_slice(planes);
        let mut best = f32::new(-FAR);
        let mut arg = f32::new(0.0);
        let mut parts = Array::<Vector<F, N>>::new(BLOCK_RUN);
        for first in range_stepped(plane * BLOCK_RUN, blocks, planes * BLOCK_RUN) {
            #[unroll]
            for i in 0..BLOCK_RUN {
                if first + i < blocks {
                    parts[i] = logits[base + (first + i) * plane_size + lane];
                }
            }
            #[unroll]
            for i in 0..BLOCK_RUN {
                let b = first + i;
                if b < blocks {
                    let part = parts[i];
                    let mut values = Array::<f32>::new(vector);
                    let mut local = f32::new(-FAR);
                    #[unroll]
                    for e in 0..vector {
                        values[e] = f32::cast_from(part.extract(e)) * inverse_temperature;
                        local = f32::max(local, values[e]);
                    }
                    let top = plane_max(local);
                    let mut sum = 0.0f32;
                    #[unroll]
                    for e in 0..vector {
                        sum += f32::exp(values[e] - top);
                    }
                    let total = plane_sum(sum);
                    if lane == 0 {
                        block_max[b] = top;
                        block_sum[b] = total;
                    }
                    if top > best {
                        if greedy {
                            // The block's first column holding its maximum.
                            let mut column = f32::new(FAR);
                            #[unroll]
                            for e in 0..vector {
                                let at = f32::cast_from((b * plane_size + lane) * vector + e);
                                column = select(values[e] == top && column == f32::new(FAR), at, column);
                            }
                            arg = plane_min(column);
                        }
                        best = top;
                    }
                }
            }
        }
        if lane == 0 {
            plane_best[plane] = best;
            plane_arg[plane] = arg;
        }
        sync_cube();
        if plane == 0 {
            // The row's maximum (and its first column: the smallest among the planes' ties).
            let mut top = f32::new(-FAR);
            let mut top_arg = f32::new(0.0);
            #[unroll]
            for p in 0..planes {
                let (value, at) = (plane_best[p], plane_arg[p]);
                if value > top || (value == top && at < top_arg) {
                    top = value;
                    top_arg = at;
                }
            }
            // Unit `lane` sums the weights of blocks `start..end`.
            let per_lane = blocks.div_ceil(plane_size);
            let start = lane * per_lane;
            let end = select(start + per_lane < blocks, start + per_lane, blocks);
            let mut range = 0.0f32;
            for b in start..end {
                range += block_sum[b] * f32::exp(block_max[b] - top);
            }
            let total = plane_sum(range);
            if greedy {
                if lane == 0 {
                    pairs[row * 2] = top_arg;
                    pairs[row * 2 + 1] = -f32::ln(total);
                }
            } else {
                let target = f32::cast_from(uniforms[row]) * total;
                let before_lane = plane_exclusive_sum(range);
                // The first unit whose ranges' cumulative weight reaches the target scans its
                // range for the block that does.
                let below = plane_sum(select(before_lane + range < target, 1u32, 0u32));
                let holder = select(below < plane_size as u32, below, (plane_size - 1) as u32);
                let mut chosen = u32::cast_from(blocks);
                let mut chosen_before = 0.0f32;
                if u32::cast_from(lane) == holder {
                    let mut cumulative = before_lane;
                    for b in start..end {
                        let weight = block_sum[b] * f32::exp(block_max[b] - top);
                        if chosen == u32::cast_from(blocks) && cumulative + weight >= target {
                            chosen = u32::cast_from(b);
                            chosen_before = cumulative;
                        }
                        cumulative += weight;
                    }
                }
                let mut block = usize::cast_from(plane_shuffle(chosen, holder));
                let mut before = plane_shuffle(chosen_before, holder);
                if block == blocks {
                    // Rounding put the target past the last block's end.
                    block = blocks - 1;
                    before = total - block_sum[block] * f32::exp(block_max[block] - top);
                }
                let part = logits[base + block * plane_size + lane];
                let mut weights = Array::<f32>::new(vector);
                let mut lane_sum = 0.0f32;
                #[unroll]
                for e in 0..vector {
                    weights[e] = f32::exp(f32::cast_from(part.extract(e)) * inverse_temperature - top);
                    lane_sum += weights[e];
                }
                let mut cumulative = before + plane_exclusive_sum(lane_sum);
                let mut count = 0u32;
                #[unroll]
                for e in 0..vector {
                    cumulative += weights[e];
                    count += select(cumulative < target, 1u32, 0u32);
                }
                let within = usize::cast_from(plane_sum(count));
                let column = block * block_width + select(within < block_width, within, block_width - 1);
                let id = select(column < columns, column, columns - 1);
                let mut picked = 0.0f32;
                #[unroll]
                for e in 0..vector {
                    let at = (block * plane_size + lane) * vector + e;
                    picked += select(at == id, f32::cast_from(part.extract(e)) * inverse_temperature, 0.0);
                }
                let logit = plane_sum(picked);
                if lane == 0 {
                    pairs[row * 2] = f32::cast_from(id);
                    pairs[row * 2 + 1] = logit - top - f32::ln(total);
                }
            }
        }
    }

    /// Cube `r`'s one unit samples row `r` of `logits [B, V]` in sequence, as
    /// [`sample_rows_kernel`] defines it: the first column whose cumulative weight
    /// `exp(x · inverse_temperature − max)` reaches `uniforms[r] · total` (or the first largest
    /// column when `greedy`).
    #[allow(clippy::too_many_arguments)]
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn sample_rows_serial_kernel<F: Float>(
        logits: &Tensor<F>,
        uniforms: &Tensor<F>,
        pairs: &mut Tensor<f32>,
        inverse_temperature: f32,
        #[comptime] greedy: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let row = CUBE_POS_X as usize;
        let columns = logits.shape(1);
        let base = row * columns;
        let mut top = f32::new(-FAR);
        let mut top_arg = 0usize;
        for c in 0..columns {
            let value = f32::cast_from(logits[base + c]) * inverse_temperature;
            if value > top {
                top = value;
                top_arg = c;
            }
        }
        let mut total = 0.0f32;
        for c in 0..columns {
            total += f32::exp(f32::cast_from(logits[base + c]) * inverse_temperature - top);
        }
        let mut id = top_arg;
        if !greedy {
            let target = f32::cast_from(uniforms[row]) * total;
            let mut cumulative = 0.0f32;
            let mut count = 0usize;
            for c in 0..columns {
                cumulative += f32::exp(f32::cast_from(logits[base + c]) * inverse_temperature - top);
                count += select(cumulative < target, 1usize, 0usize);
            }
            id = select(count < columns, count, columns - 1);
        }
        pairs[row * 2] = f32::cast_from(id);
        pairs[row * 2 + 1] = f32::cast_from(logits[base + id]) * inverse_temperature - top - f32::ln(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_into_the_widest_vectors_that_give_whole_blocks() {
        // Qwen2.5's 151,936 columns: 1,187 blocks of 32 units × 4; Llama 3's 128,256: 1,002.
        assert_eq!(block_vector(32, 151_936), Some(4));
        assert_eq!(block_vector(32, 128_256), Some(4));
        assert_eq!(block_vector(32, 64 * 3), Some(2), "192 columns: 3 blocks of 32 × 2");
        assert_eq!(block_vector(32, 400), None, "400 is no multiple of 32");
        assert_eq!(block_vector(8, 400), Some(2));
        assert_eq!(block_vector(32, 32 * 4 * (MAX_BLOCKS + 1)), None, "more blocks than shared memory holds");
    }
}
