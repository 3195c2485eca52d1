//! `cargo xtask soak [--minutes N]`: the release daemon against a churning, partly
//! hostile host for N minutes (default 10; `cargo xtask test` runs 2).
//!
//! While `leakscope run` watches the whole host (1 s scans, a window of a sixth of the
//! run, 20 s to 2 minutes, so it is full before the middle third; dumps on), this starts a new short-lived process every [`CHURN_EVERY`] (C and Go
//! programs, leaking or not, some under names full of terminal escapes, newlines and
//! bytes that are not UTF-8, and `hostile_go` in each of its attack modes), each living
//! 0.5-4 s; keeps long-lived leakers (C and Go), steady programs and `hostile_go all`
//! running throughout; holds [`IDLE_CONNECTIONS`] idle connections
//! to the daemon's port, re-opened every 10 s; and once a second scrapes `/metrics`
//! and `/healthz` and samples the daemon's RSS and CPU time.
//!
//! It passes when: every scrape and health check after the first healthy one answered
//! 200; every long-lived leaker was judged a leak in `/metrics`; the daemon's median RSS
//! in the last third of the run stays within [`RSS_GROWTH_LIMIT`] (plus
//! [`RSS_SLACK_BYTES`]) of its median in the middle third, times the growth of what it
//! holds by its own gauges (other programs on the host count: more waiters to keep is
//! not a leak; medians, because reading a big process is a transient peak); and the
//! daemon never died.
//! Figures are printed either way. RSS and CPU seconds are robust to a busy machine;
//! other processes on the host are watched too, and count.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::bench::GO_VERSION;
use crate::util::{
    cargo, go_command, is_root, run, set_parent_death_signal, target_dir, workspace_root,
};

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
            Kind::MutexLeak => "mutex_leak",
            Kind::CondvarLeak => "condvar_leak",
            Kind::IdlePool => "idle_pool",
            Kind::GoLeaks => "goleaks",
            Kind::HostileGo => "hostile_go",
        }
    }
}

/// What a long-lived program is expected to be judged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Leak,
    Steady,
    /// Anything, as long as the daemon stays healthy.
    Hostile,
}

struct LongLived {
    name: String,
    expect: Expect,
    child: Child,
}

/// Every child, killed and reaped on drop.
#[derive(Default)]
struct Children {
    long_lived: Vec<LongLived>,
    churn: Vec<(Child, Instant)>,
    started: usize,
}

