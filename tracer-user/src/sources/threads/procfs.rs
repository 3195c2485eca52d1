//! Source of thread waiters for kernels without the task iterator: `/proc`.
//!
//! Produces the same records as the `thread_waiters` iterator, from files any kernel
//! since 2.6 has: `/proc/PID/task/TID/stat` (state, flags, start time), `status`
//! (voluntary context switches), `syscall` (the syscall a blocked thread sits in, its
//! six arguments, and its user sp and pc) and `sched` (when it last ran). What the
//! files do not give:
//! - `bp`: the frame pointer is not in `syscall`, so the record carries 0 and the
//!   unwinder starts from sp and pc with DWARF CFI only (frame pointers take over only
//!   where CFI itself restores rbp).
//! - `exec_id`: there is no exec counter in /proc; the executable's device and inode
//!   stand in, so an execve of another program still starts a new process instance.
//! - socket families (`fd_detail` of sockets) stay 0.
//!
//! It costs more than the iterator (a few file reads per blocked thread per scan, and
//! the watched programs' `/proc` entries are read, not the kernel's task list), so it
//! reads only the processes the scan watches, and each wait's `syscall` and `sched`
//! files only once: a thread whose voluntary switch count has not moved is in the same
//! wait as at the previous scan.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Read,
    path::Path,
};

use tracer_common::{
    COMM_LEN, ProcessRecord, RECORD_PROCESS, RECORD_THREAD_WAITER, RecordHeader, SYS_FUTEX_WAITV,
    ThreadWaiterRecord, WAITER_IN_FUTEX_WAITV, fd_kind,
};

use super::{holdings::Holdings, record::ThreadRecords};
use crate::{
    host::stat::{self, stat_cached},
    isolate::{self, Step},
};

/// `task->flags` bit of kernel threads (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;
/// `task->__state` values the iterator reports, by `stat`'s state letter.
const TASK_INTERRUPTIBLE: u32 = 0x1;
const TASK_UNINTERRUPTIBLE: u32 = 0x2;
/// Largest /proc file read; `stat`, `status`, `syscall` and `sched` are a few KiB.
pub const MAX_PROC_FILE: u64 = 64 * 1024;
/// Waits remembered across scans; beyond that the cache is rebuilt (a host with more
/// blocked threads than this pays the full reads every scan, nothing worse).
const MAX_CACHED_WAITS: usize = 1 << 20;

/// x86-64 syscalls that wait on the file descriptor in their first argument: the
/// iterator's `fd_argument` list (thread_waiters.bpf.c; a test keeps the two equal).
pub const FD_SYSCALLS: [u64; 34] = [
    0, 1, 16, 17, 18, 19, 20, 40, 42, 43, 44, 45, 46, 47, 72, 73, 74, 75, 77, 232, 275, 276, 281,
    285, 288, 295, 296, 299, 307, 326, 327, 328, 426, 441,
];

