//! Reads that would wait for ever: processes of an unprivileged user (nobody) that map
//! files of a FUSE file system whose server (hangfs, that user's) stops answering
//! reads, beside an ordinary leak. A hung read must cost only its process's result:
//! `diagnose --duration N` finishes within N and a bounded slack and reports the leak
//! and the hung processes as unreadable with the reason; the daemon keeps answering
//! scrapes and `/healthz` and keeps finding the leak, and says how many reads are stuck.
//!
//! Two mounts, as a user gets them: their own (no `allow_other`: root cannot even open
//! its files, but reading a process's memory faults its pages in from it), and one with
//! `allow_other` (a host whose `/etc/fuse.conf` has `user_allow_other`, or root's own
//! FUSE mount), whose files leakscope opens and reads. The mount is made by the test as
//! fusermount3 makes it (root's mount, the user's server); it is aborted and detached
//! whatever the test's outcome.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::process::{Running, set_parent_death_signal};

use test_support::daemon::Daemon;

use crate::common::{
    Program, Spawned, TempDir, WARM_UP, drain_in_background, find_process, program_path,
    require_root, start_daemon, wait_for, wait_healthy,
};

/// The unprivileged user whose processes and file system hang (nobody).
const USER: u32 = 65534;
/// How long each diagnosis watches.
const DIAGNOSE_S: u64 = 6;
/// `--read-budget` of the tests: how long a blocked read is waited for.
const READ_BUDGET: &str = "1";
/// What a diagnosis beside hung processes may take beyond `--duration`: starting (a debug
/// build loading its kernel program on a loaded machine), the first scan (in which each
/// read that blocks is waited for up to `--read-budget`), the report.
const SLACK: Duration = Duration::from_secs(20);

/// The test's own programs, built from `tests/programs` into `dir`: hangfs (the FUSE
/// server, against Debian's libfuse3-dev) and fuse_victim.
fn build_programs(dir: &Path) -> (PathBuf, PathBuf) {
    assert!(
        Path::new("/usr/include/fuse3/fuse_lowlevel.h").exists(),
        "libfuse3-dev is missing: `cargo xtask setup` installs fuse3 and libfuse3-dev"
    );
    let fuse_flags = ["-I/usr/include/fuse3", "-lfuse3"];
    (
        build_program(dir, "hangfs", &fuse_flags),
        build_program(dir, "fuse_victim", &[]),
    )
}

