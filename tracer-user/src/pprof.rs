//! The blocked waiters of a window as a pprof profile (gzipped `profile.proto`, the
//! format of Go's goroutine profile), for `go tool pprof` and every tool that reads it.
//!
//! One sample per site: the site's stack, its waiter count, and labels naming the
//! process (`pid`, `comm`), the `kind`, the `wait` reason, the `verdict` (`leak`,
//! `suspect` or `ok`) and the `site` label. Two sample types: `waiters` (every blocked
//! waiter) and `leaked` (the waiters of leaking sites only), the default when the window
//! has a leak, so `go tool pprof -top` puts the leak sites on top. The runtime and libc
//! frames every waiter shares (inner to the program's own frames) are named in
//! `drop_frames`, which pprof applies, so a site's own function is the leaf it shows;
//! the wait reason stays in the labels. A numeric label `stack_bytes` (unit bytes) says
//! what the site's stacks hold, and a comment per leaking process when its leak will
//! reach a limit (`go tool pprof -comments`).

use std::{
    collections::{BTreeSet, HashMap},
    io::Write,
    time::UNIX_EPOCH,
};

use flate2::{Compression, write::GzEncoder};
use prost::Message;

use crate::{
    model::Frame,
    sanitize,
    summary::{ProcessSummary, SiteSummary, WindowSummary},
};

/// The messages of profile.proto (github.com/google/pprof/proto/profile.proto) leakscope
/// writes; field numbers as there.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

pub use proto::Profile;

type LocationKey = (u32, u64, Vec<(u64, i64)>);

/// Builds a profile.proto message, interning strings, functions and locations.
#[derive(Default)]
struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, String), u64>,
    /// A location per (pid, address, inline chain): addresses mean different code in
    /// different processes.
    locations: HashMap<LocationKey, u64>,
    /// Names of the runtime/libc frames inner to the sites' own frames, as pprof
    /// simplifies them, for `drop_frames`.
    dropped: BTreeSet<String>,
}