/// What one wait looks like in `syscall` and `sched`, kept while the wait lasts.
#[derive(Clone, Copy, Debug)]
struct WaitFacts {
    syscall: SyscallLine,
    last_ran_ns: u64,
    fd: FdFacts,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FdFacts {
    fd: i32,
    kind: u32,
    detail: u32,
}

/// The thread-waiter source that reads `/proc`.
pub struct ProcfsThreads {
    /// Clock ticks per second of `stat`'s start times (USER_HZ).
    ticks_per_s: u64,
    /// CLOCK_BOOTTIME - CLOCK_MONOTONIC as first measured: kept while the host does not
    /// suspend, so start times (and the process keys made of them) do not jitter with
    /// the nanoseconds between two clock reads.
    suspended_ns: u64,
    /// Each wait's facts, by (tid, thread start, nvcsw): valid while nvcsw stays put.
    waits: HashMap<(u32, u64, u64), WaitFacts>,
    /// Each process's uid and mapping count.
    holdings: Holdings,
    buf: String,
    /// Processes whose reading panicked: left out while their pid is listed.
    panicked: HashSet<u32>,
}

impl Default for ProcfsThreads {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcfsThreads {
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            ticks_per_s: u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100),
            suspended_ns: 0,
            waits: HashMap::new(),
            holdings: Holdings::default(),
            buf: String::with_capacity(4096),
            panicked: HashSet::new(),
        }
    }

    /// One pass over the watched processes: each user process, and its threads asleep
    /// in a system call now. Processes that vanish mid-read are skipped.
    pub fn scan(&mut self, watches: &dyn Fn(u32) -> bool) -> ThreadRecords {
        let clock = ScanClock::now(self.ticks_per_s, &mut self.suspended_ns);
        let mut out = ThreadRecords::default();
        let mut seen = HashMap::with_capacity(self.waits.len());
        let mut listed = HashSet::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return out;
        };
        // Only leakscope itself left out: what the processes hold adds up to the host's.
        out.lists_every_process = true;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            listed.insert(pid);
            if !watches(pid) || self.panicked.contains(&pid) {
                out.lists_every_process &= pid == std::process::id();
                continue;
            }
            // Its /proc files are the process's to shape (its name, ...): a bug they
            // reach costs this process only, which is left out from then on.
            let read = isolate::per_process(pid, Step::Threads, || {
                let process = self.process_record(pid, &clock)?;
                let mut waiters = Vec::new();
                self.scan_threads(&process, &clock, &mut seen, &mut waiters);
                Some((process, waiters))
            });
            match read {
                Ok(Some((process, waiters))) => {
                    out.processes.push(process);
                    out.waiters.extend(waiters);
                }
                Ok(None) => {}
                Err(panic) => {
                    log::warn!("pid {pid}: {panic}; its threads are left out while it lives");
                    self.panicked.insert(pid);
                }
            }
        }
        self.panicked.retain(|pid| listed.contains(pid));
        if seen.len() <= MAX_CACHED_WAITS {
            self.waits = seen;
        } else {
            self.waits.clear();
        }
        self.holdings.end_scan();
        out
    }

    fn process_record(&mut self, pid: u32, clock: &ScanClock) -> Option<ProcessRecord> {
        let stat = parse_stat(read_small(&format!("/proc/{pid}/stat"), &mut self.buf)?)?;
        if !is_user_process(&stat) {
            return None;
        }
        let held = self
            .holdings
            .of(pid, stat.start_ticks, stat.num_threads, clock.mono_now_ns);
        process_of(pid, &stat, exec_id(pid), held, clock)
    }

    fn scan_threads(
        &mut self,
        process: &ProcessRecord,
        clock: &ScanClock,
        seen: &mut HashMap<(u32, u64, u64), WaitFacts>,
        waiters: &mut Vec<ThreadWaiterRecord>,
    ) {
        let pid = process.tgid;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((record, facts)) = self.waiter(process, tid, clock) {
                seen.insert((tid, record.thread_start_mono_ns, record.nvcsw), facts);
                waiters.push(record);
            }
        }
    }

    /// The record of thread `tid` when it sleeps inside a system call.
    fn waiter(
        &mut self,
        process: &ProcessRecord,
        tid: u32,
        clock: &ScanClock,
    ) -> Option<(ThreadWaiterRecord, WaitFacts)> {
        let dir = format!("/proc/{}/task/{tid}", process.tgid);
        let stat = parse_stat(read_small(&format!("{dir}/stat"), &mut self.buf)?)?;
        sleep_state(stat.state)?;
        let switches = parse_switches(read_small(&format!("{dir}/status"), &mut self.buf)?)?;
        let key = (
            tid,
            clock.start_mono_ns(stat.start_ticks),
            switches.voluntary,
        );
        let facts = match self.waits.get(&key) {
            Some(facts) => *facts,
            None => self.new_wait(process.tgid, &dir, switches.voluntary, clock)?,
        };
        let record = waiter_record(process, tid, &stat, switches, &facts, clock)?;
        Some((record, facts))
    }

    /// Reads what a wait not seen before looks like; `None` when the thread is not in
    /// a syscall, or woke meanwhile (its switch count moved: the registers might be of
    /// another wait).
    fn new_wait(
        &mut self,
        pid: u32,
        dir: &str,
        nvcsw: u64,
        clock: &ScanClock,
    ) -> Option<WaitFacts> {
        let syscall = parse_syscall(read_small(&format!("{dir}/syscall"), &mut self.buf)?)?;
        let last_ran_ns = read_small(&format!("{dir}/sched"), &mut self.buf)
            .and_then(parse_exec_start_ns)
            // No /proc/PID/sched (CONFIG_SCHED_DEBUG off): blocked since first seen.
            .unwrap_or(clock.sched_now_ns);
        let after = parse_switches(read_small(&format!("{dir}/status"), &mut self.buf)?)?;
        if after.voluntary != nvcsw {
            return None;
        }
        Some(WaitFacts {
            syscall,
            last_ran_ns,
            fd: fd_facts(pid, &syscall),
        })
    }
}

