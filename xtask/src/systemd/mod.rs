//! `cargo xtask systemd`: the shipped unit, deploy/systemd/leakscope.service, under a
//! real systemd.
//!
//! First the unit is scored by `systemd-analyze security --offline=true` (it fails above
//! [`MAX_EXPOSURE`]). Then a Debian 12 root file system (`mmdebstrap --variant=minbase
//! --include=systemd-sysv`, cached under target/systemd/) is packed as an initramfs with
//! leakscope's release build, the unit, three leakers and a check, and booted with
//! Debian's own kernel under qemu's software CPU (as `cargo xtask kernels` does),
//! systemd as PID 1. In the guest the check (leakscope-check.service) runs the README's
//! install commands word for word, waits for the unit to be active and for its metrics
//! to call each leaker a leak at its site, stops it and reads how it ended; then it
//! starts the unit again once per capability of its bounding set with that capability
//! left out, and once without CAP_BPF and CAP_PERFMON (what kernels before 5.8 have),
//! so that each capability is shown to be needed and what it is needed for. Results
//! leave through the guest's second serial port; this task judges them.
//!
//! The leakers are what a host's users run, placed where the unit's sandbox hides
//! things from leakscope: programs of user 1000, mode 0700, a Go leaker in /home, a C
//! leaker in /tmp, and a C leaker whose binary is deleted once it runs (as a package
//! upgrade replaces a binary), built with its own build id so that no cache of the
//! other C leaker's symbols can name its frames.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

mod guest;

use crate::cpio::CpioWriter;
use crate::kernels::{
    C_LEAK_FUNCTION, C_LEAKER, GO_LEAK_FUNCTION, GO_LEAK_PATTERN, GO_LEAKER, Guest,
    build_c_program_as, build_go_leaker, fetch_kernel, release_leakscope_for_guest,
    selected_kernels,
};
use crate::setup::{setup, setup_systemd_tools};
use crate::util::{run, target_dir, workspace_root};

use guest::GuestRun;

/// The unit under test, relative to the workspace.
const UNIT: &str = "deploy/systemd/leakscope.service";
/// The highest `systemd-analyze security` exposure the unit may have (issue 24).
const MAX_EXPOSURE: f64 = 4.5;
/// The README's heading whose first code block holds the install commands.
const INSTALL_HEADING: &str = "### Installing the service";

/// How the guest's Debian is built: minbase plus systemd as init, no documentation.
const MMDEBSTRAP_ARGS: [&str; 8] = [
    "--variant=minbase",
    "--include=systemd-sysv",
    "--format=directory",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "bookworm",
];
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The guest boots its whole root file system from RAM.
const GUEST_MEMORY_MIB: u32 = 1536;
const DEFAULT_TIMEOUT_S: u64 = 900;
/// Seconds the guest waits for the unit's metrics to call every leaker a leak.
const LEAK_TIMEOUT_S: u64 = 240;
/// Scans a capability variant runs before its metrics are read: each wait is named at
/// its first scan, and Go processes are read at every scan. (More would cost up to 20 s
/// each: the daemon paces its scans by their CPU cost, high under qemu's software CPU.)
const VARIANT_SCANS: u32 = 1;
/// The unit's `TimeoutStopSec`: a stop that takes longer ended in SIGKILL.
const STOP_LIMIT_S: f64 = 5.0;

/// A leaker in the guest: its key in the guest's `pids` line and the function its leak
/// site must name.
struct Leaker {
    key: &'static str,
    function: &'static str,
    what: &'static str,
}

const LEAKERS: [Leaker; 3] = [
    Leaker {
        key: "go",
        function: GO_LEAK_FUNCTION,
        what: "Go leaker in /home",
    },
    Leaker {
        key: "c_tmp",
        function: C_LEAK_FUNCTION,
        what: "C leaker in /tmp",
    },
    Leaker {
        key: "c_gone",
        function: C_LEAK_FUNCTION,
        what: "C leaker whose binary was deleted",
    },
];

