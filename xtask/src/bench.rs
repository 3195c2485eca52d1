//! `cargo xtask bench`: how much slower futex-heavy programs and Go programs run
//! while `leakscope diagnose` watches the whole host.
//!
//! Each workload is a program that takes SECONDS as its only argument, runs that
//! long and prints one line `<metric_key> <float>` (higher is better). The bench
//! runs it alone and with leakscope watching, interleaved in pairs so that drift
//! in the machine's speed hits both sides alike, and compares medians with the
//! workload's budget. New workloads are new entries in [`workloads`].
//!
//! The Go workloads (`tracer-user/tests/programs/go/bench*`) are built with Go
//! [`GO_VERSION`], fetched into `target/go/<version>` by `scripts/fetch-go.sh`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use test_support::go::GoBuild;
use test_support::process::Running;
use test_support::programs::{Program, build_into};

use crate::setup::setup;
use crate::util::{cargo, describe, run, target_dir};

/// The default overhead budget: leakscope watching the host may slow a workload
/// by at most this much.
const BUDGET_SLOWDOWN_PERCENT: f64 = 5.0;

/// The budget for the Go HTTP server: a service doing real work per request
/// must barely notice leakscope.
const HTTP_BUDGET_SLOWDOWN_PERCENT: f64 = 2.0;

/// The Go toolchain the Go workloads are built with.
pub const GO_VERSION: &str = "1.26.6";

/// Head start leakscope gets before the workload starts, so the measured run is
/// traced from its beginning rather than while the kernel programs still load.
const LEAKSCOPE_ATTACH_GRACE: Duration = Duration::from_secs(1);

/// leakscope watches this much longer than the workload runs: the attach grace
/// plus a second of margin at the end, so the whole run is watched.
const LEAKSCOPE_EXTRA_SECONDS: u32 = 2;

/// Length of the unmeasured run before each workload's measured ones.
const WARM_UP_SECONDS: u32 = 1;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Seconds each workload run lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Alone/with-leakscope pairs per workload; medians are taken over these.
    /// Default: each workload's own count (5 for the steady ones, more for the
    /// noisy ones). Over budget with fewer than 5 is a failure: too few to tell noise.
    #[arg(long)]
    pairs: Option<u32>,
    /// Run only this workload (repeatable), e.g. `--workload gohttp`; skips the scale
    /// section.
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Only the scale section (a million parked goroutines, thousands of processes).
    #[arg(long, conflicts_with_all = ["workloads", "no_scale"])]
    scale_only: bool,
    /// Skip the scale section (it takes about 8 minutes, 18 with --long).
    #[arg(long)]
    no_scale: bool,
    /// Watch with the daemon for 10 minutes in the scale section (default 2).
    #[arg(long)]
    long: bool,
    /// Also run the slowdown rows beside a Go process of a million parked goroutines
    /// (the default when the whole bench runs; with --workload, only when asked).
    #[arg(long, conflicts_with = "scale_only")]
    beside_big_process: bool,
}