/// Whether `stat` is a process of user space with a live thread: no kernel thread, no
/// zombie whose threads are all gone.
fn is_user_process(stat: &Stat) -> bool {
    stat.flags & PF_KTHREAD == 0 && !(stat.state == b'Z' && stat.num_threads <= 1)
}

/// The record of a process from its `stat` and its real uid and mapping count
/// (`held`); `None` for kernel threads and zombies.
fn process_of(
    pid: u32,
    stat: &Stat,
    exec_id: u64,
    (uid, map_count): (u32, u32),
    clock: &ScanClock,
) -> Option<ProcessRecord> {
    if !is_user_process(stat) {
        return None;
    }
    Some(ProcessRecord {
        header: header(RECORD_PROCESS, size_of::<ProcessRecord>()),
        tgid: pid,
        nr_threads: stat.num_threads,
        start_mono_ns: clock.start_mono_ns(stat.start_ticks),
        exec_id,
        mono_now_ns: clock.mono_now_ns,
        comm: stat.comm,
        map_count,
        uid,
        rss_pages: stat.rss_pages,
    })
}

/// The iterator's `task->__state` of a thread asleep (`S`, `D`); `None` otherwise.
fn sleep_state(state: u8) -> Option<u32> {
    match state {
        b'S' => Some(TASK_INTERRUPTIBLE),
        b'D' => Some(TASK_UNINTERRUPTIBLE),
        _ => None,
    }
}

/// The record the iterator would give for thread `tid` of `process`, asleep in the
/// wait `facts` describes; `None` when `stat` says it is not asleep.
fn waiter_record(
    process: &ProcessRecord,
    tid: u32,
    stat: &Stat,
    switches: Switches,
    facts: &WaitFacts,
    clock: &ScanClock,
) -> Option<ThreadWaiterRecord> {
    let syscall = facts.syscall;
    Some(ThreadWaiterRecord {
        header: header(RECORD_THREAD_WAITER, size_of::<ThreadWaiterRecord>()),
        tgid: process.tgid,
        tid,
        process_start_mono_ns: process.start_mono_ns,
        thread_start_mono_ns: clock.start_mono_ns(stat.start_ticks),
        exec_id: process.exec_id,
        nvcsw: switches.voluntary,
        nivcsw: switches.involuntary,
        last_arrival_ns: facts.last_ran_ns,
        sched_now_ns: clock.sched_now_ns,
        mono_now_ns: clock.mono_now_ns,
        ip: syscall.pc,
        sp: syscall.sp,
        bp: 0,
        syscall_nr: syscall.nr,
        args: syscall.args,
        state: sleep_state(stat.state)?,
        flags: if syscall.nr == SYS_FUTEX_WAITV {
            WAITER_IN_FUTEX_WAITV
        } else {
            0
        },
        fd: facts.fd.fd,
        fd_kind: facts.fd.kind,
        fd_detail: facts.fd.detail,
        reserved: 0,
        comm: stat.comm,
    })
}

