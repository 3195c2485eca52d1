//! The `diagnose` report, rendered from a [`WindowSummary`]: a stable JSON document
//! (version 1, documented in the README; fields are only ever added) and text for
//! people, in colour on a terminal.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    forecast::{Exhaustion, Forecast, render::bytes},
    host::cgroup::PodIdentity,
    model::{Frame, LabelSet, Runtime},
    resources::StackBytes,
    sanitize,
    sources::threads::{FdKind, SocketKind, ThreadSourceKind},
    summary::{ProcessSummary, SiteSummary, WindowSummary},
    verdict::WaitAgeSource,
};

/// Version of the JSON document; bump only on incompatible changes.
pub const REPORT_VERSION: u32 = 1;

/// The JSON document: a view of the summary, borrowed, rounded for people.
#[derive(Serialize)]
struct ReportJson<'a> {
    version: u32,
    host: &'a str,
    /// RFC 3339, UTC.
    started_at: String,
    duration_s: f64,
    /// Addition to version 1: where thread waiters came from, "bpf" (the task
    /// iterator) or "procfs" (the /proc fallback).
    thread_source: &'static str,
    processes: Vec<ProcessJson<'a>>,
}

#[derive(Serialize)]
struct ProcessJson<'a> {
    pid: u32,
    comm: &'a str,
    exe: &'a str,
    runtime: Runtime,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    verdict: &'static str,
    suspect: bool,
    waiters: u32,
    growth_per_min: f64,
    /// Additions to version 1: the process's age at its last scan, whether it still ran
    /// at the end of the window, its cgroup and container.
    uptime_s: f64,
    alive: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    cgroup: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    container: &'a str,
    /// Addition to version 1: the pod, when the kubelet placed the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a PodIdentity>,
    /// Addition to version 1: how old the goroutine data of a Go process is.
    #[serde(skip_serializing_if = "Option::is_none")]
    goroutines_read_age_s: Option<f64>,
    /// Additions to version 1: the stack memory its blocked waiters hold (see the
    /// site's).
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_resident_bytes: Option<u64>,
    /// Addition to version 1, leaking processes: the first limit the leak reaches and
    /// when, or why no forecast is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    exhaustion: Option<ForecastJson<'a>>,
    /// Addition to version 1, leaking processes: every limit looked at, the first
    /// reached first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    limits: Vec<ForecastJson<'a>>,
    /// Addition to version 1: what a memory or CPU budget cut from its analysis, one
    /// sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    degraded: Vec<String>,
    sites: Vec<SiteJson<'a>>,
}

/// One limit's forecast: the limit's name, where it was read, its value and what it
/// counts now (tasks, mappings or bytes), and the seconds left at the process's rate,
/// or why no forecast is given.
#[derive(Serialize)]
struct ForecastJson<'a> {
    limit: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_per_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl<'a> ForecastJson<'a> {
    fn of(f: &'a Forecast) -> Self {
        Self {
            limit: f.limit.name(),
            source: &f.source,
            value: f.value,
            used: f.used,
            eta_s: f.eta_s.as_ref().ok().map(|&eta| round2(eta)),
            rate_per_min: f.rate_per_s.map(|r| round2(r * 60.0)),
            reason: f.eta_s.as_ref().err().map(ToString::to_string),
        }
    }
}

#[derive(Serialize)]
struct SiteJson<'a> {
    kind: &'static str,
    wait: &'a str,
    count: u32,
    verdict: &'static str,
    suspect: bool,
    growth_per_min: f64,
    oldest_wait_s: f64,
    /// Addition to version 1, goroutine sites: "runtime" (from `g.waitsince`) or
    /// "observed" (only what the scans saw).
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_wait_source: Option<WaitAgeSource>,
    stack: &'a [Frame],
    arrivals: u32,
    departures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    age_spread_s: Option<f64>,
    reason: String,
    /// Addition to version 1: the rule that decided, as in the metrics' `rule` label.
    rule: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ops: Vec<&'static str>,
    /// Addition to version 1, threads in a syscall on one fd: what most members wait on.
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_kind: Option<&'static str>,
    /// Addition to version 1, when `fd_kind` is "socket": its protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    socket: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<&'a Frame>,
    /// Addition to version 1: the site's label, as in the metrics.
    site: &'a str,
    /// Addition to version 1, goroutine sites: how many members the Go runtime itself
    /// proved leaked (`_Gleaked`); left out when none.
    #[serde(skip_serializing_if = "is_zero")]
    runtime_leaked: u32,
    /// Addition to version 1, goroutine sites: the members' most common pprof label
    /// sets; left out when none has labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<LabelsJson<'a>>,
    /// Additions to version 1: the stack memory its waiters hold (goroutines: their
    /// stacks' sizes; threads: their stack mappings, and of those what is resident).
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_resident_bytes: Option<u64>,
}

