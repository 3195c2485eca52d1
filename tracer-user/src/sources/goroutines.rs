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
};

use tracer_common::ProcessRecord;

use crate::{
    fasthash::{IntMap, IntSet},
    host::{
        binary::{self, FileIdent, LoadSegment},
        memory::{read_batch, read_memory},
        procfs,
    },
    isolate,
    sources::{
        ProcessKey, StackKey,
        go::{
            elf::PF_X,
            executable::{analyse_executable, open_executable},
            layout::GoRuntimeLayout,
        },
    },
    stacks::symbolize::Frame,
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
    /// Names the frames of this process's goroutine stacks.
    pub symbolizer: GoSymbolizer,
}

/// What one read of a Go process's goroutine table found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoroutineTable {
    pub parked: Vec<ParkedGoroutine>,
    /// The highest id of a live goroutine: ids count up, so this dates goroutine ids.
    pub max_goid: u64,
}

/// A goroutine parked by the Go runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct ParkedGoroutine {
    pub goid: u64,
    /// Changes whenever the goroutine runs: names one uninterrupted park.
    pub wait_seq: u8,
    pub wait_reason: Arc<str>,
    /// Absolute pcs, innermost first (the parking pc, then return addresses).
    pub stack: StackKey,
    pub gopc: u64,
    /// `g.waitsince`: the runtime's nanotime (CLOCK_MONOTONIC) at the start of the first
    /// GC cycle that saw this park, so the wait began before about then; 0 when no GC
    /// has scanned the goroutine since it parked.
    pub waitsince_ns: u64,
}

/// `runtime._Gwaiting`: parked by gopark. The GC's `_Gscan` bit (0x1000) is masked off.
const G_WAITING: u32 = 4;
/// `runtime._Gidle` and `runtime._Gdead`: not a live goroutine.
const G_IDLE: u32 = 0;
const G_DEAD: u32 = 6;
const G_SCAN_BIT: u32 = 0x1000;
/// More goroutines than this is a misread or a hostile process, not a program (a real
/// 1M-goroutine program uses GBs; 4M pointers cost leakscope 32 MB).
const MAX_GOROUTINES: u64 = 4_000_000;
/// Start pcs remembered per process as runtime-internal or not; a process whose
/// goroutines start at ever new pcs (a hostile one) has the cache cleared past this.
const MAX_SYSTEM_STARTS: usize = 4096;
/// A parked goroutine's used stack beyond this is not walked further.
const MAX_STACK_READ: u64 = 256 * 1024;
/// Stack bytes read in one batch.
const MAX_STACK_BATCH_BYTES: usize = 8 << 20;
/// Stack bytes read in full per process and scan (real parked goroutines use a few
/// KiB each); past it each stack is read only this far from its top.
const STACK_BYTES_PER_SCAN: usize = 32 << 20;
const OVER_BUDGET_STACK_READ: usize = 4096;
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
    /// Each parked goroutine's stack, walked once while it stays parked at the same
    /// saved registers.
    stacks: IntMap<(u64, u64, u64, u64), StackKey>,
    /// One shared string per wait-reason value, not one allocation per goroutine.
    wait_reasons: HashMap<u8, Arc<str>>,
    /// Whether a start pc belongs to the runtime's own goroutines (GC workers, the
    /// finalizer, ...): they are not the program's waiters.
    system_starts: IntMap<u64, bool>,
}

enum Watched {
    Native,
    Go(GoProcess),
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
    buf: Vec<u8>,
}

