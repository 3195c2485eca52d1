//! Panic isolation: the analysis of one process runs under [`per_process`], so a bug
//! that some process's (possibly hostile) binary or memory reaches ends that process's
//! analysis (it is reported unreadable, with the reason) instead of the scan, and the
//! daemon keeps watching the rest of the host. The release profile keeps
//! `panic = "unwind"` for this.
//!
//! It also says which process is being analysed ([`current_pid`]), so a stalled scan can
//! be blamed on one, and carries the fault injection the tests use to prove both
//! (`LEAKSCOPE_INJECT_PANIC_PID`, `LEAKSCOPE_INJECT_STALL_AFTER_SCANS`: test hooks, read
//! from the environment of the root process only).

use std::{
    any::Any,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use thiserror::Error;

/// The analysis of one process panicked.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("internal error while analysing this process (panic: {message})")]
pub struct AnalysisPanic {
    /// The panic message, cut to [`MAX_PANIC_MESSAGE`] bytes.
    pub message: String,
}

/// Longest panic message kept (a message may quote what a hostile process supplied).
pub const MAX_PANIC_MESSAGE: usize = 200;

/// The process whose analysis runs now (0: none).
static CURRENT_PID: AtomicU32 = AtomicU32::new(0);

/// Runs `work`, the analysis of process `pid`; a panic in it becomes an
/// [`AnalysisPanic`] instead of unwinding further. `work` must leave no shared state
/// half-updated that later scans rely on (what it builds is dropped on panic).
pub fn per_process<T>(pid: u32, work: impl FnOnce() -> T) -> Result<T, AnalysisPanic> {
    CURRENT_PID.store(pid, Ordering::Relaxed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if injected_panic_pid() == Some(pid) {
            panic!("injected by LEAKSCOPE_INJECT_PANIC_PID={pid}");
        }
        work()
    }));
    CURRENT_PID.store(0, Ordering::Relaxed);
    outcome.map_err(|payload| AnalysisPanic {
        message: panic_message(payload.as_ref()),
    })
}

/// The process whose analysis runs now, if any.
pub fn current_pid() -> Option<u32> {
    match CURRENT_PID.load(Ordering::Relaxed) {
        0 => None,
        pid => Some(pid),
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "unknown panic payload"
    };
    let mut end = text.len().min(MAX_PANIC_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Makes a panic leave one line on stderr, its message escaped (it may quote what a
/// process supplied); the default hook's note about backtraces is noise in a daemon's
/// log. Per-process panics are caught by [`per_process`] after this line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        eprintln!(
            "leakscope: internal error (panic) in thread {}{at}: {}",
            thread.name().unwrap_or("?"),
            crate::sanitize::log_text(&panic_message(info.payload()))
        );
    }));
}

fn env_number(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Test hook: the analysis of this pid panics.
fn injected_panic_pid() -> Option<u32> {
    static PID: OnceLock<Option<u32>> = OnceLock::new();
    *PID.get_or_init(|| env_number("LEAKSCOPE_INJECT_PANIC_PID").filter(|&p| p != 0))
}

/// Test hook: the daemon's scanner stops (sleeps for good) after this many scans.
pub fn injected_stall_after_scans() -> Option<u64> {
    env_number("LEAKSCOPE_INJECT_STALL_AFTER_SCANS").map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a panic inside one process's analysis becomes that process's error
    /// (with its message) and that the caller carries on; no process is current after.
    #[test]
    fn a_panic_becomes_the_process_error() {
        assert_eq!(per_process(7, || 41 + 1), Ok(42));
        let err = per_process(7, || -> u32 { panic!("boom at {:#x}", 0x10) }).unwrap_err();
        assert_eq!(err.message, "boom at 0x10");
        assert!(err.to_string().contains("boom at 0x10"), "{err}");
        let v: Vec<u8> = Vec::new();
        let err = per_process(8, || v[3]).unwrap_err();
        assert!(err.message.contains("index out of bounds"), "{err:?}");
        assert_eq!(current_pid(), None);
        let long = "é".repeat(MAX_PANIC_MESSAGE);
        let err = per_process(9, || -> () { panic!("{long}") }).unwrap_err();
        assert!(err.message.len() <= MAX_PANIC_MESSAGE);
    }
}
