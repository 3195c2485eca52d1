//! Blocked threads' stacks: unwound once per wait and named once per site.
//!
//! A thread that stays parked keeps its saved registers, so its stack is unwound when
//! the wait is first seen and kept while the thread parks there (a pool worker that
//! wakes and re-parks at the same place keeps it too). Each process's `/proc/PID/maps`
//! is read at most once per scan, for unwinding and naming alike.

use std::collections::{HashMap, HashSet};

use crate::{
    fasthash::IntMap,
    host::procfs::{self, MemoryMap},
    model::{Frame, StackKey, ThreadKey},
    stacks::{
        symbolize::StackSymbolizer,
        unwind::{StackUnwinder, UserRegs},
    },
};

/// Names the frames of a thread site's stack in process `pid` (for whoever sees the site
/// first): valid for the scan that produced it, while its processes still run.
pub type ThreadSymbolizer<'a> = Box<dyn FnMut(u32, &[u64]) -> Vec<Frame> + 'a>;

/// The maps of the processes one scan touched, each read at most once (`None`: gone).
#[derive(Default)]
pub struct ScanMaps(HashMap<u32, Option<Vec<MemoryMap>>>);

impl ScanMaps {
    fn of(&mut self, pid: u32) -> Option<&[MemoryMap]> {
        self.0
            .entry(pid)
            .or_insert_with(|| procfs::read_maps(pid).ok())
            .as_deref()
    }
}

/// Unwinds and names blocked threads' stacks; owns the unwinding and symbolization caches.
pub struct ThreadStacks {
    unwinder: StackUnwinder,
    symbolizer: StackSymbolizer,
    /// Each parked thread's stack, by where it parked.
    stacks: IntMap<(ThreadKey, UserRegs), StackKey>,
}

impl Default for ThreadStacks {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadStacks {
    pub fn new() -> Self {
        Self {
            unwinder: StackUnwinder::new(),
            symbolizer: StackSymbolizer::new(),
            stacks: IntMap::default(),
        }
    }

    /// A thread's stack, unwound once while it waits at the same saved registers.
    pub fn stack(
        &mut self,
        pid: u32,
        thread: ThreadKey,
        regs: UserRegs,
        maps: &mut ScanMaps,
    ) -> StackKey {
        if let Some(stack) = self.stacks.get(&(thread, regs)) {
            return stack.clone();
        }
        let addrs = match maps.of(pid) {
            Some(m) => self.unwinder.unwind(pid, m, regs),
            None => vec![regs.ip],
        };
        let stack: StackKey = addrs.into();
        self.stacks.insert((thread, regs), stack.clone());
        stack
    }

    /// Forgets the stacks of threads no longer parked where they were: they will never
    /// be seen there again.
    pub fn keep_only(&mut self, parked_at: &HashSet<(ThreadKey, UserRegs)>) {
        self.stacks.retain(|at, _| parked_at.contains(at));
    }

    /// Names stacks of this scan's processes, with the maps the scan read.
    pub fn symbolizer(&mut self, mut maps: ScanMaps) -> ThreadSymbolizer<'_> {
        Box::new(move |pid, stack| match maps.of(pid) {
            Some(m) => self.symbolizer.symbolize(pid, m, stack),
            None => bare_frames(stack),
        })
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