impl Drop for Children {
    fn drop(&mut self) {
        let all = self
            .long_lived
            .iter_mut()
            .map(|l| &mut l.child)
            .chain(self.churn.iter_mut().map(|(c, _)| c));
        for child in all {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The daemon: killed on drop unless it was stopped.
struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let mut daemon = start_daemon(&dir, window_for(duration))?;
    println!(
        "soak: {} min, daemon window {} s; daemon pid {} on port {}; log {}",
        args.minutes,
        window_for(duration),
        daemon.child.id(),
        daemon.port,
        daemon.log.display()
    );
    let figures = drive(&mut daemon, &mut children, &bin, duration)?;
    let stopped = stop_daemon(&mut daemon)?;
    let csv = dir.join("samples.csv");
    figures.write_csv(&csv)?;
    figures.print(&children, stopped);
    println!(
        "  samples (RSS, CPU, the daemon's history gauges): {}",
        csv.display()
    );
    figures.check(&children)
}

fn build_programs(bin: &Path) -> Result<()> {
    let programs = workspace_root().join("tracer-user/tests/programs");
    for kind in [Kind::MutexLeak, Kind::CondvarLeak, Kind::IdlePool] {
        run(Command::new("cc")
            .args(["-O0", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(bin.join(kind.binary()))
            .arg(programs.join(format!("{}.c", kind.binary()))))?;
    }
    // As the integration tests build it: not PIE (its fake pclntab names its own code
    // by absolute address).
    run(Command::new("cc")
        .args(["-O0", "-g", "-no-pie", "-fno-omit-frame-pointer", "-o"])
        .arg(bin.join(Kind::HostileGo.binary()))
        .arg(programs.join("hostile_go.c")))?;
    let mut go = go_command(GO_VERSION)?;
    run(go
        .current_dir(programs.join("go"))
        .args(["build", "-o"])
        .arg(bin.join(Kind::GoLeaks.binary()))
        .arg("./leaks"))?;
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

fn spawn(path: &Path, args: &[&str]) -> Result<Child> {
    let mut command = Command::new(path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    set_parent_death_signal(&mut command);
    command
        .spawn()
        .with_context(|| format!("cannot start {}", path.display()))
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
        let child = spawn(&program(bin, kind, hostile), args)?;
        children.long_lived.push(LongLived {
            name: name.to_string(),
            expect,
            child,
        });
    }
    Ok(())
}

/// The daemon's window: full by the start of the middle third (its history grows until
/// then, by design), a sixth of the run, 20 s to 2 minutes.
fn window_for(run: Duration) -> u64 {
    (run.as_secs() / 6).clamp(20, 120)
}

fn start_daemon(dir: &Path, window_s: u64) -> Result<Daemon> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = dir.join("daemon.log");
    let out = fs::File::create(&log)?;
    let mut command = Command::new(target_dir().join("release/leakscope"));
    command
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--interval", INTERVAL_S, "--window", &window_s.to_string()])
        .arg("--lock-file")
        .arg(dir.join("leakscope.lock"))
        .arg("--dump-dir")
        .arg(dir.join("dumps"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    set_parent_death_signal(&mut command);
    let child = command.spawn().context("cannot start leakscope run")?;
    Ok(Daemon { child, port, log })
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
    died: Option<String>,
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
        if let Some(status) = daemon.child.try_wait()? {
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
                .filter_map(|_| TcpStream::connect(("127.0.0.1", daemon.port)).ok())
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
    let child = spawn(&program(bin, kind, hostile), args)?;
    children.churn.push((child, Instant::now() + life));
    children.started += 1;
    Ok(())
}

fn reap_expired(children: &mut Children) {
    let now = Instant::now();
    children.churn.retain_mut(|(child, until)| {
        if now < *until {
            return true;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    });
}

/// One second's look: RSS and CPU, a scrape of both endpoints, the leak verdicts.
fn sample(daemon: &Daemon, children: &Children, figures: &mut Figures, at: f64) {
    if let Some((rss, cpu)) = usage(daemon.child.id()) {
        figures.samples.push((at, rss, cpu));
    }
    let health = http_get(daemon.port, "/healthz");
    let metrics = http_get(daemon.port, "/metrics");
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
        .map(|name| gauge(&body, name).unwrap_or(f64::NAN))
        .collect();
    figures.held.push((at, held));
    for (i, program) in children.long_lived.iter().enumerate() {
        let pid = format!("pid=\"{}\"", program.child.id());
        let leak = body.lines().any(|l| {
            l.starts_with("leakscope_process_leak{") && l.contains(&pid) && l.ends_with(" 1")
        });
        let record = match program.expect {
            Expect::Leak => &mut figures.leak_found_at,
            Expect::Steady => &mut figures.false_alarms,
            Expect::Hostile => continue,
        };
        if leak {
            record.entry(i).or_insert(at);
        }
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

    fn print(&self, children: &Children, stopped: Result<Duration, String>) {
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
                Expect::Steady => match self.false_alarms.get(&i) {
                    Some(at) => format!("FALSE ALARM at {at:.0} s"),
                    None => "never judged a leak".to_string(),
                },
                Expect::Hostile => "(hostile: any verdict; the daemon must stay healthy)".into(),
            };
            println!("  {:<28} {verdict}", program.name);
        }
        match stopped {
            Ok(took) => println!("  SIGTERM: exit 0 in {} ms", took.as_millis()),
            Err(e) => println!("  SIGTERM: {e}"),
        }
    }

    fn check(&self, children: &Children) -> Result<()> {
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
        let missed: Vec<&str> = children
            .long_lived
            .iter()
            .enumerate()
            .filter(|(i, p)| p.expect == Expect::Leak && !self.leak_found_at.contains_key(i))
            .map(|(_, p)| p.name.as_str())
            .collect();
        if !missed.is_empty() {
            failures.push(format!("leaks not found: {missed:?}"));
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

/// The value of an unlabelled series in an exposition.
fn gauge(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

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

/// SIGTERM; how long until it exited 0.
fn stop_daemon(daemon: &mut Daemon) -> Result<Result<Duration, String>> {
    let t0 = Instant::now();
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGTERM) };
    loop {
        if let Some(status) = daemon.child.try_wait()? {
            return Ok(if status.success() {
                Ok(t0.elapsed())
            } else {
                Err(format!("exited {status}"))
            });
        }
        if t0.elapsed() > Duration::from_secs(5) {
            return Ok(Err("still running 5 s after SIGTERM".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process's RSS (bytes) and CPU time (user + system, seconds).
fn usage(pid: u32) -> Option<(u64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
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
    Some((
        rss_pages * page.max(1) as u64,
        (utime + stime) as f64 / ticks.max(1) as f64,
    ))
}

/// GET over HTTP/1.0 with a 10 s timeout: (status, body).
fn http_get(port: u16, target: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {target} HTTP/1.0\r\nHost: soak\r\n\r\n")?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}
