//! The daemon's Prometheus series: what `leakscope run` serves on `/metrics`.
//!
//! Per process and per site series are rebuilt from each report (their vectors are reset
//! first, so the series of exited processes disappear). Label values come only from
//! bounded sets: one process's labels (pid, comm, exe, runtime, cgroup, container) and,
//! per site, kind, wait reason and a short site label; the number of processes and of
//! sites per process is capped (largest first, leaks always first) and what was cut is
//! counted.

use std::collections::HashMap;

use bytes::Bytes;
use prometheus::{
    Counter, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::{
    history::History,
    report::{ProcessReport, Report, SiteReport},
    verdict::GrowthVerdict,
    watch::ScanStats,
};

/// Labels of every per-process series (and, first, of every per-site series).
pub const PROCESS_LABELS: [&str; 6] = ["pid", "comm", "exe", "runtime", "cgroup", "container"];
/// Labels a per-site series adds to [`PROCESS_LABELS`].
pub const SITE_LABELS: [&str; 3] = ["kind", "wait", "site"];

/// The longest site label, in bytes; longer labels are cut and end in "~".
pub const MAX_SITE_LABEL: usize = 96;
/// Stack frames named in a site label.
const SITE_LABEL_FRAMES: usize = 2;

/// Every metric family the daemon exports (histograms by their base name). The
/// deploy/ rules and dashboard may use these and nothing else; tests hold them to it.
pub const METRIC_NAMES: &[&str] = &[
    "leakscope_process_blocked_waiters",
    "leakscope_process_growth_per_minute",
    "leakscope_process_leak",
    "leakscope_process_suspect",
    "leakscope_process_oldest_wait_seconds",
    "leakscope_process_sites",
    "leakscope_process_sites_omitted",
    "leakscope_process_waiters_by_wait",
    "leakscope_site_blocked_waiters",
    "leakscope_site_growth_per_minute",
    "leakscope_site_oldest_wait_seconds",
    "leakscope_site_leak",
    "leakscope_site_suspect",
    "leakscope_leaking_processes",
    "leakscope_processes_omitted",
    "leakscope_scans_total",
    "leakscope_scan_errors_total",
    "leakscope_scan_duration_seconds",
    "leakscope_report_duration_seconds",
    "leakscope_last_scan_timestamp_seconds",
    "leakscope_watched_processes",
    "leakscope_watched_waiters",
    "leakscope_go_read_errors",
    "leakscope_window_seconds",
    "leakscope_history_processes",
    "leakscope_history_members",
    "leakscope_dumps_written_total",
    "leakscope_dumps_deferred_total",
    "leakscope_dump_errors_total",
    "leakscope_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
];

/// How much of a report becomes series.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Processes exported at most (leaking first, then by blocked waiters).
    pub max_processes: usize,
    /// Sites exported per process at most (leaking first, then by waiters).
    pub max_sites: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_processes: 200,
            max_sites: 20,
        }
    }
}

/// A process's container/cgroup labels, read from `/proc/PID/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLabels {
    /// The last component of the process's cgroup path (a systemd unit, a container
    /// scope), container ids cut to 12 hex digits; empty for the root cgroup.
    pub cgroup: String,
    /// The container id (12 hex digits) when the cgroup path names one; else empty.
    pub container: String,
}

/// The labels for a `/proc/PID/cgroup` file's text: the cgroup v2 line (`0::/path`), or
/// on a v1-only host the `name=systemd` hierarchy.
pub fn cgroup_labels(proc_cgroup: &str) -> CgroupLabels {
    let path = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            proc_cgroup.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "name=systemd")
                    .then_some(path)
            })
        })
        .unwrap_or("/")
        .trim();
    let container = path
        .split('/')
        .rev()
        .find_map(container_id)
        .map(|id| id[..12].to_string())
        .unwrap_or_default();
    let last = path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
    let cgroup = match container_id(last) {
        Some(id) => last.replacen(id, &id[..12], 1),
        None => last.to_string(),
    };
    CgroupLabels { cgroup, container }
}

/// The 64-hex-digit container id inside a cgroup path component, e.g. in
/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `libpod-<id>.scope` or `<id>`.
fn container_id(component: &str) -> Option<&str> {
    let bytes = component.as_bytes();
    let mut start = 0;
    while start + 64 <= bytes.len() {
        let run = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        if run >= 64 {
            return Some(&component[start..start + 64]);
        }
        start += run + 1;
    }
    None
}

