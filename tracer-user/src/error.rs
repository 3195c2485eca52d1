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

/// Why a diagnosis could not run.
#[derive(Debug, Error)]
pub enum DiagnoseError {
    #[error("must run as root (it loads BPF programs and reads other processes' memory)")]
    NotRoot,
    #[error("no such process: {0}")]
    UnknownPid(u32),
    #[error(transparent)]
    Source(#[from] SourceError),
}
