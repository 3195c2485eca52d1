//! `cargo xtask fuzz`: runs each fuzz target of `fuzz/` (cargo-fuzz, libFuzzer, nightly)
//! for a bounded time, starting from the seeds kept in `fuzz/seeds/TARGET` (small inputs
//! and every input that once found a bug). New inputs libFuzzer finds go to
//! `target/fuzz-corpus/TARGET`, outside the repository; a crash leaves its input in
//! `fuzz/artifacts/TARGET` and fails the task.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::util::{describe, run, target_dir, workspace_root};

/// Every target in fuzz/Cargo.toml.
pub const TARGETS: [&str; 11] = [
    "go_binary",
    "pclntab",
    "buildinfo",
    "layout_dwarf",
    "allgadd",
    "goroutines",
    "labels",
    "eh_frame_unwind",
    "proc_maps",
    "cgroup",
    "http_head",
];

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Targets to run (default: all).
    pub targets: Vec<String>,
}

/// Fewest inputs a target must run per second of fuzzing. The slowest target here runs
/// thousands a second (see the table `cargo xtask fuzz` prints); a run far below this
/// fuzzed nothing to speak of (a target that returns early, a corpus it cannot load, a
/// build that is not the fuzzer) and must not pass as a clean run.
const MIN_EXECS_PER_SECOND: u64 = 50;

/// What one target's run did.
struct TargetRun {
    target: String,
    seconds: f64,
    execs: u64,
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
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets.clone()
    };
    if let Some(unknown) = targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        bail!("no fuzz target {unknown}; targets: {}", TARGETS.join(", "));
    }
    ensure_cargo_fuzz()?;
    let fuzz_dir = workspace_root().join("fuzz");
    // One build of every target first, so the timed runs measure fuzzing only.
    run(nightly_fuzz(&fuzz_dir).args(["build", "-O"]))?;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for target in &targets {
        let (run, failure) = run_target(&fuzz_dir, target, args.seconds)?;
        runs.push(run);
        failures.extend(failure);
    }
    println!(
        "\n{:<18} {:>8} {:>14} {:>10}",
        "target", "seconds", "execs", "execs/s"
    );
    for r in &runs {
        println!(
            "{:<18} {:>8.1} {:>14} {:>10.0}",
            r.target,
            r.seconds,
            r.execs,
            r.execs as f64 / r.seconds.max(0.001)
        );
    }
    if !failures.is_empty() {
        bail!("fuzzing failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
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

/// Runs one target; fails at once on a crash, and returns, beside the run, why it fails
/// the task though it exited cleanly (too few inputs), so every target still runs.
fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<(TargetRun, Option<String>)> {
    let corpus = target_dir().join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds = fuzz_dir.join("seeds").join(target);
    let mut command = nightly_fuzz(fuzz_dir);
    command
        .args(["run", "-O", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A slow input is a finding too (a hang in the product); so is a memory bomb.
        .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]);
    println!("xtask: {}", describe(&command));
    let start = Instant::now();
    let output = command
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} failed ({}); its input is in fuzz/artifacts/{target}:\n{}",
            output.status,
            tail.join("\n")
        );
    }
    let execs = executed_units(&stderr);
    let run = TargetRun {
        target: target.to_string(),
        seconds: start.elapsed().as_secs_f64(),
        execs: execs.unwrap_or(0),
    };
    Ok((run, too_few_execs(target, execs, seconds)))
}

/// libFuzzer's count of inputs run (`-print_final_stats=1`), if it printed one.
fn executed_units(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a clean exit with no inputs run, too few, or no final stats at all
    /// fails, naming the target, and a real run passes.
    #[test]
    fn a_target_that_ran_no_inputs_fails() {
        let stats = "INFO: Seed: 1\nstat::number_of_executed_units: 0\nstat::peak_rss_mb: 40\n";
        assert_eq!(executed_units(stats), Some(0));
        let zero = too_few_execs("pclntab", executed_units(stats), 5).unwrap();
        assert!(zero.contains("pclntab ran 0 inputs"), "{zero}");
        assert!(too_few_execs("pclntab", Some(249), 5).is_some());
        assert_eq!(too_few_execs("pclntab", Some(250), 5), None);
        let silent = too_few_execs("http_head", executed_units("Done.\n"), 5).unwrap();
        assert!(
            silent.contains("no stat::number_of_executed_units"),
            "{silent}"
        );
        assert_eq!(min_execs(0), 1);
    }
}