/// One label set of a site and how many members have it.
#[derive(Serialize)]
struct LabelsJson<'a> {
    labels: &'a LabelSet,
    count: u32,
    /// The set was cut (labels left out, or a key or value cut and ending in "…").
    #[serde(skip_serializing_if = "is_false")]
    truncated: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl<'a> SiteJson<'a> {
    fn of(s: &'a SiteSummary) -> Self {
        let j = &s.judgement;
        Self {
            kind: s.kind.name(),
            wait: &s.wait,
            count: s.count,
            verdict: j.outcome().json_verdict(),
            suspect: j.is_suspect(),
            growth_per_min: round2(j.growth_per_min),
            oldest_wait_s: round2(j.oldest_wait_s),
            oldest_wait_source: j.oldest_wait_source,
            stack: &s.stack,
            arrivals: j.arrivals,
            departures: j.departures,
            age_spread_s: j.age_spread_s.map(round2),
            reason: j.rule.to_string(),
            rule: j.rule.name(),
            ops: s.ops.iter().map(|op| op.name()).collect(),
            fd_kind: s.fd_kind.map(FdKind::name),
            socket: s.fd_kind.and_then(FdKind::socket).map(SocketKind::name),
            created_by: s.created_by.as_ref(),
            site: &s.label,
            runtime_leaked: s.runtime_leaked,
            labels: s
                .label_sets
                .iter()
                .map(|(set, count)| LabelsJson {
                    labels: set,
                    count: *count,
                    truncated: set.truncated,
                })
                .collect(),
            stack_bytes: reserved(&s.stack_bytes),
            stack_resident_bytes: resident(&s.stack_bytes),
        }
    }
}

/// The stack bytes counted, if any stack was.
fn reserved(stack: &StackBytes) -> Option<u64> {
    (stack.stacks > 0).then_some(stack.reserved)
}

/// The resident stack bytes, where known.
fn resident(stack: &StackBytes) -> Option<u64> {
    stack.resident.filter(|_| stack.stacks > 0)
}

impl<'a> ProcessJson<'a> {
    fn of(p: &'a ProcessSummary) -> Self {
        Self {
            pid: p.key.pid,
            comm: &p.facts.comm,
            exe: &p.facts.exe,
            runtime: p.facts.runtime,
            error: p.unreadable.as_ref().map(ToString::to_string),
            verdict: p.outcome.json_verdict(),
            suspect: p.is_suspect(),
            waiters: p.waiters,
            growth_per_min: round2(p.growth_per_min),
            uptime_s: round2(p.uptime_s),
            alive: p.alive,
            cgroup: &p.facts.cgroup.cgroup,
            container: &p.facts.cgroup.container,
            pod: p.facts.cgroup.pod.as_ref(),
            goroutines_read_age_s: p.goroutines_read_age_s.map(round2),
            stack_bytes: reserved(&p.stack_bytes),
            stack_resident_bytes: resident(&p.stack_bytes),
            exhaustion: p.exhaustion.as_ref().and_then(exhaustion_json),
            limits: (p.exhaustion.iter())
                .flat_map(|e| &e.forecasts)
                .map(ForecastJson::of)
                .collect(),
            degraded: p.degraded.iter().map(ToString::to_string).collect(),
            sites: p.sites.iter().map(SiteJson::of).collect(),
        }
    }
}

/// A leaking process's `exhaustion`: the first limit reached, else the limit whose
/// reason says most, with its reason.
fn exhaustion_json(e: &Exhaustion) -> Option<ForecastJson<'_>> {
    e.first().or_else(|| e.closest()).map(ForecastJson::of)
}

/// The JSON document of a window.
pub fn to_json(summary: &WindowSummary) -> String {
    let doc = ReportJson {
        version: REPORT_VERSION,
        host: &summary.host,
        started_at: humantime::format_rfc3339_seconds(summary.started_at).to_string(),
        duration_s: round2(summary.duration_s),
        thread_source: summary.thread_source.name(),
        processes: summary.processes.iter().map(ProcessJson::of).collect(),
    };
    serde_json::to_string_pretty(&doc).expect("report serializes")
}

