//! Why a process could not be read at a scan, as one typed value that travels from the
//! sources through the census and the summary to the sinks, which alone render it (the
//! JSON `error`, the text report's `unreadable: ...`, the daemon's log line and metric).
//! Tests assert on its kinds, not on text.

use crate::{
    isolate::ProcessFault,
    sources::go::{error::GoReadError, g::GoroutineReadError},
};

/// Why a process is reported unreadable (its verdict is then "ok", never a leak, and
/// never silently healthy: the reason is shown).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// A Go program whose goroutines could not be read.
    #[error(transparent)]
    Go(#[from] GoReadError),
    /// A blocked thread's stack is not in memory (so it is not read).
    #[error(transparent)]
    Stack(#[from] StackNotResident),
    /// A step of its analysis failed, whatever it runs.
    #[error(transparent)]
    Fault(#[from] ProcessFault),
}

/// Every [`ReadError::kind`], in order.
pub const READ_ERROR_KINDS: [&str; 6] = [
    "go",
    "not_resident",
    "panic",
    "stuck",
    "stuck_limit",
    "gone",
];

impl ReadError {
    /// Where [`ReadError::kind`] is in [`READ_ERROR_KINDS`].
    pub fn kind_index(&self) -> usize {
        let kind = self.kind();
        READ_ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0)
    }

    /// A short name of the kind of reason, for metric labels: `go` (its goroutine table
    /// or executable), `not_resident` (memory it keeps only on a file's pages not in
    /// memory), `panic`, `stuck` (a read abandoned, blocked in the kernel),
    /// `stuck_limit` (not read: too many reads stuck), `gone` (it exited while being
    /// read, or its pid is another process's now).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Go(GoReadError::Table(GoroutineReadError::NotResident(_))) | Self::Stack(_) => {
                "not_resident"
            }
            Self::Go(_) => "go",
            Self::Fault(ProcessFault::Panic(_)) => "panic",
            Self::Fault(ProcessFault::Stuck(_)) => "stuck",
            Self::Fault(ProcessFault::TooManyStuck(_)) => "stuck_limit",
            Self::Fault(ProcessFault::Gone(_)) => "gone",
        }
    }
}

/// A blocked thread whose stack pointer is on a page that is not in memory: its
/// process is reported unreadable with this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the stack of thread {tid} at {sp:#x} is not in memory (a file's page never faulted in?): not read, since faulting it in could wait on its file system for good"
)]
pub struct StackNotResident {
    pub tid: u32,
    pub sp: u64,
}
