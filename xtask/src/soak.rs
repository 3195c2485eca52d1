//! `cargo xtask soak [--minutes N]`: the release daemon against a churning, partly
//! hostile host for N minutes (default 10; `cargo xtask test` runs 2).
//!
//! While `leakscope run` watches the whole host (1 s scans, a window of a sixth of the
//! run, 20 s to 2 minutes, so it is full before the middle third; dumps on), this
//! starts a new short-lived process every [`CHURN_EVERY`] (C and Go programs, leaking
//! or not, some under names full of terminal escapes, newlines and bytes that are not
//! UTF-8, and `hostile_go` in each of its attack modes), each living 0.5-4 s; keeps
//! long-lived leakers (C and Go), steady programs and `hostile_go all` running
//! throughout; holds [`IDLE_CONNECTIONS`] idle connections to the daemon's port,
//! re-opened every 10 s; and once a second scrapes `/metrics` and `/healthz` and
//! samples the daemon's RSS and CPU time.
//!
//! It passes when: every scrape and health check after the first healthy one answered
//! 200; every long-lived leaker was judged a leak in `/metrics`; every steady program
//! was exported and never judged a leak (one that is never exported fails too: a
//! daemon that saw nothing would otherwise pass); the daemon's median RSS in the last
//! third of the run stays within [`RSS_GROWTH_LIMIT`] (plus [`RSS_SLACK_BYTES`]) of its
//! median in the middle third, times the growth of what it holds by its own gauges
//! (other programs on the host count: more waiters to keep is not a leak; medians,
//! because reading a big process is a transient peak); the daemon never died; and it
//! exited 0 within [`SIGTERM_EXIT_TIMEOUT`] of SIGTERM.
//! Figures are printed either way. RSS and CPU seconds are robust to a busy machine;
//! other processes on the host are watched too, and count.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use test_support::daemon::Daemon;
use test_support::go::GoBuild;
use test_support::process::Running;
use test_support::programs::Program;
use test_support::{http, procfs};

use crate::bench::GO_VERSION;
use crate::util::{cargo, is_root, run, target_dir};

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Minutes to run.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
}

/// A new short-lived process this often.
const CHURN_EVERY: Duration = Duration::from_millis(150);
/// Idle connections held open to the daemon's port (re-opened every 10 s).
const IDLE_CONNECTIONS: usize = 40;
/// The last third's peak RSS may exceed the middle third's by this factor...
const RSS_GROWTH_LIMIT: f64 = 1.10;
/// Bytes in a MiB, for figures.
const MIB: f64 = (1 << 20) as f64;
/// ...plus this much (allocator noise on a small heap).
const RSS_SLACK_BYTES: u64 = 8 << 20;
/// The daemon's scan interval, seconds.
const INTERVAL_S: &str = "1";
/// The daemon must exit 0 within this long of SIGTERM. The README promises a second; a
/// loaded 2-core machine (the soak's own churn beside other work) gets this margin,
/// which still catches a daemon that hangs or waits out a scan or its window.
const SIGTERM_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Names under which some programs run: a terminal escape, a newline, a byte that is
/// not UTF-8 and a trailing space (each at most 15 bytes, the comm's length).
const HOSTILE_NAMES: [&[u8]; 2] = [b"\x1b[2Jsoak\nLEAK\xff ", b"\x1b]0;x\x07\xfe\n "];

/// One kind of program the soak runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    MutexLeak,
    CondvarLeak,
    IdlePool,
    GoLeaks,
    /// [hostile-input]'s fake Go program: a fake goroutine table of attacks.
    HostileGo,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::MutexLeak => Program::MutexLeak.name(),
            Kind::CondvarLeak => Program::CondvarLeak.name(),
            Kind::IdlePool => Program::IdlePool.name(),
            Kind::GoLeaks => "goleaks",
            Kind::HostileGo => Program::HostileGo.name(),
        }
    }
}

/// What a long-lived program is expected to be judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Leak,
    Steady,
    /// Anything, as long as the daemon stays healthy.
    Hostile,
}

