//! The Go runtime's goroutine table as it lies in a process's memory: the `allgs` array
//! of `*g` and, in each `runtime.g`, the fields leakscope reads (status, id, saved
//! registers, wait reason, creator, `waitsince`).
//!
//! Everything here is the watched process's word: lengths are believed only up to a
//! bound, pointers only inside user space, and a short or failed read is an error value,
//! never a panic.

use std::time::Duration;

use crate::{
    budget::OverBudget,
    fasthash::IntMap,
    host::memory::{is_not_resident, read_memory},
    sources::go::{
        chunked::Chunked,
        executable::GoProgram,
        layout::{GoRuntimeLayout, GoStatus},
    },
};

/// More goroutines than this is a misread or a hostile process, not a program (a real
/// 1M-goroutine program uses GBs; 4M pointers cost leakscope 32 MB).
pub const MAX_GOROUTINES: u64 = 4_000_000;
/// Start pcs remembered per process as runtime-internal or not; a process whose
/// goroutines start at ever new pcs (a hostile one) has the cache cleared past this.
const MAX_SYSTEM_STARTS: usize = 4096;
/// User-space addresses on x86_64 (5-level paging) lie below this: a `g` pointer above
/// it is garbage, and keeping them low keeps `gptr + size` arithmetic from wrapping.
const USER_SPACE_END: u64 = 1 << 57;
/// Pointers read from the goroutine table per process_vm_readv call: a declared length
/// costs memory only for the pointers actually there, never `allglen * 8` up front.
const ALLGS_BATCH: usize = 64 * 1024;

/// The statuses of one Go version by raw value, looked up once per layout: a read
/// decodes millions of `g`s, so the decoding is an index, not a name comparison.
#[derive(Default)]
pub struct StatusTable {
    by_value: Vec<GoStatus>,
    scan_bit: u32,
}

impl StatusTable {
    pub fn of(layout: &GoRuntimeLayout) -> Self {
        let by_value = (0u32..)
            .zip(&layout.statuses)
            .map(|(value, _)| layout.status(value))
            .collect();
        Self {
            by_value,
            scan_bit: layout.status_scan_bit,
        }
    }

    /// What a raw `g.atomicstatus` means (the GC's scan bit masked).
    pub fn status(&self, raw: u32) -> GoStatus {
        let value = raw & !self.scan_bit;
        self.by_value
            .get(value as usize)
            .copied()
            .unwrap_or(GoStatus::Other(value))
    }
}

/// Parked by gopark and not woken since: waiting, or waiting and proven leaked by the
/// runtime (`_Gleaked`, set by a goroutine-leak GC cycle until the next one: the same
/// park either way).
pub fn is_parked(status: GoStatus) -> bool {
    matches!(status, GoStatus::Waiting | GoStatus::Leaked)
}

/// A goroutine that exists: its id is one the program handed out and still uses (dead
/// ones, those kept for an extra M's cgo callbacks included, hold stale ids).
pub fn is_live(status: GoStatus) -> bool {
    !matches!(
        status,
        GoStatus::Idle | GoStatus::Dead | GoStatus::DeadExtra
    )
}

/// The fields of a `g` that leakscope uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GFields {
    pub status: GoStatus,
    pub goid: u64,
    /// `trackingSeq`: changes whenever the goroutine runs (0 where the layout lacks it).
    pub seq: u8,
    pub wait_reason: u8,
    pub sp: u64,
    pub pc: u64,
    pub bp: u64,
    /// `g.stack`: the bounds of the goroutine's stack.
    pub stack_lo: u64,
    pub stack_hi: u64,
    pub gopc: u64,
    pub startpc: u64,
    pub waitsince: u64,
    /// `labels`: the goroutine's pprof label set (0: none).
    pub labels: u64,
}

