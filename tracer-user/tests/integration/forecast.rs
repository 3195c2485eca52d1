//! What a leak holds and when it breaks its process, checked against the kernel: leakers
//! are put in cgroups made on this host with a limit (the v1 `pids` and `memory`
//! controllers; the v2 unified hierarchy here holds no controller, so a v2 `pids.max`
//! cannot be set on this host), and leakscope's forecast is compared with when the
//! kernel really refuses the leaker's next thread. Every sink must say what the leak
//! holds and when it breaks: the JSON and text reports, the pprof profile, the daemon's
//! metrics and its dumps. The cgroups are removed afterwards, even when a test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::http::parse_exposition;

use crate::common::{
    GO_NEWEST, GoBuild, GoFlavor, Program, Spawned, TempDir, diagnose_with, find_process,
    go_program_path, go_tool_pprof, leak_sites_containing, program_path, require_root,
    run_leakscope, start_daemon, summarize_pid, wait_for, wait_healthy,
};
use crate::pods::{CGROUP_ROOT, MadeCgroups};

/// A thread every 50 ms: `threadfarm 1 50` (one idle thread, then the leak).
const THREADS_EVERY_MS: &str = "50";

/// A cgroup made for one test in one v1 controller's hierarchy, with the leaker in it.
struct LimitedCgroup {
    dir: PathBuf,
    /// Removes the cgroup when dropped (after whatever runs in it is moved out).
    _made: MadeCgroups,
}