struct LongLived {
    name: String,
    expect: Expect,
    process: Running,
}

/// Every child, killed and reaped when dropped.
#[derive(Default)]
struct Children {
    long_lived: Vec<LongLived>,
    churn: Vec<(Running, Instant)>,
    started: usize,
}

pub fn soak(args: &SoakArgs) -> Result<()> {
    if !is_root() {
        bail!("`cargo xtask soak` needs root: leakscope loads eBPF programs");
    }
    if args.minutes == 0 {
        bail!("soak: --minutes must be at least 1");
    }
    let dir = target_dir().join("soak");
    let _ = fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    run(cargo().args(["build", "--release", "-p", "tracer-user"]))?;
    build_programs(&bin)?;

    let mut children = Children::default();
    start_long_lived(&mut children, &bin)?;
    let duration = Duration::from_secs(args.minutes * 60);
    let window_s = window_for(duration).to_string();
    let dumps = dir.join("dumps");
    let leakscope = target_dir().join("release/leakscope");
    let mut daemon = Daemon::start(&leakscope, &dir, |command| {
        command
            .args(["--interval", INTERVAL_S, "--window", &window_s])
            .arg("--dump-dir")
            .arg(&dumps);
    })?;
    println!(
        "soak: {} min, daemon window {window_s} s; daemon pid {} on port {}; log {}",
        args.minutes,
        daemon.pid(),
        daemon.port(),
        daemon.log_path().display()
    );
    let mut figures = drive(&mut daemon, &mut children, &bin, duration)?;
    figures.stopped = Some(daemon.stop(SIGTERM_EXIT_TIMEOUT).map_err(|e| e.to_string()));
    let csv = dir.join("samples.csv");
    figures.write_csv(&csv)?;
    figures.print(&children);
    println!(
        "  samples (RSS, CPU, the daemon's history gauges): {}",
        csv.display()
    );
    let programs: Vec<(&str, Expect)> = children
        .long_lived
        .iter()
        .map(|program| (program.name.as_str(), program.expect))
        .collect();
    figures.check(&programs)
}

fn build_programs(bin: &Path) -> Result<()> {
    // As the integration tests build them (test-support has the one recipe of each).
    for program in [
        Program::MutexLeak,
        Program::CondvarLeak,
        Program::IdlePool,
        Program::HostileGo,
    ] {
        program.build(bin)?;
    }
    // `goleaks`, Kind::GoLeaks's binary.
    GoBuild::plain(GO_VERSION, "leaks").build(bin)?;
    // Hostile names: hard links, so the executable's path carries the name too.
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        let kind = [Kind::MutexLeak, Kind::GoLeaks][i];
        let dir = bin.join(format!("hostile{i}"));
        fs::create_dir_all(&dir)?;
        fs::hard_link(
            bin.join(kind.binary()),
            dir.join(std::ffi::OsStr::from_bytes(name)),
        )?;
    }
    Ok(())
}

/// A program's path: its own name, or hostile name `i`.
fn program(bin: &Path, kind: Kind, hostile: Option<usize>) -> PathBuf {
    match hostile {
        Some(i) => bin
            .join(format!("hostile{i}"))
            .join(std::ffi::OsStr::from_bytes(HOSTILE_NAMES[i])),
        None => bin.join(kind.binary()),
    }
}

fn spawn(path: &Path, args: &[&str]) -> Result<Running> {
    let mut command = Command::new(path);
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(Running::start(path.display().to_string(), &mut command)?)
}

/// A long-lived program: name, kind, hostile name, arguments, what it should be judged.
type Planned<'a> = (&'a str, Kind, Option<usize>, &'a [&'a str], Expect);

