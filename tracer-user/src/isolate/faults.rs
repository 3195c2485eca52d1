//! The processes whose analysis failed, shared by every source and the census: a
//! process whose analysis panicked (in any step) is not analysed again, by anyone, while
//! it lives; the next try would most likely panic alike, and each try would log again.

use std::{collections::HashMap, sync::Mutex};

use thiserror::Error;

use super::catch::{AnalysisPanic, Step, per_process};
use crate::model::ProcessKey;

/// Why the analysis of a process gave nothing at a scan (it is then reported unreadable
/// with this reason, never as healthy).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProcessFault {
    /// A step of its analysis hit a bug (a panic, caught): it is not analysed again
    /// while it lives.
    #[error(transparent)]
    Panic(#[from] AnalysisPanic),
}

impl ProcessFault {
    /// The step the fault is blamed on.
    pub fn step(&self) -> Step {
        match self {
            Self::Panic(panic) => panic.step,
        }
    }
}

/// The processes whose analysis failed, and why (shared by the sources and the census
/// of one watch; they run on one thread, a lock keeps it simple and cheap).
#[derive(Debug, Default)]
pub struct Faults {
    panicked: Mutex<HashMap<ProcessKey, AnalysisPanic>>,
}

impl Faults {
    /// Why process `key` is not analysed at all, if it is not.
    pub fn of(&self, key: &ProcessKey) -> Option<ProcessFault> {
        let panicked = self.panicked.lock().unwrap_or_else(|p| p.into_inner());
        panicked.get(key).cloned().map(ProcessFault::Panic)
    }

    /// Records that the analysis of `key` panicked (said once, on the log); returns the
    /// fault to report it with.
    pub fn panicked(&self, key: ProcessKey, panic: AnalysisPanic) -> ProcessFault {
        let mut panicked = self.panicked.lock().unwrap_or_else(|p| p.into_inner());
        let first = panicked.entry(key).or_insert_with(|| {
            log::warn!("pid {}: {panic}", key.pid);
            panic
        });
        ProcessFault::Panic(first.clone())
    }

    /// Runs step `step` of the analysis of process `key` ([`per_process`]), unless
    /// its analysis failed before; a panic is recorded.
    pub fn guard<T>(
        &self,
        key: ProcessKey,
        step: Step,
        work: impl FnOnce() -> T,
    ) -> Result<T, ProcessFault> {
        if let Some(fault) = self.of(&key) {
            return Err(fault);
        }
        per_process(key.pid, step, work).map_err(|panic| self.panicked(key, panic))
    }

    /// Forgets the processes `alive` rejects (they exited: a pid's next process is
    /// another one).
    pub fn retain(&self, alive: impl Fn(&ProcessKey) -> bool) {
        let mut panicked = self.panicked.lock().unwrap_or_else(|p| p.into_inner());
        panicked.retain(|key, _| alive(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32) -> ProcessKey {
        ProcessKey {
            pid,
            start_mono_ns: 1,
            exec_id: 1,
        }
    }

    /// Check that a process whose analysis panicked is not analysed again (its work is
    /// not run, the first panic is its reason) until it is gone, while others are.
    #[test]
    fn a_process_that_panicked_is_not_analysed_again() {
        let faults = Faults::default();
        let first = faults
            .guard(key(5), Step::Unwind, || -> u32 { panic!("first") })
            .unwrap_err();
        assert_eq!(first.step(), Step::Unwind);
        let mut ran = false;
        let again = faults
            .guard(key(5), Step::GoTable, || ran = true)
            .unwrap_err();
        assert!(!ran, "not analysed again");
        assert_eq!(again, first, "the first panic stays the reason");
        assert_eq!(faults.guard(key(6), Step::GoTable, || 3), Ok(3));
        faults.retain(|k| *k != key(5));
        assert_eq!(faults.guard(key(5), Step::Unwind, || 4), Ok(4));
    }
}
