//! leakscope's kernel programs, compiled from C by build.rs and embedded here.
//!
//! The C sources live in `src/bpf/`; `leakscope.h` there is the C half of the record
//! layouts that `tracer-common` mirrors in Rust.

#![no_std]

/// Bytes aligned to 8 so the ELF parser may read them in place.
#[repr(C, align(8))]
pub struct AlignedBytes<T: ?Sized>(pub T);

/// The task iterator that reports threads asleep in system calls (`thread_waiters.bpf.c`).
pub static THREAD_WAITERS: &AlignedBytes<[u8]> = &AlignedBytes(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/thread_waiters.bpf.o"
)));

/// Name of the iterator program inside [`THREAD_WAITERS`].
pub const THREAD_WAITERS_PROGRAM: &str = "thread_waiters";

/// Path of the shared C header, for the layout test in tracer-common.
pub const LEAKSCOPE_H: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bpf/leakscope.h");
