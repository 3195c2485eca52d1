//! The processes whose analysis failed, shared by every source and the census:
//!
//! - a process whose analysis panicked (in any step) is not analysed again, by anyone,
//!   while it lives: the next try would most likely panic alike, and each would log;
//! - a process one of whose reads was abandoned, stuck in the kernel ([`super::reader`]),
//!   is not read again until that read returns (and, after it got stuck more than once,
//!   a while longer: a file system that answers just too late must not cost every scan
//!   a wait); the readers stuck now are counted, and at most [`MAX_STUCK_READS`] may be.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::catch::{AnalysisPanic, Step, per_process};
use crate::{host::pidfd::ProcessGone, model::ProcessKey};

/// Reader threads that may be stuck at once (each keeps what it held, its caches
/// included, until its read returns); with this many stuck, the reads that would need a
/// new reader are not made.
pub const MAX_STUCK_READS: usize = 4;
/// After a process's reads got stuck more than once, it is read again only this long
/// after the last one returned, doubling with each time, up to [`MAX_STUCK_BACKOFF`].
const STUCK_BACKOFF: Duration = Duration::from_secs(30);
const MAX_STUCK_BACKOFF: Duration = Duration::from_secs(600);

/// Why the analysis of a process gave nothing at a scan (it is then reported unreadable
/// with this reason, never as healthy).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProcessFault {
    /// A step of its analysis hit a bug (a panic, caught): it is not analysed again
    /// while it lives.
    #[error(transparent)]
    Panic(#[from] AnalysisPanic),
    /// A read of it blocked in the kernel past its deadline and was abandoned: it is
    /// not read again until that read returns.
    #[error(transparent)]
    Stuck(#[from] StuckRead),
    /// Not read: as many reads of other processes as may be are stuck.
    #[error(
        "not read: {0} reads of other processes are stuck in the kernel, the most leakscope leaves waiting"
    )]
    TooManyStuck(usize),
    /// It exited while being read, or its pid is another process's now: what was read
    /// is not its own (nothing to remember: a pid's next process is another one).
    #[error(transparent)]
    Gone(#[from] ProcessGone),
}

impl ProcessFault {
    /// The step the fault is blamed on (none when the process was not read at all).
    pub fn step(&self) -> Option<Step> {
        match self {
            Self::Panic(panic) => Some(panic.step),
            Self::Stuck(stuck) => Some(stuck.step),
            Self::TooManyStuck(_) | Self::Gone(_) => None,
        }
    }
}

/// A read of one process that did not return in time.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "a read of it ({step}) blocked in the kernel for over {} (a file system or device that does not answer?) and was abandoned; not read until it returns",
    seconds(*after)
)]
pub struct StuckRead {
    pub step: Step,
    /// How long it had waited when abandoned.
    pub after: Duration,
}

/// A duration as seconds with one decimal, for messages.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// One process whose reads got stuck.
#[derive(Debug)]
struct Stuck {
    read: StuckRead,
    /// When the last stuck read returned (`None`: it has not).
    returned: Option<Instant>,
    /// How many times its reads got stuck.
    times: u32,
}

impl Stuck {
    /// Whether it is still not to be read at `now`.
    fn holds(&self, now: Instant) -> bool {
        match self.returned {
            None => true,
            Some(at) => {
                let backoff = match self.times {
                    0 | 1 => Duration::ZERO,
                    n => STUCK_BACKOFF
                        .saturating_mul(1 << (n - 2).min(16))
                        .min(MAX_STUCK_BACKOFF),
                };
                now < at + backoff
            }
        }
    }
}

/// How many reads are stuck now, and since when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StuckReads {
    /// Readers abandoned, stuck in the kernel, not returned yet.
    pub now: usize,
    /// Reads abandoned since the watch began.
    pub total: u64,
    /// The process whose stuck read has waited longest, and for how long.
    pub oldest: Option<(u32, Duration)>,
}

#[derive(Debug, Default)]
struct Inner {
    panicked: HashMap<ProcessKey, AnalysisPanic>,
    stuck: HashMap<ProcessKey, Stuck>,
    /// Readers stuck now: when each got stuck, by process (a process whose entry is
    /// gone still counts while its reader is stuck).
    stuck_readers: Vec<(ProcessKey, Instant)>,
    abandoned: u64,
}