impl GoroutineSource {
    pub fn new() -> Self {
        Self::default()
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
                    let read = isolate::per_process(key.pid, || {
                        read_goroutines(key.pid, process, &mut self.buf)
                    });
                    let goroutines = match read {
                        Ok(goroutines) => goroutines,
                        Err(panic) => {
                            // Never read again: the next read would likely panic alike.
                            let runtime = process.program.runtime.clone();
                            let watched = unreadable_after(key.pid, &runtime, &panic);
                            self.processes.insert(key, watched);
                            out.push(GoroutineScan {
                                process: key,
                                runtime,
                                goroutines: Err(panic.to_string()),
                                symbolizer: bare_symbolizer(),
                            });
                            continue;
                        }
                    };
                    let (program, bias, exe) =
                        (process.program.clone(), process.bias, process.exe.clone());
                    out.push(GoroutineScan {
                        process: key,
                        runtime: process.program.runtime.clone(),
                        goroutines,
                        symbolizer: Box::new(move |pcs: &[u64]| {
                            symbolize(&program, bias, &exe, pcs)
                        }),
                    });
                }
                Some(Watched::Unreadable(runtime, reason)) => out.push(GoroutineScan {
                    process: key,
                    runtime: runtime.clone(),
                    goroutines: Err(reason.clone()),
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
                Some(bias) => Watched::Go(GoProcess {
                    program,
                    bias,
                    exe: std::fs::read_link(&exe_path)
                        .map(|p| p.to_string_lossy().into())
                        .unwrap_or_else(|_| "".into()),
                    stacks: IntMap::default(),
                    wait_reasons: HashMap::new(),
                    system_starts: IntMap::default(),
                }),
                None => Watched::Unreadable(
                    program.runtime.clone(),
                    "cannot find the executable's mapping in /proc/PID/maps".into(),
                ),
            },
        }
    }
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

fn read_word(pid: u32, addr: u64) -> Result<u64, String> {
    let mut b = [0u8; 8];
    match read_memory(pid, addr, &mut b) {
        Ok(8) => Ok(u64::from_le_bytes(b)),
        Ok(_) => Err(format!("short read at {addr:#x}")),
        Err(e) => Err(format!("read at {addr:#x}: {e}")),
    }
}

/// The fields of a `g` that leakscope uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ParkedG {
    /// `atomicstatus` with the scan bit masked.
    status: u32,
    goid: u64,
    /// `trackingSeq`: changes whenever the goroutine runs (0 where the layout lacks it).
    seq: u8,
    wait_reason: u8,
    sp: u64,
    pc: u64,
    bp: u64,
    stack_hi: u64,
    gopc: u64,
    startpc: u64,
    waitsince: u64,
}

