//! The vocabulary every stage shares: which process (a [`ProcessKey`]), where its waiters
//! block (a [`SiteKey`] of a [`WaiterKind`], a wait and a [`StackKey`]), who each member
//! is across scans ([`MemberId`], [`GoroutineMember`]), what is known of the process
//! ([`ProcessFacts`]) and one symbolized [`Frame`].
//!
//! It sits below every stage (sources, census, history, verdict, summary, sinks) so that
//! none of them needs to import another one's module just to name a process or a site:
//! the sinks take these names from here, never from a source or the census.

use std::sync::Arc;

use tracer_common::ProcessRecord;

use crate::host::cgroup::CgroupLabels;

/// One process instance: a pid is reused, a program is replaced by execve; neither may
/// merge two programs' waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    pub start_mono_ns: u64,
    pub exec_id: u64,
}

impl ProcessKey {
    /// The process a kernel process record describes.
    pub fn of(record: &ProcessRecord) -> Self {
        Self {
            pid: record.tgid,
            start_mono_ns: record.start_mono_ns,
            exec_id: record.exec_id,
        }
    }
}

/// The stack a waiter blocks at: frame addresses, innermost first.
pub type StackKey = Arc<[u64]>;

/// What kind of waiter a site holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaiterKind {
    /// A thread asleep in a system call.
    Thread,
    /// A goroutine parked by the Go runtime.
    Goroutine,
}

impl WaiterKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Thread => "thread",
            Self::Goroutine => "goroutine",
        }
    }
}

/// Where waiters block: their kind, what they wait on (a thread's syscall, "futex",
/// "read", "epoll_wait"..., or a Go wait reason such as "chan send"), and the stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteKey {
    pub kind: WaiterKind,
    pub wait: Arc<str>,
    pub stack: StackKey,
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

/// Who a member of a thread site is, across scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberId {
    /// One uninterrupted wait of one thread.
    Thread(WaitId),
}

/// One uninterrupted park of one goroutine: its id (never reused within a process) and
/// its `trackingSeq`, which changes whenever the goroutine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GoroutineMember {
    pub goid: u64,
    pub seq: u8,
    /// `g.waitsince`: the runtime's nanotime (CLOCK_MONOTONIC) at the start of the first
    /// GC cycle that saw this park, so the wait began before about then; 0 when no GC
    /// has scanned the goroutine since it parked.
    pub waitsince_ns: u64,
}

/// A process's facts as reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessFacts {
    pub comm: String,
    pub exe: String,
    /// "native", or "go1.NN".
    pub runtime: String,
    /// Why part of the process could not be read (e.g. an unsupported Go version).
    pub error: Option<String>,
    /// The cgroup it ran in when first seen, and its pod.
    pub cgroup: CgroupLabels,
}

/// One symbolized frame: the one frame type from the symbolizers to every sink. It
/// serializes as the JSON report's frame (the address as a "0x…" string).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Frame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The absolute address in the process (the return address for callers).
    #[serde(serialize_with = "hex_address")]
    pub address: u64,
    /// Path of the binary the address falls in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

fn hex_address<S: serde::Serializer>(address: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{address:#x}"))
}
