//! `cargo xtask kernels`: leakscope on the kernels production hosts run.
//!
//! Boots each of Debian 12's own kernels (6.1, and 6.12 from the security archive) under
//! qemu's software CPU, with an initramfs holding busybox, leakscope's release build, a
//! Go leaker, a C leaker and a steady C pool; the guest's /init runs `leakscope diagnose
//! --json` over the three and writes the report to a second serial port, and this task
//! fails unless every verdict is right. Each kernel boots once per thread source (the
//! BPF task iterator, the /proc fallback). The guest mounts cgroup v2 alone (the hosts
//! running this task mount v1 controllers beside a unified hierarchy that holds none),
//! puts the C leaker in a cgroup with `pids.max` and the Go leaker in one with
//! `memory.max`: the report must forecast the first and read the second.
//!
//! `/dev/kvm` on these machines cannot run a stock kernel, hence `-accel tcg`
//! (PLATFORM.md, "Booting other kernels").

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use test_support::go::GoBuild;
use test_support::programs::{Program, build_into};

use crate::accuracy::stack_contains;
use crate::cpio::CpioWriter;
use crate::go_layouts::GO_VERSIONS;
use crate::setup::{setup, setup_kernel_tools};
use crate::util::{cargo, describe, run, target_dir};

/// A Debian kernel: a label for messages and the package name pattern
/// (`apt-cache search --names-only`); the newest match is booted.
pub(crate) struct KernelSpec {
    pub(crate) label: &'static str,
    package_pattern: &'static str,
}

/// Debian 12's kernels: its own 6.1 (cloud flavour: virtio and serial built in, no
/// modules needed) and the 6.12 it ships as a backport in the security archive.
pub(crate) const KERNELS: [KernelSpec; 2] = [
    KernelSpec {
        label: "6.1",
        package_pattern: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
    },
    KernelSpec {
        label: "6.12",
        package_pattern: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$",
    },
];

/// The thread sources leakscope can be told to use (`--thread-source`).
const THREAD_SOURCES: [&str; 2] = ["bpf", "procfs"];

/// The guest's programs: what each is, its binary and arguments.
pub(crate) const C_LEAKER: &str = Program::MutexLeak.name();
pub(crate) const C_LEAK_FUNCTION: &str = "leak_on_mutex";
const STEADY: &str = Program::IdlePool.name();
pub(crate) const GO_LEAKER: &str = "goleaks";
pub(crate) const GO_LEAK_PATTERN: &str = "send";
pub(crate) const GO_LEAK_FUNCTION: &str = "main.leakSendNoReceiver";
/// The guest's v2 cgroups: the C leaker's, with `pids.max` (4 threads a second: far
/// from it by the end of the diagnosis), and the Go leaker's, with `memory.max`.
const C_CGROUP: &str = "/sys/fs/cgroup/leaky";
const PIDS_MAX: u64 = 400;
const GO_CGROUP: &str = "/sys/fs/cgroup/goleaky";
const MEMORY_MAX: u64 = 512 << 20;

/// A guest that has not powered off by then is killed and the run fails with its
/// console's tail. A run takes ~25 s on an idle machine; a loaded one (other builds,
/// other guests) can make qemu's software CPU several times slower.
const DEFAULT_BOOT_TIMEOUT_S: u64 = 300;
/// Console lines shown when a run fails.
pub(crate) const CONSOLE_TAIL_LINES: usize = 40;

#[derive(Args, Debug)]
pub struct KernelsArgs {
    /// Boot only this kernel (repeatable): 6.1 or 6.12. Default: both.
    #[arg(long = "kernel", value_name = "VERSION")]
    kernels: Vec<String>,
    /// Run leakscope with only this thread source (repeatable): bpf, procfs or auto.
    /// Default: bpf and procfs, one boot each.
    #[arg(long = "thread-source", value_name = "SOURCE")]
    thread_sources: Vec<String>,
    /// Seconds leakscope watches inside the guest.
    #[arg(long, default_value_t = DEFAULT_DURATION_S)]
    duration: u32,
    /// Seconds a guest may run before it is killed.
    #[arg(long, default_value_t = DEFAULT_BOOT_TIMEOUT_S)]
    timeout: u64,
}

