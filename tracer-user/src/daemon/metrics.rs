//! The daemon's Prometheus series: what `leakscope run` serves on `/metrics`.
//!
//! Every family is declared once, as data, in [`METRICS`] (name, help, labels, type);
//! the exporter registers the table and the `observe_*` methods fill it from typed data
//! (the window summary, the scan stats, the history's size), as a thin collector.
//! Per process and per site series are rebuilt from each window summary (their
//! families are reset first, so the series of exited processes disappear). Label values
//! come only from bounded sets: one process's labels (pid, comm, exe, runtime, cgroup,
//! container_id, namespace, pod, container) and, per site, kind, wait reason and the site's label (unique within the
//! process), and for the site's verdict the rule that decided it; the number of
//! processes and of sites per process is capped (largest first, leaks always first) and
//! what was cut is counted.

use std::collections::HashMap;

use bytes::Bytes;
use prometheus::{
    Counter, CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry,
    TextEncoder,
};

use crate::{
    budget::{MemoryBudget, alloc::live_heap_bytes},
    history::History,
    host::cgroup::PodIdentity,
    isolate::StuckReads,
    model::WaiterKind,
    sanitize,
    sources::{error::READ_ERROR_KINDS, threads::ThreadSourceKind},
    summary::{ProcessSummary, SiteSummary, WindowSummary},
    watch::ScanStats,
};

/// Labels of every per-process series (and, first, of every per-site series).
/// `namespace`, `pod` and `container` (the container's name) are cAdvisor's and
/// kube-state-metrics' labels, so series join theirs `on (namespace, pod)`;
/// `container_id` is the 12-digit container id (the `container` label before pods were
/// named).
pub const PROCESS_LABELS: [&str; 9] = [
    "pid",
    "comm",
    "exe",
    "runtime",
    "cgroup",
    "container_id",
    "namespace",
    "pod",
    "container",
];
/// The longest `exe` (and `cgroup`) label, in bytes: longer paths keep their end after
/// a `~` (see [`sanitize::capped`]).
pub const MAX_EXE_LABEL: usize = 160;
/// Labels a per-site series adds to [`PROCESS_LABELS`].
pub const SITE_LABELS: [&str; 3] = ["kind", "wait", "site"];
/// The label `leakscope_site_rule` adds to the site's: the rule that decided its verdict.
pub const RULE_LABEL: &str = "rule";
/// The label a process's exhaustion series add to the process's: which limit.
pub const LIMIT_LABEL: &str = "limit";
/// Why a process could not be read: a [`crate::sources::error::ReadError::kind`].
pub const REASON_LABEL: &str = "reason";
/// The label `leakscope_process_degraded` adds to the process's: the budget that cut
/// its analysis.
pub const BUDGET_LABEL: &str = "budget";

/// Which labels a family's series carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Labels {
    /// One series, no labels.
    None,
    /// [`PROCESS_LABELS`]: one series per exported process.
    Process,
    /// The process's, kind and wait reason.
    ProcessWait,
    /// The process's and [`LIMIT_LABEL`]: one series per limit with a forecast.
    ProcessLimit,
    /// The process's and [`SITE_LABELS`]: one series per exported site.
    Site,
    /// A site's, and [`RULE_LABEL`].
    SiteVerdict,
    /// The process's and [`REASON_LABEL`].
    ProcessReason,
    /// The process's, and [`BUDGET_LABEL`].
    ProcessBudget,
    /// These, set once.
    Fixed(&'static [&'static str]),
}

impl Labels {
    /// The label names, `goroutine_labels` (see [`Limits::label_keys`]) after the site's.
    fn names(self, goroutine_labels: &[String]) -> Vec<&str> {
        let site = PROCESS_LABELS.iter().chain(&SITE_LABELS).copied();
        let with_labels = site
            .clone()
            .chain(goroutine_labels.iter().map(String::as_str));
        match self {
            Self::None => Vec::new(),
            Self::Process => PROCESS_LABELS.to_vec(),
            Self::ProcessWait => site.take(PROCESS_LABELS.len() + 2).collect(),
            Self::ProcessLimit => PROCESS_LABELS
                .iter()
                .copied()
                .chain([LIMIT_LABEL])
                .collect(),
            Self::Site => with_labels.collect(),
            Self::SiteVerdict => with_labels.chain([RULE_LABEL]).collect(),
            Self::ProcessReason => PROCESS_LABELS
                .iter()
                .copied()
                .chain([REASON_LABEL])
                .collect(),
            Self::ProcessBudget => PROCESS_LABELS
                .iter()
                .copied()
                .chain([BUDGET_LABEL])
                .collect(),
            Self::Fixed(names) => names.to_vec(),
        }
    }

    /// Series rebuilt from every window summary.
    fn per_process(self) -> bool {
        matches!(
            self,
            Self::Process
                | Self::ProcessWait
                | Self::ProcessLimit
                | Self::Site
                | Self::SiteVerdict
                | Self::ProcessReason
                | Self::ProcessBudget
        )
    }
}

/// What type a family is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Type {
    Gauge,
    Counter,
    /// With these bucket bounds.
    Histogram(&'static [f64]),
}

/// Every family the daemon exports, in the order of [`METRICS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    ProcessWaiters,
    ProcessGrowth,
    ProcessLeak,
    ProcessSuspect,
    ProcessOldest,
    ProcessReadAge,
    ProcessSites,
    ProcessSitesOmitted,
    ProcessStackBytes,
    ProcessExhaustion,
    WaitersByWait,
    SiteWaiters,
    SiteGrowth,
    SiteOldest,
    SiteLeak,
    SiteSuspect,
    SiteRule,
    SiteRuntimeLeaked,
    SiteStackBytes,
    SiteStackResidentBytes,
    LeakingProcesses,
    ProcessesOmitted,
    Scans,
    ScanErrors,
    ScanDuration,
    ReportDuration,
    LastScan,
    WatchedProcesses,
    WatchedWaiters,
    GoReadErrors,
    UnreadableProcesses,
    ProcessUnreadable,
    StuckReads,
    StuckReadsTotal,
    Window,
    HistoryProcesses,
    HistoryMembers,
    DumpsWritten,
    DumpsDeferred,
    DumpErrors,
    BuildInfo,
    ThreadSource,
    CpuSeconds,
    ResidentBytes,
    ProcessDegraded,
    MemoryBudget,
    MemoryHeld,
    MemoryEvicted,
    MemoryRefused,
    MemoryHeap,
}

