//! Running commands and locating things: the plumbing every task shares. What the
//! tests share too (the workspace and target directory, Go toolchains, processes that
//! die with xtask) comes from the test-support crate, under the same names.

use std::env;
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result, bail};
pub use test_support::go::{go_command, go_command_at};
pub use test_support::paths::find_program;
pub use test_support::process::set_parent_death_signal;
pub use test_support::{describe, target_dir, workspace_root};

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