/// What leaving a capability out of the unit's bounding set costs, as the guest must
/// show it: the README's table of capabilities, in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// The BPF task iterator does not load; threads come from /proc instead.
    IteratorFallsBack,
    /// These leakers' leak sites are no longer named (their memory or binary cannot be
    /// read).
    Unnamed(&'static [&'static str]),
}

const CAPABILITY_USES: [(&str, Loss); 5] = [
    ("CAP_BPF", Loss::IteratorFallsBack),
    ("CAP_PERFMON", Loss::IteratorFallsBack),
    ("CAP_SYS_PTRACE", Loss::Unnamed(&["go", "c_tmp", "c_gone"])),
    (
        "CAP_DAC_READ_SEARCH",
        Loss::Unnamed(&["go", "c_tmp", "c_gone"]),
    ),
    ("CAP_CHECKPOINT_RESTORE", Loss::Unnamed(&["c_gone"])),
];

/// The capabilities kernels before 5.8 do not have: leaving both out must still find
/// and name every leak, from /proc.
const BPF_CAPABILITIES: [&str; 2] = ["CAP_BPF", "CAP_PERFMON"];

#[derive(Args, Debug)]
pub struct SystemdArgs {
    /// Boot only this kernel (repeatable): 6.1 or 6.12. Default: both.
    #[arg(long = "kernel", value_name = "VERSION")]
    kernels: Vec<String>,
    /// Also start the unit with these settings in a drop-in (`;` between several, e.g.
    /// `PrivateUsers=yes` or `User=nobody;AmbientCapabilities=CAP_BPF`), on the first
    /// kernel, and print what it showed: for trying a setting, not judged (repeatable).
    #[arg(long = "try", value_name = "SETTINGS")]
    tries: Vec<String>,
    /// Seconds a guest may run before it is killed.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_S)]
    timeout: u64,
}

impl SystemdArgs {
    /// What `cargo xtask test` runs: Debian 12's own kernel, with the capability
    /// variants (6.12 adds a minute and a half; `cargo xtask kernels` boots it already).
    pub fn ci() -> Self {
        Self {
            kernels: vec!["6.1".into()],
            tries: Vec::new(),
            timeout: DEFAULT_TIMEOUT_S,
        }
    }
}

/// One more start of the unit in the guest, with settings in a drop-in.
pub(super) struct Variant {
    name: String,
    settings: Vec<String>,
    /// For a capability variant (judged), the capabilities it leaves out of the unit's
    /// set; none for a `--try` (reported).
    left_out: Option<Vec<String>>,
}

/// Each capability of the unit's set left out in turn, then both BPF capabilities (what
/// kernels before 5.8 have), then the `--try` settings.
fn variants(capabilities: &[String], tries: &[String]) -> Result<Vec<Variant>> {
    let mut left_outs: Vec<Vec<String>> = capabilities.iter().map(|c| vec![c.clone()]).collect();
    if BPF_CAPABILITIES
        .iter()
        .all(|c| capabilities.iter().any(|have| have == c))
    {
        left_outs.push(BPF_CAPABILITIES.map(String::from).to_vec());
    }
    let mut variants: Vec<Variant> = left_outs
        .into_iter()
        .map(|left_out| {
            let kept: Vec<&str> = capabilities
                .iter()
                .map(String::as_str)
                .filter(|c| !left_out.iter().any(|out| out == c))
                .collect();
            Variant {
                name: format!("without {}", left_out.join(" ")),
                // An empty assignment resets the unit's list; then the smaller one.
                settings: vec![
                    "CapabilityBoundingSet=".into(),
                    format!("CapabilityBoundingSet={}", kept.join(" ")),
                ],
                left_out: Some(left_out),
            }
        })
        .collect();
    for settings in tries {
        if settings.contains(['\'', '\\', '\n']) {
            bail!("--try {settings:?}: no quotes, backslashes or newlines");
        }
        variants.push(Variant {
            name: format!("try {settings}"),
            settings: settings.split(';').map(|s| s.trim().to_string()).collect(),
            left_out: None,
        });
    }
    Ok(variants)
}

