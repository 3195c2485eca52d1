//! leakscope against processes that attack it: `hostile_go` (tests/programs) poses as a
//! Go binary and fills its fake goroutine table with wrapping stack pointers, frame
//! pointer cycles, ever-new creators, garbage pointers, thousands of distinct stacks and
//! a declared length of millions. leakscope must stay bounded in time and memory, mark
//! what it cannot read as unreadable with the reason, and still find a real leaker
//! beside them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::procfs::{self, Usage};

use crate::common::{
    LOADED_RETRY_FACTOR, MIN_COVERED_SHARE, Program, Spawned, WARM_UP, check_report_shape,
    find_process, leak_sites_containing, program_path, require_root, summarize_pid,
};

/// Peak resident memory allowed to a scoped diagnosis of the hostile processes (a
/// debug build; the same diagnosis of well-behaved programs peaks near 50 MB).
const MAX_PEAK_RSS_KB: u64 = 200 * 1024;

/// Starts `hostile_go MODE`.
fn start_hostile(mode: &str) -> Spawned {
    let mut command = Command::new(program_path(Program::HostileGo));
    command.arg(mode);
    Spawned::launch(&format!("hostile_go {mode}"), command)
}

/// What one measured diagnosis did.
struct Measured {
    report: Value,
    wall: Duration,
    /// CPU time (user + system) at the last sample before it exited.
    cpu: Duration,
    peak_rss_kb: u64,
}

/// Runs `leakscope diagnose --json` on `pids` for `seconds`, sampling its peak RSS
/// (VmHWM) and CPU time from /proc while it runs; kills it past twice the duration
/// plus a minute.
fn diagnose_measured(pids: &[u32], seconds: u32) -> Measured {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leakscope"));
    command.args(["diagnose", "--json", "--duration", &seconds.to_string()]);
    for pid in pids {
        command.args(["--pid", &pid.to_string()]);
    }
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leakscope");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = start + Duration::from_secs(2 * u64::from(seconds) + 60);
    let mut most = Usage::default();
    let status = loop {
        if let Some(usage) = procfs::usage(child.id()) {
            most.peak_rss_bytes = most.peak_rss_bytes.max(usage.peak_rss_bytes);
            most.cpu_s = most.cpu_s.max(usage.cpu_s);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "leakscope diagnose on hostile processes still running after {:?}",
                start.elapsed()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let wall = start.elapsed();
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        // 1: a leak was found.
        matches!(status.code(), Some(0 | 1)) && !stderr.contains("panicked"),
        "leakscope diagnose failed ({status}):\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{stderr}"));
    check_report_shape(&report).unwrap_or_else(|e| panic!("report shape: {e}"));
    Measured {
        report,
        wall,
        cpu: Duration::from_secs_f64(most.cpu_s),
        peak_rss_kb: most.peak_rss_bytes / 1024,
    }
}

/// Check that the hostile program's file reads as the Go 1.26 binary it poses as, with
/// the go1.26 `g` offsets its source hard-codes: otherwise the attacks below would
/// not reach the goroutine reader at all.
#[test]
fn hostile_program_poses_as_go_1_26() {
    let data = std::fs::read(program_path(Program::HostileGo)).unwrap();
    let program = tracer_user::sources::go::executable::analyse_go_bytes(&data)
        .expect("hostile_go analyses")
        .expect("hostile_go is taken for Go");
    assert_eq!(
        program.release,
        tracer_user::model::GoRelease::Known {
            major: 1,
            minor: 26
        }
    );
    let l = &program.layout;
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/hostile_go.c"),
    )
    .unwrap();
    for (name, offset) in [
        ("G_SIZE", l.g_size),
        ("G_STACK_HI", l.g_stack_hi),
        ("G_SCHED_SP", l.g_sched_sp),
        ("G_SCHED_PC", l.g_sched_pc),
        ("G_SCHED_BP", l.g_sched_bp),
        ("G_ATOMICSTATUS", l.g_atomicstatus),
        ("G_GOID", l.g_goid),
        ("G_WAITREASON", l.g_waitreason),
        ("G_GOPC", l.g_gopc),
        ("G_STARTPC", l.g_startpc),
    ] {
        assert!(
            source.contains(&format!("#define {name} {offset}\n")),
            "hostile_go.c's {name} is not {offset} (layouts.json go1.26)"
        );
    }
}