/// Seconds leakscope watches in a guest by default: the leakers add 4 threads and 4
/// goroutines a second, so 8 s gives the window verdict ample arrivals even when a
/// loaded host slows the guest down.
const DEFAULT_DURATION_S: u32 = 8;

impl KernelsArgs {
    /// Every kernel with every thread source: what `cargo xtask test` runs.
    pub fn all() -> Self {
        Self {
            kernels: Vec::new(),
            thread_sources: Vec::new(),
            duration: DEFAULT_DURATION_S,
            timeout: DEFAULT_BOOT_TIMEOUT_S,
        }
    }
}

pub fn kernels(args: &KernelsArgs) -> Result<()> {
    let specs = selected_kernels(&args.kernels)?;
    let sources = selected_sources(&args.thread_sources)?;
    setup()?;
    setup_kernel_tools()?;
    let work = target_dir().join("kernels");
    fs::create_dir_all(&work)?;
    let started = Instant::now();
    let initramfs = build_initramfs(&work)?;
    println!(
        "kernels: initramfs {} ({} MiB) ready after {:.1} s",
        initramfs.display(),
        fs::metadata(&initramfs)?.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    let mut failures = Vec::new();
    let mut timings = Vec::new();
    for spec in specs {
        let vmlinuz = fetch_kernel(spec, &work)?;
        for &source in &sources {
            let boot = Boot {
                kernel_label: spec.label,
                vmlinuz: &vmlinuz,
                initramfs: &initramfs,
                thread_source: source,
                duration: args.duration,
                timeout: Duration::from_secs(args.timeout),
                dir: work.join(format!("run-{}-{source}", spec.label)),
            };
            let t0 = Instant::now();
            let outcome = boot.run();
            let took = t0.elapsed().as_secs_f64();
            match outcome {
                Ok(line) => println!(
                    "kernels: {} {source}: ok in {took:.1} s: {line}",
                    spec.label
                ),
                Err(error) => {
                    println!(
                        "kernels: {} {source}: FAILED in {took:.1} s: {error:#}",
                        spec.label
                    );
                    failures.push(format!("{} {source}", spec.label));
                }
            }
            timings.push(format!("{} {source} {took:.1} s", spec.label));
        }
    }
    println!(
        "kernels: {} runs in {:.1} s ({})",
        timings.len(),
        started.elapsed().as_secs_f64(),
        timings.join(", ")
    );
    if !failures.is_empty() {
        bail!("kernels: failed on {}", failures.join(", "));
    }
    Ok(())
}

pub(crate) fn selected_kernels(labels: &[String]) -> Result<Vec<&'static KernelSpec>> {
    if labels.is_empty() {
        return Ok(KERNELS.iter().collect());
    }
    labels
        .iter()
        .map(|label| {
            KERNELS
                .iter()
                .find(|spec| spec.label == label)
                .with_context(|| format!("unknown kernel {label:?}: 6.1 or 6.12"))
        })
        .collect()
}

fn selected_sources(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(THREAD_SOURCES.to_vec());
    }
    names
        .iter()
        .map(|name| {
            ["bpf", "procfs", "auto"]
                .into_iter()
                .find(|known| known == name)
                .with_context(|| format!("unknown thread source {name:?}: bpf, procfs or auto"))
        })
        .collect()
}

/// The newest package matching `spec`, downloaded and unpacked once into
/// `work/<package>/vmlinuz`; a machine without the package lists yet gets them.
pub(crate) fn fetch_kernel(spec: &KernelSpec, work: &Path) -> Result<PathBuf> {
    let package = match newest_package(spec.package_pattern)? {
        Some(package) => package,
        None => {
            run(Command::new("apt-get").arg("update"))?;
            newest_package(spec.package_pattern)?.with_context(|| {
                format!(
                    "no package matches {} (apt-cache search --names-only)",
                    spec.package_pattern
                )
            })?
        }
    };
    let dir = work.join(&package);
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.is_file() {
        println!("kernels: {} is {package} (cached)", spec.label);
        return Ok(vmlinuz);
    }
    let download = work.join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)?;
    // apt's sandbox user cannot write under target/: allow it, else apt warns.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&download, fs::Permissions::from_mode(0o777))?;
    run(Command::new("apt-get")
        .current_dir(&download)
        .args(["download", "-q"])
        .arg(&package))
    .with_context(|| format!("downloading {package}"))?;
    let deb = only_file_in(&download)?;
    let unpacked = download.join("unpacked");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    let boot = only_file_in(&unpacked.join("boot")).or_else(|_| {
        fs::read_dir(unpacked.join("boot"))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
            })
            .context("the package holds no boot/vmlinuz*")
    })?;
    fs::create_dir_all(&dir)?;
    fs::copy(&boot, &vmlinuz)?;
    fs::remove_dir_all(&download)?;
    println!("kernels: {} is {package} (downloaded)", spec.label);
    Ok(vmlinuz)
}

