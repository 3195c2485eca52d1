//! Source of parked goroutines: each Go process's own goroutine table (`runtime.allgs`),
//! read from its memory with process_vm_readv at every scan.
//!
//! Why not uprobes: one uprobe on `runtime.gopark` made an HTTP service 4x slower
//! (PLATFORM.md). Reading memory costs the Go program nothing; leakscope pays the CPU.
//! The runtime mutates the table while we read it, so every read is checked: a `g` that
//! moved between reading it and walking its stack is dropped from this scan and seen on
//! the next one.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use tracer_common::ProcessRecord;

use crate::{
    fasthash::IntMap,
    host::{
        binary::{self, FileIdent, LoadSegment},
        memory::read_memory,
        procfs,
    },
    isolate,
    model::{Frame, GoroutineMember, ProcessKey, StackKey},
    sources::{
        go::{
            elf::PF_X,
            executable::{analyse_executable, open_executable},
            layout::GoRuntimeLayout,
        },
        parked::{ParkedTable, ReadBuffers},
    },
};

/// Names the frames of one process's goroutine stacks.
pub type GoSymbolizer = Box<dyn Fn(&[u64]) -> Vec<Frame>>;

/// The goroutines of one Go process in one scan, as the goroutine source read them.
pub struct GoroutineScan {
    pub process: ProcessKey,
    /// "go1.NN".
    pub runtime: String,
    /// The parked goroutines, or why they could not be read.
    pub goroutines: Result<GoroutineTable, String>,
    /// Whether the goroutines were read at this scan: a huge process is read less often
    /// (see [`ReadPacing`]); in between, `goroutines` is empty and its sites keep their
    /// last read's state.
    pub fresh: bool,
    /// Names the frames of this process's goroutine stacks.
    pub symbolizer: GoSymbolizer,
}

/// What one read of a Go process's goroutine table found: each site's population, and
/// the parks that began, ended or were dated there since the previous read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoroutineTable {
    pub sites: Vec<GoroutineSite>,
    /// The highest id of a live goroutine: ids count up, so this dates goroutine ids.
    pub max_goid: u64,
}

/// Goroutines parked alike: the same wait reason, stack and creator.
#[derive(Clone, Debug, PartialEq)]
pub struct GoroutineSite {
    pub wait_reason: Arc<str>,
    /// Absolute pcs, innermost first (the parking pc, then return addresses).
    pub stack: StackKey,
    /// The return address of the `go` statement that created them.
    pub gopc: u64,
    /// Parked here now (0: the last of them left since the previous read).
    pub parked: u32,
    /// Parks that began since the previous read.
    pub arrived: Vec<GoroutineMember>,
    /// Parks that ended since the previous read.
    pub departed: Vec<GoroutineMember>,
    /// Parks that go on and whose `g.waitsince` a GC cycle set since the previous read.
    pub dated: Vec<GoroutineMember>,
}

/// `runtime._Gwaiting`: parked by gopark. The GC's `_Gscan` bit (0x1000) is masked off.
pub(super) const G_WAITING: u32 = 4;
/// `runtime._Gidle` and `runtime._Gdead`: not a live goroutine.
pub(super) const G_IDLE: u32 = 0;
pub(super) const G_DEAD: u32 = 6;
const G_SCAN_BIT: u32 = 0x1000;
/// More goroutines than this is a misread or a hostile process, not a program (a real
/// 1M-goroutine program uses GBs; 4M pointers cost leakscope 32 MB).
pub(super) const MAX_GOROUTINES: u64 = 4_000_000;
/// Start pcs remembered per process as runtime-internal or not; a process whose
/// goroutines start at ever new pcs (a hostile one) has the cache cleared past this.
const MAX_SYSTEM_STARTS: usize = 4096;
/// A parked goroutine's used stack beyond this is not walked further.
pub(super) const MAX_STACK_READ: u64 = 256 * 1024;
/// Stack bytes read in full per process and read (real parked goroutines use a few
/// KiB each); past it each stack is read only this far from its top.
pub(super) const STACK_BYTES_PER_SCAN: usize = 32 << 20;
pub(super) const OVER_BUDGET_STACK_READ: usize = 4096;
/// Executables remembered as not Go (or unreadable) before the list is cleared.
const MAX_KNOWN_EXECUTABLES: usize = 4096;
/// Frames kept per goroutine stack.
const MAX_FRAMES: usize = 64;