pub fn systemd(args: &SystemdArgs) -> Result<()> {
    let specs = selected_kernels(&args.kernels)?;
    setup()?;
    setup_systemd_tools()?;
    let started = Instant::now();
    let unit = workspace_root().join(UNIT);
    let exposure = exposure(&unit)?;
    println!("systemd: {UNIT}: exposure {exposure:.1} (at most {MAX_EXPOSURE})");
    if exposure > MAX_EXPOSURE {
        bail!(
            "systemd-analyze security --offline=true {UNIT} rates it {exposure:.1}, over \
             {MAX_EXPOSURE}"
        );
    }
    let capabilities = bounding_set(&fs::read_to_string(&unit)?)?;
    let variants = variants(&capabilities, &args.tries)?;
    let work = target_dir().join("systemd");
    fs::create_dir_all(&work)?;
    let rootfs = rootfs_archive(&work)?;
    let initramfs = build_initramfs(&work, &rootfs, &variants)?;
    println!(
        "systemd: initramfs ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut failures = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let vmlinuz = fetch_kernel(spec, &target_dir().join("kernels"))?;
        let t0 = Instant::now();
        // The variants on the first kernel only: what each capability is for does not
        // change between 6.1 and 6.12, and they take longest.
        let variants = if index == 0 { &variants[..] } else { &[] };
        match boot(
            &work,
            spec.label,
            &vmlinuz,
            &initramfs,
            !variants.is_empty(),
            args.timeout,
        )
        .and_then(|text| GuestRun::parse(&text))
        .and_then(|guest| guest.check(variants).map(|()| guest))
        {
            Ok(guest) => println!(
                "systemd: {}: ok in {:.1} s: {}",
                spec.label,
                t0.elapsed().as_secs_f64(),
                guest.timings()
            ),
            Err(error) => {
                println!(
                    "systemd: {}: FAILED in {:.1} s: {error:#}",
                    spec.label,
                    t0.elapsed().as_secs_f64()
                );
                failures.push(spec.label);
            }
        }
    }
    println!("systemd: done in {:.1} s", started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        bail!("systemd: failed on {}", failures.join(", "));
    }
    Ok(())
}

