//! The daemon under attack from what any local user can do: hold its HTTP port with
//! idle or trickling connections, start it twice, give it an unsafe dump directory; in
//! a sandbox that leaves its lock directory read-only; and under faults of its own (a
//! panic in one process's analysis, a scan that never ends), injected through its test
//! hooks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use test_support::daemon::Daemon;

use crate::common::{
    Program, Spawned, TempDir, diagnose_with, find_process, free_port, http_get, require_root,
    run_diagnosis, run_leakscope, start_daemon, wait_for, wait_healthy,
};

/// One scrape of `/metrics` and one of `/healthz`; both must answer 200.
fn scrape_both(port: u16, daemon: &Daemon, when: &str) {
    for target in ["/metrics", "/healthz"] {
        match http_get(port, target) {
            Ok((200, body)) if target == "/healthz" || body.contains("leakscope_scans_total") => {}
            other => panic!("{target} {when}: {other:?}\ndaemon:\n{}", daemon.log()),
        }
    }
}

/// Opens `n` connections that send nothing.
fn idle_connections(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect()
}

/// Check that idle connections never lock a scrape out: 32 idle connections
/// re-opened every 2 s (the old server held each for 10 s), then 1,000 idle
/// connections at once, while /metrics and /healthz are scraped and must always
/// answer 200; and that a client trickling its request head a byte at a time is cut
/// off by the head deadline (5 s), not served for ever.
#[test]
fn idle_connections_never_lock_out_a_scrape() {
    require_root();
    let scratch = TempDir::new("leakscope-http-attack");
    let pool = Spawned::start(Program::IdlePool);
    let mut daemon = start_daemon(&scratch, &[pool.pid()], &["--interval", "0.5"], &[]);
    wait_healthy(&mut daemon);
    let port = daemon.port();

    let mut scrapes = 0;
    let t0 = Instant::now();
    let mut held = idle_connections(port, 32);
    let mut reopened = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) {
        if reopened.elapsed() >= Duration::from_secs(2) {
            held = idle_connections(port, 32);
            reopened = Instant::now();
        }
        scrape_both(
            port,
            &daemon,
            "with 32 idle connections re-opened every 2 s",
        );
        scrapes += 1;
        thread::sleep(Duration::from_millis(200));
    }
    drop(held);
    assert!(scrapes >= 10, "only {scrapes} scrapes");

    let held = idle_connections(port, 1000);
    for _ in 0..10 {
        scrape_both(port, &daemon, "with 1,000 idle connections");
    }
    drop(held);

    let mut trickle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let closed_after = loop {
        if trickle.write_all(b"G").is_err() {
            break started.elapsed();
        }
        let mut byte = [0u8; 1];
        match trickle.read(&mut byte) {
            Ok(0) => break started.elapsed(),
            Ok(_) => panic!("answered a head that never ended"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break started.elapsed(),
        }
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "a trickling head was still open after 9 s"
        );
        thread::sleep(Duration::from_millis(400));
    };
    assert!(
        closed_after >= Duration::from_secs(4),
        "closed too early: {closed_after:?}"
    );
    scrape_both(port, &daemon, "after the trickle");
    daemon.process().assert_running("while the test ran");
}

/// Check that a second daemon with the same lock file exits 2 with one line naming
/// the first one's pid, and that an unsafe dump directory (writable by others) stops
/// the daemon at start with status 2 and one line saying why.
#[test]
fn second_daemon_and_unsafe_dump_dir_are_refused() {
    require_root();
    let scratch = TempDir::new("leakscope-lock");
    let pool = Spawned::start(Program::IdlePool);
    let mut first = start_daemon(&scratch, &[pool.pid()], &["--interval", "0.5"], &[]);
    wait_healthy(&mut first);
    let port = first.port();
    let lock = scratch.0.join("leakscope.lock").display().to_string();
    let second = run_leakscope(
        &[
            "run",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--lock-file",
            &lock,
        ]
        .map(String::from),
        Duration::from_secs(30),
    );
    assert_eq!(second.exit_code, 2, "{second:?}");
    assert_eq!(second.stderr.lines().count(), 1, "{second:?}");
    assert!(
        second.stderr.contains("already running")
            && second.stderr.contains(&first.pid().to_string()),
        "{second:?}"
    );
    scrape_both(port, &first, "after the refused second start");

    let open_dir = scratch.0.join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let unsafe_dir = run_leakscope(
        &[
            "run",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--lock-file",
            &scratch.0.join("other.lock").display().to_string(),
            "--dump-dir",
            &open_dir.display().to_string(),
        ]
        .map(String::from),
        Duration::from_secs(30),
    );
    assert_eq!(unsafe_dir.exit_code, 2, "{unsafe_dir:?}");
    assert_eq!(unsafe_dir.stderr.lines().count(), 1, "{unsafe_dir:?}");
    assert!(
        unsafe_dir.stderr.contains("writable by group or others"),
        "{unsafe_dir:?}"
    );
}