impl LimitedCgroup {
    /// Makes `leakscope-forecast-<name>-<our pid>` under the v1 hierarchy of
    /// `controller` and sets `file` to `limit`.
    fn make(controller: &str, name: &str, file: &str, limit: u64) -> Self {
        require_root();
        let root = Path::new(CGROUP_ROOT).join(controller);
        assert!(
            root.join("cgroup.procs").is_file() && !root.join("cgroup.controllers").exists(),
            "no v1 {controller} hierarchy at {} (these tests need the host's cgroup v1 \
             controllers mounted and writable by root, as on this project's machines)",
            root.display()
        );
        let mut made = MadeCgroups { dirs: Vec::new() };
        let own = format!("leakscope-forecast-{name}-{}", std::process::id());
        let dir = made.make(&root, "", &own);
        fs::write(dir.join(file), limit.to_string())
            .unwrap_or_else(|e| panic!("cannot set {file} of {}: {e}", dir.display()));
        LimitedCgroup { dir, _made: made }
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    fn take(&self, pid: u32) {
        let procs = self.dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move {pid} into {}: {e}", procs.display()));
    }

    /// How often the kernel refused a task for `pids.max` (`pids.events`' max count).
    fn pids_refused(&self) -> u64 {
        let events = fs::read_to_string(self.dir.join("pids.events")).unwrap_or_default();
        events
            .lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A thread leaker (20 threads a second) moved into `cgroup`.
fn thread_leaker_in(cgroup: &LimitedCgroup) -> Spawned {
    let mut command = Command::new(program_path(Program::ThreadFarm));
    command.args(["1", THREADS_EVERY_MS]);
    let leaker = Spawned::launch("threadfarm 1 50", command);
    cgroup.take(leaker.pid());
    leaker
}

/// The object of `key` in `process`, or a panic naming the process.
fn object<'a>(process: &'a Value, key: &str, report: &Value, pid: u32) -> &'a Value {
    let value = &process[key];
    assert!(
        value.is_object(),
        "no {key} for pid {pid}: {}\n{report:#}",
        summarize_pid(report, pid)
    );
    value
}

/// Check that a thread leak in a v1 `pids` cgroup (`pids.max` 600, 20 threads a
/// second) is forecast to hit `pids.max` first, with the cgroup as its source, and
/// that the time left the report says is within ±50% of when the kernel really
/// refuses the leaker's next thread (`pids.events`); that its leak site holds its
/// threads' stacks (64 KiB mappings, partly resident) in the JSON and the pprof
/// profile (a `stack_bytes` label, the forecast as a comment); and that a steady pool
/// diagnosed beside it gets no forecast at all.
#[test]
fn thread_leak_is_forecast_to_hit_pids_max_when_it_does() {
    let cgroup = LimitedCgroup::make("pids", "threads", "pids.max", 600);
    let _leaker = thread_leaker_in(&cgroup);
    let leaker = _leaker.pid();
    let pool = Spawned::start(Program::IdlePool);
    let scratch = TempDir::new("leakscope-forecast-threads");
    let profile = scratch.path().join("waiters.pb.gz");
    let profile_arg = profile.to_str().unwrap();
    let (_, report) = diagnose_with(
        &[leaker, pool.pid()],
        8,
        &["--interval", "0.5", "--pprof", profile_arg],
    );
    let reported = Instant::now();
    let process = find_process(&report, leaker).expect("the leaker is reported");
    assert_eq!(
        process["verdict"],
        "leak",
        "{}",
        summarize_pid(&report, leaker)
    );
    let exhaustion = object(process, "exhaustion", &report, leaker);
    assert_eq!(exhaustion["limit"], "pids.max", "{exhaustion:#}");
    assert_eq!(exhaustion["source"], cgroup.dir.to_str().unwrap());
    assert_eq!(exhaustion["value"], 600);
    let eta = exhaustion["eta_s"].as_f64().expect("a forecast");
    let limits = process["limits"].as_array().expect("every limit looked at");
    assert!(limits.len() >= 7, "{limits:#?}");

    // When is pids.max really reached? The kernel counts the refused fork.
    let deadline = reported + Duration::from_secs_f64(eta * 3.0 + 30.0);
    while cgroup.pids_refused() == 0 {
        assert!(
            Instant::now() < deadline,
            "pids.max not reached {:.0} s after the forecast of {eta:.1} s",
            reported.elapsed().as_secs_f64()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let actual = reported.elapsed().as_secs_f64();
    eprintln!("forecast: pids.max (600) in {eta:.1} s; reached after {actual:.1} s");
    assert!(
        (eta - actual).abs() <= 0.5 * actual,
        "forecast {eta:.1} s, pids.max reached after {actual:.1} s: off by more than 50%"
    );

    let site = leak_sites_containing(process, "farm_leak_lock")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no leak site: {}", summarize_pid(&report, leaker)));
    let count = site["count"].as_u64().unwrap();
    let reserved = site["stack_bytes"].as_u64().expect("stack_bytes") / count;
    let resident = site["stack_resident_bytes"].as_u64().expect("resident") / count;
    assert!(
        (64 << 10..=128 << 10).contains(&reserved),
        "{reserved} per thread"
    );
    assert!(
        (4 << 10..reserved).contains(&resident),
        "{resident} resident per thread"
    );
    assert!(process["stack_bytes"].as_u64() >= site["stack_bytes"].as_u64());

    let steady = find_process(&report, pool.pid()).expect("the pool is reported");
    assert_eq!(steady["verdict"], "ok");
    assert!(steady.get("exhaustion").is_none() && steady.get("limits").is_none());

    let comments = go_tool_pprof(&["-comments"], &profile);
    assert!(
        comments.contains(&format!(
            "pid {leaker} (threadfarm): will hit pids.max (600) in ~"
        )),
        "{comments}"
    );
    let tags = go_tool_pprof(&["-tags"], &profile);
    assert!(tags.contains("stack_bytes:"), "{tags}");
}

/// Check that the text report, the daemon's metrics and its dumps say when a thread
/// leak in a `pids` cgroup (`pids.max` 5000, far enough not to be reached during the
/// test) reaches it (a dump, written when the leak is first found, may say why it
/// cannot tell yet), and what its leak site's stacks hold.
#[test]
fn text_metrics_and_dumps_show_the_forecast_and_stack_bytes() {
    let cgroup = LimitedCgroup::make("pids", "sinks", "pids.max", 5000);
    let leaker = thread_leaker_in(&cgroup);
    let pid = leaker.pid();
    let scratch = TempDir::new("leakscope-forecast-sinks");
    let dumps = scratch.path().join("dumps");
    let dumps_arg = dumps.to_str().unwrap();
    let mut daemon = start_daemon(
        &scratch,
        &[pid],
        &[
            "--interval",
            "0.5",
            "--window",
            "6",
            "--dump-dir",
            dumps_arg,
        ],
        &[],
    );
    wait_healthy(&mut daemon);

    let args: Vec<String> = [
        "diagnose",
        "--pid",
        &pid.to_string(),
        "--duration",
        "4",
        "--interval",
        "0.5",
    ]
    .map(String::from)
    .to_vec();
    let text = run_leakscope(&args, Duration::from_secs(60)).stdout;
    assert!(text.contains("\n  will hit pids.max (5000) in ~"), "{text}");
    assert!(text.contains(" of stacks ("), "{text}");

    let found = wait_for(Duration::from_secs(60), || {
        let (_, body) = daemon.get("/metrics").ok()?;
        let series = parse_exposition(&body);
        let of = |name: &str| {
            series
                .iter()
                .find(|s| s.name == name && s.label("pid") == Some(pid.to_string().as_str()))
        };
        let eta = series.iter().find(|s| {
            s.name == "leakscope_process_exhaustion_seconds"
                && s.label("pid") == Some(pid.to_string().as_str())
                && s.label("limit") == Some("pids.max")
        })?;
        let stack = of("leakscope_site_stack_bytes")?;
        let resident = of("leakscope_site_stack_resident_bytes")?;
        Some((eta.value, stack.value, resident.value))
    });
    let (eta, stack, resident) =
        found.unwrap_or_else(|| panic!("no forecast in the metrics; log:\n{}", daemon.log()));
    assert!(
        eta > 0.0 && stack >= 65536.0 && resident > 0.0,
        "{eta} {stack} {resident}"
    );

    let dump = wait_for(Duration::from_secs(30), || {
        fs::read_dir(&dumps)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
    })
    .unwrap_or_else(|| panic!("no dump; log:\n{}", daemon.log()));
    let report: Value = serde_json::from_str(&fs::read_to_string(&dump).unwrap()).unwrap();
    let process = find_process(&report, pid).expect("the dump is of the leaker");
    // Written when the verdict first turned to leak: a forecast, or why none yet (a
    // window of two or three scans is too few samples).
    let exhaustion = object(process, "exhaustion", &report, pid);
    assert_eq!(exhaustion["limit"], "pids.max", "{exhaustion:#}");
    assert!(
        exhaustion["eta_s"].is_f64() || exhaustion["reason"].is_string(),
        "{exhaustion:#}"
    );
    assert!(process["stack_bytes"].as_u64().is_some_and(|b| b > 0));
}

/// Check that a Go leaker whose leaked goroutines each hold a 256 KiB buffer, in a v1
/// `memory` cgroup limited to 1 GiB, has its leak site report the goroutines' stacks
/// (at least 2 KiB each) and is forecast to reach the cgroup's memory limit at about
/// the rate it leaks (1 MiB a second).
#[test]
fn go_leak_holds_stacks_and_is_forecast_to_hit_its_memory_limit() {
    let cgroup = LimitedCgroup::make("memory", "go", "memory.limit_in_bytes", 1 << 30);
    let mut command = Command::new(go_program_path(GoBuild {
        version: GO_NEWEST,
        flavor: GoFlavor::Plain,
        package: "leaks",
    }));
    command.arg("hold");
    let mut leaker = Spawned::launch("goleaks hold", command);
    cgroup.take(leaker.pid());
    thread::sleep(Duration::from_secs(2));
    leaker.assert_running("during warm-up");
    let pid = leaker.pid();
    let (_, report) = diagnose_with(&[pid], 10, &["--interval", "0.5"]);
    let process = find_process(&report, pid).expect("the leaker is reported");
    assert_eq!(
        process["verdict"],
        "leak",
        "{}",
        summarize_pid(&report, pid)
    );
    let site = leak_sites_containing(process, "main.leakHoldingBuffer")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no leak site: {}", summarize_pid(&report, pid)));
    let count = site["count"].as_u64().unwrap();
    let stack_bytes = site["stack_bytes"].as_u64().expect("stack_bytes");
    assert!(
        stack_bytes >= 2048 * count,
        "{stack_bytes} bytes for {count} goroutines"
    );
    assert!(site.get("stack_resident_bytes").is_none(), "{site:#}");
    eprintln!("go stacks: {count} goroutines hold {stack_bytes} bytes");

    let exhaustion = object(process, "exhaustion", &report, pid);
    assert_eq!(
        exhaustion["limit"], "memory.limit_in_bytes",
        "{exhaustion:#}"
    );
    assert_eq!(exhaustion["source"], cgroup.dir.to_str().unwrap());
    assert_eq!(exhaustion["value"], 1u64 << 30);
    let eta = exhaustion["eta_s"].as_f64().expect("a memory forecast");
    let per_min = exhaustion["rate_per_min"].as_f64().unwrap() / f64::from(1 << 20);
    eprintln!("go memory forecast: {eta:.0} s at {per_min:.1} MiB/min");
    assert!(
        (15.0..=240.0).contains(&per_min),
        "{per_min} MiB/min, leaking 60"
    );
    assert!(eta > 0.0);
}
