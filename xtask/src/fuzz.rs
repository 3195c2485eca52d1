//! `cargo xtask fuzz`: runs each fuzz target of `fuzz/` (cargo-fuzz, libFuzzer, nightly)
//! for a bounded time from what the repository keeps for it: `fuzz/seeds/TARGET` (inputs
//! made by `make_seeds.py`, growth programs that reach the code's size bounds, and
//! every input that once found a bug) and `fuzz/corpus/TARGET` (the minimised corpus of
//! earlier runs). New inputs go to `target/fuzz-corpus/TARGET`; `--minimise` merges them
//! into `fuzz/corpus/` (libFuzzer's `-merge=1`, as `cargo fuzz cmin` runs it, keeping
//! only inputs that add coverage beyond the seeds), bounded in bytes per target.
//!
//! Each target runs with a per-input timeout of a few seconds (the slowest legitimate
//! input's time with room for a loaded machine) and the RSS limit of leakscope's memory
//! budget, so a slow input or a memory blow-up is a crash: its input is left in
//! `fuzz/artifacts/TARGET` and the task fails. Built without a sanitizer (safe Rust; the
//! RSS limit then measures leakscope, not ASan's shadow memory), with debug assertions
//! and overflow checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::util::{describe, run, target_dir, workspace_root};

/// One fuzz target and its limits.
pub struct Target {
    pub name: &'static str,
    /// Seconds one input may take: a few times the slowest legitimate input (the
    /// largest grown seed) measured here, well under the 10 s a hang would take.
    pub timeout_s: u32,
    /// Largest input libFuzzer makes (grown inputs are short programs: the size they
    /// reach is the target's own bound).
    pub max_len: usize,
    /// libFuzzer's RSS limit (and, by default, its limit on one allocation).
    pub rss_limit_mb: u32,
}

const fn target(name: &'static str, timeout_s: u32, max_len: usize) -> Target {
    Target {
        name,
        timeout_s,
        max_len,
        rss_limit_mb: RSS_LIMIT_MB,
    }
}

/// Every target in fuzz/Cargo.toml. Timeouts: see the README's Fuzzing section for the
/// slowest seed of each as measured.
pub const TARGETS: [Target; 17] = [
    target("go_binary", 3, 64 << 10),
    target("pclntab", 2, 64 << 10),
    target("buildinfo", 2, 8 << 10),
    target("layout_dwarf", 3, 64 << 10),
    target("allgadd", 2, 8 << 10),
    // The reader keeps about 64 bytes per goroutine a table lists (its pointer, its
    // place in address order, its slot, its read range when no neighbour merges with
    // it), 4M at most: 260 MB, beside the 48 MiB of the fake process's memory (seed
    // grow-4m-scattered: 311 MB).
    Target {
        rss_limit_mb: 384,
        ..target("goroutines", 5, 16 << 10)
    },
    target("labels", 2, 8 << 10),
    target("go_frames", 3, 64 << 10),
    target("eh_frame_unwind", 3, 64 << 10),
    target("elf_file", 3, 64 << 10),
    target("proc_maps", 3, 8 << 10),
    target("proc_threads", 2, 8 << 10),
    target("cgroup", 2, 8 << 10),
    target("render", 4, 8 << 10),
    target("http_head", 2, 8 << 10),
    target("web_config", 3, 8 << 10),
    target("kernel_records", 2, 8 << 10),
];

/// libFuzzer's RSS limit of most targets: the 256 MiB leakscope's budget allows a whole
/// `diagnose` (README, Cost at scale). One parser holding more, for one process's
/// input, is a bug.
const RSS_LIMIT_MB: u32 = 256;

/// Bytes of minimised corpus kept per target in the repository (smallest inputs first).
const CORPUS_BYTES_PER_TARGET: u64 = 128 << 10;
/// The kept corpus is run whole before fuzzing starts, in every run: inputs slower than
/// this (grown to megabytes; the seeds keep such inputs) are left out, and all of a
/// target's together take at most [`CORPUS_TOTAL_MS`], so a 10 s run still fuzzes.
const CORPUS_INPUT_MS: u64 = 10;
const CORPUS_TOTAL_MS: u64 = 1000;

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Afterwards, merge what the runs found into fuzz/corpus/ (minimised, bounded).
    #[arg(long)]
    pub minimise: bool,
    /// Targets to run (default: all).
    pub targets: Vec<String>,
}