/// One family: what it is called, what it means, its labels and its type.
struct Metric {
    family: Family,
    name: &'static str,
    help: &'static str,
    labels: Labels,
    kind: Type,
}

const fn metric(
    family: Family,
    name: &'static str,
    labels: Labels,
    kind: Type,
    help: &'static str,
) -> Metric {
    Metric {
        family,
        name,
        help,
        labels,
        kind,
    }
}

use self::{Family as F, Labels as L, Type as T};

/// Buckets of the scan time histogram, in seconds.
const SCAN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every family the daemon exports (the README's metrics table says the same).
#[rustfmt::skip]
const METRICS: [Metric; 50] = [
    metric(F::ProcessWaiters, "leakscope_process_blocked_waiters", L::Process, T::Gauge,
        "Blocked waiters (threads in futex waits, parked goroutines) of the process at the last scan, all sites."),
    metric(F::ProcessGrowth, "leakscope_process_growth_per_minute", L::Process, T::Gauge,
        "Growth of the process's blocked population per minute (least-squares slope over the window)."),
    metric(F::ProcessLeak, "leakscope_process_leak", L::Process, T::Gauge,
        "1 when at least one site of the process is judged a leak over the window, else 0."),
    metric(F::ProcessSuspect, "leakscope_process_suspect", L::Process, T::Gauge,
        "1 when no leak is proven but a site of the process grows in a way that may be one, else 0."),
    metric(F::ProcessOldest, "leakscope_process_oldest_wait_seconds", L::Process, T::Gauge,
        "The longest any current waiter of the process has been blocked, in seconds."),
    metric(F::ProcessReadAge, "leakscope_process_goroutines_read_age_seconds", L::Process, T::Gauge,
        "Go processes: seconds from the latest read of its goroutines to the last scan; a huge process is read less often than every scan, so that reading it costs at most 2% of one core (at least every 20 s)."),
    metric(F::ProcessSites, "leakscope_process_sites", L::Process, T::Gauge,
        "Distinct sites (stacks where waiters block) of the process, before the cap."),
    metric(F::ProcessSitesOmitted, "leakscope_process_sites_omitted", L::Process, T::Gauge,
        "Sites of the process not exported as leakscope_site_* series (over --max-sites; the smallest are cut)."),
    metric(F::ProcessStackBytes, "leakscope_process_stack_bytes", L::Process, T::Gauge,
        "Stack memory the process's blocked waiters hold: goroutine stacks, and the stack mappings (reserved address space) of blocked threads."),
    metric(F::ProcessExhaustion, "leakscope_process_exhaustion_seconds", L::ProcessLimit, T::Gauge,
        "Leaking processes: seconds until the leak reaches each limit at the process's growth over the window (0: reached); limit: pids.max, kernel.pid_max, kernel.threads-max, RLIMIT_NPROC, vm.max_map_count, memory.max, memory.limit_in_bytes, MemAvailable. Only limits with a forecast."),
    metric(F::WaitersByWait, "leakscope_process_waiters_by_wait", L::ProcessWait, T::Gauge,
        "Blocked waiters of the process by kind (thread, goroutine) and wait reason, all sites."),
    metric(F::SiteWaiters, "leakscope_site_blocked_waiters", L::Site, T::Gauge,
        "Blocked waiters at the site at the last scan."),
    metric(F::SiteGrowth, "leakscope_site_growth_per_minute", L::Site, T::Gauge,
        "Growth of the site's waiter count per minute (least-squares slope over the window)."),
    metric(F::SiteOldest, "leakscope_site_oldest_wait_seconds", L::Site, T::Gauge,
        "The longest a current waiter at the site has been blocked, in seconds."),
    metric(F::SiteLeak, "leakscope_site_leak", L::Site, T::Gauge,
        "1 when the site is judged a leak over the window (waiters arrive and stay), else 0."),
    metric(F::SiteSuspect, "leakscope_site_suspect", L::Site, T::Gauge,
        "1 when the site is judged ok but grows in a way that may be a leak (watch longer), else 0."),
    metric(F::SiteRule, "leakscope_site_rule", L::SiteVerdict, T::Gauge,
        "Always 1; rule: the verdict's rule that decided the site's verdict (as the JSON rule). Its own series, so that a change of rule never changes the identity of the verdict series."),
    metric(F::SiteRuntimeLeaked, "leakscope_site_runtime_leaked", L::Site, T::Gauge,
        "Goroutine sites: members the Go runtime itself proved leaked (status _Gleaked, set by the GC cycle that taking the goroutineleak profile runs, Go 1.26+); evidence, not the verdict."),
    metric(F::SiteStackBytes, "leakscope_site_stack_bytes", L::Site, T::Gauge,
        "Stack memory the site's waiters hold: goroutine stacks (g.stack), or blocked threads' stack mappings (reserved address space)."),
    metric(F::SiteStackResidentBytes, "leakscope_site_stack_resident_bytes", L::Site, T::Gauge,
        "Thread sites: how much of the waiters' stack mappings is resident."),
    metric(F::LeakingProcesses, "leakscope_leaking_processes", L::None, T::Gauge,
        "Processes judged leaking at the last report (exported or not)."),
    metric(F::ProcessesOmitted, "leakscope_processes_omitted", L::None, T::Gauge,
        "Processes with blocked waiters not exported (over --max-processes; the smallest are cut)."),
    metric(F::Scans, "leakscope_scans_total", L::None, T::Counter, "Scans of the host done."),
    metric(F::ScanErrors, "leakscope_scan_errors_total", L::None, T::Counter, "Scans that failed."),
    metric(F::ScanDuration, "leakscope_scan_duration_seconds", L::None, T::Histogram(SCAN_BUCKETS),
        "Wall time of one scan (threads, goroutines, census)."),
    metric(F::ReportDuration, "leakscope_report_duration_seconds", L::None, T::Gauge,
        "Wall time of the last verdict and report over the window."),
    metric(F::LastScan, "leakscope_last_scan_timestamp_seconds", L::None, T::Gauge,
        "Unix time of the last successful scan."),
    metric(F::WatchedProcesses, "leakscope_watched_processes", L::None, T::Gauge,
        "Processes with blocked waiters seen by the last scan."),
    metric(F::WatchedWaiters, "leakscope_watched_waiters", L::None, T::Gauge,
        "Blocked waiters seen by the last scan, host-wide."),
    metric(F::GoReadErrors, "leakscope_go_read_errors", L::None, T::Gauge,
        "Go processes whose goroutines the last scan could not read."),
    metric(F::UnreadableProcesses, "leakscope_unreadable_processes", L::Fixed(&[REASON_LABEL]), T::Gauge,
        "Processes the last scan could not read, by reason: go (its goroutine table or executable), not_resident (memory it keeps only on a file's pages not in memory, not read), panic (a bug its analysis reached), stuck (a read of it blocked in the kernel), stuck_limit (not read: as many reads as may be are stuck)."),
    metric(F::ProcessUnreadable, "leakscope_process_unreadable", L::ProcessReason, T::Gauge,
        "1 for a process the last scan could not read, with the reason (as leakscope_unreadable_processes); its JSON dump says why in full."),
    metric(F::StuckReads, "leakscope_stuck_reads", L::None, T::Gauge,
        "Reads of processes stuck in the kernel now (a file system or device that does not answer?): abandoned past --read-budget, each keeps a reader thread until it returns; at most 4."),
    metric(F::StuckReadsTotal, "leakscope_stuck_reads_total", L::None, T::Counter,
        "Reads of processes abandoned, stuck in the kernel, since the daemon started."),
    metric(F::Window, "leakscope_window_seconds", L::None, T::Gauge,
        "Span of the history the verdicts judge (grows to --window)."),
    metric(F::HistoryProcesses, "leakscope_history_processes", L::None, T::Gauge,
        "Processes the window's history holds (including ones that exited within it)."),
    metric(F::HistoryMembers, "leakscope_history_members", L::None, T::Gauge,
        "Waits (one per uninterrupted wait of a thread or goroutine) the window's history holds; leakscope's memory grows with it."),
    metric(F::DumpsWritten, "leakscope_dumps_written_total", L::None, T::Counter,
        "Leak reports written to --dump-dir."),
    metric(F::DumpsDeferred, "leakscope_dumps_deferred_total", L::None, T::Counter,
        "Leak episodes whose dump was put off by the rate limits (retried later)."),
    metric(F::DumpErrors, "leakscope_dump_errors_total", L::None, T::Counter,
        "Dumps that could not be written."),
    metric(F::BuildInfo, "leakscope_build_info", L::Fixed(&["version"]), T::Gauge,
        "Always 1; the version label says which leakscope runs."),
    metric(F::ThreadSource, "leakscope_thread_source", L::Fixed(&["source"]), T::Gauge,
        "1 for the thread source in use: bpf (the task iterator) or procfs (the /proc fallback, slower)."),
    metric(F::CpuSeconds, "process_cpu_seconds_total", L::None, T::Counter,
        "CPU time (user and system) leakscope has used, in seconds."),
    metric(F::ResidentBytes, "process_resident_memory_bytes", L::None, T::Gauge,
        "leakscope's resident memory, in bytes."),
    metric(F::ProcessDegraded, "leakscope_process_degraded", L::ProcessBudget, T::Gauge,
        "1 when what leakscope reports of the process was cut by a budget (budget: programs, symbols, unwind, maps, sites, history, cpu): frames unnamed or without lines, stacks by frame pointers, history cut; the JSON report's degraded says what."),
    metric(F::MemoryBudget, "leakscope_memory_budget_bytes", L::Fixed(&["kind"]), T::Gauge,
        "The share of --memory-budget each kind of what leakscope keeps of the host may hold, bytes."),
    metric(F::MemoryHeld, "leakscope_memory_held_bytes", L::Fixed(&["kind"]), T::Gauge,
        "Bytes each kind holds now (programs, symbols, unwind, maps, sites, goroutines, history)."),
    metric(F::MemoryEvicted, "leakscope_memory_evicted_bytes_total", L::Fixed(&["kind"]), T::Counter,
        "Bytes each kind let go of to stay within its share."),
    metric(F::MemoryRefused, "leakscope_memory_refused_total", L::Fixed(&["kind"]), T::Counter,
        "Items (a Go program, a binary, its debug info or unwind tables, a process's maps, names, goroutine table or history) refused or cut because they did not fit the budget."),
    metric(F::MemoryHeap, "leakscope_memory_heap_bytes", L::None, T::Gauge,
        "Heap bytes leakscope holds now, measured by its allocator (everything, not only what the budget counts)."),
];

// Each family sits at its own index of the table: checked when compiling.
const _: () = {
    let mut i = 0;
    while i < METRICS.len() {
        assert!(
            METRICS[i].family as usize == i,
            "METRICS lists the families in order"
        );
        i += 1;
    }
};

/// Every metric family the daemon exports (histograms by their base name). The
/// deploy/ rules and dashboard may use these and nothing else; tests hold them to it.
pub const METRIC_NAMES: [&str; METRICS.len()] = {
    let mut names = [""; METRICS.len()];
    let mut i = 0;
    while i < METRICS.len() {
        names[i] = METRICS[i].name;
        i += 1;
    }
    names
};

/// How much of a report becomes series.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Processes exported at most (leaking first, then by blocked waiters).
    pub max_processes: usize,
    /// Sites exported per process at most (leaking first, then by waiters).
    pub max_sites: usize,
    /// pprof label keys exported on the site series (`--metric-label-key`, opt-in: label
    /// values may be as many as requests), each as the label `label_<key>` (see
    /// [`label_name`]); at most [`MAX_METRIC_LABEL_KEYS`].
    pub label_keys: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_processes: 200,
            max_sites: 20,
            label_keys: Vec::new(),
        }
    }
}

