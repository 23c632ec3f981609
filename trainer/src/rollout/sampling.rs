//! Token sampling on the device: greedy, or temperature with optional top-k and top-p, by the
//! inverse-CDF method with one uniform number per row drawn on the host from a seeded stream.
//! Only the sampled ids and their log-probabilities are read back, and the read can be started
//! without waiting for it ([`PendingSample`]), so that the next decode step is queued while the
//! device finishes this one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::transformer::on_cpu;

use super::sampling_kernel::sample_rows;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches
    /// `top_p` (1 keeps all).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (`None` keeps all).
    pub top_k: Option<usize>,
    /// Seed of the random streams (one per prompt and sample).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.0, top_p: 1.0, top_k: None, seed: 0 }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Errors on values outside their ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::InvalidArgument(format!("temperature must be ≥ 0, found {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidArgument(format!("top_p must be in (0, 1], found {}", self.top_p)));
        }
        if self.top_k == Some(0) {
            return Err(Error::InvalidArgument("top_k must be ≥ 1".into()));
        }
        Ok(())
    }

    /// Whether tokens are chosen by argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The random stream of one (prompt, sample) pair: independent of how rows are batched.
    pub fn stream(&self, prompt_key: u64, sample_index: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream((prompt_key << 24) ^ sample_index as u64);
        rng
    }
}

/// Samples one token per row of `logits` `[B, V]` (f32). `uniforms` holds one number in [0, 1)
/// per row (ignored when greedy). Returns the ids and their log-probabilities under the
/// temperature-scaled distribution (before top-k/top-p truncation; raw logits when greedy).
pub fn sample(logits: Tensor<2>, params: &SamplingParams, uniforms: &[f32], device: &Device) -> Result<(Vec<u32>, Vec<f32>)> {
    let sampler = DeviceSampler::new(params, logits.dims()[1], device, false);
    PendingSample::read(sampler.sample_pairs(logits, uniform_tensor(uniforms, device))).wait()
}

/// `uniforms` as the `[B, 1]` (f32) tensor [`DeviceSampler::sample`] takes.
pub fn uniform_tensor(uniforms: &[f32], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(uniforms.to_vec(), [uniforms.len(), 1]), device)
}

/// [`sample`] on the device, without read-back: everything it reads is a device tensor (the
/// ranks top-k compares against are made once, here), so that a captured decode step can
/// sample in its graph.
#[derive(Debug, Clone)]
pub struct DeviceSampler {
    params: SamplingParams,
    /// The columns' ranks `[1, V]`, when top-k cuts the vocabulary.
    rank: Option<Tensor<2, Int>>,
    /// Whether the one-launch sampling kernel ([`sample_rows`]) was asked for on a GPU backend;
    /// it samples the rows where sampling stays on the device (greedy, or without top-k and
    /// top-p).
    kernel: bool,
}

impl DeviceSampler {
    /// A sampler with `params` over a vocabulary of `vocab` ids, with the sampling kernel where
    /// `kernel` asks for it and it applies (see [`DeviceSampler::sample_pairs`]).
    pub fn new(params: &SamplingParams, vocab: usize, device: &Device, kernel: bool) -> Self {
        let rank = params.top_k.filter(|&k| k < vocab && !params.is_greedy()).map(|_| Tensor::<1, Int>::arange(0..vocab as i64, device).reshape([1, vocab]));
        Self { params: *params, rank, kernel: kernel && !on_cpu(device) }
    }

    /// The sampled ids and their log-probabilities side by side, `[B, 2]` in f32 (as
    /// [`id_logprob_pairs`] lays them out), from `logits [B, V]` (f32) with uniforms `u [B, 1]`:
    /// one launch of the sampling kernel where it runs, [`DeviceSampler::sample`] elsewhere.
    pub fn sample_pairs(&self, logits: Tensor<2>, u: Tensor<2>) -> Tensor<2> {
        if self.kernel && self.stays_on_device() && logits.dtype() == DType::F32 {
            return sample_rows(logits, u, self.params.temperature);
        }
        let (ids, logprobs) = self.sample(logits, u);
        id_logprob_pairs(ids, logprobs)
    }

    /// Whether sampling runs on the device throughout: not with top-p or top-k, whose sort burn
    /// 0.22 does on the host (a read-back of the probabilities and an upload of the order).
    pub fn stays_on_device(&self) -> bool {
        self.params.is_greedy() || (self.params.top_p >= 1.0 && self.rank.is_none())
    }