pub use crate::sources::go::executable::GoProgram;

/// What an executable turned out to be.
#[derive(Clone)]
enum Executable {
    Native,
    Go(Arc<GoProgram>),
    /// A Go program leakscope cannot read: runtime and reason.
    Unreadable(String, String),
}

/// One Go process being watched.
struct GoProcess {
    program: Arc<GoProgram>,
    bias: u64,
    /// The executable's path as the process sees it, to label its frames.
    exe: Arc<str>,
    /// Its goroutine table as of the previous read.
    table: ParkedTable,
    /// When the process may be read again: a read that cost much CPU is followed by a
    /// longer pause (see [`ReadPacing`]).
    next_read: Option<Instant>,
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

/// CPU time this thread has used: what a read cost, whatever else runs on the machine.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

enum Watched {
    Native,
    Go(Box<GoProcess>),
    Unreadable(String, String),
}

fn bare_symbolizer() -> GoSymbolizer {
    Box::new(|pcs: &[u64]| {
        pcs.iter()
            .map(|&address| Frame {
                address,
                ..Frame::default()
            })
            .collect()
    })
}

/// Reads the goroutine tables of every Go process; caches executables and stacks.
#[derive(Default)]
pub struct GoroutineSource {
    /// By file identity: one analysis per executable.
    executables: HashMap<FileIdent, Executable>,
    processes: HashMap<ProcessKey, Watched>,
    bufs: ReadBuffers,
    pacing: ReadPacing,
}

impl GoroutineSource {
    pub fn new(pacing: ReadPacing) -> Self {
        Self {
            pacing,
            ..Self::default()
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
                let watched = isolate::per_process(key.pid, || self.classify(key.pid))
                    .unwrap_or_else(|panic| unreadable_after(key.pid, "unknown", &panic));
                self.processes.insert(key, watched);
            }
            match self.processes.get_mut(&key) {
                Some(Watched::Go(process)) => {
                    match read_paced(key, process, &mut self.bufs, &self.pacing) {
                        Ok(scan) => out.push(scan),
                        Err(panic) => {
                            // Never read again: the next read would likely panic alike.
                            let runtime = process.program.runtime.clone();
                            let watched = unreadable_after(key.pid, &runtime, &panic);
                            self.processes.insert(key, watched);
                            out.push(GoroutineScan {
                                process: key,
                                runtime,
                                goroutines: Err(panic.to_string()),
                                fresh: true,
                                symbolizer: bare_symbolizer(),
                            });
                        }
                    }
                }
                Some(Watched::Unreadable(runtime, reason)) => out.push(GoroutineScan {
                    process: key,
                    runtime: runtime.clone(),
                    goroutines: Err(reason.clone()),
                    fresh: true,
                    symbolizer: bare_symbolizer(),
                }),
                _ => {}
            }
        }
        // Processes that exited or exec'd are gone for good.
        self.processes.retain(|k, _| live.contains(k));
        self.prune_executables();
        out
    }

    /// Forgets analysed Go executables no live process runs (each holds its pclntab, a
    /// few MB), and bounds the list of non-Go executables.
    fn prune_executables(&mut self) {
        self.executables.retain(|_, exe| match exe {
            Executable::Go(program) => Arc::strong_count(program) > 1,
            Executable::Native | Executable::Unreadable(..) => true,
        });
        if self.executables.len() > MAX_KNOWN_EXECUTABLES {
            self.executables
                .retain(|_, exe| matches!(exe, Executable::Go(_)));
        }
    }

