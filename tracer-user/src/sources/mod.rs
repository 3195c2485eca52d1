//! Sources of waiters: [`threads`], every thread asleep in a system call (from the
//! kernel's task iterator or, where the kernel lacks it, `/proc`), and each Go process's
//! goroutine table ([`goroutines`], [`parked`], with [`go`] for Go binaries). All name
//! processes and stacks alike ([`crate::model`]).

pub mod go;
pub mod goroutines;
pub mod parked;
pub mod threads;
