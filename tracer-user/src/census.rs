//! One scan's census: the blocked waiters of every process, keyed by process and site
//! (the stack where they block), each with its identity.
//!
//! [`CensusTaker`] folds what the sources found in one scan into a [`Census`]: the
//! blocked threads the thread source classified and unwound, the goroutine sites each Go
//! process's read reported. It names each new site's frames once, while its process is
//! still alive (through the symbolizer the source gave with the scan), keeps each
//! process's facts as first reported (with the Go runtime added), and reports a process
//! whose analysis failed (here or in a source) unreadable.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::{
    budget::degraded::{self, Degradation, Degradations},
    fasthash::IntMap,
    isolate::{Faults, Step},
    model::{
        Frame, GoroutineMember, LabelSet, ProcessFacts, ProcessKey, Runtime, SiteKey, WaiterKind,
    },
    resources::{ProcessUsage, ResourceScan, StackBytes},
    site_names::SiteNames,
    sources::{
        error::ReadError,
        go::{reader::GoroutineScan, symbolize::GoSymbolizer},
        threads::{BlockedThread, ThreadScan, ThreadSymbolizer, ThreadWaiter},
    },
};

/// The members of one site in one census.
#[derive(Clone, Debug, PartialEq)]
pub enum SiteMembers {
    /// Thread sites: every waiter (the kernel lists them all at each scan).
    All(Vec<ThreadWaiter>),
    /// Goroutine sites: what changed since the process's previous read. A park that
    /// goes on costs nothing here, however many there are.
    Changes(GoroutineChanges),
}

/// What changed at a goroutine site since the process's previous read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoroutineChanges {
    pub arrived: Vec<GoroutineMember>,
    pub departed: Vec<GoroutineMember>,
    /// Parks that go on, dated by a GC cycle since (their `g.waitsince`).
    pub dated: Vec<GoroutineMember>,
    /// Current members per creator (`gopc`).
    pub creators: Vec<(u64, u32)>,
    /// Current members per pprof label set (members without labels are not listed).
    pub labels: Vec<(Arc<LabelSet>, u32)>,
    /// Current members the Go runtime itself proved leaked (`_Gleaked`).
    pub runtime_leaked: u32,
}

/// One site in one census.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteCensus {
    /// Waiters at the site now.
    pub count: u32,
    pub members: SiteMembers,
    /// The stack memory its waiters hold now.
    pub stack_bytes: StackBytes,
}

/// One process in one census.
#[derive(Clone, Debug, Default)]
pub struct ProcessCensus {
    pub facts: Arc<ProcessFacts>,
    pub sites: IntMap<SiteKey, SiteCensus>,
    /// Go processes: the newest goroutine id at this scan (see [`crate::sources::go::parked::GoroutineTable`]).
    pub birth_clock: Option<u64>,
    /// Whether this scan read the process's goroutines (a huge process is read less often
    /// than every scan; in between its goroutine sites keep their last read's state).
    pub goroutines_read: bool,
    /// Why this scan could not read the process (its goroutines, or any step of its
    /// analysis); it then has no sites.
    pub unreadable: Option<ReadError>,
    /// What the process holds now of what the kernel limits (its threads, mappings,
    /// memory), when the thread source listed it.
    pub usage: Option<ProcessUsage>,
    /// What a memory or CPU budget cut from its analysis so far.
    pub degraded: Degradations,
}

impl ProcessCensus {
    pub fn waiters(&self) -> usize {
        self.sites.values().map(|s| s.count as usize).sum()
    }
}

/// All waiters of one scan.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// CLOCK_MONOTONIC time of the scan.
    pub at_mono_ns: u64,
    pub processes: HashMap<ProcessKey, ProcessCensus>,
    /// The limits on the processes with waiters, and what those limits count now (read
    /// for this census's processes by the limit source).
    pub resources: ResourceScan,
}

/// Which processes a census covers.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    #[default]
    Host,
    Pids(HashSet<u32>),
}

impl Scope {
    /// These processes, or the whole host when there are none (`--pid`).
    pub fn of_pids(pids: &[u32]) -> Self {
        if pids.is_empty() {
            Self::Host
        } else {
            Self::Pids(pids.iter().copied().collect())
        }
    }

    pub fn includes(&self, pid: u32) -> bool {
        match self {
            Self::Host => true,
            Self::Pids(pids) => pids.contains(&pid),
        }
    }
}