    /// Decides once per process instance whether it is a Go program we can read.
    fn classify(&mut self, pid: u32) -> Watched {
        let exe_path = format!("/proc/{pid}/exe");
        // Opened once: identity and bytes come from the same file, whatever the process
        // execs or renames meanwhile.
        let Some(opened) = open_executable(pid) else {
            return Watched::Native;
        };
        let id = opened.ident;
        let exe = match self.executables.get(&id) {
            Some(exe) => exe.clone(),
            None => {
                let exe = match analyse_executable(&opened) {
                    Ok(None) => Executable::Native,
                    Ok(Some(program)) => Executable::Go(Arc::new(program)),
                    Err(e) => {
                        log::debug!("{exe_path}: unreadable Go binary: {e}");
                        Executable::Unreadable(e.runtime, e.kind.to_string())
                    }
                };
                self.executables.insert(id, exe.clone());
                exe
            }
        };
        match exe {
            Executable::Native => Watched::Native,
            Executable::Unreadable(runtime, reason) => Watched::Unreadable(runtime, reason),
            Executable::Go(program) => match load_bias(pid, &program, id.ino) {
                Some(bias) => Watched::Go(Box::new(GoProcess {
                    program,
                    bias,
                    exe: std::fs::read_link(&exe_path)
                        .map(|p| p.to_string_lossy().into())
                        .unwrap_or_else(|_| "".into()),
                    table: ParkedTable::default(),
                    next_read: None,
                })),
                None => Watched::Unreadable(
                    program.runtime.clone(),
                    "cannot find the executable's mapping in /proc/PID/maps".into(),
                ),
            },
        }
    }
}

/// Reads a Go process's goroutines when its pacing allows (else a scan that is not
/// fresh); a panic in the reader is returned, not spread.
fn read_paced(
    key: ProcessKey,
    process: &mut GoProcess,
    bufs: &mut ReadBuffers,
    pacing: &ReadPacing,
) -> Result<GoroutineScan, isolate::AnalysisPanic> {
    let now = Instant::now();
    let fresh = process.next_read.is_none_or(|at| now >= at);
    let goroutines = if fresh {
        let cpu = thread_cpu_time();
        let read = isolate::per_process(key.pid, || {
            process.table.read(
                key.pid,
                &process.program,
                process.bias,
                bufs,
                pacing.time_budget,
            )
        })?;
        let cost = thread_cpu_time().saturating_sub(cpu);
        process.next_read = Some(now + pacing.pause_after(cost));
        log::debug!(
            "goroutines of {}: {} read in {cost:?} of CPU",
            key.pid,
            process.table.goroutines()
        );
        read
    } else {
        Ok(GoroutineTable::default())
    };
    let (program, bias, exe) = (process.program.clone(), process.bias, process.exe.clone());
    Ok(GoroutineScan {
        process: key,
        runtime: process.program.runtime.clone(),
        goroutines,
        fresh,
        symbolizer: Box::new(move |pcs: &[u64]| symbolize(&program, bias, &exe, pcs)),
    })
}

/// A process whose analysis panicked: unreadable from now on, with the reason.
fn unreadable_after(pid: u32, runtime: &str, panic: &isolate::AnalysisPanic) -> Watched {
    log::warn!("pid {pid}: {panic}");
    Watched::Unreadable(runtime.to_string(), panic.to_string())
}

/// avma = svma + bias, from the executable's first mapping in the process.
fn load_bias(pid: u32, program: &GoProgram, inode: u64) -> Option<u64> {
    if !program.binary.is_pie() {
        return Some(0);
    }
    let loads: Vec<LoadSegment> = program
        .binary
        .segments()
        .iter()
        .map(|s| LoadSegment {
            offset: s.file_off,
            vaddr: s.addr,
            filesz: s.file_size,
            executable: s.flags & PF_X != 0,
        })
        .collect();
    let maps = procfs::read_maps(pid).ok()?;
    maps.iter()
        .filter(|m| m.inode == inode)
        .find_map(|m| binary::load_bias(&loads, m))
}

fn word(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Why a Go process's goroutine table could not be read (the process is then reported
/// unreadable with this reason).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoroutineReadError {
    #[error("implausible allglen {0} (more than {MAX_GOROUTINES} goroutines)")]
    ImplausibleAllglen(u64),
    #[error("short read at {0:#x}")]
    ShortRead(u64),
    #[error("read at {addr:#x}: errno {errno}")]
    Unreadable { addr: u64, errno: i32 },
    #[error("allgs at {addr:#x}: errno {errno}")]
    TableUnreadable { addr: u64, errno: i32 },
    #[error(
        "reading its goroutines took over {}, the per-process time budget (--read-budget); read afresh next time",
        humantime_secs(*.0)
    )]
    OverTimeBudget(Duration),
}