    /// The ids `[B, 1]` and their log-probabilities `[B, 1]` sampled from `logits [B, V]` (f32)
    /// with uniforms `u [B, 1]` (f32, ignored when greedy), as [`sample`] says.
    pub fn sample(&self, logits: Tensor<2>, u: Tensor<2>) -> (Tensor<2, Int>, Tensor<2>) {
        let params = &self.params;
        let [b, v] = logits.dims();
        if params.is_greedy() {
            let logp = row_log_softmax(logits);
            let ids = row_argmax(logp.clone());
            let lp = logp.gather(1, ids.clone());
            return (ids, lp);
        }
        let logp = row_log_softmax(logits.div_scalar(params.temperature));
        let probs = logp.clone().exp();
        let ids = if params.top_p < 1.0 || self.rank.is_some() {
            let (sorted, order) = probs.sort_descending_with_indices(1);
            let cum = prefix_sums(sorted.clone());
            let mut keep = (cum - sorted.clone()).lower_elem(params.top_p).float();
            if let (Some(rank), Some(k)) = (&self.rank, params.top_k) {
                keep = keep * rank.clone().expand([b, v]).lower_elem(k as i64).float();
            }
            let choice = inverse_cdf(sorted * keep, u);
            order.gather(1, choice)
        } else {
            inverse_cdf(probs, u)
        };
        let lp = logp.gather(1, ids.clone());
        (ids, lp)
    }
}

/// `ids [B, 1]` and `logprobs [B, 1]` side by side, `[B, 2]` in f32 (ids are exact below 2²⁴):
/// what [`PendingSample`] reads in one transfer.
pub fn id_logprob_pairs(ids: Tensor<2, Int>, logprobs: Tensor<2>) -> Tensor<2> {
    Tensor::cat(vec![ids.float().cast(DType::F32), logprobs.cast(DType::F32)], 1)
}

/// The read-back of sampled ids and log-probabilities, started on the device's stream: work
/// queued after [`PendingSample::read`] does not delay it.
pub struct PendingSample {
    read: ReadState,
}

/// A started read, or its result when it was ready at once.
enum ReadState {
    Started(Pin<Box<dyn Future<Output = std::result::Result<TensorData, String>> + Send>>),
    Done(std::result::Result<TensorData, String>),
}

impl PendingSample {
    /// Starts reading `pairs [B, 2]` (ids and log-probabilities, as [`id_logprob_pairs`] lays
    /// them out) in one transfer: the first poll of the read queues the copy after the work it
    /// depends on.
    pub fn read(both: Tensor<2>) -> Self {
        let mut read = Box::pin(async move { both.into_data_async().await.map_err(|e| e.to_string()) });
        let read = match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => ReadState::Done(result),
            Poll::Pending => ReadState::Started(read),
        };
        Self { read }
    }

    /// Waits for the read: the ids and log-probabilities of each row.
    pub fn wait(self) -> Result<(Vec<u32>, Vec<f32>)> {
        let data = match self.read {
            ReadState::Started(read) => cubecl::future::block_on(read),
            ReadState::Done(result) => result,
        };
        let values = data
            .map_err(|e| Error::Backend(format!("reading sampled tokens: {e}")))?
            .try_to_vec::<f32>()
            .map_err(|e| Error::Backend(format!("reading sampled tokens: {e:?}")))?;
        let ids = values.chunks_exact(2).map(|p| p[0] as u32).collect();
        let lps = values.chunks_exact(2).map(|p| p[1]).collect();
        Ok((ids, lps))
    }
}

/// Columns per block of the row-wise operations below.
///
/// Sampling works on a few rows of a whole vocabulary (64 × 151,936 at the 1.5B shape), a shape
/// burn's GPU kernels handle badly: its `cumsum` reads every earlier element for each output
/// (O(V²) per row), and its reductions over the long axis took 45 ms per sampling step on an
/// H200 (docs/performance.md). Every reduction and scan over the vocabulary is therefore done
/// in two levels, over `[B, V/128, 128]` blocks and then over the block results, which gives the
/// kernels `B·V/128` independent rows. Rows no longer than one block take the one-level
/// operations (the same arithmetic in the same order as before).
const SCAN_BLOCK: usize = 128;

/// `x` `[B, V]` as `[B, ⌈V/128⌉, 128]`, the last block padded with `fill`.
fn blocked(x: Tensor<2>, fill: f64) -> Tensor<3> {
    let [b, v] = x.dims();
    let blocks = v.div_ceil(SCAN_BLOCK);
    let padded = blocks * SCAN_BLOCK;
    let x = if padded > v {
        let pad = x.zeros_like().narrow(1, 0, padded - v).add_scalar(fill);
        Tensor::cat(vec![x, pad], 1)
    } else {
        x
    };
    x.reshape([b, blocks, SCAN_BLOCK])
}

/// The rows of `blocked` `[B, blocks, 128]` at block `index` `[B, 1]`: `[B, 128]`.
fn pick_block(blocked: Tensor<3>, index: Tensor<2, Int>) -> Tensor<2> {
    let [b, _, k] = blocked.dims();
    blocked.gather(1, index.reshape([b, 1, 1]).expand([b, 1, k])).reshape([b, k])
}