/// A read-only tmpfs mounted on a directory for one test, unmounted when dropped.
struct ReadOnlyMount(std::path::PathBuf);

impl ReadOnlyMount {
    fn new(dir: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let target = c(&dir.display().to_string());
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c("tmpfs").as_ptr(),
                target.as_ptr(),
                c("tmpfs").as_ptr(),
                libc::MS_RDONLY,
                c("size=64k").as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount a read-only tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Self(dir)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.display().to_string()).unwrap();
        // SAFETY: umount2 with a NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Check that a lock file on a read-only file system (what `ProtectSystem=strict` makes
/// of /run without `RuntimeDirectory=`) stops the daemon at start with status 2 and one
/// line naming the path and saying "Read-only file system" once, whether the file or
/// its directory is missing.
#[test]
fn read_only_lock_directory_is_one_clear_line() {
    require_root();
    let scratch = TempDir::new("leakscope-rolock");
    let read_only = ReadOnlyMount::new(scratch.0.join("ro"));
    let reason = std::io::Error::from_raw_os_error(libc::EROFS).to_string();
    for lock in [
        read_only.0.join("leakscope.lock"),
        read_only.0.join("sub/leakscope.lock"),
    ] {
        let run = run_leakscope(
            &[
                "run",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--lock-file",
                &lock.display().to_string(),
            ]
            .map(String::from),
            Duration::from_secs(30),
        );
        assert_eq!(run.exit_code, 2, "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert_eq!(run.stderr.matches(&reason).count(), 1, "{run:?}");
        assert!(
            run.stderr.contains(&read_only.0.display().to_string()),
            "{run:?}"
        );
    }
}

/// Check that a panic in one process's analysis (injected with
/// LEAKSCOPE_INJECT_PANIC_PID) marks that process unreadable with the reason, in the
/// JSON report and the daemon's log, while the daemon keeps serving, stays healthy
/// and still finds the leak of another process.
#[test]
fn a_panic_in_one_process_marks_it_unreadable_only() {
    require_root();
    let mut leak = Spawned::launch(
        Program::MutexLeak.name(),
        Command::new(crate::common::program_path(Program::MutexLeak)),
    );
    let victim = Spawned::start(Program::IdlePool);
    leak.assert_running("during warm-up");
    let env = [("LEAKSCOPE_INJECT_PANIC_PID", victim.pid().to_string())];

    let args = |duration_s: u32| {
        let mut args: Vec<String> = ["diagnose", "--json", "--duration"]
            .map(String::from)
            .to_vec();
        args.push(duration_s.to_string());
        for pid in [leak.pid(), victim.pid()] {
            args.extend(["--pid".to_string(), pid.to_string()]);
        }
        args
    };
    let run = run_diagnosis(args, &env, 5);
    let report: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    let victim_report = find_process(&report, victim.pid()).expect("the victim is reported");
    let error = victim_report["error"].as_str().unwrap_or("");
    assert!(
        error.contains("internal error") && error.contains("LEAKSCOPE_INJECT_PANIC_PID"),
        "victim's error: {victim_report}"
    );
    let leak_report = find_process(&report, leak.pid()).expect("the leak is reported");
    assert_eq!(leak_report["verdict"], "leak", "{leak_report}");

    let scratch = TempDir::new("leakscope-panic");
    let mut daemon = start_daemon(
        &scratch,
        &[leak.pid(), victim.pid()],
        &["--interval", "0.5", "--window", "30"],
        &env,
    );
    wait_healthy(&mut daemon);
    let port = daemon.port();
    let leak_line = "leakscope_process_leak{";
    let found = wait_for(Duration::from_secs(30), || {
        daemon.process().assert_running("while the test ran");
        let (_, body) = http_get(port, "/metrics").ok()?;
        body.lines()
            .any(|l| {
                l.starts_with(leak_line)
                    && l.contains(&format!("pid=\"{}\"", leak.pid()))
                    && l.ends_with(" 1")
            })
            .then_some(())
    });
    assert!(found.is_some(), "leak not found:\n{}", daemon.log());
    scrape_both(port, &daemon, "after the panic");
    let log = daemon.log();
    let victim_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("pid {}: internal error", victim.pid())))
        .collect();
    assert!(!victim_lines.is_empty(), "no line about the victim:\n{log}");
    assert!(
        victim_lines.len() <= 2,
        "the victim was analysed (and panicked) again and again:\n{log}"
    );
}