/// How text is styled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextStyle {
    /// ANSI colours: leaks red, suspects yellow.
    pub color: bool,
}

impl TextStyle {
    /// Colour when `to_terminal` and the user did not ask for none (`NO_COLOR`, see
    /// no-color.org: set and not empty).
    pub fn for_output(to_terminal: bool) -> Self {
        Self::choose(to_terminal, std::env::var_os("NO_COLOR").as_deref())
    }

    fn choose(to_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> Self {
        Self {
            color: to_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn red(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// A duration as people read uptimes: "45s", "12m03s", "3h12m", "4d02h".
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A wait age as people read it: "12 s", "14 min", "3 h", "2 d" (rounded down: the
/// goroutine figures are lower bounds).
pub fn wait_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

/// A site's oldest wait: threads' is the kernel's; goroutines' is a lower bound, from
/// the runtime's `g.waitsince` or only as long as leakscope saw it.
fn oldest_wait(secs: f64, source: Option<WaitAgeSource>) -> String {
    match source {
        None => format!("oldest waiting {}", wait_age(secs)),
        Some(WaitAgeSource::Runtime) => format!("parked \u{2265} {}", wait_age(secs)),
        Some(WaitAgeSource::Observed) => format!("parked \u{2265} {} (as seen)", wait_age(secs)),
    }
}

/// The report for people: leaks in full, other processes in one line each.
pub fn to_text(summary: &WindowSummary, style: TextStyle) -> String {
    let mut out = String::new();
    let leaks: Vec<_> = summary.processes.iter().filter(|p| p.is_leak()).collect();
    let _ = writeln!(
        out,
        "leakscope: watched {} for {:.0} s from {} (threads from {})",
        sanitize::log_text(&summary.host),
        summary.duration_s,
        humantime::format_rfc3339_seconds(summary.started_at),
        match summary.thread_source {
            ThreadSourceKind::Bpf => "the BPF task iterator",
            ThreadSourceKind::Procfs => "/proc",
        }
    );
    if leaks.is_empty() {
        let _ = writeln!(out, "no leak found.");
    } else {
        let _ = writeln!(out, "{} leaking process(es):", leaks.len());
    }
    for p in &leaks {
        let _ = writeln!(out);
        write_leaking_process(&mut out, p, style);
    }
    let healthy: Vec<_> = summary.processes.iter().filter(|p| !p.is_leak()).collect();
    if !healthy.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "processes with blocked waiters and no leak:");
        for p in healthy {
            write_other_process(&mut out, p, style);
        }
    }
    out
}

fn write_leaking_process(out: &mut String, p: &ProcessSummary, style: TextStyle) {
    let f = &p.facts;
    let _ = writeln!(
        out,
        "{}  pid {} {} ({}, {})  {} blocked waiters, {:+.1}/min, up {}{}",
        style.red("LEAK"),
        p.key.pid,
        style.bold(&sanitize::log_text(&f.comm)),
        sanitize::log_text(&f.exe),
        f.runtime,
        p.waiters,
        p.growth_per_min,
        human_duration(p.uptime_s),
        if p.alive { "" } else { " (exited)" }
    );
    if let Some(pod) = &f.cgroup.pod {
        let _ = writeln!(out, "  {}", sanitize::log_text(&pod.describe()));
    }
    if let Some(exhaustion) = &p.exhaustion {
        // A forecast is red like the leak; why there is none is plain.
        let said = exhaustion.to_string();
        let said = if exhaustion.first().is_some() {
            style.red(&said)
        } else {
            said
        };
        let _ = writeln!(out, "  {said}");
    }
    write_degraded(out, p, style);
    for s in p.sites.iter().filter(|s| s.is_leak()) {
        let ops = if s.ops.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = s.ops.iter().map(|op| op.name()).collect();
            format!(" [{}]", names.join(", "))
        };
        let on_fd = match s.fd_kind {
            Some(kind) => match kind.socket() {
                Some(socket) => format!(" (fd: {} {})", socket.name(), kind.name()),
                None => format!(" (fd: {})", kind.name()),
            },
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  site: {} {} {} waiters{ops}{on_fd}, {:+.1}/min, {}{}",
            s.count,
            s.kind.name(),
            sanitize::log_text(&s.wait),
            s.judgement.growth_per_min,
            oldest_wait(s.judgement.oldest_wait_s, s.judgement.oldest_wait_source),
            holds(&s.stack_bytes)
        );
        let _ = writeln!(out, "    why: {}", s.judgement.rule);
        write_go_evidence(out, s);
        for (i, frame) in s.stack.iter().enumerate() {
            let line = render_frame(frame);
            let line = if Some(i) == s.origin {
                style.red(&line)
            } else {
                line
            };
            let _ = writeln!(out, "    {line}");
        }
        if let Some(creator) = &s.created_by {
            let _ = writeln!(out, "    created by {}", render_frame(creator));
        }
    }
}

fn write_other_process(out: &mut String, p: &ProcessSummary, style: TextStyle) {
    if let Some(error) = &p.unreadable {
        let _ = writeln!(
            out,
            "  ??    pid {:<7} {:<16} {}",
            p.key.pid,
            sanitize::log_text(&p.facts.comm),
            sanitize::log_text(&error.to_string())
        );
        return;
    }
    let tag = if p.is_suspect() {
        style.yellow("SUSPECT")
    } else {
        "ok   ".to_string()
    };
    let suspect_site = p
        .sites
        .iter()
        .find(|s| s.judgement.is_suspect())
        .map(|s| format!("; suspect {}", style.yellow(&s.label)))
        .unwrap_or_default();
    let pod = p
        .facts
        .cgroup
        .pod
        .as_ref()
        .map(|pod| format!("  [{}]", sanitize::log_text(&pod.describe())))
        .unwrap_or_default();
    let proven: u32 = p.sites.iter().map(|s| s.runtime_leaked).sum();
    let proven = if proven > 0 {
        format!("; {proven} proven leaked by Go's GC")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {tag} pid {:<7} {:<16} {:>6} waiters in {} site(s){suspect_site}{proven}{pod}",
        p.key.pid,
        sanitize::log_text(&p.facts.comm),
        p.waiters,
        p.sites.len()
    );
    write_degraded(out, p, style);
}

/// What a budget cut from a process's analysis, one line each (a process so cut never
/// reads as complete).
fn write_degraded(out: &mut String, p: &ProcessSummary, style: TextStyle) {
    for reason in p.degraded.iter() {
        let _ = writeln!(
            out,
            "    {} {}",
            style.yellow("degraded:"),
            sanitize::log_text(&reason.to_string())
        );
    }
}

/// What a goroutine site's members say of themselves: how many the Go runtime proved
/// leaked, and their most common pprof labels.
fn write_go_evidence(out: &mut String, s: &SiteSummary) {
    if s.runtime_leaked > 0 {
        let _ = writeln!(
            out,
            "    Go's GC proved {} of them leaked (goroutineleak profile)",
            s.runtime_leaked
        );
    }
    if !s.label_sets.is_empty() {
        let sets: Vec<String> = s
            .label_sets
            .iter()
            .map(|(set, count)| format!("{} ({count})", render_labels(set)))
            .collect();
        let _ = writeln!(out, "    labels: {}", sets.join(", "));
    }
}

/// A label set as `key=value key=value`, escaped (the process chose every byte), and
/// "…" when the reader cut it.
pub fn render_labels(set: &LabelSet) -> String {
    if set.labels.is_empty() {
        return "(too many labels to read)".into();
    }
    let mut text: Vec<String> = set
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", sanitize::log_text(k), sanitize::log_text(v)))
        .collect();
    if set.truncated && !text.last().is_some_and(|t| t.ends_with('…')) {
        text.push("…".into());
    }
    text.join(" ")
}

/// What a site's stacks hold, for people: ", holds 41 MiB of stacks (1.2 MiB
/// resident)", or nothing when no stack was counted.
fn holds(stack: &StackBytes) -> String {
    match (reserved(stack), resident(stack)) {
        (None, _) => String::new(),
        (Some(total), None) => format!(", holds {} of stacks", bytes(total as f64)),
        (Some(total), Some(resident)) => format!(
            ", holds {} of stacks ({} resident)",
            bytes(total as f64),
            bytes(resident as f64)
        ),
    }
}

/// One stack frame as a line: address, function, file:line.
pub fn render_frame(f: &Frame) -> String {
    let function = sanitize::log_text(f.function.as_deref().unwrap_or("??"));
    let file = f.file.as_deref().map(sanitize::log_text);
    let address = format!("{:#x}", f.address);
    match (file, f.line) {
        (Some(file), Some(line)) => format!("{address} {function}  {file}:{line}"),
        (Some(file), None) => format!("{address} {function}  {file}"),
        _ => format!("{address} {function}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        sources::go::{error::GoReadError, executable::UnreadableGoKind},
        summary::testutil::native_window,
    };

    /// Check that the JSON document has the version-1 fields with their documented types
    /// (and the additions), and that leaks sort first.
    #[test]
    fn json_has_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&native_window())).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["started_at"], "2026-11-23T00:00:00Z");
        assert_eq!(v["thread_source"], "bpf");
        let p = &v["processes"][0];
        assert_eq!(p["pid"], 9);
        assert_eq!(p["verdict"], "leak");
        assert_eq!(p["runtime"], "native");
        assert_eq!(p["uptime_s"], 3725.0);
        assert_eq!(p["alive"], true);
        assert_eq!(p["cgroup"], "unit9.service");
        assert!(p.get("container").is_none(), "empty container left out");
        assert!(p.get("error").is_none());
        let s = &p["sites"][0];
        assert_eq!(s["verdict"], "leak", "leaking site first");
        assert_eq!(s["kind"], "thread");
        assert_eq!(s["wait"], "futex");
        assert_eq!(s["growth_per_min"], 12.35);
        assert_eq!(s["site"], "thread:futex:leak_on_mutex<leaked_thread");
        assert_eq!(s["rule"], "stayed_and_growing");
        assert_eq!(s["suspect"], false);
        assert!(
            s["reason"]
                .as_str()
                .unwrap()
                .starts_with("5 waiters arrived and stayed"),
            "{}",
            s["reason"]
        );
        assert_eq!(s["stack"][0]["address"], "0x7f0000001000");
        assert_eq!(s["stack"][0]["file"], serde_json::Value::Null);
        assert_eq!(s["stack"][2]["function"], "leak_on_mutex");
        assert_eq!(s["stack"][2]["line"], 12);
        assert!(s.get("ops").is_none() && s.get("created_by").is_none());
    }