/// A benchmark program and how to build it.
struct Workload {
    name: &'static str,
    /// What the throughput number counts, for the table header.
    unit: &'static str,
    /// The first word of the output line carrying the throughput.
    metric_key: &'static str,
    /// The command building the workload's binary into the given output path
    /// (fetching a toolchain first when needed).
    build: fn(output: &Path) -> Result<Command, test_support::Error>,
    /// Run all the workload's threads on one CPU. For a two-thread hand-off on a
    /// small machine, unpinned throughput is bimodal (it varied 20k-100k round
    /// trips/s on 2 cores, depending on whether both threads landed on one core),
    /// which drowns a 5% budget; pinned it is steady within a few percent.
    pin_to_one_cpu: bool,
    /// Most slowdown allowed with leakscope watching, in percent.
    budget_slowdown_percent: f64,
    /// Alone/with-leakscope pairs when `--pairs` is not given: more for the
    /// workloads whose run-to-run spread is a sizeable part of their budget.
    default_pairs: u32,
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "pingpong",
            unit: "round trips/s",
            metric_key: "round_trips_per_sec",
            build: |output| Ok(Program::PingPong.command(output)),
            pin_to_one_cpu: true,
            budget_slowdown_percent: BUDGET_SLOWDOWN_PERCENT,
            // The fewest whose noise interval counts (MIN_PAIRS_FOR_NOISE).
            default_pairs: 5,
        },
        Workload {
            // Two goroutine pairs handing a token over unbuffered channels: the
            // scheduler's park/ready path at full speed, leakscope's worst case
            // among Go programs.
            name: "gopingpong",
            unit: "round trips/s",
            metric_key: "round_trips_per_sec",
            build: |output| GoBuild::plain(GO_VERSION, "benchpingpong").command(output),
            // Pinned, like the C ping-pong: on one CPU the Go scheduler runs both
            // pairs on one thread (GOMAXPROCS follows the affinity), a steady
            // hand-off; unpinned, hand-offs between the 2 Ps wake idle threads
            // through futexes and the rate swung 1.8M-4.9M round trips/s from run
            // to run.
            pin_to_one_cpu: true,
            budget_slowdown_percent: BUDGET_SLOWDOWN_PERCENT,
            default_pairs: 5,
        },
        Workload {
            // net/http server on loopback plus 16 keep-alive clients in one
            // process: netpoller waits, channel hand-offs and goroutines coming
            // and going, as in a real Go service.
            name: "gohttp",
            unit: "requests/s",
            metric_key: "requests_per_sec",
            build: |output| GoBuild::plain(GO_VERSION, "benchhttp").command(output),
            // Pinned too, though a server is meant to use every CPU: on this
            // 2-CPU class of machine, unpinned throughput is bimodal (30k or 50k
            // requests/s alone, depending on whether anything else wants a CPU;
            // 42k-55k on a quiet machine), a spread 10-20 times the 2% budget,
            // and leakscope's own CPU time would be measured as a slowdown of the
            // server. Pinned (GOMAXPROCS follows the affinity to 1), runs spread
            // about +-5% and what is measured is leakscope's effect on the
            // process it watches, leakscope itself running on the other CPU.
            pin_to_one_cpu: true,
            budget_slowdown_percent: HTTP_BUDGET_SLOWDOWN_PERCENT,
            // Still the noisiest workload for its budget: more pairs.
            default_pairs: 21,
        },
    ]
}

/// Whether leakscope was watching during a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Alone,
    WithLeakscope,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Alone => "alone",
            Mode::WithLeakscope => "with leakscope",
        }
    }
}

/// The medians of one workload's runs and their verdict against the budget.
struct Summary {
    /// The workload's name, and what else the host ran (e.g. "gohttp beside 1M").
    workload: String,
    unit: &'static str,
    budget_slowdown_percent: f64,
    median_alone: f64,
    median_with: f64,
    /// Alone/with-leakscope pairs measured.
    pairs: usize,
    /// 90% interval of the slowdown (percent), bootstrapped over pairs: how far run-to-run
    /// noise alone could move the estimate.
    slowdown_interval: (f64, f64),
}

/// Fewest pairs whose bootstrap interval is taken as a measure of noise: the median of
/// fewer takes so few distinct values over resamples that its "90% interval" says
/// little. Over budget with fewer pairs is a failure (run more `--pairs`).
const MIN_PAIRS_FOR_NOISE: usize = 5;

/// How far above the budget the noise interval may reach for an over-budget estimate to
/// pass as noise: wider, the run cannot tell a slowdown within budget from one twice
/// as large, and proves nothing either way.
const NOISE_REACH_OVER_BUDGET: f64 = 2.0;

/// A workload's slowdown judged against its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judgement {
    /// The estimate is within the budget.
    Pass,
    /// The estimate is over, but the 90% interval (from enough pairs) reaches below the
    /// budget and not far above it: run-to-run noise explains the excess. A pass,
    /// flagged.
    WithinNoise,
    /// Even the low end of the interval is over the budget.
    OverBudget,
    /// The estimate is over and the run cannot say more: too few pairs for an
    /// interval, or an interval too wide to bound the slowdown. Not shown within
    /// budget, so a failure.
    Inconclusive,
}

