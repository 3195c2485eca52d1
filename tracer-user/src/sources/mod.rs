//! Sources of waiters and of the facts needed to read their stacks.

pub mod go;
pub mod goroutines;
pub mod memory;
pub mod procfs;
pub mod thread_waiters;
