//! Catching a panic in one step of one process's analysis ([`per_process`]), blaming it
//! on the innermost [`Step`] it struck, and the fault injection that strikes steps on
//! purpose (test hook: `LEAKSCOPE_INJECT_PANIC_PID=PID[:STEP],...`).

use std::{
    any::Any,
    cell::Cell,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use thiserror::Error;

/// One step of the analysis of one process: what a panic or a fault is blamed on, and
/// where the fault injection can strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Listing a process's blocked threads from `/proc` (the fallback thread source).
    Threads,
    /// Reading a process's name, executable and cgroup.
    Facts,
    /// Telling what a blocked thread waits on.
    Waits,
    /// Unwinding a process's blocked threads (its maps, binaries, stacks).
    Unwind,
    /// Naming the frames of a thread site.
    Symbolize,
    /// Reading a mapped binary's build id.
    BuildId,
    /// Holding a mapped binary open (or copied) for the symbolizer.
    HoldBinary,
    /// Telling a Go process's runtime threads from its own.
    RuntimeThreads,
    /// Deciding whether a process is a Go program leakscope can read.
    GoProgram,
    /// Reading a Go process's goroutine table.
    GoTable,
    /// Folding a Go process's goroutines into the census.
    GoCensus,
    /// Reading the limits on a process (its cgroups' limit files, its rlimits).
    Limits,
}

impl Step {
    /// Every step, in the order a scan reaches them.
    pub const ALL: [Step; 12] = [
        Step::Threads,
        Step::Facts,
        Step::Waits,
        Step::Unwind,
        Step::Symbolize,
        Step::BuildId,
        Step::HoldBinary,
        Step::RuntimeThreads,
        Step::GoProgram,
        Step::GoTable,
        Step::GoCensus,
        Step::Limits,
    ];

    /// Its name in messages and in `LEAKSCOPE_INJECT_PANIC_STEP`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Threads => "threads",
            Step::Facts => "facts",
            Step::Waits => "waits",
            Step::Unwind => "unwind",
            Step::Symbolize => "symbolize",
            Step::BuildId => "build-id",
            Step::HoldBinary => "hold-binary",
            Step::RuntimeThreads => "runtime-threads",
            Step::GoProgram => "go-program",
            Step::GoTable => "go-table",
            Step::GoCensus => "go-census",
            Step::Limits => "limits",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The analysis of one process panicked.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("internal error while analysing this process ({step}; panic: {message})")]
pub struct AnalysisPanic {
    /// The step that panicked.
    pub step: Step,
    /// The panic message, cut to [`MAX_PANIC_MESSAGE`] bytes.
    pub message: String,
}

/// Longest panic message kept (a message may quote what a hostile process supplied).
pub const MAX_PANIC_MESSAGE: usize = 200;

/// The process whose analysis runs now, on any thread (0: none): what a stalled scan
/// is blamed on.
static CURRENT_PID: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// The process whose analysis runs on this thread (0: none): where the fault
    /// injection strikes.
    static THREAD_PID: Cell<u32> = const { Cell::new(0) };
    /// The innermost step running on this thread: what a panic is blamed on.
    static THREAD_STEP: Cell<Option<Step>> = const { Cell::new(None) };
}

/// Runs `work`, step `step` of the analysis of process `pid`; a panic in it becomes an
/// [`AnalysisPanic`] instead of unwinding further. `work` must leave no shared state
/// half-updated that later scans rely on (what it builds is dropped on panic).
pub fn per_process<T>(pid: u32, step: Step, work: impl FnOnce() -> T) -> Result<T, AnalysisPanic> {
    CURRENT_PID.store(pid, Ordering::Relaxed);
    let outcome = on_this_thread(pid, step, work);
    CURRENT_PID.store(0, Ordering::Relaxed);
    outcome
}

/// [`per_process`] without saying which process runs now (for work that runs on
/// another thread while the scan waits for it: the scan says so itself).
pub fn on_this_thread<T>(
    pid: u32,
    step: Step,
    work: impl FnOnce() -> T,
) -> Result<T, AnalysisPanic> {
    let (outer_pid, outer_step) = (THREAD_PID.replace(pid), THREAD_STEP.get());
    let outcome = catch_unwind(AssertUnwindSafe(|| within(step, work)));
    // A panic leaves the step it struck in set: it is the one to blame.
    let innermost = THREAD_STEP.replace(outer_step).unwrap_or(step);
    THREAD_PID.set(outer_pid);
    outcome.map_err(|payload| AnalysisPanic {
        step: innermost,
        message: panic_message(payload.as_ref()),
    })
}