fn newest_package(pattern: &str) -> Result<Option<String>> {
    let output = Command::new("apt-cache")
        .args(["search", "--names-only", pattern])
        .output()
        .context("cannot run apt-cache")?;
    if !output.status.success() {
        bail!("apt-cache search failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .max_by(|a, b| version_order(a, b))
        .map(str::to_string))
}

/// Orders package names by their numbers, so 6.1.0-57 comes after 6.1.0-9.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn numbers(name: &str) -> Vec<u64> {
        name.split(|c: char| !c.is_ascii_digit())
            .filter_map(|part| part.parse().ok())
            .collect()
    }
    numbers(a).cmp(&numbers(b))
}

fn only_file_in(dir: &Path) -> Result<PathBuf> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    match entries.as_slice() {
        [only] => Ok(only.clone()),
        _ => bail!(
            "expected one file in {}, found {}",
            dir.display(),
            entries.len()
        ),
    }
}

/// Builds leakscope (release) and the guest programs, and packs them with busybox, their
/// shared libraries and /init into `work/initramfs.cpio`.
fn build_initramfs(work: &Path) -> Result<PathBuf> {
    let bin = work.join("bin");
    fs::create_dir_all(&bin)?;
    let leakscope = release_leakscope_for_guest(&bin)?;
    build_c_program(C_LEAKER, &bin)?;
    build_c_program(STEADY, &bin)?;
    build_go_leaker(&bin)?;

    let archive = work.join("initramfs.cpio");
    let mut cpio = CpioWriter::create(&archive)?;
    for dir in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "leakscope",
        "lib",
        "lib64",
        "usr",
        "usr/lib",
    ] {
        cpio.dir(dir)?;
    }
    // The kernel opens /dev/console for /init's stdio before /init mounts devtmpfs.
    cpio.char_device("dev/console", 5, 1)?;
    add_busybox(&mut cpio)?;
    let programs = [
        leakscope,
        bin.join(C_LEAKER),
        bin.join(STEADY),
        bin.join(GO_LEAKER),
    ];
    let mut libraries = Vec::new();
    for program in &programs {
        let name = program.file_name().unwrap().to_string_lossy();
        cpio.file_from(&format!("leakscope/{name}"), program)?;
        for library in shared_libraries(program)? {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    let mut dirs = vec![
        "lib".to_string(),
        "lib64".to_string(),
        "usr/lib".to_string(),
    ];
    for library in &libraries {
        let name = library.to_string_lossy();
        let name = name.trim_start_matches('/');
        add_parent_dirs(&mut cpio, name, &mut dirs)?;
        cpio.file_from(name, library)?;
    }
    cpio.file_bytes("init", 0o755, init_script().as_bytes())?;
    cpio.finish()?;
    Ok(archive)
}

/// Builds leakscope (release) and copies it to `bin/leakscope` without its debug info,
/// which is of no use in a guest and would triple the archive.
pub(crate) fn release_leakscope_for_guest(bin: &Path) -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "tracer-user"]))?;
    let leakscope = bin.join("leakscope");
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(target_dir().join("release/leakscope"))
        .arg(&leakscope))?;
    Ok(leakscope)
}

fn build_c_program(name: &str, bin: &Path) -> Result<()> {
    build_c_program_as(name, &bin.join(name), &[])
}

