//! One scan's census: the blocked waiters of every process, keyed by process and site
//! (the stack where they block), each with its identity.
//!
//! [`CensusTaker`] turns the raw records of a source into a [`Census`]: it keeps only
//! real waits, unwinds each wait's stack once (a waiter that has not woken keeps its
//! stack), and symbolizes each new site once, while its process is still alive.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use tracer_common::{
    SYS_FUTEX, SYS_FUTEX_WAIT, SYS_FUTEX_WAITV, ThreadWaiterRecord, WAITER_IN_FUTEX_WAITV,
};

use crate::{
    fasthash::IntMap,
    host::{
        cgroup::{complete_pod_names, read_cgroup},
        kubelet::{KubeletLogDirs, KubeletLogs},
        procfs::{self, MemoryMap},
    },
    isolate,
    model::{
        Frame, GoroutineMember, MemberId, ProcessFacts, ProcessKey, SiteKey, StackKey, ThreadKey,
        WaitId, WaiterKind,
    },
    sources::{
        goroutines::{GoSymbolizer, GoroutineScan},
        syscalls::{FdKind, syscall_name},
        thread_waiters::ScanRecords,
    },
    stacks::{
        symbolize::StackSymbolizer,
        unwind::{StackUnwinder, UserRegs},
    },
};

/// What kind of futex wait a thread is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FutexWait {
    Wait,
    WaitBitset,
    LockPi,
    LockPi2,
    WaitRequeuePi,
    Waitv,
    /// futex_wait(2), the futex2 wait on one word.
    Wait2,
}

impl FutexWait {
    /// Classifies a futex(2) call from its syscall number and op; `None` for calls that
    /// do not block (wakes, requeues) and for other syscalls.
    pub fn classify(syscall_nr: u64, op: u64, flags: u32) -> Option<Self> {
        if syscall_nr == SYS_FUTEX_WAITV || flags & WAITER_IN_FUTEX_WAITV != 0 {
            return Some(Self::Waitv);
        }
        if syscall_nr == SYS_FUTEX_WAIT {
            return Some(Self::Wait2);
        }
        if syscall_nr != SYS_FUTEX {
            return None;
        }
        // FUTEX_CMD_MASK strips FUTEX_PRIVATE_FLAG (128) and FUTEX_CLOCK_REALTIME (256).
        match op & 0x7f {
            0 => Some(Self::Wait),
            9 => Some(Self::WaitBitset),
            6 => Some(Self::LockPi),
            13 => Some(Self::LockPi2),
            11 => Some(Self::WaitRequeuePi),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Wait => "FUTEX_WAIT",
            Self::WaitBitset => "FUTEX_WAIT_BITSET",
            Self::LockPi => "FUTEX_LOCK_PI",
            Self::LockPi2 => "FUTEX_LOCK_PI2",
            Self::WaitRequeuePi => "FUTEX_WAIT_REQUEUE_PI",
            Self::Waitv => "futex_waitv",
            Self::Wait2 => "futex_wait",
        }
    }
}

/// Kind-specific facts about a thread waiter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WaitDetail {
    Futex {
        op: FutexWait,
        addr: u64,
    },
    /// A thread in any other syscall; for syscalls on one file descriptor, the fd and
    /// what kind of file it is.
    Syscall {
        fd: Option<(i32, FdKind)>,
    },
}

/// One blocked thread at the moment of a scan. (Goroutine parks are
/// [`GoroutineMember`]s, reported by change: see [`SiteMembers`].)
#[derive(Clone, Debug, PartialEq)]
pub struct Waiter {
    pub id: MemberId,
    /// Orders members by creation: the thread's CLOCK_MONOTONIC start.
    pub born: u64,
    /// How long the waiter has been blocked, when a source can tell: for threads the
    /// time off CPU since the scheduler last ran them, which also covers waits begun
    /// before leakscope started.
    pub blocked_for_ns: Option<u64>,
    pub detail: WaitDetail,
}

/// The members of one site in one census.
#[derive(Clone, Debug, PartialEq)]
pub enum SiteMembers {
    /// Thread sites: every waiter (the kernel lists them all at each scan).
    All(Vec<Waiter>),
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
}

/// One site in one census.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteCensus {
    /// Waiters at the site now.
    pub count: u32,
    pub members: SiteMembers,
}

