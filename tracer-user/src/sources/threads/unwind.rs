//! Blocked threads' stacks: unwound once per wait and named once per site, and the
//! memory each one's stack holds.
//!
//! A thread that stays parked keeps its saved registers, so its stack is unwound when
//! the wait is first seen and kept while the thread parks there (a pool worker that
//! wakes and re-parks at the same place keeps it too): [`ThreadStacks`] remembers them.
//! What reads the process — its `/proc/PID/maps` (read at most once per scan, for
//! unwinding and naming alike), its binaries, its stack — is [`StackReads`], the state
//! of the thread source's reader thread ([`crate::isolate::Reader`]): any of those reads
//! may block, and the scan must be able to stop waiting. With each stack, the size of
//! its stack mapping and what of it is resident are read once (a blocked thread's stack
//! does not move). The maps a scan holds stay within the budget's `maps` share
//! (beyond it, the least recently read are dropped and read again when needed); a
//! process whose maps alone are over the per-process quota is not unwound, and says so.

use std::collections::{HashMap, HashSet};

use crate::{
    budget::{
        self, MemoryBudget, MemoryKind,
        degraded::{Cause, Degradation},
    },
    fasthash::IntMap,
    host::{
        pagemap,
        procfs::{self, BoundedMapsError, MemoryMap},
    },
    model::{Frame, ProcessKey, StackKey, ThreadKey, bare_frames},
    resources::StackBytes,
    sources::error::{ReadError, StackNotResident},
    stacks::{
        symbolize::StackSymbolizer,
        unwind::{StackUnwinder, UserRegs},
    },
};

/// Names the frames of a thread site's stack in a process (for whoever sees the site
/// first), or says why that process cannot be read: valid for the scan that produced
/// it, while its processes still run.
pub type ThreadSymbolizer<'a> =
    Box<dyn FnMut(ProcessKey, &[u64]) -> Result<Vec<Frame>, ReadError> + 'a>;

/// Everything that reads a process to unwind and name its threads' stacks: the
/// unwinder's and the symbolizer's caches (kept across scans), and the maps of the
/// processes the scan under way touched.
#[derive(Default)]
pub struct StackReads {
    unwinder: StackUnwinder,
    symbolizer: StackSymbolizer,
    maps: ScanMaps,
}

impl StackReads {
    /// The stacks of threads of process `pid` parked at `regs` (one each, in order),
    /// as of scan `scan`: frame addresses, innermost first, and what each one's stack
    /// mapping holds (nothing counted when the mapping holding its stack pointer is not
    /// recognisably a thread stack). Fails when a thread's stack pointer is on a page
    /// that is not resident (see [`crate::host::pagemap`]): a real thread wrote the page
    /// it blocks on; only a process that keeps its "stack" on a file's page it never
    /// touched has such a one, and reading it could wait for ever.
    pub fn unwind(
        &mut self,
        scan: u64,
        pid: u32,
        regs: &[(ThreadKey, UserRegs)],
    ) -> Result<Vec<(StackKey, StackBytes)>, StackNotResident> {
        let Self { unwinder, maps, .. } = self;
        let Some(maps) = maps.of(scan, pid) else {
            return Ok((regs.iter())
                .map(|(_, r)| (StackKey::from(vec![r.ip]), StackBytes::default()))
                .collect());
        };
        let mut stacks = Vec::with_capacity(regs.len());
        for &(thread, r) in regs {
            let resident = pagemap::resident_pages(pid, r.sp / pagemap::PAGE, 1);
            if r.sp != 0 && resident.is_ok_and(|page| page == [false]) {
                return Err(StackNotResident {
                    tid: thread.tid,
                    sp: r.sp,
                });
            }
            let stack = unwinder.unwind(pid, maps, r).into();
            stacks.push((stack, stack_bytes(pid, maps, r.sp)));
        }
        Ok(stacks)
    }

    /// The frames of a stack of process `pid`, named with its maps as of scan `scan`.
    pub fn symbolize(&mut self, scan: u64, pid: u32, stack: &[u64]) -> Vec<Frame> {
        let Self {
            symbolizer, maps, ..
        } = self;
        match maps.of(scan, pid) {
            Some(maps) => symbolizer.symbolize(pid, maps, stack),
            None => bare_frames(stack),
        }
    }

    /// Takes the processes whose stacks or names lost something to a budget since the
    /// last call (their maps, a binary's unwind tables, debug info or symbols), and why.
    pub fn take_degraded(&mut self) -> Vec<(u32, Degradation)> {
        let mut all = std::mem::take(&mut self.maps.degraded);
        all.append(&mut self.unwinder.take_degraded());
        all.append(&mut self.symbolizer.take_degraded());
        all
    }
}