fn start_long_lived(children: &mut Children, bin: &Path) -> Result<()> {
    use Expect::*;
    let plan: [Planned; 8] = [
        ("mutex_leak", Kind::MutexLeak, None, &[], Leak),
        ("condvar_leak", Kind::CondvarLeak, None, &[], Leak),
        ("goleaks send", Kind::GoLeaks, None, &["send"], Leak),
        ("goleaks mutex", Kind::GoLeaks, None, &["mutex"], Leak),
        (
            "mutex_leak (hostile name)",
            Kind::MutexLeak,
            Some(0),
            &[],
            Leak,
        ),
        ("idle_pool", Kind::IdlePool, None, &[], Steady),
        ("goleaks pool", Kind::GoLeaks, None, &["pool"], Steady),
        ("hostile_go all", Kind::HostileGo, None, &["all"], Hostile),
    ];
    for (name, kind, hostile, args, expect) in plan {
        let process = spawn(&program(bin, kind, hostile), args)?;
        children.long_lived.push(LongLived {
            name: name.to_string(),
            expect,
            process,
        });
    }
    Ok(())
}

/// The daemon's window: full by the start of the middle third (its history grows until
/// then, by design), a sixth of the run, 20 s to 2 minutes.
fn window_for(run: Duration) -> u64 {
    (run.as_secs() / 6).clamp(20, 120)
}

/// What the run measured.
#[derive(Default)]
struct Figures {
    /// (seconds since start, RSS bytes, CPU seconds) once a second.
    samples: Vec<(f64, u64, f64)>,
    /// Per sample: the daemon's own gauges of what it holds (see [`HELD_GAUGES`]).
    held: Vec<(f64, Vec<f64>)>,
    healthy_from: Option<f64>,
    scrapes_ok: usize,
    scrapes_failed: Vec<String>,
    /// Long-lived program index → seconds until first judged a leak.
    leak_found_at: BTreeMap<usize, f64>,
    /// Steady long-lived programs judged a leak at some point.
    false_alarms: BTreeMap<usize, f64>,
    /// Steady long-lived programs → seconds until first exported and judged ok.
    steady_seen_at: BTreeMap<usize, f64>,
    died: Option<String>,
    /// SIGTERM at the end: how long until it exited 0, or what it did instead.
    stopped: Option<Result<Duration, String>>,
}