/// Fewest inputs a target must run per second of fuzzing. The slowest targets here run
/// a few hundred a second (those whose inputs grow to 16-48 MiB, with libFuzzer told to
/// spend less time on inputs that take long: see the table `cargo xtask fuzz` prints); a
/// run below this fuzzed nothing to speak of (a target that returns early, a corpus it
/// cannot load, inputs that all take a tenth of a second, a build that is not the
/// fuzzer) and must not pass as a clean run.
const MIN_EXECS_PER_SECOND: u64 = 50;

/// What one target's run did, from libFuzzer's final stats.
struct TargetRun {
    target: &'static Target,
    seconds: f64,
    execs: u64,
    slowest_s: u64,
    peak_rss_mb: u64,
}

/// The least a run of `seconds` must execute: at least one input whatever the time.
fn min_execs(seconds: u64) -> u64 {
    (seconds * MIN_EXECS_PER_SECOND).max(1)
}

/// Why a run that exited cleanly still fails: libFuzzer's final stats missing, or fewer
/// inputs than the floor.
fn too_few_execs(target: &str, execs: Option<u64>, seconds: u64) -> Option<String> {
    let floor = min_execs(seconds);
    match execs {
        None => Some(format!(
            "fuzz target {target}: libFuzzer printed no stat::number_of_executed_units, so \
             nothing shows it fuzzed at all"
        )),
        Some(execs) if execs < floor => Some(format!(
            "fuzz target {target} ran {execs} inputs in {seconds} s, fewer than the floor of \
             {floor} ({MIN_EXECS_PER_SECOND}/s)"
        )),
        Some(_) => None,
    }
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    let targets: Vec<&'static Target> = if args.targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        args.targets
            .iter()
            .map(|name| {
                TARGETS.iter().find(|t| t.name == name).with_context(|| {
                    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                    format!("no fuzz target {name}; targets: {}", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    ensure_cargo_fuzz()?;
    let fuzz_dir = workspace_root().join("fuzz");
    // One build of every target first, so the timed runs measure fuzzing only.
    run(nightly_fuzz(&fuzz_dir).args(["build", "-O", "-s", "none"]))?;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for target in &targets {
        let (run, failure) = run_target(&fuzz_dir, target, args.seconds)?;
        runs.push(run);
        failures.extend(failure);
    }
    print_runs(&runs);
    if !failures.is_empty() {
        bail!("fuzzing failed:\n  {}", failures.join("\n  "));
    }
    if args.minimise {
        for target in &targets {
            minimise(&fuzz_dir, target)?;
        }
    }
    Ok(())
}

fn print_runs(runs: &[TargetRun]) {
    println!(
        "\n{:<16} {:>7} {:>11} {:>8} {:>10} {:>8} {:>9}",
        "target", "seconds", "execs", "execs/s", "slowest s", "timeout", "peak MiB"
    );
    for r in runs {
        println!(
            "{:<16} {:>7.1} {:>11} {:>8.0} {:>10} {:>8} {:>9}",
            r.target.name,
            r.seconds,
            r.execs,
            r.execs as f64 / r.seconds.max(0.001),
            r.slowest_s,
            r.target.timeout_s,
            r.peak_rss_mb
        );
    }
}

/// `cargo +nightly fuzz` in the fuzz crate, with nothing of the stable build's
/// environment that would change how it compiles.
fn nightly_fuzz(fuzz_dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("+nightly")
        .arg("fuzz")
        .current_dir(fuzz_dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO");
    command
}

/// `cargo fuzz run` of `target` over `dirs` (the first is written to) with the target's
/// limits; scratch files (web_config's) go to a directory removed afterwards.
fn fuzz_run(fuzz_dir: &Path, target: &Target, dirs: &[PathBuf], extra: &[String]) -> Command {
    let mut command = nightly_fuzz(fuzz_dir);
    command
        .args(["run", "-O", "-s", "none", target.name])
        .args(dirs.iter().filter(|d| d.is_dir()))
        .arg("--")
        .arg(format!("-timeout={}", target.timeout_s))
        .arg(format!("-rss_limit_mb={}", target.rss_limit_mb))
        .arg(format!("-max_len={}", target.max_len))
        // Less mutation energy for inputs that take long (grown ones, tens of ms): the
        // fuzzer still reaches the bounds, and spends most runs on quick inputs.
        .arg("-entropic_scale_per_exec_time=1")
        .args(extra)
        .env("TMPDIR", scratch_dir());
    command
}

fn scratch_dir() -> PathBuf {
    target_dir().join("fuzz-tmp")
}

fn corpus_dir(fuzz_dir: &Path, target: &Target) -> PathBuf {
    fuzz_dir.join("corpus").join(target.name)
}

fn working_corpus(target: &Target) -> PathBuf {
    target_dir().join("fuzz-corpus").join(target.name)
}

/// Installs cargo-fuzz (crates.io) when `cargo fuzz` is missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz");
    run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// Runs one target; fails at once on a crash, a timeout or the RSS limit, and returns,
/// beside the run, why it fails the task though it exited cleanly (too few inputs), so
/// every target still runs.
fn run_target(
    fuzz_dir: &Path,
    target: &'static Target,
    seconds: u64,
) -> Result<(TargetRun, Option<String>)> {
    // The run's own finds only: what earlier runs found is kept (minimised, bounded in
    // bytes and time) in fuzz/corpus by --minimise, not carried over whole, so a long
    // run's slow inputs never weigh on the next.
    let working = working_corpus(target);
    let _ = std::fs::remove_dir_all(&working);
    for dir in [&working, &scratch_dir()] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let dirs = [
        working,
        corpus_dir(fuzz_dir, target),
        fuzz_dir.join("seeds").join(target.name),
    ];
    let extra = [
        format!("-max_total_time={seconds}"),
        "-print_final_stats=1".to_string(),
        // Inputs of a second or more are noted (fuzz/artifacts/TARGET/slow-unit-*) and
        // counted in the slowest-input figure; past the timeout they fail the run.
        "-report_slow_units=1".to_string(),
    ];
    let mut command = fuzz_run(fuzz_dir, target, &dirs, &extra);
    println!("xtask: {}", describe(&command));
    let start = Instant::now();
    let output = command
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    let _ = std::fs::remove_dir_all(scratch_dir());
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {} failed ({}); its input is in fuzz/artifacts/{}:\n{}",
            target.name,
            output.status,
            target.name,
            tail.join("\n")
        );
    }
    let execs = final_stat(&stderr, "number_of_executed_units");
    let run = TargetRun {
        target,
        seconds: start.elapsed().as_secs_f64(),
        execs: execs.unwrap_or(0),
        slowest_s: final_stat(&stderr, "slowest_unit_time_sec").unwrap_or(0),
        peak_rss_mb: final_stat(&stderr, "peak_rss_mb").unwrap_or(0),
    };
    Ok((run, too_few_execs(target.name, execs, seconds)))
}

/// One of libFuzzer's final stats (`-print_final_stats=1`), if it printed it.
fn final_stat(stderr: &str, name: &str) -> Option<u64> {
    let prefix = format!("stat::{name}:");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
}

/// Replaces `fuzz/corpus/TARGET` with the inputs of it and of the working corpus that
/// add coverage beyond the seeds (libFuzzer `-merge=1` into a copy of the seeds), then
/// keeps the smallest up to [`CORPUS_BYTES_PER_TARGET`].
fn minimise(fuzz_dir: &Path, target: &Target) -> Result<()> {
    let merged = target_dir().join("fuzz-merge").join(target.name);
    let _ = std::fs::remove_dir_all(&merged);
    std::fs::create_dir_all(&merged)?;
    std::fs::create_dir_all(scratch_dir())?;
    let seeds = fuzz_dir.join("seeds").join(target.name);
    let seed_names = copy_files(&seeds, &merged)?;
    let kept = corpus_dir(fuzz_dir, target);
    let dirs = [merged.clone(), kept.clone(), working_corpus(target)];
    let mut command = fuzz_run(fuzz_dir, target, &dirs, &["-merge=1".to_string()]);
    let result = run(command.stdout(Stdio::null()));
    let _ = std::fs::remove_dir_all(scratch_dir());
    result?;
    for name in &seed_names {
        std::fs::remove_file(merged.join(name))?;
    }
    let mut inputs: Vec<(u64, PathBuf)> = std::fs::read_dir(&merged)?
        .map(|entry| {
            let entry = entry?;
            Ok((entry.metadata()?.len(), entry.path()))
        })
        .collect::<std::io::Result<_>>()?;
    inputs.sort();
    let times = exec_times_ms(fuzz_dir, target, &inputs)?;
    let _ = std::fs::remove_dir_all(&kept);
    std::fs::create_dir_all(&kept)?;
    let (mut bytes, mut ms, mut files, mut dropped) = (0u64, 0u64, 0usize, 0usize);
    for (len, path) in inputs {
        let took = times.get(&path).copied().unwrap_or(u64::MAX);
        if took > CORPUS_INPUT_MS
            || bytes + len > CORPUS_BYTES_PER_TARGET
            || ms + took > CORPUS_TOTAL_MS
        {
            dropped += 1;
            continue;
        }
        std::fs::copy(&path, kept.join(path.file_name().context("file name")?))?;
        (bytes, ms, files) = (bytes + len, ms + took, files + 1);
    }
    println!(
        "xtask: fuzz/corpus/{}: {files} inputs, {bytes} bytes, {ms} ms to run ({dropped} over \
         {CORPUS_INPUT_MS} ms each or the bounds of {} KiB and {CORPUS_TOTAL_MS} ms left out)",
        target.name,
        CORPUS_BYTES_PER_TARGET >> 10
    );
    Ok(())
}

/// How long the target takes on each input, in ms, run once each as libFuzzer runs
/// files named on its command line ("Executed PATH in N ms").
fn exec_times_ms(
    fuzz_dir: &Path,
    target: &Target,
    inputs: &[(u64, PathBuf)],
) -> Result<std::collections::HashMap<PathBuf, u64>> {
    let binary = fuzz_dir
        .join("target/x86_64-unknown-linux-gnu/release")
        .join(target.name);
    std::fs::create_dir_all(scratch_dir())?;
    let mut times = std::collections::HashMap::new();
    for chunk in inputs.chunks(512) {
        let mut command = Command::new(&binary);
        command
            .args(chunk.iter().map(|(_, path)| path))
            .arg(format!("-timeout={}", target.timeout_s))
            .arg(format!("-rss_limit_mb={}", target.rss_limit_mb))
            .env("TMPDIR", scratch_dir())
            .stdout(Stdio::null());
        let output = command
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
        if !output.status.success() {
            bail!(
                "{} failed on an input of its corpus ({})",
                target.name,
                output.status
            );
        }
        times.extend(executed_ms(&String::from_utf8_lossy(&output.stderr)));
    }
    let _ = std::fs::remove_dir_all(scratch_dir());
    Ok(times)
}

/// The "Executed PATH in N ms" lines of libFuzzer running files.
fn executed_ms(stderr: &str) -> Vec<(PathBuf, u64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let (path, ms) = line.strip_prefix("Executed ")?.rsplit_once(" in ")?;
            Some((PathBuf::from(path), ms.strip_suffix(" ms")?.parse().ok()?))
        })
        .collect()
}

/// Copies the files of `from` (if it exists) into `to`; their names.
fn copy_files(from: &Path, to: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(names);
    };
    for entry in entries {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        names.push(entry.file_name());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a clean exit with no inputs run, too few, or no final stats at all
    /// fails, naming the target, and a real run passes.
    #[test]
    fn a_target_that_ran_no_inputs_fails() {
        let stats = "INFO: Seed: 1\nstat::number_of_executed_units: 0\nstat::peak_rss_mb: 40\n";
        assert_eq!(final_stat(stats, "number_of_executed_units"), Some(0));
        assert_eq!(final_stat(stats, "peak_rss_mb"), Some(40));
        let zero =
            too_few_execs("pclntab", final_stat(stats, "number_of_executed_units"), 5).unwrap();
        assert!(zero.contains("pclntab ran 0 inputs"), "{zero}");
        assert!(too_few_execs("pclntab", Some(249), 5).is_some());
        assert_eq!(too_few_execs("pclntab", Some(250), 5), None);
        let silent = too_few_execs(
            "http_head",
            final_stat("Done.\n", "number_of_executed_units"),
            5,
        )
        .unwrap();
        assert!(
            silent.contains("no stat::number_of_executed_units"),
            "{silent}"
        );
        assert_eq!(min_execs(0), 1);
    }

    /// Check that libFuzzer's time of each file run is read, and nothing else.
    #[test]
    fn times_of_files_run() {
        let stderr = "Running: /c/a b\nExecuted /c/a b in 12 ms\n\
                      Executed /c/x in 0 ms\n#1 pulse\nExecuted /c/y in ms\n";
        assert_eq!(
            executed_ms(stderr),
            [(PathBuf::from("/c/a b"), 12), (PathBuf::from("/c/x"), 0)]
        );
    }

    /// Check that every target of fuzz/Cargo.toml is run, and nothing else.
    #[test]
    fn every_target_of_the_fuzz_crate_runs() {
        let manifest = include_str!("../../fuzz/Cargo.toml");
        let mut declared: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|bin| {
                bin.lines()
                    .find_map(|l| l.strip_prefix("name = \""))?
                    .strip_suffix('"')
            })
            .collect();
        let mut listed: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        declared.sort_unstable();
        listed.sort_unstable();
        assert_eq!(declared, listed);
    }
}