/// Builds test program `name` (a C program of test-support's catalogue) into `output`,
/// as the integration tests build it, with `extra` compiler arguments.
pub(crate) fn build_c_program_as(name: &str, output: &Path, extra: &[&str]) -> Result<()> {
    let program = Program::named(name).with_context(|| format!("no test program {name}"))?;
    build_into(output, |temp| {
        let mut cc = program.command(temp);
        cc.args(extra);
        Ok(cc)
    })
    .with_context(|| format!("building {name}"))
}

pub(crate) fn build_go_leaker(bin: &Path) -> Result<()> {
    let version = GO_VERSIONS[GO_VERSIONS.len() - 1];
    // Pure Go (CGO_ENABLED=0): a static binary, no libraries to copy.
    let built = GoBuild::plain(version, "leaks").build(bin)?;
    debug_assert_eq!(built, bin.join(GO_LEAKER));
    Ok(())
}

/// busybox (static) and a link per applet. Not a link named `busybox`: that would
/// replace the binary by a link to itself (PLATFORM.md's pitfall).
fn add_busybox(cpio: &mut CpioWriter) -> Result<()> {
    let busybox = crate::util::find_program("busybox").context("busybox is not installed")?;
    cpio.file_from("bin/busybox", &busybox)?;
    let output = Command::new(&busybox)
        .arg("--list")
        .output()
        .context("busybox --list")?;
    for applet in String::from_utf8_lossy(&output.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        cpio.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    Ok(())
}

/// The shared libraries `ldd` lists for `program` (none for static ones), as paths on
/// this machine.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .context("cannot run ldd")?;
    // ldd fails with "not a dynamic executable" on static binaries.
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vdso has no path.
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Adds the directories above `path` the archive does not have yet.
fn add_parent_dirs(cpio: &mut CpioWriter, path: &str, dirs: &mut Vec<String>) -> Result<()> {
    let mut prefix = String::new();
    let parents: Vec<&str> = path.split('/').collect();
    for part in &parents[..parents.len() - 1] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if !dirs.contains(&prefix) {
            cpio.dir(&prefix)?;
            dirs.push(prefix.clone());
        }
    }
    Ok(())
}

/// The guest's /init: mounts what leakscope needs, starts the programs, runs one
/// diagnosis with the thread source and duration from the kernel command line, and
/// writes a framed result to the second serial port (ttyS1), then powers off.
fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+pids +memory" > /sys/fs/cgroup/cgroup.subtree_control
mkdir {C_CGROUP} {GO_CGROUP}
echo {PIDS_MAX} > {C_CGROUP}/pids.max
echo {MEMORY_MAX} > {GO_CGROUP}/memory.max
stty -F /dev/ttyS1 raw -echo
source=auto
duration=8
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ls_source=*) source="${{arg#ls_source=}}" ;;
    ls_duration=*) duration="${{arg#ls_duration=}}" ;;
  esac
done
echo "guest: kernel $(uname -r), thread source $source, watching $duration s"
cd /leakscope
./{C_LEAKER} & c_leak=$!
echo $c_leak > {C_CGROUP}/cgroup.procs
./{STEADY} & steady=$!
./{GO_LEAKER} {GO_LEAK_PATTERN} & go_leak=$!
echo $go_leak > {GO_CGROUP}/cgroup.procs
sleep 2
./leakscope diagnose --json --duration "$duration" --thread-source "$source" \
  --pid $c_leak --pid $steady --pid $go_leak > /tmp/report.json 2> /tmp/stderr
rc=$?
echo "guest: leakscope exited $rc"
cat /tmp/stderr
{{
  echo "=== pids c_leak=$c_leak steady=$steady go_leak=$go_leak"
  echo "=== kernel $(uname -r)"
  echo "=== exit $rc"
  echo "=== stderr"
  cat /tmp/stderr
  echo "=== report"
  cat /tmp/report.json
  echo "=== end"
}} > /dev/ttyS1
sync
poweroff -f
"#
    )
}

/// One guest run: a kernel, a thread source.
struct Boot<'a> {
    kernel_label: &'a str,
    vmlinuz: &'a Path,
    initramfs: &'a Path,
    thread_source: &'a str,
    duration: u32,
    timeout: Duration,
    dir: PathBuf,
}

