//! Sources of waiters: the kernel task iterator for threads (or, where the kernel lacks
//! it, `/proc`), each Go process's goroutine table. All name processes and stacks alike.

use std::sync::Arc;

use tracer_common::ProcessRecord;

pub mod go;
pub mod goroutines;
pub mod parked;
pub mod procfs_threads;
pub mod syscalls;
pub mod thread_waiters;
pub mod threads;

/// One process instance: a pid is reused, a program is replaced by execve; neither may
/// merge two programs' waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    pub start_mono_ns: u64,
    pub exec_id: u64,
}

impl ProcessKey {
    /// The process a kernel process record describes.
    pub fn of(record: &ProcessRecord) -> Self {
        Self {
            pid: record.tgid,
            start_mono_ns: record.start_mono_ns,
            exec_id: record.exec_id,
        }
    }
}

/// The stack a waiter blocks at: frame addresses, innermost first.
pub type StackKey = Arc<[u64]>;
