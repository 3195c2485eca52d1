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
    /// Not known: its executable could not be opened or read to tell (the process is
    /// reported unreadable, saying why).
    Unknown,
}

impl Runtime {
    pub fn is_go(self) -> bool {
        matches!(self, Self::Go(_))
    }
}

/// `"native"`, `"go1.NN"`, `"go"` (a Go program whose version is unknown) or
/// `"unknown"`: the names of the JSON report and the metrics.
impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Native => f.write_str("native"),
            Self::Go(release) => release.fmt(f),
            Self::Unknown => f.write_str("unknown"),
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

/// The longest function or file name a frame keeps, in bytes: a hostile binary's names
/// run to 64 KiB each, and every named site keeps its frames; longer names are cut and
/// end in `…`. Real names are far shorter (Go's longest generic instantiations and C++
/// templates run to a few hundred bytes).
pub const MAX_FRAME_NAME: usize = 1024;

/// `name` as a frame keeps it: lossy UTF-8, at most [`MAX_FRAME_NAME`] bytes, cut at a
/// character boundary and marked with `…`.
pub fn frame_name(name: &[u8]) -> String {
    const CUT: &str = "\u{2026}";
    let mut text = String::from_utf8_lossy(&name[..name.len().min(MAX_FRAME_NAME)]).into_owned();
    // Lossy replacement may have grown it, a name under the bound too (each invalid
    // byte takes three: the go_frames fuzz target, seed names-at-64k's 0xff names): cut
    // again at a character boundary.
    if name.len() <= MAX_FRAME_NAME && text.len() <= MAX_FRAME_NAME {
        return text;
    }
    let mut end = text.len().min(MAX_FRAME_NAME - CUT.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(CUT);
    text
}

/// Frames known by their address alone (not named: the process is gone, or its names
/// were over the budget).
pub fn bare_frames(stack: &[u64]) -> Vec<Frame> {
    stack
        .iter()
        .map(|&address| Frame {
            address,
            ..Frame::default()
        })
        .collect()
}

fn hex_address<S: serde::Serializer>(address: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{address:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that frame names are kept whole up to the cap, cut with a mark past it,
    /// never split inside a character, and never over the cap.
    #[test]
    fn frame_names_are_capped() {
        assert_eq!(frame_name(b"main.f"), "main.f");
        let long = "é".repeat(MAX_FRAME_NAME);
        let cut = frame_name(long.as_bytes());
        assert!(
            cut.len() <= MAX_FRAME_NAME && cut.ends_with('\u{2026}'),
            "{}",
            cut.len()
        );
        assert!(cut.starts_with("éé"));
        let bad = vec![0xffu8; 4 * MAX_FRAME_NAME];
        assert!(frame_name(&bad).len() <= MAX_FRAME_NAME);
        // Under the bound in bytes, over it once each invalid byte is U+FFFD.
        let short_bad = vec![0xffu8; MAX_FRAME_NAME - 1];
        let cut = frame_name(&short_bad);
        assert!(
            cut.len() <= MAX_FRAME_NAME && cut.ends_with('\u{2026}'),
            "{}",
            cut.len()
        );
    }

    /// Check that runtimes render as the report and the metrics have always named them
    /// (JSON too), and that releases order by version.
    #[test]
    fn runtimes_render_as_before() {
        let go = |major, minor| GoRelease::Known { major, minor };
        assert_eq!(Runtime::Native.to_string(), "native");
        assert_eq!(Runtime::Go(go(1, 26)).to_string(), "go1.26");
        assert_eq!(Runtime::Go(GoRelease::Unknown).to_string(), "go");
        assert_eq!(Runtime::Unknown.to_string(), "unknown");
        assert_eq!(
            serde_json::to_string(&Runtime::Go(go(1, 19))).unwrap(),
            "\"go1.19\""
        );
        assert!(go(1, 27).at_least(1, 26) && go(1, 26).at_least(1, 26));
        assert!(!go(1, 23).at_least(1, 24) && !GoRelease::Unknown.at_least(1, 0));
    }
}