/// A duration as seconds with up to three decimals, for messages.
fn humantime_secs(d: Duration) -> String {
    format!("{} s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl From<GoroutineReadError> for String {
    fn from(e: GoroutineReadError) -> String {
        e.to_string()
    }
}

/// A declared table length is believed only up to [`MAX_GOROUTINES`].
pub(super) fn check_allglen(allglen: u64) -> Result<(), GoroutineReadError> {
    if allglen > MAX_GOROUTINES {
        return Err(GoroutineReadError::ImplausibleAllglen(allglen));
    }
    Ok(())
}

pub(super) fn read_word(pid: u32, addr: u64) -> Result<u64, GoroutineReadError> {
    let mut b = [0u8; 8];
    match read_memory(pid, addr, &mut b) {
        Ok(8) => Ok(u64::from_le_bytes(b)),
        Ok(_) => Err(GoroutineReadError::ShortRead(addr)),
        Err(e) => Err(GoroutineReadError::Unreadable {
            addr,
            errno: e.raw_os_error().unwrap_or(0),
        }),
    }
}

/// The fields of a `g` that leakscope uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ParkedG {
    /// `atomicstatus` with the scan bit masked.
    pub(super) status: u32,
    pub(super) goid: u64,
    /// `trackingSeq`: changes whenever the goroutine runs (0 where the layout lacks it).
    pub(super) seq: u8,
    pub(super) wait_reason: u8,
    pub(super) sp: u64,
    pub(super) pc: u64,
    pub(super) bp: u64,
    pub(super) stack_hi: u64,
    pub(super) gopc: u64,
    pub(super) startpc: u64,
    pub(super) waitsince: u64,
}

pub(super) fn parse_g(bytes: &[u8], l: &GoRuntimeLayout) -> Option<ParkedG> {
    let at = |off: u64| word(bytes, off as usize);
    let status = u32::from_le_bytes(
        bytes
            .get(l.g_atomicstatus as usize..l.g_atomicstatus as usize + 4)?
            .try_into()
            .ok()?,
    ) & !G_SCAN_BIT;
    Some(ParkedG {
        status,
        goid: at(l.g_goid)?,
        seq: l
            .g_tracking_seq
            .and_then(|o| bytes.get(o as usize).copied())
            .unwrap_or(0),
        wait_reason: *bytes.get(l.g_waitreason as usize)?,
        sp: at(l.g_sched_sp)?,
        pc: at(l.g_sched_pc)?,
        bp: at(l.g_sched_bp)?,
        stack_hi: at(l.g_stack_hi)?,
        gopc: at(l.g_gopc)?,
        startpc: at(l.g_startpc)?,
        // An int64; a negative value is a misread, taken as unset.
        waitsince: at(l.g_waitsince).filter(|&w| (w as i64) > 0).unwrap_or(0),
    })
}

/// User-space addresses on x86_64 (5-level paging) lie below this: a `g` pointer above
/// it is garbage, and keeping them low keeps `gptr + size` arithmetic from wrapping.
const USER_SPACE_END: u64 = 1 << 57;

/// Pointers read from the goroutine table per process_vm_readv call: a declared length
/// costs memory only for the pointers actually there, never `allglen * 8` up front.
const ALLGS_BATCH: usize = 64 * 1024;

/// The non-nil `g` pointers of the `allglen`-long array at `allgs`, read in bounded
/// batches; stops at the first unreadable batch (the rest is not there).
pub(super) fn read_allgs(
    pid: u32,
    allgs: u64,
    allglen: u64,
) -> Result<Vec<u64>, GoroutineReadError> {
    let mut gptrs = Vec::new();
    let mut bytes = vec![0u8; ALLGS_BATCH * 8];
    let mut done = 0u64;
    while done < allglen {
        let n = (allglen - done).min(ALLGS_BATCH as u64) as usize;
        let Some(at) = done.checked_mul(8).and_then(|o| allgs.checked_add(o)) else {
            break;
        };
        let got = match read_memory(pid, at, &mut bytes[..n * 8]) {
            Ok(got) => got,
            Err(e) if done == 0 => {
                return Err(GoroutineReadError::TableUnreadable {
                    addr: at,
                    errno: e.raw_os_error().unwrap_or(0),
                });
            }
            Err(_) => break,
        };
        gptrs.extend(
            bytes[..got - got % 8]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .filter(|&p| p != 0 && p < USER_SPACE_END),
        );
        if got < n * 8 {
            break;
        }
        done += n as u64;
    }
    Ok(gptrs)
}