/// The processes whose analysis failed, and why (shared by the sources, the census and
/// the reader threads of one watch; a lock held for lookups only keeps it simple).
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why process `key` is not analysed at all, if it is not.
    pub fn of(&self, key: &ProcessKey) -> Option<ProcessFault> {
        let inner = self.lock();
        if let Some(panic) = inner.panicked.get(key) {
            return Some(ProcessFault::Panic(panic.clone()));
        }
        let stuck = inner.stuck.get(key)?;
        stuck
            .holds(Instant::now())
            .then(|| ProcessFault::Stuck(stuck.read.clone()))
    }

    /// Records that the analysis of `key` panicked (said once, on the log); returns the
    /// fault to report it with.
    pub fn panicked(&self, key: ProcessKey, panic: AnalysisPanic) -> ProcessFault {
        let mut inner = self.lock();
        let first = inner.panicked.entry(key).or_insert_with(|| {
            log::warn!("pid {}: {panic}", key.pid);
            panic
        });
        ProcessFault::Panic(first.clone())
    }

    /// Records that a read of `key` was abandoned, stuck (said on the log); returns the
    /// fault to report it with.
    pub fn stuck(&self, key: ProcessKey, read: StuckRead) -> ProcessFault {
        let mut inner = self.lock();
        inner.abandoned += 1;
        inner.stuck_readers.push((key, Instant::now()));
        let stuck_now = inner.stuck_readers.len();
        log::warn!("pid {}: {read} ({stuck_now} stuck now)", key.pid);
        let entry = inner.stuck.entry(key).or_insert_with(|| Stuck {
            read: read.clone(),
            returned: None,
            times: 0,
        });
        entry.read = read.clone();
        entry.returned = None;
        entry.times += 1;
        ProcessFault::Stuck(read)
    }

    /// Records that the stuck read of `key` returned (from its reader thread).
    pub fn returned(&self, key: ProcessKey) {
        let mut inner = self.lock();
        let at = inner.stuck_readers.iter().position(|(k, _)| *k == key);
        if let Some((_, since)) = at.map(|i| inner.stuck_readers.swap_remove(i)) {
            log::warn!(
                "pid {}: the read stuck since {} returned",
                key.pid,
                seconds(since.elapsed())
            );
        }
        if let Some(stuck) = inner.stuck.get_mut(&key) {
            stuck.returned = Some(Instant::now());
        }
    }

    /// The reads stuck now, for the metrics and `/healthz`.
    pub fn stuck_reads(&self) -> StuckReads {
        let inner = self.lock();
        let oldest = inner.stuck_readers.iter().min_by_key(|(_, since)| *since);
        StuckReads {
            now: inner.stuck_readers.len(),
            total: inner.abandoned,
            oldest: oldest.map(|(key, since)| (key.pid, since.elapsed())),
        }
    }

    /// Whether another reader may be started: fewer than [`MAX_STUCK_READS`] are stuck.
    pub fn may_start_reader(&self) -> Result<(), ProcessFault> {
        let stuck = self.lock().stuck_readers.len();
        match stuck >= MAX_STUCK_READS {
            true => Err(ProcessFault::TooManyStuck(stuck)),
            false => Ok(()),
        }
    }

    /// Runs step `step` of the analysis of process `key` on this thread
    /// ([`per_process`]: for steps that cannot block), unless its analysis failed
    /// before; a panic is recorded.
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
    /// another one); a stuck reader of one still counts until it returns.
    pub fn retain(&self, alive: impl Fn(&ProcessKey) -> bool) {
        let mut inner = self.lock();
        inner.panicked.retain(|key, _| alive(key));
        inner.stuck.retain(|key, _| alive(key));
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
        assert_eq!(first.step(), Some(Step::Unwind));
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

    /// Check that a process whose read got stuck is not read until the read returns,
    /// then at once the first time and only after a backoff the second; that stuck
    /// readers are counted and capped; and that a gone process's stuck reader still
    /// counts until it returns.
    #[test]
    fn a_stuck_process_waits_for_its_read_to_return() {
        let faults = Faults::default();
        let read = StuckRead {
            step: Step::GoTable,
            after: Duration::from_secs(5),
        };
        let fault = faults.stuck(key(7), read.clone());
        assert_eq!(fault, ProcessFault::Stuck(read.clone()));
        assert!(fault.to_string().contains("go-table"), "{fault}");
        assert_eq!(faults.of(&key(7)), Some(fault.clone()));
        assert_eq!(faults.stuck_reads().now, 1);
        assert_eq!(faults.stuck_reads().oldest.map(|o| o.0), Some(7));
        faults.returned(key(7));
        assert_eq!(faults.of(&key(7)), None, "read again once it answered");
        assert_eq!(faults.stuck_reads().now, 0);
        faults.stuck(key(7), read.clone());
        faults.returned(key(7));
        assert_eq!(
            faults.of(&key(7)),
            Some(fault),
            "backoff after the second time"
        );
        assert_eq!(faults.stuck_reads().total, 2);
        for pid in 10..10 + MAX_STUCK_READS as u32 {
            assert!(faults.may_start_reader().is_ok());
            faults.stuck(key(pid), read.clone());
        }
        assert_eq!(
            faults.may_start_reader(),
            Err(ProcessFault::TooManyStuck(MAX_STUCK_READS))
        );
        faults.retain(|k| k.pid != 10);
        assert_eq!(faults.stuck_reads().now, MAX_STUCK_READS, "still stuck");
        faults.returned(key(10));
        assert!(faults.may_start_reader().is_ok());
    }
}