fn drive(
    daemon: &mut Daemon,
    children: &mut Children,
    bin: &Path,
    duration: Duration,
) -> Result<Figures> {
    let t0 = Instant::now();
    let mut figures = Figures::default();
    let mut next_churn = t0;
    let mut next_sample = t0;
    let mut idle: Vec<TcpStream> = Vec::new();
    let mut idle_opened = t0 - Duration::from_secs(60);
    let mut rotation = 0usize;
    while t0.elapsed() < duration {
        if let Some(status) = daemon.process().exited() {
            figures.died = Some(format!("the daemon exited ({status})"));
            break;
        }
        let now = Instant::now();
        if now >= next_churn {
            churn_one(children, bin, rotation)?;
            rotation += 1;
            next_churn += CHURN_EVERY;
        }
        reap_expired(children);
        if idle_opened.elapsed() >= Duration::from_secs(10) {
            idle = (0..IDLE_CONNECTIONS)
                .filter_map(|_| TcpStream::connect(("127.0.0.1", daemon.port())).ok())
                .collect();
            idle_opened = Instant::now();
        }
        if now >= next_sample {
            sample(daemon, children, &mut figures, t0.elapsed().as_secs_f64());
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(idle);
    Ok(figures)
}

/// Starts the next short-lived process of the rotation, to live 0.5-4 s.
fn churn_one(children: &mut Children, bin: &Path, rotation: usize) -> Result<()> {
    const HOSTILE_MODES: [&str; 7] = ["wrap", "cycle", "churn", "garbage", "sites", "deep", "huge"];
    let (kind, hostile, args): (Kind, Option<usize>, &[&str]) = match rotation % 9 {
        0 | 4 => (Kind::IdlePool, None, &[]),
        1 => (Kind::MutexLeak, None, &[]),
        2 => (Kind::GoLeaks, None, &["pool"]),
        3 => (Kind::GoLeaks, None, &["recv"]),
        5 => (Kind::CondvarLeak, None, &[]),
        6 => (Kind::MutexLeak, Some(0), &[]),
        7 => (Kind::GoLeaks, Some(1), &["select"]),
        _ => {
            let mode = (rotation / 9) % HOSTILE_MODES.len();
            (Kind::HostileGo, None, &HOSTILE_MODES[mode..=mode])
        }
    };
    let life = Duration::from_millis(500 + (rotation as u64 * 7919) % 3500);
    let process = spawn(&program(bin, kind, hostile), args)?;
    children.churn.push((process, Instant::now() + life));
    children.started += 1;
    Ok(())
}

fn reap_expired(children: &mut Children) {
    let now = Instant::now();
    // Dropping a process kills and reaps it.
    children.churn.retain(|(_, until)| now < *until);
}

/// One second's look: RSS and CPU, a scrape of both endpoints, the leak verdicts.
fn sample(daemon: &Daemon, children: &Children, figures: &mut Figures, at: f64) {
    if let Some(usage) = procfs::usage(daemon.pid()) {
        figures.samples.push((at, usage.rss_bytes, usage.cpu_s));
    }
    let health = daemon.get("/healthz");
    let metrics = daemon.get("/metrics");
    if figures.healthy_from.is_none() {
        if matches!(health, Ok((200, _))) {
            figures.healthy_from = Some(at);
        } else {
            return;
        }
    }
    for (what, answer) in [("/healthz", &health), ("/metrics", &metrics)] {
        match answer {
            Ok((200, _)) => figures.scrapes_ok += 1,
            Ok((status, body)) => figures.scrapes_failed.push(format!(
                "{at:.0} s {what}: {status} {}",
                body.lines().next().unwrap_or("")
            )),
            Err(e) => figures
                .scrapes_failed
                .push(format!("{at:.0} s {what}: {e}")),
        }
    }
    let Ok((200, body)) = metrics else { return };
    let held = HELD_GAUGES
        .iter()
        .map(|name| http::gauge(&body, name).unwrap_or(f64::NAN))
        .collect();
    figures.held.push((at, held));
    for (i, program) in children.long_lived.iter().enumerate() {
        let judged = http::process_leak(&body, program.process.pid());
        let record = match (program.expect, judged) {
            (Expect::Leak, Some(true)) => &mut figures.leak_found_at,
            (Expect::Steady, Some(true)) => &mut figures.false_alarms,
            (Expect::Steady, Some(false)) => &mut figures.steady_seen_at,
            _ => continue,
        };
        record.entry(i).or_insert(at);
    }
}

impl Figures {
    /// The median of `values` sampled in [from, to) of the run (fractions of it).
    fn median_in(&self, values: &[(f64, f64)], from: f64, to: f64) -> f64 {
        let end = self.samples.last().map_or(0.0, |s| s.0);
        let mut v: Vec<f64> = values
            .iter()
            .filter(|(t, x)| *t >= end * from && *t < end * to && x.is_finite())
            .map(|&(_, x)| x)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    /// Median RSS in [from, to) of the run.
    fn rss_in(&self, from: f64, to: f64) -> f64 {
        let rss: Vec<(f64, f64)> = self.samples.iter().map(|s| (s.0, s.1 as f64)).collect();
        self.median_in(&rss, from, to)
    }

    /// How much more the daemon holds in the last third than in the middle third: the
    /// largest ratio of medians among [`HELD_GAUGES`], at least 1. The soak watches
    /// the whole host, so other programs' waiters count; memory may follow them, and
    /// only growth beyond them is a leak.
    fn held_growth(&self) -> f64 {
        (0..HELD_GAUGES.len())
            .map(|g| {
                let series: Vec<(f64, f64)> = self.held.iter().map(|(t, v)| (*t, v[g])).collect();
                let middle = self.median_in(&series, 1.0 / 3.0, 2.0 / 3.0);
                let last = self.median_in(&series, 2.0 / 3.0, 1.01);
                if middle > 0.0 { last / middle } else { 1.0 }
            })
            .fold(1.0, f64::max)
    }

    fn print(&self, children: &Children) {
        let (first, last) = (self.samples.first(), self.samples.last());
        println!("soak figures:");
        println!(
            "  processes started and ended by the churn: {}",
            children.started
        );
        if let (Some(first), Some(last)) = (first, last) {
            let cpu_share = (last.2 - first.2) / (last.0 - first.0).max(1.0) * 100.0;
            println!(
                "  daemon CPU: {:.1} s over {:.0} s ({cpu_share:.1}% of one core)",
                last.2 - first.2,
                last.0 - first.0
            );
        }
        println!(
            "  daemon RSS median: first third {:.1} MiB, middle third {:.1} MiB, last third {:.1} MiB (peak {:.1} MiB); held by the daemon: last/middle third x{:.2}",
            self.rss_in(0.0, 1.0 / 3.0) / MIB,
            self.rss_in(1.0 / 3.0, 2.0 / 3.0) / MIB,
            self.rss_in(2.0 / 3.0, 1.01) / MIB,
            self.samples.iter().map(|s| s.1).max().unwrap_or(0) as f64 / MIB,
            self.held_growth(),
        );
        println!(
            "  healthy from {:.0} s; scrapes ok {}, failed {}",
            self.healthy_from.unwrap_or(f64::NAN),
            self.scrapes_ok,
            self.scrapes_failed.len()
        );
        for failure in self.scrapes_failed.iter().take(5) {
            println!("    {failure}");
        }
        for (i, program) in children.long_lived.iter().enumerate() {
            let verdict = match program.expect {
                Expect::Leak => match self.leak_found_at.get(&i) {
                    Some(at) => format!("leak found after {at:.0} s"),
                    None => "leak NOT found".to_string(),
                },
                Expect::Steady => match (self.false_alarms.get(&i), self.steady_seen_at.get(&i)) {
                    (Some(at), _) => format!("FALSE ALARM at {at:.0} s"),
                    (None, Some(at)) => format!("exported from {at:.0} s, never judged a leak"),
                    (None, None) => "NEVER EXPORTED (not seen at all)".to_string(),
                },
                Expect::Hostile => "(hostile: any verdict; the daemon must stay healthy)".into(),
            };
            println!("  {:<28} {verdict}", program.name);
        }
        match &self.stopped {
            Some(Ok(took)) => println!("  SIGTERM: exit 0 in {} ms", took.as_millis()),
            Some(Err(e)) => println!("  SIGTERM: {e}"),
            None => println!("  SIGTERM: not sent"),
        }
    }

    /// Fails with every reason at once; `programs` are the long-lived programs' names
    /// and expectations, by index.
    fn check(&self, programs: &[(&str, Expect)]) -> Result<()> {
        let mut failures = Vec::new();
        if let Some(died) = &self.died {
            failures.push(died.clone());
        }
        if self.healthy_from.is_none() {
            failures.push("the daemon never answered /healthz 200".into());
        }
        if !self.scrapes_failed.is_empty() {
            failures.push(format!("{} scrapes failed", self.scrapes_failed.len()));
        }
        let named = |expect: Expect, judged: &dyn Fn(usize) -> bool| -> Vec<&str> {
            programs
                .iter()
                .enumerate()
                .filter(|(i, (_, e))| *e == expect && judged(*i))
                .map(|(_, (name, _))| *name)
                .collect()
        };
        let missed = named(Expect::Leak, &|i| !self.leak_found_at.contains_key(&i));
        if !missed.is_empty() {
            failures.push(format!("leaks not found: {missed:?}"));
        }
        let false_alarms = named(Expect::Steady, &|i| self.false_alarms.contains_key(&i));
        if !false_alarms.is_empty() {
            failures.push(format!("steady programs judged a leak: {false_alarms:?}"));
        }
        let unseen = named(Expect::Steady, &|i| !self.steady_seen_at.contains_key(&i));
        if !unseen.is_empty() {
            failures.push(format!(
                "steady programs never exported as ok (not seen at all): {unseen:?}"
            ));
        }
        match &self.stopped {
            Some(Ok(_)) => {}
            Some(Err(e)) => failures.push(format!("SIGTERM: {e}")),
            None => failures.push("the daemon was not stopped with SIGTERM".into()),
        }
        let (middle, last) = (
            self.rss_in(1.0 / 3.0, 2.0 / 3.0),
            self.rss_in(2.0 / 3.0, 1.01),
        );
        let held = self.held_growth();
        let limit = middle * held * RSS_GROWTH_LIMIT + RSS_SLACK_BYTES as f64;
        if middle == 0.0 || last > limit {
            failures.push(format!(
                "RSS not flat: last third median {:.1} MiB > {:.1} MiB (middle third {:.1} MiB x held growth {held:.2} x {RSS_GROWTH_LIMIT} + {} MiB)",
                last / MIB,
                limit / MIB,
                middle / MIB,
                RSS_SLACK_BYTES >> 20
            ));
        }
        if failures.is_empty() {
            println!("soak: passed");
            Ok(())
        } else {
            bail!("soak failed: {}", failures.join("; "))
        }
    }
}

/// The daemon's gauges of what it holds, sampled with RSS to explain it (the soak
/// watches the whole host: other programs' waiters count too).
const HELD_GAUGES: [&str; 4] = [
    "leakscope_watched_processes",
    "leakscope_watched_waiters",
    "leakscope_history_processes",
    "leakscope_history_members",
];

impl Figures {
    /// Writes every sample as CSV: time, RSS, CPU, then [`HELD_GAUGES`].
    fn write_csv(&self, path: &Path) -> Result<()> {
        let mut out = format!("seconds,rss_bytes,cpu_seconds,{}\n", HELD_GAUGES.join(","));
        for (at, rss, cpu) in &self.samples {
            let held = self
                .held
                .iter()
                .find(|(t, _)| (t - at).abs() < 0.5)
                .map(|(_, v)| {
                    v.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|| ",".repeat(HELD_GAUGES.len() - 1));
            out.push_str(&format!("{at:.1},{rss},{cpu:.2},{held}\n"));
        }
        fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run where everything went right: flat RSS, healthy, each leak found, the steady
    /// program exported and ok, exit 0 on SIGTERM.
    fn good_run() -> Figures {
        let samples: Vec<(f64, u64, f64)> =
            (0..90).map(|t| (f64::from(t), 50 << 20, 1.0)).collect();
        Figures {
            samples,
            healthy_from: Some(3.0),
            scrapes_ok: 170,
            leak_found_at: BTreeMap::from([(0, 20.0)]),
            steady_seen_at: BTreeMap::from([(1, 4.0)]),
            stopped: Some(Ok(Duration::from_millis(300))),
            ..Figures::default()
        }
    }

    const PROGRAMS: [(&str, Expect); 3] = [
        ("mutex_leak", Expect::Leak),
        ("idle_pool", Expect::Steady),
        ("hostile_go all", Expect::Hostile),
    ];

    /// Check that the soak passes a good run and fails, naming why, when a steady
    /// program is judged a leak, when it is never seen at all, and when the daemon does
    /// not exit 0 on SIGTERM (each was only printed before).
    #[test]
    fn soak_fails_on_false_alarms_unseen_steady_programs_and_a_bad_exit() {
        good_run().check(&PROGRAMS).unwrap();

        let mut false_alarm = good_run();
        false_alarm.false_alarms.insert(1, 40.0);
        let error = false_alarm.check(&PROGRAMS).unwrap_err().to_string();
        assert!(
            error.contains("steady programs judged a leak: [\"idle_pool\"]"),
            "{error}"
        );

        let mut unseen = good_run();
        unseen.steady_seen_at.clear();
        let error = unseen.check(&PROGRAMS).unwrap_err().to_string();
        assert!(error.contains("never exported"), "{error}");

        for stopped in [Some(Err("exited 1".to_string())), None] {
            let mut bad_exit = good_run();
            bad_exit.stopped = stopped;
            let error = bad_exit.check(&PROGRAMS).unwrap_err().to_string();
            assert!(error.contains("SIGTERM"), "{error}");
        }

        let mut missed = good_run();
        missed.leak_found_at.clear();
        let error = missed.check(&PROGRAMS).unwrap_err().to_string();
        assert!(
            error.contains("leaks not found: [\"mutex_leak\"]"),
            "{error}"
        );
    }
}
