//! Source of parked goroutines: each Go process's own goroutine table (`runtime.allgs`),
//! read from its memory with process_vm_readv, paced by what reading it costs.
//!
//! Why not uprobes: one uprobe on `runtime.gopark` made an HTTP service 4x slower
//! (PLATFORM.md). Reading memory costs the Go program nothing; leakscope pays the CPU,
//! which [`ReadPacing`] bounds per process. This module keeps one entry per process
//! instance: what it runs ([`Programs`]), its incremental table ([`ParkedTable`]), when
//! it may be read again; a process whose analysis fails (in any source) is unreadable
//! from then on.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use tracer_common::ProcessRecord;

use crate::{
    budget::{self, MemoryBudget, MemoryKind},
    host::cpu::thread_cpu_time,
    isolate::{Faults, ProcessFault, Reader, Step},
    model::{ProcessKey, Runtime},
    sources::error::ReadError,
    sources::go::{
        executable::GoProgram,
        g::GoroutineReadError,
        parked::{GoroutineTable, ParkedTable, ReadBuffers},
        programs::{BlockingReads, ProcessProgram, Programs},
        symbolize::{GoSymbolizer, bare_symbolizer, symbolize},
    },
};

/// The goroutines of one Go process in one scan, as the goroutine source read them.
pub struct GoroutineScan {
    pub process: ProcessKey,
    /// What it runs: the Go release that built it, or [`Runtime::Unknown`] when its
    /// executable could not be read to tell (its goroutines are then unreadable).
    pub runtime: Runtime,
    /// The parked goroutines, or why they could not be read.
    pub goroutines: Result<GoroutineTable, ReadError>,
    /// Whether the goroutines were read at this scan: a huge process is read less often
    /// (see [`ReadPacing`]); in between, `goroutines` is empty and its sites keep their
    /// last read's state.
    pub fresh: bool,
    /// Names the frames of this process's goroutine stacks.
    pub symbolizer: GoSymbolizer,
}

/// The default [`ReadPacing::time_budget`]: twenty times what a million goroutines take.
pub const DEFAULT_READ_TIME_BUDGET: Duration = Duration::from_secs(5);

/// How often a Go process is read: at every scan, unless its reads are expensive; and
/// how long one read may take.
#[derive(Clone, Copy, Debug)]
pub struct ReadPacing {
    /// The share of one core that reading one process may take on average: after a read
    /// that cost `c` seconds of CPU, the next waits at least `c / cpu_share` seconds.
    pub cpu_share: f64,
    /// The longest pause between two reads, however expensive: the verdict needs reads
    /// within its window.
    pub max_interval: Duration,
    /// The longest one read of one process may take (wall clock); past it the read is
    /// abandoned, the process is unreadable for that scan with the reason, and its table
    /// is read afresh next time. A million goroutines take about a quarter of a second.
    pub time_budget: Duration,
}

impl ReadPacing {
    /// Every scan reads every process: for short diagnoses, where each read counts.
    pub const EVERY_SCAN: Self = Self {
        cpu_share: 1.0,
        max_interval: Duration::ZERO,
        time_budget: DEFAULT_READ_TIME_BUDGET,
    };

    /// For watching without end (the daemon, top): a huge process (a million goroutines
    /// costs a few tenths of a second of CPU per read) is read less often than every
    /// scan, so that reading it takes at most 2% of one core, but at least every 20 s, so
    /// that a leak there is judged from several reads within the first minute.
    pub const WATCHING: Self = Self {
        cpu_share: 0.02,
        max_interval: Duration::from_secs(20),
        time_budget: DEFAULT_READ_TIME_BUDGET,
    };

    /// The pause a read that cost `cpu` earns.
    pub fn pause_after(&self, cpu: Duration) -> Duration {
        if !(self.cpu_share > 0.0 && self.cpu_share.is_finite()) {
            return self.max_interval;
        }
        cpu.div_f64(self.cpu_share).min(self.max_interval)
    }
}

impl Default for ReadPacing {
    fn default() -> Self {
        Self::EVERY_SCAN
    }
}

/// One Go process being read.
struct GoProcess {
    program: Arc<GoProgram>,
    bias: u64,
    /// The executable's path as the process sees it, to label its frames.
    exe: Arc<str>,
    /// Its goroutine table as of the previous read.
    table: ParkedTable,
    /// What its table holds of the budget's `goroutines` share.
    charged: u64,
    /// When the process may be read again: a read that cost much CPU is followed by a
    /// longer pause (see [`ReadPacing`]).
    next_read: Option<Instant>,
}