/// Whether process `pid` still runs `comm` (the report keeps processes that exited
/// within the window; their series should not outlive them).
pub fn is_alive(pid: u32, comm: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim_end_matches('\n') == comm)
}

/// Reads a process's cgroup labels; empty when it has exited or has none.
pub fn read_cgroup_labels(pid: u32) -> CgroupLabels {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|text| cgroup_labels(&text))
        .unwrap_or_default()
}

/// Whether a frame belongs to the machinery every waiter goes through (libc's futex
/// and pthread layers, Rust's std sync, the Go runtime), not to the program's own code.
fn is_runtime_frame(kind: &str, function: &str) -> bool {
    if kind == "goroutine" {
        return ["runtime.", "internal/", "sync.", "sync/"]
            .iter()
            .any(|p| function.starts_with(p));
    }
    const PREFIXES: &[&str] = &[
        "_",
        "pthread_",
        "futex",
        "lll_",
        "sem_",
        "syscall",
        "start_thread",
        "clone",
        "std::sys::",
        "std::sync::",
        "std::thread::",
        "std::panicking::",
        "std::rt::",
        "core::",
        "alloc::",
        "parking_lot",
        "<std::",
        "<core::",
        "<alloc::",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
}

/// A function name as short as it stays recognizable: Rust's hash suffix and a Go
/// package's import path dropped.
fn short_function(kind: &str, function: &str) -> String {
    let mut name = function;
    // Rust legacy mangling leaves "::h<16 hex>".
    if let Some(i) = name.rfind("::h") {
        let hash = &name[i + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            name = &name[..i];
        }
    }
    if kind == "goroutine"
        && let Some(i) = name.rfind('/')
    {
        name = &name[i + 1..];
    }
    name.to_string()
}

/// The short, stable label of a site: `kind:wait:f1<f2`, with f1 the innermost of the
/// program's own frames and f2 its caller (the runtime/libc frames every waiter shares
/// are skipped); runtime frames when there is nothing else, the innermost address when
/// no frame has a name. At most [`MAX_SITE_LABEL`] bytes.
pub fn site_label(site: &SiteReport) -> String {
    let named: Vec<&str> = site
        .stack
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect();
    let own: Vec<&str> = named
        .iter()
        .copied()
        .filter(|f| !is_runtime_frame(site.kind, f))
        .collect();
    let chosen = if own.is_empty() { named } else { own };
    let body = if chosen.is_empty() {
        site.stack
            .first()
            .map_or_else(|| "?".to_string(), |f| f.address.clone())
    } else {
        chosen
            .iter()
            .take(SITE_LABEL_FRAMES)
            .map(|f| short_function(site.kind, f))
            .collect::<Vec<_>>()
            .join("<")
    };
    truncate_label(format!("{}:{}:{}", site.kind, site.wait, body))
}

fn truncate_label(mut label: String) -> String {
    if label.len() > MAX_SITE_LABEL {
        let mut cut = MAX_SITE_LABEL - 1;
        while !label.is_char_boundary(cut) {
            cut -= 1;
        }
        label.truncate(cut);
        label.push('~');
    }
    label
}

/// One site's series values (sites sharing a label are merged into one).
#[derive(Clone, Debug, PartialEq)]
pub struct SiteSeries {
    pub kind: &'static str,
    pub wait: String,
    pub site: String,
    pub waiters: u32,
    pub growth_per_min: f64,
    pub oldest_wait_s: f64,
    pub leak: bool,
    pub suspect: bool,
}

/// A process's site series after the cap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CappedSites {
    pub kept: Vec<SiteSeries>,
    /// Sites (after merging by label) not exported.
    pub omitted: usize,
}

