//! The history within the memory budget's `history` share. A process that churns
//! fake goroutines (every one a new park at every read) or makes a new site at every
//! scan grows the window's history without bound; so after every scan and trim each
//! process's history is measured, one that holds more than the per-process quota gives
//! back what it holds over it (to seven eighths of it), and while the whole history is
//! over its share the process holding the most gives back first. What is given back:
//! the waits that ended earliest, then, if that is not enough, whole sites, those with
//! the fewest waiters now first. The process says so ([`Degradation::History`]): its
//! verdicts see less than the whole window.

use super::{GoroutineSpans, History, OPEN, ProcessHistory, SiteHistory};
use crate::{
    budget::{
        MemoryKind,
        degraded::{self, Cause, Degradation},
    },
    model::{ProcessKey, SiteKey},
};

/// Bytes of one goroutine park's span.
const SPAN_BYTES: u64 = 24;
/// Bytes of one thread wait's span, with its key and the map's own.
const MEMBER_BYTES: u64 = 96;
/// Bytes of one count (a scan's) in a site's ordered map.
const COUNT_BYTES: u64 = 48;
/// Bytes of one entry of a site's creators or label sets (the set itself is shared
/// with the goroutine table, which counts it).
const TALLY_BYTES: u64 = 32;
/// Bytes of a site (its key, its maps) and of a process, besides their entries (its
/// usage series, bounded, included).
const SITE_BYTES: u64 = 256;
const PROCESS_BYTES: u64 = 512 + crate::resources::MAX_USAGE_SAMPLES as u64 * 48;

impl SiteHistory {
    /// Heap bytes the site's history holds (in use).
    fn heap_bytes(&self) -> u64 {
        SITE_BYTES
            + self.counts.len() as u64 * COUNT_BYTES
            + self.members.len() as u64 * MEMBER_BYTES
            + self.goroutines.len() as u64 * SPAN_BYTES
            + (self.creators.len() + self.labels.len()) as u64 * TALLY_BYTES
    }
}

impl ProcessHistory {
    /// Heap bytes the process's history holds (in use).
    pub fn heap_bytes(&self) -> u64 {
        PROCESS_BYTES
            + self
                .sites
                .values()
                .map(SiteHistory::heap_bytes)
                .sum::<u64>()
            + (self.birth_clock.len() + self.gc_starts.len()) as u64 * 24
            + self.goroutine_reads.len() as u64 * 8
    }

    /// Forgets about `want` bytes: the waits that ended earliest, then whole sites, the
    /// fewest waiters now first. Returns the waits forgotten.
    fn shed(&mut self, want: u64) -> u64 {
        let before = self.heap_bytes();
        let mut forgotten = self.forget_ended_waits(want.div_ceil(SPAN_BYTES));
        let last = self.last_scan;
        let mut sites: Vec<(u32, usize, SiteKey)> = self
            .sites
            .iter()
            .map(|(key, site)| {
                (
                    site.count_at(key.kind, last),
                    site.member_count(),
                    key.clone(),
                )
            })
            .collect();
        sites.sort_unstable_by_key(|(count, members, _)| (*count, *members));
        for (_, _, key) in sites {
            if before.saturating_sub(self.heap_bytes()) >= want {
                break;
            }
            if let Some(site) = self.sites.remove(&key) {
                forgotten += site.member_count() as u64;
            }
        }
        forgotten
    }

    /// Forgets about `n` ended waits, those that ended earliest; returns how many.
    fn forget_ended_waits(&mut self, n: u64) -> u64 {
        let last = self.last_scan;
        let mut ends: Vec<u32> = Vec::new();
        for site in self.sites.values() {
            ends.extend(site.goroutines.ended());
            let ended = site.members.values().filter(|m| m.last_scan < last);
            ends.extend(ended.map(|m| m.last_scan as u32));
        }
        if ends.is_empty() || n == 0 {
            return 0;
        }
        let cut = (n as usize).min(ends.len()) - 1;
        let (_, &mut threshold, _) = ends.select_nth_unstable(cut);
        let mut forgotten = 0;
        for site in self.sites.values_mut() {
            forgotten += site.goroutines.forget_ended_by(threshold);
            let before = site.members.len();
            site.members
                .retain(|_, m| m.last_scan >= last || m.last_scan as u32 > threshold);
            forgotten += (before - site.members.len()) as u64;
        }
        self.sites.retain(|_, site| site.member_count() > 0);
        forgotten
    }
}

impl GoroutineSpans {
    /// The last scans of the parks that ended.
    fn ended(&self) -> impl Iterator<Item = u32> + '_ {
        self.spans.iter().map(|s| s.last).filter(|&l| l != OPEN)
    }

    /// Forgets the parks that ended at or before scan `threshold`; returns how many.
    fn forget_ended_by(&mut self, threshold: u32) -> u64 {
        let before = self.spans.len();
        self.spans.retain(|s| s.last == OPEN || s.last > threshold);
        self.oldest_closed = self.ended().min().unwrap_or(OPEN);
        (before - self.spans.len()) as u64
    }
}