/// Check that a scan that never ends (injected with LEAKSCOPE_INJECT_STALL_AFTER_SCANS)
/// turns /healthz to 503 "stalled" after --stall-timeout, with a line in the log, while
/// /metrics is still served; and that SIGTERM still stops the daemon with status 0.
#[test]
fn a_stalled_scan_is_noticed() {
    require_root();
    let scratch = TempDir::new("leakscope-stall");
    let pool = Spawned::start(Program::IdlePool);
    let mut daemon = start_daemon(
        &scratch,
        &[pool.pid()],
        &["--interval", "0.2", "--stall-timeout", "1.5"],
        &[("LEAKSCOPE_INJECT_STALL_AFTER_SCANS", "5".to_string())],
    );
    wait_healthy(&mut daemon);
    let port = daemon.port();
    let stalled = wait_for(Duration::from_secs(20), || {
        daemon.process().assert_running("while the test ran");
        match http_get(port, "/healthz") {
            Ok((503, body)) if body.contains("stalled") => Some(body),
            _ => None,
        }
    });
    assert!(
        stalled.is_some(),
        "never reported stalled:\n{}",
        daemon.log()
    );
    let (status, _) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let logged = wait_for(Duration::from_secs(5), || {
        daemon.log().contains("scan stalled").then_some(())
    });
    assert!(logged.is_some(), "no log line:\n{}", daemon.log());
    // A stalled scan must not hold up the exit; 5 s for a debug build on a loaded
    // machine (see daemon.rs).
    daemon
        .stop(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
}

/// Check that a leaking process whose name and executable path hold a terminal escape,
/// a newline, a byte that is not UTF-8 and a trailing space is still found (text, JSON,
/// metrics, daemon log), that the JSON has its name exactly, and that no sink prints
/// the escape or the newline raw (no forged "LEAK" line).
#[test]
fn hostile_process_names_are_escaped_everywhere() {
    use std::os::unix::ffi::OsStrExt;
    require_root();
    let scratch = TempDir::new("leakscope-hostile-name");
    let name: &[u8] = b"\x1b[2Jx\nLEAK 1\xff ";
    let path = scratch.0.join(std::ffi::OsStr::from_bytes(name));
    std::fs::hard_link(crate::common::program_path(Program::MutexLeak), &path)
        .expect("hard link the leaker under a hostile name");
    let mut leak = Spawned::launch("hostile-named mutex_leak", Command::new(&path));
    thread::sleep(crate::common::WARM_UP);
    leak.assert_running("during warm-up");
    let pid = leak.pid().to_string();
    let no_raw = |what: &str, text: &str| {
        assert!(!text.contains('\x1b'), "raw ESC in {what}:\n{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("LEAK 1")),
            "forged line in {what}:\n{text}"
        );
    };

    let pid_arg = pid.as_str();
    let args = |json: bool| {
        move |duration_s: u32| {
            let duration = duration_s.to_string();
            let mut a = vec!["diagnose", "--duration", &duration, "--pid", pid_arg];
            if json {
                a.push("--json");
            }
            a.into_iter().map(String::from).collect::<Vec<_>>()
        }
    };
    let text = run_diagnosis(args(false), &[], 5);
    assert_eq!(text.exit_code, 1, "{text:?}");
    no_raw("the text report", &text.stdout);
    assert!(
        text.stdout.contains("\\x1b[2Jx\\x0aLEAK 1"),
        "{}",
        text.stdout
    );
    let json = run_diagnosis(args(true), &[], 5);
    let report: Value = serde_json::from_str(&json.stdout).expect("JSON report");
    let p = find_process(&report, leak.pid()).expect("the leaker is reported");
    assert_eq!(p["comm"], "\x1b[2Jx\nLEAK 1\u{fffd} ", "{p}");
    assert_eq!(p["verdict"], "leak", "{p}");

    let mut daemon = start_daemon(
        &scratch,
        &[leak.pid()],
        &["--interval", "0.5", "--window", "30"],
        &[],
    );
    wait_healthy(&mut daemon);
    let port = daemon.port();
    let series = wait_for(Duration::from_secs(30), || {
        daemon.process().assert_running("while the test ran");
        let (_, body) = http_get(port, "/metrics").ok()?;
        let line = body.lines().find(|l| {
            l.starts_with("leakscope_process_leak{")
                && l.contains(&format!("pid=\"{pid}\""))
                && l.ends_with(" 1")
        })?;
        Some((line.to_string(), body))
    });
    let (line, body) = series.unwrap_or_else(|| panic!("leak not exported:\n{}", daemon.log()));
    no_raw("/metrics", &body);
    assert!(line.contains(r#"comm="\\x1b[2Jx\\x0aLEAK 1"#), "{line}");
    let logged = wait_for(Duration::from_secs(10), || {
        let log = daemon.log();
        log.contains(&format!("LEAK pid {pid} ")).then_some(log)
    });
    let log = logged.unwrap_or_else(|| panic!("no LEAK line:\n{}", daemon.log()));
    no_raw("the daemon log", &log);
}

/// Check that a Go process whose goroutine read takes longer than `--read-budget` is
/// reported unreadable with that reason (never as healthy), while a leaker beside it is
/// still found; and that with the default budget the same process is read.
#[test]
fn a_read_over_its_time_budget_marks_the_process_unreadable() {
    require_root();
    let parked_build = crate::common::GoBuild {
        version: crate::common::GO_NEWEST,
        flavor: crate::common::GoFlavor::Plain,
        package: "benchparked",
    };
    let mut parked_command = Command::new(crate::common::go_program_path(parked_build));
    // 50,000 parked goroutines (and 10 more a second, so the runtime sees no deadlock):
    // a first read walks every stack, far over a millisecond.
    parked_command.args(["50000", "10"]);
    let mut parked = Spawned::launch("gobenchparked", parked_command);
    let mut leak = Spawned::start(Program::MutexLeak);
    thread::sleep(crate::common::WARM_UP);
    parked.assert_running("during warm-up");
    leak.assert_running("during warm-up");

    // Watched again, longer, when a loaded machine starved the scans (see diagnose_with).
    let diagnose =
        |extra: &[&str]| -> Value { diagnose_with(&[parked.pid(), leak.pid()], 4, extra).1 };

    let report = diagnose(&["--read-budget", "0.001"]);
    let over = find_process(&report, parked.pid()).expect("the big process is reported");
    let error = over["error"].as_str().unwrap_or("");
    assert!(
        error.contains("time budget") && error.contains("0.001 s"),
        "{over}"
    );
    let leak_report = find_process(&report, leak.pid()).expect("the leak is reported");
    assert_eq!(leak_report["verdict"], "leak", "{leak_report}");

    let report = diagnose(&[]);
    let read = find_process(&report, parked.pid()).expect("the big process is reported");
    assert!(read["error"].is_null(), "{read}");
    assert!(read["waiters"].as_u64().unwrap_or(0) >= 50_000, "{read}");
}