/// Builds `tests/programs/NAME.c` into `dir/NAME` (executable by anyone), with `flags`
/// after the source.
pub fn build_program(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let output = dir.join(name);
    test_support::programs::build_into(&output, |temp| {
        let mut cc = Command::new(test_support::programs::cc());
        cc.args(["-O1", "-g", "-Wall", "-pthread", "-o"])
            .arg(temp)
            .arg(test_support::paths::programs_dir().join(format!("{name}.c")))
            .args(flags);
        Ok(cc)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    fs::set_permissions(&output, fs::Permissions::from_mode(0o755)).expect("chmod");
    output
}

/// A FUSE file system of [`USER`]'s, served by hangfs, which holds every read of its
/// file `data` unanswered until told ([`HungFuse::answer`]). Dropped, it is aborted
/// (its server killed, which closes the connection; `/sys/fs/fuse/connections/N/abort`
/// too where fusectl is mounted) and detached (`umount -l`), so no reader stays stuck.
struct HungFuse {
    mountpoint: PathBuf,
    server: Running,
    /// The connection's number (the mount's minor device number).
    connection: Option<u32>,
    aborted: bool,
}

impl HungFuse {
    /// Mounts one on `dir/mnt` (with `allow_other` when asked) and starts its server.
    fn mount(dir: &Path, hangfs: &Path, allow_other: bool) -> HungFuse {
        let mountpoint = dir.join("mnt");
        fs::create_dir_all(&mountpoint).expect("mountpoint");
        std::os::unix::fs::chown(&mountpoint, Some(USER), Some(USER)).expect("chown");
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("open /dev/fuse (root may, on any host with FUSE)");
        let options = format!(
            "fd={},rootmode=40000,user_id={USER},group_id={USER}{}",
            device.as_raw_fd(),
            if allow_other { ",allow_other" } else { "" }
        );
        let c = |s: &str| CString::new(s).expect("no NUL");
        let target = c(mountpoint.to_str().expect("UTF-8 path"));
        let (source, fstype, data) = (c("hangfs"), c("fuse.hangfs"), c(&options));
        // SAFETY: NUL-terminated strings that outlive the call.
        let mounted = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(mounted, 0, "mount: {}", std::io::Error::last_os_error());
        let mut command = Command::new(hangfs);
        command.arg(&mountpoint).arg("3").uid(USER).gid(USER);
        let fd = device.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe; they hand the connection to the
        // server as fd 3, without close-on-exec.
        unsafe {
            command.pre_exec(move || {
                let handed = match fd {
                    3 => libc::fcntl(3, libc::F_SETFD, 0),
                    _ => libc::dup2(fd, 3),
                };
                match handed {
                    -1 => Err(std::io::Error::last_os_error()),
                    _ => Ok(()),
                }
            });
        }
        let server = Running::start_logged("hangfs", &mut command, &dir.join("hangfs.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        drop(device);
        let fuse = HungFuse {
            connection: connection_of(&mountpoint),
            mountpoint,
            server,
            aborted: false,
        };
        let served = wait_for(Duration::from_secs(10), || {
            fuse.server.log().contains("serving").then_some(())
        });
        assert!(served.is_some(), "hangfs: {}", fuse.server.log());
        fuse
    }

    /// Its one file.
    fn data(&self) -> PathBuf {
        self.mountpoint.join("data")
    }

    /// Reads its server was asked for (and holds, or held).
    fn reads_asked(&self) -> usize {
        self.server.log().matches("holding a read").count()
    }

    /// Has the server answer every read held, and every later one.
    fn answer(&self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.server.pid() as i32, libc::SIGUSR1) };
    }

    /// Aborts the connection (every read waiting on it fails) and detaches the mount.
    fn abort(&mut self) {
        if std::mem::replace(&mut self.aborted, true) {
            return;
        }
        if let Some(n) = self.connection {
            let _ = fs::write(format!("/sys/fs/fuse/connections/{n}/abort"), "1");
        }
        self.server.kill();
        let target = CString::new(self.mountpoint.to_str().unwrap_or_default()).unwrap_or_default();
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for HungFuse {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The minor device number of the mount on `mountpoint`, from /proc/self/mountinfo
/// (root cannot stat a mount it is not allowed into).
fn connection_of(mountpoint: &Path) -> Option<u32> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = mountpoint.to_str()?;
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4) == Some(&wanted)).then(|| fields.get(2)?.split_once(':')?.1.parse().ok())?
    })
}

/// What a diagnosis did.
struct Diagnosis {
    took: Duration,
    exit_code: Option<i32>,
    report: Value,
    stderr: String,
}

/// Runs `leakscope diagnose --duration DIAGNOSE_S --read-budget READ_BUDGET --json`
/// over `pids`. Should it still run past the slack and more, the file system is aborted
/// first (a reader stuck in it would hold leakscope), then leakscope killed, and the
/// test fails saying so.
fn diagnose_beside(fuse: &mut HungFuse, pids: &[u32]) -> Diagnosis {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leakscope"));
    command.args(["diagnose", "--duration", &DIAGNOSE_S.to_string(), "--json"]);
    command.args(["--read-budget", READ_BUDGET]);
    for pid in pids {
        command.args(["--pid", &pid.to_string()]);
    }
    set_parent_death_signal(&mut command);
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leakscope");
    let stdout = drain_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = drain_in_background(child.stderr.take().expect("piped stderr"));
    let limit = Duration::from_secs(DIAGNOSE_S) + SLACK * 3;
    let status = wait_child(&mut child, limit);
    let took = started.elapsed();
    if status.is_none() {
        let threads = kernel_stacks(child.id());
        fuse.abort();
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "leakscope diagnose still running {took:?} after it started (--duration \
             {DIAGNOSE_S}): reads of the hung processes held it; its threads:\n{threads}\nstderr:\n{}",
            stderr.join().unwrap_or_default()
        );
    }
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}\nstderr:\n{stderr}"));
    Diagnosis {
        took,
        exit_code: status.and_then(|s| s.code()),
        report,
        stderr,
    }
}