/// The little-endian word at `at`, if `bytes` holds it.
pub fn word(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Reads a `g`'s fields out of its bytes (`None` when the layout points past them).
pub fn parse_g(bytes: &[u8], l: &GoRuntimeLayout, statuses: &StatusTable) -> Option<GFields> {
    let at = |off: u64| word(bytes, off as usize);
    let status = u32::from_le_bytes(
        bytes
            .get(l.g_atomicstatus as usize..l.g_atomicstatus as usize + 4)?
            .try_into()
            .ok()?,
    );
    Some(GFields {
        status: statuses.status(status),
        goid: at(l.g_goid)?,
        seq: l
            .g_tracking_seq
            .and_then(|o| bytes.get(o as usize).copied())
            .unwrap_or(0),
        wait_reason: *bytes.get(l.g_waitreason as usize)?,
        sp: at(l.g_sched_sp)?,
        pc: at(l.g_sched_pc)?,
        bp: at(l.g_sched_bp)?,
        stack_lo: at(l.g_stack_lo)?,
        stack_hi: at(l.g_stack_hi)?,
        gopc: at(l.g_gopc)?,
        startpc: at(l.g_startpc)?,
        // An int64; a negative value is a misread, taken as unset.
        waitsince: at(l.g_waitsince).filter(|&w| (w as i64) > 0).unwrap_or(0),
        labels: at(l.g_labels)?,
    })
}

/// Why a Go process's goroutine table could not be read (the process is then reported
/// unreadable with this reason).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoroutineReadError {
    #[error("implausible allglen {0} (more than {MAX_GOROUTINES} goroutines)")]
    ImplausibleAllglen(u64),
    #[error("short read at {0:#x}")]
    ShortRead(u64),
    #[error("allgs lists a g at {0:#x} that overlaps another: not a goroutine table")]
    OverlappingGs(u64),
    #[error("read at {addr:#x}: errno {errno}")]
    Unreadable { addr: u64, errno: i32 },
    #[error("allgs at {addr:#x}: errno {errno}")]
    TableUnreadable { addr: u64, errno: i32 },
    /// The page is not in memory (unmapped, or a file's page never faulted in): not
    /// read, since faulting it in could wait on its file system for good.
    #[error("the memory at {0:#x} is not in memory (unmapped, or not faulted in): not read")]
    NotResident(u64),
    #[error(
        "reading its goroutines took over {}, the per-process time budget (--read-budget); read afresh next time",
        seconds(*.0)
    )]
    OverTimeBudget(Duration),
    /// The table of this many goroutines would take more of the memory budget than is
    /// left to it; read afresh (within the budget) next time.
    #[error("its table of {goroutines} goroutines {over}")]
    OverMemoryBudget { goroutines: u64, over: OverBudget },
}

