//! One typed summary of a watch window: every process with blocked waiters, its sites
//! judged by the verdict, their symbolized stacks, creators, liveness and cgroup, all as
//! the scan knew them. Every sink (the text and JSON report, the metrics, the dumps, the
//! pprof profile, the flame graph, `top`) only renders it; none reads /proc again or
//! re-parses a string the scan produced.
//!
//! Built by [`summarize`] from the window's [`History`], what the census knows about
//! names ([`SiteCatalog`], implemented by [`CensusTaker`]) and a [`VerdictPolicy`]; pure
//! and testable without root.

use std::{
    collections::{BTreeSet, HashMap},
    hash::{Hash, Hasher},
    sync::Arc,
    time::SystemTime,
};

use crate::{
    budget::degraded::Degradations,
    census::CensusTaker,
    forecast::{Exhaustion, ForecastInput, ForecastPolicy, exhaustion},
    history::{History, ProcessHistory, SiteHistory},
    model::{Frame, LabelSet, ProcessFacts, ProcessKey, SiteKey, WaiterKind, bare_frames},
    resources::StackBytes,
    sanitize,
    sources::error::ReadError,
    sources::threads::{
        FdKind, FutexWait, ThreadSourceKind, WaitDetail, prevailing_fd_kind,
        syscalls::is_libc_syscall_wrapper,
    },
    verdict::{
        Outcome, SiteJudgement, SiteObservation, VerdictPolicy, judge, judge_members, slope,
    },
};

/// The longest site label, in bytes; longer labels are cut and end in "~".
pub const MAX_SITE_LABEL: usize = 96;
/// Stack frames named in a site label.
const SITE_LABEL_FRAMES: usize = 2;
/// Label sets a site reports (its members' most common).
pub const MAX_SITE_LABEL_SETS: usize = 5;

/// What a watch window found.
#[derive(Clone, Debug)]
pub struct WindowSummary {
    pub host: String,
    /// Wall-clock time of the window's first scan.
    pub started_at: SystemTime,
    pub duration_s: f64,
    /// Where the thread waiters came from: the BPF task iterator or /proc.
    pub thread_source: ThreadSourceKind,
    /// Leaking processes first, then by blocked waiters, then by pid.
    pub processes: Vec<ProcessSummary>,
}

/// One process of the window.
#[derive(Clone, Debug)]
pub struct ProcessSummary {
    pub key: ProcessKey,
    /// Name, executable, runtime, cgroup, and why it could not be read in full.
    pub facts: Arc<ProcessFacts>,
    /// Alive at the newest scan (the window remembers processes that exited in it).
    pub alive: bool,
    /// Seconds from the process's start to the last scan that saw it.
    pub uptime_s: f64,
    /// The most severe of its sites' outcomes: a leak when one site leaks, a suspect
    /// when none leaks but one may.
    pub outcome: Outcome,
    /// Blocked waiters at the last scan that saw the process.
    pub waiters: u32,
    /// Least-squares growth of all its sites together.
    pub growth_per_min: f64,
    /// Leaking sites first, then by count.
    pub sites: Vec<SiteSummary>,
    /// Go processes: seconds from the latest read of its goroutines to the window's last
    /// scan (a huge process is read less often than every scan).
    pub goroutines_read_age_s: Option<f64>,
    /// Go processes: why its goroutines could not be read at the latest scan (its
    /// verdict is then "ok", never a leak; the sinks say why).
    pub unreadable: Option<ReadError>,
    /// The stack memory all its blocked waiters hold.
    pub stack_bytes: StackBytes,
    /// Leaking processes still running: when each limit their leak runs into is
    /// reached, the first first; `None` for every other process.
    pub exhaustion: Option<Exhaustion>,
    /// What a memory or CPU budget cut from its analysis (the sinks say what).
    pub degraded: Degradations,
}

/// One site (where waiters block) of one process.
#[derive(Clone, Debug)]
pub struct SiteSummary {
    pub kind: WaiterKind,
    /// A thread's syscall ("futex", "read", "epoll_wait"...), or Go's wait reason.
    pub wait: Arc<str>,
    /// Waiters at the last scan.
    pub count: u32,
    pub judgement: SiteJudgement,
    /// Innermost first; shared with the census's cache.
    pub stack: Arc<[Frame]>,
    /// Index in `stack` of the innermost frame of the program's own code (the libc,
    /// pthread, Rust std and Go runtime frames every waiter shares are not); `None`
    /// when the stack has nothing but those.
    pub origin: Option<usize>,
    /// Short, stable, unique within the process: `kind:wait:f1<f2`, f1 the origin and
    /// f2 its caller. At most [`MAX_SITE_LABEL`] bytes.
    pub label: String,
    /// The futex operations seen at the site (threads only).
    pub ops: Vec<FutexWait>,
    /// Threads in a syscall on one fd: the kind of file most members wait on.
    pub fd_kind: Option<FdKind>,
    /// Goroutines only: the `go` statement that created most of the members.
    pub created_by: Option<Frame>,
    /// Goroutines only: the pprof label sets most members have, with how many have
    /// each, most common first (at most [`MAX_SITE_LABEL_SETS`]).
    pub label_sets: Vec<(Arc<LabelSet>, u32)>,
    /// Goroutines only: members the Go runtime itself proved leaked (`_Gleaked`, set by
    /// a GC cycle run for the `goroutineleak` profile): evidence beside the verdict,
    /// which stays about growth.
    pub runtime_leaked: u32,
    /// The stack memory its waiters hold at the last scan.
    pub stack_bytes: StackBytes,
}

