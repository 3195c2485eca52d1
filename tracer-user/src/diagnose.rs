//! `leakscope diagnose`: watch the host for a while, then judge every site.
//!
//! The watch is the shared scan loop ([`crate::watch::driver`]) on a fixed schedule;
//! its sink only shows progress. The summary of the whole watch is what `main` renders
//! (text or JSON report, pprof profile, flame graph).

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    error::{ScanError, WatchError},
    sources::threads::{ThreadSourceChoice, ThreadSourceKind},
    summary::WindowSummary,
    verdict::VerdictPolicy,
    watch::{Driver, Flow, ScanStats, Schedule, Sink, WatchArgs, Watcher, preflight},
};

/// What a diagnosis watches and for how long.
#[derive(Clone, Debug)]
pub struct DiagnoseOptions {
    /// What to watch and how (the flags every watching command shares).
    pub watch: WatchArgs,
    pub duration: Duration,
    /// Print a progress line on stderr.
    pub progress: bool,
    /// Write every site's observation here (JSON), to keep real runs as verdict test data.
    pub record_observations: Option<PathBuf>,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        Self {
            watch: WatchArgs::default(),
            duration: Duration::from_secs(15),
            progress: false,
            record_observations: None,
        }
    }
}

/// Runs one diagnosis.
pub fn diagnose(opts: &DiagnoseOptions) -> Result<WindowSummary, WatchError> {
    let schedule = Schedule::Fixed(opts.duration);
    preflight(&opts.watch, &schedule)?;
    let mut driver = Driver::open(&opts.watch, schedule)?;
    log_thread_source(driver.watcher(), opts.watch.thread_source);
    let mut progress = Progress {
        shown: opts.progress,
        start: Instant::now(),
        duration: opts.duration,
    };
    driver.run(&mut progress)?;
    progress.clear();
    let (summary, observations) = driver.watcher_mut().summary(
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

/// One line where leakscope runs degraded (the /proc fallback it was not asked for);
/// quiet when all is as usual.
fn log_thread_source(watcher: &Watcher, asked: ThreadSourceChoice) {
    if watcher.thread_source() == ThreadSourceKind::Procfs && asked != ThreadSourceChoice::Procfs {
        log::warn!("thread source: {}", watcher.thread_source_reason());
    } else {
        log::info!("thread source: {}", watcher.thread_source_reason());
    }
}

/// The diagnosis's sink: a progress line on stderr after each scan, when wanted.
struct Progress {
    shown: bool,
    start: Instant,
    duration: Duration,
}

impl Sink for Progress {
    type Error = WatchError;

    fn scanned(
        &mut self,
        _: &mut Watcher,
        scan: Result<ScanStats, ScanError>,
    ) -> Result<Flow, WatchError> {
        let stats = scan?;
        if self.shown {
            eprint!(
                "\rleakscope: {:>3}/{} s  {} processes with {} blocked waiters   ",
                self.start.elapsed().as_secs(),
                self.duration.as_secs(),
                stats.processes,
                stats.waiters
            );
            let _ = std::io::stderr().flush();
        }
        Ok(Flow::Continue)
    }
}

impl Progress {
    fn clear(&self) {
        if self.shown {
            eprint!("\r{:80}\r", "");
        }
    }
}

/// Whether progress lines would reach a person.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