/// The clocks of one scan.
struct ScanClock {
    ticks_per_s: u64,
    mono_now_ns: u64,
    /// CLOCK_BOOTTIME - CLOCK_MONOTONIC: `stat` dates starts on the boot-time clock,
    /// the iterator (and so the census) on the monotonic one.
    suspended_ns: u64,
    /// "Now" on the scheduler clock of `sched`'s `se.exec_start`: leakscope's own
    /// thread's, refreshed as it runs this scan (the iterator does the same).
    sched_now_ns: u64,
}

impl ScanClock {
    /// The clocks now; `suspended_ns` is the offset of the boot-time clock as known,
    /// updated only when it moved by more than a clock tick (the host suspended).
    fn now(ticks_per_s: u64, suspended_ns: &mut u64) -> Self {
        let mono_now_ns = clock_ns(libc::CLOCK_MONOTONIC);
        let boot_now_ns = clock_ns(libc::CLOCK_BOOTTIME);
        let measured = boot_now_ns.saturating_sub(mono_now_ns);
        if measured.abs_diff(*suspended_ns) > 1_000_000_000 / ticks_per_s {
            *suspended_ns = measured;
        }
        let mut buf = String::new();
        let sched_now_ns = read_small("/proc/thread-self/sched", &mut buf)
            .and_then(parse_exec_start_ns)
            .unwrap_or(mono_now_ns);
        Self {
            ticks_per_s,
            mono_now_ns,
            suspended_ns: *suspended_ns,
            sched_now_ns,
        }
    }

    fn start_mono_ns(&self, start_ticks: u64) -> u64 {
        let boot_ns = start_ticks.saturating_mul(1_000_000_000) / self.ticks_per_s;
        boot_ns.saturating_sub(self.suspended_ns)
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

fn header(kind: u32, size: usize) -> RecordHeader {
    RecordHeader {
        kind,
        size: size as u32,
    }
}

/// Reads a small /proc file into `buf` (bounded: a /proc file is no input to trust with
/// memory either); `None` when it cannot be read (the task is gone).
fn read_small<'a>(path: &str, buf: &'a mut String) -> Option<&'a str> {
    buf.clear();
    let file = fs::File::open(path).ok()?;
    file.take(MAX_PROC_FILE).read_to_string(buf).ok()?;
    Some(buf.as_str())
}

/// An executable's identity as a stand-in for the kernel's exec counter (without
/// asking its file system, which may not answer).
fn exec_id(pid: u32) -> u64 {
    stat_cached(Path::new(&format!("/proc/{pid}/exe")))
        .map(|st| st.ino ^ st.dev.rotate_left(40))
        .unwrap_or(0)
}

/// The fields of `/proc/PID/stat` the records need.
#[derive(Debug, PartialEq)]
struct Stat {
    comm: [u8; COMM_LEN],
    state: u8,
    flags: u64,
    num_threads: u32,
    start_ticks: u64,
    /// Resident pages.
    rss_pages: u64,
}

/// Parses `/proc/PID/stat`: "pid (comm) state ppid ...". The comm may hold spaces and
/// parentheses, so the fields start after the last ')'.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.as_bytes().get(open + 1..close)?;
    let mut comm = [0u8; COMM_LEN];
    let len = name.len().min(COMM_LEN - 1);
    comm[..len].copy_from_slice(&name[..len]);
    // After ')': state is field 3 of stat(5), so field N is index N - 3.
    let fields: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        comm,
        state: *field(3)?.as_bytes().first()?,
        flags: field(9)?.parse().ok()?,
        num_threads: field(20)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
        rss_pages: field(24)?.parse().ok()?,
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Switches {
    voluntary: u64,
    involuntary: u64,
}