impl GoProcess {
    /// Bounds the table by what the `goroutines` share leaves it (at most the
    /// per-process quota); a table over it is not read, and says so.
    fn bound_table(&mut self, budget: &MemoryBudget) {
        let kind = MemoryKind::Goroutines;
        let others = budget.held(kind).saturating_sub(self.charged);
        let room = budget.share(kind).saturating_sub(others);
        self.table.set_max_bytes(room.min(budget.quota(kind)));
    }

    /// Charges what the table holds after a read.
    fn charge_table(&mut self, budget: &MemoryBudget) {
        let now = self.table.heap_bytes();
        budget.adjust(MemoryKind::Goroutines, self.charged, now);
        self.charged = now;
    }
}

impl Drop for GoProcess {
    fn drop(&mut self) {
        budget::global().release(MemoryKind::Goroutines, self.charged);
    }
}

/// One watched process instance.
enum Watched {
    Native,
    Go(Box<GoProcess>),
    Unreadable(Runtime, ReadError),
}

impl From<ProcessProgram> for Watched {
    fn from(program: ProcessProgram) -> Self {
        match program {
            ProcessProgram::Native => Self::Native,
            ProcessProgram::Go { program, bias, exe } => Self::Go(Box::new(GoProcess {
                program,
                bias,
                exe,
                table: ParkedTable::default(),
                charged: 0,
                next_read: None,
            })),
            ProcessProgram::Unreadable(runtime, reason) => {
                Self::Unreadable(runtime, ReadError::Go(reason))
            }
        }
    }
}

/// Reads the goroutine tables of every Go process; caches executables and stacks.
pub struct GoroutineSource {
    programs: Programs,
    processes: HashMap<ProcessKey, Watched>,
    /// Reads executables and goroutine tables on a thread the scan can stop waiting
    /// for; it keeps the read buffers.
    reads: Reader<ReadBuffers>,
    pacing: ReadPacing,
    /// The processes whose analysis failed (shared with the other sources and the census).
    faults: Arc<Faults>,
}

impl GoroutineSource {
    /// A source reading as `pacing` says (a read that blocks is abandoned after its
    /// time budget, see [`Reader`]); a process whose analysis fails is recorded in
    /// `faults` (and one recorded there by another source is not read).
    pub fn new(pacing: ReadPacing, faults: Arc<Faults>) -> Self {
        Self {
            programs: Programs::default(),
            processes: HashMap::new(),
            reads: Reader::new(
                "goroutines",
                ReadBuffers::default,
                faults.clone(),
                pacing.time_budget,
            ),
            pacing,
            faults,
        }
    }

    /// Reads the parked goroutines of every watched Go process among `processes`.
    pub fn scan(
        &mut self,
        processes: &[ProcessRecord],
        watches: impl Fn(u32) -> bool,
    ) -> Vec<GoroutineScan> {
        let mut live = HashSet::new();
        let mut out = Vec::new();
        for rec in processes {
            if !watches(rec.tgid) {
                continue;
            }
            let key = ProcessKey::of(rec);
            live.insert(key);
            if !self.processes.contains_key(&key) {
                // Failed in another source before it was known to be Go: that source
                // reports it.
                if self.faults.of(&key).is_some() {
                    continue;
                }
                let mut reads = ClassifyReads {
                    reader: &mut self.reads,
                    key,
                };
                let watched = match self.programs.classify(key.pid, &mut reads) {
                    Ok(program) => Watched::from(program),
                    // Not known to be Go (a read of it blocked, or failed): unreadable
                    // all the same, the runtime unknown.
                    Err(fault) => Watched::Unreadable(Runtime::Unknown, fault.into()),
                };
                self.processes.insert(key, watched);
            }
            if let Some(scan) = self.scan_one(key) {
                out.push(scan);
            }
        }
        // Processes that exited or exec'd are gone for good.
        self.processes.retain(|k, _| live.contains(k));
        self.programs.prune();
        out
    }

