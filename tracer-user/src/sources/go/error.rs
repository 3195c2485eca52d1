//! Why a Go process's goroutines could not be read, as one typed value that travels from
//! the reader through the census and the summary to the sinks (as a
//! [`crate::sources::error::ReadError`]), which alone render it (the JSON `error`, the
//! text report's `unreadable: ...`, the daemon's log line). Tests assert on its kinds,
//! not on text.

use std::sync::Arc;

use crate::sources::go::{executable::UnreadableGoKind, g::GoroutineReadError};

/// Why a Go process is reported unreadable (its verdict is then "ok", never a leak, and
/// never silently healthy: the reason is shown).
#[derive(Clone, Debug, thiserror::Error)]
pub enum GoReadError {
    /// Its executable carries Go's build info but cannot be read (unsupported version,
    /// no layout, no goroutine table, too large...). Shared: one analysis per binary.
    #[error("{0}")]
    Executable(Arc<UnreadableGoKind>),
    /// The executable is not mapped where `/proc/PID/maps` says (exec'd meanwhile).
    #[error("cannot find the executable's mapping in /proc/PID/maps")]
    NoMapping,
    /// Its goroutine table could not be read at this scan.
    #[error("{0}")]
    Table(#[from] GoroutineReadError),
}

impl PartialEq for GoReadError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Executable(a), Self::Executable(b)) => {
                Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
            }
            (Self::NoMapping, Self::NoMapping) => true,
            (Self::Table(a), Self::Table(b)) => a == b,
            _ => false,
        }
    }
}
