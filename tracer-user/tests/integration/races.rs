//! Races between what leakscope checks of a process and what it then reads, which the
//! process (or its owner) wins by changing things in between:
//!
//! - the file behind a mapping, opened by its path inside the process's root (where
//!   `/proc/PID/map_files` cannot be opened: without `CAP_CHECKPOINT_RESTORE` or
//!   `CAP_SYS_ADMIN`), swapped after the maps were read for another file with the same
//!   inode number on another file system, reached through a symbolic link or a mount;
//! - a pid that is another process's by the time it is read.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tracer_user::{
    host::{
        binary::open_mapped_binary,
        pidfd::{ProcessGone, start_mono_ns},
        procfs::{MemoryMap, read_maps},
    },
    isolate::{Faults, ProcessFault, Reader, Step},
    model::ProcessKey,
};

use crate::common::{Spawned, TempDir, require_root, wait_for};
use crate::hangs::build_program;

/// Bytes of each file mapped (fuse_victim maps 64 KiB).
const FILE_BYTES: usize = 64 * 1024;

/// A tmpfs mounted on `dir` (created), unmounted (detached) when dropped.
struct Tmpfs(CString);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        fs::create_dir_all(dir).expect("mountpoint");
        let target = CString::new(dir.to_str().expect("UTF-8 path")).expect("no NUL");
        // SAFETY: NUL-terminated strings that outlive the call.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=1m".as_ptr().cast(),
            )
        };
        assert_eq!(
            mounted,
            0,
            "mount tmpfs: {}",
            std::io::Error::last_os_error()
        );
        Tmpfs(target)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Bind-mounts `from` on `to`.
fn bind(from: &Path, to: &Path) -> Tmpfs {
    let c = |p: &Path| CString::new(p.to_str().expect("UTF-8 path")).expect("no NUL");
    let (source, target) = (c(from), c(to));
    // SAFETY: NUL-terminated strings that outlive the call.
    let mounted = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(
        mounted,
        0,
        "bind mount: {}",
        std::io::Error::last_os_error()
    );
    Tmpfs(target)
}