/// One process in one census.
#[derive(Clone, Debug, Default)]
pub struct ProcessCensus {
    pub facts: Arc<ProcessFacts>,
    pub sites: IntMap<SiteKey, SiteCensus>,
    /// Go processes: the newest goroutine id at this scan (see [`crate::sources::goroutines::GoroutineTable`]).
    pub birth_clock: Option<u64>,
    /// Whether this scan read the process's goroutines (a huge process is read less often
    /// than every scan; in between its goroutine sites keep their last read's state).
    pub goroutines_read: bool,
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

/// Turns source records into censuses; owns the unwinding and symbolization caches.
pub struct CensusTaker {
    scope: Scope,
    own_pid: u32,
    unwinder: StackUnwinder,
    symbolizer: StackSymbolizer,
    /// Each parked thread's stack, unwound once while it parks at the same saved
    /// registers: a pool worker that wakes and re-parks at the same place keeps its stack.
    stacks: IntMap<(ThreadKey, UserRegs), StackKey>,
    /// Each site's symbolized frames, named once while its process was alive.
    sites: IntMap<(ProcessKey, SiteKey), Arc<[Frame]>>,
    /// Each goroutine creator's frame (gopc), named once.
    creators: IntMap<(ProcessKey, u64), Frame>,
    facts: HashMap<ProcessKey, Arc<ProcessFacts>>,
    /// The watched processes alive at the newest census (with waiters or not).
    live: HashSet<ProcessKey>,
    /// Go processes whose census panicked, with the reason: not analysed again.
    panicked: HashMap<ProcessKey, String>,
    /// Each syscall's wait label, made once.
    wait_names: IntMap<u64, Arc<str>>,
    /// Keep the Go runtime's own threads (idle Ms in futex) among a Go process's sites.
    show_runtime_threads: bool,
    /// Whether a Go process's thread site is the runtime's own, decided once per site.
    runtime_thread_sites: IntMap<(ProcessKey, SiteKey), bool>,
    /// Pod and container names, from the kubelet's log directories.
    kubelet: KubeletLogs,
}

/// Goroutine creator frames remembered across all processes.
const MAX_CREATORS: usize = 65_536;

impl CensusTaker {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            own_pid: std::process::id(),
            unwinder: StackUnwinder::new(),
            symbolizer: StackSymbolizer::new(),
            stacks: IntMap::default(),
            sites: IntMap::default(),
            creators: IntMap::default(),
            facts: HashMap::new(),
            live: HashSet::new(),
            panicked: HashMap::new(),
            wait_names: IntMap::default(),
            show_runtime_threads: false,
            runtime_thread_sites: IntMap::default(),
            kubelet: KubeletLogs::new(KubeletLogDirs::default()),
        }
    }

    /// Where the kubelet's log directories are, which name the pods (default: the
    /// kubelet's own, `/var/log/pods` and `/var/log/containers`).
    pub fn set_kubelet_log_dirs(&mut self, dirs: KubeletLogDirs) {
        self.kubelet = KubeletLogs::new(dirs);
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

    /// Whether a process is watched (in scope, and not leakscope itself).
    pub fn watches(&self, pid: u32) -> bool {
        pid != self.own_pid && self.scope.includes(pid)
    }

    /// Forgets symbolized sites (and creators of processes) that `keep` rejects: the
    /// daemon's caches must not grow with every site a host ever had.
    pub fn retain_sites(&mut self, keep: impl Fn(&ProcessKey, &SiteKey) -> bool) {
        self.sites.retain(|(process, site), _| keep(process, site));
        self.runtime_thread_sites
            .retain(|(process, site), _| keep(process, site));
        let live: HashSet<ProcessKey> = self.sites.keys().map(|(p, _)| *p).collect();
        self.creators
            .retain(|(process, _), _| live.contains(process));
        self.facts.retain(|process, _| live.contains(process));
    }

    /// The symbolized frames of a site seen in an earlier census.
    pub fn frames(&self, process: &ProcessKey, site: &SiteKey) -> Option<Arc<[Frame]>> {
        self.sites.get(&(*process, site.clone())).cloned()
    }

    /// Whether the process was alive at the newest census.
    pub fn is_live(&self, process: &ProcessKey) -> bool {
        self.live.contains(process)
    }

    /// The frame of a goroutine creator (`gopc`) seen in an earlier census.
    pub fn creator(&self, process: &ProcessKey, gopc: u64) -> Option<&Frame> {
        self.creators.get(&(*process, gopc))
    }

    /// Builds the census of one scan: the thread waiters of the kernel records and the
    /// parked goroutines the goroutine source read.
    pub fn take(&mut self, records: &ScanRecords, goroutines: Vec<GoroutineScan>) -> Census {
        let mut census = Census {
            at_mono_ns: records
                .processes
                .iter()
                .map(|r| r.mono_now_ns)
                .chain(records.waiters.iter().map(|r| r.mono_now_ns))
                .max()
                .unwrap_or(0),
            ..Census::default()
        };
        self.live = records
            .processes
            .iter()
            .filter(|r| self.watches(r.tgid))
            .map(ProcessKey::of)
            .collect();
        self.add_threads(&records.waiters, &mut census);
        // Processes whose census panicked stay unreadable while they live (read or not).
        let live = &self.live;
        self.panicked.retain(|process, _| live.contains(process));
        for scan in goroutines {
            if !self.show_runtime_threads {
                self.hide_runtime_threads(&scan, &mut census);
            }
            let (process, runtime) = (scan.process, scan.runtime.clone());
            let added = match self.panicked.get(&process) {
                Some(reason) => Err(reason.clone()),
                None => {
                    isolate::per_process(process.pid, || self.add_goroutines(scan, &mut census))
                        .map_err(|panic| {
                            log::warn!("pid {}: {panic}", process.pid);
                            panic.to_string()
                        })
                }
            };
            if let Err(reason) = added {
                self.panicked.insert(process, reason.clone());
                let facts = self.facts_of(process, String::new, Some(runtime), Some(reason));
                let entry = census.processes.entry(process).or_default();
                entry.facts = facts;
                entry.sites.clear();
            }
        }
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

    fn add_threads(&mut self, records: &[ThreadWaiterRecord], census: &mut Census) {
        let mut maps: HashMap<u32, Option<Vec<MemoryMap>>> = HashMap::new();
        let mut live_waits = HashSet::new();
        for rec in records {
            if !self.watches(rec.tgid) {
                continue;
            }
            let Some((wait_name, detail)) = self.thread_wait(rec) else {
                continue;
            };
            let process = ProcessKey {
                pid: rec.tgid,
                start_mono_ns: rec.process_start_mono_ns,
                exec_id: rec.exec_id,
            };
            let wait = WaitId {
                thread: ThreadKey {
                    tid: rec.tid,
                    start_mono_ns: rec.thread_start_mono_ns,
                },
                nvcsw: rec.nvcsw,
            };
            let regs = UserRegs {
                ip: rec.ip,
                sp: rec.sp,
                bp: rec.bp,
            };
            live_waits.insert((wait.thread, regs));
            let site = SiteKey {
                kind: WaiterKind::Thread,
                wait: wait_name,
                stack: self.thread_stack(rec.tgid, wait.thread, regs, &mut maps),
            };
            self.symbolize_thread_site(process, &site, &mut maps);
            let facts = self.facts_of(
                process,
                || String::from_utf8_lossy(rec.comm_bytes()).into_owned(),
                None,
                None,
            );
            let waiter = Waiter {
                id: MemberId::Thread(wait),
                born: rec.thread_start_mono_ns,
                blocked_for_ns: Some(rec.sched_now_ns.saturating_sub(rec.last_arrival_ns)),
                detail,
            };
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
            });
            site.count += 1;
            if let SiteMembers::All(waiters) = &mut site.members {
                waiters.push(waiter);
            }
        }
        // Threads no longer parked there will never be seen again: forget their stacks.
        self.stacks
            .retain(|parked_at, _| live_waits.contains(parked_at));
    }

    /// What a thread waits in: the site's wait label (its syscall's name) and the
    /// member's detail; `None` for futex calls that do not wait (wakes, requeues).
    fn thread_wait(&mut self, rec: &ThreadWaiterRecord) -> Option<(Arc<str>, WaitDetail)> {
        let nr = rec.syscall_nr;
        if matches!(nr, SYS_FUTEX | SYS_FUTEX_WAITV | SYS_FUTEX_WAIT) {
            let op = FutexWait::classify(nr, rec.args[1], rec.flags)?;
            let detail = WaitDetail::Futex {
                op,
                addr: rec.args[0],
            };
            return Some((self.wait_name(SYS_FUTEX), detail));
        }
        let fd = FdKind::from_record(rec.fd_kind, rec.fd_detail).map(|kind| (rec.fd, kind));
        Some((self.wait_name(nr), WaitDetail::Syscall { fd }))
    }

    /// The wait label of syscall `nr`, one shared string per syscall.
    fn wait_name(&mut self, nr: u64) -> Arc<str> {
        self.wait_names
            .entry(nr)
            .or_insert_with(|| match syscall_name(nr) {
                Some(name) => name.into(),
                None => format!("syscall_{nr}").into(),
            })
            .clone()
    }

    /// A thread's stack, unwound once while it waits at the same saved registers.
    fn thread_stack(
        &mut self,
        pid: u32,
        thread: ThreadKey,
        regs: UserRegs,
        maps: &mut HashMap<u32, Option<Vec<MemoryMap>>>,
    ) -> StackKey {
        if let Some(stack) = self.stacks.get(&(thread, regs)) {
            return stack.clone();
        }
        let process_maps = maps
            .entry(pid)
            .or_insert_with(|| procfs::read_maps(pid).ok());
        let addrs = match process_maps {
            Some(m) => self.unwinder.unwind(pid, m, regs),
            None => vec![regs.ip],
        };
        let stack: StackKey = addrs.into();
        self.stacks.insert((thread, regs), stack.clone());
        stack
    }

    /// Names a thread site's frames the first time it is seen, while its process lives.
    fn symbolize_thread_site(
        &mut self,
        process: ProcessKey,
        site: &SiteKey,
        maps: &mut HashMap<u32, Option<Vec<MemoryMap>>>,
    ) {
        if self.sites.contains_key(&(process, site.clone())) {
            return;
        }
        let pid = process.pid;
        let process_maps = maps
            .entry(pid)
            .or_insert_with(|| procfs::read_maps(pid).ok());
        let frames = match process_maps {
            Some(m) => self.symbolizer.symbolize(pid, m, &site.stack),
            None => bare_frames(&site.stack),
        };
        self.sites.insert((process, site.clone()), frames.into());
    }

    fn add_goroutines(&mut self, scan: GoroutineScan, census: &mut Census) {
        let process = scan.process;
        if !self.watches(process.pid) {
            return;
        }
        let error = scan.goroutines.as_ref().err().cloned();
        let facts = self.facts_of(process, String::new, Some(scan.runtime.clone()), error);
        let entry = census
            .processes
            .entry(process)
            .or_insert_with(|| ProcessCensus {
                facts: facts.clone(),
                ..ProcessCensus::default()
            });
        // Thread records may have created the entry before the runtime was known.
        entry.facts = facts;
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
            self.sites
                .entry((process, site.clone()))
                .or_insert_with(|| (scan.symbolizer)(&site.stack).into());
            self.name_creator(process, group.gopc, &scan.symbolizer);
            // Groups differing only by creator share a site.
            let site = entry.sites.entry(site).or_insert_with(|| SiteCensus {
                count: 0,
                members: SiteMembers::Changes(GoroutineChanges::default()),
            });
            site.count += group.parked;
            if let SiteMembers::Changes(changes) = &mut site.members {
                if changes.arrived.is_empty() {
                    changes.arrived = group.arrived;
                } else {
                    changes.arrived.extend(group.arrived);
                }
                changes.departed.extend(group.departed);
                changes.dated.extend(group.dated);
                changes.creators.push((group.gopc, group.parked));
            }
        }
    }

    /// Names a goroutine creator (`gopc`) once.
    fn name_creator(&mut self, process: ProcessKey, gopc: u64, symbolizer: &GoSymbolizer) {
        if self.creators.len() >= MAX_CREATORS && !self.creators.contains_key(&(process, gopc)) {
            // A process whose goroutines come from ever new creators (a hostile one):
            // it thrashes its own entries, never grows the cache or evicts others'.
            self.creators.retain(|(p, _), _| *p != process);
        }
        self.creators.entry((process, gopc)).or_insert_with(|| {
            // Symbolized as a caller frame (pc - 1): gopc is the return address of
            // the call that created the goroutine.
            let mut frame = symbolizer(&[0, gopc]).pop().unwrap_or_default();
            frame.address = gopc;
            frame
        });
    }

    /// A process's facts, read once per process instance; a later source may fill in the
    /// runtime (threads are seen before the Go reader names the version).
    fn facts_of(
        &mut self,
        process: ProcessKey,
        fallback_comm: impl FnOnce() -> String,
        runtime: Option<String>,
        error: Option<String>,
    ) -> Arc<ProcessFacts> {
        let kubelet = &mut self.kubelet;
        let facts = self
            .facts
            .entry(process)
            .or_insert_with(|| Arc::new(read_facts(process.pid, fallback_comm, kubelet)));
        // A container's name may come after its first scan (its log link is made
        // just after it starts).
        if let Some(cgroup) = complete_pod_names(&facts.cgroup, kubelet, Instant::now()) {
            *facts = Arc::new(ProcessFacts {
                cgroup,
                ..(**facts).clone()
            });
        }
        if let Some(runtime) = runtime
            && (facts.runtime != runtime || facts.error != error)
        {
            *facts = Arc::new(ProcessFacts {
                runtime,
                error,
                ..(**facts).clone()
            });
        }
        facts.clone()
    }
}