/// One recorded site: what it was and what the verdict saw (verdict test data, the
/// format of `diagnose --record-observations` and `tests/data/`).
#[derive(serde::Serialize)]
pub struct RecordedSite {
    pub pid: u32,
    pub comm: String,
    /// Function names of the site's stack, innermost first.
    pub stack: Vec<Option<String>>,
    pub observation: SiteObservation,
}

/// What the census knows beyond the history: symbolized stacks and creators, and which
/// processes are alive.
pub trait SiteCatalog {
    fn frames(&self, process: &ProcessKey, site: &SiteKey) -> Option<Arc<[Frame]>>;
    fn creator(&self, process: &ProcessKey, gopc: u64) -> Option<Frame>;
    fn is_live(&self, process: &ProcessKey) -> bool;
}

impl SiteCatalog for CensusTaker {
    fn frames(&self, process: &ProcessKey, site: &SiteKey) -> Option<Arc<[Frame]>> {
        CensusTaker::frames(self, process, site)
    }
    fn creator(&self, process: &ProcessKey, gopc: u64) -> Option<Frame> {
        CensusTaker::creator(self, process, gopc).cloned()
    }
    fn is_live(&self, process: &ProcessKey) -> bool {
        CensusTaker::is_live(self, process)
    }
}

/// Goroutine sites' judgements, by the read they were made from: a site is judged again
/// only once its process was read again, not at every summary (a site of a million
/// goroutines costs a tenth of a second to observe and judge, and the daemon summarizes
/// after every scan while a huge process is read far less often).
#[derive(Default)]
pub struct JudgementCache {
    entries: HashMap<(ProcessKey, SiteKey), CachedJudgement>,
}

struct CachedJudgement {
    /// The scan of the read judged.
    read: usize,
    judgement: SiteJudgement,
    count: u32,
}

impl JudgementCache {
    /// Judges one site, or takes its judgement from the cache when its goroutines were
    /// not read since. Returns the judgement, the current count and, when judged afresh,
    /// the observation (with its members only when `record`: a site may hold a million).
    fn judge(
        &mut self,
        history: &History,
        (key, process): (&ProcessKey, &ProcessHistory),
        (site_key, site): (&SiteKey, &SiteHistory),
        (policy, record): (&VerdictPolicy, bool),
    ) -> (SiteJudgement, u32, Option<SiteObservation>) {
        let read = match site_key.kind {
            WaiterKind::Goroutine => process.goroutine_reads.back().copied(),
            WaiterKind::Thread => None,
        };
        let cache_key = (*key, site_key.clone());
        if let Some(read) = read
            && let Some(cached) = self.entries.get(&cache_key)
            && cached.read == read
        {
            return (cached.judgement.clone(), cached.count, None);
        }
        let (obs, judgement) = if record {
            let obs = history.observe(key, process, site_key, site);
            let judgement = judge(&obs, policy);
            (obs, judgement)
        } else {
            let (obs, members) = history.view(key, process, site_key, site);
            let judgement = judge_members(&obs, &members, policy);
            (obs, judgement)
        };
        let count = obs.counts.last().copied().unwrap_or(0);
        if let Some(read) = read {
            let cached = CachedJudgement {
                read,
                judgement: judgement.clone(),
                count,
            };
            self.entries.insert(cache_key, cached);
        }
        (judgement, count, Some(obs))
    }

    /// Forgets the sites the window no longer holds.
    fn retain(&mut self, history: &History) {
        self.entries
            .retain(|(process, site), _| history.has_site(process, site));
    }
}

/// Where and when the window was watched.
#[derive(Clone, Debug)]
pub struct WindowClock {
    pub host: String,
    /// Wall-clock time of the window's first scan.
    pub started_at: SystemTime,
    /// Where the thread waiters came from.
    pub thread_source: ThreadSourceKind,
}

/// Judges every site of the window and summarizes it; when `record`, also returns what
/// each site's verdict saw, for the sites judged afresh (`cache` keeps the judgements of goroutine
/// sites whose process was not read since the previous summary).
pub fn summarize(
    history: &History,
    catalog: &impl SiteCatalog,
    policy: &VerdictPolicy,
    clock: WindowClock,
    cache: &mut JudgementCache,
    record: bool,
) -> (WindowSummary, Vec<RecordedSite>) {
    cache.retain(history);
    let mut processes = Vec::new();
    let mut recorded = Vec::new();
    for (key, process) in &history.processes {
        let mut sites = Vec::new();
        for (site_key, site) in &process.sites {
            let (judgement, count, obs) =
                cache.judge(history, (key, process), (site_key, site), (policy, record));
            if count == 0 && !judgement.is_leak() {
                continue;
            }
            let stack = catalog
                .frames(key, site_key)
                .unwrap_or_else(|| bare_frames(&site_key.stack).into());
            if let Some(observation) = obs.filter(|_| record) {
                recorded.push(RecordedSite {
                    pid: key.pid,
                    comm: process.facts.comm.clone(),
                    stack: stack.iter().map(|f| f.function.clone()).collect(),
                    observation,
                });
            }
            let created_by = site
                .most_common_creator()
                .and_then(|gopc| catalog.creator(key, gopc));
            sites.push(SiteSummary::new(
                site_key, count, judgement, stack, created_by, site,
            ));
        }
        if sites.is_empty() && process.unreadable.is_none() {
            continue;
        }
        unique_labels(&mut sites);
        processes.push(summarize_process(history, catalog, key, process, sites));
    }
    let mut summary = WindowSummary {
        host: clock.host,
        started_at: clock.started_at,
        duration_s: history.span_s(),
        thread_source: clock.thread_source,
        processes,
    };
    summary.sort();
    (summary, recorded)
}