pub(super) fn is_text(program: &GoProgram, bias: u64, pc: u64) -> bool {
    let p = program.binary.pclntab();
    let svma = pc.wrapping_sub(bias);
    p.text_start() <= svma && svma < p.text_end()
}

/// Walks a parked goroutine's frames: `pc` (inside gopark), then return addresses.
///
/// `runtime.mcall` saves in `sched.bp` the frame pointer of gopark's *caller*, so the
/// return address out of gopark is found through gopark's own saved-BP slot: the first
/// word above `sp` that holds `bp` and is followed by a code address.
pub fn walk_frame_pointers(
    pc: u64,
    sp: u64,
    bp: u64,
    stack: &[u8],
    is_code: impl Fn(u64) -> bool,
) -> Vec<u64> {
    // All addresses come from the watched process: checked arithmetic only, and every
    // loop bounded by the stack bytes actually read (a fake g may put sp near 2^64).
    let word_at = |addr: u64| -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(sp)?).ok()?;
        word(stack, off)
    };
    let mut frames = vec![pc];
    // The return address out of the innermost (parking) frame: the slot lies between sp
    // and bp, at most one scan over the words read.
    let search_end = bp
        .saturating_sub(sp)
        .min(stack.len() as u64)
        .saturating_sub(8)
        / 8;
    for i in 0..search_end {
        let Some(slot) = sp.checked_add(i * 8) else {
            break;
        };
        if word_at(slot) == Some(bp)
            && let Some(ret) = slot.checked_add(8).and_then(word_at)
            && is_code(ret)
        {
            frames.push(ret);
            break;
        }
    }
    let mut bp = bp;
    while frames.len() < MAX_FRAMES {
        if !bp.is_multiple_of(8) {
            break;
        }
        let (Some(next), Some(ret)) = (word_at(bp), bp.checked_add(8).and_then(word_at)) else {
            break;
        };
        if ret == 0 || !is_code(ret) {
            break;
        }
        frames.push(ret);
        // Frames grow toward higher addresses; anything else is a torn or bogus chain.
        if next <= bp {
            break;
        }
        bp = next;
    }
    frames
}

/// Runtime-internal goroutines (GC workers, finalizers, ...) start in `runtime.*`;
/// `runtime.main` is the program's main goroutine.
pub(super) fn is_system_goroutine(
    program: &GoProgram,
    bias: u64,
    cache: &mut IntMap<u64, bool>,
    startpc: u64,
) -> bool {
    if cache.len() >= MAX_SYSTEM_STARTS && !cache.contains_key(&startpc) {
        cache.clear();
    }
    *cache.entry(startpc).or_insert_with(|| {
        program
            .binary
            .pclntab()
            .find_func(startpc.wrapping_sub(bias))
            .is_some_and(|f| f.name.starts_with("runtime.") && f.name != "runtime.main")
    })
}

/// The goroutine reader over a fake process memory ([`crate::host::memory::fake`]), for
/// the fuzz targets: two reads of `program`'s table at load bias `bias` (the second goes
/// through the incremental state), naming every stack found. Returns how many parked
/// goroutines the last read reported.
#[cfg(feature = "fuzzing")]
pub fn fuzz_read_goroutines(program: Arc<GoProgram>, bias: u64) -> Result<usize, String> {
    let pid = crate::host::memory::fake::FAKE_PID;
    let mut table = crate::sources::parked::ParkedTable::default();
    let mut bufs = crate::sources::parked::ReadBuffers::default();
    let mut parked = 0;
    for _ in 0..2 {
        // No time budget: the fuzzer is to find slow inputs, not have them cut short.
        let read = table.read(pid, &program, bias, &mut bufs, Duration::MAX)?;
        for site in &read.sites {
            symbolize(&program, bias, "fuzz", &site.stack);
        }
        parked = read.sites.iter().map(|s| s.parked as usize).sum();
    }
    Ok(parked)
}