/// Inclusive prefix sums along each row of `x` `[B, V]`: within blocks, then over the block
/// totals (O(V·128 + (V/128)²) reads instead of burn's O(V²)).
pub fn prefix_sums(x: Tensor<2>) -> Tensor<2> {
    let [b, v] = x.dims();
    if v <= SCAN_BLOCK {
        return x.cumsum(1);
    }
    let x = blocked(x, 0.0);
    let [_, blocks, _] = x.dims();
    let within = x.clone().cumsum(2);
    let totals = x.sum_dim(2).reshape([b, blocks]);
    // Exclusive prefix of the block totals: what precedes each block.
    let before = totals.clone().cumsum(1) - totals;
    let out = within + before.reshape([b, blocks, 1]);
    out.reshape([b, blocks * SCAN_BLOCK]).narrow(1, 0, v)
}

/// `log_softmax` along each row of `x` `[B, V]` with two-level max and sum.
pub fn row_log_softmax(x: Tensor<2>) -> Tensor<2> {
    let [b, v] = x.dims();
    if v <= SCAN_BLOCK {
        return log_softmax(x, 1);
    }
    let x3 = blocked(x.clone(), f64::NEG_INFINITY);
    let max = x3.clone().max_dim(2).max_dim(1).reshape([b, 1]);
    let sum = (x3 - max.clone().reshape([b, 1, 1])).exp().sum_dim(2).sum_dim(1).reshape([b, 1]);
    x - max - sum.log()
}

/// Index `[B, 1]` of each row's largest value (the first one of ties), in two levels.
pub fn row_argmax(x: Tensor<2>) -> Tensor<2, Int> {
    let [b, v] = x.dims();
    if v <= SCAN_BLOCK {
        return x.argmax(1);
    }
    let x3 = blocked(x, f64::NEG_INFINITY);
    let [_, blocks, _] = x3.dims();
    let block = x3.clone().max_dim(2).reshape([b, blocks]).argmax(1);
    let within = pick_block(x3, block.clone()).argmax(1);
    block.mul_scalar(SCAN_BLOCK as i64) + within
}

/// Index `[B, 1]` of the first column whose cumulative weight exceeds `u · total` per row: the
/// block is found from the block totals, then the column inside it.
fn inverse_cdf(weights: Tensor<2>, u: Tensor<2>) -> Tensor<2, Int> {
    let [b, v] = weights.dims();
    if v <= SCAN_BLOCK {
        let cum = weights.cumsum(1);
        let target = cum.clone().narrow(1, v - 1, 1) * u;
        return cum.lower(target.expand([b, v])).int().sum_dim(1).clamp_max((v - 1) as i64);
    }
    let w3 = blocked(weights, 0.0);
    let [_, blocks, _] = w3.dims();
    let totals = w3.clone().sum_dim(2).reshape([b, blocks]);
    let ends = totals.clone().cumsum(1);
    let target = ends.clone().narrow(1, blocks - 1, 1) * u;
    let block = ends.clone().lower(target.clone().expand([b, blocks])).int().sum_dim(1).clamp_max((blocks - 1) as i64);
    let before = (ends - totals).gather(1, block.clone());
    let cum = pick_block(w3, block.clone()).cumsum(1) + before;
    let column = cum.lower(target.expand([b, SCAN_BLOCK])).int().sum_dim(1).clamp_max((SCAN_BLOCK - 1) as i64);
    (block.mul_scalar(SCAN_BLOCK as i64) + column).clamp_max((v - 1) as i64)
}

