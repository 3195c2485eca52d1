//! Why a Go process's goroutines could not be read, as one typed value that travels from
//! the reader through the census and the summary to the sinks (as a
//! [`crate::sources::error::ReadError`]), which alone render it (the JSON `error`, the
//! text report's `unreadable: ...`, the daemon's log line). Tests assert on its kinds,
//! not on text.

use std::sync::Arc;

use crate::sources::go::{
    executable::{ExecutableUnreadable, UnreadableGoKind},
    g::GoroutineReadError,
};

/// Why a Go process is reported unreadable (its verdict is then "ok", never a leak, and
/// never silently healthy: the reason is shown).
#[derive(Clone, Debug, thiserror::Error)]
pub enum GoReadError {
    /// Its executable carries Go's build info but cannot be read (unsupported version,
    /// no layout, no goroutine table, too large...). Shared: one analysis per binary.
    #[error("{0}")]
    Executable(Arc<UnreadableGoKind>),
    /// Not known to be Go or not: its executable could not be opened or read far enough
    /// to tell, so its goroutines (if any) were not read. Unreadable rather than a
    /// `degraded` note: the degraded list says what a budget cut, while this is the
    /// reader's `go` kind of failure, and an unreadable process keeps its thread sites,
    /// judged as any other's, so nothing of its threads is lost by saying it so.
    #[error("could not tell whether it runs Go ({0}): goroutines not read")]
    Unclassified(ExecutableUnreadable),
    /// The executable is not mapped where `/proc/PID/maps` says (exec'd meanwhile).
    #[error("cannot find the executable's mapping in /proc/PID/maps")]
    NoMapping,
    /// Its `/proc/PID/maps`, where its load address is read, could not be read (errno).
    #[error("cannot read /proc/PID/maps to find its executable's mapping: {}", std::io::Error::from_raw_os_error(*.0))]
    MapsUnreadable(i32),
    /// Its `/proc/PID/maps` is over the bounds leakscope reads (size or mappings).
    #[error("its /proc/PID/maps is larger than leakscope reads")]
    MapsTooLarge,
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
            (Self::Unclassified(a), Self::Unclassified(b)) => a == b,
            (Self::NoMapping, Self::NoMapping) | (Self::MapsTooLarge, Self::MapsTooLarge) => true,
            (Self::MapsUnreadable(a), Self::MapsUnreadable(b)) => a == b,
            (Self::Table(a), Self::Table(b)) => a == b,
            _ => false,
        }
    }
}
