//! Why a process could not be read at a scan, as one typed value that travels from the
//! sources through the census and the summary to the sinks, which alone render it (the
//! JSON `error`, the text report's `unreadable: ...`, the daemon's log line and metric).
//! Tests assert on its kinds, not on text.

use crate::{isolate::ProcessFault, sources::go::error::GoReadError};

/// Why a process is reported unreadable (its verdict is then "ok", never a leak, and
/// never silently healthy: the reason is shown).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// A Go program whose goroutines could not be read.
    #[error(transparent)]
    Go(#[from] GoReadError),
    /// A step of its analysis failed, whatever it runs.
    #[error(transparent)]
    Fault(#[from] ProcessFault),
}

impl ReadError {
    /// A short name of the kind of reason, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Go(_) => "go",
            Self::Fault(ProcessFault::Panic(_)) => "panic",
        }
    }
}
