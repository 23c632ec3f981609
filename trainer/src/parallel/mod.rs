//! Data parallelism: several devices in one process (one worker thread per device) and several
//! processes (MPI ranks, behind the `mpi` cargo feature).
//!
//! The trainable state is small and rollouts dominate an RL step, so the work is split by
//! prompts: each worker generates, scores and differentiates its contiguous share of the step's
//! prompts, the per-completion results and the gradients are summed on the host (in worker
//! order inside a process, then across processes by a [`Collective`]), and every process takes
//! the same optimizer step on the same sums. Sampling streams are keyed by problem index
//! ([`GenerationRequest::prompt_keys`](crate::rollout::GenerationRequest)), so the completions do
//! not depend on how the prompts were split.

#[cfg(feature = "mpi")]
pub mod mpi;

use std::ops::Range;
use std::str::FromStr;

use burn::tensor::Device;

use crate::device::{Backend, Precision};
use crate::error::{Error, Result};

/// Sums across the processes of a job. Called by the main thread of every process in the same
/// order (collective semantics); inside one process there is nothing to reduce.
pub trait Collective {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// Replaces `values` by their element-wise sum over all processes.
    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()>;
}

/// A job of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// The devices a process uses (`--devices 0,1,…`, `all`, or `default`: the backend's default
/// device, also what no flag means).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceSelection {
    /// One worker on the backend's default device (wgpu's choice of adapter, or the CPU).
    #[default]
    BackendDefault,
    /// Every GPU of the backend that the machine has (one worker on the CPU backend).
    All,
    /// These device indices (on the CPU backend, the number of workers; they share the cores).
    List(Vec<usize>),
}

impl FromStr for DeviceSelection {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim() {
            "all" => return Ok(Self::All),
            "default" => return Ok(Self::BackendDefault),
            _ => {}
        }
        let mut list = Vec::new();
        for part in s.split(',') {
            let index = part
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("`{part}` is not a device index: expected `all`, `default` or indices like `0,1,2`"))?;
            if list.contains(&index) {
                return Err(format!("device {index} is listed twice in `{s}`"));
            }
            list.push(index);
        }
        Ok(Self::List(list))
    }
}

impl std::fmt::Display for DeviceSelection {
    /// The text [`FromStr`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BackendDefault => f.write_str("default"),
            Self::All => f.write_str("all"),
            Self::List(list) => f.write_str(&list.iter().map(usize::to_string).collect::<Vec<_>>().join(",")),
        }
    }
}

impl DeviceSelection {
    /// The selected devices of `backend`, each checked to compute in `precision`.
    pub fn devices(&self, backend: Backend, precision: Precision) -> Result<Vec<Device>> {
        let indices = match self {
            Self::BackendDefault => return Ok(vec![backend.device_for(precision)?]),
            Self::List(list) => list.clone(),
            Self::All => (0..backend.device_count()?.max(1)).collect(),
        };
        indices.into_iter().map(|i| backend.device_at(i, precision)).collect()
    }
}

/// The contiguous share of `0..n` that part `part` of `parts` takes: the first `n % parts` parts
/// take one more item than the others.
pub fn share(n: usize, parts: usize, part: usize) -> Range<usize> {
    let parts = parts.max(1);
    let (base, extra) = (n / parts, n % parts);
    let start = part * base + part.min(extra);
    start..start + base + usize::from(part < extra)
}

/// Assembles a vector of `len` values from disjoint pieces held by the workers of all processes:
/// this process's `(offset, values)` pieces are placed, the rest is zero, and the sum over the
/// processes (exact, since every position is non-zero in at most one of them) is every piece in
/// place.
pub fn gather(collective: &dyn Collective, len: usize, pieces: &[(usize, Vec<f64>)]) -> Result<Vec<f64>> {
    let mut out = vec![0.0; len];
    for (offset, values) in pieces {
        let end = offset + values.len();
        if end > len {
            return Err(Error::InvalidArgument(format!("a piece at {offset}..{end} does not fit in {len} values")));
        }
        out[*offset..end].copy_from_slice(values);
    }
    collective.all_reduce_sum(&mut out)?;
    Ok(out)
}

/// Runs `f` on every item of `items` at once (one scoped thread each; inline for a single item)
/// and returns the results in item order.
pub fn for_each_worker<T: Send, R: Send>(items: &mut [T], f: impl Fn(usize, &mut T) -> Result<R> + Sync) -> Result<Vec<R>> {
    if let [only] = items {
        return Ok(vec![f(0, only)?]);
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.iter_mut().enumerate().map(|(i, item)| scope.spawn(move || f(i, item))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Backend("a device worker thread panicked".into()))))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_item_once_and_differ_by_at_most_one() {
        for n in 0..20 {
            for parts in 1..6 {
                let ranges: Vec<Range<usize>> = (0..parts).map(|p| share(n, parts, p)).collect();
                let covered: Vec<usize> = ranges.iter().flat_map(Clone::clone).collect();
                assert_eq!(covered, (0..n).collect::<Vec<_>>(), "n={n} parts={parts}");
                let sizes: Vec<usize> = ranges.iter().map(ExactSizeIterator::len).collect();
                assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1, "{sizes:?}");
            }
        }
        assert_eq!(share(7, 3, 0), 0..3);
        assert_eq!(share(7, 3, 2), 5..7);
    }

    #[test]
    fn device_selections_parse_lists_and_all_and_reject_garbage() {
        assert_eq!("0,1, 3".parse::<DeviceSelection>(), Ok(DeviceSelection::List(vec![0, 1, 3])));
        assert_eq!("all".parse::<DeviceSelection>(), Ok(DeviceSelection::All));
        assert_eq!("default".parse::<DeviceSelection>(), Ok(DeviceSelection::default()));
        for selection in [DeviceSelection::BackendDefault, DeviceSelection::All, DeviceSelection::List(vec![2, 0])] {
            assert_eq!(selection.to_string().parse::<DeviceSelection>(), Ok(selection));
        }
        let err = "0,gpu1".parse::<DeviceSelection>().unwrap_err();
        assert!(err.contains("`gpu1` is not a device index"), "{err}");
        let err = "1,1".parse::<DeviceSelection>().unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
    }

    #[test]
    fn gather_places_pieces_and_refuses_overflow() {
        let out = gather(&SingleProcess, 5, &[(3, vec![7.0, 8.0]), (0, vec![1.0])]).expect("gather");
        assert_eq!(out, vec![1.0, 0.0, 0.0, 7.0, 8.0]);
        assert!(gather(&SingleProcess, 2, &[(1, vec![1.0, 2.0])]).is_err());
    }

    #[test]
    fn workers_run_in_item_order_and_report_the_first_error() {
        let mut items = vec![1, 2, 3];
        let out = for_each_worker(&mut items, |i, x| {
            *x *= 10;
            Ok(i + *x)
        })
        .expect("workers");
        assert_eq!(out, vec![10, 21, 32]);
        assert_eq!(items, vec![10, 20, 30]);
        let err = for_each_worker(&mut items, |i, _| if i == 1 { Err(Error::InvalidArgument("worker 1".into())) } else { Ok(()) });
        assert!(err.is_err_and(|e| e.to_string().contains("worker 1")));
    }
}