/// Folds what the sources found into censuses; owns the names of sites and creators.
pub struct CensusTaker {
    scope: Scope,
    own_pid: u32,
    /// Each site's symbolized frames and each goroutine creator's, named once while
    /// its process was alive, within the budget.
    names: SiteNames,
    /// What a budget cut from each process's analysis so far.
    degraded: HashMap<ProcessKey, Degradations>,
    /// Each process's facts as reported (with its Go runtime, once known).
    facts: HashMap<ProcessKey, ReportedFacts>,
    /// The watched processes alive at the newest census (with waiters or not).
    live: HashSet<ProcessKey>,
    /// The processes whose analysis failed (shared with the sources): not analysed
    /// again while they live.
    faults: Arc<Faults>,
    /// Keep the Go runtime's own threads (idle Ms in futex) among a Go process's sites.
    show_runtime_threads: bool,
    /// Whether a Go process's thread site is the runtime's own, decided once per site.
    runtime_thread_sites: IntMap<(ProcessKey, SiteKey), bool>,
}

impl CensusTaker {
    /// A census taker of the processes in `scope`; one whose analysis fails is recorded
    /// in `faults` (and one recorded there by a source is reported unreadable).
    pub fn new(scope: Scope, faults: Arc<Faults>) -> Self {
        Self {
            scope,
            own_pid: std::process::id(),
            names: SiteNames::default(),
            degraded: HashMap::new(),
            facts: HashMap::new(),
            live: HashSet::new(),
            faults,
            show_runtime_threads: false,
            runtime_thread_sites: IntMap::default(),
        }
    }

