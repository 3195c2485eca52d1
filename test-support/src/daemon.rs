//! `leakscope run` as the tests, the soak and the bench start it: on a free loopback
//! port, with a lock file of its own (never the host's `/run/leakscope.lock`, so runs
//! beside each other do not refuse each other), its output in a log file; scraped over
//! HTTP and stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Running, free_port, wait_for};
use crate::{Error, http};

/// A running `leakscope run`, killed when dropped.
pub struct Daemon {
    process: Running,
    port: u16,
}

impl Daemon {
    /// Starts `leakscope` (a path to the binary) as `run --listen 127.0.0.1:PORT
    /// --lock-file DIR/leakscope.lock` plus what `configure` adds (arguments such as
    /// `--interval`, `--pid`, environment), logging to `DIR/daemon.log`.
    pub fn start(
        leakscope: &Path,
        dir: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> Result<Daemon, Error> {
        let port = free_port()?;
        let mut command = Command::new(leakscope);
        command
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--lock-file")
            .arg(dir.join("leakscope.lock"));
        configure(&mut command);
        let process =
            Running::start_logged("leakscope run", &mut command, &dir.join("daemon.log"))?;
        Ok(Daemon { process, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn log_path(&self) -> PathBuf {
        self.process
            .log_path()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The process, to check on it or stop it.
    pub fn process(&mut self) -> &mut Running {
        &mut self.process
    }

    /// GET `target` from the daemon: (status, body).
    pub fn get(&self, target: &str) -> std::io::Result<(u16, String)> {
        http::http_get(self.port, target)
    }

    /// Waits until `/healthz` answers 200 (its first scan is done); fails at once when
    /// the daemon exits, or after `timeout`, with its log.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<(), Error> {
        let mut exited = None;
        let healthy = wait_for(timeout, || {
            exited = self.process.exited();
            (exited.is_some() || matches!(self.get("/healthz"), Ok((200, _)))).then_some(())
        });
        match (exited, healthy) {
            (None, Some(())) => Ok(()),
            (Some(status), _) => Err(Error::Misbehaved(format!(
                "leakscope run exited ({status}) before it was healthy; its log:\n{}",
                self.log()
            ))),
            (None, None) => Err(Error::Misbehaved(format!(
                "leakscope run not healthy within {timeout:?}; its log:\n{}",
                self.log()
            ))),
        }
    }

    /// SIGTERM, then waits up to `timeout`: how long it took to exit 0; an error saying
    /// what it did instead (another status, or still running).
    pub fn stop(&mut self, timeout: Duration) -> Result<Duration, Error> {
        let (status, took) = self.process.terminate(timeout)?;
        if status.success() {
            Ok(took)
        } else {
            Err(Error::Misbehaved(format!(
                "leakscope run exited {status} on SIGTERM after {took:?}, not 0"
            )))
        }
    }
}
