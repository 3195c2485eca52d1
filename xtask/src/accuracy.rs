//! `cargo xtask accuracy`: does leakscope's verdict tell leaks from steady shapes?
//!
//! Runs every shape of `tracer-user/tests/programs/shapes/` (threads.c and
//! goroutines.go: leaks fast, slow inside a busy pool, very slow, at several
//! sites; steady idle pools, plateaus, sawtooth waves, load ramps, sleepers,
//! long-lived waiters) at once on this host, each case its own process, plus a
//! few extra healthy processes, then runs ONE `leakscope diagnose --json` with
//! `--pid` for every case and prints, per case, what was expected and what
//! leakscope said, ending with `recall R/N, false alarms F/M`:
//!
//! - recall: leak cases whose process verdict is "leak" with a leak site at each
//!   of the case's leak functions (its stack contains the function's name);
//! - false alarms: steady cases whose process verdict is "leak";
//! - wrong sites: sites judged "leak" in a leak case at none of its leak
//!   functions;
//! - steady cases unseen: steady cases missing from the report (each blocks
//!   somewhere, so leakscope saw nothing of it: no evidence of "ok").
//!
//! A run passes with every leak found at its sites, no false alarm, no wrong
//! site and every steady case seen and judged ok. `--quick` runs only the fast cases (those started at most half a
//! minute before the diagnosis, no head start): the short form `cargo xtask
//! test` runs, about two minutes.
//!
//! The timeline is part of the shapes: the very slow leaks (one waiter per
//! 10 s), the warm plateaus and the long-lived waiters start first and get a
//! head start (default 2 minutes, shown as progress; at least the 5 minutes
//! the slowest goroutine leak needs, below); the slow goroutine leaks in busy
//! pools start 3 and 5 minutes before the first diagnosis (they must be found
//! from the park dates of goroutines stranded long before it); the other cases
//! start a few seconds before the diagnosis; the fast leaks, the still-warming
//! plateaus and the load ramps are restarted shortly before every diagnosis, so
//! that each diagnosis (`--runs N` repeats it on the same programs) sees them
//! leaking from a fresh start, warming and ramping.
//!
//! `--record DIR` also keeps what the verdict saw, as verdict test data:
//! leakscope's `--record-observations` file and `cases.json` (pid → case,
//! expected verdict, leak functions). Every program is killed at the end, on
//! error and on Ctrl-C (and by the kernel if xtask itself dies: they run with
//! a parent-death signal).

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use test_support::go::{SHAPE_GOROUTINES, build_shape_goroutines};
use test_support::programs::Program;

use crate::go_layouts::GO_VERSIONS;
use crate::util::{
    cargo, describe, exit_code_of, is_root, run, set_parent_death_signal, target_dir,
};

const GOROUTINES_BINARY: &str = SHAPE_GOROUTINES;

/// The cases `--quick` runs: those started at most this many seconds before the
/// diagnosis (no head start, no slow leak found from its members' births).
const QUICK_MAX_LEAD_S: f64 = 30.0;

/// Rate of the fast leaks, waiters per second.
const FAST_LEAK_RATE: u32 = 20;

/// Lead of the cases started shortly before the first diagnosis, seconds.
const SHORT_LEAD_S: f64 = 5.0;
/// Leads of the cases restarted before every diagnosis, seconds.
const WARMING_LEAD_S: f64 = 4.0;
const RAMP_LEAD_S: f64 = 3.0;
/// Leads of the slow goroutine leaks in busy pools: three and five minutes.
const SLOW_GO_LEAK_LEAD_S: f64 = 180.0;
const SLOWER_GO_LEAK_LEAD_S: f64 = 300.0;

#[derive(Args, Debug)]
pub struct AccuracyArgs {
    /// Seconds each diagnosis watches (leakscope's `--duration`).
    #[arg(long, default_value_t = 15)]
    duration: u32,
    /// Diagnoses to run, one after the other, on the same running programs.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Seconds the very slow leaks (and the warm plateaus and long-lived waiters)
    /// run before the first diagnosis.
    #[arg(long, default_value_t = 120)]
    head_start: u32,
    /// Extra healthy processes (small idle pools and sleepers) beside the shapes.
    #[arg(long, default_value_t = 4)]
    healthy: u32,
    /// Also write leakscope's observations and a cases.json (pid → case,
    /// expected verdict) into this directory, as verdict test data.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Only the fast cases, those started at most half a minute before the
    /// diagnosis, with no head start: the short form `cargo xtask test` runs.
    #[arg(long)]
    quick: bool,
}