/// The maps of the processes one scan touched, each read at most once per scan while
/// they fit the `maps` share (`None`: gone, or over the quota).
pub struct ScanMaps {
    /// The scan the maps are of.
    scan: u64,
    maps: HashMap<u32, Option<(Vec<MemoryMap>, u64)>>,
    /// The order they were read in, to drop the oldest first.
    order: Vec<u32>,
    held: u64,
    budget: &'static MemoryBudget,
    /// Processes whose maps were over the quota, and why (until taken).
    degraded: Vec<(u32, Degradation)>,
}

impl Default for ScanMaps {
    fn default() -> Self {
        Self::with_budget(budget::global())
    }
}

impl Drop for ScanMaps {
    fn drop(&mut self) {
        self.budget.release(MemoryKind::Maps, self.held);
    }
}

impl ScanMaps {
    pub fn with_budget(budget: &'static MemoryBudget) -> Self {
        Self {
            scan: 0,
            maps: HashMap::new(),
            order: Vec::new(),
            held: 0,
            budget,
            degraded: Vec::new(),
        }
    }

    /// The maps of process `pid` as of scan `scan`, read at most once per scan.
    fn of(&mut self, scan: u64, pid: u32) -> Option<&[MemoryMap]> {
        if self.scan != scan {
            self.scan = scan;
            self.maps.clear();
            self.order.clear();
            self.budget.release(MemoryKind::Maps, self.held);
            self.held = 0;
        }
        if !self.maps.contains_key(&pid) {
            let read = self.read(pid);
            self.maps.insert(pid, read);
            self.order.push(pid);
        }
        self.maps.get(&pid)?.as_ref().map(|(m, _)| m.as_slice())
    }

    /// Reads one process's maps within the quota (only executable mappings and the
    /// kernel's pseudo mappings such as `[stack]` keep their paths: nothing else needs
    /// them), dropping the maps read longest ago until they fit the share.
    fn read(&mut self, pid: u32) -> Option<(Vec<MemoryMap>, u64)> {
        let quota = self.budget.quota(MemoryKind::Maps);
        let keep_path = |m: &MemoryMap| {
            m.is_executable() || m.path.as_deref().is_some_and(|p| p.starts_with('['))
        };
        let maps = match procfs::read_maps_bounded(pid, quota, keep_path) {
            Ok(maps) => maps,
            Err(BoundedMapsError::Io(_)) => return None,
            Err(BoundedMapsError::TooLarge { needed }) => {
                self.budget.refused(MemoryKind::Maps);
                let cause = Cause::Memory {
                    kind: MemoryKind::Maps,
                    needed,
                    limit: quota,
                };
                self.degraded.push((pid, Degradation::Maps { cause }));
                return None;
            }
        };
        let bytes: u64 = maps.iter().map(MemoryMap::heap_bytes).sum();
        let mut oldest = 0;
        while self.budget.shortfall(MemoryKind::Maps, bytes) > 0 && oldest < self.order.len() {
            let old = self.order[oldest];
            oldest += 1;
            if let Some(Some((_, freed))) = self.maps.remove(&old) {
                self.held -= freed;
                self.budget.evicted(MemoryKind::Maps, freed);
            }
        }
        self.order.drain(..oldest);
        self.held += bytes;
        self.budget.charge(MemoryKind::Maps, bytes);
        Some((maps, bytes))
    }
}

/// Each parked thread's stack and what its stack mapping holds, by where it parked.
#[derive(Default)]
pub struct ThreadStacks {
    stacks: IntMap<(ThreadKey, UserRegs), (StackKey, StackBytes)>,
}

impl ThreadStacks {
    /// The stack of a thread parked at `regs` and what its stack mapping holds, when it
    /// was unwound before.
    pub fn get(&self, thread: ThreadKey, regs: UserRegs) -> Option<(StackKey, StackBytes)> {
        self.stacks.get(&(thread, regs)).cloned()
    }

    pub fn insert(&mut self, thread: ThreadKey, regs: UserRegs, stack: (StackKey, StackBytes)) {
        self.stacks.insert((thread, regs), stack);
    }

    /// Forgets the stacks of threads no longer parked where they were: they will never
    /// be seen there again.
    pub fn keep_only(&mut self, parked_at: &HashSet<(ThreadKey, UserRegs)>) {
        self.stacks.retain(|at, _| parked_at.contains(at));
    }
}

/// What the stack mapping holding `sp` in process `pid` holds: its size and resident
/// bytes.
fn stack_bytes(pid: u32, maps: &[MemoryMap], sp: u64) -> StackBytes {
    match procfs::thread_stack_mapping(maps, sp) {
        Some(m) => StackBytes::thread(m.end - m.start, procfs::resident_bytes(pid, m.start, m.end)),
        None => StackBytes::default(),
    }
}