/// This thread's effective capabilities without `CAP_SYS_ADMIN` and
/// `CAP_CHECKPOINT_RESTORE` (so `/proc/PID/map_files` cannot be opened, as in a unit
/// that does not grant them), restored when dropped. Capabilities are per thread.
struct WithoutMapFiles([u32; 2]);

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` of capget(2).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Capability numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

fn capabilities(set: Option<[CapData; 2]>) -> [CapData; 2] {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = set.unwrap_or_default();
    let call = if set.is_some() {
        libc::SYS_capset
    } else {
        libc::SYS_capget
    };
    // SAFETY: a header and two data structs, as version 3 takes, outliving the call.
    let rc = unsafe { libc::syscall(call, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget/capset: {}", std::io::Error::last_os_error());
    data
}

impl WithoutMapFiles {
    fn drop_them() -> WithoutMapFiles {
        let mut caps = capabilities(None);
        let saved = [caps[0].effective, caps[1].effective];
        caps[0].effective &= !(1 << CAP_SYS_ADMIN);
        caps[1].effective &= !(1 << (CAP_CHECKPOINT_RESTORE - 32));
        capabilities(Some(caps));
        WithoutMapFiles(saved)
    }
}

impl Drop for WithoutMapFiles {
    fn drop(&mut self) {
        let mut caps = capabilities(None);
        caps[0].effective = self.0[0];
        caps[1].effective = self.0[1];
        capabilities(Some(caps));
    }
}

/// Two tmpfs file systems, each with `dir/lib.so` of its own bytes (`A` and `B`), the
/// two files with the same inode number; and a process mapping the first one
/// executable (fuse_victim), as it maps its libraries.
struct Scene {
    victim: Spawned,
    /// The victim's mapping of the first file, as its maps said before any swap.
    map: MemoryMap,
    scratch: TempDir,
    /// Unmounted (detached) before the scratch directory is removed.
    mounts: Vec<Tmpfs>,
}

impl Scene {
    fn start(name: &str) -> Scene {
        let scratch = TempDir::new(name);
        let victim_program = build_program(scratch.path(), "fuse_victim", &[]);
        let mut mounts = Vec::new();
        for (fs_name, byte) in [("one", b'A'), ("two", b'B')] {
            let root = scratch.path().join(fs_name);
            mounts.push(Tmpfs::mount(&root));
            fs::create_dir(root.join("dir")).expect("mkdir");
            fs::write(root.join("dir/lib.so"), vec![byte; FILE_BYTES]).expect("write");
        }
        let (one, two) = (
            fs::metadata(scratch.path().join("one/dir/lib.so")).expect("stat"),
            fs::metadata(scratch.path().join("two/dir/lib.so")).expect("stat"),
        );
        assert!(
            one.ino() == two.ino() && one.dev() != two.dev(),
            "the setup needs two files with one inode number on two fresh tmpfs: \
             ({}, {}) and ({}, {})",
            one.dev(),
            one.ino(),
            two.dev(),
            two.ino()
        );
        let mut command = Command::new(victim_program);
        command
            .arg("exec")
            .arg(scratch.path().join("one/dir/lib.so"));
        let victim = Spawned::launch("fuse_victim exec", command);
        let map = wait_for(Duration::from_secs(10), || {
            let maps = read_maps(victim.pid()).ok()?;
            maps.into_iter().find(|m| {
                m.path
                    .as_deref()
                    .is_some_and(|p| p.ends_with("one/dir/lib.so"))
            })
        })
        .expect("the victim maps the file");
        Scene {
            victim,
            map,
            scratch,
            mounts,
        }
    }

    /// What leakscope opens for the mapping (map_files not allowed): its first byte.
    fn opened_byte(&self) -> Option<u8> {
        let _without = WithoutMapFiles::drop_them();
        let binary = open_mapped_binary(self.victim.pid(), &self.map)?;
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&binary.file, &mut byte, 0).ok()?;
        Some(byte[0])
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.mounts.drain(..).rev().for_each(drop);
    }
}

/// Opens the victim's mapping through its root (it must be the mapped file), then again
/// after `swap` put the other file system's directory where the mapped file's was
/// (renamed away first): the other file, with the mapped one's inode number, must not be
/// opened.
fn swapped_file_is_not_opened(name: &str, swap: impl FnOnce(&Path, &Path) -> Option<Tmpfs>) {
    require_root();
    let mut scene = Scene::start(name);
    assert_eq!(
        scene.opened_byte(),
        Some(b'A'),
        "the mapped file, by its path"
    );
    let (one, two) = (
        scene.scratch.path().join("one"),
        scene.scratch.path().join("two"),
    );
    fs::rename(one.join("dir"), one.join("moved")).expect("rename");
    scene
        .mounts
        .extend(swap(&one.join("dir"), &two.join("dir")));
    let opened = scene.opened_byte();
    assert_ne!(
        opened,
        Some(b'B'),
        "opened another file with its inode number"
    );
}

/// Check that a mapped file is opened through the process's root when map_files cannot
/// be, and that once its directory is swapped for a symbolic link to a directory of
/// another file system whose file has the same inode number, that other file is not
/// opened (no symbolic link is followed; the device is compared too).
#[test]
fn a_mapped_file_swapped_behind_a_symlink_is_not_opened() {
    swapped_file_is_not_opened("leakscope-races-symlink", |dir, other| {
        std::os::unix::fs::symlink(other, dir).expect("symlink");
        None
    });
}

/// Check that once a mapped file's directory is swapped for a mount of another file
/// system's directory (no link on the path) whose file has the same inode number, that
/// other file is not opened: the device is compared, not the inode only.
#[test]
fn a_mapped_file_swapped_under_a_mount_is_not_opened() {
    swapped_file_is_not_opened("leakscope-races-mount", |dir, other| {
        fs::create_dir(dir).expect("mkdir");
        Some(bind(other, dir))
    });
}

/// Starts `sleep 60`, retrying (up to 100 times) until it gets pid `pid`: the pid is
/// set as the last one given (`/proc/sys/kernel/ns_last_pid`) before each start, but
/// another process of the host's may take it first.
fn sleep_with_pid(pid: u32) -> Spawned {
    for _ in 0..100 {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (root may)");
        let mut command = Command::new("sleep");
        command.arg("60");
        let started = Spawned::launch("sleep 60", command);
        if started.pid() == pid {
            return started;
        }
    }
    panic!("could not get pid {pid} again in 100 tries: the host forks too fast");
}

/// Check that a process keyed by its pid and start time is not read once its pid is
/// another process's (the read is not run), and that the new process is read under its
/// own key.
#[test]
fn a_reused_pid_is_not_read_as_the_process_it_was() {
    require_root();
    let first = Spawned::launch("sleep 60", {
        let mut command = Command::new("sleep");
        command.arg("60");
        command
    });
    let pid = first.pid();
    let key = |pid| ProcessKey {
        pid,
        start_mono_ns: start_mono_ns(pid).expect("running"),
        exec_id: 0,
    };
    let old = key(pid);
    drop(first); // killed and reaped: its pid is free
    // Past the two clock ticks within which start times are not told apart.
    std::thread::sleep(Duration::from_millis(50));
    let second = sleep_with_pid(pid);
    let new = key(second.pid());
    assert_ne!(old.start_mono_ns, new.start_mono_ns, "another process");

    let faults = Arc::new(Faults::default());
    let mut reader = Reader::new("races", || (), faults, Duration::from_secs(5));
    let comm = |pid: u32| move |_: &mut ()| fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    let read = reader.run(old, Step::GoProgram, comm(pid));
    assert_eq!(
        read,
        Err(ProcessFault::Gone(ProcessGone::PidReused)),
        "read the process that has its pid now"
    );
    let read = reader.run(new, Step::GoProgram, comm(pid));
    assert_eq!(
        read,
        Ok(Some("sleep\n".to_string())),
        "its own key reads it"
    );
}