    /// Whether the Go runtime's own threads (idle Ms parked in `runtime.futex` by
    /// `notesleep`/`stopm`, ...) count among a Go process's thread sites. Hidden by
    /// default: they are never a leak and would clutter every Go process's report.
    pub fn set_show_runtime_threads(&mut self, show: bool) {
        self.show_runtime_threads = show;
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether a process is watched (in scope, and not leakscope itself: this process,
    /// nor the one waiting for its exit status, see [`crate::isolate::detach`]).
    pub fn watches(&self, pid: u32) -> bool {
        pid != self.own_pid
            && Some(pid) != crate::isolate::detach::supervisor_pid()
            && self.scope.includes(pid)
    }

    /// Forgets symbolized sites (and creators of processes) that `keep` rejects: the
    /// daemon's caches must not grow with every site a host ever had.
    pub fn retain_sites(&mut self, keep: impl Fn(&ProcessKey, &SiteKey) -> bool) {
        self.runtime_thread_sites
            .retain(|(process, site), _| keep(process, site));
        let live = self.names.retain(keep);
        self.facts.retain(|process, _| live.contains(process));
        let alive = &self.live;
        self.degraded
            .retain(|process, _| live.contains(process) || alive.contains(process));
    }

    /// The symbolized frames of a site seen in an earlier census (`None`: not named,
    /// its names were over the budget).
    pub fn frames(&self, process: &ProcessKey, site: &SiteKey) -> Option<Arc<[Frame]>> {
        self.names.frames(process, site)
    }

    /// Whether the process was alive at the newest census.
    pub fn is_live(&self, process: &ProcessKey) -> bool {
        self.live.contains(process)
    }

    /// The frame of a goroutine creator (`gopc`) seen in an earlier census.
    pub fn creator(&self, process: &ProcessKey, gopc: u64) -> Option<&Frame> {
        self.names.creator(process, gopc)
    }

    /// Adds what the thread source's budgets cut from processes' stacks and names this
    /// scan (by pid) to those processes, in `census` and from now on.
    pub fn note_degraded(&mut self, census: &mut Census, cut: Vec<(u32, Degradation)>) {
        if cut.is_empty() {
            return;
        }
        let by_pid: HashMap<u32, ProcessKey> =
            census.processes.keys().map(|k| (k.pid, *k)).collect();
        for (pid, reason) in cut {
            if let Some(key) = by_pid.get(&pid) {
                degraded::note(self.degraded.entry(*key).or_default(), reason);
            }
        }
        self.attach_degraded(census);
    }

    /// Gives each process of `census` what budgets cut from its analysis so far.
    fn attach_degraded(&mut self, census: &mut Census) {
        for (key, reason) in self.names.take_cut() {
            degraded::note(self.degraded.entry(key).or_default(), reason);
        }
        for (key, process) in census.processes.iter_mut() {
            if let Some(reasons) = self.degraded.get(key) {
                process.degraded = reasons.clone();
            }
        }
    }

    /// Builds the census of one scan: the blocked threads the thread source found and
    /// the parked goroutines the goroutine source read. Each process is folded in
    /// isolated steps: one whose analysis fails here or failed in a source is reported
    /// unreadable (with no sites), the others are not affected.
    pub fn take(&mut self, threads: ThreadScan<'_>, goroutines: Vec<GoroutineScan>) -> Census {
        let ThreadScan {
            at_mono_ns,
            live,
            facts,
            blocked,
            unreadable,
            mut symbolizer,
            usage,
            ..
        } = threads;
        let mut census = Census {
            at_mono_ns,
            ..Census::default()
        };
        self.live = live;
        let mut failed: Unreadable = (unreadable.into_iter())
            .map(|(process, reason)| (process, (reason, None)))
            .collect();
        self.add_threads(blocked, &facts, &mut symbolizer, &mut census, &mut failed);
        let faults = self.faults.clone();
        for scan in goroutines {
            let (process, runtime) = (scan.process, scan.runtime);
            let hidden = match self.show_runtime_threads {
                true => Ok(()),
                false => faults.guard(process, Step::RuntimeThreads, || {
                    self.hide_runtime_threads(&scan, &mut census)
                }),
            };
            let added = hidden.and_then(|()| {
                faults.guard(process, Step::GoCensus, || {
                    self.add_goroutines(scan, &facts, &mut census)
                })
            });
            if let Err(fault) = added {
                failed.insert(process, (fault.into(), Some(runtime)));
            }
        }
        for (process, (reason, runtime)) in failed {
            let reported = self.facts_of(process, &facts, runtime);
            let entry = census.processes.entry(process).or_default();
            entry.facts = reported;
            entry.unreadable = Some(reason);
            entry.sites.clear();
        }
        for (key, process) in &mut census.processes {
            process.usage = usage.get(key).copied();
        }
        self.attach_degraded(&mut census);
        census
    }

    /// Drops a Go process's thread sites whose every frame is the Go runtime's own, named
    /// from the binary's pclntab (so stripped binaries too); a thread blocked in C code
    /// (cgo) or in the program's own code stays.
    fn hide_runtime_threads(&mut self, scan: &GoroutineScan, census: &mut Census) {
        let Some(entry) = census.processes.get_mut(&scan.process) else {
            return;
        };
        let decided = &mut self.runtime_thread_sites;
        entry.sites.retain(|site, _| {
            site.kind != WaiterKind::Thread
                || !*decided
                    .entry((scan.process, site.clone()))
                    .or_insert_with(|| is_go_runtime_stack(&(scan.symbolizer)(&site.stack)))
        });
    }

    /// Folds the blocked threads, naming each new site's frames; a process whose frames
    /// cannot be named is added to `failed`.
    fn add_threads(
        &mut self,
        blocked: Vec<BlockedThread>,
        scan_facts: &ScanFacts,
        symbolizer: &mut ThreadSymbolizer<'_>,
        census: &mut Census,
        failed: &mut Unreadable,
    ) {
        for BlockedThread {
            process,
            site,
            waiter,
        } in blocked
        {
            if failed.contains_key(&process) {
                continue;
            }
            let named = self
                .names
                .name_site(process, &site, || symbolizer(process, &site.stack));
            if let Err(reason) = named {
                failed.insert(process, (reason, None));
                continue;
            }
            let facts = self.facts_of(process, scan_facts, None);
            let entry = census
                .processes
                .entry(process)
                .or_insert_with(|| ProcessCensus {
                    facts,
                    ..ProcessCensus::default()
                });
            let site = entry.sites.entry(site).or_insert_with(|| SiteCensus {
                count: 0,
                members: SiteMembers::All(Vec::new()),
                stack_bytes: StackBytes::default(),
            });
            site.count += 1;
            site.stack_bytes.add(waiter.stack_bytes);
            if let SiteMembers::All(waiters) = &mut site.members {
                waiters.push(waiter);
            }
        }
    }

    fn add_goroutines(&mut self, scan: GoroutineScan, scan_facts: &ScanFacts, census: &mut Census) {
        let process = scan.process;
        if !self.watches(process.pid) {
            return;
        }
        let facts = self.facts_of(process, scan_facts, Some(scan.runtime));
        let entry = census
            .processes
            .entry(process)
            .or_insert_with(|| ProcessCensus {
                facts: facts.clone(),
                ..ProcessCensus::default()
            });
        // Thread records may have created the entry before the runtime was known.
        entry.facts = facts;
        entry.unreadable = scan.goroutines.as_ref().err().cloned();
        let (Ok(table), true) = (scan.goroutines, scan.fresh) else {
            return;
        };
        entry.birth_clock = Some(table.max_goid);
        entry.goroutines_read = true;
        for group in table.sites {
            let site = SiteKey {
                kind: WaiterKind::Goroutine,
                wait: group.wait_reason,
                stack: group.stack,
            };
            let named = self.names.name_site(process, &site, || {
                Ok::<_, std::convert::Infallible>((scan.symbolizer)(&site.stack))
            });
            named.unwrap_or_else(|never| match never {});
            self.name_creator(process, group.gopc, &scan.symbolizer);
            // Groups differing only by creator share a site.
            let site = entry.sites.entry(site).or_insert_with(|| SiteCensus {
                count: 0,
                members: SiteMembers::Changes(GoroutineChanges::default()),
                stack_bytes: StackBytes::default(),
            });
            site.count += group.parked;
            site.stack_bytes.add(group.stack_bytes);
            if let SiteMembers::Changes(changes) = &mut site.members {
                if changes.arrived.is_empty() {
                    changes.arrived = group.arrived;
                } else {
                    changes.arrived.extend(group.arrived);
                }
                changes.departed.extend(group.departed);
                changes.dated.extend(group.dated);
                changes.creators.push((group.gopc, group.parked));
                changes.runtime_leaked += group.runtime_leaked;
                if let Some(set) = group.labels.filter(|_| group.parked > 0) {
                    changes.labels.push((set, group.parked));
                }
            }
        }
    }

    /// Names a goroutine creator (`gopc`) once.
    fn name_creator(&mut self, process: ProcessKey, gopc: u64, symbolizer: &GoSymbolizer) {
        self.names.name_creator(process, gopc, || {
            // Symbolized as a caller frame (pc - 1): gopc is the return address of
            // the call that created the goroutine.
            let mut frame = symbolizer(&[0, gopc]).pop().unwrap_or_default();
            frame.address = gopc;
            frame
        });
    }

    /// A process's facts as the thread source reports them, with the runtime the
    /// goroutine source adds (threads are seen before the Go reader names the version;
    /// the thread source may learn more later, such as a pod's names).
    fn facts_of(
        &mut self,
        process: ProcessKey,
        scan_facts: &ScanFacts,
        go: Option<Runtime>,
    ) -> Arc<ProcessFacts> {
        let base = scan_facts.get(&process);
        let facts = self.facts.entry(process).or_insert_with(|| {
            let base = base.cloned().unwrap_or_default();
            ReportedFacts {
                reported: base.clone(),
                base,
            }
        });
        if let Some(base) = base
            && !Arc::ptr_eq(base, &facts.base)
        {
            facts.reported = Arc::new(ProcessFacts {
                runtime: facts.reported.runtime,
                ..(**base).clone()
            });
            facts.base = base.clone();
        }
        if let Some(runtime) = go
            && facts.reported.runtime != runtime
        {
            facts.reported = Arc::new(ProcessFacts {
                runtime,
                ..(*facts.reported).clone()
            });
        }
        facts.reported.clone()
    }
}

/// A stack of the Go runtime alone: its innermost frame and every named frame are in the
/// runtime (`runtime.futex` < `runtime.notesleep` < `runtime.stopm` < ...). Frames the
/// pclntab does not name (C code, garbage past the stack's end) are no evidence either
/// way, but the innermost must be named.
fn is_go_runtime_stack(frames: &[Frame]) -> bool {
    let runtime = |f: &Frame| {
        f.function.as_deref().is_some_and(|name| {
            name.starts_with("runtime.")
                || name.starts_with("internal/runtime/")
                || name.starts_with("runtime/internal/")
        })
    };
    frames.first().is_some_and(runtime)
        && frames.iter().filter(|f| f.function.is_some()).all(runtime)
}

/// The facts of a scan's processes, as the thread source read them.
type ScanFacts = HashMap<ProcessKey, Arc<ProcessFacts>>;

/// The processes a census reports unreadable, why, and their runtime when known.
type Unreadable = HashMap<ProcessKey, (ReadError, Option<Runtime>)>;

/// A process's facts as the thread source last gave them, and as reported.
#[derive(Debug)]
struct ReportedFacts {
    base: Arc<ProcessFacts>,
    reported: Arc<ProcessFacts>,
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::site_names::MAX_CREATORS;
    use crate::{
        model::{MemberId, ThreadKey, WaitId},
        sources::threads::WaitDetail,
    };

    fn process(pid: u32) -> ProcessKey {
        ProcessKey {
            pid,
            start_mono_ns: 1,
            exec_id: 1,
        }
    }

    /// A thread scan of `blocked` whose processes are live, named `p<pid>`; each call
    /// of its symbolizer is told to `named`.
    fn threads<'a>(blocked: Vec<BlockedThread>, named: &'a dyn Fn(u32, &[u64])) -> ThreadScan<'a> {
        let facts: ScanFacts = blocked
            .iter()
            .map(|b| {
                let facts = ProcessFacts {
                    comm: format!("p{}", b.process.pid),
                    ..ProcessFacts::default()
                };
                (b.process, Arc::new(facts))
            })
            .collect();
        ThreadScan {
            at_mono_ns: 7,
            processes: Vec::new(),
            live: facts.keys().copied().collect(),
            facts,
            blocked,
            unreadable: HashMap::new(),
            usage: HashMap::new(),
            tasks_by_uid: None,
            symbolizer: Box::new(move |process: ProcessKey, stack: &[u64]| {
                named(process.pid, stack);
                Ok(vec![Frame::default(); stack.len()])
            }),
        }
    }