/// Names goroutine frames from the pclntab, expanding inlined calls.
fn symbolize(program: &GoProgram, bias: u64, exe: &str, pcs: &[u64]) -> Vec<Frame> {
    let pclntab = program.binary.pclntab();
    let mut frames = Vec::new();
    for (i, &pc) in pcs.iter().enumerate() {
        if pc == 0 {
            continue;
        }
        // A return address points after the call: look up the call itself.
        let lookup = pc.wrapping_sub(bias).wrapping_sub(u64::from(i > 0));
        let Some(func) = pclntab.find_func(lookup) else {
            frames.push(Frame {
                address: pc,
                module: Some(exe.to_string()),
                ..Frame::default()
            });
            continue;
        };
        if func.name == "runtime.goexit" {
            continue;
        }
        for f in pclntab.inline_frames(&func, lookup) {
            frames.push(Frame {
                function: Some(f.function),
                file: Some(f.file),
                line: (f.line > 0).then_some(f.line),
                address: pc,
                module: Some(exe.to_string()),
            });
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_of(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Check that the walk finds gopark's return address through its saved-BP slot, then
    /// follows the frame-pointer chain, and stops at a chain that does not grow upward.
    #[test]
    fn walks_parked_goroutine_frames() {
        let sp = 0x1000;
        // sp+0: junk, sp+8: gopark's saved BP (= sched.bp = 0x1020), sp+16: ret into chansend
        // 0x1020: next bp 0x1030, ret into main.leak; 0x1030: next bp 0x1000 (down: stop), ret goexit
        let stack = stack_of(&[
            7, 0x1020, 0x40_1111, 0, 0x1030, 0x40_2222, 0x1000, 0x40_3333,
        ]);
        let code = |pc: u64| (0x40_0000..0x50_0000).contains(&pc);
        let frames = walk_frame_pointers(0x40_0001, sp, 0x1020, &stack, code);
        assert_eq!(frames, vec![0x40_0001, 0x40_1111, 0x40_2222, 0x40_3333]);
    }

    /// Check that a bogus frame pointer outside the stack yields just the parking pc.
    #[test]
    fn bogus_frame_pointer_stops_the_walk() {
        let frames =
            walk_frame_pointers(0x40_0001, 0x1000, 0xdead_0000, &stack_of(&[1, 2]), |_| true);
        assert_eq!(frames, vec![0x40_0001]);
    }

    /// Check that a fake parked g with sp and bp near 2^64 and nothing read of its stack
    /// ends the walk at once (the slot search used to wrap and loop ~2^61 times).
    #[test]
    fn walk_near_the_top_of_the_address_space_ends() {
        for (sp, bp) in [
            (u64::MAX - 7, u64::MAX),
            (u64::MAX - 15, u64::MAX - 7),
            (u64::MAX - 0x1000, u64::MAX - 8),
            (0, u64::MAX),
        ] {
            let frames = walk_frame_pointers(0x40_0001, sp, bp, &[], |_| true);
            assert_eq!(frames, vec![0x40_0001]);
            let stack = stack_of(&[bp, 0x40_1111, bp, 0x40_2222]);
            let frames = walk_frame_pointers(0x40_0001, sp, bp, &stack, |_| true);
            assert!(frames.len() <= MAX_FRAMES, "{sp:#x} {bp:#x}: {frames:?}");
        }
    }

    /// Check that a declared allglen of tens of millions over a table of a few pointers
    /// (followed by unmapped memory) reads only the pointers there, in bounded batches.
    #[test]
    fn huge_allglen_reads_only_what_is_mapped() {
        let page = 4096usize;
        // SAFETY: a fresh anonymous mapping of two pages; the second is unmapped below
        // and the first unmapped at the end; no references escape.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the first page is ours and writable.
        unsafe {
            let words = base.cast::<u64>();
            for i in 0..page / 8 {
                *words.add(i) = if i % 2 == 0 { 0x1000 + i as u64 } else { 0 };
            }
            assert_eq!(libc::munmap(base.cast::<u8>().add(page).cast(), page), 0);
        }
        let got = read_allgs(std::process::id(), base as u64, 50_000_000);
        // SAFETY: unmapping the page mapped above.
        unsafe { libc::munmap(base, page) };
        assert_eq!(got.unwrap().len(), page / 16);
        assert!(matches!(
            read_allgs(std::process::id(), 8, 50_000_000),
            Err(GoroutineReadError::TableUnreadable {
                addr: 8,
                errno: libc::EFAULT
            })
        ));
        assert_eq!(
            check_allglen(50_000_000),
            Err(GoroutineReadError::ImplausibleAllglen(50_000_000))
        );
        assert_eq!(check_allglen(MAX_GOROUTINES), Ok(()));
    }
}