impl History {
    /// Keeps the history within its share and each process within its quota (see the
    /// module), measuring the processes `touched` (all when `None`) afresh.
    pub(super) fn keep_within_budget(&mut self, touched: Option<&[ProcessKey]>) {
        let budget = self.budget;
        let (quota, share) = (
            budget.quota(MemoryKind::History),
            budget.share(MemoryKind::History),
        );
        let keys: Vec<ProcessKey> = match touched {
            Some(keys) => keys.to_vec(),
            None => self.processes.keys().copied().collect(),
        };
        for key in keys {
            let Some(p) = self.processes.get_mut(&key) else {
                continue;
            };
            p.bytes = p.heap_bytes();
            if p.bytes > quota {
                let cause = memory(p.bytes, quota);
                shed_process(p, p.bytes - quota / 8 * 7, cause, budget);
            }
        }
        let mut total: u64 = self.processes.values().map(|p| p.bytes).sum();
        while total > share {
            let Some(p) = self.processes.values_mut().max_by_key(|p| p.bytes) else {
                break;
            };
            let before = p.bytes;
            let want = (total - share).max(share / 8).min(before);
            shed_process(p, want, memory(total, share), budget);
            if p.bytes >= before {
                break;
            }
            total -= before - p.bytes;
        }
        budget.adjust(MemoryKind::History, self.held, total);
        self.held = total;
    }
}

fn memory(needed: u64, limit: u64) -> Cause {
    Cause::Memory {
        kind: MemoryKind::History,
        needed,
        limit,
    }
}

/// Makes `p` give back about `want` bytes, saying so once.
fn shed_process(
    p: &mut ProcessHistory,
    want: u64,
    cause: Cause,
    budget: &crate::budget::MemoryBudget,
) {
    let forgotten = p.shed(want);
    let freed = p.bytes.saturating_sub(p.heap_bytes());
    p.bytes -= freed;
    budget.refused(MemoryKind::History);
    budget.note_evicted(MemoryKind::History, freed);
    degraded::note(&mut p.degraded, Degradation::History { forgotten, cause });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{
        budget::{MemoryBudget, MemoryKind},
        census::{Census, GoroutineChanges, ProcessCensus, SiteCensus, SiteMembers},
        history::History,
        model::{GoroutineMember, ProcessKey, SiteKey, WaiterKind},
    };

    fn process(pid: u32) -> ProcessKey {
        ProcessKey {
            pid,
            start_mono_ns: 1,
            exec_id: 1,
        }
    }

    /// One read of a process that churns `n` fake goroutines: each read, the previous
    /// ones leave and `n` new ones park (ids `from..from + n`).
    fn churn(at: u64, pid: u32, from: u64, n: u64) -> Census {
        let member = |goid| GoroutineMember {
            goid,
            seq: 0,
            waitsince_ns: 0,
        };
        let changes = GoroutineChanges {
            arrived: (from..from + n).map(member).collect(),
            departed: (from.saturating_sub(n)..from).map(member).collect(),
            dated: Vec::new(),
            creators: vec![(1, n as u32)],
            ..GoroutineChanges::default()
        };
        let site = SiteKey {
            kind: WaiterKind::Goroutine,
            wait: "chan receive".into(),
            stack: vec![0x40_1000].into(),
        };
        let mut sites = crate::fasthash::IntMap::default();
        sites.insert(
            site,
            SiteCensus {
                count: n as u32,
                members: SiteMembers::Changes(changes),
                stack_bytes: Default::default(),
            },
        );
        let mut census = Census {
            at_mono_ns: at * 1_000_000_000,
            ..Census::default()
        };
        census.processes.insert(
            process(pid),
            ProcessCensus {
                facts: Arc::default(),
                sites,
                birth_clock: Some(from + n),
                goroutines_read: true,
                ..ProcessCensus::default()
            },
        );
        census
    }

    /// Check that a process churning fake goroutines keeps its history within the
    /// quota however long it runs (the waits that ended earliest go first, and it says
    /// so), that the share bounds all processes together, and that what the history
    /// holds is charged and given back.
    #[test]
    fn churn_stays_within_quota_and_share() {
        let budget = MemoryBudget::leaked(16 << 20);
        let quota = budget.quota(MemoryKind::History);
        let mut history = History::with_budget(budget);
        for scan in 0..200u64 {
            history.record(&churn(scan, 1, 1 + scan * 20_000, 20_000));
            let held = budget.held(MemoryKind::History);
            assert!(held <= quota, "scan {scan}: {held} > {quota}");
        }
        let p = &history.processes[&process(1)];
        assert!(
            p.degraded.iter().any(|d| d.budget() == "history"),
            "{:?}",
            p.degraded
        );
        let site = p.sites.values().next().expect("the site stays");
        assert!(site.goroutines.len() >= 20_000, "the parks now stay");
        for pid in 2..6 {
            for scan in 200..260u64 {
                history.record(&churn(scan, pid, 1 + scan * 20_000, 20_000));
                assert!(budget.held(MemoryKind::History) <= budget.share(MemoryKind::History));
            }
        }
        drop(history);
        assert_eq!(budget.held(MemoryKind::History), 0);
    }
}
