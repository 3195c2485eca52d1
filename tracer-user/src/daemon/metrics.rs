//! The daemon's Prometheus series: what `leakscope run` serves on `/metrics`.
//!
//! Per process and per site series are rebuilt from each window summary (their vectors
//! are reset first, so the series of exited processes disappear). Label values come only from
//! bounded sets: one process's labels (pid, comm, exe, runtime, cgroup, container_id,
//! namespace, pod, container) and,
//! per site, kind, wait reason and the site's label (unique within the process); the number of processes and of
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
    host::cgroup::PodIdentity,
    sanitize,
    sources::threads::ThreadSourceKind,
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

/// Every metric family the daemon exports (histograms by their base name). The
/// deploy/ rules and dashboard may use these and nothing else; tests hold them to it.
pub const METRIC_NAMES: &[&str] = &[
    "leakscope_process_blocked_waiters",
    "leakscope_process_growth_per_minute",
    "leakscope_process_leak",
    "leakscope_process_suspect",
    "leakscope_process_oldest_wait_seconds",
    "leakscope_process_goroutines_read_age_seconds",
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
    "leakscope_thread_source",
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
    process_read_age: GaugeVec,
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
    thread_source: GaugeVec,
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
            process_read_age: gauge_vec(
                "leakscope_process_goroutines_read_age_seconds",
                "Go processes: seconds from the latest read of its goroutines to the last scan; a huge process is read less often than every scan, so that reading it costs at most 2% of one core (at least every 20 s).",
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
            thread_source: gauge_vec(
                "leakscope_thread_source",
                "1 for the thread source in use: bpf (the task iterator) or procfs (the /proc fallback, slower).",
                &["source"],
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

    /// Says which thread source the scans use (set once, when the source is open).
    pub fn set_thread_source(&self, kind: ThreadSourceKind) {
        self.thread_source.reset();
        self.thread_source
            .with_label_values(&[kind.name()])
            .set(1.0);
    }

    /// The counters the dump writer updates.
    pub fn dump_counters(&self) -> DumpCounters {
        self.dumps.clone()
    }

    /// Records the size of the window's history.
    pub fn observe_history(&self, history: &History) {
        self.history_processes.set(history.processes.len() as i64);
        self.history_members.set(history.members() as i64);
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

    /// Replaces every per-process and per-site series with the window's.
    pub fn observe_summary(&self, summary: &WindowSummary, took_s: f64) {
        for v in [
            &self.process_waiters,
            &self.process_growth,
            &self.process_leak,
            &self.process_suspect,
            &self.process_oldest,
            &self.process_read_age,
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
        let processes = &summary.processes;
        self.leaking_processes
            .set(processes.iter().filter(|p| p.is_leak()).count() as i64);
        // The summary lists leaking processes first, then by waiter count.
        let kept = processes.len().min(self.limits.max_processes);
        self.processes_omitted.set((processes.len() - kept) as i64);
        for process in &processes[..kept] {
            self.observe_process(process);
        }
    }

    fn observe_process(&self, process: &ProcessSummary) {
        let facts = &process.facts;
        let pid = process.key.pid.to_string();
        // What the process controls is escaped; the path is capped (it has no bound).
        let comm = sanitize::log_text(&facts.comm);
        let exe = sanitize::capped(&facts.exe, MAX_EXE_LABEL);
        let cgroup = sanitize::capped(&facts.cgroup.cgroup, MAX_EXE_LABEL);
        let no_pod = PodIdentity::default();
        let pod = facts.cgroup.pod.as_ref().unwrap_or(&no_pod);
        let labels = [
            pid.as_str(),
            &comm,
            &exe,
            &facts.runtime,
            &cgroup,
            &facts.cgroup.container,
            &pod.namespace,
            &pod.name,
            &pod.container,
        ];
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        self.process_waiters
            .with_label_values(&labels)
            .set(f64::from(process.waiters));
        self.process_growth
            .with_label_values(&labels)
            .set(process.growth_per_min);
        self.process_leak
            .with_label_values(&labels)
            .set(flag(process.is_leak()));
        self.process_suspect
            .with_label_values(&labels)
            .set(flag(process.suspect));
        self.process_oldest
            .with_label_values(&labels)
            .set(process.oldest_wait_s());
        if let Some(age) = process.goroutines_read_age_s {
            self.process_read_age.with_label_values(&labels).set(age);
        }
        let mut by_wait: HashMap<(&str, &str), u32> = HashMap::new();
        for s in &process.sites {
            *by_wait.entry((s.kind.name(), &s.wait)).or_default() += s.count;
        }
        // As many wait reasons as sites at most, the largest first.
        let mut by_wait: Vec<((&str, &str), u32)> = by_wait.into_iter().collect();
        by_wait.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for ((kind, wait), n) in by_wait.into_iter().take(self.limits.max_sites) {
            let wait = sanitize::log_text(wait);
            let mut l: Vec<&str> = labels.to_vec();
            l.extend([kind, &wait]);
            self.waiters_by_wait.with_label_values(&l).set(f64::from(n));
        }
        let (sites, omitted) = capped_sites(process, self.limits.max_sites);
        self.process_sites
            .with_label_values(&labels)
            .set(process.sites.len() as f64);
        self.process_sites_omitted
            .with_label_values(&labels)
            .set(omitted as f64);
        for s in sites {
            let mut l: Vec<&str> = labels.to_vec();
            let wait = sanitize::log_text(&s.wait);
            l.extend([s.kind.name(), &wait, &s.label]);
            let j = &s.judgement;
            self.site_waiters
                .with_label_values(&l)
                .set(f64::from(s.count));
            self.site_growth.with_label_values(&l).set(j.growth_per_min);
            self.site_oldest.with_label_values(&l).set(j.oldest_wait_s);
            self.site_leak.with_label_values(&l).set(flag(s.is_leak()));
            self.site_suspect.with_label_values(&l).set(flag(j.suspect));
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
    use crate::{
        model::WaiterKind,
        summary::testutil::{frame, process, site, window},
        verdict::GrowthVerdict,
    };

    fn sites(specs: &[(&str, u32, bool)]) -> Vec<SiteSummary> {
        specs
            .iter()
            .map(|&(name, count, leak)| {
                let verdict = if leak {
                    GrowthVerdict::Leak
                } else {
                    GrowthVerdict::Ok
                };
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

    /// Check that a window becomes per-process and per-site series with the documented
    /// names and labels (cgroup from the scan's facts), that processes over the cap are
    /// cut and counted, that series of a process gone from the next window disappear, and that METRIC_NAMES lists exactly the families exported.
    #[test]
    fn window_becomes_series_and_old_series_vanish() {
        let exporter = Exporter::new(Limits {
            max_processes: 2,
            max_sites: 1,
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
        }
        exporter.observe_scan(Ok(&ScanStats::default()), 1.0);
        exporter.observe_history(&History::new());
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

    /// Check that what a process controls reaches the labels escaped (no raw newline,
    /// ESC or bidi override in the exposition), the exe label is capped keeping its
    /// file name, a comm ending in a space is kept as is, and the per-wait-reason series
    /// are capped by max_sites, largest first.
    #[test]
    fn hostile_names_are_escaped_and_capped() {
        let exporter = Exporter::new(Limits {
            max_processes: 10,
            max_sites: 2,
        });
        let waits: Vec<SiteSummary> = ["chan receive", "select", "sleep", "IO wait"]
            .iter()
            .enumerate()
            .map(|(i, wait)| {
                let stack = vec![frame(&format!("main.f{i}"), None, 0x1000 + i as u64)];
                site(
                    WaiterKind::Goroutine,
                    wait,
                    GrowthVerdict::Ok,
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
}
