//! Decode steps recorded once as a graph and replayed.
//!
//! A decode step of the 1.5B shape is about 264 launches, and issuing them through burn (fusion's
//! planning, CubeCL's launch bookkeeping, wgpu's bind groups) took the host about as long as the
//! GPU took to run them (docs/performance.md). CubeCL's wgpu runtime records a step's launches
//! once, resolved down to pipelines and bind groups, and replays them for a fraction of that
//! work (burn's graph capture). The recorded launches read and write the buffers they were
//! recorded with, so:
//! - the step's inputs (the sampled ids, the step's cache column, the sampling uniforms) live in
//!   device buffers that are overwritten in place before each replay ([`overwrite`]);
//! - nothing inside the step may upload from the host (a write inside a capture window dooms
//!   it): [`CausalLm::decode_step`] computes the positions and the mask on the device and writes
//!   the KV cache at a position read from a device tensor, and [`DeviceSampler`] keeps its
//!   constants on the device;
//! - the step has the same shapes every time: attention reads the whole cache, masked past the
//!   filled positions.
//!
//! Where the backend records no graph (the CPU's flex), a replay runs the step again, so the same
//! code serves every backend and the CPU tests check its arithmetic.

use burn::backend::{Backend, BackendGraph, Dispatch, DispatchDevice};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::overwrite::overwrite;
use crate::model::transformer::DecodeStep;
use crate::model::{CausalLm, KvCache};

use super::sampling::{DeviceSampler, PendingSample, uniform_tensor};

/// Runs of a step before its capture: the first run plans and autotunes fusion's kernels (other
/// buffers than later runs), the next ones settle the allocations the recording reuses.
const WARMUP_RUNS: usize = 3;

/// What became of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recording {
    /// The backend recorded the step: replays skip the per-launch host work.
    Recorded,
    /// The backend records no graphs (the CPU): replays run the step again.
    Unsupported,
    /// The backend refused the recording, for this reason: replays run the step again.
    Failed(String),
}

/// A step recorded as a graph where the backend can, with the output of its recorded run.
pub(crate) struct StepGraph<T> {
    device: Device,
    recorded: Option<BackendGraph<Dispatch>>,
    output: T,
}

impl<T> StepGraph<T> {
    /// Runs `step` and, on a backend that records graphs, records it: [`WARMUP_RUNS`] runs, then
    /// one under capture. `step` must compute the same thing every time it runs (its inputs
    /// change between replays, never inside one).
    pub(crate) fn capture(device: &Device, mut step: impl FnMut() -> T) -> (Self, Recording) {
        let unrecorded = |output, recording| (Self { device: device.clone(), recorded: None, output }, recording);
        if matches!(device.as_dispatch(), DispatchDevice::Flex(_)) {
            return unrecorded(step(), Recording::Unsupported);
        }
        let dispatch = device.as_dispatch();
        let failed = |e: &dyn std::fmt::Display| Recording::Failed(e.to_string());
        if let Err(e) = Dispatch::graph_prepare(dispatch) {
            return unrecorded(step(), failed(&e));
        }
        for _ in 0..WARMUP_RUNS {
            // Held across the sync: fusion skips work whose result is dropped before it runs.
            let output = step();
            if let Err(e) = device.sync() {
                // Closing the prepared capture gives the stream back.
                let _ = Dispatch::graph_stop_capture(dispatch);
                return unrecorded(output, failed(&e));
            }
        }
        if let Err(e) = Dispatch::graph_start_capture(dispatch) {
            let _ = Dispatch::graph_stop_capture(dispatch);
            return unrecorded(step(), failed(&e));
        }
        let output = step();
        match Dispatch::graph_stop_capture(dispatch) {
            Ok(graph) => (Self { device: device.clone(), recorded: Some(graph), output }, Recording::Recorded),
            // The refused recording's launches never run: run the step again for its output.
            Err(e) => unrecorded(step(), failed(&e)),
        }
    }

    /// The output of the last run or replay.
    pub(crate) fn output(&self) -> &T {
        &self.output
    }

    /// Replays the recorded step (or runs `step` where none was recorded) and returns its output.
    ///
    /// # Safety
    ///
    /// Every tensor the recorded step read or wrote is still alive (dropping one would let a
    /// replay write into memory something else now uses), and only this thread uses them.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn replay(&mut self, step: impl FnOnce() -> T) -> Result<&T> {
        match &self.recorded {
            // Safety: forwarded to the caller.
            Some(graph) => unsafe { Dispatch::graph_replay(self.device.as_dispatch(), graph) }
                .map_err(|e| Error::Backend(format!("replaying a recorded decode step: {e}")))?,
            None => self.output = step(),
        }
        Ok(&self.output)
    }
}

