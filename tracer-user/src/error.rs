//! Domain errors of leakscope's library code.

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