impl Judgement {
    fn label(self) -> &'static str {
        match self {
            Judgement::Pass => "PASS",
            Judgement::WithinNoise => "WITHIN NOISE",
            Judgement::OverBudget => "OVER BUDGET",
            Judgement::Inconclusive => "INCONCLUSIVE",
        }
    }

    fn passes(self) -> bool {
        matches!(self, Judgement::Pass | Judgement::WithinNoise)
    }
}

/// Judges a slowdown `estimate` (percent) with its 90% `interval` from `pairs` pairs
/// against `budget` (percent).
fn judge_slowdown(estimate: f64, interval: (f64, f64), pairs: usize, budget: f64) -> Judgement {
    let (low, high) = interval;
    if estimate <= budget {
        Judgement::Pass
    } else if pairs < MIN_PAIRS_FOR_NOISE || !low.is_finite() || !high.is_finite() {
        Judgement::Inconclusive
    } else if low > budget {
        Judgement::OverBudget
    } else if high <= budget * NOISE_REACH_OVER_BUDGET {
        Judgement::WithinNoise
    } else {
        Judgement::Inconclusive
    }
}

impl Summary {
    /// Throughput with leakscope relative to alone: 1.0 means no cost.
    fn ratio(&self) -> f64 {
        self.median_with / self.median_alone
    }

    fn slowdown_percent(&self) -> f64 {
        (1.0 - self.ratio()) * 100.0
    }

    fn judgement(&self) -> Judgement {
        judge_slowdown(
            self.slowdown_percent(),
            self.slowdown_interval,
            self.pairs,
            self.budget_slowdown_percent,
        )
    }

    /// Why this row fails the bench, if it does: names the figure.
    fn failure(&self) -> Option<String> {
        let judgement = self.judgement();
        (!judgement.passes()).then(|| {
            format!(
                "{}: slowdown {:.1}% (90% interval {:.1}%..{:.1}%, {} pairs) over its {}% budget, {}",
                self.workload,
                self.slowdown_percent(),
                self.slowdown_interval.0,
                self.slowdown_interval.1,
                self.pairs,
                self.budget_slowdown_percent,
                judgement.label()
            )
        })
    }
}

/// Fails the bench naming every figure over its budget: the slowdown rows' and the
/// scale section's.
fn check_budgets(summaries: &[Summary], scale_failures: &[String]) -> Result<()> {
    let failures: Vec<String> = summaries
        .iter()
        .filter_map(Summary::failure)
        .chain(scale_failures.iter().cloned())
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("bench: over budget:\n  {}", failures.join("\n  "))
    }
}