/// A duration as seconds with up to three decimals, for messages.
fn seconds(d: Duration) -> String {
    format!("{} s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// A declared table length is believed only up to [`MAX_GOROUTINES`].
pub fn check_allglen(allglen: u64) -> Result<(), GoroutineReadError> {
    if allglen > MAX_GOROUTINES {
        return Err(GoroutineReadError::ImplausibleAllglen(allglen));
    }
    Ok(())
}

/// One word of the process's memory.
pub fn read_word(pid: u32, addr: u64) -> Result<u64, GoroutineReadError> {
    let mut b = [0u8; 8];
    match read_memory(pid, addr, &mut b) {
        Ok(8) => Ok(u64::from_le_bytes(b)),
        Ok(_) => Err(GoroutineReadError::ShortRead(addr)),
        Err(e) if is_not_resident(&e) => Err(GoroutineReadError::NotResident(addr)),
        Err(e) => Err(GoroutineReadError::Unreadable {
            addr,
            errno: e.raw_os_error().unwrap_or(0),
        }),
    }
}

/// Reads the non-nil `g` pointers of the `allglen`-long array at `allgs` into `gptrs`,
/// in bounded batches, in place: what `gptrs` held is compared as the array is read and
/// only what differs is written, so no second copy of a million pointers is made.
/// Stops at the first unreadable batch (the rest is not there). Returns the index of
/// the first pointer that changed (`gptrs` is then as read from there on), `None` when
/// nothing did. On an error nothing was changed.
pub fn read_allgs_into(
    pid: u32,
    allgs: u64,
    allglen: u64,
    gptrs: &mut Chunked<u64>,
) -> Result<Option<usize>, GoroutineReadError> {
    let mut bytes = vec![0u8; ALLGS_BATCH * 8];
    let (mut done, mut at_entry) = (0u64, 0usize);
    let mut changed_from = None;
    while done < allglen {
        let n = (allglen - done).min(ALLGS_BATCH as u64) as usize;
        let Some(at) = done.checked_mul(8).and_then(|o| allgs.checked_add(o)) else {
            break;
        };
        let got = match read_memory(pid, at, &mut bytes[..n * 8]) {
            Ok(got) => got,
            Err(e) if done == 0 && is_not_resident(&e) => {
                return Err(GoroutineReadError::NotResident(at));
            }
            Err(e) if done == 0 => {
                return Err(GoroutineReadError::TableUnreadable {
                    addr: at,
                    errno: e.raw_os_error().unwrap_or(0),
                });
            }
            Err(_) => break,
        };
        let pointers = bytes[..got - got % 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .filter(|&p| p != 0 && p < USER_SPACE_END);
        for p in pointers {
            if changed_from.is_none() {
                if at_entry < gptrs.len() && gptrs[at_entry] == p {
                    at_entry += 1;
                    continue;
                }
                changed_from = Some(at_entry);
                gptrs.truncate(at_entry);
            }
            gptrs.push(p);
            at_entry += 1;
        }
        if got < n * 8 {
            break;
        }
        done += n as u64;
    }
    if changed_from.is_none() && at_entry < gptrs.len() {
        changed_from = Some(at_entry);
        gptrs.truncate(at_entry);
    }
    Ok(changed_from)
}

/// Which goroutines are the runtime's own (GC workers, finalizers, ...: they start in
/// `runtime.*`; `runtime.main` is the program's main goroutine), decided once per start
/// pc and process.
#[derive(Default)]
pub struct SystemGoroutines {
    by_start: IntMap<u64, bool>,
}

impl SystemGoroutines {
    pub fn contains(&mut self, program: &GoProgram, bias: u64, startpc: u64) -> bool {
        if self.by_start.len() >= MAX_SYSTEM_STARTS && !self.by_start.contains_key(&startpc) {
            self.by_start.clear();
        }
        *self.by_start.entry(startpc).or_insert_with(|| {
            program
                .binary
                .pclntab()
                .find_func(startpc.wrapping_sub(bias))
                .is_some_and(|f| f.name.starts_with("runtime.") && f.name != "runtime.main")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that statuses are read by the version's own numbering with the GC's scan
    /// bit masked, that a goroutine the runtime marked leaked is still parked, and that
    /// dead ones (extra-M ones included) are not live.
    #[test]
    fn statuses_as_the_runtime_numbers_them() {
        let go126 = GoRuntimeLayout::for_version(1, 26).expect("go1.26 layout");
        let table = StatusTable::of(&go126);
        assert_eq!(table.status(4), GoStatus::Waiting);
        assert_eq!(table.status(0x1004), GoStatus::Waiting);
        assert_eq!(table.status(0x100a), GoStatus::Leaked);
        assert_eq!(table.status(11), GoStatus::DeadExtra);
        assert_eq!(table.status(99), GoStatus::Other(99));
        let go121 = GoRuntimeLayout::for_version(1, 21).expect("go1.21 layout");
        assert_eq!(StatusTable::of(&go121).status(10), GoStatus::Other(10));
        assert!(is_parked(GoStatus::Leaked) && is_parked(GoStatus::Waiting));
        assert!(!is_parked(GoStatus::Preempted) && !is_parked(GoStatus::Runnable));
        assert!(!is_live(GoStatus::DeadExtra) && !is_live(GoStatus::Dead));
        assert!(is_live(GoStatus::Leaked) && is_live(GoStatus::Syscall));
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
        let pid = std::process::id();
        let mut gptrs = Chunked::default();
        let got = read_allgs_into(pid, base as u64, 50_000_000, &mut gptrs);
        assert_eq!((got, gptrs.len()), (Ok(Some(0)), page / 16));
        // Read again, unchanged: nothing written; then the table as if it grew.
        let unchanged = read_allgs_into(pid, base as u64, 50_000_000, &mut gptrs);
        assert_eq!((unchanged, gptrs.len()), (Ok(None), page / 16));
        gptrs.truncate(page / 32);
        let grew = read_allgs_into(pid, base as u64, 50_000_000, &mut gptrs);
        assert_eq!((grew, gptrs.len()), (Ok(Some(page / 32)), page / 16));
        gptrs[3] = 1;
        let moved = read_allgs_into(pid, base as u64, 50_000_000, &mut gptrs);
        assert_eq!((moved, gptrs[3]), (Ok(Some(3)), 0x1006));
        // SAFETY: unmapping the page mapped above.
        unsafe { libc::munmap(base, page) };
        assert_eq!(
            read_allgs_into(pid, 8, 50_000_000, &mut gptrs),
            Err(GoroutineReadError::NotResident(8)),
            "an unmapped page is not in memory: not read"
        );
        assert_eq!(
            gptrs.len(),
            page / 16,
            "a table that fails is left as it was"
        );
        assert_eq!(
            check_allglen(50_000_000),
            Err(GoroutineReadError::ImplausibleAllglen(50_000_000))
        );
        assert_eq!(check_allglen(MAX_GOROUTINES), Ok(()));
    }
}