    /// Reads one watched process (when it is Go), or says why it cannot be read.
    fn scan_one(&mut self, key: ProcessKey) -> Option<GoroutineScan> {
        let unreadable = |runtime, reason| GoroutineScan {
            process: key,
            runtime,
            goroutines: Err(reason),
            fresh: true,
            symbolizer: bare_symbolizer(),
        };
        let watched = self.processes.get_mut(&key)?;
        // A step of its analysis failed since (here or in another source).
        if let (Watched::Go(process), Some(fault)) = (&*watched, self.faults.of(&key)) {
            *watched = Watched::Unreadable(Runtime::Go(process.program.release), fault.into());
        }
        match watched {
            Watched::Native => None,
            Watched::Unreadable(runtime, reason) => Some(unreadable(*runtime, reason.clone())),
            Watched::Go(process) => {
                let read = read_paced(key, process, &mut self.reads, &self.pacing);
                match read {
                    Ok(scan) => Some(scan),
                    Err(fault) => {
                        // Never read again: the next read would likely fail alike.
                        let runtime = Runtime::Go(process.program.release);
                        *watched = Watched::Unreadable(runtime, fault.clone().into());
                        Some(unreadable(runtime, fault.into()))
                    }
                }
            }
        }
    }
}

/// The reads of one process's classification, on the goroutine source's reader.
struct ClassifyReads<'r> {
    reader: &'r mut Reader<ReadBuffers>,
    key: ProcessKey,
}

impl BlockingReads for ClassifyReads<'_> {
    fn run<R: Send + 'static>(
        &mut self,
        read: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ProcessFault> {
        self.reader.run(self.key, Step::GoProgram, move |_| read())
    }
}

/// Reads a Go process's goroutines when its pacing allows (else a scan that is not
/// fresh), on the reader thread, in its own step of the process's analysis: a failure
/// (a panic, a read that blocked) is returned, not spread.
fn read_paced(
    key: ProcessKey,
    process: &mut GoProcess,
    reads: &mut Reader<ReadBuffers>,
    pacing: &ReadPacing,
) -> Result<GoroutineScan, ProcessFault> {
    let now = Instant::now();
    let fresh = process.next_read.is_none_or(|at| now >= at);
    let goroutines = if fresh {
        let budget = budget::global();
        process.bound_table(budget);
        // The table goes to the reader and comes back with the read; a read abandoned
        // keeps it (the process is read afresh once it answers).
        let mut table = std::mem::take(&mut process.table);
        let (program, bias, time_budget) =
            (process.program.clone(), process.bias, pacing.time_budget);
        let (table, read, cost) = reads.run(key, Step::GoTable, move |bufs| {
            let cpu = thread_cpu_time();
            let read = table.read(key.pid, &program, bias, bufs, time_budget);
            (table, read, thread_cpu_time().saturating_sub(cpu))
        })?;
        process.table = table;
        process.charge_table(budget);
        if matches!(read, Err(GoroutineReadError::OverMemoryBudget { .. })) {
            budget.refused(MemoryKind::Goroutines);
        }
        process.next_read = Some(now + pacing.pause_after(cost));
        log::debug!(
            "goroutines of {}: {} read in {cost:?} of CPU",
            key.pid,
            process.table.goroutines()
        );
        read.map_err(|e| ReadError::Go(e.into()))
    } else {
        Ok(GoroutineTable::default())
    };
    let (program, bias, exe) = (process.program.clone(), process.bias, process.exe.clone());
    Ok(GoroutineScan {
        process: key,
        runtime: Runtime::Go(process.program.release),
        goroutines,
        fresh,
        symbolizer: Box::new(move |pcs: &[u64]| symbolize(&program, bias, &exe, pcs)),
    })
}

/// The goroutine reader over a fake process memory ([`crate::host::memory::fake`]), for
/// the fuzz targets: two reads of `program`'s table at load bias `bias`, each within
/// `time_budget` as `--read-budget` bounds a scan's (the second goes through the
/// incremental state), naming every stack found. Returns how many parked goroutines the
/// last read reported.
#[cfg(feature = "fuzzing")]
pub fn fuzz_read_goroutines(
    program: Arc<GoProgram>,
    bias: u64,
    time_budget: Duration,
) -> Result<usize, crate::sources::go::g::GoroutineReadError> {
    let pid = crate::host::memory::fake::FAKE_PID;
    let mut table = ParkedTable::default();
    let mut bufs = ReadBuffers::default();
    let mut parked = 0;
    for _ in 0..2 {
        let read = table.read(pid, &program, bias, &mut bufs, time_budget)?;
        for site in &read.sites {
            symbolize(&program, bias, "fuzz", &site.stack);
        }
        parked = read.sites.iter().map(|s| s.parked as usize).sum();
    }
    Ok(parked)
}
