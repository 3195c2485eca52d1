//! Processes a test or task starts: each is killed and reaped when its owner drops it,
//! and by the kernel when the thread that started it dies (a test binary or xtask
//! killed mid-run leaves no leaker behind adding threads for ever). Also the small
//! things every such run needs: a free loopback port, a scratch directory, polling.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Error, describe, paths};

/// A running child process, killed (with its process group when it leads one) and
/// reaped when dropped.
pub struct Running {
    /// For messages: what runs (program and arguments, or a chosen name).
    name: String,
    child: Child,
    /// Its exit status once reaped.
    status: Option<ExitStatus>,
    /// It leads its own process group: killing it kills what it started too.
    group: bool,
    /// Where its stdout and stderr go, when to a file.
    log: Option<PathBuf>,
}

impl Running {
    /// Starts `command` with stdin from /dev/null and its other stdio as the caller set
    /// it. The kernel kills it (SIGKILL) when the thread that started it exits, so
    /// start a process in the thread that owns it.
    pub fn start(name: impl Into<String>, command: &mut Command) -> Result<Running, Error> {
        set_parent_death_signal(command);
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                command: describe(command),
                source,
                hint: String::new(),
            })?;
        Ok(Running {
            name: name.into(),
            child,
            status: None,
            group: false,
            log: None,
        })
    }

    /// [`Running::start`] with stdout and stderr written to `log` (created afresh), in a
    /// process group of its own, so that dropping it ends what it started too (`go tool
    /// pprof` runs the pprof binary as a child).
    pub fn start_logged(
        name: impl Into<String>,
        command: &mut Command,
        log: &Path,
    ) -> Result<Running, Error> {
        let out = File::create(log).map_err(|e| Error::io(log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        command.stdout(out).stderr(err).process_group(0);
        let mut running = Running::start(name, command)?;
        running.group = true;
        running.log = Some(log.to_path_buf());
        Ok(running)
    }

    /// The name given at start, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to its log so far ("" when it has none).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The path of its log, when it has one.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Its piped stdout, taken once (when the caller asked for `Stdio::piped()`).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its exit status if it has exited (reaping it), else None.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            // An error here means it was already reaped, which `status` records.
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Panics, with its exit status and log, unless it still runs; `when` says when,
    /// for the message (e.g. "during warm-up").
    pub fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited {when} ({status}). Its output:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Waits up to `timeout` for it to exit; its status, or None if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit: its status and how long it
    /// took, or [`Error::Misbehaved`] when it still runs (it is then left running, for the
    /// caller to look at or drop).
    pub fn terminate(&mut self, timeout: Duration) -> Result<(ExitStatus, Duration), Error> {
        let started = Instant::now();
        if self.exited().is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped
            // child's, so it cannot have been reused.
            unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        }
        match self.wait_timeout(timeout) {
            Some(status) => Ok((status, started.elapsed())),
            None => Err(Error::Misbehaved(format!(
                "{} (pid {}) still running {timeout:?} after SIGTERM",
                self.name,
                self.pid()
            ))),
        }
    }

    /// Kills and reaps it now (so its pid really disappears rather than lingering as a
    /// zombie); dropping it afterwards does nothing more.
    pub fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        if self.group {
            // The whole group, while the unreaped child still holds its id.
            if let Ok(group) = i32::try_from(self.child.id()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
        }
        // An error here means it already exited; wait() reaps it either way.
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes the kernel kill the child (SIGKILL) when the thread that starts it exits, even
/// by SIGKILL, so no test program outlives the run that started it.
pub fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: the hook runs between fork and exec and only calls prctl, a plain
    // syscall (async-signal-safe).
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| Error::io("127.0.0.1:0", e))
}

/// Polls `check` every 250 ms until it returns Some (returned) or `timeout` passes
/// (None: the caller decides what that failure means).
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A scratch directory `target/tmp/<name>-<pid>` for a test, emptied first, removed on
/// drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates it; panics when it cannot (a test cannot go on without it).
    pub fn new(name: &str) -> TempDir {
        let dir = paths::target_dir()
            .join("tmp")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a dropped process is gone (killed and reaped), with the children of
    /// its process group.
    #[test]
    fn dropping_kills_the_process_and_its_group() {
        let scratch = TempDir::new("test-support-running");
        let log = scratch.path().join("log");
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 60 & echo started $!; wait"]);
        let mut running = Running::start_logged("sh", &mut command, &log).unwrap();
        let grandchild: i32 = wait_for(Duration::from_secs(10), || {
            running.log().strip_prefix("started ")?.trim().parse().ok()
        })
        .expect("the shell started its sleep");
        running.assert_running("after starting its child");
        let pid = running.pid() as i32;
        drop(running);
        for gone in [pid, grandchild] {
            let exists = || std::path::Path::new(&format!("/proc/{gone}")).exists();
            assert!(
                wait_for(Duration::from_secs(10), || (!exists()).then_some(())).is_some(),
                "pid {gone} is still there"
            );
        }
    }

    /// Check that SIGTERM's outcome is reported: the exit status of a process that
    /// exits, and a timeout for one that ignores it.
    #[test]
    fn terminate_reports_the_exit_or_the_hang() {
        let mut exits = Running::start("sleep", Command::new("sleep").arg("60")).unwrap();
        let (status, _) = exits.terminate(Duration::from_secs(10)).unwrap();
        assert!(!status.success(), "killed by SIGTERM: {status}");

        let scratch = TempDir::new("test-support-terminate");
        let log = scratch.path().join("log");
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; echo ready; sleep 60"]);
        let mut ignores = Running::start_logged("stubborn sh", &mut command, &log).unwrap();
        wait_for(Duration::from_secs(10), || {
            ignores.log().contains("ready").then_some(())
        })
        .expect("the shell set its trap");
        let error = ignores.terminate(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(error, Error::Misbehaved(_)), "{error}");
        assert!(ignores.exited().is_none());
    }
}
