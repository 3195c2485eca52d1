//! The `diagnose` report: a stable JSON document (version 1, documented in the README)
//! and its text rendering for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    stacks::symbolize::Frame,
    verdict::{GrowthVerdict, SiteJudgement},
};

/// Version of the JSON document; bump only on incompatible changes.
pub const REPORT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub host: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_s: f64,
    /// Leaking processes first, then by waiter count.
    pub processes: Vec<ProcessReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub comm: String,
    pub exe: String,
    /// "native", or "go1.NN" for Go programs.
    pub runtime: String,
    /// Why the process could not be read in full, e.g. "unsupported Go version go1.99".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub verdict: GrowthVerdict,
    /// No leak proven, but a site grows in a way that may be one (see its `reason`).
    pub suspect: bool,
    /// Blocked waiters at the last scan that saw the process.
    pub waiters: u32,
    pub growth_per_min: f64,
    /// Leaking sites first, then by count.
    pub sites: Vec<SiteReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SiteReport {
    /// "thread" or "goroutine".
    pub kind: &'static str,
    /// What the waiters wait on: "futex" for threads, Go's wait reason for goroutines.
    pub wait: String,
    pub count: u32,
    pub verdict: GrowthVerdict,
    /// "ok" by the evidence, but growing in a way that may be a leak: watch longer.
    pub suspect: bool,
    pub growth_per_min: f64,
    pub oldest_wait_s: f64,
    /// Innermost first.
    pub stack: Vec<FrameReport>,
    /// The evidence behind the verdict (additions to the version 1 document).
    pub arrivals: u32,
    pub departures: u32,
    /// Seconds between the oldest and newest birth of the current members (thread start
    /// times; goroutine ids dated by the process's goroutine creation rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_spread_s: Option<f64>,
    pub reason: String,
    /// The futex operations seen at the site (threads only), e.g. "FUTEX_WAIT_BITSET".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<&'static str>,
    /// Goroutines only: the `go` statement that created most members of the site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<FrameReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FrameReport {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// "0x…"
    pub address: String,
}

impl From<&Frame> for FrameReport {
    fn from(f: &Frame) -> Self {
        Self {
            function: f.function.clone(),
            file: f.file.clone(),
            line: f.line,
            address: format!("{:#x}", f.address),
        }
    }
}

impl SiteReport {
    pub fn new(
        kind: &'static str,
        wait: String,
        count: u32,
        judgement: &SiteJudgement,
        stack: &[Frame],
    ) -> Self {
        Self {
            kind,
            wait,
            count,
            verdict: judgement.verdict,
            suspect: judgement.suspect,
            growth_per_min: round2(judgement.growth_per_min),
            oldest_wait_s: round2(judgement.oldest_wait_s),
            stack: stack.iter().map(FrameReport::from).collect(),
            arrivals: judgement.arrivals,
            departures: judgement.departures,
            age_spread_s: judgement.age_spread_s.map(round2),
            reason: judgement.reason.clone(),
            ops: Vec::new(),
            created_by: None,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report {
    /// Whether any process leaks: decides the exit code.
    pub fn has_leak(&self) -> bool {
        self.processes
            .iter()
            .any(|p| p.verdict == GrowthVerdict::Leak)
    }

    /// Puts leaks first, then larger populations; sites likewise.
    pub fn sort(&mut self) {
        let rank = |v: GrowthVerdict| if v == GrowthVerdict::Leak { 0 } else { 1 };
        for p in &mut self.processes {
            p.sites.sort_by(|a, b| {
                rank(a.verdict)
                    .cmp(&rank(b.verdict))
                    .then(b.count.cmp(&a.count))
            });
        }
        self.processes.sort_by(|a, b| {
            rank(a.verdict)
                .cmp(&rank(b.verdict))
                .then(b.waiters.cmp(&a.waiters))
                .then(a.pid.cmp(&b.pid))
        });
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The report for people: leaks in full, healthy processes in one line each.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let leaks: Vec<_> = self
            .processes
            .iter()
            .filter(|p| p.verdict == GrowthVerdict::Leak)
            .collect();
        let _ = writeln!(
            out,
            "leakscope: watched {} for {:.0} s from {}",
            self.host, self.duration_s, self.started_at
        );
        if leaks.is_empty() {
            let _ = writeln!(out, "no leak found.");
        } else {
            let _ = writeln!(out, "{} leaking process(es):", leaks.len());
        }
        for p in &leaks {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "LEAK  pid {} {} ({}, {})  {} blocked waiters, {:+.1}/min",
                p.pid, p.comm, p.exe, p.runtime, p.waiters, p.growth_per_min
            );
            for s in p.sites.iter().filter(|s| s.verdict == GrowthVerdict::Leak) {
                let ops = if s.ops.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", s.ops.join(", "))
                };
                let _ = writeln!(
                    out,
                    "  site: {} {} {} waiters{ops}, {:+.1}/min, oldest waiting {:.0} s",
                    s.count, s.kind, s.wait, s.growth_per_min, s.oldest_wait_s
                );
                let _ = writeln!(out, "    why: {}", s.reason);
                for f in &s.stack {
                    let _ = writeln!(out, "    {}", render_frame(f));
                }
                if let Some(creator) = &s.created_by {
                    let _ = writeln!(out, "    created by {}", render_frame(creator));
                }
            }
        }
        let healthy: Vec<_> = self
            .processes
            .iter()
            .filter(|p| p.verdict != GrowthVerdict::Leak)
            .collect();
        if !healthy.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "processes with blocked waiters and no leak:");
            for p in healthy {
                if let Some(error) = &p.error {
                    let _ = writeln!(out, "  ??    pid {:<7} {:<16} {error}", p.pid, p.comm);
                    continue;
                }
                let _ = writeln!(
                    out,
                    "  ok    pid {:<7} {:<16} {:>6} waiters in {} site(s)",
                    p.pid,
                    p.comm,
                    p.waiters,
                    p.sites.len()
                );
            }
        }
        out
    }
}

