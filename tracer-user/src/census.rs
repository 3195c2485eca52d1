//! One scan's census: the blocked waiters of every process, keyed by process and site
//! (the stack where they block), each with its identity.
//!
//! [`CensusTaker`] turns the raw records of a source into a [`Census`]: it keeps only
//! real waits, unwinds each wait's stack once (a waiter that has not woken keeps its
//! stack), and symbolizes each new site once, while its process is still alive.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use tracer_common::{SYS_FUTEX, SYS_FUTEX_WAITV, ThreadWaiterRecord, WAITER_IN_FUTEX_WAITV};

use crate::{
    sources::procfs::{self, MemoryMap},
    stacks::{
        symbolize::{Frame, StackSymbolizer},
        unwind::{StackUnwinder, UserRegs},
    },
};

/// One process instance: a pid is reused, a program is replaced by execve; neither may
/// merge two programs' waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    pub start_mono_ns: u64,
    pub exec_id: u64,
}

/// One thread instance (tids are reused too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadKey {
    pub tid: u32,
    pub start_mono_ns: u64,
}

/// One uninterrupted wait of one thread: while the thread does not wake, its voluntary
/// context-switch count stays the same, so (thread, nvcsw) names the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitId {
    pub thread: ThreadKey,
    pub nvcsw: u64,
}

/// The stack a waiter blocks at: frame addresses, innermost first.
pub type StackKey = Arc<[u64]>;

/// What kind of futex wait a thread is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FutexWait {
    Wait,
    WaitBitset,
    LockPi,
    LockPi2,
    WaitRequeuePi,
    Waitv,
}

impl FutexWait {
    /// Classifies a futex(2) call from its syscall number and op; `None` for calls that
    /// do not block (wakes, requeues) and for other syscalls.
    pub fn classify(syscall_nr: u64, op: u64, flags: u32) -> Option<Self> {
        if syscall_nr == SYS_FUTEX_WAITV || flags & WAITER_IN_FUTEX_WAITV != 0 {
            return Some(Self::Waitv);
        }
        if syscall_nr != SYS_FUTEX {
            return None;
        }
        // FUTEX_CMD_MASK strips FUTEX_PRIVATE_FLAG (128) and FUTEX_CLOCK_REALTIME (256).
        match op & 0x7f {
            0 => Some(Self::Wait),
            9 => Some(Self::WaitBitset),
            6 => Some(Self::LockPi),
            13 => Some(Self::LockPi2),
            11 => Some(Self::WaitRequeuePi),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Wait => "FUTEX_WAIT",
            Self::WaitBitset => "FUTEX_WAIT_BITSET",
            Self::LockPi => "FUTEX_LOCK_PI",
            Self::LockPi2 => "FUTEX_LOCK_PI2",
            Self::WaitRequeuePi => "FUTEX_WAIT_REQUEUE_PI",
            Self::Waitv => "futex_waitv",
        }
    }
}

/// A thread blocked in a futex wait at the moment of the scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadWaiter {
    pub wait: WaitId,
    pub op: FutexWait,
    /// The futex word (for futex_waitv: the address of the waiter array).
    pub futex_addr: u64,
    /// How long the thread has been off CPU, from the scheduler's last arrival time: an
    /// upper bound of the wait's age that also covers waits begun before leakscope.
    pub blocked_for_ns: u64,
    /// CLOCK_MONOTONIC start of the thread.
    pub thread_start_mono_ns: u64,
}

/// A process's facts as reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessFacts {
    pub comm: String,
    pub exe: String,
}

/// One process in one census.
#[derive(Clone, Debug, Default)]
pub struct ProcessCensus {
    pub facts: Arc<ProcessFacts>,
    pub sites: HashMap<StackKey, Vec<ThreadWaiter>>,
}

impl ProcessCensus {
    pub fn waiters(&self) -> usize {
        self.sites.values().map(Vec::len).sum()
    }
}

/// All waiters of one scan.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// CLOCK_MONOTONIC time of the scan.
    pub at_mono_ns: u64,
    pub processes: HashMap<ProcessKey, ProcessCensus>,
}

/// Which processes a census covers.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    #[default]
    Host,
    Pids(HashSet<u32>),
}

impl Scope {
    fn includes(&self, pid: u32) -> bool {
        match self {
            Self::Host => true,
            Self::Pids(pids) => pids.contains(&pid),
        }
    }
}

/// Turns source records into censuses; owns the unwinding and symbolization caches.
pub struct CensusTaker {
    scope: Scope,
    own_pid: u32,
    unwinder: StackUnwinder,
    symbolizer: StackSymbolizer,
    /// Each wait's stack, unwound once for as long as the wait lasts.
    stacks: HashMap<WaitId, StackKey>,
    /// Each site's symbolized frames, named once while its process was alive.
    sites: HashMap<(ProcessKey, StackKey), Arc<[Frame]>>,
    facts: HashMap<ProcessKey, Arc<ProcessFacts>>,
}

