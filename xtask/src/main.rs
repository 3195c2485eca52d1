//! `cargo xtask <task>`: setting up, building, testing, linting, benchmarking and
//! running leakscope.
//!
//! Depends on no tracer-* crate on purpose: it must build before clang-19 (which
//! tracer-ebpf's build script needs) is installed, since `setup` installs it.

mod accuracy;
mod bench;
mod cpio;
mod fuzz;
mod go_layouts;
mod kernels;
mod kubernetes;
mod scale;
mod setup;
mod soak;
mod systemd;
mod util;

use std::process::{Command, ExitCode};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::util::{cargo, exit_code_of, is_root, run, status, target_dir, workspace_root};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "leakscope's development tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Install what building and running leakscope needs (clang-19, libbpf-dev).
    Setup,
    /// Set up, build the workspace and run every test, then `kernels`, `systemd`, a
    /// short soak and every fuzz target (needs root).
    Test,
    /// Check formatting and run clippy with warnings as errors.
    Lint,
    /// Build leakscope (release) and run `leakscope diagnose` with these arguments.
    // No help flag of its own, so `cargo xtask diagnose --help` shows leakscope's.
    #[command(disable_help_flag = true)]
    Diagnose {
        /// Passed to `leakscope diagnose` unchanged, e.g. `--duration 30 --json`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Regenerate tracer-ebpf/src/bpf/vmlinux.h from this kernel's BTF.
    Vmlinux,
    /// Measure how much leakscope watching the host slows futex-heavy programs.
    Bench(bench::BenchArgs),
    /// Run every leak and steady shape at once, diagnose them with one
    /// `leakscope diagnose` and print recall and false alarms (needs root).
    Accuracy(accuracy::AccuracyArgs),
    /// Run each fuzz target (fuzz/, cargo-fuzz on nightly) for a bounded time from its
    /// seeds; fails on any crash, hang or memory blow-up.
    Fuzz(fuzz::FuzzArgs),
    /// Regenerate tracer-user/src/sources/go/layouts.json (Go runtime layouts per version)
    /// by building a probe with each supported Go toolchain and reading its DWARF.
    GoLayouts(go_layouts::GoLayoutsArgs),
    /// Boot Debian 12's kernels (6.1, 6.12) under qemu and check leakscope's verdicts
    /// there, with each thread source (needs root).
    Kernels(kernels::KernelsArgs),
    /// Run the release daemon for a while against churning, partly hostile processes
    /// and check it stays healthy, flat in memory and finds every leak (needs root).
    Soak(soak::SoakArgs),
    /// Check the Kubernetes manifests (deploy/kubernetes) offline against the
    /// Kubernetes and prometheus-operator schemas and the DaemonSet's promises.
    Kubernetes {
        /// First regenerate deploy/kubernetes/prometheusrule.yaml from
        /// deploy/prometheus/rules.yml.
        #[arg(long)]
        write: bool,
    },
    /// Score deploy/systemd/leakscope.service with systemd-analyze, then boot a Debian
    /// with systemd as PID 1 under qemu, install leakscope as the README says and check
    /// the unit finds leaks, stops cleanly and needs each capability it keeps (needs root).
    Systemd(systemd::SystemdArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_task(cli.task) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_task(task: Task) -> Result<ExitCode> {
    match task {
        Task::Setup => setup::setup()?,
        Task::Test => test()?,
        Task::Lint => lint()?,
        Task::Diagnose { args } => return diagnose(&args),
        Task::Vmlinux => vmlinux()?,
        Task::Bench(args) => bench::bench(&args)?,
        Task::Accuracy(args) => return accuracy::accuracy(&args),
        Task::GoLayouts(args) => go_layouts::go_layouts(&args)?,
        Task::Kernels(args) => kernels::kernels(&args)?,
        Task::Soak(args) => soak::soak(&args)?,
        Task::Systemd(args) => systemd::systemd(&args)?,
        Task::Fuzz(args) => fuzz::fuzz(&args)?,
        Task::Kubernetes { write } => kubernetes::kubernetes(write)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn test() -> Result<()> {
    // Check first: a non-root run would otherwise build everything and then fail
    // test by test.
    if !is_root() {
        bail!(
            "`cargo xtask test` needs root: the integration tests load eBPF programs and read \
             other processes' memory"
        );
    }
    setup::setup()?;
    // Seconds, and independent of any build: a broken manifest fails first.
    kubernetes::kubernetes(false)?;
    run(cargo().args(["build", "--workspace"]))?;
    run(cargo().args(["test", "--workspace"]))?;
    // Debian 12's kernels under qemu, each with the iterator and the /proc fallback
    // (4 boots, about 2 minutes; see the README's Supported kernels).
    kernels::kernels(&kernels::KernelsArgs::all())?;
    // The verdict over every fast leak and steady shape at once (33 processes), failing
    // on a missed leak, a false alarm or a leak at the wrong site: under a minute with
    // leakscope's release build done (see the README, `cargo xtask accuracy`).
    let accuracy = accuracy::accuracy(&accuracy::AccuracyArgs::quick())?;
    if accuracy != ExitCode::SUCCESS {
        bail!("`cargo xtask accuracy --quick` found a missed leak, a false alarm or a wrong site");
    }
    // The shipped systemd unit under a real systemd, on 6.1 with its capability variants
    // (see the README's "Installing the service").
    systemd::systemd(&systemd::SystemdArgs::ci())?;
    // The daemon under churn and attack, shortened for CI (see README, "Soak").
    soak::soak(&soak::SoakArgs {
        minutes: CI_SOAK_MINUTES,
    })?;
    // Every parser of host data under libFuzzer from its seeds and kept corpus: 10 s per
    // target, about 3 minutes in all plus the first build of the fuzz crate (README).
    fuzz::fuzz(&fuzz::FuzzArgs {
        seconds: CI_FUZZ_SECONDS,
        minimise: false,
        targets: Vec::new(),
    })
}

/// Minutes of soak `cargo xtask test` runs.
const CI_SOAK_MINUTES: u64 = 2;

/// Seconds each fuzz target runs in `cargo xtask test`.
const CI_FUZZ_SECONDS: u64 = 10;

fn lint() -> Result<()> {
    // Run both even if the first fails, so one pass shows every problem.
    let format = status(cargo().args(["fmt", "--all", "--", "--check"]))?;
    let clippy = status(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The fuzz targets' entry points (feature `fuzzing`) are built by nightly only in
    // `cargo xtask fuzz`: check here that they still compile against the library.
    let fuzzing = status(cargo().args([
        "clippy",
        "-p",
        "tracer-user",
        "--lib",
        "--features",
        "fuzzing",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The fuzz crate itself (its own workspace): the targets compile against the
    // library's entry points as they are now, checked on stable in seconds (sharing the
    // workspace's target directory) rather than at the end of `cargo xtask test`.
    let fuzz_manifest = workspace_root().join("fuzz/Cargo.toml");
    let fuzz_format = status(
        cargo()
            .args(["fmt", "--manifest-path"])
            .arg(&fuzz_manifest)
            .args(["--", "--check"]),
    )?;
    let fuzz_targets = status(
        cargo()
            .args(["clippy", "--manifest-path"])
            .arg(&fuzz_manifest)
            .args(["--bins", "--lib", "--target-dir"])
            .arg(target_dir())
            .args(["--", "-D", "warnings"]),
    )?;
    let mut failed = Vec::new();
    if !format.success() || !fuzz_format.success() {
        failed.push(
            "formatting (run `cargo fmt --all` and `cargo fmt --manifest-path fuzz/Cargo.toml`)",
        );
    }
    if !clippy.success() {
        failed.push("clippy");
    }
    if !fuzzing.success() {
        failed.push("clippy --features fuzzing");
    }
    if !fuzz_targets.success() {
        failed.push("clippy of the fuzz targets (fuzz/)");
    }
    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Exits with leakscope's own exit code: 0 no leak, 1 leak, 2 error.
fn diagnose(args: &[String]) -> Result<ExitCode> {
    setup::setup()?;
    run(cargo().args(["build", "--release", "-p", "tracer-user"]))?;
    let leakscope = target_dir().join("release/leakscope");
    let leakscope_status = status(Command::new(&leakscope).arg("diagnose").args(args))?;
    let code = exit_code_of(leakscope_status);
    // ExitCode only carries a u8; leakscope's codes are 0..=2, signals 128+n.
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn vmlinux() -> Result<()> {
    let script = workspace_root().join("scripts/gen-vmlinux.sh");
    run(Command::new("bash").arg(script))
}
