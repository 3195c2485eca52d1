//! Record layouts shared by the kernel programs (C, `tracer-ebpf/src/bpf/leakscope.h`)
//! and userspace. The C header is the source of truth; these `#[repr(C)]` mirrors carry
//! compile-time size/offset assertions, and the `layout` test compiles the header with
//! the host C compiler and checks every offset against these types.

#![no_std]

use core::mem::{offset_of, size_of};

/// `enum ls_record_kind`: what follows the header.
pub const RECORD_THREAD_WAITER: u32 = 1;

/// `enum ls_record_kind`: a process (group leader).
pub const RECORD_PROCESS: u32 = 2;

/// `LS_WAITER_IN_FUTEX_WAITV`: the thread waits in futex_waitv(2), `args[0]` points at
/// its array of `struct futex_waitv`.
pub const WAITER_IN_FUTEX_WAITV: u32 = 1 << 0;

/// Length of a kernel `comm`.
pub const COMM_LEN: usize = 16;

/// x86-64 syscall numbers the waiter records carry in `syscall_nr`.
pub const SYS_FUTEX: u64 = 202;
pub const SYS_FUTEX_WAITV: u64 = 449;
pub const SYS_FUTEX_WAIT: u64 = 455;

/// `enum ls_fd_kind`: what the file descriptor a waiter's syscall waits on is
/// ([`ThreadWaiterRecord::fd_kind`]).
pub mod fd_kind {
    /// The syscall waits on no single fd (poll, nanosleep, wait4...).
    pub const NONE: u32 = 0;
    /// An fd syscall, but the fd could not be looked up (closed meanwhile?).
    pub const UNKNOWN: u32 = 1;
    /// `fd_detail`: address family | socket type << 16.
    pub const SOCKET: u32 = 2;
    /// A pipe or FIFO.
    pub const PIPE: u32 = 3;
    /// A regular file.
    pub const FILE: u32 = 4;
    pub const DIR: u32 = 5;
    /// `fd_detail`: the device number (major << 20 | minor).
    pub const CHARDEV: u32 = 6;
    /// A terminal or pseudo-terminal; `fd_detail`: the device number.
    pub const TTY: u32 = 7;
    pub const BLOCKDEV: u32 = 8;
    pub const EVENTFD: u32 = 9;
    pub const EPOLL: u32 = 10;
    pub const SIGNALFD: u32 = 11;
    pub const TIMERFD: u32 = 12;
    pub const INOTIFY: u32 = 13;
    pub const PIDFD: u32 = 14;
    pub const IO_URING: u32 = 15;
    /// Another anonymous inode (userfaultfd, bpf objects...).
    pub const ANON: u32 = 16;
    /// Anything else (e.g. a symlink opened with O_PATH).
    pub const OTHER: u32 = 17;
}

/// `struct ls_record_header`: first in every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u32,
    /// Whole record, header included.
    pub size: u32,
}

/// `struct ls_thread_waiter`: a user thread asleep inside a system call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadWaiterRecord {
    pub header: RecordHeader,
    pub tgid: u32,
    pub tid: u32,
    pub process_start_mono_ns: u64,
    pub thread_start_mono_ns: u64,
    pub exec_id: u64,
    pub nvcsw: u64,
    pub nivcsw: u64,
    pub last_arrival_ns: u64,
    pub sched_now_ns: u64,
    pub mono_now_ns: u64,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub syscall_nr: u64,
    /// The syscall's arguments: di, si, dx, r10, r8, r9.
    pub args: [u64; 6],
    pub state: u32,
    pub flags: u32,
    /// The fd the syscall waits on, -1 when none.
    pub fd: i32,
    /// One of [`fd_kind`].
    pub fd_kind: u32,
    /// Sockets: address family | socket type << 16; devices: the device number.
    pub fd_detail: u32,
    /// Zero.
    pub reserved: u32,
    pub comm: [u8; COMM_LEN],
}

/// `LS_UNKNOWN_U32`: [`ProcessRecord::map_count`] and [`ProcessRecord::uid`] when not
/// known.
pub const UNKNOWN_U32: u32 = u32::MAX;

/// `struct ls_process`: one user process (its group leader), reported on every scan,
/// with what it holds of what the kernel limits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessRecord {
    pub header: RecordHeader,
    pub tgid: u32,
    /// Threads of the process (each one a task, with a pid).
    pub nr_threads: u32,
    pub start_mono_ns: u64,
    pub exec_id: u64,
    pub mono_now_ns: u64,
    pub comm: [u8; COMM_LEN],
    /// Its memory mappings (`vm.max_map_count` counts them); [`UNKNOWN_U32`] if not known.
    pub map_count: u32,
    /// Its real uid (`RLIMIT_NPROC` counts that user's tasks); [`UNKNOWN_U32`] if not known.
    pub uid: u32,
    /// Resident pages (file, anonymous and shared memory).
    pub rss_pages: u64,
}

#[cfg(feature = "user")]
// SAFETY: plain-old-data, `#[repr(C)]`, no padding (asserted below), every bit pattern valid.
unsafe impl aya::Pod for ThreadWaiterRecord {}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for ProcessRecord {}

const _: () = {
    assert!(size_of::<RecordHeader>() == 8);
    assert!(size_of::<ThreadWaiterRecord>() == 200);
    assert!(offset_of!(ThreadWaiterRecord, tgid) == 8);
    assert!(offset_of!(ThreadWaiterRecord, ip) == 80);
    assert!(offset_of!(ThreadWaiterRecord, args) == 112);
    assert!(offset_of!(ThreadWaiterRecord, state) == 160);
    assert!(offset_of!(ThreadWaiterRecord, fd) == 168);
    assert!(offset_of!(ThreadWaiterRecord, fd_kind) == 172);
    assert!(offset_of!(ThreadWaiterRecord, fd_detail) == 176);
    assert!(offset_of!(ThreadWaiterRecord, comm) == 184);
    assert!(size_of::<ProcessRecord>() == 72);
    assert!(offset_of!(ProcessRecord, start_mono_ns) == 16);
    assert!(offset_of!(ProcessRecord, comm) == 40);
    assert!(offset_of!(ProcessRecord, map_count) == 56);
    assert!(offset_of!(ProcessRecord, rss_pages) == 64);
};

/// Reads a POD record from the front of `bytes`; `None` when too short.
fn read_record<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked, callers only use POD record types with no invalid
    // bit patterns, and read_unaligned copes with any alignment of the input.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The kernel's `comm` up to its first NUL.
fn comm_bytes(comm: &[u8; COMM_LEN]) -> &[u8] {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    &comm[..end]
}

impl ProcessRecord {
    /// Decodes one record from the front of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        read_record(bytes)
    }

    /// The process's name as the kernel keeps it.
    pub fn comm_bytes(&self) -> &[u8] {
        comm_bytes(&self.comm)
    }
}

impl ThreadWaiterRecord {
    /// Decodes one record from the front of `bytes` (the iterator's output stream).
    /// Returns `None` when fewer bytes than a record remain.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        read_record(bytes)
    }

    /// The thread's name as the kernel keeps it (up to the first NUL).
    pub fn comm_bytes(&self) -> &[u8] {
        comm_bytes(&self.comm)
    }
}