/// Most pprof label keys exported on the site series.
pub const MAX_METRIC_LABEL_KEYS: usize = 4;
/// The longest pprof label value exported, in bytes (longer ones keep their end after
/// a `~`, see [`sanitize::capped`]).
pub const MAX_METRIC_LABEL_VALUE: usize = 64;

/// The Prometheus label a pprof label key is exported as: `label_` and the key, each
/// byte outside `[A-Za-z0-9_]` written `_`.
pub fn label_name(key: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("label_{key}")
}

/// Checks `--metric-label-key`s: at most [`MAX_METRIC_LABEL_KEYS`], none empty or over
/// 64 bytes, no two exported under one label name.
pub fn check_label_keys(keys: &[String]) -> Result<(), String> {
    if keys.len() > MAX_METRIC_LABEL_KEYS {
        return Err(format!(
            "--metric-label-key: at most {MAX_METRIC_LABEL_KEYS} keys (got {})",
            keys.len()
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for key in keys {
        if key.is_empty() || key.len() > 64 {
            return Err(format!("--metric-label-key {key:?}: 1 to 64 bytes"));
        }
        if !names.insert(label_name(key)) {
            return Err(format!(
                "--metric-label-key {key:?}: another key is exported as {} too",
                label_name(key)
            ));
        }
    }
    Ok(())
}

/// A process's sites as series: leaking first then by waiters (then label, for
/// stability), at most `max_sites` kept; returns the kept sites and how many were cut.
/// Labels are unique within a process (the summary sees to it), so nothing merges.
pub fn capped_sites(process: &ProcessSummary, max_sites: usize) -> (Vec<&SiteSummary>, usize) {
    let mut sites: Vec<&SiteSummary> = process.sites.iter().collect();
    sites.sort_by(|a, b| {
        b.is_leak()
            .cmp(&a.is_leak())
            .then(b.count.cmp(&a.count))
            .then_with(|| a.label.cmp(&b.label))
    });
    let omitted = sites.len().saturating_sub(max_sites);
    sites.truncate(max_sites);
    (sites, omitted)
}

/// Counters the dump writer updates from its own thread.
#[derive(Clone)]
pub struct DumpCounters {
    pub written: Counter,
    pub deferred: Counter,
    pub errors: Counter,
}

/// The label values of a family without labels.
const NO_LABELS: &[&str] = &[];

/// One registered family.
enum Series {
    Gauge(GaugeVec),
    Counter(CounterVec),
    Histogram(HistogramVec),
}

impl Series {
    /// Registers `m`; a family without labels gets its one series at once, so it is
    /// exported (as 0) before anything sets it.
    fn register(
        m: &Metric,
        goroutine_labels: &[String],
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let opts = Opts::new(m.name, m.help);
        let names = m.labels.names(goroutine_labels);
        let series = match m.kind {
            Type::Gauge => Self::Gauge(GaugeVec::new(opts, &names)?),
            Type::Counter => Self::Counter(CounterVec::new(opts, &names)?),
            Type::Histogram(buckets) => Self::Histogram(HistogramVec::new(
                HistogramOpts::from(opts).buckets(buckets.to_vec()),
                &names,
            )?),
        };
        let collector: Box<dyn prometheus::core::Collector> = match &series {
            Self::Gauge(v) => Box::new(v.clone()),
            Self::Counter(v) => Box::new(v.clone()),
            Self::Histogram(v) => Box::new(v.clone()),
        };
        registry.register(collector)?;
        if m.labels == Labels::None {
            series.touch();
        }
        Ok(series)
    }

    fn touch(&self) {
        let _ = match self {
            Self::Gauge(v) => v.get_metric_with_label_values(NO_LABELS).map(drop),
            Self::Counter(v) => v.get_metric_with_label_values(NO_LABELS).map(drop),
            Self::Histogram(v) => v.get_metric_with_label_values(NO_LABELS).map(drop),
        };
    }

    fn reset(&self) {
        match self {
            Self::Gauge(v) => v.reset(),
            Self::Counter(v) => v.reset(),
            Self::Histogram(v) => v.reset(),
        }
    }
}

/// The registry and every series in it.
pub struct Exporter {
    registry: Registry,
    limits: Limits,
    /// One per entry of [`METRICS`], in its order.
    series: Vec<Series>,
}

impl Exporter {
    pub fn new(mut limits: Limits) -> Self {
        if let Err(e) = check_label_keys(&limits.label_keys) {
            log::warn!("{e}: no pprof label is exported");
            limits.label_keys.clear();
        }
        let label_names: Vec<String> = limits.label_keys.iter().map(|k| label_name(k)).collect();
        let registry = Registry::new();
        let series = METRICS
            .iter()
            .map(|m| {
                Series::register(m, &label_names, &registry).expect("the metrics table is valid")
            })
            .collect();
        let exporter = Self {
            registry,
            limits,
            series,
        };
        exporter.set(F::BuildInfo, &[env!("CARGO_PKG_VERSION")], 1.0);
        exporter
    }

    fn series(&self, family: Family) -> &Series {
        &self.series[family as usize]
    }

    /// Sets a gauge's series. A label count that does not fit the family is a bug the
    /// tests catch; here it is ignored.
    fn set(&self, family: Family, labels: &[&str], value: f64) {
        if let Series::Gauge(v) = self.series(family)
            && let Ok(gauge) = v.get_metric_with_label_values(labels)
        {
            gauge.set(value);
        }
    }

    fn counter(&self, family: Family) -> Option<Counter> {
        self.labelled_counter(family, NO_LABELS)
    }

    fn labelled_counter(&self, family: Family, labels: &[&str]) -> Option<Counter> {
        match self.series(family) {
            Series::Counter(v) => v.get_metric_with_label_values(labels).ok(),
            _ => None,
        }
    }

    /// Moves a counter up to `total` (a count kept elsewhere, which only grows).
    fn count_up_to(&self, family: Family, labels: &[&str], total: f64) {
        if let Some(counter) = self.labelled_counter(family, labels)
            && total > counter.get()
        {
            counter.inc_by(total - counter.get());
        }
    }

    fn inc_by(&self, family: Family, by: f64) {
        if let Some(counter) = self.counter(family) {
            counter.inc_by(by);
        }
    }

    fn observe(&self, family: Family, value: f64) {
        if let Series::Histogram(v) = self.series(family)
            && let Ok(histogram) = v.get_metric_with_label_values(NO_LABELS)
        {
            histogram.observe(value);
        }
    }

    /// Says which thread source the scans use (set once, when the source is open).
    pub fn set_thread_source(&self, kind: ThreadSourceKind) {
        self.series(F::ThreadSource).reset();
        self.set(F::ThreadSource, &[kind.name()], 1.0);
    }

    /// The counters the dump writer updates.
    pub fn dump_counters(&self) -> DumpCounters {
        let counter = |family| self.counter(family).expect("dump families are counters");
        DumpCounters {
            written: counter(F::DumpsWritten),
            deferred: counter(F::DumpsDeferred),
            errors: counter(F::DumpErrors),
        }
    }

    /// Records the size of the window's history.
    pub fn observe_history(&self, history: &History) {
        self.set(
            F::HistoryProcesses,
            NO_LABELS,
            history.processes.len() as f64,
        );
        self.set(F::HistoryMembers, NO_LABELS, history.members() as f64);
    }

    /// Records what each kind of the memory budget holds, evicted and refused.
    pub fn observe_memory(&self, budget: &MemoryBudget) {
        for usage in budget.usage() {
            let kind = [usage.kind.name()];
            self.set(F::MemoryBudget, &kind, usage.share as f64);
            self.set(F::MemoryHeld, &kind, usage.held as f64);
            self.count_up_to(F::MemoryEvicted, &kind, usage.evicted_bytes as f64);
            self.count_up_to(F::MemoryRefused, &kind, usage.refused as f64);
        }
        if let Some(heap) = live_heap_bytes() {
            self.set(F::MemoryHeap, NO_LABELS, heap as f64);
        }
    }

    /// Records one scan's outcome.
    pub fn observe_scan(&self, outcome: Result<&ScanStats, ()>, window_s: f64) {
        self.inc_by(F::Scans, 1.0);
        match outcome {
            Ok(stats) => {
                self.observe(F::ScanDuration, stats.duration.as_secs_f64());
                self.set(F::WatchedProcesses, NO_LABELS, stats.processes as f64);
                self.set(F::WatchedWaiters, NO_LABELS, stats.waiters as f64);
                self.set(F::GoReadErrors, NO_LABELS, stats.go_errors as f64);
                for (kind, n) in READ_ERROR_KINDS.iter().zip(stats.unreadable) {
                    self.set(F::UnreadableProcesses, &[kind], n as f64);
                }
                self.observe_stuck(&stats.stuck);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                self.set(F::LastScan, NO_LABELS, now.as_secs_f64());
            }
            Err(()) => self.inc_by(F::ScanErrors, 1.0),
        }
        self.set(F::Window, NO_LABELS, window_s);
        if let Some((cpu, rss)) = self_usage() {
            let counted = self.counter(F::CpuSeconds).map_or(cpu, |c| c.get());
            if cpu > counted {
                self.inc_by(F::CpuSeconds, cpu - counted);
            }
            self.set(F::ResidentBytes, NO_LABELS, rss as f64);
        }
    }

    /// Replaces every per-process and per-site series with the window's.
    pub fn observe_summary(&self, summary: &WindowSummary, took_s: f64) {
        for (m, series) in METRICS.iter().zip(&self.series) {
            if m.labels.per_process() {
                series.reset();
            }
        }
        self.set(F::ReportDuration, NO_LABELS, took_s);
        let processes = &summary.processes;
        let leaking = processes.iter().filter(|p| p.is_leak()).count();
        self.set(F::LeakingProcesses, NO_LABELS, leaking as f64);
        // The summary lists leaking processes first, then by waiter count.
        let kept = processes.len().min(self.limits.max_processes);
        self.set(
            F::ProcessesOmitted,
            NO_LABELS,
            (processes.len() - kept) as f64,
        );
        for process in &processes[..kept] {
            self.observe_process(process);
        }
    }

    /// The reads stuck now, and those abandoned so far (a counter that follows the
    /// watch's own count).
    pub fn observe_stuck(&self, stuck: &StuckReads) {
        self.set(F::StuckReads, NO_LABELS, stuck.now as f64);
        let counted = self.counter(F::StuckReadsTotal).map_or(0.0, |c| c.get());
        if stuck.total as f64 > counted {
            self.inc_by(F::StuckReadsTotal, stuck.total as f64 - counted);
        }
    }

    fn observe_process(&self, process: &ProcessSummary) {
        let facts = &process.facts;
        let pid = process.key.pid.to_string();
        // What the process controls is escaped; the path is capped (it has no bound).
        let comm = sanitize::log_text(&facts.comm);
        let exe = sanitize::capped(&facts.exe, MAX_EXE_LABEL);
        let cgroup = sanitize::capped(&facts.cgroup.cgroup, MAX_EXE_LABEL);
        let runtime = facts.runtime.to_string();
        let no_pod = PodIdentity::default();
        let pod = facts.cgroup.pod.as_ref().unwrap_or(&no_pod);
        let labels = [
            pid.as_str(),
            &comm,
            &exe,
            &runtime,
            &cgroup,
            &facts.cgroup.container,
            &pod.namespace,
            &pod.name,
            &pod.container,
        ];
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        self.set(F::ProcessWaiters, &labels, f64::from(process.waiters));
        self.set(F::ProcessGrowth, &labels, process.growth_per_min);
        self.set(F::ProcessLeak, &labels, flag(process.is_leak()));
        self.set(F::ProcessSuspect, &labels, flag(process.is_suspect()));
        self.set(F::ProcessOldest, &labels, process.oldest_wait_s());
        if let Some(age) = process.goroutines_read_age_s {
            self.set(F::ProcessReadAge, &labels, age);
        }
        if process.stack_bytes.stacks > 0 {
            let bytes = process.stack_bytes.reserved as f64;
            self.set(F::ProcessStackBytes, &labels, bytes);
        }
        self.observe_exhaustion(process, &labels);
        if let Some(reason) = &process.unreadable {
            let l: Vec<&str> = labels.iter().copied().chain([reason.kind()]).collect();
            self.set(F::ProcessUnreadable, &l, 1.0);
        }
        self.observe_waits(process, &labels);
        for budget in process.degraded.iter().map(|d| d.budget()) {
            let mut l = labels.to_vec();
            l.push(budget);
            self.set(F::ProcessDegraded, &l, 1.0);
        }
        let (sites, omitted) = capped_sites(process, self.limits.max_sites);
        self.set(F::ProcessSites, &labels, process.sites.len() as f64);
        self.set(F::ProcessSitesOmitted, &labels, omitted as f64);
        for s in sites {
            self.observe_site(s, &labels);
        }
    }

    /// A leaking process's limits with a forecast: the seconds left to each.
    fn observe_exhaustion(&self, process: &ProcessSummary, labels: &[&str]) {
        let forecasts = process.exhaustion.iter().flat_map(|e| &e.forecasts);
        for f in forecasts {
            if let Ok(eta) = f.eta_s {
                let mut l: Vec<&str> = labels.to_vec();
                l.push(f.limit.name());
                self.set(F::ProcessExhaustion, &l, eta);
            }
        }
    }

    /// A process's waiters by kind and wait reason: as many wait reasons as sites at
    /// most, the largest first.
    fn observe_waits(&self, process: &ProcessSummary, labels: &[&str]) {
        let mut by_wait: HashMap<(&str, &str), u32> = HashMap::new();
        for s in &process.sites {
            *by_wait.entry((s.kind.name(), &s.wait)).or_default() += s.count;
        }
        let mut by_wait: Vec<((&str, &str), u32)> = by_wait.into_iter().collect();
        by_wait.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for ((kind, wait), n) in by_wait.into_iter().take(self.limits.max_sites) {
            let wait = sanitize::log_text(wait);
            let mut l: Vec<&str> = labels.to_vec();
            l.extend([kind, &wait]);
            self.set(F::WaitersByWait, &l, f64::from(n));
        }
    }

    fn observe_site(&self, s: &SiteSummary, labels: &[&str]) {
        let mut l: Vec<&str> = labels.to_vec();
        let wait = sanitize::log_text(&s.wait);
        l.extend([s.kind.name(), &wait, &s.label]);
        let values = self.goroutine_label_values(s);
        l.extend(values.iter().map(|v| &**v));
        let j = &s.judgement;
        self.set(F::SiteWaiters, &l, f64::from(s.count));
        self.set(F::SiteGrowth, &l, j.growth_per_min);
        self.set(F::SiteOldest, &l, j.oldest_wait_s);
        if s.kind == WaiterKind::Goroutine {
            self.set(F::SiteRuntimeLeaked, &l, f64::from(s.runtime_leaked));
        }
        let stack = &s.stack_bytes;
        if stack.stacks > 0 {
            self.set(F::SiteStackBytes, &l, stack.reserved as f64);
            if let Some(resident) = stack.resident {
                self.set(F::SiteStackResidentBytes, &l, resident as f64);
            }
        }
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        self.set(F::SiteLeak, &l, flag(j.is_leak()));
        self.set(F::SiteSuspect, &l, flag(j.is_suspect()));
        l.push(j.rule.name());
        self.set(F::SiteRule, &l, 1.0);
    }

    /// The value of each exported pprof label key at a site: in the most common of its
    /// members' label sets that has the key ("" when none has), escaped and capped.
    fn goroutine_label_values(&self, s: &SiteSummary) -> Vec<String> {
        self.limits
            .label_keys
            .iter()
            .map(|key| {
                let value = s.label_sets.iter().find_map(|(set, _)| set.get(key));
                sanitize::capped(value.unwrap_or(""), MAX_METRIC_LABEL_VALUE).into_owned()
            })
            .collect()
    }

    /// The text exposition of every series now.
    pub fn render(&self) -> Bytes {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of valid metrics");
        Bytes::from(buf)
    }

    #[cfg(test)]
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// This process's CPU time (user + system, seconds) and resident memory (bytes).
fn self_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the comm's closing parenthesis, starting with field 3 (state).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    Some((
        (utime + stime) as f64 / ticks as f64,
        rss_pages * page as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::WaiterKind,
        summary::testutil::{frame, process, site, window},
        verdict::Outcome,
    };

    fn sites(specs: &[(&str, u32, bool)]) -> Vec<SiteSummary> {
        specs
            .iter()
            .map(|&(name, count, leak)| {
                let verdict = if leak { Outcome::Leak } else { Outcome::Ok };
                site(
                    WaiterKind::Thread,
                    "futex",
                    verdict,
                    count,
                    vec![frame(name, None, 0x1000 + u64::from(count))],
                )
            })
            .collect()
    }

    /// Check that leaks come first, the largest sites are kept up to the cap, sites
    /// sharing a short label stay apart, and the cut sites are counted.
    #[test]
    fn sites_cap_largest_first_without_merging() {
        let p = process(
            1,
            "native",
            sites(&[
                ("big_pool", 50, false),
                ("leak_here", 2, true),
                ("mid_pool", 30, false),
                ("mid_pool", 25, false),
                ("tiny", 1, false),
                ("small", 3, false),
            ]),
        );
        let (kept, omitted) = capped_sites(&p, 3);
        let labels: Vec<&str> = kept.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels[0], "thread:futex:leak_here");
        assert_eq!(labels[1], "thread:futex:big_pool");
        assert!(
            labels[2].starts_with("thread:futex:mid_pool#"),
            "{labels:?}"
        );
        assert_eq!(kept[2].count, 30, "not merged with the other mid_pool");
        assert_eq!(omitted, 3);
        assert_eq!(capped_sites(&p, 100).1, 0);
    }

    /// Makes process `pid` of `summary` unreadable, a read of it stuck in the kernel, and
    /// returns the stats of a scan that saw it so (one read stuck, two abandoned).
    fn stuck_read_of(summary: &mut WindowSummary, pid: u32) -> ScanStats {
        let stuck = crate::isolate::StuckRead {
            step: crate::isolate::Step::Unwind,
            after: std::time::Duration::from_secs(5),
        };
        for p in summary.processes.iter_mut().filter(|p| p.key.pid == pid) {
            p.unreadable = Some(crate::isolate::ProcessFault::Stuck(stuck.clone()).into());
        }
        let mut stats = ScanStats::default();
        stats.stuck.now = 1;
        stats.stuck.total = 2;
        stats.unreadable[READ_ERROR_KINDS.iter().position(|k| *k == "stuck").unwrap()] = 1;
        stats
    }

    /// Check that the reads stuck now and abandoned so far, the unreadable processes by
    /// reason, and each unreadable process with its reason become series.
    #[test]
    fn stuck_reads_and_unreadable_processes_become_series() {
        let exporter = Exporter::new(Limits::default());
        let mut summary = window(vec![process(11, "native", sites(&[("pool", 16, false)]))]);
        exporter.observe_scan(Ok(&stuck_read_of(&mut summary, 11)), 1.0);
        exporter.observe_summary(&summary, 0.01);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        assert!(text.contains("leakscope_stuck_reads 1"), "{text}");
        assert!(text.contains("leakscope_stuck_reads_total 2"), "{text}");
        assert!(
            text.contains(r#"leakscope_unreadable_processes{reason="stuck"} 1"#)
                && text.contains(r#"leakscope_unreadable_processes{reason="panic"} 0"#),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("leakscope_process_unreadable{")
                    && l.contains(r#"pid="11""#)
                    && l.contains(r#"reason="stuck""#)
                    && l.ends_with(" 1")),
            "{text}"
        );
    }

    /// Check that a window becomes per-process and per-site series with the documented
    /// names and labels (cgroup from the scan's facts), that processes over the cap are
    /// cut and counted, that series of a process gone from the next window disappear, and
    /// that METRIC_NAMES lists exactly the families exported.
    #[test]
    fn window_becomes_series_and_old_series_vanish() {
        let exporter = Exporter::new(Limits {
            max_processes: 2,
            max_sites: 1,
            ..Limits::default()
        });
        let mut summary = window(vec![
            process(
                10,
                "native",
                sites(&[("leak_on_mutex", 8, true), ("pool", 20, false)]),
            ),
            process(11, "native", sites(&[("pool", 16, false)])),
            process(12, "native", sites(&[("x", 1, false)])),
        ]);
        // As if pid 11 were a Go process whose goroutines were read 4 s before the end,
        // in container "api" of pod shop/checkout.
        for p in summary.processes.iter_mut().filter(|p| p.key.pid == 11) {
            p.goroutines_read_age_s = Some(4.0);
            p.sites[0].kind = WaiterKind::Goroutine;
            let mut facts = (*p.facts).clone();
            facts.cgroup.container = "0123456789ab".into();
            facts.cgroup.pod = Some(PodIdentity {
                namespace: "shop".into(),
                name: "checkout".into(),
                uid: "6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f".into(),
                container: "api".into(),
                container_id: "0123456789abcdef".repeat(4),
            });
            p.facts = std::sync::Arc::new(facts);
            p.degraded = degraded_by_symbols();
        }
        exporter.observe_scan(Ok(&stuck_read_of(&mut summary, 11)), 1.0);
        exporter.observe_history(&History::new());
        exporter.observe_memory(&crate::budget::MemoryBudget::new(96 << 20));
        exporter.dump_counters().written.inc();
        exporter.set_thread_source(ThreadSourceKind::Procfs);
        exporter.observe_summary(&summary, 0.01);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        assert!(
            text.contains(r#"leakscope_thread_source{source="procfs"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"leakscope_process_leak{cgroup="unit10.service",comm="p10",container="",container_id="",exe="/bin/p10",namespace="",pid="10",pod="",runtime="native"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"leakscope_process_leak{cgroup="unit11.service",comm="p11",container="api",container_id="0123456789ab",exe="/bin/p11",namespace="shop",pid="11",pod="checkout",runtime="native"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"site="thread:futex:leak_on_mutex""#),
            "{text}"
        );
        // A site's verdict says which rule decided, from the typed rule, in a series of
        // its own: the verdict series keep their identity when the rule changes.
        let series = |prefix: &str, pid: &str, tail: &str| {
            text.lines().any(|l| {
                l.starts_with(prefix) && l.contains(&format!(r#"pid="{pid}""#)) && l.ends_with(tail)
            })
        };
        assert!(series("leakscope_site_leak{", "10", " 1"), "{text}");
        assert!(series("leakscope_site_suspect{", "11", " 0"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("leakscope_site_rule{")
                && l.contains(r#"pid="10""#)
                && l.contains(r#"rule="stayed_and_growing""#)
                && l.ends_with(" 1")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("leakscope_site_rule{")
                && l.contains(r#"pid="11""#)
                && l.contains(r#"rule="no_growth""#)),
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| !l.starts_with("leakscope_site_rule{") && l.contains("rule=")),
            "only leakscope_site_rule carries the rule: {text}"
        );
        // Each declared type does what its family needs.
        for line in [
            "leakscope_scans_total 1",
            "leakscope_scan_errors_total 0",
            "leakscope_dumps_written_total 1",
            "leakscope_dumps_deferred_total 0",
            "leakscope_scan_duration_seconds_count 1",
            "leakscope_window_seconds 1",
            "leakscope_history_members 0",
            "leakscope_leaking_processes 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(
            text.contains(&format!(
                r#"leakscope_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(
            !text.contains(r#"site="thread:futex:pool",wait="futex"} 20"#),
            "capped"
        );
        assert!(
            text.contains(r#"leakscope_process_sites_omitted{cgroup="unit10.service""#),
            "{text}"
        );
        assert!(text.contains("leakscope_processes_omitted 1"), "{text}");
        assert!(text.contains("leakscope_leaking_processes 1"), "{text}");
        assert!(!text.contains(r#"pid="12""#), "pid 12 is over the cap");
        assert!(text.contains(r#"leakscope_process_waiters_by_wait{"#));
        assert!(
            text.lines().any(
                |l| l.starts_with("leakscope_process_goroutines_read_age_seconds{")
                    && l.contains(r#"pid="11""#)
                    && l.ends_with(" 4")
            ),
            "{text}"
        );

        let mut families: Vec<String> = exporter
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        families.sort();
        let mut documented: Vec<String> = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
        documented.sort();
        assert_eq!(families, documented);

        summary.processes.retain(|p| p.key.pid == 11);
        exporter.observe_summary(&summary, 0.01);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        assert!(
            !text.contains(r#"pid="10""#),
            "exited process's series gone"
        );
        assert!(text.contains(r#"pid="11""#));
    }

    /// Check that a leaking process's forecast becomes one series per limit with a
    /// forecast (none for a limit without one), and that stack bytes become process and
    /// site series, resident bytes where known.
    #[test]
    fn forecasts_and_stack_bytes_become_series() {
        let exporter = Exporter::new(Limits::default());
        let summary = window(vec![process(
            10,
            "native",
            sites(&[("leak_on_mutex", 8, true), ("pool", 20, false)]),
        )]);
        exporter.observe_summary(&summary, 0.01);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("leakscope_process_exhaustion_seconds{")
                    && l.contains(r#"limit="pids.max""#)
                    && l.contains(r#"pid="10""#)
                    && l.ends_with(" 95")),
            "{text}"
        );
        assert!(
            !text.contains(r#"limit="MemAvailable""#),
            "no series without a forecast: {text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("leakscope_site_stack_bytes{")
                    && l.contains(r#"site="thread:futex:leak_on_mutex""#)
                    && l.ends_with(&format!(" {}", 8 * 256 * 1024))),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("leakscope_site_stack_resident_bytes{")
                    && l.ends_with(&format!(" {}", 8 * 16 * 1024))),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("leakscope_process_stack_bytes{")
                    && l.contains(r#"pid="10""#)
                    && l.ends_with(&format!(" {}", 28 * 256 * 1024))),
            "{text}"
        );
    }

    /// A process whose symbols of one binary were over the budget.
    fn degraded_by_symbols() -> crate::budget::degraded::Degradations {
        let mut set = crate::budget::degraded::Degradations::default();
        crate::budget::degraded::note(
            &mut set,
            crate::budget::degraded::Degradation::Symbols {
                module: "/usr/lib/big.so".into(),
                cause: crate::budget::degraded::Cause::Memory {
                    kind: crate::budget::MemoryKind::Symbols,
                    needed: 1 << 30,
                    limit: 24 << 20,
                },
            },
        );
        set
    }

    /// Check that the memory budget's figures become series by kind (its share, what it
    /// holds, what was evicted and refused, counters that only grow) and that a process
    /// a budget cut has a series naming the budget.
    #[test]
    fn memory_budget_and_degraded_processes_become_series() {
        use crate::budget::{MemoryBudget, MemoryKind};
        let exporter = Exporter::new(Limits::default());
        let budget = MemoryBudget::new(96 << 20);
        budget.charge(MemoryKind::History, 1000);
        budget.evicted(MemoryKind::History, 400);
        budget.refused(MemoryKind::Maps);
        exporter.observe_memory(&budget);
        budget.evicted(MemoryKind::History, 100);
        exporter.observe_memory(&budget);
        let mut p = process(11, "native", sites(&[("pool", 16, false)]));
        p.degraded = degraded_by_symbols();
        exporter.observe_summary(&window(vec![p]), 0.01);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        for line in [
            r#"leakscope_memory_budget_bytes{kind="history"} 29360128"#,
            r#"leakscope_memory_held_bytes{kind="history"} 500"#,
            r#"leakscope_memory_evicted_bytes_total{kind="history"} 500"#,
            r#"leakscope_memory_refused_total{kind="maps"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line}:\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("leakscope_process_degraded{")
                    && l.contains(r#"budget="symbols""#)
                    && l.contains(r#"pid="11""#)
                    && l.ends_with(" 1")),
            "{text}"
        );
    }

    /// Check that what a process controls reaches the labels escaped (no raw newline,
    /// ESC or bidi override in the exposition), the exe label is capped keeping its
    /// file name, a comm ending in a space is kept as is, and the per-wait-reason series
    /// are capped by max_sites, largest first.
    #[test]
    fn hostile_names_are_escaped_and_capped() {
        let exporter = Exporter::new(Limits {
            max_processes: 10,
            max_sites: 2,
            ..Limits::default()
        });
        let waits: Vec<SiteSummary> = ["chan receive", "select", "sleep", "IO wait"]
            .iter()
            .enumerate()
            .map(|(i, wait)| {
                let stack = vec![frame(&format!("main.f{i}"), None, 0x1000 + i as u64)];
                site(
                    WaiterKind::Goroutine,
                    wait,
                    Outcome::Ok,
                    10 + i as u32,
                    stack,
                )
            })
            .collect();
        let mut p = process(20, "go1.24", waits);
        let long_exe = format!("/tmp/{}\u{202e}/\x1b[2Jevil\nbin", "d".repeat(400));
        p.facts = std::sync::Arc::new(crate::model::ProcessFacts {
            comm: "x\n\x1b[31mLEAK ".into(),
            exe: long_exe,
            ..(*p.facts).clone()
        });
        exporter.observe_summary(&window(vec![p]), 0.01);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        assert!(
            !text.contains('\x1b') && !text.contains('\u{202e}'),
            "{text}"
        );
        let leak_line = text
            .lines()
            .find(|l| l.starts_with("leakscope_process_leak{"))
            .expect("the process is exported");
        assert!(
            leak_line.contains(r#"comm="x\\x0a\\x1b[31mLEAK ""#),
            "{leak_line}"
        );
        let exe = leak_line
            .split("exe=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(exe.len() <= MAX_EXE_LABEL + 8, "{exe}");
        assert!(
            exe.starts_with('~') && exe.ends_with("evil\\\\x0abin"),
            "{exe}"
        );
        let by_wait: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("leakscope_process_waiters_by_wait{"))
            .collect();
        assert_eq!(by_wait.len(), 2, "capped by max_sites: {by_wait:?}");
        assert!(
            by_wait.iter().any(|l| l.contains(r#"wait="IO wait""#)),
            "{by_wait:?}"
        );
        assert!(
            by_wait.iter().any(|l| l.contains(r#"wait="sleep""#)),
            "{by_wait:?}"
        );
    }

    /// Check that a goroutine site's runtime-proven members are a series of their own,
    /// that no pprof label is exported unless asked for, and that the keys asked for
    /// are labels of every site series, valued from the most common label set having
    /// them (escaped and capped), "" where none has; and that bad key lists are refused.
    #[test]
    fn runtime_leaked_and_opt_in_label_keys() {
        let set = |pairs: &[(&str, &str)]| {
            std::sync::Arc::new(crate::model::LabelSet {
                labels: pairs.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
                truncated: false,
            })
        };
        let mut leak = site(
            WaiterKind::Goroutine,
            "chan receive",
            Outcome::Leak,
            40,
            vec![frame("main.strandedReply", None, 0x1000)],
        );
        leak.runtime_leaked = 37;
        let tenant = format!("acme\n{}", "t".repeat(100));
        leak.label_sets = vec![
            (set(&[("route", "/checkout")]), 30),
            (set(&[("route", "/cart"), ("tenant", &tenant)]), 10),
        ];
        let summary = window(vec![process(30, "go1.27", vec![leak])]);
        let render = |keys: &[&str]| {
            let exporter = Exporter::new(Limits {
                label_keys: keys.iter().map(|k| k.to_string()).collect(),
                ..Limits::default()
            });
            exporter.observe_summary(&summary, 0.01);
            String::from_utf8(exporter.render().to_vec()).unwrap()
        };
        let plain = render(&[]);
        let proven = plain
            .lines()
            .find(|l| l.starts_with("leakscope_site_runtime_leaked{"))
            .expect("the runtime-proven series");
        assert!(
            proven.ends_with(" 37") && !proven.contains("label_"),
            "{proven}"
        );
        let labelled = render(&["route", "tenant", "region.name"]);
        for line in labelled
            .lines()
            .filter(|l| l.starts_with("leakscope_site_"))
        {
            assert!(
                line.contains(r#"label_route="/checkout""#)
                    && line.contains(r#"label_region_name="""#),
                "{line}"
            );
            let value = line.split(r#"label_tenant=""#).nth(1).unwrap();
            let value = &value[..value.find('"').unwrap()];
            assert!(
                value.starts_with('~') && value.len() <= MAX_METRIC_LABEL_VALUE,
                "{line}"
            );
        }
        assert!(check_label_keys(&["a".into(), "b".into(), "c".into(), "d".into()]).is_ok());
        assert!(check_label_keys(&vec!["k".to_string(); 5]).is_err());
        assert!(check_label_keys(&["a.b".into(), "a_b".into()]).is_err());
        assert!(check_label_keys(&["".into()]).is_err());
    }
}