/// Runs `work` as step `step` inside the step under way (reading a binary's build id
/// while naming frames, say): a panic in it is blamed on `step`, and the fault
/// injection can strike there.
pub fn within<T>(step: Step, work: impl FnOnce() -> T) -> T {
    let outer = THREAD_STEP.replace(Some(step));
    inject(step);
    let out = work();
    THREAD_STEP.set(outer);
    out
}

/// The fault injection point of step `step` (test hook): panics when the process
/// analysed on this thread is named in `LEAKSCOPE_INJECT_PANIC_PID` for this step (or
/// for any step).
fn inject(step: Step) {
    let pid = THREAD_PID.get();
    if pid == 0 {
        return;
    }
    let strikes = injected_panics()
        .iter()
        .any(|&(p, at)| p == pid && at.is_none_or(|at| at == step));
    if strikes {
        panic!("injected by LEAKSCOPE_INJECT_PANIC_PID={pid} in step {step}");
    }
}

/// Says that the analysis of `pid` runs now (0: none), for a step run on another
/// thread while the scan waits for it.
pub(super) fn set_current_pid(pid: u32) {
    CURRENT_PID.store(pid, Ordering::Relaxed);
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

/// Test hook: the analyses that panic, from `LEAKSCOPE_INJECT_PANIC_PID=PID[:STEP],...`
/// (each process in that step, or in the first step reached).
fn injected_panics() -> &'static [(u32, Option<Step>)] {
    static INJECTED: OnceLock<Vec<(u32, Option<Step>)>> = OnceLock::new();
    INJECTED.get_or_init(|| {
        std::env::var("LEAKSCOPE_INJECT_PANIC_PID")
            .map(|list| parse_injected(&list))
            .unwrap_or_default()
    })
}

/// `PID[:STEP],...`; an entry that does not parse (a misspelt step) strikes nowhere: a
/// test must fail on it, not pass by chance.
fn parse_injected(list: &str) -> Vec<(u32, Option<Step>)> {
    list.split(',')
        .filter_map(|entry| {
            let (pid, step) = match entry.trim().split_once(':') {
                Some((pid, name)) => {
                    let step = Step::ALL.into_iter().find(|s| s.name() == name.trim())?;
                    (pid, Some(step))
                }
                None => (entry.trim(), None),
            };
            let pid: u32 = pid.trim().parse().ok().filter(|&p| p != 0)?;
            Some((pid, step))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a panic inside one process's analysis becomes that process's error
    /// (with its message and step) and that the caller carries on; no process is
    /// current after.
    #[test]
    fn a_panic_becomes_the_process_error() {
        assert_eq!(per_process(7, Step::Unwind, || 41 + 1), Ok(42));
        let err =
            per_process(7, Step::Unwind, || -> u32 { panic!("boom at {:#x}", 0x10) }).unwrap_err();
        assert_eq!(err.message, "boom at 0x10");
        assert_eq!(err.step, Step::Unwind);
        assert!(err.to_string().contains("boom at 0x10"), "{err}");
        assert!(err.to_string().contains("unwind"), "{err}");
        let v: Vec<u8> = Vec::new();
        let err = per_process(8, Step::Facts, || v[3]).unwrap_err();
        assert!(err.message.contains("index out of bounds"), "{err:?}");
        assert_eq!(current_pid(), None);
        let long = "é".repeat(MAX_PANIC_MESSAGE);
        let err = per_process(9, Step::Facts, || -> () { panic!("{long}") }).unwrap_err();
        assert!(err.message.len() <= MAX_PANIC_MESSAGE);
        assert_eq!(
            THREAD_PID.get(),
            0,
            "no process analysed on this thread after"
        );
        let err = per_process(9, Step::Symbolize, || {
            within(Step::BuildId, || 1);
            within(Step::HoldBinary, || -> u32 { panic!("inner") })
        })
        .unwrap_err();
        assert_eq!(err.step, Step::HoldBinary, "blamed on the innermost step");
        assert_eq!(THREAD_STEP.get(), None);
    }

    /// Check that every step has its own name, the one the fault injection takes, and
    /// that the injection list parses each process with its step, or none, and drops
    /// what does not parse.
    #[test]
    fn steps_have_distinct_names_the_injection_takes() {
        for (i, step) in Step::ALL.iter().enumerate() {
            assert!(Step::ALL[i + 1..].iter().all(|s| s.name() != step.name()));
            assert_eq!(step.to_string(), step.name());
        }
        assert_eq!(
            parse_injected(" 12:build-id, 13 ,14:go-table,15:nope,0,x:facts"),
            vec![
                (12, Some(Step::BuildId)),
                (13, None),
                (14, Some(Step::GoTable))
            ]
        );
    }
}
