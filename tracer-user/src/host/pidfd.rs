//! One process instance, not a pid: a pid names whatever process has it now, and once
//! a process exits the kernel may give its pid to a new one, between the scan that
//! listed it and the reads of it. [`PinnedProcess`] holds a pidfd of the process (Linux
//! 5.3+), checked against its start time when opened (a pid reused before then is
//! another process: it started later) and polled after the reads (it did not exit
//! during them, so its pid was not reused meanwhile and what they read was its own).
//! Without pidfds the start time is read again after the reads instead.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use thiserror::Error;

/// Why a process's reads are not its own.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ProcessGone {
    #[error("it exited while being read: what was read is dropped")]
    Exited,
    #[error("its pid is another process's now (one that started at another time): not read")]
    PidReused,
}

/// A process, held by pidfd (where the kernel has them) from before its reads to after.
pub struct PinnedProcess {
    pid: u32,
    pidfd: Option<OwnedFd>,
    /// Its start on the boot-time clock, in clock ticks, as `/proc/PID/stat` says.
    start_ticks: u64,
}

impl PinnedProcess {
    /// Pins process `pid` that started at `start_mono_ns` (CLOCK_MONOTONIC, as the scan
    /// knows it): fails when the process with that pid now is not that one, or there
    /// is none.
    pub fn open(pid: u32, start_mono_ns: u64) -> Result<Self, ProcessGone> {
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(ProcessGone::Exited),
            // No pidfds (before 5.3), or none to spare: the start time alone.
            Err(_) => None,
        };
        let start_ticks = start_ticks(pid).ok_or(ProcessGone::Exited)?;
        if !Clock::now().may_be(start_mono_ns, start_ticks) {
            return Err(ProcessGone::PidReused);
        }
        Ok(Self {
            pid,
            pidfd,
            start_ticks,
        })
    }

    /// Whether it still runs, as it did when pinned: after reads of it, they were its own.
    pub fn check(&self) -> Result<(), ProcessGone> {
        let alive = match &self.pidfd {
            // A pidfd turns readable when its process exits.
            Some(fd) => !readable(fd),
            None => start_ticks(self.pid) == Some(self.start_ticks),
        };
        alive.then_some(()).ok_or(ProcessGone::Exited)
    }
}

/// `pidfd_open(pid, 0)`.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags; the descriptor returned is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns (pidfds are close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `fd` polls readable now.
fn readable(fd: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    n != 0 && poll.revents != 0
}

/// The start of process `pid` (field 22 of `/proc/PID/stat`, boot-time clock ticks).
fn start_ticks(pid: u32) -> Option<u64> {
    // Bytes: the command name in it may be any bytes, not UTF-8.
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name's closing parenthesis start with field 3.
    let rest = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let field = rest
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .nth(19)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The clocks a start time in ticks is read against.
struct Clock {
    tick_ns: u64,
    /// CLOCK_BOOTTIME - CLOCK_MONOTONIC now: how long the host was suspended.
    suspended_ns: u64,
}

impl Clock {
    fn now() -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let mono = super::cpu::clock_time(libc::CLOCK_MONOTONIC);
        let boot = super::cpu::clock_time(libc::CLOCK_BOOTTIME);
        Self {
            tick_ns: 1_000_000_000 / ticks_per_s,
            suspended_ns: boot.saturating_sub(mono).as_nanos() as u64,
        }
    }

    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(self.tick_ns)
    }

    /// Whether a process that started at `start_mono_ns` (monotonic clock) may be the
    /// one `/proc/PID/stat` dates `start_ticks` (boot-time clock, cut to a tick). The
    /// boot-time clock runs ahead by the time the host was suspended before the process
    /// started: at least none, at most what it is now; one tick more for the rounding
    /// of a start the scan itself read in ticks. A pid reused by a process started
    /// two ticks (20 ms) or more later is told apart.
    fn may_be(&self, start_mono_ns: u64, start_ticks: u64) -> bool {
        let earliest = start_mono_ns / self.tick_ns;
        let latest = (start_mono_ns + self.suspended_ns) / self.tick_ns + 1;
        (earliest..=latest).contains(&start_ticks)
    }
}

/// When process `pid` started, on CLOCK_MONOTONIC (as the scan dates processes), to a
/// clock tick; `None` when there is no such process.
pub fn start_mono_ns(pid: u32) -> Option<u64> {
    let clock = Clock::now();
    let boot_ns = clock.ticks_to_ns(start_ticks(pid)?);
    Some(boot_ns.saturating_sub(clock.suspended_ns))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Check that this process pins (with its own start time), stays pinned, and that a
    /// start time other than its own by more than a few ticks is another process's.
    #[test]
    fn a_process_pins_by_its_own_start_time_only() {
        let me = std::process::id();
        let start = start_mono_ns(me).unwrap();
        let pinned = PinnedProcess::open(me, start).unwrap();
        assert!(pinned.pidfd.is_some(), "pidfds since 5.3");
        assert_eq!(pinned.check(), Ok(()));
        // Earlier than it by more than the host was suspended and 3 ticks.
        let earlier = start.saturating_sub(Clock::now().suspended_ns + 30_000_000);
        let reused = Some(ProcessGone::PidReused);
        assert_eq!(PinnedProcess::open(me, earlier).err(), reused);
        assert_eq!(PinnedProcess::open(me, start + 30_000_000).err(), reused);
        assert_eq!(
            PinnedProcess::open(u32::MAX - 1, start).err(),
            Some(ProcessGone::Exited)
        );
    }

    /// Check that the start time is read whatever bytes the command name holds (not
    /// UTF-8, parentheses, spaces).
    #[test]
    fn start_time_is_read_past_any_command_name() {
        // A shell that names itself so (only a process itself may), then waits.
        let script = r#"printf '\377) x (1 2 3' > /proc/$$/comm; sleep 60; true"#;
        let mut child = Command::new("bash").args(["-c", script]).spawn().unwrap();
        let pid = child.id();
        let renamed = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(b"\xff)"))
        });
        let ticks = start_ticks(pid);
        let start = start_mono_ns(pid);
        let pinned = start.map(|start| PinnedProcess::open(pid, start).map(|p| p.check()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(renamed, "the shell renamed itself");
        assert!(ticks.is_some());
        assert!(matches!(pinned, Some(Ok(Ok(())))), "pinned and alive");
    }

    /// Check that a process that exits after it was pinned fails the check, with a
    /// pidfd and without one.
    #[test]
    fn a_process_that_exits_after_it_is_pinned_is_gone() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        let start = start_mono_ns(pid).unwrap();
        let pinned = PinnedProcess::open(pid, start).unwrap();
        let mut without = PinnedProcess::open(pid, start).unwrap();
        without.pidfd = None;
        assert_eq!((pinned.check(), without.check()), (Ok(()), Ok(())));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(pinned.check(), Err(ProcessGone::Exited));
        assert_eq!(without.check(), Err(ProcessGone::Exited));
    }
}
