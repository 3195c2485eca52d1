//! Sources of waiters: the kernel task iterator for threads (or, where the kernel lacks
//! it, `/proc`), each Go process's goroutine table. All name processes and stacks alike
//! ([`crate::model`]).

pub mod go;
pub mod goroutines;
pub mod parked;
pub mod procfs_threads;
pub mod syscalls;
pub mod thread_waiters;
pub mod threads;