fn parse_switches(status: &str) -> Option<Switches> {
    let value = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))?
            .trim()
            .parse()
            .ok()
    };
    Some(Switches {
        voluntary: value("voluntary_ctxt_switches:")?,
        involuntary: value("nonvoluntary_ctxt_switches:")?,
    })
}

/// `/proc/PID/task/TID/syscall` of a thread asleep in a syscall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SyscallLine {
    nr: u64,
    args: [u64; 6],
    sp: u64,
    pc: u64,
}

/// Parses "NR ARG1..ARG6 SP PC" (NR decimal, the rest hex). "running", and "-1 SP PC"
/// (blocked, but not in a syscall: a page fault) are no waits.
fn parse_syscall(text: &str) -> Option<SyscallLine> {
    let mut fields = text.split_ascii_whitespace();
    let nr: u64 = fields.next()?.parse().ok()?;
    let mut hex = fields.map(|f| u64::from_str_radix(f.strip_prefix("0x")?, 16).ok());
    let mut args = [0u64; 6];
    for arg in &mut args {
        *arg = hex.next()??;
    }
    Some(SyscallLine {
        nr,
        args,
        sp: hex.next()??,
        pc: hex.next()??,
    })
}

/// `se.exec_start` of a `sched` file ("se.exec_start   :   1917123.218812", in ms with
/// six decimals) in ns: when the task last stopped running (a sleeping task's clock is
/// not advanced). The file starts with the task's name, any bytes of it: the last such
/// line is the kernel's (a thread named `se.exec_start` hid its wait's age: the
/// proc_threads fuzz target's property fails on it, seed sched-comm).
fn parse_exec_start_ns(sched: &str) -> Option<u64> {
    let line = sched
        .lines()
        .rev()
        .find(|l| l.starts_with("se.exec_start"))?;
    let value = line.split(':').nth(1)?.trim();
    let (ms, frac) = value.split_once('.').unwrap_or((value, "0"));
    let frac_ns: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    ms.parse::<u64>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(frac_ns)
}

/// The fd a syscall waits on, and what it is, from /proc/PID/fd/N.
fn fd_facts(pid: u32, syscall: &SyscallLine) -> FdFacts {
    let Some(fd) = waited_fd(syscall) else {
        return FdFacts {
            fd: -1,
            kind: fd_kind::NONE,
            detail: 0,
        };
    };
    let path = format!("/proc/{pid}/fd/{fd}");
    let (kind, detail) = match fs::read_link(&path) {
        Ok(target) => classify_fd_link(&target.to_string_lossy(), || {
            stat_cached(Path::new(&path)).ok()
        }),
        Err(_) => (fd_kind::UNKNOWN, 0),
    };
    FdFacts { fd, kind, detail }
}

/// The fd a syscall waits on: its first argument, for the syscalls that wait on one.
fn waited_fd(syscall: &SyscallLine) -> Option<i32> {
    FD_SYSCALLS
        .contains(&syscall.nr)
        .then_some(syscall.args[0] as i32)
}

