//! The censuses of a watch window, folded per process and per site: how many waiters
//! each scan saw, and when each member was first and last seen.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

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
    /// Go processes: the newest goroutine id per scan, to date goroutine ids.
    pub birth_clock: IntMap<usize, u64>,
    /// Go processes: the GC cycles known to have run (their start, CLOCK_MONOTONIC ns),
    /// read off the `g.waitsince` of parked goroutines: they bracket when parks began.
    pub gc_starts: BTreeSet<u64>,
}

/// GC starts remembered per process (the newest): Go runs a cycle at least every two
/// minutes once it has run one, far fewer than this in any window.
const MAX_GC_STARTS: usize = 4096;

/// Everything seen during one watch window. Scans are numbered from the first ever
/// recorded; a rolling window (the daemon) drops old scans with [`History::trim`].
#[derive(Clone, Debug, Default)]
pub struct History {
    /// CLOCK_MONOTONIC time of each scan in the window, oldest first.
    scan_times_ns: VecDeque<u64>,
    /// Number of the oldest scan in the window.
    first_scan: usize,
    pub processes: HashMap<ProcessKey, ProcessHistory>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans in the window.
    pub fn scans(&self) -> usize {
        self.scan_times_ns.len()
    }

    /// Number of the oldest and newest scan in the window.
    pub fn window(&self) -> std::ops::RangeInclusive<usize> {
        self.first_scan..=(self.first_scan + self.scan_times_ns.len()).saturating_sub(1)
    }

    /// CLOCK_MONOTONIC time of scan number `scan` (clamped to the window).
    pub fn time_of(&self, scan: usize) -> u64 {
        let i = scan
            .saturating_sub(self.first_scan)
            .min(self.scan_times_ns.len().saturating_sub(1));
        self.scan_times_ns.get(i).copied().unwrap_or(0)
    }