/// A 90% bootstrap interval of the slowdown (percent) of `with` against `alone`, the ratio
/// of medians recomputed over pairs drawn with replacement (fixed seed: reproducible).
fn slowdown_interval(alone: &[f64], with: &[f64]) -> (f64, f64) {
    let n = alone.len().min(with.len());
    if n < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut slowdowns: Vec<f64> = (0..2000)
        .map(|_| {
            let picks: Vec<usize> = (0..n).map(|_| next()).collect();
            let mut a: Vec<f64> = picks.iter().map(|&i| alone[i]).collect();
            let mut w: Vec<f64> = picks.iter().map(|&i| with[i]).collect();
            (1.0 - median(&mut w) / median(&mut a)) * 100.0
        })
        .collect();
    slowdowns.sort_by(f64::total_cmp);
    (slowdowns[100], slowdowns[1899])
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.seconds == 0 || args.pairs == Some(0) {
        bail!("bench: --seconds and --pairs must be at least 1");
    }
    let all = workloads();
    for name in &args.workloads {
        if !all.iter().any(|workload| workload.name == name) {
            let names: Vec<&str> = all.iter().map(|workload| workload.name).collect();
            bail!(
                "bench: no workload {name:?} (there are {})",
                names.join(", ")
            );
        }
    }
    let selected: Vec<Workload> = all
        .into_iter()
        .filter(|workload| {
            args.workloads.is_empty() || args.workloads.iter().any(|name| name == workload.name)
        })
        .filter(|_| !args.scale_only)
        .collect();
    setup()?;
    run(cargo().args(["build", "--release", "-p", "tracer-user"]))?;
    let leakscope = target_dir().join("release/leakscope");
    let bench_dir = bench_dir();
    std::fs::create_dir_all(&bench_dir)
        .with_context(|| format!("cannot create {}", bench_dir.display()))?;

    let beside_big = args.beside_big_process
        || (args.workloads.is_empty() && !args.no_scale && !args.scale_only);
    let mut summaries = measure_workloads(&selected, args, &leakscope, &bench_dir, "")?;
    if beside_big && !selected.is_empty() {
        // The same rows beside a Go process of a million parked goroutines, which every
        // scan of the watching `diagnose` reads.
        let big = crate::scale::BigGoProcess::start(&bench_dir)?;
        println!(
            "
the same workloads beside pid {} (1,000,000 goroutines parked, leaking more)",
            big.pid
        );
        summaries.extend(measure_workloads(
            &selected,
            args,
            &leakscope,
            &bench_dir,
            " beside 1M",
        )?);
    }
    if !summaries.is_empty() {
        print_summary(&summaries);
    }
    let mut scale_failures = Vec::new();
    if !args.no_scale && args.workloads.is_empty() {
        scale_failures = crate::scale::scale(&leakscope, &bench_dir, args.long)?;
    }
    check_budgets(&summaries, &scale_failures)
}

/// Runs each workload alone and watched, in pairs; `beside` names what else the host
/// runs (appended to the workload's name in the summary).
fn measure_workloads(
    selected: &[Workload],
    args: &BenchArgs,
    leakscope: &Path,
    bench_dir: &Path,
    beside: &'static str,
) -> Result<Vec<Summary>> {
    let mut summaries = Vec::new();
    for workload in selected {
        let binary = bench_dir.join(workload.name);
        build_into(&binary, workload.build)
            .with_context(|| format!("building the {} workload", workload.name))?;
        let pairs = args.pairs.unwrap_or(workload.default_pairs);

        // Discarded: the first run after a build pays for page faults, cold caches
        // and CPU frequency ramp-up (it came out a third slower than the rest).
        run_workload(workload, &binary, WARM_UP_SECONDS)
            .with_context(|| format!("warm-up run of {}", workload.name))?;

        println!(
            "\n{}{beside}: {} s per run, {pairs} pairs, leakscope watching the whole host{}",
            workload.name,
            args.seconds,
            if workload.pin_to_one_cpu {
                "; pinned to one CPU"
            } else {
                ""
            }
        );
        println!("{:<6} {:<16} {:>16}", "pair", "mode", workload.unit);
        let mut alone = Vec::new();
        let mut with = Vec::new();
        for pair in 1..=pairs {
            for mode in [Mode::Alone, Mode::WithLeakscope] {
                let throughput = match mode {
                    Mode::Alone => run_workload(workload, &binary, args.seconds)?,
                    Mode::WithLeakscope => {
                        let stem =
                            format!("{}{}-pair{pair}", workload.name, beside.replace(' ', "-"));
                        let log_stem = bench_dir.join(stem);
                        run_with_leakscope(workload, &binary, args.seconds, leakscope, &log_stem)?
                    }
                };
                println!("{pair:<6} {:<16} {throughput:>16.1}", mode.label());
                match mode {
                    Mode::Alone => alone.push(throughput),
                    Mode::WithLeakscope => with.push(throughput),
                }
            }
        }
        let slowdown_interval = slowdown_interval(&alone, &with);
        summaries.push(Summary {
            workload: format!("{}{beside}", workload.name),
            unit: workload.unit,
            budget_slowdown_percent: workload.budget_slowdown_percent,
            pairs: alone.len().min(with.len()),
            median_alone: median(&mut alone),
            median_with: median(&mut with),
            slowdown_interval,
        });
    }

    Ok(summaries)
}