fn summarize_process(
    history: &History,
    catalog: &impl SiteCatalog,
    key: &ProcessKey,
    process: &ProcessHistory,
    sites: Vec<SiteSummary>,
) -> ProcessSummary {
    let outcome = process_outcome(&sites);
    let alive = catalog.is_live(key);
    let exhaustion = (outcome.is_leak() && alive).then(|| {
        let limits = process.limits.clone().unwrap_or_default();
        let input = ForecastInput {
            pid: key.pid,
            limits: &limits,
            host: &history.host,
            course: &history.usage_course(process),
        };
        exhaustion(&input, &ForecastPolicy::default())
    });
    let scans = process.first_scan.max(*history.window().start())..=process.last_scan;
    let t0 = history.time_of(*history.window().start());
    let times: Vec<f64> = scans
        .clone()
        .map(|i| (history.time_of(i) - t0) as f64 / 1e9)
        .collect();
    let totals: Vec<f64> = scans
        .map(|i| {
            process
                .sites
                .iter()
                .map(|(k, s)| s.count_at(k.kind, i) as f64)
                .sum()
        })
        .collect();
    ProcessSummary {
        key: *key,
        facts: process.facts.clone(),
        alive,
        uptime_s: history
            .time_of(process.last_scan)
            .saturating_sub(key.start_mono_ns) as f64
            / 1e9,
        outcome,
        waiters: sites.iter().map(|s| s.count).sum(),
        growth_per_min: slope(&times, &totals) * 60.0,
        stack_bytes: StackBytes::sum(sites.iter().map(|s| s.stack_bytes)),
        sites,
        goroutines_read_age_s: history.goroutine_read_age_s(process),
        unreadable: process.unreadable.clone(),
        exhaustion,
        degraded: process.degraded.clone(),
    }
}

impl SiteSummary {
    fn new(
        key: &SiteKey,
        count: u32,
        judgement: SiteJudgement,
        stack: Arc<[Frame]>,
        created_by: Option<Frame>,
        history: &SiteHistory,
    ) -> Self {
        let ops: BTreeSet<FutexWait> = history
            .members
            .values()
            .filter_map(|m| match m.detail {
                WaitDetail::Futex { op, .. } => Some(op),
                WaitDetail::Syscall { .. } => None,
            })
            .collect();
        let fd_kind = prevailing_fd_kind(history.members.values().map(|m| &m.detail));
        let origin = origin_frame(key.kind, &stack);
        // A site with no waiter left holds nothing.
        let stack_bytes = if count > 0 {
            history.stack_bytes
        } else {
            StackBytes::default()
        };
        Self {
            kind: key.kind,
            label: site_label(key.kind, &key.wait, &stack, origin),
            wait: key.wait.clone(),
            count,
            judgement,
            stack,
            origin,
            ops: ops.into_iter().collect(),
            fd_kind,
            created_by,
            label_sets: history.most_common_labels(MAX_SITE_LABEL_SETS),
            runtime_leaked: history.runtime_leaked,
            stack_bytes,
        }
    }

    pub fn is_leak(&self) -> bool {
        self.judgement.is_leak()
    }

    pub fn outcome(&self) -> Outcome {
        self.judgement.outcome()
    }

    /// The frame the site is named after: its origin, else the innermost frame.
    pub fn origin_frame(&self) -> Option<&Frame> {
        self.stack.get(self.origin.unwrap_or(0))
    }
}

/// A process's outcome: the most severe of its sites'.
fn process_outcome(sites: &[SiteSummary]) -> Outcome {
    sites
        .iter()
        .map(SiteSummary::outcome)
        .max()
        .unwrap_or(Outcome::Ok)
}

impl ProcessSummary {
    pub fn is_leak(&self) -> bool {
        self.outcome.is_leak()
    }

    pub fn is_suspect(&self) -> bool {
        self.outcome.is_suspect()
    }

    /// The longest any current waiter has been blocked, in seconds.
    pub fn oldest_wait_s(&self) -> f64 {
        self.sites
            .iter()
            .map(|s| s.judgement.oldest_wait_s)
            .fold(0.0, f64::max)
    }
}

/// Leaks first, then larger populations.
fn leak_rank(leak: bool) -> u8 {
    u8::from(!leak)
}

impl WindowSummary {
    /// Whether any process leaks: decides `diagnose`'s exit status.
    pub fn has_leak(&self) -> bool {
        self.processes.iter().any(ProcessSummary::is_leak)
    }

    /// Puts leaks first, then larger populations; sites likewise.
    pub fn sort(&mut self) {
        for p in &mut self.processes {
            p.sites.sort_by(|a, b| {
                leak_rank(a.is_leak())
                    .cmp(&leak_rank(b.is_leak()))
                    .then(b.count.cmp(&a.count))
                    .then_with(|| a.label.cmp(&b.label))
            });
        }
        self.processes.sort_by(|a, b| {
            leak_rank(a.is_leak())
                .cmp(&leak_rank(b.is_leak()))
                .then(b.waiters.cmp(&a.waiters))
                .then(a.key.cmp(&b.key))
        });
    }

    /// The same window with only the processes `keep` accepts.
    pub fn only(&self, keep: impl Fn(&ProcessSummary) -> bool) -> WindowSummary {
        WindowSummary {
            host: self.host.clone(),
            started_at: self.started_at,
            duration_s: self.duration_s,
            thread_source: self.thread_source,
            processes: self.processes.iter().filter(|p| keep(p)).cloned().collect(),
        }
    }
}

