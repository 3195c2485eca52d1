//! CPU-time budgets on binary analysis: analysing a binary (a Go program's tables, its
//! runtime layout from DWARF, a symbolizer's debug info) costs CPU that grows with what
//! the binary's owner wrote into it. A deadline in this thread's CPU time is set around
//! the analysis ([`with_budget`]); long loops ask [`exhausted`] now and then and give up
//! with a typed error when it passed, and work that cannot be stopped (a library call)
//! is measured, so that the next one over the same binary is not attempted.

use std::{cell::Cell, time::Duration};

/// CPU time one analysis of one Go executable may take (a real one takes tens of
/// milliseconds; the largest Go binaries known, a few hundred).
pub const GO_ANALYSIS_CPU: Duration = Duration::from_secs(2);
/// CPU time naming one stack's frames in one binary may take; a binary whose debug
/// info took longer is named from its symbol table from then on.
pub const SYMBOLIZE_CPU: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's CPU time at which the analysis under way must stop.
    static DEADLINE: Cell<Option<Duration>> = const { Cell::new(None) };
}

pub use crate::host::cpu::thread_cpu_time;

/// What a piece of work cost, and whether it ran out of its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spent {
    pub cpu: Duration,
    pub budget: Duration,
}

impl Spent {
    pub fn over(&self) -> bool {
        self.cpu > self.budget
    }
}

/// Runs `work` with a CPU deadline of `budget` from now (an enclosing deadline that
/// comes first stays); returns what it cost.
pub fn with_budget<T>(budget: Duration, work: impl FnOnce() -> T) -> (T, Spent) {
    let start = thread_cpu_time();
    let ours = start.saturating_add(budget);
    let outer = DEADLINE.with(Cell::get);
    DEADLINE.with(|d| d.set(Some(outer.map_or(ours, |o| o.min(ours)))));
    struct Restore(Option<Duration>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0;
            DEADLINE.with(|d| d.set(outer));
        }
    }
    let restore = Restore(outer);
    let out = work();
    drop(restore);
    let cpu = thread_cpu_time().saturating_sub(start);
    (out, Spent { cpu, budget })
}

/// Whether the analysis under way has used up its CPU budget (false outside one). A
/// system call: ask every few thousand steps, not at each.
pub fn exhausted() -> bool {
    DEADLINE
        .with(Cell::get)
        .is_some_and(|deadline| thread_cpu_time() > deadline)
}

/// Asks [`exhausted`] once every `every` calls of `tick` (a cheap counter in the loop).
pub struct Ticker {
    count: u32,
    every: u32,
}

impl Ticker {
    pub fn new(every: u32) -> Self {
        Self {
            count: 0,
            every: every.max(1),
        }
    }

    /// True once the budget is gone (checked every `every` calls).
    pub fn exhausted(&mut self) -> bool {
        self.count += 1;
        if self.count < self.every {
            return false;
        }
        self.count = 0;
        exhausted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a deadline stops a loop that asks, is gone afterwards, and that an
    /// inner budget cannot extend an outer one.
    #[test]
    fn deadlines_stop_loops_and_nest() {
        let ((), spent) = with_budget(Duration::from_millis(20), || {
            let mut ticker = Ticker::new(64);
            let mut x = 0u64;
            while !ticker.exhausted() {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        });
        assert!(spent.over(), "{spent:?}");
        assert!(spent.cpu < Duration::from_secs(2), "{spent:?}");
        assert!(!exhausted(), "no deadline outside");
        let (inner_over, _) = with_budget(Duration::ZERO, || {
            let (over, _) = with_budget(Duration::from_secs(60), || {
                let t = thread_cpu_time();
                while thread_cpu_time() == t {}
                exhausted()
            });
            over
        });
        assert!(inner_over, "the outer, earlier deadline holds inside");
    }
}
