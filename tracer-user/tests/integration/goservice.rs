//! Go services as they run in production (`tests/programs/go/service`, `goservice`):
//! a profiler that pulls Go's own `goroutineleak` profile every 3 s, so the runtime
//! marks the goroutines it proves leaked `_Gleaked`; and requests labelled with pprof
//! labels, whose goroutines inherit them. Each test reads a real process of a real
//! toolchain and checks what the JSON, text, pprof and metrics outputs say.

use std::{process::Command, thread, time::Duration};

use serde_json::Value;

use crate::{
    common::{
        GO_NEWEST, GO_VERSIONS, GoBuild, Spawned, TempDir, diagnose, diagnose_with, find_process,
        go_program_path, go_tool_pprof, require_root, run_leakscope, sites, stack_contains,
        start_daemon, summarize_process, wait_for, wait_healthy,
    },
    daemon::http_get,
};

/// The oldest toolchain the tests build: its pprof labels are a Go map (1.17-1.23).
const GO_LABEL_MAP: &str = GO_VERSIONS[0];
/// Seconds each diagnosis watches.
const WATCH_SECONDS: u32 = 10;
/// Where the service strands goroutines.
const STRANDED: &str = "main.strandedReply";
const LABELLED: &str = "main.labelledReply";
const HOSTILE: &str = "main.hostileReply";

/// Starts `goservice MODE ARGS...` built with Go `version` and lets it run long enough
/// for its profiler to have pulled the leak profile once (3 s) and to strand a few.
fn start_service(version: &'static str, mode: &str, args: &[&str]) -> Spawned {
    let build = GoBuild::plain(version, "service");
    let mut command = Command::new(go_program_path(build));
    command.arg(mode).args(args);
    let mut service = Spawned::launch(&format!("goservice {mode} (go{version})"), command);
    thread::sleep(Duration::from_secs(4));
    service.assert_running("during warm-up");
    service
}

/// The one site of `process` whose stack holds `function`, leak or not.
fn site_of<'a>(process: &'a Value, function: &str) -> &'a Value {
    let sites: Vec<&Value> = sites(process)
        .iter()
        .filter(|site| stack_contains(site, function))
        .collect();
    assert_eq!(
        sites.len(),
        1,
        "one site at {function}:\n{}",
        summarize_process(process)
    );
    sites[0]
}

/// Two diagnoses of `pid` watching at once for [`WATCH_SECONDS`]: the JSON report
/// (with `extra` arguments) and the text one.
fn diagnose_json_and_text(pid: u32, extra: &[&str]) -> (Value, String) {
    thread::scope(|scope| {
        let text = scope.spawn(|| {
            let args: Vec<String> = ["diagnose", "--duration", &WATCH_SECONDS.to_string()]
                .iter()
                .map(|s| s.to_string())
                .chain(["--pid".into(), pid.to_string()])
                .collect();
            run_leakscope(&args, Duration::from_secs(180)).stdout
        });
        let (_, report) = diagnose_with(&[pid], WATCH_SECONDS, extra);
        (report, text.join().expect("the text diagnosis"))
    })
}

fn process_of(report: &Value, pid: u32) -> &Value {
    find_process(report, pid).unwrap_or_else(|| panic!("pid {pid} not in the report"))
}

/// Check that a Go 1.27 service stranding two goroutines a second, whose own profiler
/// pulls the goroutineleak profile every 3 s (the runtime flipping the stranded ones to
/// `_Gleaked` and back at each pull), is a leak at its site, the members the runtime
/// proved leaked counted there as evidence (JSON `runtime_leaked`, the text report, a
/// pprof label), and that the flips cost no churn: no member of the site left.
#[test]
fn runtime_proven_leak_is_a_leak_with_runtime_evidence() {
    require_root();
    let service = start_service(GO_NEWEST, "strand", &[]);
    let scratch = TempDir::new("leakscope-goservice");
    let profile = scratch.path().join("waiters.pb.gz");
    let (report, text) =
        diagnose_json_and_text(service.pid(), &["--pprof", profile.to_str().unwrap()]);
    let process = process_of(&report, service.pid());
    let summary = summarize_process(process);
    let site = site_of(process, STRANDED);
    assert_eq!(site["verdict"], "leak", "{summary}");
    let proven = site["runtime_leaked"].as_u64().unwrap_or(0);
    let count = site["count"].as_u64().unwrap_or(0);
    assert!(
        proven > 0 && proven <= count,
        "runtime_leaked {proven} of {count}:\n{site:#}"
    );
    assert_eq!(
        site["departures"], 0,
        "the _Gleaked flips churned:\n{site:#}"
    );
    for other in process["sites"].as_array().unwrap() {
        if other["site"] != site["site"] {
            assert!(other.get("runtime_leaked").is_none(), "{other:#}");
        }
    }
    let tags = go_tool_pprof(&["-tags"], &profile);
    assert!(
        tags.contains("runtime_leaked"),
        "no runtime_leaked in:\n{tags}"
    );
    assert!(
        text.contains("    Go's GC proved ")
            && text.contains(" of them leaked (goroutineleak profile)"),
        "the text report does not say the runtime proved leaks:\n{text}"
    );
}

