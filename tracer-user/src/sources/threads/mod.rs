//! Source of blocked threads: every watched thread asleep in a system call, with where
//! it blocks and what it waits on, and the facts of every watched process.
//!
//! One pass ([`ThreadSource::scan`]) takes the thread records ([`record`]) from the
//! kernel's task iterator ([`bpf`]) or, on kernels without one, from `/proc`
//! ([`procfs`]), as [`choice`] decides; tells each record's wait ([`wait`], named after
//! its syscall, [`syscalls`]); unwinds each new wait's stack ([`unwind`]); and reads each
//! new process's name, executable and cgroup ([`facts`]). The census folds what it gives
//! and names a site's frames, the first time it sees the site, through the pass's
//! [`ThreadSymbolizer`]. Every step that reads or parses one process (its facts, its
//! waits, its stacks, its frames' names) runs isolated ([`crate::isolate`]), and those
//! that read its maps, binaries and memory run on a reader thread the scan stops
//! waiting for past a deadline: a process whose analysis fails, or whose read blocks,
//! is reported unreadable, the rest of the pass goes on.

pub mod bpf;
pub mod choice;
pub mod facts;
pub mod holdings;
pub mod procfs;
pub mod record;
pub mod syscalls;
pub mod unwind;
pub mod wait;

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    sync::Arc,
    time::{Duration, Instant},
};

use tracer_common::{ProcessRecord, ThreadWaiterRecord};

use self::{
    choice::RecordSource,
    facts::FactsReader,
    record::{process_key, thread_key, user_regs},
    unwind::{StackReads, ThreadStacks},
    wait::WaitClassifier,
};
pub use self::{
    choice::{ThreadSourceChoice, ThreadSourceKind},
    record::{BlockedThread, ThreadWaiter},
    unwind::ThreadSymbolizer,
    wait::{FdKind, FutexWait, SocketKind, WaitDetail, prevailing_fd_kind},
};
use crate::{
    budget::degraded::Degradation,
    error::SourceError,
    host::kubelet::KubeletLogDirs,
    isolate::{Faults, ProcessFault, Reader, Step},
    model::{ProcessFacts, ProcessKey, SiteKey, WaiterKind},
    resources::ProcessUsage,
    sources::error::ReadError,
};

/// The thread side of a watch: its record source and what it keeps between scans (each
/// wait's stack, each process's facts, the wait labels, the unwinding and naming caches).
pub struct ThreadSource {
    records: RecordSource,
    /// Which record source is in use, and why (one line, for logs).
    reason: String,
    waits: WaitClassifier,
    stacks: ThreadStacks,
    /// Reads the processes' maps, binaries and stacks, on a thread the scan can stop
    /// waiting for.
    reads: Reader<StackReads>,
    /// Processes whose stacks or names lost something to a budget (their maps, a
    /// binary's unwind tables, debug info or symbols), and why, as the reader's jobs
    /// told them (until taken).
    degraded: Vec<(u32, Degradation)>,
    facts: FactsReader,
    /// The processes whose analysis failed (shared with the other sources and the census).
    faults: Arc<Faults>,
    /// Scans done: the maps read in one are not used in the next.
    scans: u64,
}

/// What the thread side of one scan found.
pub struct ThreadScan<'a> {
    /// CLOCK_MONOTONIC time of the scan.
    pub at_mono_ns: u64,
    /// Every user process the source listed (watched or not: the iterator lists the
    /// host), for the goroutine source to find the Go ones among.
    pub processes: Vec<ProcessRecord>,
    /// The watched processes alive now (listed by the source).
    pub live: HashSet<ProcessKey>,
    /// The facts of the live processes, and of any other process a blocked thread is of
    /// (one whose main thread exited is not listed).
    pub facts: HashMap<ProcessKey, Arc<ProcessFacts>>,
    /// Every watched thread asleep in a system call (futex wakes are no waits), but
    /// those of the processes in `unreadable`.
    pub blocked: Vec<BlockedThread>,
    /// The watched processes whose threads could not be read at this scan, and why.
    pub unreadable: HashMap<ProcessKey, ReadError>,
    /// What each watched process holds (tasks, mappings, memory) now.
    pub usage: HashMap<ProcessKey, ProcessUsage>,
    /// Tasks per real uid on the host, when the source listed every process.
    pub tasks_by_uid: Option<HashMap<u32, u64>>,
    /// Names a thread site's frames, while this scan's processes still run.
    pub symbolizer: ThreadSymbolizer<'a>,
}

