//! Native (C and Rust) thread leaks: what `leakscope diagnose` must find, what it
//! must not call a leak, and how it fails.

use std::os::unix::process::CommandExt;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    DIAGNOSE_SECONDS, Program, Spawned, any_site_stack_contains, assert_seen_and_ok, diagnose,
    find_process, frame_index, leak_sites_containing, process_verdict, require_root, run_leakscope,
    sites, summarize_pid,
};

/// Fewest blocked threads a leak site must report: the leakers add 4 threads per
/// second, so after the warm-up plus a 6 s watch there are far more than this.
const MIN_LEAK_SITE_COUNT: u64 = 5;

/// Asserts that `pid` is judged a native thread leak with a futex "leak" site of
/// at least [`MIN_LEAK_SITE_COUNT`] threads whose stack contains `leak_function`,
/// and returns that site.
fn assert_thread_leak_at<'a>(report: &'a Value, pid: u32, leak_function: &str) -> &'a Value {
    assert_thread_leak_in(report, pid, leak_function, "futex")
}

/// [`assert_thread_leak_at`] for threads asleep in syscall `wait` ("read", "wait4"...).
fn assert_thread_leak_in<'a>(
    report: &'a Value,
    pid: u32,
    leak_function: &str,
    wait: &str,
) -> &'a Value {
    let summary = summarize_pid(report, pid);
    let process = find_process(report, pid)
        .unwrap_or_else(|| panic!("the leaking pid {pid} is not in the report:\n{report:#}"));
    assert_eq!(process["verdict"], "leak", "process verdict:\n{summary}");
    assert_eq!(process["runtime"], "native", "runtime:\n{summary}");

    let leak_sites = leak_sites_containing(process, leak_function);
    let Some(site) = leak_sites.first() else {
        // Say which half failed: the stack (unwinding, symbolization) or the verdict.
        if any_site_stack_contains(process, leak_function) {
            panic!(
                "the site with `{leak_function}` in its stack is not judged \"leak\":\n{summary}"
            );
        }
        panic!("no site has `{leak_function}` in its stack:\n{summary}");
    };
    assert_eq!(site["kind"], "thread", "site kind:\n{summary}");
    assert_eq!(site["wait"], wait, "site wait:\n{summary}");
    let count = site["count"].as_u64().unwrap_or(0);
    assert!(
        count >= MIN_LEAK_SITE_COUNT,
        "the `{leak_function}` site counts {count} threads, expected at least \
         {MIN_LEAK_SITE_COUNT}:\n{summary}"
    );
    site
}

/// Starts `program`, diagnoses only it, and checks it is reported as a leak at
/// `leak_function` with exit code 1.
fn check_single_leaker(program: Program, leak_function: &str) {
    require_root();
    let leaker = Spawned::start(program);
    let (exit_code, report) = diagnose(&[leaker.pid()], DIAGNOSE_SECONDS);
    assert_thread_leak_at(&report, leaker.pid(), leak_function);
    assert_eq!(
        exit_code,
        1,
        "a leak was found, so diagnose must exit 1:\n{}",
        summarize_pid(&report, leaker.pid())
    );
}

/// Check that threads piling up on a mutex that is never unlocked are reported
/// as a leak (exit code 1) at a site whose stack names `leak_on_mutex`.
#[test]
fn mutex_leak_is_reported_at_leak_on_mutex() {
    check_single_leaker(Program::MutexLeak, "leak_on_mutex");
}

/// Check that threads piling up in pthread_cond_wait on a condvar nobody signals
/// are reported as a leak at a site whose stack names `wait_for_signal_never_sent`.
#[test]
fn condvar_leak_is_reported_at_wait_for_signal_never_sent() {
    check_single_leaker(Program::CondvarLeak, "wait_for_signal_never_sent");
}

/// Check that a steady pool of idle workers blocked on a condvar, many waiters
/// but no growth, is seen (its 16 workers) and judged ok, and diagnose exits 0.
#[test]
fn idle_pool_is_not_reported_as_a_leak() {
    require_root();
    let pool = Spawned::start(Program::IdlePool);
    let (exit_code, report) = diagnose(&[pool.pid()], DIAGNOSE_SECONDS);
    let process = assert_seen_and_ok(&report, pool.pid(), "the idle pool");
    // Its 16 workers, all seen blocked.
    assert!(
        process["waiters"].as_u64() >= Some(16),
        "{}",
        summarize_pid(&report, pool.pid())
    );
    assert_eq!(
        exit_code,
        0,
        "no leak among the diagnosed pids, so diagnose must exit 0:\n{}",
        summarize_pid(&report, pool.pid())
    );
}