impl Builder {
    fn new() -> Self {
        let mut b = Self::default();
        b.string(""); // string_table[0] must be "".
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    fn function(&mut self, frame: &Frame) -> u64 {
        let name = frame
            .function
            .clone()
            .unwrap_or_else(|| unnamed_function(frame));
        let file = frame.file.clone().unwrap_or_default();
        let key = (name, file);
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let function = proto::Function {
            id,
            name: self.string(&key.0),
            system_name: self.string(&key.0),
            filename: self.string(&key.1),
        };
        self.profile.function.push(function);
        self.functions.insert(key, id);
        id
    }

    /// One location for an inline chain: frames sharing one address, innermost first
    /// (pprof's order for inlined lines, too).
    fn location(&mut self, pid: u32, mapping_id: u64, chain: &[Frame]) -> u64 {
        let lines: Vec<proto::Line> = chain
            .iter()
            .map(|f| proto::Line {
                function_id: self.function(f),
                line: f.line.map_or(0, i64::from),
            })
            .collect();
        let address = chain[0].address;
        let key = (
            pid,
            address,
            lines.iter().map(|l| (l.function_id, l.line)).collect(),
        );
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(proto::Location {
            id,
            mapping_id,
            address,
            line: lines,
        });
        let mapping = &mut self.profile.mapping[mapping_id as usize - 1];
        mapping.memory_start = mapping.memory_start.min(address);
        mapping.memory_limit = mapping.memory_limit.max(address.saturating_add(1));
        self.locations.insert(key, id);
        id
    }

    fn str_label(&mut self, key: &str, value: &str) -> proto::Label {
        proto::Label {
            key: self.string(key),
            str: self.string(value),
            num: 0,
            num_unit: 0,
        }
    }

    /// One mapping per process, named after its executable and marked symbolized, so
    /// pprof neither looks for the binaries nor complains that it cannot.
    fn mapping(&mut self, process: &ProcessSummary) -> u64 {
        let id = self.profile.mapping.len() as u64 + 1;
        let mapping = proto::Mapping {
            id,
            memory_start: u64::MAX,
            memory_limit: 0,
            filename: self.string(&process.facts.exe),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        };
        self.profile.mapping.push(mapping);
        id
    }

    fn add_process(&mut self, process: &ProcessSummary) {
        if process.sites.is_empty() {
            return;
        }
        let mapping_id = self.mapping(process);
        for site in &process.sites {
            self.add_site(process, mapping_id, site);
        }
        let mapping = &mut self.profile.mapping[mapping_id as usize - 1];
        if mapping.memory_start > mapping.memory_limit {
            (mapping.memory_start, mapping.memory_limit) = (0, 0);
        }
    }

    fn add_site(&mut self, process: &ProcessSummary, mapping_id: u64, site: &SiteSummary) {
        let pid = process.key.pid;
        let location_id: Vec<u64> = inline_chains(&site.stack)
            .map(|chain| self.location(pid, mapping_id, chain))
            .collect();
        if let Some(origin) = site.origin {
            for frame in &site.stack[..origin] {
                if let Some(name) = &frame.function {
                    self.dropped.insert(simplified(name).to_string());
                }
            }
        }
        let verdict = site.outcome().name();
        let count = i64::from(site.count);
        let mut label = vec![
            proto::Label {
                key: self.string("pid"),
                str: 0,
                num: i64::from(pid),
                num_unit: 0,
            },
            self.str_label("comm", &process.facts.comm),
            self.str_label("kind", site.kind.name()),
            self.str_label("wait", &site.wait),
            self.str_label("verdict", verdict),
            self.str_label("site", &site.label),
        ];
        if let Some(creator) = site.created_by.as_ref().and_then(|f| f.function.as_deref()) {
            label.push(self.str_label("created_by", creator));
        }
        if site.runtime_leaked > 0 {
            label.push(proto::Label {
                key: self.string("runtime_leaked"),
                str: 0,
                num: i64::from(site.runtime_leaked),
                num_unit: 0,
            });
        }
        // As in Go's own goroutine profile, members with other labels are other samples:
        // one per label set the site reports, the rest (unlabelled, or rarer sets) one.
        // Each sample's `stack_bytes` is its members' share of the site's.
        let mut rest = count;
        for (set, members) in &site.label_sets {
            let members = i64::from(*members).min(rest);
            rest -= members;
            let mut label = label.clone();
            for (key, value) in &*set.labels {
                label.push(self.str_label(&go_label_key(key), value));
            }
            self.push_sample(&location_id, (members, count), site, label);
        }
        if rest > 0 || site.label_sets.is_empty() {
            self.push_sample(&location_id, (rest, count), site, label);
        }
    }

    /// One sample of `members` of the site's `of` waiters.
    fn push_sample(
        &mut self,
        location_id: &[u64],
        (members, of): (i64, i64),
        site: &SiteSummary,
        mut label: Vec<proto::Label>,
    ) {
        let stack = site.stack_bytes;
        if stack.stacks > 0 && of > 0 {
            let share = (stack.reserved as f64 * members as f64 / of as f64).round();
            label.push(proto::Label {
                key: self.string("stack_bytes"),
                str: 0,
                num: share as i64,
                num_unit: self.string("bytes"),
            });
        }
        let leaked = if site.is_leak() { members } else { 0 };
        self.profile.sample.push(proto::Sample {
            location_id: location_id.to_vec(),
            value: vec![members, leaked],
            label,
        });
    }
}

/// The sample labels leakscope sets itself; a program's pprof label of the same name is
/// written as `label:NAME`.
const OWN_LABELS: [&str; 9] = [
    "pid",
    "comm",
    "kind",
    "wait",
    "verdict",
    "site",
    "created_by",
    "runtime_leaked",
    "stack_bytes",
];

/// A program's pprof label key as a sample label key.
fn go_label_key(key: &str) -> std::borrow::Cow<'_, str> {
    if OWN_LABELS.contains(&key) {
        format!("label:{key}").into()
    } else {
        key.into()
    }
}