impl ThreadSource {
    /// Opens the record source `choice` asks for (loads the kernel program, or falls
    /// back to /proc as `choice` allows); nothing is scanned yet. A process whose
    /// analysis fails is recorded in `faults`; a read of one that blocks is abandoned
    /// after `deadline` (see [`Reader`]).
    pub fn open(
        choice: ThreadSourceChoice,
        faults: Arc<Faults>,
        deadline: Duration,
    ) -> Result<Self, SourceError> {
        let (records, reason) = RecordSource::open(choice)?;
        Ok(Self {
            records,
            reason,
            waits: WaitClassifier::default(),
            stacks: ThreadStacks::default(),
            reads: Reader::new("threads", StackReads::default, faults.clone(), deadline),
            degraded: Vec::new(),
            facts: FactsReader::default(),
            faults,
            scans: 0,
        })
    }

    /// Where the kubelet's log directories are, which name pods and containers.
    pub fn set_kubelet_log_dirs(&mut self, dirs: KubeletLogDirs) {
        self.facts = FactsReader::new(dirs);
    }

    /// Takes the processes whose stacks or names lost something to a budget since the
    /// last call, and why.
    pub fn take_degraded(&mut self) -> Vec<(u32, Degradation)> {
        std::mem::take(&mut self.degraded)
    }

    /// The record source in use.
    pub fn kind(&self) -> ThreadSourceKind {
        self.records.kind()
    }