    /// Check that a leaking process carries its stack bytes, its exhaustion (the first
    /// limit reached, with source, value, use, seconds left and rate) and every limit
    /// looked at (each with a reason where it has no forecast), and that its sites
    /// carry their stack bytes, resident where known; and that a process that does not
    /// leak has no exhaustion.
    #[test]
    fn json_has_stack_bytes_and_exhaustion() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&native_window())).unwrap();
        let p = &v["processes"][0];
        assert_eq!(p["stack_bytes"], 85 * 256 * 1024);
        assert_eq!(p["stack_resident_bytes"], 85 * 16 * 1024);
        let e = &p["exhaustion"];
        assert_eq!(e["limit"], "pids.max");
        assert_eq!(e["source"], "/sys/fs/cgroup/pids/leaky");
        assert_eq!(
            (e["value"].as_u64(), e["used"].as_u64()),
            (Some(600), Some(410))
        );
        assert_eq!(e["eta_s"], 95.0);
        assert_eq!(e["rate_per_min"], 120.0);
        assert!(e.get("reason").is_none());
        let limits = p["limits"].as_array().unwrap();
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[1]["limit"], "MemAvailable");
        assert_eq!(limits[1]["reason"], "memory not growing");
        assert!(limits[1].get("eta_s").is_none());
        let leak_site = &p["sites"][0];
        assert_eq!(leak_site["stack_bytes"], 5 * 256 * 1024);
        assert_eq!(leak_site["stack_resident_bytes"], 5 * 16 * 1024);
        let ok = &v["processes"][1];
        assert!(ok.get("exhaustion").is_none() && ok.get("limits").is_none());
        assert_eq!(ok["stack_bytes"], 50 * 256 * 1024);
    }

    /// Check that the text report says what a leak site's stacks hold and when the
    /// process hits its first limit, or why there is no forecast.
    #[test]
    fn text_says_stack_bytes_and_exhaustion() {
        let mut window = native_window();
        let text = to_text(&window, TextStyle::default());
        assert!(
            text.contains("\n  will hit pids.max (600) in ~1.6 min at +120/min\n"),
            "{text}"
        );
        assert!(
            text.contains(", holds 1.2 MiB of stacks (80 KiB resident)\n"),
            "{text}"
        );
        let leaking = &mut window.processes[0];
        let e = leaking.exhaustion.as_mut().unwrap();
        e.forecasts.remove(0);
        let text = to_text(&window, TextStyle::default());
        assert!(
            text.contains("\n  no exhaustion forecast: MemAvailable: memory not growing\n"),
            "{text}"
        );
    }

    /// Check that the text report names the leak's site with file and line, shows the
    /// leaking process's uptime, and lists healthy processes briefly, without escape
    /// codes when colour is off.
    #[test]
    fn text_names_leak_sites() {
        let window = native_window();
        let text = to_text(&window, TextStyle::default());
        assert!(text.contains("LEAK  pid 9 p9 (/bin/p9, native)"), "{text}");
        assert!(text.contains(", up 1h02m"), "{text}");
        assert!(text.contains("leak_on_mutex  /src/leak.c:12"), "{text}");
        assert!(text.contains("ok    pid 7"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(window.has_leak());
    }

    /// Check that a process in a pod has `pod` in the JSON (namespace, name, uid,
    /// container, container id) and a pod line in the text, leaking or not; and that a
    /// pod the kubelet's directories do not name is given by UID and container id.
    #[test]
    fn pods_are_named_in_json_and_text() {
        use crate::host::cgroup::PodIdentity;
        let mut window = native_window();
        let pod = PodIdentity {
            namespace: "shop".into(),
            name: "checkout-7d9f8b6c4-x2x9z".into(),
            uid: "6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f".into(),
            container: "api".into(),
            container_id: "0123456789abcdef".repeat(4),
        };
        for p in &mut window.processes {
            let mut facts = (*p.facts).clone();
            facts.cgroup.pod = Some(if p.is_leak() {
                pod.clone()
            } else {
                PodIdentity {
                    namespace: String::new(),
                    name: String::new(),
                    container: String::new(),
                    ..pod.clone()
                }
            });
            p.facts = std::sync::Arc::new(facts);
        }
        let v: serde_json::Value = serde_json::from_str(&to_json(&window)).unwrap();
        let json_pod = &v["processes"][0]["pod"];
        assert_eq!(json_pod["namespace"], "shop");
        assert_eq!(json_pod["name"], "checkout-7d9f8b6c4-x2x9z");
        assert_eq!(json_pod["uid"], "6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f");
        assert_eq!(json_pod["container"], "api");
        assert_eq!(json_pod["container_id"], "0123456789abcdef".repeat(4));
        let text = to_text(&window, TextStyle::default());
        assert!(
            text.contains("\n  pod shop/checkout-7d9f8b6c4-x2x9z, container api\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "[pod uid 6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f, container id 0123456789ab]"
            ),
            "{text}"
        );
    }

    /// Check that on a terminal the LEAK tag and the leak's origin frame are red and a
    /// suspect process is yellow.
    #[test]
    fn text_colours_leaks_red_and_suspects_yellow() {
        let mut window = native_window();
        let healthy = window.processes.iter_mut().find(|p| !p.is_leak()).unwrap();
        healthy.outcome = crate::verdict::Outcome::Suspect;
        let text = to_text(&window, TextStyle { color: true });
        assert!(text.contains("\x1b[1;31mLEAK\x1b[0m"), "{text}");
        assert!(
            text.contains("\x1b[1;31m0x401234 leak_on_mutex  /src/leak.c:12\x1b[0m"),
            "{text}"
        );
        assert!(text.contains("\x1b[33mSUSPECT\x1b[0m"), "{text}");
    }

    /// Check that a goroutine site's oldest wait says where it came from: "runtime" in
    /// the JSON and "parked ≥ 14 min" in the text when g.waitsince dated it, "observed"
    /// and "(as seen)" when only the scans did; thread sites carry no source.
    #[test]
    fn goroutine_wait_age_names_its_source() {
        use crate::{
            model::WaiterKind,
            summary::testutil::{frame, process, site, window},
        };
        let goroutine_site = |source, secs| {
            let mut s = site(
                WaiterKind::Goroutine,
                "chan receive",
                crate::verdict::Outcome::Leak,
                17,
                vec![
                    frame("runtime.gopark", None, 0x40_1000),
                    frame(
                        "main.leakSlowRecvNoSender",
                        Some(("/src/main.go", 42)),
                        0x40_2000,
                    ),
                ],
            );
            s.judgement.oldest_wait_s = secs;
            s.judgement.oldest_wait_source = Some(source);
            s
        };
        let w = window(vec![process(
            11,
            "go1.27",
            vec![goroutine_site(WaitAgeSource::Runtime, 14.0 * 60.0 + 20.0)],
        )]);
        let v: serde_json::Value = serde_json::from_str(&to_json(&w)).unwrap();
        let s = &v["processes"][0]["sites"][0];
        assert_eq!(s["oldest_wait_source"], "runtime");
        assert_eq!(s["oldest_wait_s"], 860.0);
        let text = to_text(&w, TextStyle::default());
        assert!(
            text.contains("parked \u{2265} 14 min, holds 136 KiB of stacks\n"),
            "{text}"
        );

        let w = window(vec![process(
            11,
            "go1.27",
            vec![goroutine_site(WaitAgeSource::Observed, 15.2)],
        )]);
        let v: serde_json::Value = serde_json::from_str(&to_json(&w)).unwrap();
        assert_eq!(
            v["processes"][0]["sites"][0]["oldest_wait_source"],
            "observed"
        );
        let text = to_text(&w, TextStyle::default());
        assert!(text.contains("parked \u{2265} 15 s (as seen)"), "{text}");

        let v: serde_json::Value = serde_json::from_str(&to_json(&native_window())).unwrap();
        assert!(
            v["processes"][0]["sites"][0]
                .get("oldest_wait_source")
                .is_none()
        );
        let text = to_text(&native_window(), TextStyle::default());
        assert!(text.contains("oldest waiting 3 s"), "{text}");
    }

    /// Check that colour is on only for a terminal, and off when NO_COLOR is set to
    /// anything but the empty string.
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let on = |terminal, no_color: Option<&str>| {
            TextStyle::choose(terminal, no_color.map(std::ffi::OsStr::new)).color
        };
        assert!(on(true, None));
        assert!(on(true, Some("")));
        assert!(!on(true, Some("1")));
        assert!(!on(false, None));
    }

    /// Check that a recorded real run renders with its three leakers as LEAK (named
    /// after their own frames) before the pool, in text and in JSON.
    #[test]
    fn recorded_run_renders_leakers_first() {
        let window = crate::summary::testutil::recorded_native_window();
        let text = to_text(&window, TextStyle::default());
        let leaks: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("LEAK  pid"))
            .collect();
        assert_eq!(leaks.len(), 3, "{text}");
        assert!(leaks.iter().all(|l| l.contains("_leak")), "{text}");
        assert!(text.contains("mutex_leak_site"), "{text}");
        assert!(text.contains("ok    pid 26446   idle_pool"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&to_json(&window)).unwrap();
        let verdicts: Vec<(&str, &str)> = v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["comm"].as_str().unwrap(), p["verdict"].as_str().unwrap()))
            .collect();
        assert_eq!(verdicts.len(), 4);
        assert_eq!(verdicts[3], ("idle_pool", "ok"), "{verdicts:?}");
        assert!(
            verdicts[..3].iter().all(|(_, v)| *v == "leak"),
            "{verdicts:?}"
        );
    }

    /// Check the text of a small window line for line, all but the oldest-wait clause
    /// (a snapshot: a change to the text report shows here first).
    #[test]
    fn text_snapshot() {
        let text = to_text(&native_window(), TextStyle::default());
        assert!(
            text.starts_with(
                "leakscope: watched h for 15 s from 2026-11-23T00:00:00Z (threads from the BPF task iterator)\n\
             1 leaking process(es):\n\
             \n\
             LEAK  pid 9 p9 (/bin/p9, native)  85 blocked waiters, +1.0/min, up 1h02m\n\
             \x20 will hit pids.max (600) in ~1.6 min at +120/min\n\
             \x20 site: 5 thread futex waiters, +12.3/min, "
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "    why: 5 waiters arrived and stayed, 0 left; the population grew from 0 to 5 (+12.3/min) and was still growing at the end\n\
             \x20   0x7f0000001000 __futex_abstimed_wait_common\n\
             \x20   0x7f0000002000 ___pthread_mutex_lock\n\
             \x20   0x401234 leak_on_mutex  /src/leak.c:12\n\
             \x20   0x401300 leaked_thread  /src/leak.c:30\n\
             \x20   0x7f0000003000 start_thread\n\
             \n\
             processes with blocked waiters and no leak:\n\
             \x20 ok    pid 7       p7                   50 waiters in 1 site(s)\n"
            ),
            "{text}"
        );
    }

    /// Check that uptimes read as people write them.
    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(45.2), "45s");
        assert_eq!(human_duration(723.0), "12m03s");
        assert_eq!(human_duration(3725.0), "1h02m");
        assert_eq!(human_duration(4.0 * 86400.0 + 7300.0), "4d02h");
    }

    /// Check that the text report cannot be made to print a forged line or a terminal
    /// escape by a process's comm, exe, error or frame names (escaped, not raw), while
    /// the JSON keeps the names exactly.
    #[test]
    fn text_escapes_what_processes_control() {
        let mut window = native_window();
        for p in &mut window.processes {
            let mut facts = (*p.facts).clone();
            facts.comm = "x\nLEAK pid 1 ".into();
            facts.exe = "/tmp/\x1b[2J\u{202e}bin".into();
            if !p.is_leak() {
                let version = "bad \x1b]0;title\x07 table".to_string();
                let kind = UnreadableGoKind::UnsupportedVersion(version);
                p.unreadable = Some(GoReadError::Executable(std::sync::Arc::new(kind)).into());
            }
            p.facts = std::sync::Arc::new(facts);
        }
        // A Go binary's wait reason (render fuzz target, seed wait-reason-control) and
        // the host name (seed host-newline).
        window.host = "node\nLEAK pid 1".into();
        let leak = window.processes.iter_mut().find(|p| p.is_leak()).unwrap();
        leak.sites[0].wait = "chan\x08receive\x1b[2J".into();
        let mut stack = leak.sites[0].stack.to_vec();
        stack[2].function = Some("evil\n    0x1 fake_frame".into());
        stack[2].file = Some("/src/\x1b[8mhidden.c".into());
        leak.sites[0].stack = stack.into();
        let text = to_text(&window, TextStyle::default());
        assert!(
            !text.contains('\x1b') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert!(!text.contains('\x07') && !text.contains('\x08'), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("LEAK pid 1")), "{text}");
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("0x1 fake")),
            "{text}"
        );
        assert!(text.contains("x\\x0aLEAK pid 1 "), "{text}");
        let v: serde_json::Value = serde_json::from_str(&to_json(&window)).unwrap();
        assert_eq!(v["processes"][0]["comm"], "x\nLEAK pid 1 ");
    }

    /// Check that a goroutine site's runtime-proven members and label sets are in the
    /// JSON report (the labels exactly, as an object, `truncated` only when cut) and in
    /// the text report (escaped), and that sites without either leave the fields out.
    #[test]
    fn runtime_leaked_and_labels_are_reported() {
        use crate::{
            model::WaiterKind,
            summary::testutil::{frame, process, site, window},
            verdict::Outcome,
        };
        let set = |pairs: &[(&str, &str)], truncated| {
            std::sync::Arc::new(LabelSet {
                labels: pairs.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
                truncated,
            })
        };
        let mut leak = site(
            WaiterKind::Goroutine,
            "chan receive",
            Outcome::Leak,
            40,
            vec![frame("main.labelledReply", None, 0x10)],
        );
        leak.runtime_leaked = 37;
        leak.label_sets = vec![
            (
                set(&[("route", "/checkout"), ("tenant", "acme")], false),
                30,
            ),
            (set(&[("route", "/x\x1b[2J…")], true), 9),
            (set(&[], true), 1),
        ];
        let idle = site(
            WaiterKind::Goroutine,
            "chan receive",
            Outcome::Ok,
            8,
            vec![frame("main.idleWorker", None, 0x20)],
        );
        let w = window(vec![process(5, "go1.27", vec![leak, idle])]);
        let v: serde_json::Value = serde_json::from_str(&to_json(&w)).unwrap();
        let sites = &v["processes"][0]["sites"];
        assert_eq!(sites[0]["runtime_leaked"], 37);
        assert_eq!(
            sites[0]["labels"],
            serde_json::json!([
                {"labels": {"route": "/checkout", "tenant": "acme"}, "count": 30},
                {"labels": {"route": "/x\x1b[2J…"}, "count": 9, "truncated": true},
                {"labels": {}, "count": 1, "truncated": true},
            ])
        );
        assert!(sites[1].get("runtime_leaked").is_none() && sites[1].get("labels").is_none());
        let text = to_text(&w, TextStyle::default());
        assert!(
            text.contains("    Go's GC proved 37 of them leaked (goroutineleak profile)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "    labels: route=/checkout tenant=acme (30), route=/x\\x1b[2J… (9), \
                 (too many labels to read) (1)\n"
            ),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "{text}");
    }
}
