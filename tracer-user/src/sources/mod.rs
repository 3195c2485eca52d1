//! Sources of waiters: [`threads`], every thread asleep in a system call (from the
//! kernel's task iterator or, where the kernel lacks it, `/proc`), and each Go process's
//! goroutine table (the reader in [`go`], beside the analysis of Go binaries). All name
//! processes and stacks alike ([`crate::model`]), and say why a process could not be
//! read alike ([`error::ReadError`]).
//! Beside them, [`limits`] reads the limits on the processes with waiters and what
//! those limits count.

pub mod error;
pub mod go;
pub mod limits;
pub mod threads;