/// Tells an fd's kind from its /proc/PID/fd link text, and for paths from the file's
/// metadata (`stat` follows the link to the open file itself).
fn classify_fd_link(link: &str, stat: impl FnOnce() -> Option<stat::Stat>) -> (u32, u32) {
    if link.starts_with("socket:") {
        return (fd_kind::SOCKET, 0);
    }
    if link.starts_with("pipe:") {
        return (fd_kind::PIPE, 0);
    }
    if let Some(anon) = link.strip_prefix("anon_inode:") {
        let kind = match anon.trim_start_matches('[').trim_end_matches(']') {
            "eventfd" => fd_kind::EVENTFD,
            "eventpoll" => fd_kind::EPOLL,
            "signalfd" => fd_kind::SIGNALFD,
            "timerfd" => fd_kind::TIMERFD,
            "inotify" => fd_kind::INOTIFY,
            "pidfd" => fd_kind::PIDFD,
            "io_uring" => fd_kind::IO_URING,
            _ => fd_kind::ANON,
        };
        return (kind, 0);
    }
    if link.starts_with("pidfd:") {
        return (fd_kind::PIDFD, 0);
    }
    let Some(file_type) = stat() else {
        return (fd_kind::UNKNOWN, 0);
    };
    let rdev = file_type.rdev;
    // The kernel's own encoding of a device number, as the iterator reports it.
    let device = (libc::major(rdev) << 20) | libc::minor(rdev);
    if file_type.is_file() {
        (fd_kind::FILE, 0)
    } else if file_type.is_dir() {
        (fd_kind::DIR, 0)
    } else if file_type.is_fifo() {
        (fd_kind::PIPE, 0)
    } else if file_type.is_socket() {
        (fd_kind::SOCKET, 0)
    } else if file_type.is_char_device() {
        let major = libc::major(rdev);
        let tty = major == 4 || major == 5 || (136..=143).contains(&major);
        (if tty { fd_kind::TTY } else { fd_kind::CHARDEV }, device)
    } else if file_type.is_block_device() {
        (fd_kind::BLOCKDEV, device)
    } else {
        (fd_kind::OTHER, 0)
    }
}

/// The text of one thread's `/proc` files, for the fuzz target.
#[cfg(feature = "fuzzing")]
pub struct ThreadFiles<'a> {
    /// `/proc/PID/stat` (the process).
    pub process_stat: &'a str,
    /// `/proc/PID/task/TID/stat`, `status` (also read for the process's real uid),
    /// `syscall` and `sched`.
    pub stat: &'a str,
    pub status: &'a str,
    pub syscall: &'a str,
    pub sched: &'a str,
    /// The `/proc/PID/fd/N` link of the fd the syscall waits on.
    pub fd_link: &'a str,
}

