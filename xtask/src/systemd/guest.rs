//! What the guest of `cargo xtask systemd` reported, and the judgement of it: the
//! framed sections of its second serial port, the Prometheus expositions it scraped, and
//! what each start of the unit showed about the leakers.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};

use super::{CAPABILITY_USES, LEAK_TIMEOUT_S, LEAKERS, Loss, STOP_LIMIT_S, Variant};

/// The guest's sections, in order: the name on each `=== NAME` line and what follows.
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("=== ") {
            out.push((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// One series of a Prometheus exposition.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The series of the HTTP answer in `text` (after other lines, maybe) holding a
/// Prometheus text exposition; none when there is no answer.
fn parse_exposition(text: &str) -> Vec<Series> {
    let body = text
        .find("HTTP/")
        .and_then(|status| text[status..].split_once("\n\n"))
        .map_or("", |(_, body)| body);
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_series)
        .collect()
}

/// `name{key="value",...} value` or `name value`; label values unescaped.
fn parse_series(line: &str) -> Option<Series> {
    let at = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(at);
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            match chars.next()? {
                (at, '}') => {
                    rest = &inner[at + 1..];
                    break;
                }
                (_, ',') => {}
                (_, '=') => {
                    let (_, '"') = chars.next()? else {
                        return None;
                    };
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                (_, other) => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Series {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The series named `name` of process `pid`.
fn series_of<'a>(
    series: &'a [Series],
    name: &'a str,
    pid: &'a str,
) -> impl Iterator<Item = &'a Series> {
    series
        .iter()
        .filter(move |s| s.name == name && s.labels.get("pid").map(String::as_str) == Some(pid))
}

/// What one start of the unit showed: its thread source, and by leaker key whether a
/// site of the leaker names its leak function, and whether that site and the process
/// are judged a leak.
#[derive(Debug, Default, PartialEq)]
struct Observed {
    thread_source: Option<String>,
    named: BTreeSet<&'static str>,
    leaking: BTreeSet<&'static str>,
}

impl Observed {
    fn of(series: &[Series], pids: &BTreeMap<String, u32>) -> Self {
        let mut observed = Observed {
            thread_source: series
                .iter()
                .find(|s| s.name == "leakscope_thread_source" && s.value == 1.0)
                .and_then(|s| s.labels.get("source").cloned()),
            ..Observed::default()
        };
        for leaker in &LEAKERS {
            let Some(pid) = pids.get(leaker.key).map(u32::to_string) else {
                continue;
            };
            let at_site = |s: &&Series| {
                s.labels
                    .get("site")
                    .is_some_and(|site| site.contains(leaker.function))
            };
            if series_of(series, "leakscope_site_blocked_waiters", &pid).any(|s| at_site(&s)) {
                observed.named.insert(leaker.key);
            }
            let leak_site = series_of(series, "leakscope_site_leak", &pid)
                .any(|s| at_site(&s) && s.value == 1.0);
            let leak_process =
                series_of(series, "leakscope_process_leak", &pid).any(|s| s.value == 1.0);
            if leak_site && leak_process {
                observed.leaking.insert(leaker.key);
            }
        }
        observed
    }

    /// One line: thread source, leakers with named sites, leaking ones.
    fn describe(&self) -> String {
        format!(
            "thread source {}, named sites of {:?}, leaks of {:?}",
            self.thread_source.as_deref().unwrap_or("none"),
            self.named,
            self.leaking
        )
    }
}

/// What a start of the unit without `left_out` must show, by [`CAPABILITY_USES`].
fn expected_without(left_out: &[String]) -> Observed {
    let mut expected = Observed {
        thread_source: Some("bpf".into()),
        named: LEAKERS.iter().map(|l| l.key).collect(),
        leaking: BTreeSet::new(),
    };
    for capability in left_out {
        let loss = CAPABILITY_USES
            .iter()
            .find(|(name, _)| name == capability)
            .map(|(_, loss)| *loss);
        match loss {
            Some(Loss::IteratorFallsBack) => expected.thread_source = Some("procfs".into()),
            Some(Loss::Unnamed(keys)) => {
                for key in keys {
                    expected.named.remove(key);
                }
            }
            None => {}
        }
    }
    expected
}

/// What the guest reported.
pub(super) struct GuestRun {
    sections: Vec<(String, String)>,
    pids: BTreeMap<String, u32>,
}

impl GuestRun {
    pub(super) fn parse(text: &str) -> Result<Self> {
        let mut run = Self {
            sections: sections(text),
            pids: BTreeMap::new(),
        };
        let mut pids = BTreeMap::new();
        for pair in run.section("pids")?.split_whitespace() {
            let (key, pid) = pair.split_once('=').context("a pids entry without =")?;
            pids.insert(
                key.to_string(),
                pid.parse().context("a pid that is no number")?,
            );
        }
        run.pids = pids;
        Ok(run)
    }

    fn section(&self, name: &str) -> Result<&str> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, body)| body.as_str())
            .with_context(|| format!("the guest reported no `{name}` section"))
    }

    /// The value of `key` on a `key value` line of section `name`.
    fn field(&self, name: &str, key: &str) -> Result<&str> {
        self.section(name)?
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .map(str::trim)
            .with_context(|| format!("no `{key}` in the guest's `{name}` section"))
    }

    fn clock(&self, name: &str, key: &str) -> Result<f64> {
        self.field(name, key)?
            .parse()
            .with_context(|| format!("`{key}` of `{name}` is no number"))
    }

    /// Fails unless the unit installed, started, served metrics that call every leaker a
    /// leak at its site from the BPF iterator, stopped cleanly, and each capability
    /// variant lost exactly what its capabilities are for; says which, with the unit's
    /// log. Prints what each `--try` variant showed.
    pub(super) fn check(&self, variants: &[Variant]) -> Result<()> {
        self.check_unit()
            .and_then(|()| self.check_variants(variants))
            .with_context(|| {
                format!(
                    "kernel {}; the unit's journal:\n{}",
                    self.field("guest", "kernel").unwrap_or("?"),
                    self.section("journal").unwrap_or("(none)")
                )
            })
    }

    fn check_unit(&self) -> Result<()> {
        let install = self.field("install_result", "exit")?;
        if install != "0" {
            bail!(
                "the README's install commands failed (exit {install}):\n{}",
                self.section("install")?
            );
        }
        let state = self.field("active", "state")?;
        if state != "active" {
            bail!("the unit did not become active: {state}");
        }
        let health = self.section("health")?.trim();
        if !health.starts_with("HTTP/1.1 200") && !health.starts_with("HTTP/1.0 200") {
            bail!("/healthz answered {health:?}");
        }
        let observed = Observed::of(&parse_exposition(self.section("metrics")?), &self.pids);
        let all: BTreeSet<&str> = LEAKERS.iter().map(|l| l.key).collect();
        if observed.thread_source.as_deref() != Some("bpf") || observed.leaking != all {
            let leakers: Vec<String> = LEAKERS
                .iter()
                .map(|l| format!("{} ({}) at {}", l.key, l.what, l.function))
                .collect();
            bail!(
                "the unit's metrics after {LEAK_TIMEOUT_S} s at most: expected thread source \
                 bpf and a leak of every leaker at its site ({}), got {}",
                leakers.join(", "),
                observed.describe()
            );
        }
        self.check_dumps()?;
        self.check_stop()
    }

    /// The leaks' dumps: JSON and profile, mode 0600, owned by root, naming this host
    /// (the unit hides /proc/sys: the name comes from uname(2)).
    fn check_dumps(&self) -> Result<()> {
        let section = self.section("dumps")?;
        let host = self.field("dumps", "host")?;
        let files: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("file "))
            .collect();
        let has = |suffix: &str| files.iter().any(|f| f.ends_with(suffix));
        if !has(".json") || !has(".pb.gz") {
            bail!("no dump (JSON and profile) in the unit's state directory:\n{section}");
        }
        if let Some(bad) = files.iter().find(|f| !f.starts_with("600 root ")) {
            bail!("a dump is not mode 0600 and owned by root: {bad}");
        }
        let hosts: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("json "))
            .collect();
        if hosts.is_empty() || hosts.iter().any(|h| !h.ends_with(&format!("\"{host}\""))) {
            bail!("the dumps do not name host {host:?}: {hosts:?}");
        }
        Ok(())
    }

    fn check_stop(&self) -> Result<()> {
        let seconds = self.clock("stop", "to")? - self.clock("stop", "from")?;
        let show = |key: &str| -> Result<&str> {
            self.section("stop")?
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .with_context(|| format!("no {key}= in the guest's `stop` section"))
        };
        let (result, code, status) = (
            show("Result")?,
            show("ExecMainCode")?,
            show("ExecMainStatus")?,
        );
        // ExecMainCode 1 is CLD_EXITED: the daemon exited by itself, not by a signal.
        let clean = result == "success" && code == "1" && status == "0";
        if self.field("stop", "rc")? != "0" || !clean {
            bail!(
                "`systemctl stop leakscope` did not end cleanly: Result={result} \
                 ExecMainCode={code} ExecMainStatus={status}"
            );
        }
        if seconds >= STOP_LIMIT_S {
            bail!(
                "`systemctl stop leakscope` took {seconds:.1} s (TimeoutStopSec is \
                 {STOP_LIMIT_S})"
            );
        }
        Ok(())
    }

    /// Each capability variant must lose exactly what its left-out capabilities are
    /// for: then the bounding set is the least that works, and the README's table true.
    fn check_variants(&self, variants: &[Variant]) -> Result<()> {
        let mut wrong = Vec::new();
        for variant in variants {
            let section = self.section(&format!("variant {}", variant.name))?;
            let observed = Observed::of(&parse_exposition(section), &self.pids);
            let Some(left_out) = &variant.left_out else {
                let log: Vec<&str> = section
                    .lines()
                    .filter_map(|line| line.strip_prefix("log: "))
                    .collect();
                println!(
                    "systemd: {}: {}, {}; its log: {}",
                    variant.name,
                    self.field(&format!("variant {}", variant.name), "state")
                        .unwrap_or("?"),
                    observed.describe(),
                    log.join(" | ")
                );
                continue;
            };
            let expected = expected_without(left_out);
            if observed.thread_source != expected.thread_source || observed.named != expected.named
            {
                let hint = if observed.named.len() > expected.named.len()
                    || observed.thread_source != expected.thread_source
                {
                    " (a capability no longer needed belongs out of the unit and the README)"
                } else {
                    ""
                };
                wrong.push(format!(
                    "{}: expected thread source {}, named sites of {:?}; got {}{hint}",
                    variant.name,
                    expected.thread_source.as_deref().unwrap_or("none"),
                    expected.named,
                    observed.describe()
                ));
            }
        }
        if !wrong.is_empty() {
            bail!("capability variants:\n  {}", wrong.join("\n  "));
        }
        Ok(())
    }

    /// The guest's own timings, from its clock (seconds since boot).
    pub(super) fn timings(&self) -> String {
        let stamp = |name: &str, key: &str| self.clock(name, key).unwrap_or(f64::NAN);
        format!(
            "kernel {}: the check started {:.1} s after boot; install to active {:.1} s; \
             every leak in the metrics {:.1} s later (the unit's cgroup then: memory peak \
             {:.1} MiB, {} tasks); stop {:.2} s; {} variants {:.1} s",
            self.field("guest", "kernel").unwrap_or("?"),
            stamp("guest", "check_started"),
            stamp("active", "at") - stamp("install", "started"),
            stamp("leaks", "at") - stamp("active", "at"),
            stamp("usage", "memory_peak") / f64::from(1 << 20),
            self.field("usage", "tasks").unwrap_or("?"),
            stamp("stop", "to") - stamp("stop", "from"),
            self.sections
                .iter()
                .filter(|(n, _)| n.starts_with("variant "))
                .count(),
            stamp("variants_end", "at") - stamp("variants", "from"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::BPF_CAPABILITIES;

    /// Check that series parse with escaped label values, and what precedes the HTTP
    /// answer and its head is skipped.
    #[test]
    fn exposition_parses() {
        let answer = "state active\nscans 1 at 3.5\nHTTP/1.0 200 OK\ncontent-type: text/plain\n\n\
                      # HELP x y\n\
                      leakscope_site_leak{comm=\"a\\\"b\",pid=\"12\",site=\"thread:futex:leak_on_mutex\"} 1\n\
                      leakscope_scans_total 7\n";
        let series = parse_exposition(answer);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels["comm"], "a\"b");
        assert_eq!(series[0].labels["pid"], "12");
        assert_eq!(series[1].name, "leakscope_scans_total");
        assert_eq!(series[1].value, 7.0);
        assert!(parse_exposition("state failed\nscans 0 at 9.1\n").is_empty());
    }

    /// Check that a variant without CAP_CHECKPOINT_RESTORE expects only the deleted
    /// binary's site to lose its name, and one without both BPF capabilities a
    /// fallback to /proc with every site named.
    #[test]
    fn expectations_follow_the_uses() {
        let gone = expected_without(&["CAP_CHECKPOINT_RESTORE".to_string()]);
        assert_eq!(gone.thread_source.as_deref(), Some("bpf"));
        assert_eq!(gone.named, BTreeSet::from(["go", "c_tmp"]));
        let procfs = expected_without(&BPF_CAPABILITIES.map(String::from));
        assert_eq!(procfs.thread_source.as_deref(), Some("procfs"));
        assert_eq!(procfs.named.len(), LEAKERS.len());
    }

    /// Check that a guest's sections and fields are found, and a capability variant
    /// judged against what it left out.
    #[test]
    fn variants_are_judged_by_what_they_left_out() {
        let text = "noise\n=== pids\ngo=10 c_tmp=11 c_gone=12\n=== variant without X\n\
                    state active\nscans 1 at 2.5\nHTTP/1.1 200 OK\n\n\
                    leakscope_thread_source{source=\"bpf\"} 1\n\
                    leakscope_site_blocked_waiters{pid=\"11\",site=\"thread:futex:leak_on_mutex\"} 4\n\
                    === end\n";
        let run = GuestRun::parse(text).unwrap();
        assert_eq!(run.pids["c_gone"], 12);
        assert_eq!(run.field("variant without X", "state").unwrap(), "active");
        let judged = |left_out: &str| {
            run.check_variants(&[Variant {
                name: "without X".into(),
                settings: Vec::new(),
                left_out: Some(vec![left_out.to_string()]),
            }])
        };
        // Only c_tmp named: what leaving out CAP_SYS_PTRACE would not explain.
        assert!(judged("CAP_SYS_PTRACE").is_err());
        assert!(judged("CAP_CHECKPOINT_RESTORE").is_err());
    }
}