/// The kind of file most members of a site wait on (ties go to the lower kind, so
/// the answer is stable); `None` when no member waits on an fd.
pub fn prevailing_fd_kind<'a>(details: impl IntoIterator<Item = &'a WaitDetail>) -> Option<FdKind> {
    let mut counts: Vec<(FdKind, u32)> = Vec::new();
    for detail in details {
        let WaitDetail::Syscall {
            fd: Some((_, kind)),
        } = detail
        else {
            continue;
        };
        match counts.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((*kind, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(kind, n)| (n, std::cmp::Reverse(kind)))
        .map(|(kind, _)| kind)
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

fn bare_frames(stack: &[u64]) -> Vec<Frame> {
    stack
        .iter()
        .map(|&address| Frame {
            address,
            ..Frame::default()
        })
        .collect()
}

/// A process's name, executable and cgroup; falls back to the thread's comm when the process is
/// already gone.
fn read_facts(
    pid: u32,
    fallback_comm: impl FnOnce() -> String,
    kubelet: &mut KubeletLogs,
) -> ProcessFacts {
    // The name exactly as the kernel has it (a trailing space or bytes that are not
    // UTF-8 included, the latter replaced): sinks escape it, none drops it.
    let comm = std::fs::read(format!("/proc/{pid}/comm"))
        .map(|bytes| {
            let name = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            String::from_utf8_lossy(name).into_owned()
        })
        .unwrap_or_else(|_| fallback_comm());
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    ProcessFacts {
        comm,
        exe,
        runtime: "native".into(),
        error: None,
        cgroup: read_cgroup(pid, kubelet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::syscalls::SocketKind;

    fn record(syscall_nr: u64, args: [u64; 6], fd_kind: u32, fd_detail: u32) -> ThreadWaiterRecord {
        ThreadWaiterRecord {
            syscall_nr,
            args,
            fd: args[0] as i32,
            fd_kind,
            fd_detail,
            ..Default::default()
        }
    }

    /// Check that a thread's wait is named by its syscall, futex waits of every flavour
    /// share "futex" and keep their op, fd waits carry the fd's kind, futex wakes are no
    /// waits, and an unassigned number still gets a name.
    #[test]
    fn thread_waits_are_named_by_syscall() {
        use tracer_common::fd_kind;
        let mut taker = CensusTaker::new(Scope::Host);
        let mut wait = |rec: ThreadWaiterRecord| {
            taker
                .thread_wait(&rec)
                .map(|(name, detail)| (name.to_string(), detail))
        };
        assert_eq!(
            wait(record(0, [5, 0, 1, 0, 0, 0], fd_kind::SOCKET, 1 | 1 << 16)),
            Some((
                "read".into(),
                WaitDetail::Syscall {
                    fd: Some((5, FdKind::Socket(SocketKind::Unix)))
                }
            ))
        );
        assert_eq!(
            wait(record(61, [42, 0, 0, 0, 0, 0], fd_kind::NONE, 0)),
            Some(("wait4".into(), WaitDetail::Syscall { fd: None }))
        );
        assert_eq!(
            wait(record(
                SYS_FUTEX,
                [0x1000, 128, 0, 0, 0, 0],
                fd_kind::NONE,
                0
            )),
            Some((
                "futex".into(),
                WaitDetail::Futex {
                    op: FutexWait::Wait,
                    addr: 0x1000
                }
            ))
        );
        assert_eq!(
            wait(record(
                SYS_FUTEX_WAIT,
                [0x2000, 0, 0, 0, 0, 0],
                fd_kind::NONE,
                0
            ))
            .map(|(name, _)| name),
            Some("futex".into())
        );
        assert_eq!(
            wait(record(SYS_FUTEX, [0x1000, 1, 0, 0, 0, 0], fd_kind::NONE, 0)),
            None,
            "FUTEX_WAKE is no wait"
        );
        assert_eq!(
            wait(record(400, [0; 6], fd_kind::NONE, 0)).map(|(name, _)| name),
            Some("syscall_400".into())
        );
    }

    /// Check that a site's fd kind is the one most of its members wait on, and none when
    /// no member waits on an fd.
    #[test]
    fn prevailing_fd_kind_is_the_most_common() {
        let on = |kind| WaitDetail::Syscall {
            fd: Some((3, kind)),
        };
        let details = [
            on(FdKind::Pipe),
            on(FdKind::Socket(SocketKind::Tcp)),
            WaitDetail::Syscall { fd: None },
            on(FdKind::Socket(SocketKind::Tcp)),
        ];
        assert_eq!(
            prevailing_fd_kind(&details),
            Some(FdKind::Socket(SocketKind::Tcp))
        );
        assert_eq!(
            prevailing_fd_kind(&[WaitDetail::Futex {
                op: FutexWait::Wait,
                addr: 1
            }]),
            None
        );
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

    /// Check that the futex ops glibc and Rust std block in are waits, wakes are not, and
    /// the private/realtime flags do not change the classification.
    #[test]
    fn futex_ops_are_classified() {
        assert_eq!(FutexWait::classify(SYS_FUTEX, 0, 0), Some(FutexWait::Wait));
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 9 | 128 | 256, 0),
            Some(FutexWait::WaitBitset)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 6 | 128, 0),
            Some(FutexWait::LockPi)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 11, 0),
            Some(FutexWait::WaitRequeuePi)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 1 | 128, 0),
            None,
            "FUTEX_WAKE is no wait"
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX_WAITV, 0, 0),
            Some(FutexWait::Waitv)
        );
        assert_eq!(
            FutexWait::classify(0, 0, 0),
            None,
            "read(2) is no futex wait"
        );
    }

    /// Check that goroutines from ever new creators (a hostile process changing gopc
    /// every scan) never grow the creator cache past its cap, and evict only that
    /// process's own entries.
    #[test]
    fn creator_cache_is_bounded_per_hostile_process() {
        let mut taker = CensusTaker::new(Scope::Host);
        let key = |pid| ProcessKey {
            pid,
            start_mono_ns: 1,
            exec_id: 1,
        };
        let scan = |pid: u32, gopcs: std::ops::Range<u64>| GoroutineScan {
            process: key(pid),
            runtime: "go1.26".into(),
            fresh: true,
            goroutines: Ok(crate::sources::goroutines::GoroutineTable {
                sites: gopcs
                    .map(|gopc| crate::sources::goroutines::GoroutineSite {
                        wait_reason: "chan receive".into(),
                        stack: vec![0x40_0000].into(),
                        gopc,
                        parked: 1,
                        arrived: vec![GoroutineMember {
                            goid: gopc,
                            seq: 0,
                            waitsince_ns: 0,
                        }],
                        departed: Vec::new(),
                        dated: Vec::new(),
                    })
                    .collect(),
                max_goid: 0,
            }),
            symbolizer: Box::new(|pcs: &[u64]| pcs.iter().map(|_| Frame::default()).collect()),
        };
        let records = ScanRecords::default();
        taker.take(&records, vec![scan(1, 0..10)]);
        for round in 0..3u64 {
            let start = 100 + round * MAX_CREATORS as u64;
            taker.take(&records, vec![scan(2, start..start + MAX_CREATORS as u64)]);
            assert!(taker.creators.len() <= MAX_CREATORS);
        }
        assert!(taker.creator(&key(1), 5).is_some());
    }
}