    fn blocked(pid: u32, tid: u32, stack: &[u64]) -> BlockedThread {
        BlockedThread {
            process: process(pid),
            site: SiteKey {
                kind: WaiterKind::Thread,
                wait: "futex".into(),
                stack: stack.into(),
            },
            waiter: ThreadWaiter {
                id: MemberId::Thread(WaitId {
                    thread: ThreadKey {
                        tid,
                        start_mono_ns: 2,
                    },
                    nvcsw: 3,
                }),
                born: 2,
                blocked_for_ns: Some(5),
                detail: WaitDetail::Syscall { fd: None },
                stack_bytes: StackBytes::thread(1 << 20, Some(8192)),
            },
        }
    }

    /// Check that blocked threads fold into one site per process and stack with every
    /// member, that a site's frames are named once (not again in a later scan), and that
    /// a process carries the facts its thread source read.
    #[test]
    fn blocked_threads_fold_into_sites_named_once() {
        let mut taker = CensusTaker::new(Scope::Host, Arc::default());
        let named = RefCell::new(Vec::new());
        let note = |pid: u32, stack: &[u64]| named.borrow_mut().push((pid, stack.to_vec()));
        let scan = || {
            vec![
                blocked(10, 11, &[0x1, 0x2]),
                blocked(10, 12, &[0x1, 0x2]),
                blocked(10, 13, &[0x3]),
                blocked(20, 21, &[0x1, 0x2]),
            ]
        };
        let census = taker.take(threads(scan(), &note), Vec::new());
        assert_eq!(census.at_mono_ns, 7);
        let p10 = &census.processes[&process(10)];
        assert_eq!(p10.facts.comm, "p10");
        assert_eq!(p10.sites.len(), 2);
        assert_eq!(p10.waiters(), 3);
        assert_eq!(census.processes[&process(20)].waiters(), 1);
        assert_eq!(named.borrow().len(), 3, "one name per (process, site)");
        taker.take(threads(scan(), &note), Vec::new());
        assert_eq!(named.borrow().len(), 3, "named once");
        assert!(taker.is_live(&process(20)));
        let site = blocked(10, 13, &[0x3]).site;
        assert_eq!(taker.frames(&process(10), &site).map(|f| f.len()), Some(1));
    }