    /// Seconds from the oldest to the newest scan of the window.
    pub fn span_s(&self) -> f64 {
        match (self.scan_times_ns.front(), self.scan_times_ns.back()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// Drops scans older than `keep_ns` before the newest, and everything only they saw.
    pub fn trim(&mut self, keep_ns: u64) {
        let Some(&newest) = self.scan_times_ns.back() else {
            return;
        };
        while self.scan_times_ns.len() > 1
            && self
                .scan_times_ns
                .front()
                .is_some_and(|&t| newest - t > keep_ns)
        {
            self.scan_times_ns.pop_front();
            self.first_scan += 1;
        }
        let first = self.first_scan;
        self.processes.retain(|_, p| p.last_scan >= first);
        for p in self.processes.values_mut() {
            p.birth_clock.retain(|&scan, _| scan >= first);
            p.sites.retain(|_, site| {
                site.members.retain(|_, m| m.last_scan >= first);
                site.counts.retain(|&scan, _| scan >= first);
                !site.members.is_empty()
            });
        }
    }

    /// Whether the window still holds this site of this process.
    pub fn has_site(&self, process: &ProcessKey, site: &SiteKey) -> bool {
        self.processes
            .get(process)
            .is_some_and(|p| p.sites.contains_key(site))
    }

    /// Folds one census in as the next scan.
    pub fn record(&mut self, census: &Census) {
        let scan = self.first_scan + self.scan_times_ns.len();
        self.scan_times_ns.push_back(census.at_mono_ns);
        for (key, process) in &census.processes {
            let entry = self
                .processes
                .entry(*key)
                .or_insert_with(|| ProcessHistory {
                    facts: process.facts.clone(),
                    first_scan: scan,
                    last_scan: scan,
                    sites: IntMap::default(),
                    birth_clock: IntMap::default(),
                    gc_starts: BTreeSet::new(),
                });
            entry.last_scan = scan;
            entry.facts = process.facts.clone();
            if let Some(clock) = process.birth_clock {
                entry.birth_clock.insert(scan, clock);
            }
            for (site_key, waiters) in &process.sites {
                let site = entry.sites.entry(site_key.clone()).or_default();
                site.counts.insert(scan, waiters.len() as u32);
                for w in waiters {
                    if let WaitDetail::Goroutine { waitsince_ns, .. } = w.detail
                        && waitsince_ns > key.start_mono_ns
                        && waitsince_ns <= census.at_mono_ns
                    {
                        entry.gc_starts.insert(waitsince_ns);
                    }
                    site.members
                        .entry(w.id)
                        .and_modify(|m| {
                            m.last_scan = scan;
                            m.blocked_for_ns = w.blocked_for_ns;
                            // One park: g.waitsince only goes from unset to set.
                            if matches!(w.detail, WaitDetail::Goroutine { waitsince_ns, .. } if waitsince_ns != 0)
                            {
                                m.detail = w.detail;
                            }
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
            while entry.gc_starts.len() > MAX_GC_STARTS {
                entry.gc_starts.pop_first();
            }
        }
    }

    /// The narrow, pure view of one site that the verdict judges: the scans from the
    /// process's first to its last appearance, times in seconds from the window start.
    pub fn observe(
        &self,
        process_key: &ProcessKey,
        process: &ProcessHistory,
        key: &SiteKey,
        site: &SiteHistory,
    ) -> SiteObservation {
        let t0 = self.scan_times_ns.front().copied().unwrap_or(0);
        let secs = |ns: u64| ns as f64 / 1e9 - t0 as f64 / 1e9;
        let start = process.first_scan.max(self.first_scan);
        let range = start..=process.last_scan;
        let times_s = range.clone().map(|i| secs(self.time_of(i))).collect();
        let counts = range
            .clone()
            .map(|i| site.counts.get(&i).copied().unwrap_or(0))
            .collect();
        let end_s = secs(self.time_of(process.last_scan));
        let goid_dater = self.goid_dater(process, start);
        // Goroutine parks are dated by the runtime's GC cycles once one is known.
        let parks_dated = key.kind == WaiterKind::Goroutine && !process.gc_starts.is_empty();
        let mut members: Vec<MemberObservation> = Vec::with_capacity(site.members.len());
        let mut goids = Vec::new();
        for m in site.members.values().filter(|m| m.last_scan >= start) {
            let first = m.first_scan.max(start);
            // Seen blocked from first to last scan: a lower bound of the wait.
            let seen_s = (self.time_of(m.last_scan) - self.time_of(first)) as f64 / 1e9;
            let park = match m.detail {
                WaitDetail::Goroutine { waitsince_ns, .. } => {
                    Some(self.park_interval(process_key, process, m, start, waitsince_ns))
                }
                WaitDetail::Futex { .. } => None,
            };
            // g.waitsince: the park began before that GC cycle, a longer lower bound.
            let runtime_s = park
                .filter(|p| p.from_runtime)
                .map(|p| (self.time_of(m.last_scan).saturating_sub(p.hi_ns)) as f64 / 1e9);
            let blocked_for_s = m
                .blocked_for_ns
                .map_or(seen_s, |ns| (ns as f64 / 1e9).max(seen_s))
                .max(runtime_s.unwrap_or(0.0));
            members.push(MemberObservation {
                first: first - start,
                last: m.last_scan - start,
                blocked_for_s,
                wait_age_from_runtime: runtime_s.is_some_and(|r| r > seen_s),
                parked: park
                    .filter(|_| parks_dated)
                    .map(|p| [secs(p.lo_ns), secs(p.hi_ns)]),
                born: match key.kind {
                    WaiterKind::Thread => Some(secs(m.born)),
                    WaiterKind::Goroutine => goid_dater.map(|(clock, rate)| {
                        end_s - (clock.saturating_sub(m.born)) as f64 / rate
                    }),
                },
            });
            goids.push(m.born);
        }
        if parks_dated {
            date_parks_within_brackets(&mut members, &goids);
        }
        SiteObservation {
            times_s,
            counts,
            members,
            window_started_before_process: process.first_scan > self.first_scan,
            wait_age_known: key.kind == WaiterKind::Thread,
            process_age_s: Some(
                self.time_of(process.last_scan)
                    .saturating_sub(process_key.start_mono_ns) as f64
                    / 1e9,
            ),
        }
    }

    /// When a goroutine member's park began, as far as the runtime and the scans tell:
    /// after the latest GC cycle known to have started before it was seen parked (that
    /// cycle's stack scan found it running, or it did not exist yet), after the scan
    /// before the one that first saw it, after the process started; and before its
    /// `g.waitsince` (the first cycle that found it parked) and the scan that first saw
    /// it. A cycle's start is taken as the time of its stack scans, which follow within
    /// its mark phase (milliseconds).
    fn park_interval(
        &self,
        process_key: &ProcessKey,
        process: &ProcessHistory,
        m: &MemberSpan,
        start: usize,
        waitsince_ns: u64,
    ) -> ParkInterval {
        let first_seen_ns = self.time_of(m.first_scan.max(start));
        let waitsince = (waitsince_ns > process_key.start_mono_ns
            && waitsince_ns <= self.time_of(m.last_scan))
        .then_some(waitsince_ns);
        let hi_ns = waitsince.map_or(first_seen_ns, |w| w.min(first_seen_ns));
        let previous_scan_ns = (m.first_scan > start).then(|| self.time_of(m.first_scan - 1));
        let previous_gc_ns = process.gc_starts.range(..hi_ns).next_back().copied();
        let lo_ns = [Some(process_key.start_mono_ns), previous_scan_ns, previous_gc_ns]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
            .min(hi_ns);
        ParkInterval {
            lo_ns,
            hi_ns,
            from_runtime: waitsince.is_some_and(|w| w < first_seen_ns),
        }
    }

    /// Dates goroutine ids: the newest id at the end of the window and how many ids per
    /// second the process created during it (`None` when it created none: then ids say
    /// nothing about time). Assumes the creation rate of the window held before it, the
    /// best a reader that started late can do.
    fn goid_dater(&self, process: &ProcessHistory, start: usize) -> Option<(u64, f64)> {
        let first =
            (start..=process.last_scan).find_map(|s| Some((s, *process.birth_clock.get(&s)?)))?;
        let last = (start..=process.last_scan)
            .rev()
            .find_map(|s| Some((s, *process.birth_clock.get(&s)?)))?;
        let dt = (self.time_of(last.0) - self.time_of(first.0)) as f64 / 1e9;
        let ids = last.1.checked_sub(first.1)? as f64;
        (dt > 0.0 && ids > 0.0).then(|| (last.1, ids / dt))
    }
}

/// When a goroutine's park began: between `lo_ns` and `hi_ns` (CLOCK_MONOTONIC).
#[derive(Clone, Copy, Debug, PartialEq)]
struct ParkInterval {
    lo_ns: u64,
    hi_ns: u64,
    /// `hi_ns` is the runtime's `g.waitsince`, before the scans first saw the park.
    from_runtime: bool,
}

/// Each member's park date inside its interval: the members sharing an interval (one GC
/// bracket) spread evenly across it in goroutine id order (ids count up, give or take
/// the per-P batches of 16, so this only orders members, never widens a bracket).
fn date_parks_within_brackets(members: &mut [MemberObservation], goids: &[u64]) {
    let mut brackets: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, m) in members.iter().enumerate() {
        if let Some([lo, hi]) = m.parked {
            brackets
                .entry((lo.to_bits(), hi.to_bits()))
                .or_default()
                .push(i);
        }
    }
    for ((lo, hi), mut at) in brackets {
        let (lo, hi) = (f64::from_bits(lo), f64::from_bits(hi));
        at.sort_by_key(|&i| goids[i]);
        let k = at.len() as f64;
        for (j, &i) in at.iter().enumerate() {
            members[i].born = Some(lo + (j as f64 + 0.5) / k * (hi - lo));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::{ProcessCensus, Waiter};

    fn census(at_s: u64, goids: std::ops::Range<u64>) -> Census {
        let process = ProcessKey {
            pid: 7,
            start_mono_ns: 1,
            exec_id: 0,
        };
        let site = SiteKey {
            kind: WaiterKind::Goroutine,
            wait: "chan send".into(),
            stack: vec![0x1000, 0x2000].into(),
        };
        let waiters = goids
            .map(|goid| Waiter {
                id: MemberId::Goroutine { goid, seq: 0 },
                born: goid,
                blocked_for_ns: None,
                detail: WaitDetail::Goroutine {
                    gopc: 0x3000,
                    waitsince_ns: 0,
                },
            })
            .collect();
        let mut sites = IntMap::default();
        sites.insert(site, waiters);
        let mut c = Census {
            at_mono_ns: at_s * 1_000_000_000,
            ..Census::default()
        };
        c.processes.insert(
            process,
            ProcessCensus {
                facts: Arc::default(),
                sites,
                birth_clock: None,
            },
        );
        c
    }

    /// Check that trimming a rolling window drops old scans and the members only they
    /// saw, and that observations are then relative to the kept window.
    #[test]
    fn trimmed_window_observes_only_recent_scans() {
        let mut h = History::new();
        for s in 0..10u64 {
            // goroutine s*10 arrives at scan s and stays; goroutine 1000 leaves after scan 2.
            let mut c = census(s, 0..(s + 1));
            if s <= 2 {
                c = census(s, 0..(s + 1));
                let p = c.processes.values_mut().next().unwrap();
                let waiters = p.sites.values_mut().next().unwrap();
                waiters.push(Waiter {
                    id: MemberId::Goroutine { goid: 1000, seq: 0 },
                    ..waiters[0].clone()
                });
            }
            h.record(&c);
        }
        h.trim(3_000_000_000);
        assert_eq!(h.window(), 6..=9);
        assert_eq!(h.scans(), 4);
        assert!((h.span_s() - 3.0).abs() < 1e-9);
        let (key, process) = h.processes.iter().next().unwrap();
        assert_eq!(key.pid, 7);
        let (site_key, site) = process.sites.iter().next().unwrap();
        assert!(
            !site
                .members
                .contains_key(&MemberId::Goroutine { goid: 1000, seq: 0 }),
            "left before the window"
        );
        let obs = h.observe(key, process, site_key, site);
        assert_eq!(obs.counts, vec![7, 8, 9, 10]);
        assert_eq!(obs.times_s, vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(
            obs.members.iter().filter(|m| m.first > 0).count(),
            3,
            "three arrived in the window"
        );
        assert!(!obs.window_started_before_process);
    }
}
