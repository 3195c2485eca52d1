//! Hostile names through every sink: a process's `comm`, its executable's path, its
//! cgroup, function, file and module names of its frames and a Go wait reason (each
//! any bytes but NUL, as long as leakscope reads them) rendered as the text report, the
//! JSON report, the metrics, the pprof profile, the flame graph, `top`'s lines and a
//! dump's file name. Each output must keep its format: no control character or text
//! reordering reaches the text, `top` or a label raw, the JSON keeps the names exactly,
//! the SVG stays well-formed XML with no markup of the process's, the exposition one
//! series per line, the dump name one plain file name.
//!
//! Input (after [`grow`], up to 1 MiB): NUL-separated host, comm, executable, cgroup,
//! two (function, file, module) triples, wait reason, a pod log directory name, then
//! shape bytes (sites, stack depth, outcome, kind).
#![no_main]

use std::{
    io::Read,
    sync::Arc,
    time::{Duration, SystemTime},
};

use leakscope_fuzz::{grow, split_parts};
use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use tracer_user::{
    daemon::{
        dumps::dump_stem,
        metrics::{Exporter, Limits, MAX_EXE_LABEL, METRIC_NAMES},
    },
    flamegraph,
    host::cgroup::PodIdentity,
    host::kubelet::parse_pod_dir,
    model::{Frame, ProcessFacts, WaiterKind, frame_name},
    pprof, report,
    summary::testutil::{process, site, window},
    top,
    verdict::Outcome,
    watch::watcher::ScanStats,
};

/// The longest of each name leakscope reads: a Go name or file (pclntab), a path
/// (PATH_MAX), a cgroup file, a wait reason, a comm as /proc/PID/comm gives it.
const NAME: usize = 1 << 16;
const PATH: usize = 4096;
const WAIT: usize = 128;
const COMM: usize = 64;
/// Frames rendered at most (the unwinder returns up to 128 per stack).
const MAX_FRAMES: usize = 128;