fn parse_g(bytes: &[u8], l: &GoRuntimeLayout) -> Option<ParkedG> {
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
fn read_allgs(pid: u32, allgs: u64, allglen: u64) -> Result<Vec<u64>, String> {
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
            Err(e) if done == 0 => return Err(format!("allgs: {e}")),
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

/// One census of a Go process's parked goroutines.
fn read_goroutines(
    pid: u32,
    process: &mut GoProcess,
    buf: &mut Vec<u8>,
) -> Result<GoroutineTable, String> {
    let program = process.program.clone();
    let layout = &program.layout;
    let bias = process.bias;
    // allglen first: the slice only grows, so a length read before the pointer never
    // runs past the array the pointer names.
    let allglen = read_word(pid, program.addrs.allglen.wrapping_add(bias))?;
    let allgs = read_word(pid, program.addrs.allgs.wrapping_add(bias))?;
    if allglen == 0 {
        return Ok(GoroutineTable::default());
    }
    if allglen > MAX_GOROUTINES {
        return Err(format!("implausible allglen {allglen}"));
    }
    let gptrs = read_allgs(pid, allgs, allglen)?;

    let t0 = std::time::Instant::now();
    let all = read_parked(pid, &gptrs, layout, buf);
    let t1 = std::time::Instant::now();
    // The newest goroutine id in use: a clock that dates goroutine ids (ids count up).
    let max_goid = all
        .iter()
        .filter(|(_, g)| g.status != G_DEAD && g.status != G_IDLE)
        .map(|(_, g)| g.goid)
        .max()
        .unwrap_or(0);
    let parked: Vec<(u64, ParkedG)> = all
        .into_iter()
        .filter(|(_, g)| g.status == G_WAITING)
        .filter(|(_, g)| {
            !is_system_goroutine(&program, bias, &mut process.system_starts, g.startpc)
        })
        .collect();

    // Walk the stacks of goroutines not seen parked at these registers before.
    let new: Vec<(u64, ParkedG)> = parked
        .iter()
        .filter(|(_, g)| !process.stacks.contains_key(&(g.goid, g.sp, g.pc, g.bp)))
        .copied()
        .collect();
    let walked = walk_stacks(pid, &program, bias, &new, buf);
    // Torn reads: keep a walk only if the g still sits parked at the same registers.
    let still: IntMap<u64, ParkedG> = read_parked(
        pid,
        &new.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        layout,
        buf,
    )
    .into_iter()
    .collect();
    for ((gptr, g), stack) in new.iter().zip(walked) {
        if still.get(gptr) == Some(g) {
            process
                .stacks
                .insert((g.goid, g.sp, g.pc, g.bp), stack.into());
        }
    }

    let mut live = IntSet::default();
    let mut out = Vec::with_capacity(parked.len());
    for (_, g) in &parked {
        let key = (g.goid, g.sp, g.pc, g.bp);
        let Some(stack) = process.stacks.get(&key) else {
            continue;
        };
        live.insert(key);
        let wait_reason = process
            .wait_reasons
            .entry(g.wait_reason)
            .or_insert_with(|| match layout.wait_reason(g.wait_reason) {
                Some(r) if !r.is_empty() => r.into(),
                _ => format!("waitReason({})", g.wait_reason).into(),
            })
            .clone();
        out.push(ParkedGoroutine {
            goid: g.goid,
            wait_seq: g.seq,
            wait_reason,
            stack: stack.clone(),
            gopc: g.gopc,
            waitsince_ns: g.waitsince,
        });
    }
    process.stacks.retain(|k, _| live.contains(k));
    log::debug!(
        "goroutines of {pid}: {} read in {:?}, rest {:?}",
        gptrs.len(),
        t1 - t0,
        t1.elapsed()
    );
    Ok(GoroutineTable {
        parked: out,
        max_goid,
    })
}

/// Neighbouring `g`s closer than this are read as one range: g structs sit together in
/// heap spans, and each remote range costs far more than the bytes in it.
const MERGE_GAP: u64 = 4096;
/// Upper bound of one merged range.
const MAX_MERGED: u64 = 1 << 20;

/// Groups sorted addresses of `size`-byte objects into ranges covering neighbours.
/// Returns (start, len, indices into `sorted` of the objects inside).
fn merge_ranges(sorted: &[u64], size: u64) -> Vec<(u64, usize, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start + size;
        let mut j = i + 1;
        while j < sorted.len()
            && sorted[j] <= end + MERGE_GAP
            && sorted[j] + size - start <= MAX_MERGED
        {
            end = end.max(sorted[j] + size);
            j += 1;
        }
        out.push((start, (end - start) as usize, i..j));
        i = j;
    }
    out
}

/// Reads the `g` structs at `gptrs`, neighbours merged into large reads. A merged range
/// that faults (part of it freed) is re-read g by g.
fn read_parked(
    pid: u32,
    gptrs: &[u64],
    layout: &GoRuntimeLayout,
    buf: &mut Vec<u8>,
) -> Vec<(u64, ParkedG)> {
    let size = layout.g_size;
    let mut sorted: Vec<u64> = gptrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let merged = merge_ranges(&sorted, size);
    let mut out = Vec::new();
    let mut retry = Vec::new();
    // Bounded batches keep the buffer small even for a million goroutines.
    for batch in merged.chunks(256) {
        let ranges: Vec<(u64, usize)> = batch.iter().map(|&(start, len, _)| (start, len)).collect();
        let ok = read_batch(pid, &ranges, buf);
        let mut at = 0usize;
        for (k, (start, len, members)) in batch.iter().enumerate() {
            if ok[k] {
                for &gptr in &sorted[members.clone()] {
                    let off = at + (gptr - start) as usize;
                    if let Some(g) = parse_g(&buf[off..off + size as usize], layout) {
                        out.push((gptr, g));
                    }
                }
            } else {
                retry.extend_from_slice(&sorted[members.clone()]);
            }
            at += len;
        }
    }
    for chunk in retry.chunks(1024) {
        let ranges: Vec<(u64, usize)> = chunk.iter().map(|&p| (p, size as usize)).collect();
        let ok = read_batch(pid, &ranges, buf);
        for (i, &gptr) in chunk.iter().enumerate() {
            let g = &buf[i * size as usize..(i + 1) * size as usize];
            if ok[i]
                && let Some(g) = parse_g(g, layout)
            {
                out.push((gptr, g));
            }
        }
    }
    out
}

/// Frame-pointer walks of parked goroutines' stacks (Go keeps frame pointers on amd64).
fn walk_stacks(
    pid: u32,
    program: &GoProgram,
    bias: u64,
    gs: &[(u64, ParkedG)],
    buf: &mut Vec<u8>,
) -> Vec<Vec<u64>> {
    let mut out = Vec::with_capacity(gs.len());
    // A per-scan budget of stack bytes: stack ranges are the process's word, and past
    // the budget each stack is read only near its top (the parking frames).
    let mut budget = STACK_BYTES_PER_SCAN;
    let lens: Vec<usize> = gs
        .iter()
        .map(|(_, g)| {
            let full = g.stack_hi.saturating_sub(g.sp).min(MAX_STACK_READ) as usize;
            let len = if full <= budget {
                full
            } else {
                full.min(OVER_BUDGET_STACK_READ)
            };
            budget = budget.saturating_sub(len);
            len
        })
        .collect();
    let mut start = 0;
    while start < gs.len() {
        // Batches bounded in count and in bytes: a thousand goroutines each claiming
        // the largest stack would need 256 MB at once.
        let mut bytes = 0usize;
        let n = lens[start..]
            .iter()
            .take(1024)
            .take_while(|&&len| {
                bytes += len;
                bytes <= MAX_STACK_BATCH_BYTES
            })
            .count()
            .max(1);
        let chunk = &gs[start..start + n];
        let ranges: Vec<(u64, usize)> = chunk
            .iter()
            .zip(&lens[start..start + n])
            .map(|((_, g), &len)| (g.sp, len))
            .collect();
        start += n;
        let ok = read_batch(pid, &ranges, buf);
        let mut at = 0usize;
        for (i, (_, g)) in chunk.iter().enumerate() {
            let len = ranges[i].1;
            let stack = if ok[i] { &buf[at..at + len] } else { &[][..] };
            out.push(walk_frame_pointers(g.pc, g.sp, g.bp, stack, |pc| {
                is_text(program, bias, pc)
            }));
            at += len;
        }
    }
    out
}

fn is_text(program: &GoProgram, bias: u64, pc: u64) -> bool {
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
fn is_system_goroutine(
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

    /// Check that neighbouring objects merge into one range, far ones do not, and a
    /// range never grows past its cap.
    #[test]
    fn neighbouring_gs_merge_into_one_read() {
        let ranges = merge_ranges(&[0x1000, 0x11c8, 0x1390, 0x9000_0000], 456);
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            (ranges[0].0, ranges[0].1, ranges[0].2.clone()),
            (0x1000, 0x1390 + 456 - 0x1000, 0..3)
        );
        assert_eq!(ranges[1].2, 3..4);
        let many: Vec<u64> = (0..10_000u64).map(|i| i * 512).collect();
        assert!(
            merge_ranges(&many, 456)
                .iter()
                .all(|r| r.1 as u64 <= MAX_MERGED)
        );
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
        assert!(read_allgs(std::process::id(), 8, 50_000_000).is_err());
    }
}
