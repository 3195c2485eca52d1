//! The pipeline of a watch: sources → census → history at each scan, and on demand
//! verdict (and, for leaks, the forecast) → summary of the window. Data flows one way;
//! each stage owns its own caches. The limit source reads the limits on the processes
//! the census found waiters in, and what those limits count.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    census::{CensusTaker, Scope},
    error::SourceError,
    history::History,
    host::kubelet::KubeletLogDirs,
    isolate::{Faults, StuckReads},
    sources::{
        error::READ_ERROR_KINDS,
        go::reader::{GoroutineSource, ReadPacing},
        limits::LimitSource,
        threads::{ThreadSource, ThreadSourceChoice, ThreadSourceKind},
    },
    summary::{JudgementCache, RecordedSite, WindowClock, WindowSummary, summarize},
    verdict::VerdictPolicy,
};

/// What one scan saw and cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanStats {
    pub duration: Duration,
    pub processes: usize,
    pub waiters: usize,
    /// Go processes whose goroutines could not be read.
    pub go_errors: usize,
    /// Processes the scan could not read, by [`crate::sources::error::ReadError::kind`] (as
    /// [`READ_ERROR_KINDS`] lists them).
    pub unreadable: [usize; READ_ERROR_KINDS.len()],
    /// The reads stuck in the kernel after the scan.
    pub stuck: StuckReads,
}

/// Watches the host (or some processes) scan by scan.
pub struct Watcher {
    threads: ThreadSource,
    goroutines: GoroutineSource,
    limits: LimitSource,
    taker: CensusTaker,
    history: History,
    /// Wall-clock and monotonic time of the newest scan, to date the window.
    last_scan_at: Option<(SystemTime, Instant)>,
    host: String,
    judged: JudgementCache,
    /// The processes whose analysis failed, shared by the sources and the census.
    faults: Arc<Faults>,
}

impl Watcher {
    /// Opens the thread source (loads the kernel programs, or falls back to /proc as
    /// `thread_source` allows); nothing is scanned yet. `pacing` says how often a Go
    /// process whose reads are expensive is read.
    pub fn new(
        scope: Scope,
        thread_source: ThreadSourceChoice,
        pacing: ReadPacing,
    ) -> Result<Self, SourceError> {
        // What failed in one process's analysis, for every stage of the watch.
        let faults = Arc::new(Faults::default());
        Ok(Self {
            threads: ThreadSource::open(thread_source, faults.clone(), pacing.time_budget)?,
            goroutines: GoroutineSource::new(pacing, faults.clone()),
            limits: LimitSource::new(faults.clone()),
            taker: CensusTaker::new(scope, faults.clone()),
            faults,
            history: History::new(),
            last_scan_at: None,
            host: hostname(),
            judged: JudgementCache::default(),
        })
    }

    /// Whether the Go runtime's own threads count among Go processes' thread sites
    /// (hidden by default; see [`CensusTaker::set_show_runtime_threads`]).
    pub fn set_show_runtime_threads(&mut self, show: bool) {
        self.taker.set_show_runtime_threads(show);
    }

    /// How long the limits on each process are kept before they are read again: the
    /// window (a diagnosis's duration, the daemon's `--window`).
    pub fn set_limits_refresh(&mut self, refresh: Duration) {
        self.limits.set_refresh(refresh);
    }

    /// Where the kubelet's log directories are, which name pods and containers.
    pub fn set_kubelet_log_dirs(&mut self, dirs: KubeletLogDirs) {
        self.threads.set_kubelet_log_dirs(dirs);
    }

    /// One scan of every source, folded into the history.
    pub fn scan(&mut self) -> Result<ScanStats, SourceError> {
        let t0 = Instant::now();
        let taker = &self.taker;
        let mut threads = self.threads.scan(&|pid| taker.watches(pid))?;
        let t1 = Instant::now();
        let go_scans = self
            .goroutines
            .scan(&threads.processes, |pid| taker.watches(pid));
        let t2 = Instant::now();
        let go_errors = go_scans.iter().filter(|s| s.goroutines.is_err()).count();
        let tasks_by_uid = threads.tasks_by_uid.take();
        let mut census = self.taker.take(threads, go_scans);
        self.taker
            .note_degraded(&mut census, self.threads.take_degraded());
        let taker = &self.taker;
        self.faults.retain(|process| taker.is_live(process));
        let t3 = Instant::now();
        census.resources = self.limits.scan(census.processes.keys(), tasks_by_uid);
        let t4 = Instant::now();
        self.history.record(&census);
        // The pages of the binaries leakscope maps (its own mappings and the
        // symbolizer's) leave its resident set after every scan, so that they do not
        // stay resident with every binary it ever read.
        crate::host::mapped::release_resident_pages();
        log::debug!(
            "scan: threads {:?}, goroutines {:?}, census {:?}, limits {:?}, history {:?}",
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t4 - t3,
            t4.elapsed()
        );
        self.last_scan_at = Some((SystemTime::now(), Instant::now()));
        let mut unreadable = [0; READ_ERROR_KINDS.len()];
        for reason in census
            .processes
            .values()
            .filter_map(|p| p.unreadable.as_ref())
        {
            unreadable[reason.kind_index()] += 1;
        }
        Ok(ScanStats {
            duration: t0.elapsed(),
            processes: census.processes.len(),
            waiters: census.processes.values().map(|p| p.waiters()).sum(),
            go_errors,
            unreadable,
            stuck: self.faults.stuck_reads(),
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

    /// The processes whose analysis failed, and the reads stuck now (shared: a read
    /// may get stuck, and return, between scans).
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// The thread source in use.
    pub fn thread_source(&self) -> ThreadSourceKind {
        self.threads.kind()
    }

    /// Which thread source is in use and why, e.g. "procfs: no bpf_task_pt_regs (Linux
    /// 5.15+)".
    pub fn thread_source_reason(&self) -> &str {
        self.threads.reason()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Judges every site of the window and summarizes it; when `record`, also returns
    /// what each site's verdict saw (test data for the verdict), for the sites judged
    /// afresh.
    pub fn summary(
        &mut self,
        policy: &VerdictPolicy,
        record: bool,
    ) -> (WindowSummary, Vec<RecordedSite>) {
        let started_at = match self.last_scan_at {
            Some((wall, _)) => wall - Duration::from_secs_f64(self.history.span_s()),
            None => SystemTime::now(),
        };
        let clock = WindowClock {
            host: self.host.clone(),
            started_at,
            thread_source: self.threads.kind(),
        };
        summarize(
            &self.history,
            &self.taker,
            policy,
            clock,
            &mut self.judged,
            record,
        )
    }
}

/// This host's name from uname(2), as /proc/sys/kernel/hostname has it: the systemd
/// unit's `ProcSubset=pid` hides /proc/sys.
fn hostname() -> String {
    let mut name = [0u8; 256];
    // SAFETY: gethostname writes at most name.len() bytes into name.
    if unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } != 0 {
        return "unknown".into();
    }
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}