impl AccuracyArgs {
    /// The short form `cargo xtask test` runs: the fast cases, one diagnosis of 15 s.
    pub fn quick() -> Self {
        AccuracyArgs {
            duration: 15,
            runs: 1,
            head_start: 0,
            healthy: 4,
            record: None,
            quick: true,
        }
    }
}

/// Which program, and so which kind of waiter, a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Thread,
    Goroutine,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Thread => "thread",
            Kind::Goroutine => "goroutine",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Kind::Thread => Program::ShapeThreads.name(),
            Kind::Goroutine => GOROUTINES_BINARY,
        }
    }
}

/// When a case's process starts, relative to the diagnoses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Start {
    /// At the very beginning: it has run for the head start when the first
    /// diagnosis begins.
    Early,
    /// This many seconds before the first diagnosis; it keeps running after.
    Before(f64),
    /// This many seconds before every diagnosis: restarted for each run.
    BeforeEachRun(f64),
}

/// One process of the measurement.
#[derive(Clone, Debug)]
struct Case {
    /// "threads/fast-leak": program and shape.
    name: String,
    kind: Kind,
    args: Vec<String>,
    expect_leak: bool,
    /// For leak cases: each leak site's function (a substring of the stack's
    /// function names); all must be found at sites judged "leak".
    leak_functions: Vec<&'static str>,
    start: Start,
}

impl Case {
    /// Started at most [`QUICK_MAX_LEAD_S`] before the diagnosis: in `--quick`.
    fn fast(&self) -> bool {
        match self.start {
            Start::Early => false,
            Start::Before(lead) | Start::BeforeEachRun(lead) => lead <= QUICK_MAX_LEAD_S,
        }
    }
}