/// Check that a diagnosis watching every attack of `hostile_go` at once (wrapping
/// stack pointers, frame-pointer cycles, churning creators, garbage pointers, 20,000
/// distinct stacks) and a table declaring 15 million goroutines stays within its time
/// and memory budget, reports the huge table as unreadable with the reason, and still
/// finds the real thread leak beside them.
#[test]
fn hostile_goroutine_tables_stay_bounded_and_a_real_leak_is_found() {
    require_root();
    let mut all = start_hostile("all");
    let mut huge = start_hostile("huge");
    let mut leaker = Spawned::start(Program::MutexLeak);
    thread::sleep(WARM_UP);
    all.assert_running("during warm-up");
    huge.assert_running("during warm-up");
    let pids = [all.pid(), huge.pid(), leaker.pid()];
    let mut seconds: u32 = 6;
    let mut run = diagnose_measured(&pids, seconds);
    // A run whose scans a loaded machine starved proves nothing: once more, longer (as
    // common::run_diagnosis does).
    if !run.report["duration_s"]
        .as_f64()
        .is_some_and(|span| span >= f64::from(seconds) * MIN_COVERED_SHARE)
    {
        eprintln!("hostile diagnose: its scans were starved of CPU; watching again, longer");
        seconds *= LOADED_RETRY_FACTOR;
        run = diagnose_measured(&pids, seconds);
    }
    all.assert_running("while leakscope watched");
    huge.assert_running("while leakscope watched");
    leaker.assert_running("while leakscope watched");
    let report = &run.report;
    let summary = format!(
        "{}\n{}\n{}",
        summarize_pid(report, all.pid()),
        summarize_pid(report, huge.pid()),
        summarize_pid(report, leaker.pid())
    );

    let huge_process = find_process(report, huge.pid())
        .unwrap_or_else(|| panic!("the huge table's process is not in the report:\n{summary}"));
    let error = huge_process["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("allglen"),
        "a 15M-goroutine table must be unreadable with the reason, got error {error:?}:\n{summary}"
    );
    assert_eq!(huge_process["runtime"], "go1.26", "{summary}");
    // Every attack in `all` is bounded by the reader itself: the process is read (its
    // garbage dropped), not left to the daemon's panic isolation as a last resort.
    let all_process = find_process(report, all.pid())
        .unwrap_or_else(|| panic!("the hostile process is not in the report:\n{summary}"));
    assert!(
        all_process["error"].is_null(),
        "the attacks must be read without error or panic, got {}:\n{summary}",
        all_process["error"]
    );
    let leaker_process = find_process(report, leaker.pid())
        .unwrap_or_else(|| panic!("the real leaker is not in the report:\n{summary}"));
    assert_eq!(leaker_process["verdict"], "leak", "{summary}");
    assert!(
        !leak_sites_containing(leaker_process, "leak_on_mutex").is_empty(),
        "the real leak site is not reported:\n{summary}"
    );

    let cpu = run.cpu;
    eprintln!(
        "hostile diagnose: wall {:?}, cpu {:?}, peak RSS {} KiB",
        run.wall, cpu, run.peak_rss_kb
    );
    assert!(
        run.peak_rss_kb <= MAX_PEAK_RSS_KB,
        "peak RSS {} KiB over the {} KiB budget",
        run.peak_rss_kb,
        MAX_PEAK_RSS_KB
    );
    // CPU is the bound that does not move with other load (leakscope is niced); the
    // wall-clock bound only catches a hang.
    assert!(
        run.wall <= Duration::from_secs(u64::from(seconds) + 60),
        "took {:?} for a {seconds} s diagnosis",
        run.wall
    );
    assert!(
        cpu <= Duration::from_secs(u64::from(seconds)),
        "used {cpu:?} of CPU in a {seconds} s diagnosis"
    );
}
