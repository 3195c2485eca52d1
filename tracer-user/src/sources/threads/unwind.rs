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
//! does not move).

use std::collections::{HashMap, HashSet};

use crate::{
    fasthash::IntMap,
    host::{
        pagemap,
        procfs::{self, MemoryMap},
    },
    model::{Frame, ProcessKey, StackKey, ThreadKey},
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
/// processes the scan under way touched (each read at most once per scan; `None`: gone).
#[derive(Default)]
pub struct StackReads {
    unwinder: StackUnwinder,
    symbolizer: StackSymbolizer,
    /// The scan the maps are of.
    scan: u64,
    maps: HashMap<u32, Option<Vec<MemoryMap>>>,
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
        let Self {
            unwinder,
            scan: maps_of,
            maps,
            ..
        } = self;
        let Some(maps) = scan_maps(maps, maps_of, scan, pid) else {
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
            symbolizer,
            scan: maps_of,
            maps,
            ..
        } = self;
        match scan_maps(maps, maps_of, scan, pid) {
            Some(maps) => symbolizer.symbolize(pid, maps, stack),
            None => bare_frames(stack),
        }
    }
}

/// The maps of process `pid` as of scan `scan`, read at most once per scan (`maps`
/// holds those of scan `maps_of`).
fn scan_maps<'m>(
    maps: &'m mut HashMap<u32, Option<Vec<MemoryMap>>>,
    maps_of: &mut u64,
    scan: u64,
    pid: u32,
) -> Option<&'m [MemoryMap]> {
    if *maps_of != scan {
        *maps_of = scan;
        maps.clear();
    }
    maps.entry(pid)
        .or_insert_with(|| procfs::read_maps(pid).ok())
        .as_deref()
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

/// Frames known by their address alone (the process is gone).
fn bare_frames(stack: &[u64]) -> Vec<Frame> {
    stack
        .iter()
        .map(|&address| Frame {
            address,
            ..Frame::default()
        })
        .collect()
}
