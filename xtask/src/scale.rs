//! `cargo xtask bench`'s scale section: what leakscope costs where leaks have grown
//! large, a Go process with a million parked goroutines and hosts with thousands of
//! processes.
//!
//! Every figure is CPU-seconds (utime + stime, from wait4 or /proc/PID/stat) and resident
//! memory (VmRSS, and the peak VmHWM / ru_maxrss): other programs on the machine slow a
//! run down but do not change these. Runs are scoped with `--pid` to the bench's own
//! programs, so that other programs on a shared machine (compilers, other tests) do not
//! count in leakscope's figures.
//!
//! Workloads: `tracer-user/tests/programs/go/benchparked` (N goroutines parked on one
//! channel receive, K more leaking per second in `main.leakScale`) and
//! `tracer-user/tests/programs/threadfarm.c` (THREADS idle threads, optionally one more
//! leaking every LEAK_MS in `farm_leak_lock`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use test_support::daemon::Daemon;
use test_support::go::GoBuild;
use test_support::process::Running;
use test_support::programs::Program;
use test_support::{http, procfs};

use crate::bench::GO_VERSION;

/// The daemon may use at most this share of one core on average.
const DAEMON_CPU_BUDGET_PERCENT: f64 = 5.0;
/// ...and this much resident memory (peak).
const DAEMON_RSS_BUDGET_MIB: f64 = 128.0;
/// A diagnosis may use at most this much resident memory (peak)...
const DIAGNOSE_RSS_BUDGET_MIB: f64 = 256.0;
/// ...and end at most this long after its duration.
const DIAGNOSE_OVERRUN_BUDGET_S: f64 = 5.0;
/// The daemon reports the big leak within this long of starting.
const FIRST_REPORT_BUDGET_S: f64 = 60.0;
/// Resident memory at the end of a daemon run over that at a quarter of it: "flat".
const RSS_FLAT_BUDGET_RATIO: f64 = 1.10;
/// Growth with the work: cost ratio over work ratio at most this ("linear or better",
/// with room for fixed costs measured with noise).
const GROWTH_BUDGET: f64 = 1.25;

/// Leaks per second of the big Go process.
const GO_LEAKS_PER_SEC: u32 = 100;
/// Threads of each small process (with its main thread).
const FARM_THREADS: u32 = 20;
/// The leaking processes among the many: threads leaking one every 2 s...
const FARM_THREAD_LEAKERS: usize = 3;
const FARM_THREAD_LEAK_MS: &str = "2000";
/// ...and Go processes leaking one goroutine a second.
const FARM_GO_LEAKERS: usize = 2;
/// Every diagnosis watches this long.
const DIAGNOSE_SECONDS: u32 = 15;
/// Bytes in a MiB, for figures.
const MIB: f64 = (1 << 20) as f64;

/// One printed figure and its verdict.
struct Row {
    figure: String,
    value: String,
    budget: String,
    pass: Option<bool>,
}

impl Row {
    fn new(figure: impl Into<String>, value: impl Into<String>) -> Self {
        Row {
            figure: figure.into(),
            value: value.into(),
            budget: String::new(),
            pass: None,
        }
    }

    fn budget(mut self, budget: impl Into<String>, pass: bool) -> Self {
        self.budget = budget.into();
        self.pass = Some(pass);
        self
    }
}

/// Programs the bench started: killed (and reaped) when dropped.
#[derive(Default)]
struct Fleet {
    children: Vec<Running>,
}

impl Fleet {
    fn spawn(&mut self, command: &mut Command) -> Result<u32> {
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let name = test_support::describe(command);
        let running = Running::start(name, command)?;
        let pid = running.pid();
        self.children.push(running);
        Ok(pid)
    }
}

