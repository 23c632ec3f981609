//! Processes on one or several nodes as MPI ranks (Open MPI, MPICH, Slurm's `srun`), through the
//! `mpi` crate (rsmpi). Only the main thread of each rank calls MPI (`MPI_THREAD_FUNNELED`); the
//! per-device worker threads do not.

use mpi::collective::SystemOperation;
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::error::{Error, Result};
use crate::parallel::Collective;

/// `MPI_COMM_WORLD` of a job launched with `mpirun -np N trainer … --mpi` (or `srun`).
pub struct MpiWorld {
    // Finalises MPI when dropped, so it lives as long as the communicator.
    _universe: Universe,
    world: SimpleCommunicator,
}

impl std::fmt::Debug for MpiWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiWorld").field("rank", &self.rank()).field("size", &self.size()).finish()
    }
}

impl MpiWorld {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<Self> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::Backend("MPI is already initialised in this process".into()))?;
        if threading < Threading::Funneled {
            return Err(Error::Backend(format!(
                "the MPI library offers thread level {threading:?}; steerlab needs Funneled (MPI calls from the main thread while device threads run)"
            )));
        }
        let world = universe.world();
        Ok(Self { _universe: universe, world })
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        usize::try_from(self.world.rank()).unwrap_or(0)
    }

    fn size(&self) -> usize {
        usize::try_from(self.world.size()).unwrap_or(1)
    }

    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }
}
