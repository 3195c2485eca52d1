//! Thread records from the kernel: the `thread_waiters` task iterator (tracer-ebpf).
//!
//! Each scan attaches the iterator anew and reads it to the end: the kernel walks every
//! task and writes one [`ThreadWaiterRecord`] per user thread asleep inside a system
//! call (futex, read, accept, epoll_wait...). Nothing runs in the watched programs'
//! context, so they pay nothing.
//!
//! The iterator needs kernel BTF (`/sys/kernel/btf/vmlinux`), BPF task iterators
//! (Linux 5.8), `bpf_get_current_task_btf` (5.11) and `bpf_task_pt_regs` (5.15):
//! [`KernelFeatures`] says which of them this kernel has.

use std::{io::Read, path::Path};

use aya::{Btf, Ebpf, EbpfLoader, programs::Iter};
use tracer_common::{
    ProcessRecord, RECORD_PROCESS, RECORD_THREAD_WAITER, RecordHeader, ThreadWaiterRecord,
};

use super::record::ThreadRecords;
use crate::error::SourceError;

/// Where the kernel publishes its own BTF; CO-RE and the task iterator need it.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The loaded iterator program; dropping it unloads everything.
pub struct TaskIterator {
    ebpf: Ebpf,
    buf: Vec<u8>,
}

impl TaskIterator {
    /// Loads and verifies the iterator program.
    pub fn load() -> Result<Self, SourceError> {
        if !Path::new(KERNEL_BTF).exists() {
            return Err(SourceError::NoBtf);
        }
        let btf = Btf::from_sys_fs().map_err(|e| SourceError::Load(format!("kernel BTF: {e}")))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(&tracer_ebpf::THREAD_WAITERS.0)
            .map_err(|e| SourceError::Load(format!("thread_waiters object: {e}")))?;
        let program: &mut Iter = ebpf
            .program_mut(tracer_ebpf::THREAD_WAITERS_PROGRAM)
            .ok_or_else(|| SourceError::Load("thread_waiters program missing".into()))?
            .try_into()
            .map_err(|e| SourceError::Load(format!("thread_waiters is not an iterator: {e}")))?;
        program
            .load("task", &btf)
            .map_err(|e| SourceError::Load(format!("verifier rejected thread_waiters: {e:#}")))?;
        Ok(Self {
            ebpf,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// One pass over every thread on the host: every user process, and the threads
    /// asleep in a system call now.
    pub fn scan(&mut self) -> Result<ThreadRecords, SourceError> {
        let program: &mut Iter = self
            .ebpf
            .program_mut(tracer_ebpf::THREAD_WAITERS_PROGRAM)
            .expect("checked at load")
            .try_into()
            .expect("checked at load");
        let link_id = program
            .attach()
            .map_err(|e| SourceError::Scan(format!("attach: {e}")))?;
        let link = program
            .take_link(link_id)
            .map_err(|e| SourceError::Scan(format!("link: {e}")))?;
        let mut file = link
            .into_file()
            .map_err(|e| SourceError::Scan(format!("iter fd: {e}")))?;
        self.buf.clear();
        file.read_to_end(&mut self.buf)
            .map_err(|e| SourceError::Scan(format!("read: {e}")))?;
        Ok(ThreadRecords {
            lists_every_process: true,
            ..parse_records(&self.buf)
        })
    }
}

/// Splits the iterator's byte stream into records, skipping kinds this build does not
/// know and stopping at a truncated tail.
pub fn parse_records(mut bytes: &[u8]) -> ThreadRecords {
    let mut out = ThreadRecords::default();
    let header_len = size_of::<RecordHeader>();
    while bytes.len() >= header_len {
        let kind = u32::from_ne_bytes(bytes[0..4].try_into().unwrap());
        let size = u32::from_ne_bytes(bytes[4..8].try_into().unwrap()) as usize;
        if size < header_len || size > bytes.len() {
            break;
        }
        let record = &bytes[..size];
        match kind {
            RECORD_THREAD_WAITER => out.waiters.extend(ThreadWaiterRecord::from_bytes(record)),
            RECORD_PROCESS => out.processes.extend(ProcessRecord::from_bytes(record)),
            _ => {}
        }
        bytes = &bytes[size..];
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tid: u32) -> ThreadWaiterRecord {
        ThreadWaiterRecord {
            header: RecordHeader {
                kind: RECORD_THREAD_WAITER,
                size: size_of::<ThreadWaiterRecord>() as u32,
            },
            tid,
            ..Default::default()
        }
    }

    fn bytes_of(rec: &ThreadWaiterRecord) -> Vec<u8> {
        // SAFETY: the record is POD without padding.
        unsafe {
            std::slice::from_raw_parts(
                (rec as *const ThreadWaiterRecord).cast::<u8>(),
                size_of::<ThreadWaiterRecord>(),
            )
        }
        .to_vec()
    }

    /// Check that records of unknown kinds are skipped and a truncated tail is dropped.
    #[test]
    fn parse_skips_unknown_kinds_and_truncated_tail() {
        let mut stream = bytes_of(&record(1));
        stream.extend_from_slice(&[9, 0, 0, 0, 12, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd]);
        stream.extend(bytes_of(&record(2)));
        stream.extend(&bytes_of(&record(3))[..40]);
        let tids: Vec<u32> = parse_records(&stream)
            .waiters
            .iter()
            .map(|r| r.tid)
            .collect();
        assert_eq!(tids, vec![1, 2]);
    }

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