impl Boot<'_> {
    /// Boots, waits for the guest to power off, checks the verdicts; returns a line
    /// saying what the guest ran.
    fn run(&self) -> Result<String> {
        let _ = fs::remove_dir_all(&self.dir);
        fs::create_dir_all(&self.dir)?;
        let console = self.dir.join("console.log");
        let results = self.dir.join("results.txt");
        let append = format!(
            "console=ttyS0 rdinit=/init panic=-1 ls_source={} ls_duration={}",
            self.thread_source, self.duration
        );
        let guest = Guest {
            vmlinuz: self.vmlinuz,
            initramfs: self.initramfs,
            append: &append,
            memory_mib: 1024,
            console: &console,
            results: &results,
        };
        guest.run(self.timeout)?;
        let console_tail = || tail(&console, CONSOLE_TAIL_LINES);
        let text = fs::read_to_string(&results).unwrap_or_default();
        let result = GuestResult::parse(&text).with_context(|| {
            format!(
                "no complete result on the guest's second serial port\nguest console (last \
                 lines):\n{}",
                console_tail()
            )
        })?;
        result
            .check(self.thread_source)
            .with_context(|| format!("leakscope's stderr:\n{}", result.stderr))
            .with_context(|| format!("{} kernel {}", self.kernel_label, result.kernel))?;
        Ok(format!(
            "kernel {}, thread source {}, verdicts right",
            result.kernel,
            result.report["thread_source"].as_str().unwrap_or("?")
        ))
    }
}

/// A qemu guest: a kernel, an initramfs, its command line; its console and second serial
/// port go to files.
pub(crate) struct Guest<'a> {
    pub(crate) vmlinuz: &'a Path,
    pub(crate) initramfs: &'a Path,
    pub(crate) append: &'a str,
    pub(crate) memory_mib: u32,
    pub(crate) console: &'a Path,
    pub(crate) results: &'a Path,
}

