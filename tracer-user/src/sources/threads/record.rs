//! The thread source's records, in two forms: [`ThreadRecords`], one pass over the
//! host's threads as the kernel program lays it out (the `/proc` reader fills the same
//! layout, so everything after them is one code path whichever way they came), and
//! [`BlockedThread`], one watched thread asleep in a system call with its identity, the
//! site where it blocks and what it waits on: what the census folds.

use tracer_common::{ProcessRecord, ThreadWaiterRecord};

use super::wait::WaitDetail;
use crate::{
    model::{MemberId, ProcessKey, SiteKey, ThreadKey, WaitId},
    resources::StackBytes,
    stacks::unwind::UserRegs,
};

/// What one pass over the host's threads found, in the kernel program's layout.
#[derive(Clone, Debug, Default)]
pub struct ThreadRecords {
    /// Every user process (its group leader).
    pub processes: Vec<ProcessRecord>,
    /// Every user thread asleep inside a system call.
    pub waiters: Vec<ThreadWaiterRecord>,
    /// Whether `processes` lists every user process on the host (the iterator's always
    /// do; `/proc`'s only when every process is watched), so that what they hold adds
    /// up to the host's.
    pub lists_every_process: bool,
}

impl ThreadRecords {
    /// CLOCK_MONOTONIC time of the pass: its newest record's.
    pub fn at_mono_ns(&self) -> u64 {
        self.processes
            .iter()
            .map(|r| r.mono_now_ns)
            .chain(self.waiters.iter().map(|r| r.mono_now_ns))
            .max()
            .unwrap_or(0)
    }
}

/// One blocked thread at the moment of a scan. (Goroutine parks are reported by change,
/// not one by one: see the census.)
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadWaiter {
    pub id: MemberId,
    /// Orders members by creation: the thread's CLOCK_MONOTONIC start.
    pub born: u64,
    /// How long the waiter has been blocked, when a source can tell: for threads the
    /// time off CPU since the scheduler last ran them, which also covers waits begun
    /// before leakscope started.
    pub blocked_for_ns: Option<u64>,
    pub detail: WaitDetail,
    /// What its stack mapping holds (nothing counted where not recognised).
    pub stack_bytes: StackBytes,
}

/// A watched thread asleep in a system call: which process, where it blocks (a thread
/// site: its syscall's label and its unwound stack), and the waiter itself.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockedThread {
    pub process: ProcessKey,
    pub site: SiteKey,
    pub waiter: ThreadWaiter,
}

/// The process a thread record belongs to.
pub fn process_key(rec: &ThreadWaiterRecord) -> ProcessKey {
    ProcessKey {
        pid: rec.tgid,
        start_mono_ns: rec.process_start_mono_ns,
        exec_id: rec.exec_id,
    }
}

/// The thread instance of a record.
pub fn thread_key(rec: &ThreadWaiterRecord) -> ThreadKey {
    ThreadKey {
        tid: rec.tid,
        start_mono_ns: rec.thread_start_mono_ns,
    }
}

/// The user registers the thread entered the kernel with.
pub fn user_regs(rec: &ThreadWaiterRecord) -> UserRegs {
    UserRegs {
        ip: rec.ip,
        sp: rec.sp,
        bp: rec.bp,
    }
}

impl ThreadWaiter {
    /// The waiter a record describes, waiting as `detail` says, its stack holding
    /// `stack_bytes`.
    pub fn of(rec: &ThreadWaiterRecord, detail: WaitDetail, stack_bytes: StackBytes) -> Self {
        Self {
            id: MemberId::Thread(WaitId {
                thread: thread_key(rec),
                nvcsw: rec.nvcsw,
            }),
            born: rec.thread_start_mono_ns,
            blocked_for_ns: Some(rec.sched_now_ns.saturating_sub(rec.last_arrival_ns)),
            detail,
            stack_bytes,
        }
    }
}
