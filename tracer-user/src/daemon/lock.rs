//! One daemon per host: `leakscope run` holds an exclusive `flock` on a lock file
//! (`--lock-file`, default [`DEFAULT_LOCK_FILE`]) for its whole life. Two daemons would
//! load the kernel program twice and double every scan's cost on the watched host.
//!
//! The default lives in a directory of its own under /run: the systemd unit makes that
//! one writable with `RuntimeDirectory=leakscope` (its `ProtectSystem=strict` leaves the
//! rest of /run read-only), and a daemon started by hand creates it, so both take the
//! same lock. The file is opened without following a symlink and without blocking (a
//! FIFO planted there must not hang the start), must be a regular file, and holds the
//! holder's pid so the refusal can name it. It is never deleted: deleting a lock file
//! races with the next daemon taking it.
//!
//! Each error names the step and the path, and carries the system's reason as its
//! `source()` only: the one-line rendering (`error::one_line`) appends it once.

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io::{Read, Seek, Write},
    os::{
        fd::AsRawFd,
        unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use thiserror::Error;

/// The default `--lock-file`.
pub const DEFAULT_LOCK_FILE: &str = "/run/leakscope/leakscope.lock";

/// Why the daemon may not start.
#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "another leakscope run is already running (pid {holder}, holding {path}); one per host (--lock-file)"
    )]
    Held { path: PathBuf, holder: String },
    #[error("cannot create the lock file's directory {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the lock file {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock the lock file {path}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the lock file {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the lock file {path} is not a regular file")]
    NotAFile { path: PathBuf },
}

/// The lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Takes the lock at `path`, or says who holds it.
pub fn acquire(path: &Path) -> Result<InstanceLock, LockError> {
    create_directory(path)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LockError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| LockError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(LockError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let source = std::io::Error::last_os_error();
        if source.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(LockError::Lock {
                path: path.to_path_buf(),
                source,
            });
        }
        return Err(LockError::Held {
            path: path.to_path_buf(),
            holder: holder_pid(&mut file),
        });
    }
    // Ours now: say who holds it. World-readable, writable by root only.
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    let write_pid = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
    };
    write_pid(&mut file).map_err(|source| LockError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(InstanceLock { _file: file })
}

/// Creates the lock file's directory (one level, mode 0755 whatever the umask) when it
/// is missing, as the default's /run/leakscope is on a host where no unit made it.
fn create_directory(path: &Path) -> Result<(), LockError> {
    let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
        return Ok(());
    };
    let created = DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)));
    match created {
        Err(source) if source.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(LockError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// The pid the holder wrote in the file, or "unknown" when it holds anything else.
fn holder_pid(file: &mut File) -> String {
    let mut text = String::new();
    let _ = Read::by_ref(file).take(32).read_to_string(&mut text);
    let holder = text.trim();
    if holder.bytes().all(|b| b.is_ascii_digit()) && !holder.is_empty() {
        holder.to_string()
    } else {
        "unknown".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("leakscope-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Check that a second lock on the same file is refused naming the holder's pid, and
    /// that it is free again once the first is dropped.
    #[test]
    fn second_instance_is_refused_until_the_first_ends() {
        let dir = scratch("twice");
        let path = dir.join("leakscope.lock");
        let first = acquire(&path).unwrap();
        match acquire(&path) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string())
            }
            other => panic!("second lock: {other:?}"),
        }
        drop(first);
        acquire(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Check that a missing directory of the lock file (the default's /run/leakscope on
    /// a host where no unit made it) is created, mode 0755, and the lock taken in it.
    #[test]
    fn missing_directory_is_created() {
        let dir = scratch("mkdir");
        let lock_dir = dir.join("leakscope");
        let _lock = acquire(&lock_dir.join("leakscope.lock")).unwrap();
        let mode = std::fs::metadata(&lock_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(matches!(
            acquire(&lock_dir.join("leakscope.lock")),
            Err(LockError::Held { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Check that a symlink or a FIFO planted at the lock path is refused at once
    /// (neither followed nor blocked on), and the symlink's target left untouched.
    #[test]
    fn planted_symlink_or_fifo_is_refused() {
        let dir = scratch("planted");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.join("link.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(matches!(acquire(&link), Err(LockError::Open { .. })));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let fifo = dir.join("fifo.lock");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(matches!(acquire(&fifo), Err(LockError::NotAFile { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