/// Whether a frame belongs to the machinery every waiter goes through (libc's futex
/// and pthread layers and syscall wrappers, Rust's std sync, the Go runtime), not to
/// the program's own code.
fn is_runtime_function(kind: WaiterKind, function: &str) -> bool {
    const GO: &[&str] = &["runtime.", "internal/", "sync.", "sync/"];
    const NATIVE: &[&str] = &[
        "_",
        "pthread_",
        "futex",
        "lll_",
        "sem_",
        "syscall",
        "start_thread",
        "clone",
        "std::sys::",
        "std::sync::",
        "std::thread::",
        "std::panicking::",
        "std::rt::",
        "core::",
        "alloc::",
        "parking_lot",
        "<std::",
        "<core::",
        "<alloc::",
    ];
    let prefixes = match kind {
        WaiterKind::Goroutine => GO,
        WaiterKind::Thread => NATIVE,
    };
    prefixes.iter().any(|p| function.starts_with(p))
        || (kind == WaiterKind::Thread && is_libc_syscall_wrapper(function))
}

/// The innermost named frame of the program's own code.
fn origin_frame(kind: WaiterKind, stack: &[Frame]) -> Option<usize> {
    stack.iter().position(|f| {
        f.function
            .as_deref()
            .is_some_and(|name| !is_runtime_function(kind, name))
    })
}

/// A function name as short as it stays recognizable: Rust's hash suffix and a Go
/// package's import path dropped.
fn short_function(kind: WaiterKind, function: &str) -> &str {
    let mut name = function;
    // Rust legacy mangling leaves "::h<16 hex>".
    if let Some(i) = name.rfind("::h") {
        let hash = &name[i + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            name = &name[..i];
        }
    }
    if kind == WaiterKind::Goroutine
        && let Some(i) = name.rfind('/')
    {
        name = &name[i + 1..];
    }
    name
}

/// `kind:wait:f1<f2` from the origin and its caller; from the runtime frames when the
/// stack has nothing else, from the innermost address when no frame has a name.
fn site_label(kind: WaiterKind, wait: &str, stack: &[Frame], origin: Option<usize>) -> String {
    let named = |from: usize| {
        stack[from.min(stack.len())..]
            .iter()
            .filter_map(|f| f.function.as_deref())
            .filter(move |f| origin.is_none() || !is_runtime_function(kind, f))
    };
    let chosen: Vec<String> = named(origin.unwrap_or(0))
        .take(SITE_LABEL_FRAMES)
        .map(|f| sanitize::log_text(short_function(kind, f)).into_owned())
        .collect();
    let body = if chosen.is_empty() {
        stack
            .first()
            .map_or_else(|| "?".to_string(), unnamed_frame_label)
    } else {
        chosen.join("<")
    };
    let wait = sanitize::log_text(wait);
    truncate_label(format!("{}:{wait}:{body}", kind.name()), MAX_SITE_LABEL)
}