    /// Which record source is in use and why, e.g. "procfs: no bpf_task_pt_regs (Linux
    /// 5.15+)".
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// One pass over the threads of the processes `watches` accepts. Each process is
    /// analysed in isolated steps ([`Faults::guard`]): one that fails is reported in
    /// `unreadable`, the others are not affected.
    pub fn scan(&mut self, watches: &dyn Fn(u32) -> bool) -> Result<ThreadScan<'_>, SourceError> {
        let records = self.records.scan(watches)?;
        self.scans += 1;
        let now = Instant::now();
        let mut unreadable = HashMap::new();
        let mut facts = HashMap::new();
        for r in records.processes.iter().filter(|r| watches(r.tgid)) {
            let key = ProcessKey::of(r);
            let read = self.process_facts(key, r.comm_bytes(), now);
            facts.insert(
                key,
                read.unwrap_or_else(|fault| {
                    unreadable.insert(key, fault.into());
                    listed_facts(r.comm_bytes())
                }),
            );
        }
        let live: HashSet<ProcessKey> = facts.keys().copied().collect();
        let usage = (records.processes.iter())
            .filter(|r| watches(r.tgid))
            .map(|r| (ProcessKey::of(r), ProcessUsage::of(r)))
            .collect();
        let mut parked_at = HashSet::new();
        let mut blocked = Vec::new();
        for (process, waiters) in by_process(records.waiters.iter().filter(|r| watches(r.tgid))) {
            // A process whose main thread exited is not listed: named by its threads.
            if let Entry::Vacant(unlisted) = facts.entry(process) {
                let comm = waiters[0].comm_bytes();
                let read = self.process_facts(process, comm, now);
                unlisted.insert(read.unwrap_or_else(|fault| {
                    unreadable.insert(process, fault.into());
                    listed_facts(comm)
                }));
            }
            for rec in &waiters {
                parked_at.insert((thread_key(rec), user_regs(rec)));
            }
            match self.blocked_threads(process, &waiters) {
                Ok(threads) => blocked.extend(threads),
                Err(reason) => {
                    unreadable.insert(process, reason);
                }
            }
        }
        // Threads no longer parked there will never be seen again: forget their stacks.
        self.stacks.keep_only(&parked_at);
        self.facts.retain(|process| facts.contains_key(process));
        Ok(ThreadScan {
            at_mono_ns: records.at_mono_ns(),
            tasks_by_uid: tasks_by_uid(&records),
            usage,
            processes: records.processes,
            live,
            facts,
            blocked,
            unreadable,
            symbolizer: self.symbolizer(),
        })
    }

    /// The facts of process `key` (read once per process instance), in its own step.
    fn process_facts(
        &mut self,
        key: ProcessKey,
        comm: &[u8],
        now: Instant,
    ) -> Result<Arc<ProcessFacts>, ProcessFault> {
        let facts = &mut self.facts;
        self.faults
            .guard(key, Step::Facts, || facts.of(key, comm, now))
    }

    /// The blocked threads of one process: what each waits on, and its stack (unwound
    /// when the wait is new, on the reader thread), each in its own step of the
    /// process's analysis.
    fn blocked_threads(
        &mut self,
        process: ProcessKey,
        waiters: &[&ThreadWaiterRecord],
    ) -> Result<Vec<BlockedThread>, ReadError> {
        let (faults, waits) = (&self.faults, &mut self.waits);
        let classified: Vec<_> = faults.guard(process, Step::Waits, || {
            (waiters.iter())
                .filter_map(|rec| Some((*rec, waits.classify(rec)?)))
                .collect()
        })?;
        let new: Vec<_> = (classified.iter())
            .map(|(rec, _)| (thread_key(rec), user_regs(rec)))
            .filter(|&(thread, regs)| self.stacks.get(thread, regs).is_none())
            .collect();
        if !new.is_empty() {
            let scan = self.scans;
            let at = new.clone();
            let (stacks, cut) = self.reads.run(process, Step::Unwind, move |reads| {
                (reads.unwind(scan, process.pid, &at), reads.take_degraded())
            })?;
            self.degraded.extend(cut);
            let stacks = stacks?;
            for ((thread, regs), stack) in new.into_iter().zip(stacks) {
                self.stacks.insert(thread, regs, stack);
            }
        }
        Ok(classified
            .into_iter()
            .filter_map(|(rec, (wait, detail))| {
                let (stack, stack_bytes) = self.stacks.get(thread_key(rec), user_regs(rec))?;
                Some(BlockedThread {
                    process,
                    site: SiteKey {
                        kind: WaiterKind::Thread,
                        wait,
                        stack,
                    },
                    waiter: ThreadWaiter::of(rec, detail, stack_bytes),
                })
            })
            .collect())
    }

    /// Names thread sites' frames for the census, each on the reader thread, in its own
    /// step of its process's analysis.
    fn symbolizer(&mut self) -> ThreadSymbolizer<'_> {
        let (reads, degraded, scan) = (&mut self.reads, &mut self.degraded, self.scans);
        Box::new(move |process, stack| {
            let stack = stack.to_vec();
            let (frames, cut) = reads.run(process, Step::Symbolize, move |reads| {
                (
                    reads.symbolize(scan, process.pid, &stack),
                    reads.take_degraded(),
                )
            })?;
            degraded.extend(cut);
            Ok(frames)
        })
    }
}

/// The blocked threads' records by process, processes in the order first seen.
fn by_process<'r>(
    records: impl Iterator<Item = &'r ThreadWaiterRecord>,
) -> Vec<(ProcessKey, Vec<&'r ThreadWaiterRecord>)> {
    let mut index: HashMap<ProcessKey, usize> = HashMap::new();
    let mut out: Vec<(ProcessKey, Vec<&ThreadWaiterRecord>)> = Vec::new();
    for rec in records {
        let process = process_key(rec);
        let i = *index.entry(process).or_insert_with(|| {
            out.push((process, Vec::new()));
            out.len() - 1
        });
        out[i].1.push(rec);
    }
    out
}

/// The facts of a process that cannot be read: the name the kernel listed.
fn listed_facts(comm: &[u8]) -> Arc<ProcessFacts> {
    Arc::new(ProcessFacts {
        comm: String::from_utf8_lossy(comm).into_owned(),
        ..ProcessFacts::default()
    })
}

/// Tasks per real uid over the processes the records list, when they list them all.
fn tasks_by_uid(records: &record::ThreadRecords) -> Option<HashMap<u32, u64>> {
    if !records.lists_every_process {
        return None;
    }
    let mut tasks = HashMap::new();
    for r in &records.processes {
        let usage = ProcessUsage::of(r);
        if let Some(uid) = usage.uid {
            *tasks.entry(uid).or_insert(0) += u64::from(usage.threads);
        }
    }
    Some(tasks)
}
