//! Domain errors of leakscope's library code, and the one rendering of an error chain
//! every user-facing line uses.

use thiserror::Error;

/// A source (kernel program, /proc) could not deliver.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error(
        "no kernel BTF at /sys/kernel/btf/vmlinux: leakscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("the kernel cannot run the task iterator: {0} (try --thread-source procfs)")]
    Unsupported(String),
    #[error("cannot load the kernel programs: {0}")]
    Load(String),
    #[error("scan failed: {0}")]
    Scan(String),
}

/// One scan failed (the watch may go on: the daemon scans again).
#[derive(Debug, Error)]
pub enum ScanError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A bug outside any one process's analysis (those are isolated per process).
    #[error("internal error (panic: {0})")]
    Panic(String),
}

/// Why a watch (`diagnose`, `run`, `top`) could not start or go on.
#[derive(Debug, Error)]
pub enum WatchError {
    #[error("must run as root (it loads BPF programs and reads other processes' memory)")]
    NotRoot,
    #[error("no such process: {0}")]
    UnknownPid(u32),
    #[error(
        "--window ({window_s} s) must cover at least {scans} scans of --interval ({interval_s} s)"
    )]
    WindowTooShort {
        window_s: f64,
        interval_s: f64,
        scans: u32,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// An error and its causes on one line, `outer: cause: root cause`, each text once.
///
/// Errors disagree on whether their message includes their cause: some say
/// `cannot open X: {source}` and also return that source, some (most of std's and ours)
/// leave it to the chain. Joining every link as anyhow's `{:#}` does then says the
/// same reason twice (`... Read-only file system: Read-only file system`). A cause
/// whose text the line already holds is left out, whatever type wrote it.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(link) = cause {
        let text = link.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = link.source();
    }
    // One line, whatever a message holds.
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// An error that both prints its cause and returns it, as thiserror makes of
    /// `#[error("... {source}")]`.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {path}: {source}")]
    struct SaysItsCause {
        path: &'static str,
        source: io::Error,
    }

    fn read_only() -> io::Error {
        io::Error::from_raw_os_error(libc::EROFS)
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    /// Check that a reason both in an error's message and its source is said once,
    /// through anyhow contexts too, while a cause the message leaves out is appended.
    #[test]
    fn each_cause_is_said_once() {
        let reason = read_only().to_string();
        let doubled = SaysItsCause {
            path: "/run/x.lock",
            source: read_only(),
        };
        let line = one_line(&doubled);
        assert_eq!(line, format!("cannot open /run/x.lock: {reason}"));
        let wrapped = anyhow::Error::new(doubled).context("starting the daemon");
        let line = one_line(wrapped.as_ref());
        assert_eq!(count(&line, &reason), 1, "{line}");
        assert!(
            line.starts_with("starting the daemon: cannot open"),
            "{line}"
        );
        let silent = anyhow::Error::new(read_only()).context("cannot open /run/x.lock");
        assert_eq!(
            one_line(silent.as_ref()),
            format!("cannot open /run/x.lock: {reason}")
        );
    }

    /// Check that the lock's errors, rendered as the binary renders a start error, name
    /// the path and the system's reason once (the unit's old failure said "Read-only
    /// file system" twice).
    #[test]
    fn lock_errors_say_the_reason_once() {
        let errors = [
            crate::daemon::lock::LockError::Open {
                path: "/run/leakscope.lock".into(),
                source: read_only(),
            },
            crate::daemon::lock::LockError::CreateDir {
                path: "/run/leakscope".into(),
                source: read_only(),
            },
        ];
        for error in errors {
            let line = one_line(anyhow::Error::new(error).as_ref());
            assert_eq!(count(&line, &read_only().to_string()), 1, "{line}");
            assert!(line.contains("/run/leakscope"), "{line}");
        }
    }
}
