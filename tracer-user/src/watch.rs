//! The watch loop shared by `diagnose` and the daemon: sources → census → history, and
//! on demand verdict → report. Data flows one way; each stage owns its own caches.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant, SystemTime},
};

use crate::{
    census::{CensusTaker, Scope, WaitDetail},
    error::SourceError,
    history::{History, SiteHistory},
    report::{FrameReport, ProcessReport, REPORT_VERSION, Report, SiteReport},
    sources::{goroutines::GoroutineSource, thread_waiters::ThreadWaiterSource},
    verdict::{GrowthVerdict, SiteObservation, VerdictPolicy, judge, slope},
};

/// What one scan saw and cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanStats {
    pub duration: Duration,
    pub processes: usize,
    pub waiters: usize,
    /// Go processes whose goroutines could not be read.
    pub go_errors: usize,
}

/// Watches the host (or some processes) scan by scan.
pub struct Watcher {
    threads: ThreadWaiterSource,
    goroutines: GoroutineSource,
    taker: CensusTaker,
    history: History,
    /// Wall-clock and monotonic time of the newest scan, to date the window.
    last_scan_at: Option<(SystemTime, Instant)>,
}

impl Watcher {
    /// Loads the kernel programs; nothing is scanned yet.
    pub fn new(scope: Scope) -> Result<Self, SourceError> {
        Ok(Self {
            threads: ThreadWaiterSource::load()?,
            goroutines: GoroutineSource::new(),
            taker: CensusTaker::new(scope),
            history: History::new(),
            last_scan_at: None,
        })
    }

    /// One scan of every source, folded into the history.
    pub fn scan(&mut self) -> Result<ScanStats, SourceError> {
        let t0 = Instant::now();
        let records = self.threads.scan()?;
        let t1 = Instant::now();
        let taker = &self.taker;
        let go_scans = self
            .goroutines
            .scan(&records.processes, |pid| taker.watches(pid));
        let t2 = Instant::now();
        let census = self.taker.take(&records, &go_scans);
        self.history.record(&census);
        log::debug!(
            "scan: threads {:?}, goroutines {:?}, census+history {:?}",
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        self.last_scan_at = Some((SystemTime::now(), Instant::now()));
        Ok(ScanStats {
            duration: t0.elapsed(),
            processes: census.processes.len(),
            waiters: census.processes.values().map(|p| p.waiters()).sum(),
            go_errors: go_scans.iter().filter(|s| s.goroutines.is_err()).count(),
        })
    }

    /// Keeps only the last `window` of history (the daemon's rolling window), and forgets
    /// the symbolized sites nothing in it refers to.
    pub fn trim(&mut self, window: Duration) {
        self.history.trim(window.as_nanos() as u64);
        let history = &self.history;
        self.taker
            .retain_sites(|process, site| history.has_site(process, site));
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Judges every site of the window and builds the report; also returns what each
    /// site's verdict saw (test data for the verdict).
    pub fn report(&self, policy: &VerdictPolicy) -> (Report, Vec<RecordedSite>) {
        let span_s = self.history.span_s();
        let started_at = match self.last_scan_at {
            Some((wall, _)) => wall - Duration::from_secs_f64(span_s),
            None => SystemTime::now(),
        };
        build_report(&self.history, &self.taker, policy, started_at, span_s)
    }
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
    policy: &VerdictPolicy,
    started_at: SystemTime,
    duration_s: f64,
) -> (Report, Vec<RecordedSite>) {
    let mut processes = Vec::new();
    let mut recorded = Vec::new();
    for (key, process) in &history.processes {
        let mut sites = Vec::new();
        for (site_key, site) in &process.sites {
            let obs = history.observe(key, process, site_key, site);
            let judgement = judge(&obs, policy);
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
        let scans = process.first_scan.max(*history.window().start())..=process.last_scan;
        let t0 = history.time_of(*history.window().start());
        let times: Vec<f64> = scans
            .clone()
            .map(|i| (history.time_of(i) - t0) as f64 / 1e9)
            .collect();
        let totals: Vec<f64> = scans
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
            suspect: verdict == GrowthVerdict::Ok && sites.iter().any(|s| s.suspect),
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
