//! Which thread source a scan uses: the BPF task iterator ([`super::bpf`]) where the
//! kernel has what it needs, else `/proc` ([`super::procfs`]). Both give the same
//! records ([`ThreadRecords`]).
//!
//! What the kernel lacks is probed from its BTF before loading (see
//! [`KernelFeatures`]), so an older kernel gets one line saying so rather than a
//! verifier log; a load that fails anyway falls back too.

use std::fmt;

use super::{
    bpf::{KernelFeatures, TaskIterator},
    procfs::ProcfsThreads,
    record::ThreadRecords,
};
use crate::error::SourceError;

/// What the user asked for (`--thread-source`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThreadSourceChoice {
    /// The iterator when the kernel supports it, else /proc.
    #[default]
    Auto,
    /// The iterator or an error.
    Bpf,
    /// /proc, even where the iterator would work.
    Procfs,
}

impl ThreadSourceChoice {
    pub const NAMES: [&str; 3] = ["auto", "bpf", "procfs"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            "bpf" => Some(Self::Bpf),
            "procfs" => Some(Self::Procfs),
            _ => None,
        }
    }
}

/// The source in use, as reports and metrics name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ThreadSourceKind {
    #[default]
    Bpf,
    Procfs,
}

impl ThreadSourceKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Bpf => "bpf",
            Self::Procfs => "procfs",
        }
    }
}

impl fmt::Display for ThreadSourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a watch's thread records come from.
pub enum RecordSource {
    Bpf(Box<TaskIterator>),
    Procfs(Box<ProcfsThreads>),
}

impl RecordSource {
    /// Opens the source `choice` asks for. `Auto` falls back to /proc when the kernel
    /// lacks a feature or refuses the program; the reason comes back as one line.
    pub fn open(choice: ThreadSourceChoice) -> Result<(Self, String), SourceError> {
        let procfs = || RecordSource::Procfs(Box::default());
        match choice {
            ThreadSourceChoice::Procfs => Ok((procfs(), "procfs (--thread-source procfs)".into())),
            ThreadSourceChoice::Bpf => {
                if let Some(missing) = KernelFeatures::probe().missing() {
                    return Err(SourceError::Unsupported(missing.into()));
                }
                let source = TaskIterator::load()?;
                Ok((Self::Bpf(Box::new(source)), "bpf (task iterator)".into()))
            }
            ThreadSourceChoice::Auto => {
                if let Some(missing) = KernelFeatures::probe().missing() {
                    return Ok((procfs(), format!("procfs: {missing}")));
                }
                match TaskIterator::load() {
                    Ok(source) => Ok((Self::Bpf(Box::new(source)), "bpf (task iterator)".into())),
                    Err(error) => Ok((procfs(), format!("procfs: {error}"))),
                }
            }
        }
    }

    pub fn kind(&self) -> ThreadSourceKind {
        match self {
            Self::Bpf(_) => ThreadSourceKind::Bpf,
            Self::Procfs(_) => ThreadSourceKind::Procfs,
        }
    }

    /// One pass: every watched user process and its threads asleep in a syscall. The
    /// iterator sees the whole host anyway; /proc reads only what `watches` accepts.
    pub fn scan(&mut self, watches: &dyn Fn(u32) -> bool) -> Result<ThreadRecords, SourceError> {
        match self {
            Self::Bpf(source) => source.scan(),
            Self::Procfs(source) => Ok(source.scan(watches)),
        }
    }
}