/// Check that a leak in an -O2 binary without frame pointers is unwound with
/// DWARF CFI through glibc and the binary: the leak site's stack holds both the
/// innermost leaking function `acquire_shared_state` and, further out, its caller
/// `request_handler`.
#[test]
fn leak_without_frame_pointers_is_unwound_through_dwarf() {
    require_root();
    let leaker = Spawned::start(Program::NofpLeak);
    let (exit_code, report) = diagnose(&[leaker.pid()], DIAGNOSE_SECONDS);
    let summary = summarize_pid(&report, leaker.pid());
    let site = assert_thread_leak_at(&report, leaker.pid(), "acquire_shared_state");
    let innermost = frame_index(site, "acquire_shared_state");
    let caller = frame_index(site, "request_handler");
    assert!(
        caller.is_some(),
        "the leak site's stack stops before `request_handler`, the caller of \
         `acquire_shared_state`:\n{summary}"
    );
    assert!(
        innermost < caller,
        "`request_handler` must be outside (after) `acquire_shared_state` in an \
         innermost-first stack:\n{summary}"
    );
    assert_eq!(
        exit_code, 1,
        "a leak was found, so diagnose must exit 1:\n{summary}"
    );
}

/// Check that Rust threads blocked forever in `mpsc::Receiver::recv` (std parks
/// them on a futex) are reported as a leak at a site whose stack names
/// `wait_for_message`.
#[test]
fn rust_mpsc_leak_is_reported_at_wait_for_message() {
    check_single_leaker(Program::MpscLeak, "wait_for_message");
}

/// Check that when a leaking process and a steady one are diagnosed together,
/// only the leaker is called a leak and diagnose exits 1.
#[test]
fn only_the_leaker_is_reported_among_steady_processes() {
    require_root();
    let leaker = Spawned::start(Program::MutexLeak);
    let pool = Spawned::start(Program::IdlePool);
    let (exit_code, report) = diagnose(&[leaker.pid(), pool.pid()], DIAGNOSE_SECONDS);
    assert_thread_leak_at(&report, leaker.pid(), "leak_on_mutex");
    assert_seen_and_ok(&report, pool.pid(), "the idle pool beside the leaker");
    assert_eq!(exit_code, 1, "one process leaks, so diagnose must exit 1");
}

/// Check that asking for a pid that does not exist is an error: exit code 2 with
/// a one-line reason on stderr.
#[test]
fn unknown_pid_is_an_error() {
    // As root, so the error is about the pid and not about privileges (which
    // would also exit 2 and make this test pass for the wrong reason).
    require_root();
    // --duration 1 bounds the run if the pid is wrongly accepted.
    let args = ["diagnose", "--duration", "1", "--pid", "999999999"].map(String::from);
    let run = run_leakscope(&args, Duration::from_secs(60));
    assert_eq!(run.exit_code, 2, "stderr:\n{}", run.stderr);
    let reason_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        reason_lines.len(),
        1,
        "expected a one-line reason on stderr, got:\n{}",
        run.stderr
    );
}

/// Check that a malformed `--duration` is rejected with exit code 2 and a reason
/// on stderr.
#[test]
fn malformed_duration_is_an_error() {
    // No root needed: argument errors must be reported whoever runs the tool.
    let args = ["diagnose", "--duration", "abc"].map(String::from);
    let run = run_leakscope(&args, Duration::from_secs(60));
    assert_eq!(run.exit_code, 2, "stderr:\n{}", run.stderr);
    assert!(
        !run.stderr.trim().is_empty(),
        "a bad argument must come with a reason on stderr"
    );
}

/// Check that a watched process exiting in the middle of a diagnosis is handled:
/// leakscope still finishes with 0 or 1 and a report, never 2 or a panic.
#[test]
fn process_exiting_mid_scan_does_not_break_diagnose() {
    require_root();
    let mut leaker = Spawned::start(Program::MutexLeak);
    let pid = leaker.pid();
    let diagnosis = thread::spawn(move || diagnose(&[pid], DIAGNOSE_SECONDS));
    thread::sleep(Duration::from_secs(2));
    leaker.kill();
    // diagnose() already fails on a panic, a signal, a timeout or a missing report.
    let (exit_code, report) = match diagnosis.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    assert!(
        exit_code == 0 || exit_code == 1,
        "exit code {exit_code} after the watched process exited:\n{}",
        summarize_pid(&report, pid)
    );
}

