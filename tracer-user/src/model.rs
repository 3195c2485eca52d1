//! The vocabulary every stage shares: which process (a [`ProcessKey`]), where its waiters
//! block (a [`SiteKey`] of a [`WaiterKind`], a wait and a [`StackKey`]), who each member
//! is across scans ([`MemberId`], [`GoroutineMember`]), what is known of the process
//! ([`ProcessFacts`]: names, cgroup, and what it runs on, a [`Runtime`]), a goroutine's
//! pprof labels ([`LabelSet`]) and one symbolized [`Frame`].
//!
//! It sits below every stage (sources, census, history, verdict, summary, sinks) so that
//! none of them needs to import another one's module just to name a process or a site:
//! the sinks take these names from here, never from a source or the census.

use std::{fmt, sync::Arc};

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

/// A process's facts as reported: what it is, known once per process instance. (Why
/// it could not be read at a scan is no fact of it: the census and the summary carry
/// that beside the facts.)
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessFacts {
    pub comm: String,
    pub exe: String,
    pub runtime: Runtime,
    /// The cgroup it ran in when first seen, and its pod.
    pub cgroup: CgroupLabels,
}

/// The Go release that built a program, to the minor version (the runtime's layout and
/// behaviour change between minors only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoRelease {
    /// `go{major}.{minor}`.
    Known { major: u32, minor: u32 },
    /// A Go program whose build info does not even say its version.
    Unknown,
}

impl GoRelease {
    /// Whether this release is `major.minor` or newer (an unknown one is not).
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        match self {
            Self::Known { major: a, minor: b } => (a, b) >= (major, minor),
            Self::Unknown => false,
        }
    }
}

impl fmt::Display for GoRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known { major, minor } => write!(f, "go{major}.{minor}"),
            Self::Unknown => f.write_str("go"),
        }
    }
}

/// What a process runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    /// Not a Go program (C, C++, Rust, ...): threads only.
    #[default]
    Native,
    Go(GoRelease),
}

impl Runtime {
    pub fn is_go(self) -> bool {
        matches!(self, Self::Go(_))
    }
}

/// `"native"`, `"go1.NN"`, or `"go"`: the names of the JSON report and the metrics.
impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Native => f.write_str("native"),
            Self::Go(release) => release.fmt(f),
        }
    }
}

impl serde::Serialize for Runtime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A goroutine's pprof labels (`pprof.Do`, `pprof.SetGoroutineLabels`; a goroutine
/// inherits its creator's), as read from the process: sorted by key, bounded (the
/// reader keeps a few labels of a few dozen bytes each; `truncated` says it cut some).
/// It serializes as the JSON object `{"key": "value", ...}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet {
    /// (key, value), by key.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// Labels were left out, or a key or value was cut (it then ends in "…").
    pub truncated: bool,
}

impl LabelSet {
    /// The value of `key`, if the set has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }
}

impl serde::Serialize for LabelSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.labels.len()))?;
        for (key, value) in &*self.labels {
            map.serialize_entry(&**key, &**value)?;
        }
        map.end()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that runtimes render as the report and the metrics have always named them
    /// (JSON too), and that releases order by version.
    #[test]
    fn runtimes_render_as_before() {
        let go = |major, minor| GoRelease::Known { major, minor };
        assert_eq!(Runtime::Native.to_string(), "native");
        assert_eq!(Runtime::Go(go(1, 26)).to_string(), "go1.26");
        assert_eq!(Runtime::Go(GoRelease::Unknown).to_string(), "go");
        assert_eq!(
            serde_json::to_string(&Runtime::Go(go(1, 19))).unwrap(),
            "\"go1.19\""
        );
        assert!(go(1, 27).at_least(1, 26) && go(1, 26).at_least(1, 26));
        assert!(!go(1, 23).at_least(1, 24) && !GoRelease::Unknown.at_least(1, 0));
    }
}