/// The outputs of one recorded decode step: the sampled ids `[B, 1]` (f32, the next step's
/// input) and the ids with their log-probabilities `[B, 2]` (what the host reads).
type StepOutput = (Tensor<2>, Tensor<2>);

/// Decoding one batch with a recorded step: owns the KV cache and the step's input buffers for
/// as long as the recording lives, so that nothing a replay touches can be dropped or moved
/// under it.
pub struct GraphDecoder<'m> {
    model: &'m CausalLm,
    step: DecodeStep,
    sampler: DeviceSampler,
    cache: KvCache,
    /// The step's inputs: ids `[B, 1]`, the cache column `[1]` and the uniforms `[B, 1]` (f32).
    ids: Tensor<2>,
    column: Tensor<1>,
    uniforms: Tensor<2>,
    graph: StepGraph<StepOutput>,
    recording: Recording,
}

impl<'m> GraphDecoder<'m> {
    /// Records the decode step of `ids [B, 1]` at the next position of `cache` with
    /// `uniforms` (one per row) and queues it: the decoder and the read of the sampled ids.
    pub fn start(model: &'m CausalLm, step: DecodeStep, sampler: DeviceSampler, cache: KvCache, ids: Tensor<2, Int>, uniforms: &[f32]) -> Result<(Self, PendingSample)> {
        let device = &model.device;
        let column = position_tensor(cache.len(), device);
        let (ids, uniforms) = (ids.float(), uniform_tensor(uniforms, device));
        let mut cache = cache;
        let (graph, recording) = StepGraph::capture(device, || run_step(model, &step, &sampler, &ids, &column, &uniforms, &mut cache));
        if let Recording::Failed(reason) = &recording {
            tracing::warn!(%reason, "the backend did not record the decode step; each step is issued launch by launch");
        }
        let mut decoder = Self { model, step, sampler, cache, ids, column, uniforms, graph, recording };
        let pending = decoder.queue_recorded()?;
        Ok((decoder, pending))
    }

    /// What became of the recording.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Queues the next decode step (its input: the previous step's ids) with `uniforms`, one per
    /// row: the read of its sampled ids.
    pub fn next(&mut self, uniforms: &[f32]) -> Result<PendingSample> {
        let device = &self.model.device;
        let (ids, _) = self.graph.output().clone();
        self.ids = overwrite(self.ids.clone(), ids);
        self.column = overwrite(self.column.clone(), position_tensor(self.cache.len(), device));
        self.uniforms = overwrite(self.uniforms.clone(), uniform_tensor(uniforms, device));
        let Self { model, step, sampler, cache, ids, column, uniforms, graph, .. } = self;
        // Safety: the recorded step reads the model's weights (borrowed for `'m`), the step's
        // constants, the sampler's, the cache and the input buffers, all owned by `self` (the
        // inputs overwritten in place, never replaced by other buffers), and writes its outputs
        // (held by `graph`) and the cache; `self` is used from one thread.
        #[allow(unsafe_code)]
        unsafe {
            graph.replay(|| run_step(model, step, sampler, ids, column, uniforms, cache))?;
        }
        self.queue_recorded()
    }

    /// Counts the position the step just queued wrote, and starts reading its sampled ids.
    fn queue_recorded(&mut self) -> Result<PendingSample> {
        self.cache.advance(1)?;
        Ok(PendingSample::read(self.graph.output().1.clone()))
    }

    /// The cache and the ids `[B, 1]` (f32) the last queued step sampled, once decoding with this
    /// recording ends (the batch shrinks, or generation is done).
    pub fn finish(self) -> (KvCache, Tensor<2>) {
        (self.cache, self.graph.output.0)
    }
}

/// One decode step and its sampling: the outputs of [`StepOutput`].
fn run_step(model: &CausalLm, step: &DecodeStep, sampler: &DeviceSampler, ids: &Tensor<2>, column: &Tensor<1>, uniforms: &Tensor<2>, cache: &mut KvCache) -> StepOutput {
    let hidden = model.decode_step(step, ids, column, cache);
    let b = hidden.dims()[0];
    let logits = model.logits(hidden).reshape([b, model.config.vocab_size]);
    let pairs = sampler.sample_pairs(logits, uniforms.clone());
    (pairs.clone().narrow(1, 0, 1), pairs)
}

/// `position [1]` (f32) on `device`: the column [`CausalLm::decode_step`] takes.
pub fn position_tensor(position: usize, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(vec![position as f32], [1]), device)
}