/// A process's sites as series: merged by (kind, wait, site label), ordered leaking
/// first then by waiters (then label, for stability), at most `max_sites` kept.
pub fn site_series(process: &ProcessReport, max_sites: usize) -> CappedSites {
    let mut merged: Vec<SiteSeries> = Vec::new();
    let mut index: HashMap<(&'static str, String, String), usize> = HashMap::new();
    for site in &process.sites {
        let label = site_label(site);
        let key = (site.kind, site.wait.clone(), label.clone());
        let leak = site.verdict == GrowthVerdict::Leak;
        match index.get(&key) {
            Some(&i) => {
                let s = &mut merged[i];
                s.waiters += site.count;
                s.growth_per_min += site.growth_per_min;
                s.oldest_wait_s = s.oldest_wait_s.max(site.oldest_wait_s);
                s.leak |= leak;
                s.suspect |= site.suspect;
            }
            None => {
                index.insert(key, merged.len());
                merged.push(SiteSeries {
                    kind: site.kind,
                    wait: site.wait.clone(),
                    site: label,
                    waiters: site.count,
                    growth_per_min: site.growth_per_min,
                    oldest_wait_s: site.oldest_wait_s,
                    leak,
                    suspect: site.suspect,
                });
            }
        }
    }
    merged.sort_by(|a, b| {
        b.leak
            .cmp(&a.leak)
            .then(b.waiters.cmp(&a.waiters))
            .then_with(|| a.site.cmp(&b.site))
    });
    let omitted = merged.len().saturating_sub(max_sites);
    merged.truncate(max_sites);
    CappedSites {
        kept: merged,
        omitted,
    }
}

/// Counters the dump writer updates from its own thread.
#[derive(Clone)]
pub struct DumpCounters {
    pub written: IntCounter,
    pub deferred: IntCounter,
    pub errors: IntCounter,
}

/// The registry and every series in it.
pub struct Exporter {
    registry: Registry,
    limits: Limits,
    process_waiters: GaugeVec,
    process_growth: GaugeVec,
    process_leak: GaugeVec,
    process_suspect: GaugeVec,
    process_oldest: GaugeVec,
    process_sites: GaugeVec,
    process_sites_omitted: GaugeVec,
    waiters_by_wait: GaugeVec,
    site_waiters: GaugeVec,
    site_growth: GaugeVec,
    site_oldest: GaugeVec,
    site_leak: GaugeVec,
    site_suspect: GaugeVec,
    leaking_processes: IntGauge,
    processes_omitted: IntGauge,
    scans: IntCounter,
    scan_errors: IntCounter,
    scan_duration: Histogram,
    report_duration: Gauge,
    last_scan: Gauge,
    watched_processes: IntGauge,
    watched_waiters: IntGauge,
    go_errors: IntGauge,
    window: Gauge,
    history_processes: IntGauge,
    history_members: IntGauge,
    cpu_seconds: Counter,
    rss_bytes: IntGauge,
    dumps: DumpCounters,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Exporter {
    pub fn new(limits: Limits) -> Self {
        let registry = Registry::new();
        let process_labels = &PROCESS_LABELS[..];
        let site_labels: Vec<&str> = PROCESS_LABELS.iter().chain(&SITE_LABELS).copied().collect();
        let by_wait_labels: Vec<&str> = PROCESS_LABELS
            .iter()
            .chain(&SITE_LABELS[..2])
            .copied()
            .collect();
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(opts(name, help), labels).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::with_opts(opts(name, help)).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::with_opts(opts(name, help)).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::with_opts(opts(name, help)).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let exporter = Self {
            limits,
            process_waiters: gauge_vec(
                "leakscope_process_blocked_waiters",
                "Blocked waiters (threads in futex waits, parked goroutines) of the process at the last scan, all sites.",
                process_labels,
            ),
            process_growth: gauge_vec(
                "leakscope_process_growth_per_minute",
                "Growth of the process's blocked population per minute (least-squares slope over the window).",
                process_labels,
            ),
            process_leak: gauge_vec(
                "leakscope_process_leak",
                "1 when at least one site of the process is judged a leak over the window, else 0.",
                process_labels,
            ),
            process_suspect: gauge_vec(
                "leakscope_process_suspect",
                "1 when no leak is proven but a site of the process grows in a way that may be one, else 0.",
                process_labels,
            ),
            process_oldest: gauge_vec(
                "leakscope_process_oldest_wait_seconds",
                "The longest any current waiter of the process has been blocked, in seconds.",
                process_labels,
            ),
            process_sites: gauge_vec(
                "leakscope_process_sites",
                "Distinct sites (stacks where waiters block) of the process, before the cap.",
                process_labels,
            ),
            process_sites_omitted: gauge_vec(
                "leakscope_process_sites_omitted",
                "Sites of the process not exported as leakscope_site_* series (over --max-sites; the smallest are cut).",
                process_labels,
            ),
            waiters_by_wait: gauge_vec(
                "leakscope_process_waiters_by_wait",
                "Blocked waiters of the process by kind (thread, goroutine) and wait reason, all sites.",
                &by_wait_labels,
            ),
            site_waiters: gauge_vec(
                "leakscope_site_blocked_waiters",
                "Blocked waiters at the site at the last scan.",
                &site_labels,
            ),
            site_growth: gauge_vec(
                "leakscope_site_growth_per_minute",
                "Growth of the site's waiter count per minute (least-squares slope over the window).",
                &site_labels,
            ),
            site_oldest: gauge_vec(
                "leakscope_site_oldest_wait_seconds",
                "The longest a current waiter at the site has been blocked, in seconds.",
                &site_labels,
            ),
            site_leak: gauge_vec(
                "leakscope_site_leak",
                "1 when the site is judged a leak over the window (waiters arrive and stay), else 0.",
                &site_labels,
            ),
            site_suspect: gauge_vec(
                "leakscope_site_suspect",
                "1 when the site is judged ok but grows in a way that may be a leak (watch longer), else 0.",
                &site_labels,
            ),
            leaking_processes: int_gauge(
                "leakscope_leaking_processes",
                "Processes judged leaking at the last report (exported or not).",
            ),
            processes_omitted: int_gauge(
                "leakscope_processes_omitted",
                "Processes with blocked waiters not exported (over --max-processes; the smallest are cut).",
            ),
            scans: counter("leakscope_scans_total", "Scans of the host done."),
            scan_errors: counter("leakscope_scan_errors_total", "Scans that failed."),
            scan_duration: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "leakscope_scan_duration_seconds",
                        "Wall time of one scan (threads, goroutines, census).",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
                )
                .expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique");
                h
            },
            report_duration: gauge(
                "leakscope_report_duration_seconds",
                "Wall time of the last verdict and report over the window.",
            ),
            last_scan: gauge(
                "leakscope_last_scan_timestamp_seconds",
                "Unix time of the last successful scan.",
            ),
            watched_processes: int_gauge(
                "leakscope_watched_processes",
                "Processes with blocked waiters seen by the last scan.",
            ),
            watched_waiters: int_gauge(
                "leakscope_watched_waiters",
                "Blocked waiters seen by the last scan, host-wide.",
            ),
            go_errors: int_gauge(
                "leakscope_go_read_errors",
                "Go processes whose goroutines the last scan could not read.",
            ),
            window: gauge(
                "leakscope_window_seconds",
                "Span of the history the verdicts judge (grows to --window).",
            ),
            history_processes: int_gauge(
                "leakscope_history_processes",
                "Processes the window's history holds (including ones that exited within it).",
            ),
            history_members: int_gauge(
                "leakscope_history_members",
                "Waits (one per uninterrupted wait of a thread or goroutine) the window's history holds; leakscope's memory grows with it.",
            ),
            cpu_seconds: {
                let c = Counter::with_opts(opts(
                    "process_cpu_seconds_total",
                    "CPU time (user and system) leakscope has used, in seconds.",
                ))
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("unique");
                c
            },
            rss_bytes: int_gauge(
                "process_resident_memory_bytes",
                "leakscope's resident memory, in bytes.",
            ),
            dumps: DumpCounters {
                written: counter(
                    "leakscope_dumps_written_total",
                    "Leak reports written to --dump-dir.",
                ),
                deferred: counter(
                    "leakscope_dumps_deferred_total",
                    "Leak episodes whose dump was put off by the rate limits (retried later).",
                ),
                errors: counter(
                    "leakscope_dump_errors_total",
                    "Dumps that could not be written.",
                ),
            },
            registry,
        };
        let build_info = GaugeVec::new(
            opts(
                "leakscope_build_info",
                "Always 1; the version label says which leakscope runs.",
            ),
            &["version"],
        )
        .expect("valid metric");
        exporter
            .registry
            .register(Box::new(build_info.clone()))
            .expect("unique");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        exporter
    }

    /// The counters the dump writer updates.
    pub fn dump_counters(&self) -> DumpCounters {
        self.dumps.clone()
    }

    /// Records the size of the window's history.
    pub fn observe_history(&self, history: &History) {
        self.history_processes.set(history.processes.len() as i64);
        let members: usize = history
            .processes
            .values()
            .flat_map(|p| p.sites.values())
            .map(|s| s.members.len())
            .sum();
        self.history_members.set(members as i64);
    }

    /// Records one scan's outcome.
    pub fn observe_scan(&self, outcome: Result<&ScanStats, ()>, window_s: f64) {
        self.scans.inc();
        match outcome {
            Ok(stats) => {
                self.scan_duration.observe(stats.duration.as_secs_f64());
                self.watched_processes.set(stats.processes as i64);
                self.watched_waiters.set(stats.waiters as i64);
                self.go_errors.set(stats.go_errors as i64);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                self.last_scan.set(now.as_secs_f64());
            }
            Err(()) => self.scan_errors.inc(),
        }
        self.window.set(window_s);
        if let Some((cpu, rss)) = self_usage() {
            let more = cpu - self.cpu_seconds.get();
            if more > 0.0 {
                self.cpu_seconds.inc_by(more);
            }
            self.rss_bytes.set(rss as i64);
        }
    }

    /// Replaces every per-process and per-site series with the report's.
    pub fn observe_report(
        &self,
        report: &Report,
        took_s: f64,
        cgroup_of: impl Fn(u32) -> CgroupLabels,
    ) {
        for v in [
            &self.process_waiters,
            &self.process_growth,
            &self.process_leak,
            &self.process_suspect,
            &self.process_oldest,
            &self.process_sites,
            &self.process_sites_omitted,
            &self.waiters_by_wait,
            &self.site_waiters,
            &self.site_growth,
            &self.site_oldest,
            &self.site_leak,
            &self.site_suspect,
        ] {
            v.reset();
        }
        self.report_duration.set(took_s);
        self.leaking_processes.set(
            report
                .processes
                .iter()
                .filter(|p| p.verdict == GrowthVerdict::Leak)
                .count() as i64,
        );
        // The report lists leaking processes first, then by waiter count.
        let kept = report.processes.len().min(self.limits.max_processes);
        self.processes_omitted
            .set((report.processes.len() - kept) as i64);
        for process in &report.processes[..kept] {
            let cg = cgroup_of(process.pid);
            let pid = process.pid.to_string();
            let labels = [
                pid.as_str(),
                &process.comm,
                &process.exe,
                &process.runtime,
                &cg.cgroup,
                &cg.container,
            ];
            let leak = process.verdict == GrowthVerdict::Leak;
            self.process_waiters
                .with_label_values(&labels)
                .set(f64::from(process.waiters));
            self.process_growth
                .with_label_values(&labels)
                .set(process.growth_per_min);
            self.process_leak
                .with_label_values(&labels)
                .set(if leak { 1.0 } else { 0.0 });
            self.process_suspect
                .with_label_values(&labels)
                .set(if process.suspect { 1.0 } else { 0.0 });
            let oldest = process
                .sites
                .iter()
                .map(|s| s.oldest_wait_s)
                .fold(0.0, f64::max);
            self.process_oldest.with_label_values(&labels).set(oldest);
            let mut by_wait: HashMap<(&str, &str), u32> = HashMap::new();
            for s in &process.sites {
                *by_wait.entry((s.kind, s.wait.as_str())).or_default() += s.count;
            }
            for ((kind, wait), n) in by_wait {
                let mut l: Vec<&str> = labels.to_vec();
                l.extend([kind, wait]);
                self.waiters_by_wait.with_label_values(&l).set(f64::from(n));
            }
            let sites = site_series(process, self.limits.max_sites);
            self.process_sites
                .with_label_values(&labels)
                .set((sites.kept.len() + sites.omitted) as f64);
            self.process_sites_omitted
                .with_label_values(&labels)
                .set(sites.omitted as f64);
            for s in &sites.kept {
                let mut l: Vec<&str> = labels.to_vec();
                l.extend([s.kind, s.wait.as_str(), s.site.as_str()]);
                self.site_waiters
                    .with_label_values(&l)
                    .set(f64::from(s.waiters));
                self.site_growth.with_label_values(&l).set(s.growth_per_min);
                self.site_oldest.with_label_values(&l).set(s.oldest_wait_s);
                self.site_leak
                    .with_label_values(&l)
                    .set(if s.leak { 1.0 } else { 0.0 });
                self.site_suspect
                    .with_label_values(&l)
                    .set(if s.suspect { 1.0 } else { 0.0 });
            }
        }
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
    use crate::report::{FrameReport, REPORT_VERSION};

    fn frame(function: Option<&str>, address: &str) -> FrameReport {
        FrameReport {
            function: function.map(str::to_string),
            file: None,
            line: None,
            address: address.into(),
        }
    }

    fn site(kind: &'static str, wait: &str, count: u32, leak: bool, fns: &[&str]) -> SiteReport {
        SiteReport {
            kind,
            wait: wait.into(),
            count,
            verdict: if leak {
                GrowthVerdict::Leak
            } else {
                GrowthVerdict::Ok
            },
            suspect: false,
            growth_per_min: if leak { 60.0 } else { 0.0 },
            oldest_wait_s: f64::from(count),
            stack: fns
                .iter()
                .enumerate()
                .map(|(i, f)| frame(Some(f), &format!("{:#x}", 0x1000 + i)))
                .collect(),
            arrivals: 0,
            departures: 0,
            age_spread_s: None,
            reason: String::new(),
            ops: Vec::new(),
            created_by: None,
        }
    }

    fn process(pid: u32, sites: Vec<SiteReport>) -> ProcessReport {
        let leak = sites.iter().any(|s| s.verdict == GrowthVerdict::Leak);
        ProcessReport {
            pid,
            comm: format!("p{pid}"),
            exe: format!("/bin/p{pid}"),
            runtime: "native".into(),
            error: None,
            verdict: if leak {
                GrowthVerdict::Leak
            } else {
                GrowthVerdict::Ok
            },
            suspect: false,
            waiters: sites.iter().map(|s| s.count).sum(),
            growth_per_min: 1.5,
            sites,
        }
    }

    /// Check that a thread site's label skips libc's futex and pthread frames and names
    /// the program's own innermost function and its caller.
    #[test]
    fn site_label_names_the_programs_own_frames() {
        let s = site(
            "thread",
            "futex",
            3,
            true,
            &[
                "__futex_abstimed_wait_common",
                "__lll_lock_wait",
                "___pthread_mutex_lock",
                "leak_on_mutex",
                "leaked_thread",
                "start_thread",
                "clone3",
            ],
        );
        assert_eq!(site_label(&s), "thread:futex:leak_on_mutex<leaked_thread");
    }

    /// Check that goroutine labels skip runtime/sync frames, drop import paths, and that
    /// Rust hash suffixes and std frames are dropped for threads.
    #[test]
    fn site_label_shortens_go_and_rust_names() {
        let g = site(
            "goroutine",
            "chan receive",
            1,
            false,
            &[
                "runtime.gopark",
                "runtime.chanrecv1",
                "example.com/svc/internal/worker.(*Pool).wait",
                "main.main.func1",
            ],
        );
        assert_eq!(
            site_label(&g),
            "goroutine:chan receive:worker.(*Pool).wait<main.main.func1"
        );
        let r = site(
            "thread",
            "futex",
            1,
            false,
            &[
                "std::sys::pal::unix::futex::futex_wait",
                "std::sync::mpmc::list::Channel<T>::recv",
                "mpsc_leak::wait_for_message::h0123456789abcdef",
            ],
        );
        assert_eq!(site_label(&r), "thread:futex:mpsc_leak::wait_for_message");
    }

    /// Check that a stack of only runtime frames falls back to them, an unnamed stack to
    /// its innermost address, and an over-long label is cut to the limit on a char
    /// boundary.
    #[test]
    fn site_label_fallbacks_and_truncation() {
        let only_runtime = site("thread", "futex", 1, false, &["__lll_lock_wait", "clone3"]);
        assert_eq!(
            site_label(&only_runtime),
            "thread:futex:__lll_lock_wait<clone3"
        );
        let mut unnamed = site("thread", "futex", 1, false, &[]);
        unnamed.stack = vec![frame(None, "0x7f00dead"), frame(None, "0x401000")];
        assert_eq!(site_label(&unnamed), "thread:futex:0x7f00dead");
        let long_name = "é".repeat(100);
        let long = site("thread", "futex", 1, false, &[&long_name]);
        let label = site_label(&long);
        assert!(label.len() <= MAX_SITE_LABEL, "{}", label.len());
        assert!(label.ends_with('~'));
    }

    /// Check that sites sharing a label merge, leaks come first, the largest sites are
    /// kept up to the cap, and the cut sites are counted.
    #[test]
    fn sites_merge_and_cap_largest_first() {
        let p = process(
            1,
            vec![
                site("thread", "futex", 50, false, &["big_pool"]),
                site("thread", "futex", 2, true, &["leak_here"]),
                site("thread", "futex", 30, false, &["mid_pool"]),
                site("thread", "futex", 25, false, &["mid_pool"]),
                site("thread", "futex", 1, false, &["tiny"]),
                site("thread", "futex", 3, false, &["small"]),
            ],
        );
        let capped = site_series(&p, 3);
        let labels: Vec<&str> = capped.kept.iter().map(|s| s.site.as_str()).collect();
        assert_eq!(
            labels,
            [
                "thread:futex:leak_here",
                "thread:futex:mid_pool",
                "thread:futex:big_pool"
            ]
        );
        assert_eq!(capped.kept[1].waiters, 55, "merged");
        assert_eq!(capped.kept[1].oldest_wait_s, 30.0);
        assert_eq!(capped.omitted, 2);
        assert_eq!(site_series(&p, 100).omitted, 0);
    }

    /// Check that cgroup v2 paths become a short label (unit, container scope with the
    /// id cut to 12 digits), that a v1-only file uses the systemd hierarchy, and the
    /// root cgroup gives no label.
    #[test]
    fn cgroup_labels_are_short() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            cgroup_labels("0::/system.slice/nginx.service\n"),
            CgroupLabels {
                cgroup: "nginx.service".into(),
                container: String::new()
            }
        );
        assert_eq!(
            cgroup_labels(&format!("0::/system.slice/docker-{id}.scope\n")),
            CgroupLabels {
                cgroup: "docker-0123456789ab.scope".into(),
                container: "0123456789ab".into()
            }
        );
        let k8s = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{id}.scope"
        );
        assert_eq!(cgroup_labels(&k8s).container, "0123456789ab");
        let v1 = "12:pids:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-4.scope\n";
        assert_eq!(cgroup_labels(v1).cgroup, "session-4.scope");
        assert_eq!(cgroup_labels("0::/\n"), CgroupLabels::default());
    }

    /// Check that a report becomes per-process and per-site series with the documented
    /// names and labels, that processes over the cap are cut and counted, that series of
    /// a process gone from the next report disappear, and that METRIC_NAMES lists exactly
    /// the families exported.
    #[test]
    fn report_becomes_series_and_old_series_vanish() {
        let exporter = Exporter::new(Limits {
            max_processes: 2,
            max_sites: 1,
        });
        let mut report = Report {
            version: REPORT_VERSION,
            host: "h".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_s: 10.0,
            processes: vec![
                process(
                    10,
                    vec![
                        site("thread", "futex", 8, true, &["leak_on_mutex"]),
                        site("thread", "futex", 20, false, &["pool"]),
                    ],
                ),
                process(11, vec![site("thread", "futex", 16, false, &["pool"])]),
                process(12, vec![site("thread", "futex", 1, false, &["x"])]),
            ],
        };
        report.sort();
        let cg = |pid: u32| CgroupLabels {
            cgroup: format!("unit{pid}.service"),
            container: String::new(),
        };
        exporter.observe_scan(Ok(&ScanStats::default()), 1.0);
        exporter.observe_history(&History::new());
        exporter.dump_counters().written.inc();
        exporter.observe_report(&report, 0.01, cg);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        assert!(
            text.contains(
                r#"leakscope_process_leak{cgroup="unit10.service",comm="p10",container="",exe="/bin/p10",pid="10",runtime="native"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"site="thread:futex:leak_on_mutex""#),
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
        assert!(!text.contains(r#"pid="12""#), "pid 12 is over the cap");
        assert!(text.contains(r#"leakscope_process_waiters_by_wait{"#));

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

        report.processes.retain(|p| p.pid == 11);
        exporter.observe_report(&report, 0.01, cg);
        let text = String::from_utf8(exporter.render().to_vec()).unwrap();
        assert!(
            !text.contains(r#"pid="10""#),
            "exited process's series gone"
        );
        assert!(text.contains(r#"pid="11""#));
    }
}
