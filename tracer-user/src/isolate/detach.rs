//! A one-shot command's work in a child process, so that the command returns even when
//! a read of it is stuck in the kernel for good.
//!
//! A reader thread abandoned in a file system that does not answer ([`super::Reader`])
//! costs the scan nothing, but a process cannot finish exiting while one of its threads
//! waits uninterruptibly: a FUSE request the server took and never answers holds its
//! reader even past SIGKILL. `diagnose` would print its report and then never return
//! to the shell. So `diagnose` runs its work in a child ([`exit_with_child`]): the child
//! writes the report, hands its exit status to the parent over a pipe, points its
//! standard streams at `/dev/null` (whoever reads the report's pipe sees its end) and
//! exits; the parent exits with that status at once, leaving behind, only when one is
//! stuck, a child that ends when its file system answers or is aborted. The parent is
//! not watched ([`supervisor_pid`]); the child dies with it (`PR_SET_PDEATHSIG`).

use std::{
    io::Write,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// How long the parent waits for the child to be gone after it said its status: a
/// child not stuck is, at once, and reaping it passes its CPU time and peak memory up
/// to whoever waits for the command (`time`, `wait4`).
const REAP_GRACE: Duration = Duration::from_secs(2);

/// The pid of the parent waiting for this process's status, when this process is the
/// child of [`exit_with_child`] (0 otherwise).
static SUPERVISOR: AtomicU32 = AtomicU32::new(0);

/// The parent waiting for this process's exit status, if this process runs a
/// command's work for it: a leakscope process, blocked on a pipe, not to be watched.
pub fn supervisor_pid() -> Option<u32> {
    Some(SUPERVISOR.load(Ordering::Relaxed)).filter(|&pid| pid != 0)
}

/// Runs `work` in a child process and exits with the status it returns (see the
/// module doc). Call before any thread starts. If the child cannot be made, runs
/// `work` here.
pub fn exit_with_child(work: impl FnOnce() -> u8) -> ! {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors this process owns from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        std::process::exit(work().into());
    }
    let [status_read, status_write] = fds;
    let parent = std::process::id();
    // SAFETY: called while the process has one thread (before any watch starts), so the
    // child may run anything.
    match unsafe { libc::fork() } {
        -1 => {
            close(status_read);
            close(status_write);
            std::process::exit(work().into())
        }
        0 => {
            close(status_read);
            run_child(parent, status_write, work)
        }
        child => {
            close(status_write);
            wait_for_child(child, status_read)
        }
    }
}

/// The child: dies with the parent, runs `work`, hands over its status, lets go of
/// the standard streams and exits.
fn run_child(parent: u32, status_write: libc::c_int, work: impl FnOnce() -> u8) -> ! {
    // SAFETY: prctl with an integer argument; getppid has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() as u32 != parent {
            // The parent died before the line above: nobody waits for this work.
            libc::_exit(EXIT_ORPHANED);
        }
    }
    SUPERVISOR.store(parent, Ordering::Relaxed);
    let status = work();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: writes one byte from a live buffer to a descriptor this process owns.
    unsafe { libc::write(status_write, [status].as_ptr().cast(), 1) };
    release_standard_streams();
    std::process::exit(status.into())
}

/// Exit status (an error) of a child whose parent was gone before it started, and of
/// a parent whose child cannot be waited for.
const EXIT_ORPHANED: libc::c_int = 2;

/// Points stdin, stdout and stderr at `/dev/null`: should this process linger (a
/// thread stuck in the kernel), whoever reads its output sees the end of it now.
fn release_standard_streams() {
    // SAFETY: open of a constant path; dup2 onto the standard descriptors; the
    // descriptor opened is closed after.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return;
        }
        for fd in 0..=2 {
            libc::dup2(null, fd);
        }
        libc::close(null);
    }
}

/// The parent: exits with the status the child hands over, or, should the child end
/// without one, as the child ended.
fn wait_for_child(child: libc::pid_t, status_read: libc::c_int) -> ! {
    let mut status = [0u8; 1];
    let got = loop {
        // SAFETY: reads into a live one-byte buffer from a descriptor this process owns.
        let n = unsafe { libc::read(status_read, status.as_mut_ptr().cast(), 1) };
        if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break n == 1;
        }
    };
    if got {
        if !reap_within(child, REAP_GRACE) {
            eprintln!(
                "leakscope: its worker (pid {child}) is still exiting: a read of it is stuck \
                 in a file system that does not answer; it ends when that file system \
                 answers or is aborted"
            );
        }
        std::process::exit(status[0].into());
    }
    // No status: the child ended (its end of the pipe closes only when it is gone).
    exit_as(wait_blocking(child))
}

/// Waits up to `grace` for `child` to be gone, reaping it; whether it is.
fn reap_within(child: libc::pid_t, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: waitpid on our own child, WNOHANG.
        let reaped = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if reaped != 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Waits for `child` to end; its wait status (`None` when it cannot be waited for).
fn wait_blocking(child: libc::pid_t) -> Option<libc::c_int> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let reaped = unsafe { libc::waitpid(child, &mut status, 0) };
        if reaped == child {
            return Some(status);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// Ends this process as the child's wait status says: its exit status, or the signal
/// that killed it (raised again here, so a shell says the same).
fn exit_as(status: Option<libc::c_int>) -> ! {
    let Some(status) = status else {
        std::process::exit(EXIT_ORPHANED)
    };
    if libc::WIFEXITED(status) {
        std::process::exit(libc::WEXITSTATUS(status));
    }
    let signal = libc::WTERMSIG(status);
    // SAFETY: resets one signal's disposition and raises it on this process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

fn close(fd: libc::c_int) {
    // SAFETY: closes a descriptor this process owns and no longer uses.
    unsafe { libc::close(fd) };
}