/// Each thread of process `pid`: its state and kernel stack, for a failure message.
fn kernel_stacks(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(process {pid} has no /proc entry)");
    };
    let mut out = String::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let stat = read("stat");
        out.push_str(stat.lines().next().unwrap_or_default());
        out.push('\n');
        out.push_str(&read("stack"));
    }
    out
}

/// Waits up to `limit` for `child` to exit.
fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The process `pid`'s JSON `error`, which must be there.
fn error_of<'a>(report: &'a Value, pid: u32, what: &str) -> &'a str {
    let process = find_process(report, pid)
        .unwrap_or_else(|| panic!("{what} (pid {pid}) is not reported: {report:#}"));
    assert_eq!(process["verdict"], "ok", "{what}: {process}");
    process["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not reported unreadable: {process}"))
}

/// The value of the series of `family` whose labels include all of `labels`.
fn series(metrics: &str, family: &str, labels: &[String]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(family)?;
        let matches = (rest.starts_with('{') || rest.starts_with(' '))
            && labels.iter().all(|l| rest.contains(l.as_str()));
        matches.then(|| line.rsplit(' ').next()?.parse().ok())?
    })
}

/// A hung file system, the processes of [`USER`]'s that map its file, and an ordinary
/// C leak beside them (the last two warmed up and running).
struct Scene {
    fuse: HungFuse,
    victims: Vec<Spawned>,
    leak: Spawned,
    /// Last: removed once the mount is gone.
    scratch: TempDir,
}

impl Scene {
    /// Mounts hangfs (with `allow_other` when asked) in a scratch directory named
    /// `name`, starts `victims` (their programs' arguments, the file last) as the user,
    /// and the leak.
    fn start(name: &str, allow_other: bool, victims: &[(&str, &[&str])]) -> Scene {
        let scratch = TempDir::new(name);
        fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let (hangfs, fuse_victim) = build_programs(scratch.path());
        let fuse = HungFuse::mount(scratch.path(), &hangfs, allow_other);
        let data = fuse.data();
        let hostile = program_path(Program::HostileGo);
        let victims: Vec<Spawned> = (victims.iter())
            .map(|&(program, args)| {
                let path = if program == "hostile_go" {
                    &hostile
                } else {
                    &fuse_victim
                };
                let mut command = Command::new(path);
                command.args(args).arg(&data).uid(USER).gid(USER);
                Spawned::launch(&format!("{program} {}", args.join(" ")), command)
            })
            .collect();
        let leak = Spawned::launch(
            Program::MutexLeak.name(),
            Command::new(program_path(Program::MutexLeak)),
        );
        thread::sleep(WARM_UP);
        let mut scene = Scene {
            fuse,
            victims,
            leak,
            scratch,
        };
        scene.leak.assert_running("during warm-up");
        for victim in &mut scene.victims {
            victim.assert_running("during warm-up");
        }
        scene
    }

    /// Every process watched: the leak, then the victims.
    fn pids(&self) -> Vec<u32> {
        let victims = self.victims.iter().map(Spawned::pid);
        std::iter::once(self.leak.pid()).chain(victims).collect()
    }

    /// A diagnosis of them, which must finish within the slack and find the leak.
    fn diagnose(&mut self) -> Diagnosis {
        let pids = self.pids();
        let run = diagnose_beside(&mut self.fuse, &pids);
        let limit = Duration::from_secs(DIAGNOSE_S) + SLACK;
        assert!(
            run.took <= limit,
            "took {:?} > {limit:?}:\n{}",
            run.took,
            run.stderr
        );
        assert_eq!(run.exit_code, Some(1), "a leak was found:\n{}", run.stderr);
        let leaked = find_process(&run.report, self.leak.pid()).expect("the leak is reported");
        assert_eq!(leaked["verdict"], "leak", "{leaked}");
        run
    }