fn render_frame(f: &FrameReport) -> String {
    let function = f.function.as_deref().unwrap_or("??");
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{} {function}  {file}:{line}", f.address),
        (Some(file), None) => format!("{} {function}  {file}", f.address),
        _ => format!("{} {function}", f.address),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(verdict: GrowthVerdict, count: u32) -> SiteReport {
        let judgement = SiteJudgement {
            verdict,
            suspect: false,
            age_spread_s: None,
            growth_per_min: 12.345,
            arrivals: count,
            stayed: count,
            departures: 0,
            oldest_wait_s: 3.0,
            reason: "test".into(),
        };
        let frames = [
            Frame {
                function: Some("__futex_abstimed_wait_common".into()),
                address: 0x7f00_0000_1000,
                ..Frame::default()
            },
            Frame {
                function: Some("leak_on_mutex".into()),
                file: Some("/src/leak.c".into()),
                line: Some(12),
                address: 0x401234,
                module: None,
            },
        ];
        SiteReport::new("thread", "futex".into(), count, &judgement, &frames)
    }

    fn report() -> Report {
        let process = |pid, verdict, sites: Vec<SiteReport>| ProcessReport {
            pid,
            comm: format!("p{pid}"),
            exe: "/bin/x".into(),
            runtime: "native".into(),
            error: None,
            verdict,
            suspect: false,
            waiters: sites.iter().map(|s| s.count).sum(),
            growth_per_min: 1.0,
            sites,
        };
        let mut r = Report {
            version: REPORT_VERSION,
            host: "h".into(),
            started_at: "2026-11-23T00:00:00Z".into(),
            duration_s: 15.0,
            processes: vec![
                process(7, GrowthVerdict::Ok, vec![site(GrowthVerdict::Ok, 50)]),
                process(
                    9,
                    GrowthVerdict::Leak,
                    vec![site(GrowthVerdict::Ok, 80), site(GrowthVerdict::Leak, 5)],
                ),
            ],
        };
        r.sort();
        r
    }

    /// Check that the JSON document has the version-1 fields with their documented types
    /// and that leaks sort first.
    #[test]
    fn json_has_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(v["version"], 1);
        let p = &v["processes"][0];
        assert_eq!(p["pid"], 9);
        assert_eq!(p["verdict"], "leak");
        assert_eq!(p["runtime"], "native");
        let s = &p["sites"][0];
        assert_eq!(s["verdict"], "leak", "leaking site first");
        assert_eq!(s["kind"], "thread");
        assert_eq!(s["wait"], "futex");
        assert_eq!(s["growth_per_min"], 12.35);
        assert_eq!(s["stack"][0]["address"], "0x7f0000001000");
        assert_eq!(s["stack"][0]["file"], serde_json::Value::Null);
        assert_eq!(s["stack"][1]["function"], "leak_on_mutex");
        assert_eq!(s["stack"][1]["line"], 12);
    }

    /// Check that the text report names the leak's site with file and line and lists
    /// healthy processes briefly.
    #[test]
    fn text_names_leak_sites() {
        let text = report().to_text();
        assert!(text.contains("LEAK  pid 9"), "{text}");
        assert!(text.contains("leak_on_mutex  /src/leak.c:12"), "{text}");
        assert!(text.contains("ok    pid 7"), "{text}");
        assert!(report().has_leak());
    }
}
