//! CPU time, as leakscope paces its own work by it: what a read or a scan cost, whatever
//! else runs on the machine.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// CPU time this thread has used.
pub fn thread_cpu_time() -> Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The time of clock `clock` (a thread's CPU clock, from `pthread_getcpuclockid`);
/// zero when it cannot be read (a thread that is gone).
pub fn clock_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to; a clock of a thread that is gone is
    // an error, not undefined.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// CPU time spent on other threads on a scan's behalf (the reader threads), in ns.
static DELEGATED_NS: AtomicU64 = AtomicU64::new(0);

/// Counts `cpu`, spent on another thread for the scan, as the scan's.
pub fn add_delegated(cpu: Duration) {
    DELEGATED_NS.fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
}

/// CPU time this thread used, plus what other threads used on the scans' behalf: what
/// a scan cost, measured before and after it (on the thread that scans).
pub fn scan_cpu_time() -> Duration {
    thread_cpu_time() + Duration::from_nanos(DELEGATED_NS.load(Ordering::Relaxed))
}