/// What this source makes of one thread's files (the process and waiter records, as the
/// iterator would give them), with every parser on the way, for the fuzz target. The
/// scheduler clock reads 0 (a `sched` file that gives no time gives 0).
#[cfg(feature = "fuzzing")]
pub fn fuzz_thread_files(files: &ThreadFiles<'_>) -> Option<(ProcessRecord, ThreadWaiterRecord)> {
    let clock = ScanClock {
        ticks_per_s: 100,
        mono_now_ns: 1 << 40,
        suspended_ns: 1 << 30,
        sched_now_ns: 0,
    };
    let uid = super::holdings::parse_real_uid(files.status).unwrap_or(tracer_common::UNKNOWN_U32);
    let process = process_of(1, &parse_stat(files.process_stat)?, 1, (uid, 1), &clock)?;
    let stat = parse_stat(files.stat)?;
    sleep_state(stat.state)?;
    let switches = parse_switches(files.status)?;
    let syscall = parse_syscall(files.syscall)?;
    let fd = match waited_fd(&syscall) {
        Some(fd) => {
            let (kind, detail) = classify_fd_link(files.fd_link, || None);
            FdFacts { fd, kind, detail }
        }
        None => FdFacts {
            fd: -1,
            kind: fd_kind::NONE,
            detail: 0,
        },
    };
    let facts = WaitFacts {
        syscall,
        last_ran_ns: parse_exec_start_ns(files.sched).unwrap_or(clock.sched_now_ns),
        fd,
    };
    let record = waiter_record(&process, 2, &stat, switches, &facts, &clock)?;
    Some((process, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that stat parsing copes with a comm holding spaces and parentheses, and
    /// reads state, flags, thread count, start time and resident pages from the right
    /// fields.
    #[test]
    fn stat_fields_after_the_last_paren() {
        let text = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 \
                    7 0 123456 1000 50 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(&stat.comm, b"we (ird) name\0\0\0");
        assert_eq!(stat.state, b'S');
        assert_eq!(stat.flags, 4194560);
        assert_eq!(stat.num_threads, 7);
        assert_eq!(stat.start_ticks, 123456);
        assert_eq!(stat.rss_pages, 50);
        assert_eq!(parse_stat("4242 (cut"), None);
    }

    /// Check that a syscall line gives number, six arguments, sp and pc, and that a
    /// running thread or a thread outside any syscall gives nothing.
    #[test]
    fn syscall_lines() {
        let line = "202 0x55d0c0de 0x80 0x2 0x0 0x0 0x0 0x7ffd1000 0x7f00beef\n";
        assert_eq!(
            parse_syscall(line),
            Some(SyscallLine {
                nr: 202,
                args: [0x55d0c0de, 0x80, 2, 0, 0, 0],
                sp: 0x7ffd1000,
                pc: 0x7f00beef,
            })
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffd1000 0x7f00beef\n"), None);
        assert_eq!(parse_syscall("202 0x1 0x2\n"), None);
    }

    /// Check that the context-switch counts and the last-run time are read from status
    /// and sched.
    #[test]
    fn switches_and_exec_start() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(
            parse_switches(status),
            Some(Switches {
                voluntary: 17,
                involuntary: 3
            })
        );
        let sched = "x (1, #threads: 1)\n---\nse.exec_start                                :       1917123.218812\n";
        assert_eq!(parse_exec_start_ns(sched), Some(1_917_123_218_812));
        assert_eq!(
            parse_exec_start_ns("se.exec_start : 12.5"),
            Some(12_500_000)
        );
        // A name in the header line (any bytes, newlines too) does not hide the field.
        for comm in ["se.exec_start", "-\nse.exec_start", "se.exec_start:1"] {
            let named = format!("{comm} (1, #threads: 1)\n---\nse.exec_start : 12.5\n");
            assert_eq!(parse_exec_start_ns(&named), Some(12_500_000), "{comm:?}");
        }
    }

    /// Check that fd links name the same kinds the iterator tells from inodes.
    #[test]
    fn fd_links_are_classified() {
        let none = || None;
        assert_eq!(classify_fd_link("socket:[123]", none).0, fd_kind::SOCKET);
        assert_eq!(classify_fd_link("pipe:[9]", none).0, fd_kind::PIPE);
        assert_eq!(
            classify_fd_link("anon_inode:[eventfd]", none).0,
            fd_kind::EVENTFD
        );
        assert_eq!(
            classify_fd_link("anon_inode:[eventpoll]", none).0,
            fd_kind::EPOLL
        );
        assert_eq!(
            classify_fd_link("anon_inode:inotify", none).0,
            fd_kind::INOTIFY
        );
        assert_eq!(
            classify_fd_link("anon_inode:[userfaultfd]", none).0,
            fd_kind::ANON
        );
        assert_eq!(classify_fd_link("/gone/file", none).0, fd_kind::UNKNOWN);
        let null = classify_fd_link("/dev/null", || stat_cached(Path::new("/dev/null")).ok());
        assert_eq!(null, (fd_kind::CHARDEV, (1 << 20) | 3));
        let dir = classify_fd_link("/", || stat_cached(Path::new("/")).ok());
        assert_eq!(dir.0, fd_kind::DIR);
    }

    /// Check that the syscalls read as waiting on an fd are exactly those of the
    /// iterator's `fd_argument` (one list in C, one here: they must agree).
    #[test]
    fn fd_syscalls_match_the_kernel_program() {
        let source = include_str!("../../../../tracer-ebpf/src/bpf/thread_waiters.bpf.c");
        let body = source
            .split("fd_argument(")
            .nth(1)
            .and_then(|rest| rest.split("default:").next())
            .expect("thread_waiters.bpf.c has fd_argument's switch");
        let mut from_c: Vec<u64> = body
            .lines()
            .filter_map(|line| {
                line.trim()
                    .strip_prefix("case ")?
                    .split(':')
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect();
        let mut ours = FD_SYSCALLS.to_vec();
        from_c.sort_unstable();
        ours.sort_unstable();
        assert_eq!(
            ours, from_c,
            "FD_SYSCALLS differs from thread_waiters.bpf.c's fd_argument"
        );
    }
}