/// What pprof's `drop_frames` regexp is matched against: the name cut at its first '('
/// (pprof's simplifyFunc), except in "(anonymous namespace)" and "operator()".
fn simplified(name: &str) -> &str {
    let mut from = 0;
    while let Some(i) = name[from..].find('(').map(|i| i + from) {
        let rest = &name[i..];
        if rest.starts_with("(anonymous namespace)") {
            from = i + "(anonymous namespace)".len();
        } else if name[..i].ends_with("operator") && rest.starts_with("()") {
            from = i + 2;
        } else {
            return &name[..i];
        }
    }
    name
}

/// The name a frame without symbols is shown by: its address, and the binary it is in.
fn unnamed_function(frame: &Frame) -> String {
    match frame.module.as_deref().and_then(|m| m.rsplit('/').next()) {
        Some(module) => format!("{:#x} ({module})", frame.address),
        None => format!("{:#x}", frame.address),
    }
}

/// Consecutive frames at one address: one pc expanded into its inlined calls.
fn inline_chains(stack: &[Frame]) -> impl Iterator<Item = &[Frame]> {
    stack.chunk_by(|a, b| a.address == b.address)
}

/// Escapes a string for a Go (RE2) regexp.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The profile of a window's blocked waiters.
pub fn profile(summary: &WindowSummary) -> Profile {
    let mut b = Builder::new();
    let waiters = b.value_type("waiters", "count");
    let leaked = b.value_type("leaked", "count");
    b.profile.sample_type = vec![waiters.clone(), leaked.clone()];
    b.profile.period_type = Some(waiters);
    b.profile.period = 1;
    if summary.has_leak() {
        b.profile.default_sample_type = leaked.r#type;
    }
    for process in &summary.processes {
        b.add_process(process);
    }
    let drop: Vec<String> = b.dropped.iter().map(|n| regex_escape(n)).collect();
    b.profile.drop_frames = b.string(&drop.join("|"));
    let comment = format!(
        "leakscope: blocked waiters on {} over {:.0} s",
        summary.host, summary.duration_s
    );
    let mut comments = vec![comment];
    comments.extend(summary.processes.iter().filter_map(|p| {
        let first = p.exhaustion.as_ref()?.first()?;
        let comm = sanitize::log_text(&p.facts.comm);
        Some(format!("pid {} ({comm}): {first}", p.key.pid))
    }));
    b.profile.comment = comments.iter().map(|c| b.string(c)).collect();
    b.profile.time_nanos = summary
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    b.profile.duration_nanos = (summary.duration_s * 1e9) as i64;
    b.profile
}