fn print_summary(summaries: &[Summary]) {
    println!("\nbudget: the most a workload may slow down with leakscope watching");
    println!(
        "{:<20} {:<16} {:>14} {:>14} {:>7} {:>9} {:>17} {:>7}  verdict",
        "workload",
        "unit",
        "median alone",
        "median with",
        "ratio",
        "slowdown",
        "90% interval",
        "budget"
    );
    for summary in summaries {
        println!(
            "{:<20} {:<16} {:>14.1} {:>14.1} {:>7.3} {:>8.1}% {:>7.1}%..{:>6.1}% {:>6.1}%  {}",
            summary.workload,
            summary.unit,
            summary.median_alone,
            summary.median_with,
            summary.ratio(),
            summary.slowdown_percent(),
            summary.slowdown_interval.0,
            summary.slowdown_interval.1,
            summary.budget_slowdown_percent,
            summary.judgement().label()
        );
    }
    let with = |judgement: Judgement| -> Vec<&str> {
        summaries
            .iter()
            .filter(|summary| summary.judgement() == judgement)
            .map(|summary| summary.workload.as_str())
            .collect()
    };
    let noisy = with(Judgement::WithinNoise);
    if !noisy.is_empty() {
        println!(
            "\nWITHIN NOISE (a pass): {}: the estimate is over budget, but the 90% interval \
             reaches below the budget and at most {NOISE_REACH_OVER_BUDGET}x above it; run more --pairs",
            noisy.join(", ")
        );
    }
    let inconclusive = with(Judgement::Inconclusive);
    if !inconclusive.is_empty() {
        println!(
            "\nINCONCLUSIVE (a failure): {}: the estimate is over budget, and fewer than \
             {MIN_PAIRS_FOR_NOISE} pairs or a noise interval reaching past {NOISE_REACH_OVER_BUDGET}x \
             the budget cannot show otherwise; run more --pairs on a quieter machine",
            inconclusive.join(", ")
        );
    }
    let over = with(Judgement::OverBudget);
    if !over.is_empty() {
        println!(
            "\nOVER BUDGET: {} slowed by more than its budget, beyond noise",
            over.join(", ")
        );
    }
    if summaries
        .iter()
        .all(|summary| summary.judgement() == Judgement::Pass)
    {
        println!("\nPASS: every workload is within its budget");
    }
}