/// Check that an unprivileged user gets exit code 2 and a one-line reason naming root,
/// not a panic or a half-loaded BPF program.
#[test]
fn non_root_is_an_error() {
    require_root(); // to drop privileges we must have them
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leakscope"))
        .args(["diagnose", "--duration", "1"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run leakscope as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line reason expected:\n{stderr}"
    );
    assert!(
        stderr.contains("root"),
        "the reason should name root:\n{stderr}"
    );
}

/// Starts shape-threads in `mode_args` (e.g. "read-leak --rate 4"), diagnoses only it,
/// and checks it is reported as a leak (exit code 1) at `leak_function`, in syscall
/// `wait`; returns the leak site.
fn check_shape_leak(mode_args: &str, leak_function: &str, wait: &str) -> Value {
    require_root();
    let args: Vec<&str> = mode_args.split_whitespace().collect();
    let leaker = Spawned::start_with_args(Program::ShapeThreads, &args);
    let (exit_code, report) = diagnose(&[leaker.pid()], DIAGNOSE_SECONDS);
    let site = assert_thread_leak_in(&report, leaker.pid(), leak_function, wait).clone();
    assert_eq!(
        exit_code,
        1,
        "a leak was found, so diagnose must exit 1:\n{}",
        summarize_pid(&report, leaker.pid())
    );
    site
}

/// Starts shape-threads in a steady `mode_args`, diagnoses it, and checks it is judged
/// "ok" (exit code 0) while its site at `function` was seen waiting in `wait` on an fd
/// of kind `fd_kind`: a steady shape must be watched, not missed.
fn check_shape_steady(mode_args: &str, function: &str, wait: &str, fd_kind: &str) {
    require_root();
    let args: Vec<&str> = mode_args.split_whitespace().collect();
    let steady = Spawned::start_with_args(Program::ShapeThreads, &args);
    let (exit_code, report) = diagnose(&[steady.pid()], DIAGNOSE_SECONDS);
    let summary = summarize_pid(&report, steady.pid());
    assert_eq!(
        process_verdict(&report, steady.pid()),
        "ok",
        "{mode_args}:\n{summary}"
    );
    assert_eq!(exit_code, 0, "no leak, so diagnose must exit 0:\n{summary}");
    let process = find_process(&report, steady.pid()).expect("judged, so listed");
    let seen = sites(process)
        .iter()
        .find(|site| frame_index(site, function).is_some())
        .unwrap_or_else(|| panic!("no site at `{function}`:\n{summary}"));
    assert_eq!(seen["wait"], wait, "{summary}");
    assert_eq!(seen["fd_kind"], fd_kind, "{summary}");
}

/// Check that threads blocked forever in read(2) on a socketpair whose peer never
/// writes are reported as a leak at `leak_read_reply_never_sent`, waiting in "read" on a
/// unix socket.
#[test]
fn read_leak_on_a_socketpair_is_reported_at_its_function() {
    let site = check_shape_leak("read-leak --rate 4", "leak_read_reply_never_sent", "read");
    assert_eq!(site["fd_kind"], "socket", "{site:#}");
    assert_eq!(site["socket"], "unix", "{site:#}");
}

/// Check that threads blocked forever in accept(2) on listeners nobody connects to are
/// reported as a leak at `leak_accept_no_client`, on a tcp socket.
#[test]
fn accept_leak_is_reported_at_its_function() {
    let site = check_shape_leak("accept-leak --rate 4", "leak_accept_no_client", "accept");
    assert_eq!(site["fd_kind"], "socket", "{site:#}");
    assert_eq!(site["socket"], "tcp", "{site:#}");
}

/// Check that threads blocked forever in waitpid(3) (the wait4 syscall) on children that
/// never exit are reported as a leak at `leak_waitpid_child_never_exits`, with no fd.
#[test]
fn waitpid_leak_is_reported_at_its_function() {
    let site = check_shape_leak(
        "waitpid-leak --rate 4",
        "leak_waitpid_child_never_exits",
        "wait4",
    );
    assert!(site.get("fd_kind").is_none(), "wait4 has no fd: {site:#}");
}

/// Check that a thread-per-connection server whose clients drop one request in ten
/// (they connect and never send it) is reported as a leak where its request threads
/// read, `conn_read_request`, though nine in ten of them finish.
#[test]
fn dropped_requests_leak_server_threads_in_read() {
    check_shape_leak(
        "conn-server --keepalive 0 --rate 20 --leak-every 10",
        "conn_read_request",
        "read",
    );
}

/// Check that a steady thread-per-connection server (idle keep-alive connections
/// waiting in read, short connections coming and going) is no leak, while its reading
/// threads are seen in "read" on sockets.
#[test]
fn steady_thread_per_connection_server_is_not_a_leak() {
    check_shape_steady(
        "conn-server --keepalive 16 --rate 20",
        "conn_read_request",
        "read",
        "socket",
    );
}

/// Check that event loops parked in epoll_wait and woken often are no leak, while they
/// are seen in "epoll_wait" on an epoll fd.
#[test]
fn epoll_event_loops_are_not_a_leak() {
    check_shape_steady(
        "epoll-loop --loops 4 --rate 100",
        "event_loop_wait",
        "epoll_wait",
        "epoll",
    );
}