/// The unit's overall exposure as `systemd-analyze security --offline=true` rates it.
fn exposure(unit: &Path) -> Result<f64> {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .context("cannot run systemd-analyze")?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_exposure(&text).with_context(|| {
        format!(
            "no overall exposure in `systemd-analyze security --offline=true {}` ({}):\n{}{}",
            unit.display(),
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The figure of "Overall exposure level for NAME: 2.0 OK".
fn parse_exposure(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|line| line.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The capabilities of the unit's `CapabilityBoundingSet=` lines, each known to
/// [`CAPABILITY_USES`] (a new one needs its use stated and checked there).
fn bounding_set(unit_text: &str) -> Result<Vec<String>> {
    let mut set = Vec::new();
    for line in unit_text.lines() {
        let Some(value) = line.trim().strip_prefix("CapabilityBoundingSet=") else {
            continue;
        };
        if value.trim().is_empty() || value.trim_start().starts_with('~') {
            bail!(
                "{UNIT}: the check expects one plain list in CapabilityBoundingSet=, got {line:?}"
            );
        }
        set.extend(value.split_whitespace().map(str::to_string));
    }
    if set.is_empty() {
        bail!("{UNIT} has no CapabilityBoundingSet=");
    }
    for capability in &set {
        if !CAPABILITY_USES.iter().any(|(name, _)| name == capability) {
            bail!(
                "{UNIT} grants {capability}, which the check does not know a use for: state \
                 it in CAPABILITY_USES (xtask/src/systemd.rs) and the README"
            );
        }
    }
    Ok(set)
}

/// The root file system, packed: `work/rootfs.cpio`, rebuilt only when the
/// mmdebstrap arguments change (they are kept beside it).
fn rootfs_archive(work: &Path) -> Result<PathBuf> {
    let archive = work.join("rootfs.cpio");
    let stamp = work.join("rootfs.cpio.args");
    let args = format!("{} {DEBIAN_MIRROR}", MMDEBSTRAP_ARGS.join(" "));
    if archive.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s == args) {
        println!("systemd: root file system {} (cached)", archive.display());
        return Ok(archive);
    }
    let t0 = Instant::now();
    let tree = work.join("rootfs");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    run(Command::new("mmdebstrap")
        .args(MMDEBSTRAP_ARGS)
        .arg(&tree)
        .arg(DEBIAN_MIRROR)
        // Without a terminal on stdin, mmdebstrap would read its sources from it.
        .stdin(Stdio::null()))
    .context("building the guest's root file system")?;
    let partial = work.join("rootfs.cpio.partial");
    let mut cpio = CpioWriter::create(&partial)?;
    cpio.tree(&tree)?;
    cpio.finish()?;
    fs::rename(&partial, &archive)?;
    fs::write(&stamp, args)?;
    fs::remove_dir_all(&tree)?;
    println!(
        "systemd: root file system {} ({} MiB) built in {:.1} s",
        archive.display(),
        fs::metadata(&archive)?.len() >> 20,
        t0.elapsed().as_secs_f64()
    );
    Ok(archive)
}

/// The root file system with a second archive after it: the release binary and the unit
/// where a checkout has them, the README's install commands, the leakers, and the check
/// with its unit, enabled; the gettys masked (without udev they wait 90 s for their
/// terminals).
fn build_initramfs(work: &Path, rootfs: &Path, variants: &[Variant]) -> Result<PathBuf> {
    let bin = work.join("bin");
    fs::create_dir_all(&bin)?;
    let leakscope = release_leakscope_for_guest(&bin)?;
    build_c_program_as(C_LEAKER, &bin.join(C_LEAKER), &[])?;
    // Its own build id: nothing cached for the other C leaker can name its frames.
    let upgraded = bin.join(format!("{C_LEAKER}_upgraded"));
    build_c_program_as(C_LEAKER, &upgraded, &["-Wl,--build-id=0x5ca1ab1e0001"])?;
    build_go_leaker(&bin)?;
    let install = install_commands(&fs::read_to_string(workspace_root().join("README.md"))?)?;

    let initramfs = work.join("initramfs.cpio");
    fs::copy(rootfs, &initramfs)?;
    let mut cpio = CpioWriter::append(&initramfs)?;
    for dir in [
        "root/leakscope",
        "root/leakscope/target",
        "root/leakscope/target/release",
        "root/leakscope/deploy",
        "root/leakscope/deploy/systemd",
        "root/leakscope/programs",
    ] {
        cpio.dir(dir)?;
    }
    cpio.file_from("root/leakscope/target/release/leakscope", &leakscope)?;
    cpio.file_from(
        "root/leakscope/deploy/systemd/leakscope.service",
        &workspace_root().join(UNIT),
    )?;
    cpio.file_bytes("root/leakscope/install.sh", 0o644, install.as_bytes())?;
    for program in [bin.join(C_LEAKER), upgraded, bin.join(GO_LEAKER)] {
        let name = program.file_name().unwrap().to_string_lossy().into_owned();
        cpio.file_from(&format!("root/leakscope/programs/{name}"), &program)?;
    }
    cpio.file_bytes(
        "usr/local/sbin/leakscope-check",
        0o755,
        check_script(variants).as_bytes(),
    )?;
    cpio.file_bytes(
        "etc/systemd/system/leakscope-check.service",
        0o644,
        CHECK_UNIT.as_bytes(),
    )?;
    cpio.symlink(
        "etc/systemd/system/multi-user.target.wants/leakscope-check.service",
        "/etc/systemd/system/leakscope-check.service",
    )?;
    for getty in ["serial-getty@ttyS0.service", "getty@tty1.service"] {
        cpio.symlink(&format!("etc/systemd/system/{getty}"), "/dev/null")?;
    }
    cpio.finish()?;
    Ok(initramfs)
}

/// The commands of the README's first code block under [`INSTALL_HEADING`].
fn install_commands(readme: &str) -> Result<String> {
    let after = readme
        .split_once(&format!("\n{INSTALL_HEADING}\n"))
        .with_context(|| format!("the README has no `{INSTALL_HEADING}` heading"))?
        .1;
    let block = after
        .split_once("\n```\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .with_context(|| format!("no code block under the README's `{INSTALL_HEADING}`"))?;
    Ok(format!("{block}\n"))
}

/// The guest's check unit: runs once the system is up, its output on the console.
const CHECK_UNIT: &str = "\
[Unit]
Description=cargo xtask systemd: install leakscope as the README says and check its unit

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/leakscope-check
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
# The leakers it starts add threads for as long as the check runs.
TasksMax=infinity

[Install]
WantedBy=multi-user.target
";

/// The guest's check (bash); `@NAME@`s are filled in by [`check_script`].
const CHECK_SCRIPT: &str = include_str!("check.sh");

fn check_script(variants: &[Variant]) -> String {
    let calls: Vec<String> = variants
        .iter()
        .map(|v| format!("variant '{}' '{}'", v.name, v.settings.join("\\n")))
        .collect();
    CHECK_SCRIPT
        .replace("@GO_LEAKER@", GO_LEAKER)
        .replace("@GO_LEAK_PATTERN@", GO_LEAK_PATTERN)
        .replace("@C_LEAKER@", C_LEAKER)
        .replace("@LEAK_TIMEOUT_S@", &LEAK_TIMEOUT_S.to_string())
        .replace("@VARIANT_SCANS@", &VARIANT_SCANS.to_string())
        .replace("@VARIANTS@", &calls.join("\n"))
}

/// Boots `vmlinuz` with systemd as init; returns what the guest wrote on its second
/// serial port.
fn boot(
    work: &Path,
    label: &str,
    vmlinuz: &Path,
    initramfs: &Path,
    variants: bool,
    timeout: u64,
) -> Result<String> {
    let dir = work.join(format!("run-{label}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let console = dir.join("console.log");
    let results = dir.join("results.txt");
    let append = format!(
        "console=ttyS0 rdinit=/lib/systemd/systemd panic=-1 leakscope.variants={}",
        u8::from(variants)
    );
    Guest {
        vmlinuz,
        initramfs,
        append: &append,
        memory_mib: GUEST_MEMORY_MIB,
        console: &console,
        results: &results,
    }
    .run(Duration::from_secs(timeout))?;
    let bytes = fs::read(&results).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).replace('\r', "");
    if !text.contains("\n=== end") {
        bail!(
            "the guest powered off without a complete result (see {}):\n{}",
            console.display(),
            crate::kernels::tail(&console, crate::kernels::CONSOLE_TAIL_LINES)
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the exposure figure is read from systemd-analyze's last line.
    #[test]
    fn exposure_line_parses() {
        let text = "✗ PrivateNetwork=   Service has access to the host's network   0.5\n\
                    \n→ Overall exposure level for leakscope.service: 2.0 OK 🙂\n";
        assert_eq!(parse_exposure(text), Some(2.0));
        assert_eq!(parse_exposure("no such line"), None);
    }

    /// Check that the shipped unit's capabilities all have a stated use, and that the
    /// variants leave out each one, then both BPF capabilities together.
    #[test]
    fn every_capability_of_the_unit_has_a_use() {
        let unit = fs::read_to_string(workspace_root().join(UNIT)).unwrap();
        let set = bounding_set(&unit).unwrap();
        let tries = ["PrivateUsers=yes".to_string()];
        let names: Vec<String> = variants(&set, &tries)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names.len(), set.len() + 2, "{names:?}");
        assert!(names.contains(&"without CAP_BPF CAP_PERFMON".to_string()));
        assert!(names.contains(&"try PrivateUsers=yes".to_string()));
        assert!(bounding_set("CapabilityBoundingSet=CAP_SYS_ADMIN\n").is_err());
        assert!(variants(&set, &["X='y'".to_string()]).is_err());
    }

    /// Check that the install commands are the README's block under its heading.
    #[test]
    fn install_commands_come_from_the_readme() {
        let readme =
            format!("intro\n{INSTALL_HEADING}\n\nRun:\n\n```\na\nb\n```\nmore\n```\nc\n```\n");
        assert_eq!(install_commands(&readme).unwrap(), "a\nb\n");
        let real = fs::read_to_string(workspace_root().join("README.md")).unwrap();
        let commands = install_commands(&real).unwrap();
        assert!(
            commands.contains("systemctl enable --now leakscope"),
            "{commands}"
        );
    }
}
