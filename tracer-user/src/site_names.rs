//! The names of sites and goroutine creators: each site's frames are named once, while
//! its process is alive (the census asks when it first sees the site), and kept while
//! the window holds the site, within the memory budget's `sites` share.
//!
//! A hostile process can make a new site at every scan, each with frames named up to
//! [`crate::model::MAX_FRAME_NAME`] bytes: what one process's names hold is bounded by
//! the per-process quota (its further sites keep their addresses only), and when the
//! share is full the process holding the most gives its names back first. Either way
//! the process says so ([`Degradation::SiteNames`]); its sites are still counted and
//! judged, by their stacks' addresses.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::{
    budget::{
        self, MemoryBudget, MemoryKind,
        degraded::{Cause, Degradation},
    },
    fasthash::IntMap,
    model::{Frame, ProcessKey, SiteKey},
};

/// Goroutine creator frames remembered across all processes.
pub const MAX_CREATORS: usize = 65_536;
/// Bytes of one kept entry besides its frames (its key and the map's own).
const ENTRY_BYTES: u64 = 96;

/// Heap bytes a site's (or a creator's) frames take.
pub fn frames_bytes(frames: &[Frame]) -> u64 {
    frames
        .iter()
        .map(|f| {
            (size_of::<Frame>()
                + f.function.as_ref().map_or(0, String::capacity)
                + f.file.as_ref().map_or(0, String::capacity)
                + f.module.as_ref().map_or(0, String::capacity)) as u64
        })
        .sum::<u64>()
        + ENTRY_BYTES
}

/// Sites' and creators' names, charged to the `sites` share.
pub struct SiteNames {
    /// Each site's frames; `None`: not named (over the budget).
    sites: IntMap<(ProcessKey, SiteKey), Option<Arc<[Frame]>>>,
    /// Each goroutine creator's frame (gopc), named once.
    creators: IntMap<(ProcessKey, u64), (Frame, u64)>,
    /// Bytes each process's names hold.
    held: HashMap<ProcessKey, u64>,
    budget: &'static MemoryBudget,
    /// Processes whose names were refused or given back, and why (until taken).
    cut: Vec<(ProcessKey, Degradation)>,
}

impl Default for SiteNames {
    fn default() -> Self {
        Self::with_budget(budget::global())
    }
}

impl Drop for SiteNames {
    fn drop(&mut self) {
        self.budget
            .release(MemoryKind::Sites, self.held.values().sum());
    }
}

impl SiteNames {
    pub fn with_budget(budget: &'static MemoryBudget) -> Self {
        Self {
            sites: IntMap::default(),
            creators: IntMap::default(),
            held: HashMap::new(),
            budget,
            cut: Vec::new(),
        }
    }

    /// Names a site of `process` once (`name` gives its frames), if its names fit; a
    /// site whose naming failed is not remembered (the error is the caller's).
    pub fn name_site<E>(
        &mut self,
        process: ProcessKey,
        site: &SiteKey,
        name: impl FnOnce() -> Result<Vec<Frame>, E>,
    ) -> Result<(), E> {
        let key = (process, site.clone());
        if self.sites.contains_key(&key) {
            return Ok(());
        }
        let frames = self.admit(process, name)?.map(|(frames, _)| frames.into());
        self.sites.insert(key, frames);
        Ok(())
    }

    /// Names a goroutine creator (`gopc`) of `process` once (`name` gives its frame);
    /// over the budget it keeps its address only.
    pub fn name_creator(&mut self, process: ProcessKey, gopc: u64, name: impl FnOnce() -> Frame) {
        if self.creators.contains_key(&(process, gopc)) {
            return;
        }
        if self.creators.len() >= MAX_CREATORS {
            // A process whose goroutines come from ever new creators (a hostile one):
            // it thrashes its own entries, never grows the cache or evicts others'.
            let budget = self.budget;
            let held = &mut self.held;
            self.creators.retain(|(p, _), (_, bytes)| {
                if *p != process {
                    return true;
                }
                if let Some(h) = held.get_mut(p) {
                    *h -= *bytes;
                }
                budget.release(MemoryKind::Sites, *bytes);
                false
            });
        }
        let named = self.admit(process, || Ok::<_, std::convert::Infallible>(vec![name()]));
        let (frame, bytes) = match named.unwrap_or_else(|never| match never {}) {
            Some((mut frames, bytes)) => (frames.pop().unwrap_or_default(), bytes),
            None => (
                Frame {
                    address: gopc,
                    ..Frame::default()
                },
                0,
            ),
        };
        self.creators.insert((process, gopc), (frame, bytes));
    }

    /// Names something of `process` (`name`), and charges it, if it fits the process's
    /// quota and (after the largest holder gave its names back) the share.
    fn admit<E>(
        &mut self,
        process: ProcessKey,
        name: impl FnOnce() -> Result<Vec<Frame>, E>,
    ) -> Result<Option<(Vec<Frame>, u64)>, E> {
        let quota = self.budget.quota(MemoryKind::Sites);
        let held = self.held.get(&process).copied().unwrap_or(0);
        let over = |needed: u64| Cause::Memory {
            kind: MemoryKind::Sites,
            needed,
            limit: quota,
        };
        if held >= quota {
            self.refuse(process, over(held));
            return Ok(None);
        }
        let frames = name()?;
        let bytes = frames_bytes(&frames);
        if held + bytes > quota {
            self.refuse(process, over(held + bytes));
            return Ok(None);
        }
        while self.budget.shortfall(MemoryKind::Sites, bytes) > 0 {
            if !self.evict_largest() {
                break;
            }
        }
        if self.budget.try_charge(MemoryKind::Sites, bytes).is_err() {
            self.refuse(process, over(held + bytes));
            return Ok(None);
        }
        *self.held.entry(process).or_default() += bytes;
        Ok(Some((frames, bytes)))
    }