/// The gzipped profile.proto bytes of a window, as `go tool pprof` reads them.
pub fn to_pprof_gz(summary: &WindowSummary) -> Vec<u8> {
    let bytes = profile(summary).encode_to_vec();
    let mut gz = GzEncoder::new(Vec::with_capacity(bytes.len() / 2), Compression::default());
    gz.write_all(&bytes).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::summary::testutil::native_window;

    fn decode(gz: &[u8]) -> Profile {
        let mut bytes = Vec::new();
        GzDecoder::new(gz).read_to_end(&mut bytes).unwrap();
        Profile::decode(bytes.as_slice()).unwrap()
    }

    fn label<'a>(p: &'a Profile, sample: &proto::Sample, key: &str) -> Option<&'a str> {
        sample
            .label
            .iter()
            .find(|l| p.string_table[l.key as usize] == key)
            .map(|l| p.string_table[l.str as usize].as_str())
    }

    fn leaf_function<'a>(p: &'a Profile, sample: &proto::Sample, depth: usize) -> &'a str {
        let loc = &p.location[sample.location_id[depth] as usize - 1];
        let f = &p.function[loc.line[0].function_id as usize - 1];
        &p.string_table[f.name as usize]
    }

    /// Check that a recorded native window becomes a gzipped profile.proto with one
    /// sample per site, the two sample types (leaked the default), labels naming the
    /// process and verdict, function names, files and lines, and drop_frames naming the
    /// libc frames inner to the sites' own frames.
    #[test]
    fn native_window_becomes_a_profile() {
        let window = native_window();
        let p = decode(&to_pprof_gz(&window));
        assert_eq!(p.string_table[0], "");
        let types: Vec<&str> = p
            .sample_type
            .iter()
            .map(|t| p.string_table[t.r#type as usize].as_str())
            .collect();
        assert_eq!(types, ["waiters", "leaked"]);
        assert_eq!(p.string_table[p.default_sample_type as usize], "leaked");
        assert_eq!(p.sample.len(), 3);
        let leak = p
            .sample
            .iter()
            .find(|s| label(&p, s, "verdict") == Some("leak"))
            .unwrap();
        assert_eq!(leak.value, [5, 5]);
        assert_eq!(label(&p, leak, "comm"), Some("p9"));
        assert_eq!(label(&p, leak, "kind"), Some("thread"));
        assert_eq!(label(&p, leak, "wait"), Some("futex"));
        let pid = leak
            .label
            .iter()
            .find(|l| p.string_table[l.key as usize] == "pid")
            .unwrap();
        assert_eq!(pid.num, 9);
        assert_eq!(leaf_function(&p, leak, 2), "leak_on_mutex");
        let stack_bytes = leak
            .label
            .iter()
            .find(|l| p.string_table[l.key as usize] == "stack_bytes")
            .unwrap();
        assert_eq!(stack_bytes.num, 5 * 256 * 1024);
        assert_eq!(p.string_table[stack_bytes.num_unit as usize], "bytes");
        let comments: Vec<&str> = p
            .comment
            .iter()
            .map(|&c| p.string_table[c as usize].as_str())
            .collect();
        assert_eq!(
            comments[1..],
            ["pid 9 (p9): will hit pids.max (600) in ~1.6 min at +120/min"]
        );
        let loc = &p.location[leak.location_id[2] as usize - 1];
        assert_eq!(loc.address, 0x401234);
        assert_eq!(loc.line[0].line, 12);
        let f = &p.function[loc.line[0].function_id as usize - 1];
        assert_eq!(p.string_table[f.filename as usize], "/src/leak.c");
        let ok = p
            .sample
            .iter()
            .filter(|s| label(&p, s, "verdict") == Some("ok"))
            .collect::<Vec<_>>();
        assert_eq!(ok.len(), 2);
        assert!(ok.iter().all(|s| s.value[1] == 0));
        assert_eq!(
            p.string_table[p.drop_frames as usize],
            "___pthread_mutex_lock|__futex_abstimed_wait_common"
        );
        assert!(p.time_nanos > 0 && p.duration_nanos == 15_000_000_000);
        assert_eq!(p.mapping.len(), 2, "one per process");
        let mapping = &p.mapping[(loc.mapping_id - 1) as usize];
        assert_eq!(p.string_table[mapping.filename as usize], "/bin/p9");
        assert!(mapping.has_functions && mapping.memory_start <= 0x401234);
        assert!(0x401234 < mapping.memory_limit);
    }

    /// Check that a recorded real run becomes one sample per site, the leakers' waiters
    /// counted as leaked and the pool's not, each leaker's own frame the leaf pprof
    /// shows once the libc frame is dropped.
    #[test]
    fn recorded_run_becomes_a_profile() {
        let window = crate::summary::testutil::recorded_native_window();
        let p = decode(&to_pprof_gz(&window));
        assert_eq!(p.sample.len(), 4);
        for s in &p.sample {
            let comm = label(&p, s, "comm").unwrap();
            let leaked = s.value[1];
            if comm == "idle_pool" {
                assert_eq!(leaked, 0);
            } else {
                assert!(leaked > 0 && leaked == s.value[0], "{comm}: {:?}", s.value);
                assert_eq!(label(&p, s, "verdict"), Some("leak"));
            }
            assert_eq!(leaf_function(&p, s, 1), format!("{comm}_site"));
        }
        assert_eq!(
            p.string_table[p.drop_frames as usize],
            "__futex_abstimed_wait_common"
        );
    }

    /// Check that Go's inlined frames (one pc, several functions) share one location
    /// with the innermost line first, and that drop_frames holds names as pprof
    /// simplifies them, escaped.
    #[test]
    fn inline_chains_share_a_location() {
        use crate::{
            model::WaiterKind,
            summary::testutil::{frame, process, site, window},
            verdict::Outcome,
        };
        let stack = vec![
            frame("runtime.gopark", None, 0x10),
            frame("sync.(*WaitGroup).Wait", Some(("/go/sync/wg.go", 9)), 0x20),
            frame("main.inner", Some(("/m.go", 3)), 0x30),
            frame("main.outer", Some(("/m.go", 8)), 0x30),
        ];
        let w = window(vec![process(
            4,
            "go1.24",
            vec![site(
                WaiterKind::Goroutine,
                "sync.WaitGroup.Wait",
                Outcome::Leak,
                2,
                stack,
            )],
        )]);
        let p = profile(&w);
        assert_eq!(p.sample[0].location_id.len(), 3);
        let inlined = &p.location[p.sample[0].location_id[2] as usize - 1];
        assert_eq!(inlined.line.len(), 2);
        assert_eq!(leaf_function(&p, &p.sample[0], 2), "main.inner");
        assert_eq!(
            p.string_table[p.drop_frames as usize],
            r"runtime\.gopark|sync\."
        );
        assert_eq!(
            simplified("ns::(anonymous namespace)::f(int)"),
            "ns::(anonymous namespace)::f"
        );
        assert_eq!(simplified("S::operator()(int)"), "S::operator()");
    }

    /// Check that a goroutine site's members split into one sample per label set it
    /// reports (their labels as sample labels, a program's `site` label renamed so it
    /// cannot pass for leakscope's) and one for the rest, the counts adding up to the
    /// site's, and that the runtime-proven members ride on each as a number.
    #[test]
    fn label_sets_become_samples_with_their_labels() {
        use crate::{
            model::{LabelSet, WaiterKind},
            summary::testutil::{frame, process, site, window},
            verdict::Outcome,
        };
        let set = |pairs: &[(&str, &str)]| {
            std::sync::Arc::new(LabelSet {
                labels: pairs.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
                truncated: false,
            })
        };
        let mut s = site(
            WaiterKind::Goroutine,
            "chan receive",
            Outcome::Leak,
            10,
            vec![frame("main.labelledReply", None, 0x10)],
        );
        s.runtime_leaked = 6;
        s.label_sets = vec![
            (set(&[("route", "/checkout"), ("site", "eu")]), 6),
            (set(&[("route", "/cart")]), 3),
        ];
        let p = profile(&window(vec![process(4, "go1.27", vec![s])]));
        let samples: Vec<(Option<&str>, Option<&str>, &[i64])> = p
            .sample
            .iter()
            .map(|s| {
                (
                    label(&p, s, "route"),
                    label(&p, s, "label:site"),
                    &s.value[..],
                )
            })
            .collect();
        assert_eq!(
            samples,
            [
                (Some("/checkout"), Some("eu"), &[6, 6][..]),
                (Some("/cart"), None, &[3, 3][..]),
                (None, None, &[1, 1][..]),
            ]
        );
        for sample in &p.sample {
            assert_eq!(
                label(&p, sample, "site"),
                Some("goroutine:chan receive:main.labelledReply")
            );
            let proven = sample
                .label
                .iter()
                .find(|l| p.string_table[l.key as usize] == "runtime_leaked");
            assert_eq!(proven.map(|l| l.num), Some(6));
        }
    }
}
