//! Leaks hidden among busy waiters: the leaked waiters block at the same site as busy,
//! healthy ones that come and go all the time, and the verdict must still find them
//! from the waiters that never leave, while the steady twins (the same busy traffic
//! beside a bounded crowd of idle waiters that rotates) stay ok. Real parts: a Go
//! `net/http` server over loopback sockets with busy keep-alive clients, and clients
//! that send one request and vanish without closing (the push-service story);
//! a C thread pool whose busy workers wait where the workers of forgotten per-request
//! pools wait forever.
//!
//! All four programs run at once and are judged by one `leakscope diagnose`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    GO_NEWEST, Program, Spawned, diagnose, find_process, frame_index, process_verdict,
    program_path, require_root, sites, summarize_pid,
};

/// Long enough for the waiters that never leave to settle (a quarter of the window)
/// and their cohort to show a course, short enough for the suite.
const WATCH_SECONDS: u32 = 12;

/// How long the programs run before the watch: the rotating crowds are steady from
/// their start, the leaks have a few leaked already.
const WARM_UP: Duration = Duration::from_secs(3);

/// Busy traffic at the site: each scan sees its waiters in new waits, so far more
/// waits end during the watch than this.
const MIN_BUSY_DEPARTURES: u64 = 100;

/// `shape-goroutines` built with the newest Go, once per run.
fn shape_goroutines() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("leakscope-test-programs/go");
        test_support::go::build_shape_goroutines(GO_NEWEST, &dir).map_err(|e| e.to_string())
    });
    built
        .clone()
        .unwrap_or_else(|reason| panic!("building shape-goroutines failed: {reason}"))
}

fn launch(binary: PathBuf, args: &str) -> Spawned {
    let mut command = Command::new(&binary);
    command.args(args.split_whitespace());
    let name = binary.file_name().unwrap_or_default().to_string_lossy();
    Spawned::launch(&format!("{name} {args}"), command)
}

/// The site of `pid` whose stack holds `function`, with the report's summary of the
/// process for messages.
fn site_at<'a>(report: &'a Value, pid: u32, function: &str) -> (&'a Value, String) {
    let summary = summarize_pid(report, pid);
    let process = find_process(report, pid)
        .unwrap_or_else(|| panic!("pid {pid} is not in the report:\n{summary}"));
    let site = sites(process)
        .iter()
        .find(|site| frame_index(site, function).is_some())
        .unwrap_or_else(|| panic!("no site at `{function}`:\n{summary}"));
    (site, summary)
}

/// Asserts that `pid` leaks at its site at `function` (and nowhere else), found from
/// the waiters that never left among busy ones.
fn assert_busy_site_leak(report: &Value, pid: u32, function: &str, wait: &str) {
    let (site, summary) = site_at(report, pid, function);
    assert_eq!(process_verdict(report, pid), "leak", "{summary}");
    assert_eq!(site["verdict"], "leak", "{summary}");
    assert_eq!(site["wait"], wait, "{summary}");
    assert_eq!(site["rule"], "never_left", "{summary}");
    let reason = site["reason"].as_str().unwrap_or("");
    let words: Vec<&str> = reason.split_whitespace().collect();
    assert!(
        matches!(
            words.as_slice(),
            [n, "arrived", "and", "never", "left", "while", m, "came", "and", "went;", "the", "ones", "that", "stay", "grew", rate, ..]
                if n.parse::<u32>().is_ok_and(|n| n >= 5)
                    && m.parse::<u32>().is_ok()
                    && rate.starts_with('+')
        ),
        "the reason says in one glance who stayed among those who came and went: {reason:?}"
    );
    assert!(
        site["departures"].as_u64().unwrap_or(0) >= MIN_BUSY_DEPARTURES,
        "the leak must hide among busy waiters (the old verdict said `waiters come and \
         go` for such a site):\n{summary}"
    );
    let wrong: Vec<&Value> = sites(find_process(report, pid).expect("found above"))
        .iter()
        .filter(|s| s["verdict"] == "leak" && frame_index(s, function).is_none())
        .collect();
    assert!(wrong.is_empty(), "leaks at other sites: {wrong:#?}");
}

/// Asserts that `pid`, steady, is ok, while its busy site at `function` was watched.
fn assert_busy_site_steady(report: &Value, pid: u32, function: &str) {
    let (site, summary) = site_at(report, pid, function);
    assert_eq!(process_verdict(report, pid), "ok", "{summary}");
    assert_eq!(site["verdict"], "ok", "{summary}");
    assert!(
        site["departures"].as_u64().unwrap_or(0) >= MIN_BUSY_DEPARTURES,
        "the site was busy:\n{summary}"
    );
}

/// Check the push-service story and its thread-pool twin, with their steady
/// counterparts: a Go net/http server (no idle timeout) whose 40 busy keep-alive clients
/// park its connection goroutines at the request read hundreds of times a second,
/// while clients that send one request and vanish without closing leave goroutines
/// parked there for good, is a leak where `net/http.(*conn).serve` waits for the next request (`bufio.(*Reader).Peek`), found from the waiters
/// that never left (`N arrived and never left while M came and went`); the same server
/// beside a bounded crowd of idle keep-alive connections that rotates is ok; a C pool
/// whose 16 busy workers wait in `pool_take_job` where the workers of forgotten
/// per-request pools wait forever is a leak there; the same pool with per-request pools
/// that are shut down after 20-60 s is ok.
#[test]
fn leaks_among_busy_waiters_are_found_and_their_steady_twins_are_not() {
    require_root();
    let busy_http = "http-server --busy 40 --busy-ms 100";
    let busy_pool = "worker-pool --workers 16 --jobs 400";
    let mut programs = [
        launch(shape_goroutines(), &format!("{busy_http} --vanish-rate 3")),
        launch(
            shape_goroutines(),
            &format!("{busy_http} --idle 100 --idle-life-min 20 --idle-life-max 80"),
        ),
        launch(
            program_path(Program::ShapeThreads),
            &format!("{busy_pool} --spawn-rate 3"),
        ),
        launch(
            program_path(Program::ShapeThreads),
            &format!("{busy_pool} --spawn-rate 2 --spawn-life-min 20 --spawn-life-max 60"),
        ),
    ];
    thread::sleep(WARM_UP);
    for program in &mut programs {
        program.assert_running("during warm-up");
    }
    let pids: Vec<u32> = programs.iter().map(Spawned::pid).collect();
    let (exit_code, report) = diagnose(&pids, WATCH_SECONDS);
    for program in &mut programs {
        program.assert_running("while leakscope watched");
    }
    assert_eq!(exit_code, 1, "leaks were found, so diagnose exits 1");
    assert_busy_site_leak(&report, pids[0], "bufio.(*Reader).Peek", "IO wait");
    assert_busy_site_steady(&report, pids[1], "bufio.(*Reader).Peek");
    assert_busy_site_leak(&report, pids[2], "pool_take_job", "futex");
    assert_busy_site_steady(&report, pids[3], "pool_take_job");
}