fn case(
    kind: Kind,
    shape: &str,
    args: &str,
    leak_functions: &[&'static str],
    start: Start,
) -> Case {
    let program = match kind {
        Kind::Thread => "threads",
        Kind::Goroutine => "goroutines",
    };
    let mode = shape.split('#').next().unwrap_or(shape);
    let mut argv = vec![mode.to_string()];
    argv.extend(args.split_whitespace().map(str::to_string));
    // -v: the programs log their waiter counts once a second (see the logs).
    argv.push("-v".to_string());
    Case {
        name: format!("{program}/{}", shape.replace('#', "-")),
        kind,
        args: argv,
        expect_leak: !leak_functions.is_empty(),
        leak_functions: leak_functions.to_vec(),
        start,
    }
}

/// Every case of the measurement. `shape#variant` runs mode `shape`.
fn cases(args: &AccuracyArgs) -> Vec<Case> {
    let duration = f64::from(args.duration);
    // The fast leaks restart before every diagnosis (a diagnosis of a loaded host
    // can take far longer than its --duration, so a leak that ran through them all
    // would reach any cap): cap them well above what one run reaches (thread
    // stacks are 64 KiB, so this stays cheap).
    let fast_max = FAST_LEAK_RATE * (SHORT_LEAD_S as u32 + args.duration + 60) + 200;
    // Still warming when the diagnosis starts, level 40% into the window.
    let warming_grow = WARMING_LEAD_S + 0.4 * duration;
    // Rising through the whole window and beyond.
    let ramp_s = RAMP_LEAD_S + duration + 10.0;
    let mut all = Vec::new();
    for kind in [Kind::Thread, Kind::Goroutine] {
        let goroutine = kind == Kind::Goroutine;
        let fn_name = |c: &'static str, go: &'static str| if goroutine { go } else { c };
        let busy_workers = if goroutine { 5000 } else { 1000 };
        let sleepers = if goroutine { 300 } else { 200 };
        all.extend([
            // Leaks.
            case(
                kind,
                "fast-leak",
                &format!("--rate {FAST_LEAK_RATE} --max {fast_max}"),
                &[fn_name(
                    "leak_fast_never_signalled",
                    "leakFastSendNoReceiver",
                )],
                Start::BeforeEachRun(SHORT_LEAD_S),
            ),
            case(
                kind,
                "busy-pool-slow-leak",
                &format!("--workers {busy_workers} --wakes 400 --interval 2"),
                &[fn_name("leak_slow_stuck_on_lock", "leakSlowRecvNoSender")],
                Start::Before(SHORT_LEAD_S),
            ),
            case(
                kind,
                "very-slow-leak",
                "--interval 10",
                &[fn_name(
                    "leak_very_slow_futex",
                    "leakVerySlowForgottenUnlock",
                )],
                Start::Early,
            ),
            case(
                kind,
                "multi-site-leak",
                "--rate 1",
                &if goroutine {
                    ["leakMultiSend", "leakMultiMutex", "leakMultiSelect"]
                } else {
                    [
                        "leak_multi_condvar",
                        "leak_multi_mutex",
                        "leak_multi_rwlock",
                    ]
                },
                Start::Before(SHORT_LEAD_S),
            ),
            // Steady shapes.
            case(
                kind,
                "idle-pool",
                "--workers 32 --rate 2",
                &[],
                Start::Before(SHORT_LEAD_S),
            ),
            case(
                kind,
                "plateau",
                "--target 200 --grow 10 --rate 2",
                &[],
                Start::Early,
            ),
            case(
                kind,
                "plateau#warming",
                &format!("--target 200 --grow {warming_grow} --rate 2"),
                &[],
                Start::BeforeEachRun(WARMING_LEAD_S),
            ),
            case(
                kind,
                "sawtooth",
                "--wave 4 --burst 100",
                &[],
                Start::Before(SHORT_LEAD_S),
            ),
            case(
                kind,
                "ramp",
                &format!(
                    "--start-rate 10 --end-rate 300 --ramp {ramp_s} --min-ms 100 --max-ms 300"
                ),
                &[],
                Start::BeforeEachRun(RAMP_LEAD_S),
            ),
            case(
                kind,
                "sleepers",
                &format!("--workers {sleepers} --min-ms 500 --max-ms 5000"),
                &[],
                Start::Before(SHORT_LEAD_S),
            ),
            case(kind, "long-lived", "--workers 200", &[], Start::Early),
        ]);
    }
    // Threads asleep in other syscalls than futex: leaks in read, accept and waitpid, a
    // server whose clients drop one request in ten, and steady servers, event loops and
    // periodic sleepers.
    all.extend([
        case(
            Kind::Thread,
            "read-leak",
            "--rate 2",
            &["leak_read_reply_never_sent"],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "accept-leak",
            "--rate 2",
            &["leak_accept_no_client"],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "waitpid-leak",
            "--rate 1",
            &["leak_waitpid_child_never_exits"],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "conn-server#dropping",
            "--keepalive 0 --rate 20 --leak-every 10",
            &["conn_read_request"],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "conn-server",
            "--keepalive 32 --rate 20",
            &[],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "epoll-loop",
            "--loops 4 --rate 200",
            &[],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "nanosleepers",
            "--workers 100 --min-ms 200 --max-ms 3000",
            &[],
            Start::Before(SHORT_LEAD_S),
        ),
    ]);
    all.extend(busy_site_cases());
    // The slow goroutine leaks of a busy service (a few hundred workers, thousands of
    // wakes a second, allocating as services do, so the GC runs and dates parks): one
    // goroutine stranded every 10 s for three minutes before the diagnosis, and one
    // every 30 s for five. The window adds one or none: only the goroutines' park
    // dates (g.waitsince) can tell.
    for (every, lead) in [(10, SLOW_GO_LEAK_LEAD_S), (30, SLOWER_GO_LEAK_LEAD_S)] {
        all.push(case(
            Kind::Goroutine,
            &format!("busy-pool-slow-leak#every{every}s"),
            &format!("--workers 300 --wakes 3000 --interval {every} --alloc 2048"),
            &["leakSlowRecvNoSender"],
            Start::Before(lead),
        ));
    }
    // Bystanders: small healthy processes, so the leaks are a few among many.
    let healthy: [(Kind, &str, &str); 4] = [
        (Kind::Thread, "idle-pool", "--workers 8 --rate 5"),
        (
            Kind::Goroutine,
            "sleepers",
            "--workers 50 --min-ms 200 --max-ms 2000",
        ),
        (
            Kind::Thread,
            "sleepers",
            "--workers 20 --min-ms 1000 --max-ms 10000",
        ),
        (Kind::Goroutine, "idle-pool", "--workers 16 --rate 10"),
    ];
    for i in 0..args.healthy as usize {
        let (kind, mode, mode_args) = healthy[i % healthy.len()];
        all.push(case(
            kind,
            &format!("{mode}#healthy{}", i + 1),
            mode_args,
            &[],
            Start::Before(SHORT_LEAD_S),
        ));
    }
    all
}

/// Leaks hidden among busy waiters at the same site, and their steady twins: a Go
/// net/http server whose forty busy keep-alive clients park its connection
/// goroutines at the same read hundreds of times a second, beside clients that send
/// one request and vanish without closing (the leak; no idle timeout), or beside a
/// bounded crowd of idle keep-alive connections that rotates (one hangs up, one
/// arrives), or with an idle timeout that closes the vanished ones; a thread pool
/// whose busy workers wait where workers of forgotten per-request pools wait forever,
/// or where those pools' workers wait until their pool is shut down; a
/// thread-per-connection server with busy keep-alive clients and dropped requests.
fn busy_site_cases() -> Vec<Case> {
    let busy_http = "--busy 40 --busy-ms 100";
    let busy_pool = "--workers 16 --jobs 400";
    vec![
        case(
            Kind::Goroutine,
            "http-server#vanishing-clients",
            &format!("{busy_http} --vanish-rate 3"),
            &["bufio.(*Reader).Peek"],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Goroutine,
            "http-server#rotating-idle",
            &format!("{busy_http} --idle 100 --idle-life-min 20 --idle-life-max 80"),
            &[],
            Start::Before(SHORT_LEAD_S),
        ),
        // Closed after 8 s idle: running for 20 s first, the crowd is bounded by then.
        case(
            Kind::Goroutine,
            "http-server#idle-timeout",
            &format!("{busy_http} --vanish-rate 3 --idle-timeout 8"),
            &[],
            Start::Before(20.0),
        ),
        case(
            Kind::Thread,
            "worker-pool#forgotten-pools",
            &format!("{busy_pool} --spawn-rate 3"),
            &["pool_take_job"],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "worker-pool#rotating-pools",
            &format!("{busy_pool} --spawn-rate 2 --spawn-life-min 20 --spawn-life-max 60"),
            &[],
            Start::Before(SHORT_LEAD_S),
        ),
        case(
            Kind::Thread,
            "conn-server#dropping-busy",
            "--keepalive 32 --rate 20 --leak-every 10 --idle-min-ms 300 --idle-max-ms 2000",
            &["conn_read_request"],
            Start::Before(SHORT_LEAD_S),
        ),
    ]
}

/// Set by SIGINT/SIGTERM; every wait checks it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; stopping every shape program");
    }
    Ok(())
}