    /// A daemon over them, scanning every half second, once healthy.
    fn daemon(self) -> DaemonScene {
        let extra = [
            "--interval",
            "0.5",
            "--window",
            "30",
            "--read-budget",
            READ_BUDGET,
        ];
        let daemon = start_daemon(&self.scratch, &self.pids(), &extra, &[]);
        // Waited for inside the scene: should it never get healthy (a reader stuck in
        // the file system), the mount is aborted before the daemon is killed, or
        // reaping it would wait on the file system for good.
        let mut scene = DaemonScene {
            fuse: self.fuse,
            daemon,
            victims: self.victims,
            leak: self.leak,
            _scratch: self.scratch,
        };
        wait_healthy(&mut scene.daemon);
        scene
    }
}

/// A [`Scene`] watched by a daemon. Torn down in field order: the mount first (so no
/// reader of the daemon's stays stuck, whatever the test's outcome), then the daemon.
struct DaemonScene {
    fuse: HungFuse,
    daemon: Daemon,
    victims: Vec<Spawned>,
    leak: Spawned,
    _scratch: TempDir,
}

/// Polls the daemon (which must stay up, `/healthz` answering 200) until `done` holds
/// for its metrics and `/healthz` body; panics with `what` and its log after 40 s.
fn poll_daemon(daemon: &mut Daemon, what: &str, mut done: impl FnMut(&str, &str) -> bool) {
    let reached = wait_for(Duration::from_secs(40), || {
        daemon
            .process()
            .assert_running("beside the hung file system");
        let (status, health) = daemon.get("/healthz").ok()?;
        assert_eq!(status, 200, "/healthz:\n{health}\n{}", daemon.log());
        let (_, metrics) = daemon.get("/metrics").ok()?;
        done(&metrics, &health).then_some(())
    });
    assert!(
        reached.is_some(),
        "{what}; the daemon's log:\n{}",
        daemon.log()
    );
}

/// `pid="PID"`, as a series' label.
fn pid_label(pid: u32) -> String {
    format!("pid=\"{pid}\"")
}

/// Check that processes whose memory lies on pages of a user's FUSE file that stops
/// answering — a thread blocked with its stack there, a "Go" goroutine table there —
/// cost `diagnose` nothing: it finishes within --duration and the slack, finds the
/// leak beside them, and reports each unreadable with the reason (its memory is not in
/// memory, so it was not read); the file system was never even asked (no read reached
/// hangfs: leakscope faults no page in).
#[test]
fn diagnose_finishes_beside_processes_on_a_hung_file_system() {
    require_root();
    let victims: [(&str, &[&str]); 2] = [("fuse_victim", &["stack"]), ("hostile_go", &["fuse"])];
    let mut scene = Scene::start("leakscope-hangs-diagnose", false, &victims);
    let run = scene.diagnose();
    let stack_error = error_of(
        &run.report,
        scene.victims[0].pid(),
        "the thread on a FUSE page",
    );
    assert!(stack_error.contains("is not in memory"), "{stack_error}");
    let table = error_of(
        &run.report,
        scene.victims[1].pid(),
        "the goroutine table on a FUSE page",
    );
    assert!(table.contains("not in memory"), "{table}");
    let asked = scene.fuse.reads_asked();
    assert_eq!(asked, 0, "leakscope faulted a page in from the file system");
}