    /// Check that an idle M's stack (runtime.futex < notesleep < stopm ...) is the Go
    /// runtime's own, and that stacks reaching the program's code or unnamed C code
    /// inside, or unnamed innermost, are not.
    #[test]
    fn go_runtime_thread_stacks_are_recognized() {
        let named = |names: &[Option<&str>]| -> Vec<Frame> {
            names
                .iter()
                .map(|n| Frame {
                    function: n.map(str::to_string),
                    ..Frame::default()
                })
                .collect()
        };
        let idle_m = named(&[
            Some("runtime.futex"),
            Some("runtime.futexsleep"),
            Some("runtime.notesleep"),
            Some("internal/runtime/sys.Something"),
            Some("runtime.stopm"),
            Some("runtime.findRunnable"),
            Some("runtime.schedule"),
            None,
        ]);
        assert!(is_go_runtime_stack(&idle_m));
        let program = named(&[
            Some("runtime.futex"),
            Some("runtime.notetsleepg"),
            Some("main.waitForever"),
        ]);
        assert!(!is_go_runtime_stack(&program));
        let cgo = named(&[None, None, Some("runtime.asmcgocall")]);
        assert!(!is_go_runtime_stack(&cgo), "C code innermost");
        assert!(!is_go_runtime_stack(&[]));
    }