/// Sleeps until `deadline` in short slices, failing when interrupted; calls
/// `progress` with the seconds left about once a second.
fn sleep_until(deadline: Instant, mut progress: impl FnMut(u64)) -> Result<()> {
    let mut last_shown = None;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let left = (deadline - now).as_secs();
        if last_shown != Some(left) {
            progress(left);
            last_shown = Some(left);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// A running case's process.
struct Running {
    case: usize,
    child: Child,
}

/// Every running shape program, killed and reaped when dropped.
struct Fleet {
    running: Vec<Running>,
    log_dir: PathBuf,
    bin_dir: PathBuf,
}

impl Fleet {
    /// Starts (or restarts) case `index`.
    fn start(&mut self, index: usize, case: &Case) -> Result<()> {
        if let Some(at) = self.running.iter().position(|r| r.case == index) {
            let mut old = self.running.swap_remove(at);
            let _ = old.child.kill();
            let _ = old.child.wait();
        }
        let log_path = self
            .log_dir
            .join(format!("{}.log", case.name.replace('/', "-")));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(self.bin_dir.join(case.kind.binary()));
        command
            .args(&case.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        set_parent_death_signal(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start `{}`", describe(&command)))?;
        self.running.push(Running { case: index, child });
        Ok(())
    }

    fn pid(&self, index: usize) -> Option<u32> {
        self.running
            .iter()
            .find(|r| r.case == index)
            .map(|r| r.child.id())
    }

    /// Fails when a program has exited: a dead case would be measured as absent.
    fn check_alive(&mut self, cases: &[Case]) -> Result<()> {
        for running in &mut self.running {
            if let Some(status) = running.child.try_wait()? {
                let case = &cases[running.case];
                bail!(
                    "{} exited ({status}); see {}",
                    case.name,
                    self.log_dir
                        .join(format!("{}.log", case.name.replace('/', "-")))
                        .display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for running in &mut self.running {
            let _ = running.child.kill();
        }
        for running in &mut self.running {
            let _ = running.child.wait();
        }
    }
}

pub fn accuracy(args: &AccuracyArgs) -> Result<ExitCode> {
    if args.duration == 0 || args.runs == 0 {
        bail!("accuracy: --duration and --runs must be at least 1");
    }
    if !is_root() {
        bail!("`cargo xtask accuracy` needs root: leakscope loads eBPF programs");
    }
    let cases: Vec<Case> = cases(args)
        .into_iter()
        .filter(|case| !args.quick || case.fast())
        .collect();
    let head_start = if args.quick { 0 } else { args.head_start };
    let work_dir = target_dir().join("xtask-accuracy");
    let bin_dir = work_dir.join("bin");
    let log_dir = work_dir.join("logs");
    for dir in [&bin_dir, &log_dir] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if let Some(dir) = &args.record {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    crate::setup::setup()?;
    run(cargo().args(["build", "--release", "-p", "tracer-user"]))?;
    let leakscope = target_dir().join("release/leakscope");
    build_shapes(&bin_dir)?;

    install_signal_handlers();
    let mut fleet = Fleet {
        running: Vec::new(),
        log_dir: log_dir.clone(),
        bin_dir,
    };
    let max_lead = cases
        .iter()
        .filter_map(|case| match case.start {
            Start::Early => None,
            Start::Before(lead) | Start::BeforeEachRun(lead) => Some(lead),
        })
        .fold(0.0, f64::max);
    // Later runs only restart the cases that start before each run.
    let max_rerun_lead = cases
        .iter()
        .filter_map(|case| match case.start {
            Start::BeforeEachRun(lead) => Some(lead),
            Start::Early | Start::Before(_) => None,
        })
        .fold(0.0, f64::max);

    let begin = Instant::now();
    for (index, case) in cases.iter().enumerate() {
        if case.start == Start::Early {
            fleet.start(index, case)?;
        }
    }
    println!(
        "accuracy: {} cases ({} leaks); logs in {}",
        cases.len(),
        cases.iter().filter(|case| case.expect_leak).count(),
        log_dir.display()
    );
    let first_diagnosis = begin + Duration::from_secs(u64::from(head_start)).max(secs(max_lead));

    let mut failed_runs = 0;
    for run_number in 1..=args.runs {
        let diagnosis_at = if run_number == 1 {
            first_diagnosis
        } else {
            Instant::now() + secs(max_rerun_lead)
        };
        // Latest start first; ties keep the case order.
        let mut schedule: Vec<(f64, usize)> = cases
            .iter()
            .enumerate()
            .filter_map(|(index, case)| match case.start {
                Start::Before(lead) if run_number == 1 => Some((lead, index)),
                Start::BeforeEachRun(lead) => Some((lead, index)),
                _ => None,
            })
            .collect();
        schedule.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut progress = Progress::new(run_number == 1 && head_start > 0);
        for (lead, index) in schedule {
            sleep_until(diagnosis_at - secs(lead), |left| {
                progress.show(left + lead as u64, &fleet, &cases)
            })?;
            fleet.start(index, &cases[index])?;
        }
        sleep_until(diagnosis_at, |left| progress.show(left, &fleet, &cases))?;
        progress.finish();
        fleet.check_alive(&cases)?;

        let suffix = if args.runs == 1 {
            String::new()
        } else {
            format!("-run{run_number}")
        };
        let observations = args
            .record
            .as_ref()
            .map(|dir| dir.join(format!("observations{suffix}.json")));
        let pids: Vec<(usize, u32)> = (0..cases.len())
            .map(|index| {
                let pid = fleet.pid(index).context("a case is not running")?;
                Ok((index, pid))
            })
            .collect::<Result<_>>()?;
        println!(
            "\nrun {run_number}/{}: leakscope diagnose --duration {} on {} processes",
            args.runs,
            args.duration,
            pids.len()
        );
        let report_path = work_dir.join(format!("report{suffix}.json"));
        let report = diagnose(
            &leakscope,
            args.duration,
            &pids,
            observations.as_deref(),
            &report_path,
        )?;
        fleet.check_alive(&cases)?;

        let outcomes: Vec<Outcome> = pids
            .iter()
            .map(|&(index, pid)| evaluate(&cases[index], pid, &report))
            .collect();
        let score = print_table(&cases, &pids, &outcomes);
        println!("(report: {})", report_path.display());
        if let (Some(dir), Some(observations)) = (&args.record, &observations) {
            compact_json(observations)?;
            let cases_path = dir.join(format!("cases{suffix}.json"));
            write_cases(&cases_path, observations, args.duration, &cases, &pids)?;
            print_sizes(&[observations, &cases_path]);
        }
        println!(
            "recall {}/{}, false alarms {}/{}, wrong sites {}, steady cases unseen {}",
            score.recalled,
            score.leak_cases,
            score.false_alarms,
            score.ok_cases,
            score.misattributed,
            score.unseen
        );
        if !score.perfect() {
            failed_runs += 1;
        }
    }
    drop(fleet);
    if args.runs > 1 {
        println!(
            "\n{}/{} runs with full recall, no false alarm and no wrong site",
            args.runs - failed_runs,
            args.runs
        );
    }
    Ok(if failed_runs == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.max(0.0))
}

/// The head-start countdown: one updating line on a terminal, else a line every
/// 20 s.
struct Progress {
    enabled: bool,
    terminal: bool,
    shown: bool,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn show(&mut self, left: u64, fleet: &Fleet, cases: &[Case]) {
        if !self.enabled || (!self.terminal && !left.is_multiple_of(20)) {
            return;
        }
        // The very slow thread leak's thread count, to show it is leaking.
        let leaked = cases
            .iter()
            .position(|case| case.name == "threads/very-slow-leak")
            .and_then(|index| fleet.pid(index))
            .and_then(thread_count)
            .map(|threads| format!("; threads/very-slow-leak has {threads} threads"))
            .unwrap_or_default();
        let line = format!("head start: diagnosis in {left:>3} s{leaked}");
        if self.terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        self.shown = true;
    }

    fn finish(&mut self) {
        if self.shown && self.terminal {
            eprintln!();
        }
        self.shown = false;
    }
}

fn thread_count(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
}

/// Builds shape-threads (cc) and shape-goroutines (the newest Go toolchain,
/// fetched when missing) into `bin_dir`, as the integration tests build them.
fn build_shapes(bin_dir: &Path) -> Result<()> {
    Program::ShapeThreads
        .build(bin_dir)
        .context("building shape-threads")?;
    let version = GO_VERSIONS[GO_VERSIONS.len() - 1];
    build_shape_goroutines(version, bin_dir)
        .with_context(|| format!("building shape-goroutines with Go {version}"))?;
    println!(
        "accuracy: built {} and {GOROUTINES_BINARY} (Go {version})",
        Program::ShapeThreads.name()
    );
    Ok(())
}

/// Runs one `leakscope diagnose --json` over `pids`, keeps the report at
/// `report_path` and returns it parsed.
fn diagnose(
    leakscope: &Path,
    duration: u32,
    pids: &[(usize, u32)],
    observations: Option<&Path>,
    report_path: &Path,
) -> Result<Value> {
    let report_file = fs::File::create(report_path)
        .with_context(|| format!("cannot create {}", report_path.display()))?;
    let mut command = Command::new(leakscope);
    command
        .args(["diagnose", "--json", "--duration", &duration.to_string()])
        .stdin(Stdio::null())
        .stdout(report_file);
    for (_, pid) in pids {
        command.arg("--pid").arg(pid.to_string());
    }
    if let Some(path) = observations {
        command.arg("--record-observations").arg(path);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", leakscope.display()))?;
    let status = loop {
        if let Err(error) = check_interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // 0: no leak, 1: leak; anything else is no diagnosis.
    if !matches!(exit_code_of(status), 0 | 1) {
        bail!("leakscope diagnose failed ({status})");
    }
    let text = fs::read_to_string(report_path)
        .with_context(|| format!("cannot read {}", report_path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("leakscope's report {} is not JSON", report_path.display()))
}

/// What leakscope said about one case.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// The process verdict: "leak", "ok", or "absent" (not in the report: no
    /// blocked waiters, which means "ok").
    got: String,
    /// Leak cases: how many of the case's leak functions were found at a site
    /// judged "leak".
    found: usize,
    /// Sites judged "leak" at none of the case's leak functions (for an ok case,
    /// every leak site), as "label (reason)".
    wrong_sites: Vec<String>,
    /// Why a leak function was not found: its site's verdict reason, or absence.
    misses: Vec<String>,
}

impl Outcome {
    fn correct(&self, case: &Case) -> bool {
        if case.expect_leak {
            self.got == "leak" && self.found == case.leak_functions.len()
        } else {
            // A steady case blocks somewhere, so it must be in the report and judged ok:
            // absent would mean leakscope saw nothing, which proves nothing.
            self.got == "ok"
        }
    }
}

fn evaluate(case: &Case, pid: u32, report: &Value) -> Outcome {
    let process = report["processes"]
        .as_array()
        .and_then(|processes| {
            processes
                .iter()
                .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let got = if process.is_null() {
        "absent".to_string()
    } else {
        process["verdict"].as_str().unwrap_or("missing").to_string()
    };
    let sites: &[Value] = process["sites"].as_array().map_or(&[], Vec::as_slice);
    let is_leak = |site: &Value| site["verdict"] == "leak";
    let mut found = 0;
    let mut misses = Vec::new();
    for function in &case.leak_functions {
        let at: Vec<&Value> = sites
            .iter()
            .filter(|site| stack_contains(site, function))
            .collect();
        if at.iter().any(|site| is_leak(site)) {
            found += 1;
        } else if let Some(site) = at.first() {
            misses.push(format!(
                "{function}: {}",
                site["reason"].as_str().unwrap_or("no reason")
            ));
        } else {
            misses.push(format!("{function}: no such site"));
        }
    }
    let wrong_sites = sites
        .iter()
        .filter(|site| is_leak(site))
        .filter(|site| !case.leak_functions.iter().any(|f| stack_contains(site, f)))
        .map(|site| {
            format!(
                "{} {} ({})",
                site["kind"].as_str().unwrap_or("?"),
                site_label(site),
                site["reason"].as_str().unwrap_or("no reason")
            )
        })
        .collect();
    Outcome {
        got,
        found,
        wrong_sites,
        misses,
    }
}

fn stack_functions(site: &Value) -> impl Iterator<Item = &str> {
    site["stack"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|frame| frame["function"].as_str())
}

pub fn stack_contains(site: &Value, function: &str) -> bool {
    stack_functions(site).any(|name| name.contains(function))
}

/// The first frame of a site that is the program's own code (not libc's or the
/// Go runtime's waiting machinery), to name the site in the table.
fn site_label(site: &Value) -> String {
    const PLUMBING: [&str; 9] = [
        "__",
        "futex",
        "lll_",
        "pthread_",
        "syscall",
        "runtime.",
        "sync.",
        "internal/",
        "time.",
    ];
    stack_functions(site)
        .find(|name| !PLUMBING.iter().any(|prefix| name.starts_with(prefix)))
        .or_else(|| stack_functions(site).next())
        .unwrap_or("?")
        .to_string()
}

/// One run's totals.
struct Score {
    recalled: usize,
    leak_cases: usize,
    false_alarms: usize,
    ok_cases: usize,
    /// Sites judged "leak" in leak cases at none of their leak functions.
    misattributed: usize,
    /// Steady cases missing from the report (or unreadable): nothing was judged.
    unseen: usize,
}

impl Score {
    fn perfect(&self) -> bool {
        self.recalled == self.leak_cases
            && self.false_alarms == 0
            && self.misattributed == 0
            && self.unseen == 0
    }
}

fn print_table(cases: &[Case], pids: &[(usize, u32)], outcomes: &[Outcome]) -> Score {
    let mut score = Score {
        recalled: 0,
        leak_cases: 0,
        false_alarms: 0,
        ok_cases: 0,
        misattributed: 0,
        unseen: 0,
    };
    println!(
        "{:<40} {:<9} {:>7}  {:<8} {:<6} {:<5}  {:<5}  notes",
        "case", "kind", "pid", "expected", "got", "site", "right"
    );
    for (&(index, pid), outcome) in pids.iter().zip(outcomes) {
        let case = &cases[index];
        let correct = outcome.correct(case);
        let site = if case.expect_leak {
            score.leak_cases += 1;
            if correct {
                score.recalled += 1;
            }
            score.misattributed += outcome.wrong_sites.len();
            match (outcome.found, case.leak_functions.len()) {
                (found, 1) => if found == 1 { "yes" } else { "no" }.to_string(),
                (found, total) => format!("{found}/{total}"),
            }
        } else {
            score.ok_cases += 1;
            if outcome.got == "leak" {
                score.false_alarms += 1;
            } else if !correct {
                score.unseen += 1;
            }
            "-".to_string()
        };
        let mut notes: Vec<String> = outcome.misses.clone();
        notes.extend(
            outcome
                .wrong_sites
                .iter()
                .map(|site| format!("leak at {site}")),
        );
        println!(
            "{:<40} {:<9} {:>7}  {:<8} {:<6} {:<5}  {:<5}  {}",
            case.name,
            case.kind.name(),
            pid,
            if case.expect_leak { "leak" } else { "ok" },
            outcome.got,
            site,
            if correct { "yes" } else { "NO" },
            notes.join("; ")
        );
    }
    if score.misattributed > 0 {
        println!(
            "{} site(s) judged \"leak\" in leaking processes are not their leak sites (see notes)",
            score.misattributed
        );
    }
    score
}

/// Writes cases.json: which case each recorded pid ran and what it should get.
fn write_cases(
    path: &Path,
    observations: &Path,
    duration: u32,
    cases: &[Case],
    pids: &[(usize, u32)],
) -> Result<()> {
    let processes: Vec<Value> = pids
        .iter()
        .map(|&(index, pid)| {
            let case = &cases[index];
            json!({
                "pid": pid,
                "case": case.name,
                "kind": case.kind.name(),
                "expected": if case.expect_leak { "leak" } else { "ok" },
                "leak_functions": case.leak_functions,
                "command": format!("{} {}", case.kind.binary(), case.args.join(" ")),
                "started": match case.start {
                    Start::Early => "head start".to_string(),
                    Start::Before(lead) | Start::BeforeEachRun(lead) =>
                        format!("{lead} s before the diagnosis"),
                },
            })
        })
        .collect();
    let document = json!({
        "about": "cargo xtask accuracy: the shape each recorded pid ran and the verdict it should get",
        "observations": observations.file_name().map(|name| name.to_string_lossy()),
        "duration_s": duration,
        "processes": processes,
    });
    let text = serde_json::to_string_pretty(&document)? + "\n";
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Rewrites a JSON file without indentation (same values, keys sorted): the
/// observations of a busy pool's thousands of members, pretty-printed, are
/// about twice the size.
fn compact_json(path: &Path) -> Result<()> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    fs::write(path, serde_json::to_string(&value)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_sizes(paths: &[&Path]) {
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) => println!(
                "recorded {} ({:.0} KiB)",
                path.display(),
                meta.len() as f64 / 1024.0
            ),
            Err(error) => println!("recorded {}: {error}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AccuracyArgs {
        AccuracyArgs {
            duration: 15,
            runs: 1,
            head_start: 120,
            healthy: 4,
            record: None,
            quick: false,
        }
    }

    fn site(verdict: &str, functions: &[&str]) -> Value {
        let stack: Vec<Value> = functions
            .iter()
            .map(|f| json!({"function": f, "file": null, "line": null, "address": "0x1"}))
            .collect();
        json!({"kind": "thread", "verdict": verdict, "stack": stack, "reason": "because"})
    }

    #[test]
    fn case_names_are_unique_and_leaks_name_their_sites() {
        let all = cases(&args());
        for (i, case) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|other| other.name != case.name));
            assert_eq!(case.expect_leak, !case.leak_functions.is_empty());
        }
        // Shapes are only ever added: the suite must never shrink below the cases that
        // issue 5 set (8 leaks among 26), whatever later issues add.
        assert!(all.iter().filter(|case| case.expect_leak).count() >= 8);
        assert!(all.iter().filter(|case| !case.expect_leak).count() >= 18);
    }

    /// Check that the short form keeps every leak hidden among busy waiters and its
    /// steady twins, leaks and steady shapes of both kinds, and nothing that needs a
    /// head start.
    #[test]
    fn quick_form_keeps_the_fast_cases() {
        let quick: Vec<Case> = cases(&AccuracyArgs::quick())
            .into_iter()
            .filter(Case::fast)
            .collect();
        for busy in busy_site_cases() {
            assert!(quick.iter().any(|c| c.name == busy.name), "{}", busy.name);
        }
        for kind in [Kind::Thread, Kind::Goroutine] {
            assert!(quick.iter().any(|c| c.kind == kind && c.expect_leak));
            assert!(quick.iter().any(|c| c.kind == kind && !c.expect_leak));
        }
        assert!(quick.iter().all(|c| c.start != Start::Early));
        assert!(quick.len() >= 30, "{}", quick.len());
    }

    #[test]
    fn multi_site_leak_needs_every_site() {
        let case = cases(&args())
            .into_iter()
            .find(|case| case.name == "threads/multi-site-leak")
            .unwrap();
        let report = json!({"processes": [{"pid": 7, "verdict": "leak", "sites": [
            site("leak", &["__futex_abstimed_wait_common", "leak_multi_condvar"]),
            site("ok", &["__lll_lock_wait", "leak_multi_mutex"]),
            site("leak", &["pthread_rwlock_rdlock", "leak_multi_rwlock"]),
            site("leak", &["pthread_cond_wait", "busy_pool_wait_for_job"]),
        ]}]});
        let outcome = evaluate(&case, 7, &report);
        assert_eq!(outcome.got, "leak");
        assert_eq!(outcome.found, 2);
        assert!(!outcome.correct(&case));
        assert_eq!(outcome.misses, ["leak_multi_mutex: because"]);
        assert_eq!(
            outcome.wrong_sites,
            ["thread busy_pool_wait_for_job (because)"]
        );
    }

    /// Check that a process missing from the report is wrong for every case: a missed
    /// leak, and a steady case that leakscope did not see at all.
    #[test]
    fn absent_process_is_never_correct() {
        let all = cases(&args());
        let report = json!({"processes": []});
        for case in &all {
            let outcome = evaluate(case, 1, &report);
            assert_eq!(outcome.got, "absent");
            assert!(!outcome.correct(case), "{}", case.name);
        }
    }

    #[test]
    fn site_label_skips_waiting_machinery() {
        let go = site(
            "ok",
            &[
                "runtime.gopark",
                "runtime.chanrecv1",
                "main.idlePoolWaitForJob",
            ],
        );
        assert_eq!(site_label(&go), "main.idlePoolWaitForJob");
        let c = site(
            "ok",
            &[
                "__futex_abstimed_wait_common",
                "pthread_cond_wait@@GLIBC_2.3.2",
            ],
        );
        assert_eq!(site_label(&c), "__futex_abstimed_wait_common");
    }
}
