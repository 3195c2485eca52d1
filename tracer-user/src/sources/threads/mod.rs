//! Source of blocked threads: every watched thread asleep in a system call, with where
//! it blocks and what it waits on, and the facts of every watched process.
//!
//! One pass ([`ThreadSource::scan`]) takes the thread records ([`record`]) from the
//! kernel's task iterator ([`bpf`]) or, on kernels without one, from `/proc`
//! ([`procfs`]), as [`choice`] decides; tells each record's wait ([`wait`], named after
//! its syscall, [`syscalls`]); unwinds each new wait's stack ([`unwind`]); and reads each
//! new process's name, executable and cgroup ([`facts`]). The census folds what it gives
//! and names a site's frames, the first time it sees the site, through the pass's
//! [`ThreadSymbolizer`].

pub mod bpf;
pub mod choice;
pub mod facts;
pub mod procfs;
pub mod record;
pub mod syscalls;
pub mod unwind;
pub mod wait;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use tracer_common::ProcessRecord;

use self::{
    choice::RecordSource,
    facts::FactsReader,
    record::{process_key, thread_key, user_regs},
    unwind::{ScanMaps, ThreadStacks},
    wait::WaitClassifier,
};
pub use self::{
    choice::{ThreadSourceChoice, ThreadSourceKind},
    record::{BlockedThread, ThreadWaiter},
    unwind::ThreadSymbolizer,
    wait::{FdKind, FutexWait, SocketKind, WaitDetail, prevailing_fd_kind},
};
use crate::{
    error::SourceError,
    host::kubelet::KubeletLogDirs,
    model::{ProcessFacts, ProcessKey, SiteKey, WaiterKind},
};

/// The thread side of a watch: its record source and what it keeps between scans (each
/// wait's stack, each process's facts, the wait labels).
pub struct ThreadSource {
    records: RecordSource,
    /// Which record source is in use, and why (one line, for logs).
    reason: String,
    waits: WaitClassifier,
    stacks: ThreadStacks,
    facts: FactsReader,
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
    /// Every watched thread asleep in a system call (futex wakes are no waits).
    pub blocked: Vec<BlockedThread>,
    /// Names a thread site's frames, while this scan's processes still run.
    pub symbolizer: ThreadSymbolizer<'a>,
}

impl ThreadSource {
    /// Opens the record source `choice` asks for (loads the kernel program, or falls
    /// back to /proc as `choice` allows); nothing is scanned yet.
    pub fn open(choice: ThreadSourceChoice) -> Result<Self, SourceError> {
        let (records, reason) = RecordSource::open(choice)?;
        Ok(Self {
            records,
            reason,
            waits: WaitClassifier::default(),
            stacks: ThreadStacks::new(),
            facts: FactsReader::default(),
        })
    }

    /// Where the kubelet's log directories are, which name pods and containers.
    pub fn set_kubelet_log_dirs(&mut self, dirs: KubeletLogDirs) {
        self.facts = FactsReader::new(dirs);
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

    /// One pass over the threads of the processes `watches` accepts.
    pub fn scan(&mut self, watches: &dyn Fn(u32) -> bool) -> Result<ThreadScan<'_>, SourceError> {
        let records = self.records.scan(watches)?;
        let now = Instant::now();
        let mut facts: HashMap<ProcessKey, Arc<ProcessFacts>> = (records.processes.iter())
            .filter(|r| watches(r.tgid))
            .map(|r| {
                let key = ProcessKey::of(r);
                (key, self.facts.of(key, r.comm_bytes(), now))
            })
            .collect();
        let live: HashSet<ProcessKey> = facts.keys().copied().collect();
        let mut maps = ScanMaps::default();
        let mut parked_at = HashSet::new();
        let mut blocked = Vec::new();
        for rec in records.waiters.iter().filter(|r| watches(r.tgid)) {
            let Some((wait, detail)) = self.waits.classify(rec) else {
                continue;
            };
            let process = process_key(rec);
            facts
                .entry(process)
                .or_insert_with(|| self.facts.of(process, rec.comm_bytes(), now));
            let (thread, regs) = (thread_key(rec), user_regs(rec));
            parked_at.insert((thread, regs));
            let stack = self.stacks.stack(rec.tgid, thread, regs, &mut maps);
            blocked.push(BlockedThread {
                process,
                site: SiteKey {
                    kind: WaiterKind::Thread,
                    wait,
                    stack,
                },
                waiter: ThreadWaiter::of(rec, detail),
            });
        }
        // Threads no longer parked there will never be seen again: forget their stacks.
        self.stacks.keep_only(&parked_at);
        self.facts.retain(|process| facts.contains_key(process));
        Ok(ThreadScan {
            at_mono_ns: records.at_mono_ns(),
            processes: records.processes,
            live,
            facts,
            blocked,
            symbolizer: self.stacks.symbolizer(maps),
        })
    }
}
