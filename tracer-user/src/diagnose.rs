//! `leakscope diagnose`: watch the host for a while, then judge every site.
//!
//! Data flows one way: source records → census (per scan) → history (the window) →
//! verdict (per site) → summary, which `main` renders.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    census::Scope,
    error::DiagnoseError,
    host::kubelet::KubeletLogDirs,
    sources::{
        goroutines::{DEFAULT_READ_TIME_BUDGET, ReadPacing},
        threads::{ThreadSourceChoice, ThreadSourceKind},
    },
    summary::WindowSummary,
    verdict::VerdictPolicy,
    watch::Watcher,
};

/// What a diagnosis watches and for how long.
#[derive(Clone, Debug)]
pub struct DiagnoseOptions {
    pub duration: Duration,
    /// Time between scans.
    pub interval: Duration,
    /// Only these processes; empty means the whole host.
    pub pids: Vec<u32>,
    /// Print a progress line on stderr.
    pub progress: bool,
    /// Write every site's observation here (JSON), to keep real runs as verdict test data.
    pub record_observations: Option<PathBuf>,
    /// Keep the Go runtime's own threads (idle Ms) among Go processes' thread sites.
    pub show_runtime_threads: bool,
    /// Where thread waiters come from (`--thread-source`).
    pub thread_source: ThreadSourceChoice,
    /// The longest one Go process's goroutine read may take (`--read-budget`).
    pub read_budget: Duration,
    /// The kubelet's log directories (`--pod-log-dir`, `--container-log-dir`).
    pub kubelet_logs: KubeletLogDirs,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            interval: Duration::from_secs(1),
            pids: Vec::new(),
            progress: false,
            record_observations: None,
            show_runtime_threads: false,
            thread_source: ThreadSourceChoice::Auto,
            read_budget: DEFAULT_READ_TIME_BUDGET,
            kubelet_logs: KubeletLogDirs::default(),
        }
    }
}

/// Checks what a diagnosis needs before it starts: root, and that named pids exist.
pub fn preflight(opts: &DiagnoseOptions) -> Result<(), DiagnoseError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DiagnoseError::NotRoot);
    }
    for &pid in &opts.pids {
        if pid == 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(DiagnoseError::UnknownPid(pid));
        }
    }
    Ok(())
}

/// Runs one diagnosis.
pub fn diagnose(opts: &DiagnoseOptions) -> Result<WindowSummary, DiagnoseError> {
    preflight(opts)?;
    let scope = Scope::of_pids(&opts.pids);
    // A diagnosis is short: every scan reads every process.
    let mut watcher = Watcher::new(
        scope,
        opts.thread_source,
        ReadPacing {
            time_budget: opts.read_budget,
            ..ReadPacing::EVERY_SCAN
        },
    )?;
    watcher.set_show_runtime_threads(opts.show_runtime_threads);
    watcher.set_kubelet_log_dirs(opts.kubelet_logs.clone());
    // One line where leakscope runs degraded; quiet when all is as usual.
    if watcher.thread_source() == ThreadSourceKind::Procfs
        && opts.thread_source != ThreadSourceChoice::Procfs
    {
        log::warn!("thread source: {}", watcher.thread_source_reason());
    } else {
        log::info!("thread source: {}", watcher.thread_source_reason());
    }
    let start = Instant::now();
    let mut next_scan = start;
    loop {
        let stats = watcher.scan()?;
        let elapsed = start.elapsed();
        if opts.progress {
            eprint!(
                "\rleakscope: {:>3}/{} s  {} processes with {} blocked waiters   ",
                elapsed.as_secs(),
                opts.duration.as_secs(),
                stats.processes,
                stats.waiters
            );
            let _ = std::io::stderr().flush();
        }
        if elapsed >= opts.duration {
            break;
        }
        next_scan += opts.interval;
        let deadline = (start + opts.duration).min(next_scan);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
    if opts.progress {
        eprint!("\r{:80}\r", "");
    }
    let (summary, observations) = watcher.summary(
        &VerdictPolicy::default(),
        opts.record_observations.is_some(),
    );
    if let Some(path) = &opts.record_observations {
        let json = serde_json::to_string_pretty(&observations).expect("observations serialize");
        if let Err(e) = std::fs::write(path, json) {
            log::warn!("cannot write observations to {}: {e}", path.display());
        }
    }
    Ok(summary)
}

/// Whether progress lines would reach a person.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
