//! Which thread source a scan uses: the BPF task iterator where the kernel has what it
//! needs, else `/proc` ([`super::procfs_threads`]). Both give the same records.
//!
//! The iterator needs kernel BTF (`/sys/kernel/btf/vmlinux`), BPF task iterators
//! (Linux 5.8), `bpf_get_current_task_btf` (5.11) and `bpf_task_pt_regs` (5.15). They are
//! probed from the kernel's BTF before loading, so an older kernel gets one line saying
//! what it lacks rather than a verifier log; a load that fails anyway falls back too.

use std::fmt;

use crate::error::SourceError;

use super::{
    procfs_threads::ProcfsThreadSource,
    thread_waiters::{KERNEL_BTF, ScanRecords, ThreadWaiterSource},
};

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

/// What the running kernel offers the iterator, read from its BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    pub btf: bool,
    pub task_iterator: bool,
    pub current_task_btf: bool,
    pub task_pt_regs: bool,
}

impl KernelFeatures {
    /// Reads the kernel's BTF once (a few MiB) and looks for the types and helper ids
    /// the iterator uses.
    pub fn probe() -> Self {
        match std::fs::read(KERNEL_BTF) {
            Ok(btf) => Self::from_btf(&btf),
            Err(_) => Self {
                btf: false,
                task_iterator: false,
                current_task_btf: false,
                task_pt_regs: false,
            },
        }
    }

    /// The features named in a BTF blob's string section. Names there are
    /// NUL-terminated, so a whole-name match cannot hit a longer name.
    pub fn from_btf(btf: &[u8]) -> Self {
        let has = |name: &str| {
            let needle = [b"\0", name.as_bytes(), b"\0"].concat();
            btf.windows(needle.len()).any(|w| w == needle.as_slice())
        };
        Self {
            btf: true,
            task_iterator: has("bpf_iter__task"),
            current_task_btf: has("BPF_FUNC_get_current_task_btf"),
            task_pt_regs: has("BPF_FUNC_task_pt_regs"),
        }
    }

    /// What the iterator needs and this kernel lacks, or `None`.
    pub fn missing(&self) -> Option<&'static str> {
        if !self.btf {
            Some("no kernel BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)")
        } else if !self.task_iterator {
            Some("no BPF task iterator (Linux 5.8+)")
        } else if !self.current_task_btf {
            Some("no bpf_get_current_task_btf (Linux 5.11+)")
        } else if !self.task_pt_regs {
            Some("no bpf_task_pt_regs (Linux 5.15+)")
        } else {
            None
        }
    }
}

/// The thread source of a watch.
pub enum ThreadSource {
    Bpf(Box<ThreadWaiterSource>),
    Procfs(ProcfsThreadSource),
}

impl ThreadSource {
    /// Opens the source `choice` asks for. `Auto` falls back to /proc when the kernel
    /// lacks a feature or refuses the program; the reason comes back as one line.
    pub fn open(choice: ThreadSourceChoice) -> Result<(Self, String), SourceError> {
        let procfs = || ThreadSource::Procfs(ProcfsThreadSource::new());
        match choice {
            ThreadSourceChoice::Procfs => Ok((procfs(), "procfs (--thread-source procfs)".into())),
            ThreadSourceChoice::Bpf => {
                if let Some(missing) = KernelFeatures::probe().missing() {
                    return Err(SourceError::Unsupported(missing.into()));
                }
                let source = ThreadWaiterSource::load()?;
                Ok((Self::Bpf(Box::new(source)), "bpf (task iterator)".into()))
            }
            ThreadSourceChoice::Auto => {
                if let Some(missing) = KernelFeatures::probe().missing() {
                    return Ok((procfs(), format!("procfs: {missing}")));
                }
                match ThreadWaiterSource::load() {
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
    pub fn scan(&mut self, watches: &dyn Fn(u32) -> bool) -> Result<ScanRecords, SourceError> {
        match self {
            Self::Bpf(source) => source.scan(),
            Self::Procfs(source) => Ok(source.scan(watches)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that features are read as whole names from the BTF strings, and that the
    /// oldest missing one is named.
    #[test]
    fn features_from_btf_strings() {
        let all = b"\0task_struct\0bpf_iter__task\0BPF_FUNC_get_current_task_btf\0BPF_FUNC_task_pt_regs\0";
        assert_eq!(KernelFeatures::from_btf(all).missing(), None);
        let old = b"\0task_struct\0bpf_iter__task\0BPF_FUNC_get_current_task_btf\0BPF_FUNC_task_pt_regs_x\0";
        assert_eq!(
            KernelFeatures::from_btf(old).missing(),
            Some("no bpf_task_pt_regs (Linux 5.15+)")
        );
        let older = b"\0task_struct\0bpf_iter__task_x\0";
        assert_eq!(
            KernelFeatures::from_btf(older).missing(),
            Some("no BPF task iterator (Linux 5.8+)")
        );
    }

    /// Check that this machine's kernel (6.18) offers everything the iterator needs.
    #[test]
    fn this_kernel_has_every_feature() {
        let features = KernelFeatures::probe();
        assert_eq!(features.missing(), None, "{features:?}");
    }
}
