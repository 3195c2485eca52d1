//! The censuses of a watch window, folded per process and per site: how many waiters
//! each scan saw, and when each member was first and last seen.

use std::{collections::HashMap, sync::Arc};

use crate::{
    census::{Census, MemberId, ProcessFacts, ProcessKey, SiteKey, WaitDetail, WaiterKind},
    fasthash::IntMap,
    verdict::{MemberObservation, SiteObservation},
};

/// One member's stay at a site, as scan indices.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberSpan {
    pub first_scan: usize,
    pub last_scan: usize,
    /// Creation order: thread start (CLOCK_MONOTONIC ns) or goroutine id.
    pub born: u64,
    /// Blocked time when last seen, where the source can tell.
    pub blocked_for_ns: Option<u64>,
    pub detail: WaitDetail,
}

/// A site's population over the window.
#[derive(Clone, Debug, Default)]
pub struct SiteHistory {
    /// Waiter count per scan index (absent scans count 0).
    pub counts: IntMap<usize, u32>,
    pub members: IntMap<MemberId, MemberSpan>,
}

/// A process's sites over the window.
#[derive(Clone, Debug)]
pub struct ProcessHistory {
    pub facts: Arc<ProcessFacts>,
    /// First and last scan in which the process had any waiter.
    pub first_scan: usize,
    pub last_scan: usize,
    pub sites: IntMap<SiteKey, SiteHistory>,
}

/// Everything seen during one watch window.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// CLOCK_MONOTONIC time of each scan.
    pub scan_times_ns: Vec<u64>,
    pub processes: HashMap<ProcessKey, ProcessHistory>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn scans(&self) -> usize {
        self.scan_times_ns.len()
    }

    /// Folds one census in as the next scan.
    pub fn record(&mut self, census: &Census) {
        let scan = self.scan_times_ns.len();
        self.scan_times_ns.push(census.at_mono_ns);
        for (key, process) in &census.processes {
            let entry = self
                .processes
                .entry(*key)
                .or_insert_with(|| ProcessHistory {
                    facts: process.facts.clone(),
                    first_scan: scan,
                    last_scan: scan,
                    sites: IntMap::default(),
                });
            entry.last_scan = scan;
            entry.facts = process.facts.clone();
            for (key, waiters) in &process.sites {
                let site = entry.sites.entry(key.clone()).or_default();
                site.counts.insert(scan, waiters.len() as u32);
                for w in waiters {
                    site.members
                        .entry(w.id)
                        .and_modify(|m| {
                            m.last_scan = scan;
                            m.blocked_for_ns = w.blocked_for_ns;
                        })
                        .or_insert(MemberSpan {
                            first_scan: scan,
                            last_scan: scan,
                            born: w.born,
                            blocked_for_ns: w.blocked_for_ns,
                            detail: w.detail,
                        });
                }
            }
        }
    }

    /// The narrow, pure view of one site that the verdict judges: the scans from the
    /// process's first to its last appearance, times in seconds from the window start.
    pub fn observe(
        &self,
        process: &ProcessHistory,
        key: &SiteKey,
        site: &SiteHistory,
    ) -> SiteObservation {
        let t0 = self.scan_times_ns.first().copied().unwrap_or(0);
        let secs = |ns: u64| ns as f64 / 1e9 - t0 as f64 / 1e9;
        let range = process.first_scan..=process.last_scan;
        let times_s = range.clone().map(|i| secs(self.scan_times_ns[i])).collect();
        let counts = range
            .clone()
            .map(|i| site.counts.get(&i).copied().unwrap_or(0))
            .collect();
        let members = site
            .members
            .values()
            .map(|m| {
                // Seen blocked from first to last scan: a lower bound of the wait, and the
                // only one for goroutines (Go sets g.waitsince only during GC).
                let seen_s = (self.scan_times_ns[m.last_scan] - self.scan_times_ns[m.first_scan])
                    as f64
                    / 1e9;
                MemberObservation {
                    first: m.first_scan - process.first_scan,
                    last: m.last_scan - process.first_scan,
                    blocked_for_s: m
                        .blocked_for_ns
                        .map_or(seen_s, |ns| (ns as f64 / 1e9).max(seen_s)),
                    born: match key.kind {
                        WaiterKind::Thread => secs(m.born),
                        WaiterKind::Goroutine => m.born as f64,
                    },
                }
            })
            .collect();
        SiteObservation {
            times_s,
            counts,
            members,
            window_started_before_process: process.first_scan > 0,
        }
    }
}
