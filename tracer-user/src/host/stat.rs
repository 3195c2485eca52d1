//! A file's type and identity without asking its file system: `statx` with
//! `AT_STATX_DONT_SYNC`, which network and FUSE file systems answer from what the kernel
//! already holds instead of a round trip to their server (one that does not answer
//! would hold the caller). What other processes' `/proc` links lead to (their
//! executable, their open files, their mapped files) may be on any file system.

use std::{
    ffi::{CStr, CString},
    io,
    os::fd::AsRawFd,
    os::unix::ffi::OsStrExt,
    path::Path,
};

/// What `statx` said of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// The device holding it, as `makedev(major, minor)`.
    pub dev: u64,
    pub ino: u64,
    /// The device it is, for device files.
    pub rdev: u64,
    pub uid: u32,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    /// The mount it was reached through (its id in `/proc/PID/mountinfo`; 0 when the
    /// kernel does not say, before 5.8).
    pub mnt_id: u64,
}

impl Stat {
    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    pub fn is_fifo(&self) -> bool {
        self.kind() == libc::S_IFIFO
    }
    pub fn is_socket(&self) -> bool {
        self.kind() == libc::S_IFSOCK
    }
    pub fn is_char_device(&self) -> bool {
        self.kind() == libc::S_IFCHR
    }
    pub fn is_block_device(&self) -> bool {
        self.kind() == libc::S_IFBLK
    }
    /// The device's (major, minor), as `/proc/PID/maps` prints it.
    pub fn dev_pair(&self) -> (u32, u32) {
        (libc::major(self.dev), libc::minor(self.dev))
    }
}

/// `statx(dirfd, path, flags | AT_STATX_DONT_SYNC)`.
fn statx(dirfd: i32, path: &CStr, flags: i32) -> io::Result<Stat> {
    // SAFETY: an all-zero statx is a valid value to be overwritten.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_TYPE
        | libc::STATX_MODE
        | libc::STATX_INO
        | libc::STATX_UID
        | libc::STATX_SIZE
        | libc::STATX_MTIME
        | libc::STATX_MNT_ID;
    // SAFETY: a NUL-terminated path and a statx buffer that outlive the call.
    let rc = unsafe {
        libc::statx(
            dirfd,
            path.as_ptr(),
            flags | libc::AT_STATX_DONT_SYNC,
            mask,
            &mut st,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Stat {
        mode: u32::from(st.stx_mode),
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        rdev: libc::makedev(st.stx_rdev_major, st.stx_rdev_minor),
        uid: st.stx_uid,
        size: st.stx_size,
        mtime_sec: st.stx_mtime.tv_sec,
        mtime_nsec: i64::from(st.stx_mtime.tv_nsec),
        mnt_id: match st.stx_mask & libc::STATX_MNT_ID {
            0 => 0,
            _ => st.stx_mnt_id,
        },
    })
}

/// What `path` leads to (symbolic links followed, as `stat` does), without asking its
/// file system.
pub fn stat_cached(path: &Path) -> io::Result<Stat> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    statx(libc::AT_FDCWD, &path, 0)
}

/// What the open file `file` is (an `O_PATH` descriptor too), without asking its file
/// system.
pub fn fstat_cached(file: &impl AsRawFd) -> io::Result<Stat> {
    statx(file.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Check that what statx says without syncing matches `stat` for a regular file,
    /// through a path and an open file, and tells directories and devices.
    #[test]
    fn matches_stat() {
        let exe = std::env::current_exe().unwrap();
        let meta = std::fs::metadata(&exe).unwrap();
        let st = stat_cached(&exe).unwrap();
        assert!(st.is_file() && !st.is_dir());
        assert_eq!(
            (st.dev, st.ino, st.size),
            (meta.dev(), meta.ino(), meta.size())
        );
        assert_eq!((st.mtime_sec, st.uid), (meta.mtime(), meta.uid()));
        let file = std::fs::File::open(&exe).unwrap();
        assert_eq!(fstat_cached(&file).unwrap(), st);
        assert!(stat_cached(Path::new("/")).unwrap().is_dir());
        let null = stat_cached(Path::new("/dev/null")).unwrap();
        assert!(null.is_char_device());
        assert_eq!(null.rdev, std::fs::metadata("/dev/null").unwrap().rdev());
        assert!(stat_cached(Path::new("/nonexistent/x")).is_err());
    }
}