/// Check that the daemon beside the same processes keeps answering scrapes and
/// `/healthz` (200), finds the leak beside them, and exports each as unreadable with its
/// reason (`leakscope_process_unreadable{reason="not_resident"}`), no read stuck.
#[test]
fn the_daemon_stays_responsive_beside_processes_on_a_hung_file_system() {
    require_root();
    let victims: [(&str, &[&str]); 1] = [("fuse_victim", &["stack"])];
    let mut watched = Scene::start("leakscope-hangs-daemon", false, &victims).daemon();
    let leaking = [pid_label(watched.leak.pid())];
    let unreadable = [
        pid_label(watched.victims[0].pid()),
        "reason=\"not_resident\"".to_string(),
    ];
    poll_daemon(
        &mut watched.daemon,
        "leak or unreadable not exported",
        |metrics, _| {
            series(metrics, "leakscope_process_leak", &leaking) == Some(1.0)
                && series(metrics, "leakscope_process_unreadable", &unreadable) == Some(1.0)
                && series(metrics, "leakscope_stuck_reads", &[]) == Some(0.0)
        },
    );
    let asked = watched.fuse.reads_asked();
    assert_eq!(asked, 0, "leakscope faulted a page in from the file system");
    let stopped = watched.daemon.stop(Duration::from_secs(10));
    stopped.unwrap_or_else(|e| panic!("{e}"));
}

/// Check that a read that really blocks — the file behind a process's executable
/// mapping, on a FUSE mount with `allow_other` whose server holds every read — is
/// abandoned after --read-budget, and that five such processes cost one stuck read, not
/// five (no file of a file system a read is stuck in is opened; more stuck reads than
/// the cap would leave nothing read): `diagnose` finishes within the slack, finds the
/// leak beside them and reports one unreadable (a read stuck in the kernel), the others
/// read; the daemon keeps serving, says on `/healthz` and in `leakscope_stuck_reads`
/// that one read is stuck, and once the file system answers again counts none stuck
/// and reads the process again.
#[test]
fn a_read_stuck_on_a_file_system_is_abandoned_until_it_returns() {
    require_root();
    let victims: [(&str, &[&str]); 5] = [("fuse_victim", &["exec"]); 5];
    let mut scene = Scene::start("leakscope-hangs-stuck", true, &victims);
    let run = scene.diagnose();
    let errors: Vec<String> = (scene.victims.iter())
        .filter_map(|v| find_process(&run.report, v.pid()))
        .filter_map(|p| p["error"].as_str().map(String::from))
        .collect();
    let stuck_ones = errors
        .iter()
        .filter(|e| e.contains("blocked in the kernel"));
    assert_eq!(stuck_ones.count(), 1, "one read stuck: {errors:?}");
    assert_eq!(errors.len(), 1, "the others read: {errors:?}");
    assert!(
        scene.fuse.reads_asked() > 0,
        "the read reached the file system"
    );

    let mut watched = scene.daemon();
    let leaking = [pid_label(watched.leak.pid())];
    let stuck_series = |metrics: &str| {
        (metrics.lines())
            .filter(|l| l.starts_with("leakscope_process_unreadable{"))
            .filter(|l| l.contains("reason=\"stuck\"") && l.ends_with(" 1"))
            .count()
    };
    let mut said = String::new();
    poll_daemon(
        &mut watched.daemon,
        "not exported as stuck",
        |metrics, health| {
            said = health.to_string();
            series(metrics, "leakscope_process_leak", &leaking) == Some(1.0)
                && stuck_series(metrics) == 1
                && series(metrics, "leakscope_stuck_reads", &[]) == Some(1.0)
        },
    );
    assert!(said.contains("1 read(s) stuck"), "/healthz: {said}");
    watched.fuse.answer();
    let answered = "still stuck after the file system answered";
    poll_daemon(&mut watched.daemon, answered, |metrics, _| {
        series(metrics, "leakscope_stuck_reads", &[]) == Some(0.0)
            && stuck_series(metrics) == 0
            && series(metrics, "leakscope_stuck_reads_total", &[]) >= Some(1.0)
    });
    let log = watched.daemon.log();
    assert!(log.contains("returned"), "{log}");
    let stopped = watched.daemon.stop(Duration::from_secs(10));
    stopped.unwrap_or_else(|e| panic!("{e}"));
}
