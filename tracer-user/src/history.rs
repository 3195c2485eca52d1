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
        let mut order = Vec::new();
        for m in site.members.values().filter(|m| m.last_scan >= start) {
            let first = m.first_scan.max(start);
            // Seen blocked from first to last scan: a lower bound of the wait.
            let seen_s = (self.time_of(m.last_scan) - self.time_of(first)) as f64 / 1e9;
            let park = match m.detail {
                WaitDetail::Goroutine { waitsince_ns, .. } => {
                    Some(self.park_interval(process_key, process, m, start, waitsince_ns))
                }
                WaitDetail::Futex { .. } | WaitDetail::Syscall { .. } => None,
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
                    WaiterKind::Goroutine => goid_dater
                        .map(|(clock, rate)| end_s - (clock.saturating_sub(m.born)) as f64 / rate),
                },
            });
            order.push((m.born, park.is_some_and(|p| p.open)));
        }
        if parks_dated {
            date_parks_within_brackets(&mut members, &order);
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
        let lo_ns = [
            Some(process_key.start_mono_ns),
            previous_scan_ns,
            previous_gc_ns,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
        .min(hi_ns);
        ParkInterval {
            lo_ns,
            hi_ns,
            from_runtime: waitsince.is_some_and(|w| w < first_seen_ns),
            open: previous_scan_ns.is_none() && previous_gc_ns.is_none(),
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
    /// Only the process's start bounds `lo_ns`: no known GC cycle or scan came before.
    open: bool,
}

/// Each member's park date inside its interval: the members sharing an interval (one GC
/// bracket) spread evenly across it in goroutine id order (ids count up, give or take
/// the per-P batches of 16, so this only orders members, never widens a bracket). An
/// open bracket (back to the process's start) says nothing of how far back its parks
/// go: they are dated at its end, the latest they can be, which never adds spread.
fn date_parks_within_brackets(members: &mut [MemberObservation], order: &[(u64, bool)]) {
    let mut brackets: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, m) in members.iter_mut().enumerate() {
        if let (Some([_, hi]), (_, true)) = (m.parked, order[i]) {
            m.born = Some(hi);
        } else if let Some([lo, hi]) = m.parked {
            brackets
                .entry((lo.to_bits(), hi.to_bits()))
                .or_default()
                .push(i);
        }
    }
    for ((lo, hi), mut at) in brackets {
        let (lo, hi) = (f64::from_bits(lo), f64::from_bits(hi));
        at.sort_by_key(|&i| order[i].0);
        let k = at.len() as f64;
        for (j, &i) in at.iter().enumerate() {
            members[i].born = Some(lo + (j as f64 + 0.5) / k * (hi - lo));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        census::{ProcessCensus, Waiter},
        verdict::{GrowthVerdict, WaitAgeSource},
    };

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

    /// One park of a simulated goroutine: seconds relative to the first scan.
    struct Park {
        goid: u64,
        seq: u8,
        /// 0: the leak's site, 1: a pool's.
        site: u64,
        from_s: f64,
        until_s: f64,
    }

    const BASE_NS: u64 = 10_000_000_000_000;

    fn mono(t_s: f64) -> u64 {
        (BASE_NS as f64 + t_s * 1e9) as u64
    }

    /// A Go process started `age_s` before the first of 15 scans (one a second), its GC
    /// cycles starting at `gcs`, its goroutines parked as `parks` say; g.waitsince is
    /// set as the runtime sets it: the first cycle that found the park.
    fn go_window(age_s: f64, gcs: &[f64], parks: &[Park]) -> (History, ProcessKey) {
        let process = ProcessKey {
            pid: 9,
            start_mono_ns: mono(-age_s),
            exec_id: 0,
        };
        let mut h = History::new();
        for scan in 0..15 {
            let t = scan as f64;
            let mut sites: IntMap<SiteKey, Vec<Waiter>> = IntMap::default();
            for p in parks.iter().filter(|p| p.from_s <= t && t < p.until_s) {
                let waitsince = gcs
                    .iter()
                    .find(|&&g| p.from_s <= g && g <= t)
                    .map_or(0, |&g| mono(g));
                let site = SiteKey {
                    kind: WaiterKind::Goroutine,
                    wait: "chan receive".into(),
                    stack: vec![0x1000 + p.site].into(),
                };
                sites.entry(site).or_default().push(Waiter {
                    id: MemberId::Goroutine {
                        goid: p.goid,
                        seq: p.seq,
                    },
                    born: p.goid,
                    blocked_for_ns: None,
                    detail: WaitDetail::Goroutine {
                        gopc: 0x3000,
                        waitsince_ns: waitsince,
                    },
                });
            }
            let mut c = Census {
                at_mono_ns: mono(t),
                ..Census::default()
            };
            c.processes.insert(
                process,
                ProcessCensus {
                    facts: Arc::default(),
                    sites,
                    birth_clock: Some(parks.iter().map(|p| p.goid).max().unwrap_or(0)),
                },
            );
            h.record(&c);
        }
        (h, process)
    }

    /// Judges site `site` of the simulated process.
    fn judge_site(h: &History, key: &ProcessKey, site: u64) -> crate::verdict::SiteJudgement {
        let process = &h.processes[key];
        let (site_key, history) = process
            .sites
            .iter()
            .find(|(k, _)| k.stack[0] == 0x1000 + site)
            .expect("the site was seen");
        let obs = h.observe(key, process, site_key, history);
        crate::verdict::judge(&obs, &crate::verdict::VerdictPolicy::default())
    }

    /// Goroutines stranded one every `every_s` seconds from `since_s` (window-relative)
    /// up to the end of the window, goids counting up from 1000.
    fn stranded(every_s: f64, since_s: f64) -> Vec<Park> {
        (0..)
            .map(|k| since_s + every_s * k as f64)
            .take_while(|&t| t <= 14.0)
            .enumerate()
            .map(|(k, from_s)| Park {
                goid: 1000 + k as u64,
                seq: 0,
                site: 0,
                from_s,
                until_s: f64::INFINITY,
            })
            .collect()
    }

    /// A busy pool of `workers` goroutines that wake and re-park every `every_s` seconds,
    /// from well before the window to its end.
    fn busy_pool(workers: u64, every_s: f64) -> Vec<Park> {
        let mut parks = Vec::new();
        for w in 0..workers {
            let phase = every_s * w as f64 / workers as f64;
            let mut from_s = -300.0 + phase;
            let mut seq = 0u8;
            while from_s <= 14.0 {
                parks.push(Park {
                    goid: 10 + w,
                    seq,
                    site: 1,
                    from_s,
                    until_s: from_s + every_s,
                });
                from_s += every_s;
                seq = seq.wrapping_add(1);
            }
        }
        parks
    }

    /// Check that a busy pool's slow leak (one goroutine stranded every 10 s for three
    /// minutes, one arriving during the 15 s watch) is a leak, its waits dated by the GC
    /// cycles of a program that collects every 2 s, its oldest wait the runtime's
    /// (about 170 s), while the pool beside it is not.
    #[test]
    fn slow_goroutine_leak_in_a_busy_pool_is_dated_by_gc_cycles() {
        let gcs: Vec<f64> = (0..200).map(|k| -390.0 + 2.0 * k as f64).collect();
        let mut parks = stranded(10.0, -176.0);
        parks.extend(busy_pool(300, 1.0));
        let (h, key) = go_window(400.0, &gcs, &parks);
        let leak = judge_site(&h, &key, 0);
        assert_eq!(leak.verdict, GrowthVerdict::Leak, "{leak:?}");
        assert!(leak.reason.contains("parked steadily"), "{}", leak.reason);
        assert_eq!(leak.oldest_wait_source, Some(WaitAgeSource::Runtime));
        assert!(
            (170.0..=190.0).contains(&leak.oldest_wait_s),
            "{}",
            leak.oldest_wait_s
        );
        let pool = judge_site(&h, &key, 1);
        assert_eq!(pool.verdict, GrowthVerdict::Ok, "{pool:?}");
    }

    /// Check that one goroutine stranded every 30 s for five minutes is a leak in a
    /// 15 s window even when the program collects only every two minutes (its GC
    /// brackets alone prove the spread), with no arrival during the watch.
    #[test]
    fn thirty_second_goroutine_leak_with_rare_gc_is_found() {
        let gcs = [-290.0, -170.0, -50.0];
        let parks = stranded(30.0, -285.0);
        assert!(
            parks.iter().all(|p| p.from_s < 0.0),
            "no arrival in the window"
        );
        let (h, key) = go_window(300.0, &gcs, &parks);
        let leak = judge_site(&h, &key, 0);
        assert_eq!(leak.verdict, GrowthVerdict::Leak, "{leak:?}");
        assert_eq!(leak.oldest_wait_source, Some(WaitAgeSource::Runtime));
        assert!(leak.oldest_wait_s >= 170.0, "{}", leak.oldest_wait_s);
    }

    /// Check that a fixed idle pool whose goroutines all parked at start-up is no leak,
    /// with frequent or rare GC cycles, and that a pool built steadily long ago and idle
    /// since is none either.
    #[test]
    fn goroutine_pools_parked_long_ago_are_not_leaks() {
        let idle: Vec<Park> = (0..32)
            .map(|w| Park {
                goid: 10 + w,
                seq: 0,
                site: 0,
                from_s: -199.9 + 0.01 * w as f64,
                until_s: f64::INFINITY,
            })
            .collect();
        let frequent: Vec<f64> = (0..110).map(|k| -199.0 + 2.0 * k as f64).collect();
        for gcs in [&frequent[..], &[-110.0][..], &[]] {
            let (h, key) = go_window(200.0, gcs, &idle);
            let j = judge_site(&h, &key, 0);
            assert_eq!((j.verdict, j.suspect), (GrowthVerdict::Ok, false), "{j:?}");
        }
        let built: Vec<Park> = (0..60)
            .map(|w| Park {
                goid: 10 + w,
                seq: 0,
                site: 0,
                from_s: -300.0 + w as f64,
                until_s: f64::INFINITY,
            })
            .collect();
        let (h, key) = go_window(310.0, &frequent, &built);
        let j = judge_site(&h, &key, 0);
        assert_eq!(j.verdict, GrowthVerdict::Ok, "{j:?}");
    }
}