/// Draws the next uniform number of a row's stream (one per sampled token).
pub fn next_uniform(stream: &mut ChaCha8Rng) -> f32 {
    stream.random::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(rows: &[&[f32]]) -> Tensor<2> {
        let v = rows[0].len();
        let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), v]), &Device::flex())
    }

    #[test]
    fn greedy_takes_the_argmax_with_its_log_probability() {
        let (ids, lps) = sample(logits(&[&[0.0, 3.0, 1.0], &[5.0, 0.0, 0.0]]), &SamplingParams::greedy(), &[0.5, 0.5], &Device::flex()).unwrap();
        assert_eq!(ids, vec![1, 0]);
        let z: f32 = [0.0f32, 3.0, 1.0].iter().map(|x| x.exp()).sum();
        assert!((lps[0] - (3.0 - z.ln())).abs() < 1e-5);
    }

    #[test]
    fn inverse_cdf_picks_the_bucket_holding_u() {
        // probs ∝ [1, 2, 1] → CDF [.25, .75, 1].
        let l = [0.0f32, 2f32.ln(), 0.0];
        let params = SamplingParams::default();
        for (u, want) in [(0.1, 0), (0.3, 1), (0.74, 1), (0.8, 2)] {
            let (ids, _) = sample(logits(&[&l]), &params, &[u], &Device::flex()).unwrap();
            assert_eq!(ids, vec![want], "u = {u}");
        }
    }

    #[test]
    fn top_p_and_top_k_cut_the_tail() {
        // probs [0.5, 0.3, 0.2] (sorted order 0, 1, 2).
        let l = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let top_p = SamplingParams { top_p: 0.6, ..SamplingParams::default() };
        // Kept: tokens 0 and 1 (mass 0.8); u = 0.99 → token 1, never token 2.
        let (ids, lps) = sample(logits(&[&l]), &top_p, &[0.99], &Device::flex()).unwrap();
        assert_eq!(ids, vec![1]);
        assert!((lps[0] - 0.3f32.ln()).abs() < 1e-5, "log-prob is of the untruncated distribution");
        let top_k = SamplingParams { top_k: Some(1), ..SamplingParams::default() };
        let (ids, _) = sample(logits(&[&l]), &top_k, &[0.99], &Device::flex()).unwrap();
        assert_eq!(ids, vec![0]);
    }

    #[test]
    fn blocked_prefix_sums_match_a_float64_scan_across_blocks_and_padding() {
        for v in [5, SCAN_BLOCK, SCAN_BLOCK + 1, 7 * SCAN_BLOCK + 37] {
            let rows: Vec<Vec<f32>> = (0..3).map(|r| (0..v).map(|i| ((i * 37 + r * 11) % 101) as f32 / 101.0).collect()).collect();
            let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let got: Vec<f32> = prefix_sums(logits(&refs)).into_data().iter::<f32>().collect();
            for (r, row) in rows.iter().enumerate() {
                let mut acc = 0f64;
                for (i, x) in row.iter().enumerate() {
                    acc += f64::from(*x);
                    let g = f64::from(got[r * v + i]);
                    assert!((g - acc).abs() <= 1e-6 * acc.max(1.0), "v={v} row {r} col {i}: {g} vs {acc}");
                }
            }
        }
    }

    #[test]
    fn two_level_log_softmax_and_argmax_match_the_one_level_ones() {
        let v = 5 * SCAN_BLOCK + 3;
        let rows: Vec<Vec<f32>> = (0..3).map(|r| (0..v).map(|i| (((i * 53 + r * 29) % 97) as f32 - 48.0) / 7.0).collect()).collect();
        let mut rows = rows;
        rows[1][v - 1] = 50.0; // the maximum in the padded last block
        rows[2][SCAN_BLOCK] = 40.0; // a tie between two blocks: the first wins
        rows[2][3 * SCAN_BLOCK + 1] = 40.0;
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let x = logits(&refs);
        let want: Vec<f32> = log_softmax(x.clone(), 1).into_data().iter::<f32>().collect();
        let got: Vec<f32> = row_log_softmax(x.clone()).into_data().iter::<f32>().collect();
        let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "log-softmax differs by {worst}");
        let ids: Vec<i64> = row_argmax(x).into_data().iter::<i64>().collect();
        let firsts: Vec<i64> = rows
            .iter()
            .map(|r| {
                let m = r.iter().copied().fold(f32::MIN, f32::max);
                r.iter().position(|&y| y == m).map_or(-1, |p| p as i64)
            })
            .collect();
        assert_eq!(ids, firsts);
        assert_eq!(ids[1], (v - 1) as i64);
        assert_eq!(ids[2], SCAN_BLOCK as i64);
    }

    #[test]
    fn sampling_a_large_vocabulary_picks_the_bucket_holding_u() {
        // 3000 columns (24 blocks): mass 1 everywhere but 100 at column 2500.
        let v = 3000;
        let mut l = vec![0.0f32; v];
        l[2500] = 100f32.ln();
        let total = (v - 1) as f64 + 100.0;
        for (u, want) in [(0.1f32, (0.1 * total) as u32), (2499.5 / total as f32, 2499), (2550.0 / total as f32, 2500), (0.9999, 2999)] {
            let (ids, _) = sample(logits(&[&l]), &SamplingParams::default(), &[u], &Device::flex()).unwrap();
            assert_eq!(ids, vec![want], "u = {u}");
        }
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let p = SamplingParams { seed: 3, ..SamplingParams::default() };
        let a: Vec<f32> = (0..4).map(|_| p.stream(1, 2).random()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(p.stream(1, 2).random::<f32>(), p.stream(2, 1).random::<f32>());
        assert!(SamplingParams { top_p: 0.0, ..p }.validate().is_err());
        assert!(SamplingParams { temperature: -1.0, ..p }.validate().is_err());
    }
}
