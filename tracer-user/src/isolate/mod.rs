//! Per-process isolation: every step that analyses one process (reads its files and
//! memory, parses what it supplies) runs isolated, so that a bug some process's
//! (possibly hostile) binary or memory reaches costs that process's result, never the
//! scan: the process is reported unreadable with the reason and the rest of the host is
//! watched on.
//!
//! - [`per_process`] runs one step of one process's analysis and catches a panic in it
//!   (the release profile keeps `panic = "unwind"` for this); [`Faults`] remembers the
//!   processes whose analysis failed, so that a process that panicked is not analysed
//!   again while it lives, by any source.
//! - [`Reader`] runs the steps that can block (reading a process's files and memory) on
//!   a thread the scan can stop waiting for: a read stuck in the kernel costs that
//!   process's result, not the scan.
//! - [`detach`] runs `diagnose`'s work in a child process, so that a reader stuck in the
//!   kernel for good, which keeps its process from finishing its exit, does not keep the
//!   command from returning.
//! - It says which process is being analysed ([`current_pid`]), so a stalled scan can
//!   be blamed on one.
//! - It carries the fault injection the tests use to prove both:
//!   `LEAKSCOPE_INJECT_PANIC_PID=PID[:STEP],...` (the analysis of each process panics in
//!   that [`Step`], or in the first one reached) and `LEAKSCOPE_INJECT_STALL_AFTER_SCANS`:
//!   test hooks, read from the environment of the root process only.

mod catch;
pub mod detach;
mod faults;
mod reader;

pub use self::{
    catch::{
        AnalysisPanic, MAX_PANIC_MESSAGE, Step, current_pid, on_this_thread, panic_message,
        per_process, within,
    },
    faults::{Faults, MAX_STUCK_READS, ProcessFault, StuckRead, StuckReads},
    reader::{COMPUTE_FACTOR, Reader},
};

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

/// Test hook: the daemon's scanner stops (sleeps for good) after this many scans.
pub fn injected_stall_after_scans() -> Option<u64> {
    env_number("LEAKSCOPE_INJECT_STALL_AFTER_SCANS").map(u64::from)
}