    fn refuse(&mut self, process: ProcessKey, cause: Cause) {
        self.budget.refused(MemoryKind::Sites);
        self.cut.push((process, Degradation::SiteNames { cause }));
    }

    /// The process holding the most names gives its sites' names back (they keep their
    /// addresses); false when nobody holds any.
    fn evict_largest(&mut self) -> bool {
        let Some((&process, &bytes)) = self.held.iter().max_by_key(|&(_, &b)| b) else {
            return false;
        };
        if bytes == 0 {
            return false;
        }
        let mut freed = 0;
        for ((p, _), frames) in self.sites.iter_mut() {
            if *p == process
                && let Some(f) = frames.take()
            {
                freed += frames_bytes(&f);
            }
        }
        let held = self.held.entry(process).or_default();
        *held = held.saturating_sub(freed);
        self.budget.evicted(MemoryKind::Sites, freed);
        let cause = Cause::Memory {
            kind: MemoryKind::Sites,
            needed: bytes,
            limit: self.budget.share(MemoryKind::Sites),
        };
        self.cut.push((process, Degradation::SiteNames { cause }));
        freed > 0
    }

    /// The frames of a site named in an earlier census (`None`: never named, or over
    /// the budget).
    pub fn frames(&self, process: &ProcessKey, site: &SiteKey) -> Option<Arc<[Frame]>> {
        self.sites.get(&(*process, site.clone())).cloned().flatten()
    }

    /// The frame of a goroutine creator (`gopc`) seen in an earlier census.
    pub fn creator(&self, process: &ProcessKey, gopc: u64) -> Option<&Frame> {
        self.creators.get(&(*process, gopc)).map(|(frame, _)| frame)
    }

    /// Forgets the sites `keep` rejects, and the creators of processes left without a
    /// site; returns the processes that still have one.
    pub fn retain(&mut self, keep: impl Fn(&ProcessKey, &SiteKey) -> bool) -> HashSet<ProcessKey> {
        let mut freed: HashMap<ProcessKey, u64> = HashMap::new();
        self.sites.retain(|(process, site), frames| {
            let kept = keep(process, site);
            if !kept && let Some(f) = frames {
                *freed.entry(*process).or_default() += frames_bytes(f);
            }
            kept
        });
        let live: HashSet<ProcessKey> = self.sites.keys().map(|(p, _)| *p).collect();
        self.creators.retain(|(process, _), (_, bytes)| {
            let kept = live.contains(process);
            if !kept {
                *freed.entry(*process).or_default() += *bytes;
            }
            kept
        });
        for (process, bytes) in freed {
            if let Some(held) = self.held.get_mut(&process) {
                *held = held.saturating_sub(bytes);
            }
            self.budget.release(MemoryKind::Sites, bytes);
        }
        self.held.retain(|process, _| live.contains(process));
        live
    }

    /// Takes the processes whose names were refused or given back since the last call.
    pub fn take_cut(&mut self) -> Vec<(ProcessKey, Degradation)> {
        std::mem::take(&mut self.cut)
    }

    /// Creators remembered.
    pub fn creators(&self) -> usize {
        self.creators.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WaiterKind;

    fn process(pid: u32) -> ProcessKey {
        ProcessKey {
            pid,
            start_mono_ns: 1,
            exec_id: 1,
        }
    }

    fn site(pc: u64) -> SiteKey {
        SiteKey {
            kind: WaiterKind::Goroutine,
            wait: "chan receive".into(),
            stack: vec![pc].into(),
        }
    }

    /// Frames with names as long as a hostile binary makes them (capped at 1 KiB).
    fn long_frames(n: usize) -> Vec<Frame> {
        (0..n)
            .map(|i| Frame {
                function: Some("f".repeat(1000)),
                file: Some("/x".repeat(500)),
                address: i as u64,
                ..Frame::default()
            })
            .collect()
    }

    /// Check that one process's names stop at its quota (its further sites keep no
    /// names, and it says so), another process is still named, and the share is
    /// never passed: the largest holder gives its names back first.
    #[test]
    fn names_stay_within_the_quota_and_the_share() {
        let budget = MemoryBudget::leaked(16 << 20);
        let (share, quota) = (
            budget.share(MemoryKind::Sites),
            budget.quota(MemoryKind::Sites),
        );
        let mut names = SiteNames::with_budget(budget);
        let hostile = process(1);
        for pc in 0..2000 {
            names
                .name_site(hostile, &site(pc), || Ok::<_, ()>(long_frames(16)))
                .unwrap();
        }
        let held = budget.held(MemoryKind::Sites);
        assert!(held <= quota, "{held} > {quota}");
        assert!(names.frames(&hostile, &site(0)).is_some());
        assert!(
            names.frames(&hostile, &site(1999)).is_none(),
            "over its quota"
        );
        let cut = names.take_cut();
        assert!(
            cut.iter()
                .any(|(p, d)| *p == hostile && d.budget() == "sites")
        );
        for pid in 2..40 {
            for pc in 0..200 {
                names
                    .name_site(process(pid), &site(pc), || Ok::<_, ()>(long_frames(16)))
                    .unwrap();
            }
            assert!(budget.held(MemoryKind::Sites) <= share);
        }
        assert!(
            names.frames(&process(39), &site(0)).is_some(),
            "the newest is named"
        );
        names.retain(|p, _| p.pid == 39);
        assert!(budget.held(MemoryKind::Sites) <= quota);
        drop(names);
        assert_eq!(budget.held(MemoryKind::Sites), 0, "all given back");
    }
}