/// Check that a bounded population the runtime proved leaked (50 goroutines stranded
/// at start, the profile pulled every 3 s) is no leak, the verdict being about growth,
/// yet shows its proven members: in the JSON report (with no arrival or departure
/// across the flips) and in the daemon's `leakscope_site_runtime_leaked`.
#[test]
fn bounded_runtime_proven_population_is_evidence_not_growth() {
    require_root();
    let service = start_service(GO_NEWEST, "bounded", &["--count", "50"]);
    let (_, report) = diagnose(&[service.pid()], WATCH_SECONDS);
    let process = process_of(&report, service.pid());
    let summary = summarize_process(process);
    assert_eq!(process["verdict"], "ok", "{summary}");
    let site = site_of(process, STRANDED);
    assert_eq!(site["count"], 50, "{site:#}");
    let proven = site["runtime_leaked"].as_u64().unwrap_or(0);
    assert!(
        proven > 0 && proven <= 50,
        "runtime_leaked {proven}:\n{site:#}"
    );
    assert_eq!(
        (&site["arrivals"], &site["departures"]),
        (&0.into(), &0.into()),
        "{site:#}"
    );

    let scratch = TempDir::new("leakscope-goservice-daemon");
    let mut daemon = start_daemon(&scratch, &[service.pid()], &["--interval", "1"], &[]);
    wait_healthy(&mut daemon);
    let series = wait_for(Duration::from_secs(60), || {
        let (_, exposition) = http_get(daemon.port(), "/metrics").ok()?;
        exposition
            .lines()
            .find(|l| {
                l.starts_with("leakscope_site_runtime_leaked{")
                    && l.contains(STRANDED)
                    && !l.ends_with(" 0")
            })
            .map(str::to_string)
    })
    .unwrap_or_else(|| {
        panic!(
            "no leakscope_site_runtime_leaked series above 0:\n{}",
            daemon.log()
        )
    });
    assert!(
        series.contains(&format!("pid=\"{}\"", service.pid())),
        "{series}"
    );
}

/// Runs the labelled service built with Go `version` and checks that its leak site
/// reports its members' label sets, most common first, in the JSON and text reports
/// and as pprof sample labels.
fn labelled_leak_shows_its_labels(version: &'static str) -> Spawned {
    require_root();
    let service = start_service(version, "labelled", &[]);
    let scratch = TempDir::new(&format!("leakscope-goservice-labels-{version}"));
    let profile = scratch.path().join("waiters.pb.gz");
    let (report, text) =
        diagnose_json_and_text(service.pid(), &["--pprof", profile.to_str().unwrap()]);
    let process = process_of(&report, service.pid());
    let site = site_of(process, LABELLED);
    assert_eq!(site["verdict"], "leak", "{}", summarize_process(process));
    let sets = site["labels"].as_array().expect("labels on the site");
    let set = |i: usize| (&sets[i]["labels"], sets[i]["count"].as_u64().unwrap_or(0));
    let (checkout, cart) = (set(0), set(1));
    assert_eq!(
        checkout.0,
        &serde_json::json!({"route": "/checkout", "tenant": "acme"}),
        "{site:#}"
    );
    assert_eq!(
        cart.0,
        &serde_json::json!({"route": "/cart", "tenant": "acme"}),
        "{site:#}"
    );
    let count = site["count"].as_u64().unwrap();
    assert!(
        checkout.1 > cart.1 && cart.1 > 0 && checkout.1 + cart.1 == count,
        "label counts {} + {} for {count} members:\n{site:#}",
        checkout.1,
        cart.1
    );
    let idle = site_of(process, "main.idleWorker");
    assert!(idle.get("labels").is_none(), "unlabelled workers: {idle:#}");
    let tags = go_tool_pprof(&["-tags"], &profile);
    for expected in ["route", "/checkout", "/cart", "tenant", "acme"] {
        assert!(tags.contains(expected), "no {expected:?} in:\n{tags}");
    }
    // The text diagnosis watched beside the JSON one: its counts may differ by one.
    let line = text
        .lines()
        .find(|l| l.starts_with("    labels: "))
        .unwrap_or_else(|| panic!("no labels line in:\n{text}"));
    assert!(
        line.starts_with("    labels: route=/checkout tenant=acme (")
            && line.contains("), route=/cart tenant=acme ("),
        "{line}"
    );
    service
}

