//! Work budget shared by every stage of one verification.
//!
//! Every loop that can grow with the input (scanning, parsing, evaluating, matching) calls
//! [`Budget::tick`]; once the step allowance or the wall-clock deadline is used up, the stage gives
//! up and the answer is judged incorrect. This is what bounds the time of a single verification,
//! whatever the input (see `docs/verifier.md`, "Limits").

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Wall-clock allowance for one verification (gold and prediction together).
pub const TIME_LIMIT: Duration = Duration::from_millis(40);

/// Step allowance for one verification; a step is one unit of scanning, parsing or evaluation work.
pub const STEP_LIMIT: u64 = 4_000_000;

/// How many steps pass between two reads of the clock.
const CLOCK_EVERY: u64 = 512;

/// Marker error: the budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted;

/// A step counter with a deadline.
#[derive(Debug)]
pub(crate) struct Budget {
    steps: Cell<u64>,
    limit: u64,
    deadline: Instant,
    exhausted: Cell<bool>,
}

impl Budget {
    /// A budget with the default limits ([`TIME_LIMIT`], [`STEP_LIMIT`]).
    pub(crate) fn new() -> Self {
        Self::with_limits(TIME_LIMIT, STEP_LIMIT)
    }

    /// A budget with explicit limits.
    pub(crate) fn with_limits(time: Duration, steps: u64) -> Self {
        Self {
            steps: Cell::new(0),
            limit: steps,
            deadline: Instant::now() + time,
            exhausted: Cell::new(false),
        }
    }

    /// Spends `n` steps; fails once the budget is exhausted (and keeps failing afterwards).
    pub(crate) fn tick(&self, n: u64) -> Result<(), Exhausted> {
        if self.exhausted.get() {
            return Err(Exhausted);
        }
        let before = self.steps.get();
        let after = before.saturating_add(n);
        self.steps.set(after);
        if after > self.limit
            || (before / CLOCK_EVERY != after / CLOCK_EVERY && Instant::now() > self.deadline)
        {
            self.exhausted.set(true);
            return Err(Exhausted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_fails_once_its_steps_are_spent_and_stays_failed() {
        let budget = Budget::with_limits(Duration::from_secs(60), 10);
        assert!(budget.tick(5).is_ok());
        assert!(budget.tick(5).is_ok());
        assert!(budget.tick(1).is_err());
        assert!(budget.tick(0).is_err());
    }

    #[test]
    fn a_budget_fails_after_its_deadline() {
        let budget = Budget::with_limits(Duration::from_millis(0), u64::MAX);
        std::thread::sleep(Duration::from_millis(2));
        assert!(budget.tick(CLOCK_EVERY).is_err());
    }
}