impl Drop for Fleet {
    /// Every process is sent SIGKILL first, so thousands of them exit together rather
    /// than one after the other as each is dropped (and reaped).
    fn drop(&mut self) {
        for running in &mut self.children {
            if running.exited().is_none() {
                // SAFETY: kill has no memory-safety preconditions; the pid is an
                // unreaped child's, so it cannot have been reused.
                unsafe { libc::kill(running.pid() as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// What one `leakscope diagnose` cost and said.
struct DiagnoseRun {
    cpu_s: f64,
    peak_rss_mib: f64,
    wall_s: f64,
    report: Value,
}

impl DiagnoseRun {
    /// CPU per scan: one scan a second.
    fn cpu_per_scan_ms(&self) -> f64 {
        self.cpu_s * 1000.0 / f64::from(DIAGNOSE_SECONDS + 1)
    }

    /// Pids the report calls leaking.
    fn leaking(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.report["processes"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|p| p["verdict"] == "leak")
            .filter_map(|p| p["pid"].as_u64().map(|pid| pid as u32))
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Whether the report calls `pid` leaking at a site whose stack names `function`.
    fn leaks_at(&self, pid: u32, function: &str) -> bool {
        self.report["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["pid"].as_u64() == Some(u64::from(pid)) && p["verdict"] == "leak")
            .flat_map(|p| p["sites"].as_array().into_iter().flatten())
            .filter(|s| s["verdict"] == "leak")
            .any(|s| {
                s["stack"].as_array().into_iter().flatten().any(|f| {
                    f["function"]
                        .as_str()
                        .is_some_and(|name| name.ends_with(function))
                })
            })
    }
}

/// Runs `leakscope diagnose --json` over `pids`; CPU and peak memory from wait4.
fn diagnose(leakscope: &Path, pids: &[u32], log_dir: &Path, name: &str) -> Result<DiagnoseRun> {
    let out_path = log_dir.join(format!("{name}.json"));
    let mut command = Command::new(leakscope);
    command
        .args([
            "diagnose",
            "--json",
            "--duration",
            &DIAGNOSE_SECONDS.to_string(),
        ])
        .args(
            pids.iter()
                .flat_map(|pid| ["--pid".to_string(), pid.to_string()]),
        )
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(log_dir.join(format!("{name}.stderr")))?);
    let started = Instant::now();
    let child = command.spawn().context("cannot start leakscope diagnose")?;
    let (status, usage) = wait4(child.id())?;
    let wall_s = started.elapsed().as_secs_f64();
    // 0: no leak, 1: a leak; anything else is a failed diagnosis.
    if !matches!(status, 0 | 1) {
        bail!(
            "leakscope diagnose ({name}) exited with {status}; see {}",
            log_dir.display()
        );
    }
    let text = std::fs::read_to_string(&out_path)?;
    Ok(DiagnoseRun {
        cpu_s: usage.0,
        peak_rss_mib: usage.1,
        wall_s,
        report: serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", out_path.display()))?,
    })
}

/// Waits for a child; returns its exit code (128+signal) and (CPU seconds, peak RSS MiB).
fn wait4(pid: u32) -> Result<(i32, (f64, f64))> {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a status word and an rusage owned by this frame.
    let got = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if got != pid as libc::pid_t {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((
        code,
        (
            secs(usage.ru_utime) + secs(usage.ru_stime),
            usage.ru_maxrss as f64 / 1024.0,
        ),
    ))
}

/// What a daemon run cost, sampled every few seconds.
struct DaemonRun {
    seconds: f64,
    cpu_percent: f64,
    rss_max_mib: f64,
    hwm_mib: f64,
    /// RSS at the end over RSS at a quarter of the run.
    rss_growth: f64,
    /// Seconds until every expected leak was reported, if it was.
    all_reported_s: Option<f64>,
}

/// Runs `leakscope run` over `pids` for `seconds`; `reported` tells from the metrics
/// text whether every expected leak is reported.
fn daemon(
    leakscope: &Path,
    pids: &[u32],
    seconds: u64,
    log_dir: &Path,
    reported: impl Fn(&str) -> bool,
) -> Result<DaemonRun> {
    let mut daemon = Daemon::start(leakscope, log_dir, |command| {
        for pid in pids {
            command.args(["--pid", &pid.to_string()]);
        }
    })?;
    let started = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut all_reported_s = None;
    let mut last = procfs::Usage::default();
    while started.elapsed().as_secs() < seconds {
        thread::sleep(Duration::from_secs(2));
        let t = started.elapsed().as_secs_f64();
        last = procfs::usage(daemon.pid()).with_context(|| {
            format!(
                "the daemon exited ({:?}); see {}",
                daemon.process().exited(),
                daemon.log_path().display()
            )
        })?;
        samples.push((t, last.rss_bytes as f64 / MIB));
        let metrics = daemon.get("/metrics");
        if all_reported_s.is_none() && metrics.is_ok_and(|(_, text)| reported(&text)) {
            all_reported_s = Some(t);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let at = |fraction: f64| {
        samples
            .iter()
            .find(|(t, _)| *t >= seconds * fraction)
            .map_or(0.0, |s| s.1)
    };
    Ok(DaemonRun {
        seconds,
        cpu_percent: last.cpu_s / seconds * 100.0,
        rss_max_mib: samples.iter().map(|s| s.1).fold(0.0, f64::max),
        hwm_mib: last.peak_rss_bytes as f64 / MIB,
        rss_growth: samples.last().map_or(0.0, |s| s.1) / at(0.25).max(1.0),
        all_reported_s,
    })
}

/// Builds the workloads into `bin_dir`: the Go parked-goroutine program and threadfarm.
fn build(bin_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let parked = GoBuild::plain(GO_VERSION, "benchparked")
        .build(bin_dir)
        .context("building the parked-goroutine workload")?;
    let farm = Program::ThreadFarm
        .build(bin_dir)
        .context("building threadfarm")?;
    Ok((parked, farm))
}

/// A Go process of a million parked goroutines, leaking [`GO_LEAKS_PER_SEC`] more, for
/// the slowdown rows measured beside it; killed when dropped.
pub struct BigGoProcess {
    _fleet: Fleet,
    pub pid: u32,
}

impl BigGoProcess {
    pub fn start(bench_dir: &Path) -> Result<Self> {
        let bin_dir = bench_dir.join("scale");
        std::fs::create_dir_all(&bin_dir)
            .with_context(|| format!("cannot create {}", bin_dir.display()))?;
        let (parked, _) = build(&bin_dir)?;
        let mut fleet = Fleet::default();
        let pid = start_parked(&mut fleet, &parked, 1_000_000, GO_LEAKS_PER_SEC)?;
        Ok(Self { _fleet: fleet, pid })
    }
}

/// Starts `parked N LEAKS` and waits for its "ready" line.
fn start_parked(fleet: &mut Fleet, parked: &Path, goroutines: u32, leaks: u32) -> Result<u32> {
    let mut command = Command::new(parked);
    command
        .args([goroutines.to_string(), leaks.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut running = Running::start(format!("parked {goroutines}"), &mut command)?;
    let stdout = running.take_stdout().context("parked: no stdout")?;
    let pid = running.pid();
    fleet.children.push(running);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("ready") {
        bail!("parked {goroutines}: no ready line (got {line:?})");
    }
    Ok(pid)
}

/// 40,000 threads need more thread ids than the default 32,768.
fn ensure_pid_space(needed: u64) -> Result<()> {
    let path = "/proc/sys/kernel/pid_max";
    let current: u64 = std::fs::read_to_string(path)?.trim().parse()?;
    let want = (needed * 2).max(current);
    if current < want {
        println!("scale: raising kernel.pid_max from {current} to {want} for the thread farm");
        std::fs::write(path, want.to_string()).context("cannot raise kernel.pid_max")?;
    }
    Ok(())
}

/// Thread ids in use on the host now.
fn threads_in_use() -> u64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Starts `count` threadfarm processes, the first ones leaking; waits until each runs
/// all its threads. Returns (all pids, leaking pids).
fn start_farm(
    fleet: &mut Fleet,
    farm: &Path,
    parked: &Path,
    count: usize,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut leakers = Vec::new();
    for _ in 0..FARM_THREAD_LEAKERS {
        leakers.push(fleet.spawn(
            Command::new(farm).args([(FARM_THREADS - 1).to_string(), FARM_THREAD_LEAK_MS.into()]),
        )?);
    }
    for _ in 0..FARM_GO_LEAKERS {
        leakers.push(fleet.spawn(Command::new(parked).args(["20", "1"]))?);
    }
    let mut pids = leakers.clone();
    for _ in leakers.len()..count {
        pids.push(fleet.spawn(Command::new(farm).arg((FARM_THREADS - 1).to_string()))?);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for &pid in &pids[FARM_THREAD_LEAKERS + FARM_GO_LEAKERS..] {
        while procfs::thread_count(pid).unwrap_or(0) < u64::from(FARM_THREADS) {
            if Instant::now() > deadline {
                bail!("threadfarm {pid} did not start its threads within 120 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    leakers.sort_unstable();
    Ok((pids, leakers))
}

/// How a cost grows against the work: PASS when cost ratio <= work ratio x GROWTH_BUDGET.
fn growth_row(figure: String, base: f64, cost: f64, work_ratio: f64, unit: &str) -> Row {
    let ratio = cost / base.max(f64::MIN_POSITIVE);
    Row::new(
        figure,
        format!("{cost:.1} {unit} (x{ratio:.2} for x{work_ratio:.0} work)"),
    )
    .budget(
        format!("<= x{:.1}", work_ratio * GROWTH_BUDGET),
        ratio <= work_ratio * GROWTH_BUDGET,
    )
}

fn daemon_rows(rows: &mut Vec<Row>, what: &str, run: &DaemonRun) {
    rows.push(
        Row::new(
            format!("{what}: daemon avg CPU over {:.0} s", run.seconds),
            format!("{:.2}% of one core", run.cpu_percent),
        )
        .budget(
            format!("<= {DAEMON_CPU_BUDGET_PERCENT}%"),
            run.cpu_percent <= DAEMON_CPU_BUDGET_PERCENT,
        ),
    );
    rows.push(
        Row::new(
            format!("{what}: daemon peak RSS (VmHWM)"),
            format!("{:.1} MiB (VmRSS max {:.1})", run.hwm_mib, run.rss_max_mib),
        )
        .budget(
            format!("<= {DAEMON_RSS_BUDGET_MIB} MiB"),
            run.hwm_mib <= DAEMON_RSS_BUDGET_MIB,
        ),
    );
    rows.push(
        Row::new(
            format!("{what}: daemon RSS end / at 25%"),
            format!("{:.3}", run.rss_growth),
        )
        .budget(
            format!("<= {RSS_FLAT_BUDGET_RATIO}"),
            run.rss_growth <= RSS_FLAT_BUDGET_RATIO,
        ),
    );
    rows.push(
        Row::new(
            format!("{what}: daemon reports every leak after"),
            run.all_reported_s
                .map_or("never".to_string(), |s| format!("{s:.0} s")),
        )
        .budget(
            format!("<= {FIRST_REPORT_BUDGET_S} s"),
            run.all_reported_s
                .is_some_and(|s| s <= FIRST_REPORT_BUDGET_S),
        ),
    );
}

/// The goroutine part: diagnoses of 10k, 100k and 1M parked goroutines, then the daemon
/// watching the 1M process.
fn goroutine_rows(
    (rows, printed): (&mut Vec<Row>, &mut usize),
    leakscope: &Path,
    parked: &Path,
    log_dir: &Path,
    daemon_seconds: u64,
) -> Result<()> {
    let mut base: Option<DiagnoseRun> = None;
    for goroutines in [10_000u32, 100_000, 1_000_000] {
        let mut fleet = Fleet::default();
        let pid = start_parked(&mut fleet, parked, goroutines, GO_LEAKS_PER_SEC)?;
        let name = format!("goroutines-{goroutines}");
        let run = diagnose(leakscope, &[pid], log_dir, &name)?;
        let label = format!("{}k goroutines", goroutines / 1000);
        rows.push(Row::new(
            format!("{label}: diagnose CPU per scan"),
            format!(
                "{:.1} ms ({:.2} s CPU in all)",
                run.cpu_per_scan_ms(),
                run.cpu_s
            ),
        ));
        rows.push(Row::new(
            format!("{label}: diagnose peak RSS"),
            format!("{:.1} MiB", run.peak_rss_mib),
        ));
        rows.push(
            Row::new(format!("{label}: verdict"), verdict_text(&run, pid)).budget(
                "leak at main.leakScale",
                run.leaks_at(pid, "main.leakScale"),
            ),
        );
        if let Some(base) = &base {
            let work = f64::from(goroutines) / 10_000.0;
            rows.push(growth_row(
                format!("{label}: CPU per scan vs 10k"),
                base.cpu_per_scan_ms(),
                run.cpu_per_scan_ms(),
                work,
                "ms",
            ));
        }
        if goroutines == 1_000_000 {
            rows.push(
                Row::new(
                    "1000k goroutines: diagnose wall time",
                    format!("{:.1} s for --duration {DIAGNOSE_SECONDS}", run.wall_s),
                )
                .budget(
                    format!(
                        "<= {} s",
                        f64::from(DIAGNOSE_SECONDS) + DIAGNOSE_OVERRUN_BUDGET_S
                    ),
                    run.wall_s <= f64::from(DIAGNOSE_SECONDS) + DIAGNOSE_OVERRUN_BUDGET_S,
                ),
            );
            rows.push(
                Row::new(
                    "1000k goroutines: diagnose peak RSS",
                    format!("{:.1} MiB", run.peak_rss_mib),
                )
                .budget(
                    format!("<= {DIAGNOSE_RSS_BUDGET_MIB} MiB"),
                    run.peak_rss_mib <= DIAGNOSE_RSS_BUDGET_MIB,
                ),
            );
            println!("scale: daemon watching the 1M-goroutine process for {daemon_seconds} s");
            let daemon_run = daemon(leakscope, &[pid], daemon_seconds, log_dir, |text| {
                http::site_leak(text, pid, "leakScale")
            })?;
            daemon_rows(rows, "1000k goroutines", &daemon_run);
        }
        if base.is_none() {
            base = Some(run);
        }
        print_new_rows(rows, printed);
    }
    Ok(())
}

fn verdict_text(run: &DiagnoseRun, pid: u32) -> String {
    if run.leaks_at(pid, "main.leakScale") {
        "leak at main.leakScale".into()
    } else if run.leaking().contains(&pid) {
        "leak, elsewhere".into()
    } else {
        "no leak".into()
    }
}

/// The process part: diagnoses of 100, 1,000 and 2,000 processes of 20 threads, then the
/// daemon watching the 2,000.
fn process_rows(
    (rows, printed): (&mut Vec<Row>, &mut usize),
    leakscope: &Path,
    (parked, farm): (&Path, &Path),
    log_dir: &Path,
    daemon_seconds: u64,
) -> Result<()> {
    let mut base: Option<DiagnoseRun> = None;
    for count in [100usize, 1000, 2000] {
        ensure_pid_space(threads_in_use() + (count as u64 + 100) * u64::from(FARM_THREADS))?;
        let mut fleet = Fleet::default();
        let (pids, leakers) = start_farm(&mut fleet, farm, parked, count)?;
        let run = diagnose(leakscope, &pids, log_dir, &format!("processes-{count}"))?;
        let label = format!("{count} processes");
        rows.push(Row::new(
            format!("{label}: diagnose CPU per scan"),
            format!(
                "{:.1} ms ({:.2} s CPU in all)",
                run.cpu_per_scan_ms(),
                run.cpu_s
            ),
        ));
        rows.push(Row::new(
            format!("{label}: diagnose peak RSS"),
            format!("{:.1} MiB", run.peak_rss_mib),
        ));
        let found = run.leaking();
        rows.push(
            Row::new(
                format!("{label}: leaking processes found"),
                format!(
                    "{} of {} leakers, {} others",
                    found.iter().filter(|p| leakers.contains(p)).count(),
                    leakers.len(),
                    found.iter().filter(|p| !leakers.contains(p)).count()
                ),
            )
            .budget("exactly the leakers", found == leakers),
        );
        if let Some(base) = &base {
            let work = count as f64 / 100.0;
            rows.push(growth_row(
                format!("{label}: CPU per scan vs 100"),
                base.cpu_per_scan_ms(),
                run.cpu_per_scan_ms(),
                work,
                "ms",
            ));
        }
        if count == 2000 {
            println!("scale: daemon watching {count} processes for {daemon_seconds} s");
            let daemon_run = daemon(leakscope, &pids, daemon_seconds, log_dir, |text| {
                leakers.iter().all(|&pid| {
                    http::site_leak(text, pid, "farm_leak_lock")
                        || http::site_leak(text, pid, "leakScale")
                })
            })?;
            daemon_rows(rows, "2000 processes", &daemon_run);
        }
        if base.is_none() {
            base = Some(run);
        }
        print_new_rows(rows, printed);
    }
    Ok(())
}

/// Prints the rows not printed yet; `printed` counts those already printed.
fn print_new_rows(rows: &[Row], printed: &mut usize) {
    for row in &rows[(*printed).min(rows.len())..] {
        println!(
            "  {:<50} {:<46} {:<24} {}",
            row.figure,
            row.value,
            row.budget,
            match row.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "",
            }
        );
    }
    *printed = rows.len();
}

/// Runs the scale section and prints its table; returns the figures over their budget,
/// each with its value and budget (empty when every budget held).
pub fn scale(leakscope: &Path, bench_dir: &Path, long: bool) -> Result<Vec<String>> {
    let daemon_seconds = if long { 600 } else { 120 };
    let bin_dir = bench_dir.join("scale");
    let log_dir = bench_dir.join("scale-logs");
    for dir in [&bin_dir, &log_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (parked, farm) = build(&bin_dir)?;
    println!(
        "\nscale: leakscope over big Go processes and many processes; CPU-seconds and resident memory \
         (robust to other load on the machine); logs in {}",
        log_dir.display()
    );
    let mut rows = Vec::new();
    let mut printed = 0;
    goroutine_rows(
        (&mut rows, &mut printed),
        leakscope,
        &parked,
        &log_dir,
        daemon_seconds,
    )?;
    process_rows(
        (&mut rows, &mut printed),
        leakscope,
        (&parked, &farm),
        &log_dir,
        daemon_seconds.min(300),
    )?;
    println!("\nscale summary");
    println!(
        "  {:<50} {:<46} {:<24} verdict",
        "figure", "measured", "budget"
    );
    print_new_rows(&rows, &mut 0);
    let failed = failed_rows(&rows);
    if failed.is_empty() {
        println!("\nPASS: every scale figure is within its budget");
    } else {
        println!("\nFAIL: {}", failed.join("; "));
    }
    Ok(failed)
}

/// The rows over their budget, as "figure: value, budget B".
fn failed_rows(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|row| row.pass == Some(false))
        .map(|row| format!("{}: {}, budget {}", row.figure, row.value, row.budget))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a scale figure over its budget is named, with its value and budget,
    /// among the failures the bench exits on; figures without a budget never fail.
    #[test]
    fn rows_over_budget_are_named() {
        let rows = [
            Row::new("daemon avg CPU", "6.1% of one core").budget("<= 5%", false),
            Row::new("daemon peak RSS", "90 MiB").budget("<= 128 MiB", true),
            Row::new("diagnose CPU per scan", "8 ms"),
        ];
        assert_eq!(
            failed_rows(&rows),
            ["daemon avg CPU: 6.1% of one core, budget <= 5%"]
        );
    }

    #[test]
    fn growth_within_linear_passes() {
        assert_eq!(
            growth_row("x".into(), 1.0, 9.0, 10.0, "ms").pass,
            Some(true)
        );
        assert_eq!(
            growth_row("x".into(), 1.0, 30.0, 10.0, "ms").pass,
            Some(false)
        );
    }
}