fn name(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

/// What must never reach a terminal or a log line raw (`sanitize.rs`).
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// A frame as the symbolizers make it: names cut to what a frame keeps.
fn frame(function: &str, file: &str, module: &str, address: u64) -> Frame {
    Frame {
        function: (!function.is_empty()).then(|| frame_name(function.as_bytes())),
        file: (!file.is_empty()).then(|| frame_name(file.as_bytes())),
        line: Some(7),
        address,
        module: (!module.is_empty()).then(|| module.to_string()),
    }
}

fn check_svg(svg: &[u8]) {
    let mut reader = quick_xml::Reader::from_reader(svg);
    let mut buf = Vec::new();
    let mut scripts = 0;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e) | Event::Empty(e)) if e.name().as_ref() == b"script" => scripts += 1,
            Ok(_) => {}
            Err(e) => panic!("flame graph is not well-formed XML: {e}"),
        }
        buf.clear();
    }
    assert!(scripts <= 1, "a name made a <script> element");
}

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 1 << 20);
    let p = split_parts(&data, b"\0", 13);
    let host = name(p[0], 64);
    let comm = name(p[1], COMM);
    let exe = name(p[2], PATH);
    let cgroup = name(p[3], NAME);
    let (fa, la, ma) = (name(p[4], NAME), name(p[5], NAME), name(p[6], PATH));
    let (fb, lb, mb) = (name(p[7], NAME), name(p[8], NAME), name(p[9], PATH));
    let wait = name(p[10], WAIT);
    let pod = parse_pod_dir(&name(p[11], 255));
    let shape: Vec<u8> = p[12].iter().copied().chain([0; 4]).collect();
    let sites = 1 + usize::from(shape[0] % 4);
    let depth = usize::from(shape[1]) % (MAX_FRAMES / sites + 1);
    let outcome = [Outcome::Leak, Outcome::Suspect, Outcome::Ok][usize::from(shape[2] % 3)];
    let kind = if shape[3] & 1 == 0 {
        WaiterKind::Thread
    } else {
        WaiterKind::Goroutine
    };

    let stacks: Vec<Vec<Frame>> = (0..sites)
        .map(|s| {
            (0..depth)
                .map(|i| {
                    let address = 0x40_1000 + (s * 1000 + i) as u64;
                    if i % 2 == 0 {
                        frame(&fa, &la, &ma, address)
                    } else {
                        frame(&fb, &lb, &mb, address)
                    }
                })
                .collect()
        })
        .collect();
    let sites = stacks
        .into_iter()
        .map(|stack| site(kind, &wait, outcome, 3, stack))
        .collect();
    let mut leaker = process(
        4242,
        if kind == WaiterKind::Goroutine {
            "go1.26"
        } else {
            "native"
        },
        sites,
    );
    let mut facts = ProcessFacts {
        comm: comm.clone(),
        exe: exe.clone(),
        ..(*leaker.facts).clone()
    };
    facts.cgroup.cgroup = cgroup.clone();
    if let Some((names, uid)) = pod {
        facts.cgroup.pod = Some(PodIdentity {
            namespace: names.namespace,
            name: names.name,
            uid,
            ..PodIdentity::default()
        });
    }
    leaker.facts = Arc::new(facts);
    let mut summary = window(vec![leaker]);
    summary.host = host;

    // The text report and top: nothing hazardous but the report's own newlines.
    let text = report::to_text(&summary, report::TextStyle { color: false });
    for line in text.lines() {
        assert!(
            !line.chars().any(is_hazard),
            "raw control in the text report: {line:?}"
        );
    }
    let stats = ScanStats {
        duration: Duration::from_millis(5),
        processes: 1,
        waiters: 3,
        go_errors: 0,
        ..ScanStats::default()
    };
    for (_, line) in top::render(&summary, &stats, 80, 24) {
        assert!(
            line.chars().count() <= 80 && !line.chars().any(is_hazard),
            "top line {line:?}"
        );
    }
    // JSON: names exactly as read.
    let json: serde_json::Value =
        serde_json::from_str(&report::to_json(&summary)).expect("JSON parses");
    assert_eq!(
        json["processes"][0]["comm"],
        comm.as_str(),
        "JSON changed the name"
    );
    // The exposition: one series per line, labels escaped and capped.
    let exporter = Exporter::new(Limits::default());
    exporter.observe_summary(&summary, 0.01);
    let metrics = String::from_utf8(exporter.render().to_vec()).expect("UTF-8 exposition");
    for line in metrics.lines() {
        let series = line.split(['{', ' ']).next().unwrap_or("");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                series
                    .strip_suffix(suffix)
                    .filter(|f| METRIC_NAMES.contains(f))
            })
            .unwrap_or(series);
        assert!(
            line.starts_with("# ") || METRIC_NAMES.contains(&family),
            "forged series: {line:?}"
        );
        assert!(!line.chars().any(is_hazard), "raw control in {line:?}");
        if let Some(at) = line.find("exe=\"") {
            // Capped, then escaped by the exposition (a backslash doubles).
            let value = line[at + 5..].split("\",").next().unwrap_or("");
            assert!(
                value.len() <= 2 * MAX_EXE_LABEL,
                "exe label of {} bytes",
                value.len()
            );
        }
    }
    // The profile decompresses; the flame graph is well-formed XML.
    let mut profile = Vec::new();
    flate2::read::GzDecoder::new(&pprof::to_pprof_gz(&summary)[..])
        .read_to_end(&mut profile)
        .expect("the profile is gzip");
    check_svg(&flamegraph::to_svg(&summary).expect("flame graph"));
    // A dump's name is one plain file name.
    let stem = dump_stem(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        4242,
        &comm,
    );
    assert!(
        stem.len() <= 255
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)),
        "{stem:?}"
    );
});