impl Guest<'_> {
    /// Boots the guest and waits for it to power off; fails with the console's tail when
    /// qemu fails or the guest is still running after `timeout` (then killed).
    pub(crate) fn run(&self, timeout: Duration) -> Result<()> {
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
        ])
        .arg(self.memory_mib.to_string())
        .args([
            "-nodefaults",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-kernel")
        .arg(self.vmlinuz)
        .arg("-initrd")
        .arg(self.initramfs)
        .arg("-append")
        .arg(self.append)
        .arg("-serial")
        .arg(format!("file:{}", self.console.display()))
        .arg("-serial")
        .arg(format!("file:{}", self.results.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let description = describe(&qemu);
        let child = qemu
            .spawn()
            .with_context(|| format!("cannot start `{description}`"))?;
        let console_tail = || tail(self.console, CONSOLE_TAIL_LINES);
        match wait_or_kill(child, timeout) {
            Ok(true) => Ok(()),
            Ok(false) => bail!(
                "the guest did not power off within {} s (killed)\nguest console (last \
                 lines):\n{}",
                timeout.as_secs(),
                console_tail()
            ),
            Err(error) => bail!("{error:#}\nguest console (last lines):\n{}", console_tail()),
        }
    }
}

/// Waits for qemu; Ok(false) when it had to be killed at `timeout`.
fn wait_or_kill(mut child: Child, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                bail!("qemu exited {status}: {}", stderr.trim());
            }
            return Ok(true);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `lines` lines of a file, or a note that it is empty or missing.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return format!("({} is empty)", path.display());
    }
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What the guest wrote on its second serial port.
#[derive(Debug)]
struct GuestResult {
    kernel: String,
    c_leak: u64,
    steady: u64,
    go_leak: u64,
    exit: i32,
    stderr: String,
    report: Value,
}

impl GuestResult {
    fn parse(text: &str) -> Result<Self> {
        let text = text.replace('\r', "");
        let section = |name: &str| -> Result<&str> {
            let marker = format!("=== {name}");
            let start = text
                .find(&marker)
                .with_context(|| format!("no `{marker}` line"))?
                + marker.len();
            let rest = &text[start..];
            let end = rest.find("\n=== ").unwrap_or(rest.len());
            Ok(rest[..end].trim())
        };
        let pids = section("pids")?;
        let pid = |key: &str| -> Result<u64> {
            pids.split_whitespace()
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                .and_then(|value| value.parse().ok())
                .with_context(|| format!("no pid {key} in {pids:?}"))
        };
        section("end")?;
        let report = section("report")?;
        Ok(Self {
            kernel: section("kernel")?.to_string(),
            c_leak: pid("c_leak")?,
            steady: pid("steady")?,
            go_leak: pid("go_leak")?,
            exit: section("exit")?.parse().context("exit status")?,
            stderr: section("stderr")?.to_string(),
            report: serde_json::from_str(report)
                .with_context(|| format!("the report is not JSON: {report:.400}"))?,
        })
    }

    /// Fails unless leakscope found both leaks at their sites, called the pool ok,
    /// exited 1 (a leak) and used the thread source asked for.
    fn check(&self, thread_source: &str) -> Result<()> {
        if self.exit != 1 {
            bail!("leakscope exited {}, expected 1 (leaks found)", self.exit);
        }
        let used = self.report["thread_source"].as_str().unwrap_or("missing");
        if thread_source != "auto" && used != thread_source {
            bail!("the report says thread source {used:?}, {thread_source:?} was asked for");
        }
        let mut wrong = Vec::new();
        for (name, pid, function) in [
            (C_LEAKER, self.c_leak, C_LEAK_FUNCTION),
            (GO_LEAKER, self.go_leak, GO_LEAK_FUNCTION),
        ] {
            if let Err(why) = leak_at(&self.report, pid, function) {
                wrong.push(format!("{name} (pid {pid}): {why}"));
            }
        }
        // Present and ok: a leakscope that saw nothing must not pass for one that judged
        // the pool steady.
        match process(&self.report, self.steady) {
            Some(p) if p["verdict"] == "ok" => {}
            Some(p) => wrong.push(format!(
                "{STEADY} (pid {}): judged {}: {p}",
                self.steady, p["verdict"]
            )),
            None => wrong.push(format!(
                "{STEADY} (pid {}): not in the report (its blocked workers were not seen)",
                self.steady
            )),
        }
        if let Err(why) = limits_in_v2(&self.report, self.c_leak, self.go_leak) {
            wrong.push(why);
        }
        if !wrong.is_empty() {
            bail!("wrong verdicts:\n  {}", wrong.join("\n  "));
        }
        Ok(())
    }
}

/// Ok when the C leaker is forecast to hit its v2 cgroup's `pids.max` first, and the Go
/// leaker's limits name its v2 cgroup's `memory.max`; else why not.
fn limits_in_v2(report: &Value, c_leak: u64, go_leak: u64) -> Result<(), String> {
    let named = |f: &Value, limit: &str, source: &str, value: u64| {
        f["limit"] == limit && f["source"] == source && f["value"].as_u64() == Some(value)
    };
    let c = process(report, c_leak).map_or(&Value::Null, |p| &p["exhaustion"]);
    if !named(c, "pids.max", C_CGROUP, PIDS_MAX) || !c["eta_s"].is_f64() {
        return Err(format!(
            "{C_LEAKER}: no forecast of {C_CGROUP}'s pids.max: {c}"
        ));
    }
    let go = process(report, go_leak).map_or(&Value::Null, |p| &p["limits"]);
    let go_limits = go.as_array().map_or(&[][..], Vec::as_slice);
    if !go_limits
        .iter()
        .any(|f| named(f, "memory.max", GO_CGROUP, MEMORY_MAX))
    {
        return Err(format!(
            "{GO_LEAKER}: {GO_CGROUP}'s memory.max not read: {go}"
        ));
    }
    Ok(())
}

fn process(report: &Value, pid: u64) -> Option<&Value> {
    report["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(pid))
}

/// Ok when `pid` is a leak with a leak site naming `function`; else why not.
fn leak_at(report: &Value, pid: u64, function: &str) -> Result<(), String> {
    let Some(process) = process(report, pid) else {
        return Err("not in the report".into());
    };
    let sites = process["sites"].as_array().map_or(&[][..], Vec::as_slice);
    let at: Vec<&Value> = sites
        .iter()
        .filter(|s| stack_contains(s, function))
        .collect();
    if at.iter().any(|site| site["verdict"] == "leak") {
        return Ok(());
    }
    Err(match at.first() {
        Some(site) => format!(
            "the site at {function} is not a leak: {}",
            site["reason"].as_str().unwrap_or("no reason")
        ),
        None => format!(
            "no site at {function}; verdict {}, sites: {}",
            process["verdict"],
            serde_json::to_string(sites).unwrap_or_default()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the newest kernel package wins by number, not by string order.
    #[test]
    fn newest_package_by_numbers() {
        let mut names = ["linux-image-6.1.0-9-cloud", "linux-image-6.1.0-57-cloud"];
        names.sort_by(|a, b| version_order(a, b));
        assert_eq!(names[1], "linux-image-6.1.0-57-cloud");
    }

    /// Check that a guest's verdicts pass only with both leaks at their sites and the
    /// steady pool present and ok; the pool missing from the report fails.
    #[test]
    fn steady_pool_must_be_present_and_ok() {
        let site = |function: &str, verdict: &str| serde_json::json!({"verdict": verdict, "stack": [{"function": function}]});
        let result = |steady: Option<&str>| {
            let pids_max = serde_json::json!({"limit": "pids.max", "source": C_CGROUP,
                "value": PIDS_MAX, "eta_s": 90.0});
            let memory_max = serde_json::json!({"limit": "memory.max", "source": GO_CGROUP,
                "value": MEMORY_MAX, "reason": "memory not growing"});
            let mut processes = vec![
                serde_json::json!({"pid": 10, "verdict": "leak", "sites": [site(C_LEAK_FUNCTION, "leak")],
                    "exhaustion": pids_max}),
                serde_json::json!({"pid": 12, "verdict": "leak", "sites": [site(GO_LEAK_FUNCTION, "leak")],
                    "limits": [memory_max]}),
            ];
            if let Some(verdict) = steady {
                processes.push(serde_json::json!({"pid": 11, "verdict": verdict, "sites": []}));
            }
            GuestResult {
                kernel: "6.1".into(),
                c_leak: 10,
                steady: 11,
                go_leak: 12,
                exit: 1,
                stderr: String::new(),
                report: serde_json::json!({"thread_source": "bpf", "processes": processes}),
            }
        };
        result(Some("ok")).check("bpf").unwrap();
        let absent = result(None).check("bpf").unwrap_err().to_string();
        assert!(absent.contains("not in the report"), "{absent}");
        let leak = result(Some("leak")).check("bpf").unwrap_err().to_string();
        assert!(leak.contains("judged \"leak\""), "{leak}");
    }

    /// Check that a guest's framed result parses, and a cut-off one does not.
    #[test]
    fn guest_result_needs_every_section() {
        let text = "noise\r\n=== pids c_leak=10 steady=11 go_leak=12\n=== kernel 6.1.0-57\n\
                    === exit 1\n=== stderr\nthread source: bpf\n=== report\n\
                    {\"version\": 1, \"processes\": []}\n=== end\n";
        let result = GuestResult::parse(text).unwrap();
        assert_eq!((result.c_leak, result.steady, result.go_leak), (10, 11, 12));
        assert_eq!(result.exit, 1);
        assert_eq!(result.stderr, "thread source: bpf");
        assert!(GuestResult::parse(&text[..text.len() - 8]).is_err());
    }

    /// Check that the v2 limits must be what the guest set: the C leaker forecast to
    /// hit its cgroup's pids.max, the Go leaker's memory.max read.
    #[test]
    fn v2_limits_must_be_forecast_and_read() {
        let report = |c_eta: Value, go_value: u64| {
            serde_json::json!({"processes": [
                {"pid": 10, "exhaustion": {"limit": "pids.max", "source": C_CGROUP,
                    "value": PIDS_MAX, "eta_s": c_eta}},
                {"pid": 12, "limits": [{"limit": "memory.max", "source": GO_CGROUP,
                    "value": go_value, "reason": "memory not growing"}]},
            ]})
        };
        assert_eq!(
            limits_in_v2(&report(Value::from(90.5), MEMORY_MAX), 10, 12),
            Ok(())
        );
        assert!(limits_in_v2(&report(Value::Null, MEMORY_MAX), 10, 12).is_err());
        assert!(limits_in_v2(&report(Value::from(90.5), 1), 10, 12).is_err());
    }
}