    /// Check that a Go process's facts keep the runtime the goroutine source named when
    /// the thread source later learns more of the process (its pod's names), and take
    /// what it learned.
    #[test]
    fn facts_follow_the_thread_source_and_keep_the_go_runtime() {
        let mut taker = CensusTaker::new(Scope::Host, Arc::default());
        let go = || GoroutineScan {
            process: process(10),
            runtime: Runtime::Go(crate::model::GoRelease::Known {
                major: 1,
                minor: 26,
            }),
            fresh: true,
            goroutines: Ok(crate::sources::go::parked::GoroutineTable {
                sites: Vec::new(),
                max_goid: 0,
            }),
            symbolizer: Box::new(|pcs: &[u64]| vec![Frame::default(); pcs.len()]),
        };
        let census = taker.take(
            threads(vec![blocked(10, 11, &[0x1])], &|_, _| {}),
            vec![go()],
        );
        let first = &census.processes[&process(10)].facts;
        assert_eq!(
            (first.comm.as_str(), first.runtime.to_string().as_str()),
            ("p10", "go1.26")
        );
        let mut later = threads(vec![blocked(10, 11, &[0x1])], &|_, _| {});
        let renamed = ProcessFacts {
            comm: "p10-named".into(),
            ..ProcessFacts::default()
        };
        later.facts.insert(process(10), Arc::new(renamed));
        let census = taker.take(later, Vec::new());
        let facts = &census.processes[&process(10)].facts;
        assert_eq!(
            (facts.comm.as_str(), facts.runtime.to_string().as_str()),
            ("p10-named", "go1.26")
        );
    }

    /// Check that goroutines from ever new creators (a hostile process changing gopc
    /// every scan) never grow the creator cache past its cap, and evict only that
    /// process's own entries.
    #[test]
    fn creator_cache_is_bounded_per_hostile_process() {
        let mut taker = CensusTaker::new(Scope::Host, Arc::default());
        let key = process;
        let scan = |pid: u32, gopcs: std::ops::Range<u64>| GoroutineScan {
            process: key(pid),
            runtime: Runtime::Go(crate::model::GoRelease::Known {
                major: 1,
                minor: 26,
            }),
            fresh: true,
            goroutines: Ok(crate::sources::go::parked::GoroutineTable {
                sites: gopcs
                    .map(|gopc| crate::sources::go::parked::GoroutineSite {
                        wait_reason: "chan receive".into(),
                        stack: vec![0x40_0000].into(),
                        gopc,
                        labels: None,
                        parked: 1,
                        runtime_leaked: 0,
                        arrived: vec![GoroutineMember {
                            goid: gopc,
                            seq: 0,
                            waitsince_ns: 0,
                        }],
                        departed: Vec::new(),
                        dated: Vec::new(),
                        stack_bytes: StackBytes::goroutines(1, 8192),
                    })
                    .collect(),
                max_goid: 0,
            }),
            symbolizer: Box::new(|pcs: &[u64]| pcs.iter().map(|_| Frame::default()).collect()),
        };
        let first = taker.take(threads(Vec::new(), &|_, _| {}), vec![scan(1, 0..10)]);
        // Groups differing only by creator share a site: their stacks add up.
        let site = first.processes[&key(1)].sites.values().next().unwrap();
        assert_eq!(site.stack_bytes, StackBytes::goroutines(10, 10 * 8192));
        for round in 0..3u64 {
            let start = 100 + round * MAX_CREATORS as u64;
            let go = vec![scan(2, start..start + MAX_CREATORS as u64)];
            taker.take(threads(Vec::new(), &|_, _| {}), go);
            assert!(taker.names.creators() <= MAX_CREATORS);
        }
        assert!(taker.creator(&key(1), 5).is_some());
    }
}