/// A frame without a name, in a label (which metrics show to anyone who can scrape):
/// its module's file name and a hash of its address keyed with a secret drawn at
/// start, `libfoo.so@3fa91c`, never the address itself, which would tell where a
/// (root) process's code is mapped and so undo its ASLR. Stable while the daemon runs.
fn unnamed_frame_label(frame: &Frame) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let hash = KEY.get_or_init(Default::default).hash_one(frame.address) & 0xff_ffff;
    let module = frame
        .module
        .as_deref()
        .and_then(|m| m.rsplit('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("?");
    format!("{}@{hash:06x}", sanitize::capped(module, 32))
}

fn truncate_label(mut label: String, max: usize) -> String {
    if label.len() > max {
        let mut cut = max - 1;
        while !label.is_char_boundary(cut) {
            cut -= 1;
        }
        label.truncate(cut);
        label.push('~');
    }
    label
}

/// Sites of one process sharing a label get a suffix naming their whole stack, so no
/// two sites ever share a series or a line: `label#1a2b3c`. The suffix hashes function
/// names, files and lines (not addresses), so it stays the same across restarts.
fn unique_labels(sites: &mut [SiteSummary]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in sites.iter() {
        *seen.entry(s.label.clone()).or_default() += 1;
    }
    for s in sites.iter_mut() {
        if seen[&s.label] < 2 {
            continue;
        }
        let suffix = format!("#{:06x}", stack_digest(&s.wait, &s.stack) & 0xff_ffff);
        let base = truncate_label(s.label.clone(), MAX_SITE_LABEL - suffix.len());
        s.label = base + &suffix;
    }
}

fn stack_digest(wait: &str, stack: &[Frame]) -> u64 {
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    wait.hash(&mut h);
    for f in stack {
        (&f.function, &f.file, f.line).hash(&mut h);
    }
    h.finish()
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod testutil {
    //! Windows built by hand, for the tests of the sinks (and the fuzz target that
    //! renders hostile names through every sink).

    use super::*;
    use crate::{
        host::cgroup::CgroupLabels,
        model::{GoRelease, ProcessFacts, Runtime},
        verdict::{CountSpan, Rule},
    };

    pub fn frame(function: &str, file: Option<(&str, u32)>, address: u64) -> Frame {
        Frame {
            function: Some(function.into()),
            file: file.map(|(f, _)| f.into()),
            line: file.map(|(_, l)| l),
            address,
            module: None,
        }
    }

    /// A rule that concludes `outcome`, with made-up evidence.
    pub fn rule(outcome: Outcome, count: u32) -> Rule {
        let counts = CountSpan {
            first: 0,
            last: count,
        };
        match outcome {
            Outcome::Leak => Rule::StayedAndGrowing {
                stayed: count,
                departures: 0,
                counts,
                growth_per_min: 12.345,
            },
            Outcome::Suspect => Rule::FewStayed {
                stayed: count,
                window_s: 15.0,
            },
            Outcome::Ok => Rule::NoGrowth { counts },
        }
    }

    pub fn judgement(outcome: Outcome, count: u32) -> SiteJudgement {
        SiteJudgement {
            rule: rule(outcome, count),
            age_spread_s: None,
            growth_per_min: if outcome == Outcome::Leak {
                12.345
            } else {
                0.0
            },
            arrivals: count,
            stayed: count,
            departures: 0,
            oldest_wait_s: 3.0,
            oldest_wait_source: None,
        }
    }

    pub fn site(
        kind: WaiterKind,
        wait: &str,
        outcome: Outcome,
        count: u32,
        stack: Vec<Frame>,
    ) -> SiteSummary {
        let origin = origin_frame(kind, &stack);
        SiteSummary {
            kind,
            label: site_label(kind, wait, &stack, origin),
            wait: wait.into(),
            count,
            judgement: judgement(outcome, count),
            stack: stack.into(),
            origin,
            ops: Vec::new(),
            fd_kind: None,
            created_by: None,
            label_sets: Vec::new(),
            runtime_leaked: 0,
            stack_bytes: match kind {
                WaiterKind::Thread => StackBytes::sum(
                    (0..count).map(|_| StackBytes::thread(256 << 10, Some(16 << 10))),
                ),
                WaiterKind::Goroutine => StackBytes::goroutines(count, u64::from(count) * 8192),
            },
        }
    }

    /// A leaking process's forecast: pids.max of its cgroup reached in 95 s.
    pub fn exhaustion_in_95s() -> Exhaustion {
        use crate::forecast::{Forecast, LimitKind, NoForecast, Resource};
        Exhaustion {
            forecasts: vec![
                Forecast {
                    limit: LimitKind::CgroupPids,
                    source: "/sys/fs/cgroup/pids/leaky".into(),
                    value: Some(600),
                    used: Some(410),
                    rate_per_s: Some(2.0),
                    eta_s: Ok(95.0),
                },
                Forecast {
                    limit: LimitKind::HostMemory,
                    source: "/proc/meminfo".into(),
                    value: Some(24 << 30),
                    used: Some(8 << 30),
                    rate_per_s: None,
                    eta_s: Err(NoForecast::NotGrowing(Resource::Memory)),
                },
            ],
        }
    }

    pub fn process(pid: u32, runtime: &str, mut sites: Vec<SiteSummary>) -> ProcessSummary {
        unique_labels(&mut sites);
        let outcome = process_outcome(&sites);
        ProcessSummary {
            key: ProcessKey {
                pid,
                start_mono_ns: 1,
                exec_id: 1,
            },
            facts: Arc::new(ProcessFacts {
                comm: format!("p{pid}"),
                exe: format!("/bin/p{pid}"),
                runtime: match runtime.strip_prefix("go1.") {
                    Some(minor) => Runtime::Go(GoRelease::Known {
                        major: 1,
                        minor: minor.parse().expect("a Go minor version"),
                    }),
                    None => Runtime::Native,
                },
                cgroup: CgroupLabels {
                    cgroup: format!("unit{pid}.service"),
                    ..CgroupLabels::default()
                },
            }),
            goroutines_read_age_s: None,
            unreadable: None,
            degraded: Default::default(),
            alive: true,
            uptime_s: 3725.0,
            outcome,
            waiters: sites.iter().map(|s| s.count).sum(),
            growth_per_min: 1.0,
            stack_bytes: StackBytes::sum(sites.iter().map(|s| s.stack_bytes)),
            sites,
            exhaustion: outcome.is_leak().then(exhaustion_in_95s),
        }
    }

    pub fn window(processes: Vec<ProcessSummary>) -> WindowSummary {
        let mut w = WindowSummary {
            host: "h".into(),
            started_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_392_000),
            duration_s: 15.0,
            thread_source: ThreadSourceKind::Bpf,
            processes,
        };
        w.sort();
        w
    }

    /// A recorded real run (`tests/data/native-leaks-and-pool-10s.json`: mutex, condvar
    /// and Rust mpsc leakers beside a 16-worker pool, each site with what the verdict
    /// saw and a function of its stack), judged again and summarized.
    pub fn recorded_native_window() -> WindowSummary {
        #[derive(serde::Deserialize)]
        struct Recorded {
            pid: u32,
            comm: String,
            function: String,
            observation: SiteObservation,
        }
        let recorded: Vec<Recorded> =
            serde_json::from_str(include_str!("../tests/data/native-leaks-and-pool-10s.json"))
                .expect("recorded run parses");
        let processes = recorded
            .into_iter()
            .map(|r| {
                let judgement = judge(&r.observation, &VerdictPolicy::default());
                let count = r.observation.counts.last().copied().unwrap_or(0);
                let stack = vec![
                    frame("__futex_abstimed_wait_common", None, 0x7f00_0000_1000),
                    frame(&format!("{}_site", r.comm), None, 0x40_1000),
                    frame(&r.function, None, 0x7f00_0000_2000),
                ];
                let mut s = site(
                    WaiterKind::Thread,
                    "futex",
                    judgement.outcome(),
                    count,
                    stack,
                );
                s.judgement = judgement;
                let mut p = process(r.pid, "native", vec![s]);
                Arc::make_mut(&mut p.facts).comm = r.comm;
                p
            })
            .collect();
        window(processes)
    }

    /// A native leaker (pid 9: a leaking mutex site and a big healthy pool) and a healthy
    /// process (pid 7).
    pub fn native_window() -> WindowSummary {
        let leak_stack = vec![
            frame("__futex_abstimed_wait_common", None, 0x7f00_0000_1000),
            frame("___pthread_mutex_lock", None, 0x7f00_0000_2000),
            frame("leak_on_mutex", Some(("/src/leak.c", 12)), 0x401234),
            frame("leaked_thread", Some(("/src/leak.c", 30)), 0x401300),
            frame("start_thread", None, 0x7f00_0000_3000),
        ];
        let pool_stack = vec![
            frame("__futex_abstimed_wait_common", None, 0x7f00_0000_1000),
            frame("pool_worker", Some(("/src/pool.c", 7)), 0x401500),
        ];
        window(vec![
            process(
                7,
                "native",
                vec![site(
                    WaiterKind::Thread,
                    "futex",
                    Outcome::Ok,
                    50,
                    pool_stack.clone(),
                )],
            ),
            process(
                9,
                "native",
                vec![
                    site(WaiterKind::Thread, "futex", Outcome::Ok, 80, pool_stack),
                    site(WaiterKind::Thread, "futex", Outcome::Leak, 5, leak_stack),
                ],
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::{testutil::*, *};
    use crate::{
        census::{Census, GoroutineChanges, ProcessCensus, SiteCensus, SiteMembers},
        host::cgroup::CgroupLabels,
        model::{GoRelease, GoroutineMember, Runtime},
    };

    fn fns(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| frame(n, None, 0x1000 + i as u64))
            .collect()
    }

    /// Check that a thread site's label skips libc's futex and pthread frames and names
    /// the program's own innermost function and its caller, which is its origin.
    #[test]
    fn thread_site_is_named_after_the_programs_own_frames() {
        let s = site(
            WaiterKind::Thread,
            "futex",
            Outcome::Leak,
            3,
            fns(&[
                "__futex_abstimed_wait_common",
                "__lll_lock_wait",
                "___pthread_mutex_lock",
                "leak_on_mutex",
                "leaked_thread",
                "start_thread",
                "clone3",
            ]),
        );
        assert_eq!(s.label, "thread:futex:leak_on_mutex<leaked_thread");
        assert_eq!(s.origin, Some(3));
        assert_eq!(
            s.origin_frame().unwrap().function.as_deref(),
            Some("leak_on_mutex")
        );
    }

    /// Check that a thread site in another syscall is named after the program's frames
    /// too: the C library's wrapper of the call (`accept4`, `epoll_wait`) is skipped like
    /// its `__libc_*` aliases.
    #[test]
    fn syscall_site_skips_the_libc_wrapper() {
        let accept = site(
            WaiterKind::Thread,
            "accept4",
            Outcome::Ok,
            1,
            fns(&["accept4", "conn_accept", "acceptor", "start_thread"]),
        );
        assert_eq!(accept.label, "thread:accept4:conn_accept<acceptor");
        let read = site(
            WaiterKind::Thread,
            "read",
            Outcome::Leak,
            9,
            fns(&["__GI___libc_read", "read_reply", "handler"]),
        );
        assert_eq!(read.label, "thread:read:read_reply<handler");
    }

    /// Check that goroutine labels skip runtime/sync frames, drop import paths, and that
    /// Rust hash suffixes and std frames are dropped for threads.
    #[test]
    fn go_and_rust_names_are_shortened() {
        let g = site(
            WaiterKind::Goroutine,
            "chan receive",
            Outcome::Ok,
            1,
            fns(&[
                "runtime.gopark",
                "runtime.chanrecv1",
                "example.com/svc/internal/worker.(*Pool).wait",
                "main.main.func1",
            ]),
        );
        assert_eq!(
            g.label,
            "goroutine:chan receive:worker.(*Pool).wait<main.main.func1"
        );
        let r = site(
            WaiterKind::Thread,
            "futex",
            Outcome::Ok,
            1,
            fns(&[
                "std::sys::pal::unix::futex::futex_wait",
                "std::sync::mpmc::list::Channel<T>::recv",
                "mpsc_leak::wait_for_message::h0123456789abcdef",
            ]),
        );
        assert_eq!(r.label, "thread:futex:mpsc_leak::wait_for_message");
    }

    /// Check that a stack of only runtime frames falls back to them (no origin), an
    /// unnamed stack to its innermost frame's module and a keyed hash of its address
    /// (never the address), hostile names are escaped, and an over-long label is cut to
    /// the limit on a char boundary.
    #[test]
    fn label_fallbacks_and_truncation() {
        let only_runtime = site(
            WaiterKind::Thread,
            "futex",
            Outcome::Ok,
            1,
            fns(&["__lll_lock_wait", "clone3"]),
        );
        assert_eq!(only_runtime.label, "thread:futex:__lll_lock_wait<clone3");
        assert_eq!(only_runtime.origin, None);
        let unnamed = vec![
            Frame {
                address: 0x7f00dead,
                ..Frame::default()
            },
            Frame {
                address: 0x401000,
                ..Frame::default()
            },
        ];
        let again = site(WaiterKind::Thread, "futex", Outcome::Ok, 1, unnamed.clone());
        let unnamed = site(WaiterKind::Thread, "futex", Outcome::Ok, 1, unnamed);
        // No raw code address in a label (ASLR): a keyed hash, stable within the run.
        let body = unnamed.label.strip_prefix("thread:futex:?@").unwrap();
        assert!(
            body.len() == 6 && !unnamed.label.contains("7f00dead"),
            "{}",
            unnamed.label
        );
        assert_eq!(again.label, unnamed.label);
        let in_module = vec![Frame {
            address: 0x7f00dead,
            module: Some("/usr/lib/x86_64-linux-gnu/libfoo.so.1".into()),
            ..Frame::default()
        }];
        let in_module = site(WaiterKind::Thread, "futex", Outcome::Ok, 1, in_module);
        assert!(
            in_module.label.starts_with("thread:futex:libfoo.so.1@"),
            "{}",
            in_module.label
        );
        // Names from a binary are text a process controls: escaped in the label.
        let hostile = site(
            WaiterKind::Thread,
            "futex",
            Outcome::Ok,
            1,
            fns(&["evil\n\x1b[2Jfn"]),
        );
        assert_eq!(hostile.label, "thread:futex:evil\\x0a\\x1b[2Jfn");
        let long_name = "é".repeat(100);
        let long = site(
            WaiterKind::Thread,
            "futex",
            Outcome::Ok,
            1,
            fns(&[&long_name]),
        );
        assert!(long.label.len() <= MAX_SITE_LABEL, "{}", long.label.len());
        assert!(long.label.ends_with('~'));
    }

    /// Check that two sites of one process whose short labels collide get distinct,
    /// stable suffixes instead of being merged.
    #[test]
    fn colliding_labels_are_made_unique() {
        let a = site(
            WaiterKind::Thread,
            "futex",
            Outcome::Ok,
            30,
            fns(&["mid_pool", "a"]),
        );
        let b = site(
            WaiterKind::Thread,
            "futex",
            Outcome::Ok,
            25,
            fns(&["mid_pool", "a", "deeper"]),
        );
        let other = site(WaiterKind::Thread, "futex", Outcome::Ok, 2, fns(&["tiny"]));
        let p = process(1, "native", vec![a, b, other]);
        let labels: Vec<&str> = p.sites.iter().map(|s| s.label.as_str()).collect();
        assert!(
            labels[0].starts_with("thread:futex:mid_pool<a#"),
            "{labels:?}"
        );
        assert!(
            labels[1].starts_with("thread:futex:mid_pool<a#"),
            "{labels:?}"
        );
        assert_ne!(labels[0], labels[1]);
        assert_eq!(labels[2], "thread:futex:tiny");
        let again = process(1, "native", p.sites.clone());
        assert_eq!(again.sites[0].label, p.sites[0].label, "stable");
    }

    struct Catalog(HashMap<SiteKey, Arc<[Frame]>>);

    impl SiteCatalog for Catalog {
        fn frames(&self, _: &ProcessKey, site: &SiteKey) -> Option<Arc<[Frame]>> {
            self.0.get(site).cloned()
        }
        fn creator(&self, _: &ProcessKey, gopc: u64) -> Option<Frame> {
            Some(frame("main.spawn", Some(("/src/main.go", 40)), gopc))
        }
        fn is_live(&self, process: &ProcessKey) -> bool {
            process.pid == 42
        }
    }

    /// Check that a window where one goroutine site grows scan after scan (and another
    /// stays flat) is summarized with the process's identity, liveness, uptime and
    /// cgroup from the scan, the growing site judged a leak with its frames, creator and
    /// origin, and the leak first.
    #[test]
    fn summarizes_a_growing_goroutine_site() {
        let process = ProcessKey {
            pid: 42,
            start_mono_ns: 1_000_000_000,
            exec_id: 3,
        };
        let facts = Arc::new(ProcessFacts {
            comm: "leaky".into(),
            exe: "/bin/leaky".into(),
            runtime: Runtime::Go(GoRelease::Known {
                major: 1,
                minor: 24,
            }),
            cgroup: CgroupLabels {
                cgroup: "leaky.service".into(),
                ..CgroupLabels::default()
            },
        });
        let leak_site = SiteKey {
            kind: WaiterKind::Goroutine,
            wait: "chan send".into(),
            stack: vec![0x10, 0x20].into(),
        };
        let flat_site = SiteKey {
            kind: WaiterKind::Goroutine,
            wait: "select".into(),
            stack: vec![0x30].into(),
        };
        let mut history = History::new();
        for scan in 0..12u64 {
            let census = growing_census(scan, &facts, &leak_site, &flat_site);
            history.record(&Census {
                at_mono_ns: 10_000_000_000 + scan * 1_000_000_000,
                processes: [(process, census)].into_iter().collect(),
                ..Census::default()
            });
        }
        let catalog = Catalog(
            [
                (
                    leak_site.clone(),
                    Arc::from(vec![
                        frame("runtime.gopark", None, 0x10),
                        frame("main.leak", Some(("/src/main.go", 12)), 0x20),
                    ]),
                ),
                (flat_site, Arc::from(vec![frame("main.idle", None, 0x30)])),
            ]
            .into_iter()
            .collect(),
        );
        let clock = WindowClock {
            host: "testhost".into(),
            started_at: SystemTime::UNIX_EPOCH,
            thread_source: ThreadSourceKind::Procfs,
        };
        let mut cache = JudgementCache::default();
        let (summary, recorded) = summarize(
            &history,
            &catalog,
            &VerdictPolicy::default(),
            clock.clone(),
            &mut cache,
            true,
        );
        assert_eq!(recorded.len(), 2);
        // Judged without building member lists, every site gets the same judgement.
        let (streamed, unrecorded) = summarize(
            &history,
            &catalog,
            &VerdictPolicy::default(),
            clock.clone(),
            &mut JudgementCache::default(),
            false,
        );
        assert!(unrecorded.is_empty());
        let judgements = |s: &WindowSummary| -> Vec<SiteJudgement> {
            s.processes
                .iter()
                .flat_map(|p| p.sites.iter().map(|site| site.judgement.clone()))
                .collect()
        };
        assert_eq!(judgements(&streamed), judgements(&summary));
        assert_eq!(summary.host, "testhost");
        assert_eq!(summary.thread_source, ThreadSourceKind::Procfs);
        assert!((summary.duration_s - 11.0).abs() < 1e-9);
        let p = &summary.processes[0];
        assert_eq!(p.key, process);
        assert!(p.alive);
        assert!((p.uptime_s - 20.0).abs() < 1e-9, "{}", p.uptime_s);
        assert_eq!(p.facts.cgroup.cgroup, "leaky.service");
        assert_eq!(p.outcome, Outcome::Leak, "{p:#?}");
        assert_eq!(p.waiters, 37);
        let leak = &p.sites[0];
        assert!(leak.is_leak());
        assert_eq!(leak.kind, WaiterKind::Goroutine);
        assert_eq!(&*leak.wait, "chan send");
        assert_eq!(leak.count, 36);
        assert_eq!(leak.origin, Some(1));
        assert_eq!(leak.label, "goroutine:chan send:main.leak");
        assert_eq!(leak.created_by.as_ref().unwrap().address, 0x99);
        // What the stacks hold, as of the latest read, per site and for the process.
        assert_eq!(leak.stack_bytes, StackBytes::goroutines(36, 36 * 8192));
        assert_eq!(p.stack_bytes, StackBytes::goroutines(37, 37 * 8192));
        // A leaking process gets a forecast; its limits were never read here.
        assert!(p.exhaustion.is_some());
        assert!(!p.sites[1].is_leak());
        assert!(summary.has_leak());
        assert!(summary.only(|p| p.key.pid != 42).processes.is_empty());
    }

    /// Scan `scan` of a Go process whose `leak_site` gains 3 goroutines a scan (ids from
    /// 1 up) while one sits at `flat_site` from the first scan on; 8 KiB stacks.
    fn growing_census(
        scan: u64,
        facts: &Arc<ProcessFacts>,
        leak_site: &SiteKey,
        flat_site: &SiteKey,
    ) -> ProcessCensus {
        let mut census = ProcessCensus {
            facts: facts.clone(),
            birth_clock: Some(110 + 3 * scan),
            goroutines_read: true,
            ..ProcessCensus::default()
        };
        let member = |goid: u64| GoroutineMember {
            goid,
            seq: 0,
            waitsince_ns: 0,
        };
        let site = |count: u32, arrived: Vec<GoroutineMember>| SiteCensus {
            count,
            members: SiteMembers::Changes(GoroutineChanges {
                arrived,
                creators: vec![(0x99, count)],
                ..GoroutineChanges::default()
            }),
            stack_bytes: StackBytes::goroutines(count, u64::from(count) * 8192),
        };
        let arrived = (scan * 3 + 1..=(scan + 1) * 3).map(member).collect();
        census
            .sites
            .insert(leak_site.clone(), site((scan as u32 + 1) * 3, arrived));
        let flat_arrivals = if scan == 0 {
            vec![member(1000)]
        } else {
            Vec::new()
        };
        census
            .sites
            .insert(flat_site.clone(), site(1, flat_arrivals));
        census
    }

    /// Check that a leaking process's forecast is made from what the history recorded:
    /// its threads at each scan (2 more a second), its cgroup's `pids.max` (600) read
    /// with the census and the cgroup's usage at the newest scan (418): 91 s left.
    #[test]
    fn leaking_process_is_forecast_from_its_recorded_usage() {
        use crate::{
            forecast::LimitKind,
            host::cgroupfs::{CgroupDir, Controller, ControllerLimits, Version},
            resources::{ProcessLimits, ProcessUsage, ResourceScan},
        };
        let process = ProcessKey {
            pid: 42,
            start_mono_ns: 1_000_000_000,
            exec_id: 3,
        };
        let facts = Arc::new(ProcessFacts::default());
        let leak_site = SiteKey {
            kind: WaiterKind::Goroutine,
            wait: "chan send".into(),
            stack: vec![0x10].into(),
        };
        let flat_site = SiteKey {
            stack: vec![0x30].into(),
            ..leak_site.clone()
        };
        let dir = CgroupDir {
            version: Version::V1,
            path: "/sys/fs/cgroup/pids/leaky".into(),
        };
        let limits = Arc::new(ProcessLimits {
            pids: ControllerLimits {
                own: Some(dir.clone()),
                limited: vec![(dir.clone(), 600)],
            },
            ..ProcessLimits::default()
        });
        let mut history = History::new();
        for scan in 0..10u64 {
            let mut census = growing_census(scan, &facts, &leak_site, &flat_site);
            census.usage = Some(ProcessUsage {
                threads: 100 + 2 * scan as u32,
                ..ProcessUsage::default()
            });
            let mut resources = ResourceScan::default();
            resources.limits.insert(process, limits.clone());
            let used = 400 + 2 * scan;
            resources
                .host
                .cgroup_usage
                .insert((Controller::Pids, dir.path.clone()), used);
            history.record(&Census {
                at_mono_ns: 10_000_000_000 + scan * 1_000_000_000,
                processes: [(process, census)].into_iter().collect(),
                resources,
            });
        }
        let catalog = Catalog(HashMap::new());
        let clock = WindowClock {
            host: "h".into(),
            started_at: SystemTime::UNIX_EPOCH,
            thread_source: ThreadSourceKind::Bpf,
        };
        let policy = VerdictPolicy::default();
        let mut cache = JudgementCache::default();
        let (summary, _) = summarize(&history, &catalog, &policy, clock, &mut cache, false);
        let p = &summary.processes[0];
        assert!(p.is_leak(), "{p:#?}");
        let first = p.exhaustion.as_ref().and_then(|e| e.first()).unwrap();
        assert_eq!(first.limit, LimitKind::CgroupPids);
        assert_eq!((first.value, first.used), (Some(600), Some(418)));
        assert!((first.eta_s.unwrap() - 91.0).abs() < 1e-6, "{first:?}");
    }
}
