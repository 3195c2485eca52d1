//! `leakscope diagnose`: watch the host for a while, then judge every site.
//!
//! Data flows one way: source records → census (per scan) → history (the window) →
//! verdict (per site) → report.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    io::{IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    census::{CensusTaker, Scope, WaitDetail},
    error::DiagnoseError,
    history::{History, SiteHistory},
    report::{FrameReport, ProcessReport, REPORT_VERSION, Report, SiteReport},
    sources::{goroutines::GoroutineSource, thread_waiters::ThreadWaiterSource},
    verdict::{GrowthVerdict, SiteObservation, VerdictPolicy, judge, slope},
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
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            interval: Duration::from_secs(1),
            pids: Vec::new(),
            progress: false,
            record_observations: None,
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
pub fn diagnose(opts: &DiagnoseOptions) -> Result<Report, DiagnoseError> {
    preflight(opts)?;
    let mut source = ThreadWaiterSource::load()?;
    let scope = if opts.pids.is_empty() {
        Scope::Host
    } else {
        Scope::Pids(opts.pids.iter().copied().collect::<HashSet<_>>())
    };
    let mut taker = CensusTaker::new(scope);
    let mut goroutines = GoroutineSource::new();
    let mut history = History::new();
    let started_at = SystemTime::now();
    let start = Instant::now();
    let mut next_scan = start;
    loop {
        let t0 = Instant::now();
        let records = source.scan()?;
        let t1 = Instant::now();
        let go_scans = goroutines.scan(&records.processes, |pid| taker.watches(pid));
        let t2 = Instant::now();
        let census = taker.take(&records, &go_scans);
        history.record(&census);
        log::debug!(
            "scan: threads {:?}, goroutines {:?}, census+history {:?}",
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        let elapsed = start.elapsed();
        if opts.progress {
            let waiters: usize = census.processes.values().map(|p| p.waiters()).sum();
            eprint!(
                "\rleakscope: {:>3}/{} s  {} processes with {} blocked waiters   ",
                elapsed.as_secs(),
                opts.duration.as_secs(),
                census.processes.len(),
                waiters
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
    let duration_s = start.elapsed().as_secs_f64();
    let (report, observations) = build_report(&history, &taker, started_at, duration_s);
    if let Some(path) = &opts.record_observations {
        let json = serde_json::to_string_pretty(&observations).expect("observations serialize");
        if let Err(e) = std::fs::write(path, json) {
            log::warn!("cannot write observations to {}: {e}", path.display());
        }
    }
    Ok(report)
}

/// One recorded site: what it was and what the verdict saw (test data for the verdict).
#[derive(serde::Serialize)]
pub struct RecordedSite {
    pub pid: u32,
    pub comm: String,
    /// Function names of the site's stack, innermost first.
    pub stack: Vec<Option<String>>,
    pub observation: SiteObservation,
}

fn build_report(
    history: &History,
    taker: &CensusTaker,
    started_at: SystemTime,
    duration_s: f64,
) -> (Report, Vec<RecordedSite>) {
    let policy = VerdictPolicy::default();
    let mut processes = Vec::new();
    let mut recorded = Vec::new();
    for (key, process) in &history.processes {
        let mut sites = Vec::new();
        for (site_key, site) in &process.sites {
            let obs = history.observe(process, site_key, site);
            let judgement = judge(&obs, &policy);
            let count = obs.counts.last().copied().unwrap_or(0);
            if count == 0 && judgement.verdict != GrowthVerdict::Leak {
                continue;
            }
            let frames = taker.frames(key, site_key).unwrap_or_default();
            let mut report = SiteReport::new(
                site_key.kind.name(),
                site_key.wait.to_string(),
                count,
                &judgement,
                &frames,
            );
            let ops: BTreeSet<&'static str> = site
                .members
                .values()
                .filter_map(|m| match m.detail {
                    WaitDetail::Futex { op, .. } => Some(op.name()),
                    WaitDetail::Goroutine { .. } => None,
                })
                .collect();
            report.ops = ops.into_iter().collect();
            report.created_by = most_common_creator(site)
                .and_then(|gopc| taker.creator(key, gopc))
                .map(FrameReport::from);
            sites.push(report);
            recorded.push(RecordedSite {
                pid: key.pid,
                comm: process.facts.comm.clone(),
                stack: frames.iter().map(|f| f.function.clone()).collect(),
                observation: obs,
            });
        }
        if sites.is_empty() && process.facts.error.is_none() {
            continue;
        }
        let times: Vec<f64> = (process.first_scan..=process.last_scan)
            .map(|i| (history.scan_times_ns[i] - history.scan_times_ns[0]) as f64 / 1e9)
            .collect();
        let totals: Vec<f64> = (process.first_scan..=process.last_scan)
            .map(|i| {
                process
                    .sites
                    .values()
                    .map(|s| s.counts.get(&i).copied().unwrap_or(0) as f64)
                    .sum()
            })
            .collect();
        let verdict = if sites.iter().any(|s| s.verdict == GrowthVerdict::Leak) {
            GrowthVerdict::Leak
        } else {
            GrowthVerdict::Ok
        };
        processes.push(ProcessReport {
            pid: key.pid,
            comm: process.facts.comm.clone(),
            exe: process.facts.exe.clone(),
            runtime: process.facts.runtime.clone(),
            error: process.facts.error.clone(),
            verdict,
            waiters: sites.iter().map(|s| s.count).sum(),
            growth_per_min: (slope(&times, &totals) * 6000.0).round() / 100.0,
            sites,
        });
    }
    let mut report = Report {
        version: REPORT_VERSION,
        host: hostname(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        duration_s: (duration_s * 100.0).round() / 100.0,
        processes,
    };
    report.sort();
    (report, recorded)
}

/// The `go` statement that created most of a goroutine site's members.
fn most_common_creator(site: &SiteHistory) -> Option<u64> {
    let mut counts: HashMap<u64, u32> = HashMap::new();
    for m in site.members.values() {
        if let WaitDetail::Goroutine { gopc } = m.detail {
            *counts.entry(gopc).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(gopc, n)| (n, std::cmp::Reverse(gopc)))
        .map(|(gopc, _)| gopc)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether progress lines would reach a person.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