/// Runs the workload for `seconds` and returns its reported throughput.
fn run_workload(workload: &Workload, binary: &Path, seconds: u32) -> Result<f64> {
    let mut command = Command::new(binary);
    command.arg(seconds.to_string());
    if workload.pin_to_one_cpu {
        pin_to_last_allowed_cpu(&mut command)?;
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run `{}`", describe(&command)))?;
    if !output.status.success() {
        bail!("`{}` failed ({})", describe(&command), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_metric(&stdout, workload.metric_key)
        .with_context(|| format!("reading the output of `{}`:\n{stdout}", describe(&command)))
}

/// Makes `command` run on one CPU: the highest-numbered one this process may use
/// (CPU 0 usually takes the most interrupts). Threads inherit the affinity.
fn pin_to_last_allowed_cpu(command: &mut Command) -> Result<()> {
    use std::os::unix::process::CommandExt;

    // SAFETY: cpu_set_t is plain bits; zeroed is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is a valid cpu_set_t of the size passed.
    let got = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) };
    if got != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
    }
    let cpu = (0..libc::CPU_SETSIZE as usize)
        .rev()
        // SAFETY: cpu is below CPU_SETSIZE, the set's capacity.
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &allowed) })
        .context("this process may run on no CPU")?;
    // SAFETY: the hook runs between fork and exec and only calls
    // sched_setaffinity, which is async-signal-safe (a plain syscall).
    unsafe {
        command.pre_exec(move || {
            let mut only = std::mem::zeroed::<libc::cpu_set_t>();
            libc::CPU_SET(cpu, &mut only);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &only) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Finds the line `<metric_key> <float>` in a workload's output.
fn parse_metric(stdout: &str, metric_key: &str) -> Result<f64> {
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(metric_key) {
            let value = words.next().context("metric line has no value")?;
            return value
                .parse()
                .with_context(|| format!("metric value {value:?} is not a number"));
        }
    }
    bail!("no `{metric_key} <number>` line")
}

/// Runs the workload while `leakscope diagnose` watches the whole host, and
/// returns the workload's throughput. leakscope's output goes to
/// `<log_stem>.report` and `<log_stem>.stderr`: a host-wide report can be large
/// and is only needed when something goes wrong.
fn run_with_leakscope(
    workload: &Workload,
    binary: &Path,
    seconds: u32,
    leakscope: &Path,
    log_stem: &Path,
) -> Result<f64> {
    let report_path = log_stem.with_extension("report");
    let stderr_path = log_stem.with_extension("stderr");
    let watch_s = seconds + LEAKSCOPE_EXTRA_SECONDS;
    let mut watcher = start_watcher(leakscope, watch_s, &report_path, &stderr_path)?;
    thread::sleep(LEAKSCOPE_ATTACH_GRACE);
    if let Some(status) = watcher.exited() {
        bail!(
            "leakscope exited ({status}) before the workload started; see {}",
            stderr_path.display()
        );
    }
    let throughput = run_workload(workload, binary, seconds)?;
    // Killed on return if it hangs: a diagnosis ends within its duration plus a start-up
    // and a last scan, never a minute later.
    let status = watcher
        .wait_timeout(Duration::from_secs(u64::from(watch_s) + 60))
        .with_context(|| {
            format!(
                "leakscope diagnose still running a minute past its {watch_s} s; see {}",
                stderr_path.display()
            )
        })?;
    // 0 (no leak) and 1 (leak found somewhere on the host) are both normal
    // diagnoses; anything else means leakscope did not really watch.
    if !matches!(status.code(), Some(0 | 1)) {
        bail!(
            "leakscope diagnose failed ({status}) during the {} run; see {}",
            workload.name,
            stderr_path.display()
        );
    }
    Ok(throughput)
}

/// A background `leakscope diagnose` of the whole host for `duration_s`, its report in
/// `report_path` and its stderr in `stderr_path`; killed if the bench bails out early, so
/// it does not keep tracing the host.
fn start_watcher(
    leakscope: &Path,
    duration_s: u32,
    report_path: &Path,
    stderr_path: &Path,
) -> Result<Running> {
    let mut command = Command::new(leakscope);
    command
        .args(["diagnose", "--duration", &duration_s.to_string()])
        .stdout(create(report_path)?)
        .stderr(create(stderr_path)?);
    Ok(Running::start("leakscope diagnose", &mut command)?)
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// The median; sorts `values` in place. Callers pass at least one value.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// Where the bench keeps its binaries and leakscope logs.
fn bench_dir() -> PathBuf {
    target_dir().join("xtask-bench")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn parse_metric_finds_the_keyed_line() {
        let out = "warming up\nround_trips_per_sec 23308.7\n";
        assert_eq!(parse_metric(out, "round_trips_per_sec").unwrap(), 23308.7);
        assert!(parse_metric("nothing here\n", "round_trips_per_sec").is_err());
    }

    fn summary(alone: f64, with: f64, interval: (f64, f64), pairs: usize) -> Summary {
        Summary {
            workload: "gohttp beside 1M".into(),
            unit: "requests/s",
            budget_slowdown_percent: HTTP_BUDGET_SLOWDOWN_PERCENT,
            median_alone: alone,
            median_with: with,
            pairs,
            slowdown_interval: interval,
        }
    }

    /// Check that the slowdown is relative to the run alone, and that an over-budget
    /// figure fails the bench (the error `cargo xtask bench` exits non-zero with),
    /// naming the figure; within budget it passes.
    #[test]
    fn a_figure_over_budget_fails_the_bench_by_name() {
        let within = summary(100.0, 99.0, (0.2, 1.8), 21);
        assert!((within.slowdown_percent() - 1.0).abs() < 1e-9);
        check_budgets(&[within], &[]).unwrap();

        let over = summary(100.0, 96.0, (3.0, 5.0), 21);
        let error = check_budgets(&[summary(100.0, 99.0, (0.2, 1.8), 21), over], &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("gohttp beside 1M: slowdown 4.0%") && error.contains("OVER BUDGET"),
            "{error}"
        );

        let scale = ["daemon avg CPU: 6.1% of one core, budget <= 5%".to_string()];
        let error = check_budgets(&[], &scale).unwrap_err().to_string();
        assert!(error.contains("daemon avg CPU"), "{error}");
    }

    /// Check the judgement of an over-budget estimate: within noise only when enough
    /// pairs give an interval that reaches below the budget and not past twice it;
    /// otherwise over budget (beyond noise) or inconclusive, both failures.
    #[test]
    fn over_budget_passes_as_noise_only_when_the_interval_covers_the_budget() {
        let budget = 2.0;
        assert_eq!(
            judge_slowdown(1.9, (f64::NAN, f64::NAN), 1, budget),
            Judgement::Pass
        );
        assert_eq!(
            judge_slowdown(2.5, (1.0, 3.5), 21, budget),
            Judgement::WithinNoise
        );
        assert_eq!(
            judge_slowdown(2.5, (2.1, 3.5), 21, budget),
            Judgement::OverBudget
        );
        // Noise so wide it cannot tell 2% from 4%: not shown within budget.
        assert_eq!(
            judge_slowdown(2.5, (-3.0, 9.0), 21, budget),
            Judgement::Inconclusive
        );
        // Too few pairs, or one pair (no interval at all), measure no noise.
        assert_eq!(
            judge_slowdown(2.5, (1.0, 3.5), 3, budget),
            Judgement::Inconclusive
        );
        assert_eq!(
            judge_slowdown(2.5, (f64::NAN, f64::NAN), 1, budget),
            Judgement::Inconclusive
        );
        for judgement in [Judgement::OverBudget, Judgement::Inconclusive] {
            assert!(!judgement.passes(), "{judgement:?}");
        }
        let noisy = summary(100.0, 97.5, (1.0, 3.5), 21);
        assert_eq!(noisy.failure(), None);
        let unsure = summary(100.0, 97.5, (1.0, 3.5), 3);
        assert!(unsure.failure().unwrap().contains("INCONCLUSIVE"));
    }

    #[test]
    fn slowdown_interval_brackets_the_estimate_and_widens_with_noise() {
        let alone = [100.0, 101.0, 99.0, 100.0, 100.5, 99.5, 100.0];
        let with = [98.0, 99.0, 97.0, 98.0, 98.5, 97.5, 98.0];
        let (lo, hi) = slowdown_interval(&alone, &with);
        assert!(lo <= 2.0 && 2.0 <= hi && hi - lo < 2.0, "{lo}..{hi}");
        let noisy_with = [80.0, 120.0, 90.0, 110.0, 98.0, 70.0, 125.0];
        let (lo, hi) = slowdown_interval(&alone, &noisy_with);
        assert!(hi - lo > 10.0, "{lo}..{hi}");
    }

    #[test]
    fn workload_names_are_unique_and_budgets_positive() {
        let all = workloads();
        for (i, workload) in all.iter().enumerate() {
            assert!(workload.budget_slowdown_percent > 0.0, "{}", workload.name);
            // Fewer would make any over-budget estimate a failure, noise or not.
            assert!(
                workload.default_pairs as usize >= MIN_PAIRS_FOR_NOISE,
                "{}",
                workload.name
            );
            assert!(
                all[i + 1..].iter().all(|other| other.name != workload.name),
                "duplicate workload {}",
                workload.name
            );
        }
    }
}