impl CensusTaker {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            own_pid: std::process::id(),
            unwinder: StackUnwinder::new(),
            symbolizer: StackSymbolizer::new(),
            stacks: HashMap::new(),
            sites: HashMap::new(),
            facts: HashMap::new(),
        }
    }

    /// The symbolized frames of a site seen in an earlier census.
    pub fn frames(&self, process: &ProcessKey, stack: &StackKey) -> Option<Arc<[Frame]>> {
        self.sites.get(&(*process, stack.clone())).cloned()
    }

    /// Builds the census of one scan's records.
    pub fn take(&mut self, records: &[ThreadWaiterRecord]) -> Census {
        let mut census = Census {
            at_mono_ns: records.iter().map(|r| r.mono_now_ns).max().unwrap_or(0),
            ..Census::default()
        };
        let mut maps: HashMap<u32, Option<Vec<MemoryMap>>> = HashMap::new();
        let mut live_waits = HashSet::new();
        for rec in records {
            if rec.tgid == self.own_pid || !self.scope.includes(rec.tgid) {
                continue;
            }
            let Some(op) = FutexWait::classify(rec.syscall_nr, rec.args[1], rec.flags) else {
                continue;
            };
            let process = ProcessKey {
                pid: rec.tgid,
                start_mono_ns: rec.process_start_mono_ns,
                exec_id: rec.exec_id,
            };
            let wait = WaitId {
                thread: ThreadKey {
                    tid: rec.tid,
                    start_mono_ns: rec.thread_start_mono_ns,
                },
                nvcsw: rec.nvcsw,
            };
            live_waits.insert(wait);
            let stack = match self.stacks.get(&wait) {
                Some(stack) => stack.clone(),
                None => {
                    let process_maps = maps
                        .entry(rec.tgid)
                        .or_insert_with(|| procfs::read_maps(rec.tgid).ok());
                    let regs = UserRegs {
                        ip: rec.ip,
                        sp: rec.sp,
                        bp: rec.bp,
                    };
                    let addrs = match process_maps {
                        Some(m) => self.unwinder.unwind(rec.tgid, m, regs),
                        None => vec![rec.ip],
                    };
                    let stack: StackKey = addrs.into();
                    self.stacks.insert(wait, stack.clone());
                    stack
                }
            };
            if !self.sites.contains_key(&(process, stack.clone())) {
                let process_maps = maps
                    .entry(rec.tgid)
                    .or_insert_with(|| procfs::read_maps(rec.tgid).ok());
                let frames = match process_maps {
                    Some(m) => self.symbolizer.symbolize(rec.tgid, m, &stack),
                    None => stack
                        .iter()
                        .map(|&address| Frame {
                            address,
                            ..Frame::default()
                        })
                        .collect(),
                };
                self.sites.insert((process, stack.clone()), frames.into());
            }
            let facts = self
                .facts
                .entry(process)
                .or_insert_with(|| Arc::new(read_facts(rec)))
                .clone();
            let waiter = ThreadWaiter {
                wait,
                op,
                futex_addr: rec.args[0],
                blocked_for_ns: rec.sched_now_ns.saturating_sub(rec.last_arrival_ns),
                thread_start_mono_ns: rec.thread_start_mono_ns,
            };
            let entry = census
                .processes
                .entry(process)
                .or_insert_with(|| ProcessCensus {
                    facts,
                    ..ProcessCensus::default()
                });
            entry.sites.entry(stack).or_default().push(waiter);
        }
        // Waits that ended will never be seen again: forget their stacks.
        self.stacks.retain(|wait, _| live_waits.contains(wait));
        census
    }
}

/// A process's name and executable; falls back to the thread's comm when the process is
/// already gone.
fn read_facts(rec: &ThreadWaiterRecord) -> ProcessFacts {
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", rec.tgid))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| String::from_utf8_lossy(rec.comm_bytes()).into_owned());
    let exe = std::fs::read_link(format!("/proc/{}/exe", rec.tgid))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    ProcessFacts { comm, exe }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the futex ops glibc and Rust std block in are waits, wakes are not, and
    /// the private/realtime flags do not change the classification.
    #[test]
    fn futex_ops_are_classified() {
        assert_eq!(FutexWait::classify(SYS_FUTEX, 0, 0), Some(FutexWait::Wait));
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 9 | 128 | 256, 0),
            Some(FutexWait::WaitBitset)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 6 | 128, 0),
            Some(FutexWait::LockPi)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 11, 0),
            Some(FutexWait::WaitRequeuePi)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 1 | 128, 0),
            None,
            "FUTEX_WAKE is no wait"
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX_WAITV, 0, 0),
            Some(FutexWait::Waitv)
        );
        assert_eq!(
            FutexWait::classify(0, 0, 0),
            None,
            "read(2) is no futex wait"
        );
    }
}