/// Check that a labelled leak of Go 1.21 (labels in a Go map) shows its labels.
#[test]
fn labelled_leak_shows_its_labels_go_map() {
    labelled_leak_shows_its_labels(GO_LABEL_MAP);
}

/// Check that a labelled leak of the newest Go (labels in a sorted slice) shows them,
/// and that the daemon exports a label key on the site series only when asked to
/// (`--metric-label-key`), refusing more keys than it allows with one line, exit 2.
#[test]
fn labelled_leak_shows_its_labels_go_slice() {
    let service = labelled_leak_shows_its_labels(GO_NEWEST);
    let scratch = TempDir::new("leakscope-goservice-label-keys");
    let extra = ["--interval", "1", "--metric-label-key", "route"];
    let mut daemon = start_daemon(&scratch, &[service.pid()], &extra, &[]);
    wait_healthy(&mut daemon);
    let series = wait_for(Duration::from_secs(60), || {
        let (_, exposition) = http_get(daemon.port(), "/metrics").ok()?;
        exposition
            .lines()
            .find(|l| l.starts_with("leakscope_site_blocked_waiters{") && l.contains(LABELLED))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no series of the labelled site:\n{}", daemon.log()));
    assert!(series.contains(r#"label_route="/checkout""#), "{series}");
    let too_many: Vec<String> = ["run", "--listen", "127.0.0.1:1"]
        .into_iter()
        .chain(
            ["a", "b", "c", "d", "e"]
                .into_iter()
                .flat_map(|k| ["--metric-label-key", k]),
        )
        .map(str::to_string)
        .collect();
    let refused = run_leakscope(&too_many, Duration::from_secs(30));
    assert_eq!(refused.exit_code, 2, "{refused:?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");
    assert!(refused.stderr.contains("at most 4 keys"), "{refused:?}");
}

/// Runs the hostile-labels service built with Go `version`: besides its labelled
/// requests, one request's label set holds 2,000 labels, a 64 KiB key and a 1 MiB
/// value. Checks that every label set reported stays within the reader's bounds and
/// says it was cut, that the ordinary sets are still reported exactly, and that the
/// diagnosis took its usual time.
fn hostile_label_sets_are_bounded(version: &'static str) {
    require_root();
    let service = start_service(version, "hostile-labels", &[]);
    let started = std::time::Instant::now();
    let (_, report) = diagnose(&[service.pid()], WATCH_SECONDS);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(u64::from(WATCH_SECONDS) + 20),
        "the diagnosis took {took:?}"
    );
    let process = process_of(&report, service.pid());
    let hostile = site_of(process, HOSTILE);
    let sets = hostile["labels"]
        .as_array()
        .expect("the hostile site's labels");
    for set in sets {
        assert_eq!(set["truncated"], true, "{set:#}");
        let labels = set["labels"].as_object().unwrap();
        assert!(labels.len() <= 16, "{} labels kept", labels.len());
        for (key, value) in labels {
            assert!(key.len() <= 64 + 3, "a key of {} bytes", key.len());
            let value = value.as_str().unwrap();
            assert!(value.len() <= 128 + 3, "a value of {} bytes", value.len());
        }
    }
    let labelled = site_of(process, LABELLED);
    assert_eq!(
        labelled["labels"][0]["labels"],
        serde_json::json!({"route": "/checkout", "tenant": "acme"}),
        "{labelled:#}"
    );
}

/// Check that hostile label sets of Go 1.21 (a Go map of 2,000 labels) are bounded.
#[test]
fn hostile_label_sets_are_bounded_go_map() {
    hostile_label_sets_are_bounded(GO_LABEL_MAP);
}

/// Check that hostile label sets of the newest Go (a sorted slice) are bounded.
#[test]
fn hostile_label_sets_are_bounded_go_slice() {
    hostile_label_sets_are_bounded(GO_NEWEST);
}
