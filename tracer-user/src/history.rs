//! The censuses of a watch window, folded per process and per site: how many waiters
//! each scan saw, and when each member was first and last seen.

use std::{collections::HashMap, sync::Arc};

use crate::{
    census::{Census, FutexWait, ProcessFacts, ProcessKey, StackKey, WaitId},
    verdict::{MemberObservation, SiteObservation},
};

/// One member's stay at a site, as scan indices.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberSpan {
    pub first_scan: usize,
    pub last_scan: usize,
    pub thread_start_mono_ns: u64,
    /// Off-CPU time when last seen (covers waits that began before leakscope).
    pub blocked_for_ns: u64,
    pub op: FutexWait,
}

/// A site's population over the window.
#[derive(Clone, Debug, Default)]
pub struct SiteHistory {
    /// Waiter count per scan index (absent scans count 0).
    pub counts: HashMap<usize, u32>,
    pub members: HashMap<WaitId, MemberSpan>,
}

/// A process's sites over the window.
#[derive(Clone, Debug)]
pub struct ProcessHistory {
    pub facts: Arc<ProcessFacts>,
    /// First and last scan in which the process had any waiter.
    pub first_scan: usize,
    pub last_scan: usize,
    pub sites: HashMap<StackKey, SiteHistory>,
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
                    sites: HashMap::new(),
                });
            entry.last_scan = scan;
            for (stack, waiters) in &process.sites {
                let site = entry.sites.entry(stack.clone()).or_default();
                site.counts.insert(scan, waiters.len() as u32);
                for w in waiters {
                    site.members
                        .entry(w.wait)
                        .and_modify(|m| {
                            m.last_scan = scan;
                            m.blocked_for_ns = w.blocked_for_ns;
                        })
                        .or_insert(MemberSpan {
                            first_scan: scan,
                            last_scan: scan,
                            thread_start_mono_ns: w.thread_start_mono_ns,
                            blocked_for_ns: w.blocked_for_ns,
                            op: w.op,
                        });
                }
            }
        }
    }

    /// The narrow, pure view of one site that the verdict judges: the scans from the
    /// process's first to its last appearance, times in seconds from the window start.
    pub fn observe(&self, process: &ProcessHistory, site: &SiteHistory) -> SiteObservation {
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
            .map(|m| MemberObservation {
                first: m.first_scan - process.first_scan,
                last: m.last_scan - process.first_scan,
                blocked_for_s: m.blocked_for_ns as f64 / 1e9,
                started_s: secs(m.thread_start_mono_ns),
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
