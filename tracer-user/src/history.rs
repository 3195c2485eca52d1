//! The censuses of a watch window, folded per process and per site: how many waiters
//! each scan saw, and when each member was first and last seen.

mod budget;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

use crate::{
    budget::{
        MemoryBudget, MemoryKind,
        degraded::{self, Degradations},
    },
    census::{Census, GoroutineChanges, SiteMembers},
    fasthash::{IntHasher, IntMap},
    model::{
        GoroutineMember, LabelSet, MemberId, ProcessFacts, ProcessKey, SiteKey, ThreadKey,
        WaiterKind,
    },
    resources::{HostSample, ProcessLimits, ProcessUsage, StackBytes, UsageSeries},
    sources::error::ReadError,
    sources::threads::{ThreadWaiter, WaitDetail},
    verdict::{MemberObservation, Members, SiteObservation},
};

/// One thread wait's stay at a site, as scan indices.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberSpan {
    pub first_scan: usize,
    pub last_scan: usize,
    /// Creation order: thread start (CLOCK_MONOTONIC ns).
    pub born: u64,
    /// Blocked time when last seen, where the source can tell.
    pub blocked_for_ns: Option<u64>,
    pub detail: WaitDetail,
}

/// A goroutine span still open: the park went on at the process's latest read.
const OPEN: u32 = u32::MAX;

/// One goroutine park's stay at a site in 24 bytes: goroutine id and park sequence in
/// one word, first and last scan (`OPEN` while it lasts), and its `g.waitsince`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GoroutineSpan {
    key: u64,
    first: u32,
    last: u32,
    waitsince_ns: u64,
}

fn span_key(m: &GoroutineMember) -> u64 {
    (m.goid << 8) | u64::from(m.seq)
}

/// The goroutine parks of one site over the window, sorted by key. A read costs per
/// change: arrivals append (goroutine ids grow) or merge in, departures are found by
/// binary search, parks that go on cost nothing.
#[derive(Clone, Debug)]
pub struct GoroutineSpans {
    spans: Vec<GoroutineSpan>,
    /// The earliest last scan of a closed span: nothing to trim before it.
    oldest_closed: u32,
}

impl Default for GoroutineSpans {
    fn default() -> Self {
        Self {
            spans: Vec::new(),
            oldest_closed: OPEN,
        }
    }
}

impl GoroutineSpans {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn find(&mut self, m: &GoroutineMember) -> Option<&mut GoroutineSpan> {
        let key = span_key(m);
        let i = self.spans.binary_search_by_key(&key, |s| s.key).ok()?;
        self.spans.get_mut(i)
    }

    fn arrive(&mut self, members: &[GoroutineMember], scan: u32) {
        let open = |m: &GoroutineMember| GoroutineSpan {
            key: span_key(m),
            first: scan,
            last: OPEN,
            waitsince_ns: m.waitsince_ns,
        };
        let mut late = Vec::new();
        for m in members {
            match self.spans.last() {
                Some(last) if last.key >= span_key(m) => late.push(open(m)),
                _ => self.spans.push(open(m)),
            }
        }
        late.sort_unstable_by_key(|s| s.key);
        late.dedup_by_key(|s| s.key);
        // The same park seen again (a wrapped sequence) goes on; the rest are new.
        late.retain(
            |new| match self.spans.binary_search_by_key(&new.key, |s| s.key) {
                Ok(i) => {
                    self.spans[i].last = OPEN;
                    false
                }
                Err(_) => true,
            },
        );
        if late.is_empty() {
            return;
        }
        // Merge in place from the back: no second copy of a million spans.
        let old = self.spans.len();
        self.spans.resize(old + late.len(), late[0]);
        let (mut a, mut b, mut to) = (old, late.len(), old + late.len());
        while b > 0 {
            to -= 1;
            if a > 0 && self.spans[a - 1].key > late[b - 1].key {
                self.spans[to] = self.spans[a - 1];
                a -= 1;
            } else {
                self.spans[to] = late[b - 1];
                b -= 1;
            }
        }
    }

    fn date(&mut self, members: &[GoroutineMember]) {
        for m in members {
            if let Some(span) = self.find(m) {
                span.waitsince_ns = m.waitsince_ns;
            }
        }
    }

    fn depart(&mut self, members: &[GoroutineMember], last_seen: u32) {
        for m in members {
            if let Some(span) = self.find(m)
                && span.last == OPEN
            {
                span.last = last_seen;
                self.oldest_closed = self.oldest_closed.min(last_seen);
            }
        }
    }

    fn trim(&mut self, first: u32) {
        if self.oldest_closed >= first {
            return;
        }
        self.spans.retain(|s| s.last >= first);
        self.oldest_closed = self.spans.iter().map(|s| s.last).min().unwrap_or(OPEN);
    }
}

/// A site's population over the window.
#[derive(Clone, Debug, Default)]
pub struct SiteHistory {
    /// Waiter count per scan index. Thread sites: every scan, absent scans count 0.
    /// Goroutine sites: the scans that read the process's goroutines.
    pub counts: BTreeMap<usize, u32>,
    /// Thread waits.
    pub members: IntMap<MemberId, MemberSpan>,
    /// Goroutine parks.
    pub goroutines: GoroutineSpans,
    /// Goroutine sites: current members per creator (`gopc`).
    pub creators: IntMap<u64, u32>,
    /// Goroutine sites: current members per pprof label set.
    pub labels: HashMap<Arc<LabelSet>, u32>,
    /// Goroutine sites: current members the Go runtime proved leaked (`_Gleaked`).
    pub runtime_leaked: u32,
    /// The stack memory its waiters held at the latest scan (goroutine sites: read)
    /// that saw it.
    pub stack_bytes: StackBytes,
}

impl SiteHistory {
    /// Members (waits) the window holds for this site.
    pub fn member_count(&self) -> usize {
        self.members.len() + self.goroutines.len()
    }

    /// The waiter count at `scan`: for goroutine sites, as of the latest read by then.
    pub fn count_at(&self, kind: WaiterKind, scan: usize) -> u32 {
        match kind {
            WaiterKind::Thread => self.counts.get(&scan).copied().unwrap_or(0),
            WaiterKind::Goroutine => self
                .counts
                .range(..=scan)
                .next_back()
                .map_or(0, |(_, &n)| n),
        }
    }

    /// The `go` statement that created most of a goroutine site's current members.
    pub fn most_common_creator(&self) -> Option<u64> {
        self.creators
            .iter()
            .max_by_key(|&(&gopc, &n)| (n, std::cmp::Reverse(gopc)))
            .map(|(&gopc, _)| gopc)
    }

    /// The label sets most of a goroutine site's current members have, most common
    /// first (ties by the sets' order), at most `n`.
    pub fn most_common_labels(&self, n: usize) -> Vec<(Arc<LabelSet>, u32)> {
        let mut sets: Vec<(Arc<LabelSet>, u32)> = self
            .labels
            .iter()
            .map(|(set, &count)| (set.clone(), count))
            .collect();
        sets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        sets.truncate(n);
        sets
    }

    fn record_goroutines(&mut self, changes: &GoroutineChanges, scan: usize, previous_read: usize) {
        self.goroutines.arrive(&changes.arrived, scan as u32);
        self.goroutines.date(&changes.dated);
        self.goroutines
            .depart(&changes.departed, previous_read as u32);
        self.creators.clear();
        self.creators.extend(changes.creators.iter().copied());
        self.labels.clear();
        for (set, count) in &changes.labels {
            *self.labels.entry(set.clone()).or_default() += count;
        }
        self.runtime_leaked = changes.runtime_leaked;
    }

    /// Thread sites list every member each scan: the seen ones are extended or begun.
    fn record_threads(&mut self, waiters: &[ThreadWaiter], scan: usize) {
        for w in waiters {
            self.members
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

/// A process's sites over the window.
#[derive(Clone, Debug)]
pub struct ProcessHistory {
    pub facts: Arc<ProcessFacts>,
    /// First and last scan in which the process had any waiter.
    pub first_scan: usize,
    pub last_scan: usize,
    pub sites: IntMap<SiteKey, SiteHistory>,
    /// Go processes: the newest goroutine id per read, to date goroutine ids.
    pub birth_clock: IntMap<usize, u64>,
    /// Go processes: the GC cycles known to have run (their start, CLOCK_MONOTONIC ns),
    /// read off the `g.waitsince` of parked goroutines: they bracket when parks began.
    pub gc_starts: BTreeSet<u64>,
    /// Go processes: the scans that read its goroutines (a huge process is read less
    /// often than every scan).
    pub goroutine_reads: VecDeque<usize>,
    /// Go processes: why the latest scan could not read its goroutines.
    pub unreadable: Option<ReadError>,
    /// What it held of what the kernel limits at the scans that listed it (bounded).
    pub usage: UsageSeries,
    /// Its real uid at the latest scan that told it.
    pub uid: Option<u32>,
    /// The limits on it, as last read (once per window).
    pub limits: Option<Arc<ProcessLimits>>,
    /// What a memory or CPU budget cut from its analysis (the census's reasons, and
    /// the history's own cuts).
    pub degraded: Degradations,
    /// Heap bytes its history held when last measured (see [`History::record`]).
    bytes: u64,
}

/// Goroutine ids a process must create during the window before ids date births: four
/// of the runtime's per-P batches of 16 (`_GoidCacheBatch`).
const MIN_DATING_GOIDS: u64 = 64;

/// GC starts remembered per process (the newest): Go runs a cycle at least every two
/// minutes once it has run one, far fewer than this in any window.
const MAX_GC_STARTS: usize = 4096;

/// Everything seen during one watch window. Scans are numbered from the first ever
/// recorded; a rolling window (the daemon) drops old scans with [`History::trim`]. It
/// stays within the memory budget's `history` share (see [`budget`]).
#[derive(Debug)]
pub struct History {
    /// CLOCK_MONOTONIC time of each scan in the window, oldest first.
    scan_times_ns: VecDeque<u64>,
    /// Number of the oldest scan in the window.
    first_scan: usize,
    pub processes: HashMap<ProcessKey, ProcessHistory>,
    /// The host's limits and counters, and its limited cgroups' usage, at the newest
    /// scan.
    pub host: HostSample,
    budget: &'static MemoryBudget,
    /// Bytes charged to the budget.
    held: u64,
}

impl Default for History {
    fn default() -> Self {
        Self::with_budget(crate::budget::global())
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.budget.release(MemoryKind::History, self.held);
    }
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// A history that counts against `budget`.
    pub fn with_budget(budget: &'static MemoryBudget) -> Self {
        Self {
            scan_times_ns: VecDeque::new(),
            first_scan: 0,
            processes: HashMap::new(),
            host: HostSample::default(),
            budget,
            held: 0,
        }
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
            p.usage.trim(first);
            // Keep the newest read before the window: goroutine counts hold until the next.
            while p.goroutine_reads.len() > 1 && p.goroutine_reads[1] <= first {
                p.goroutine_reads.pop_front();
            }
            p.sites.retain(|key, site| {
                site.members.retain(|_, m| m.last_scan >= first);
                site.goroutines.trim(first as u32);
                let keep_from = match key.kind {
                    WaiterKind::Thread => first,
                    // The count in force at the window start stays, as its first point.
                    WaiterKind::Goroutine => site
                        .counts
                        .range(..=first)
                        .next_back()
                        .map_or(first, |(&s, _)| s),
                };
                site.counts.retain(|&scan, _| scan >= keep_from);
                site.member_count() > 0
            });
        }
        self.keep_within_budget(None);
    }

    /// Seconds from a Go process's latest goroutine read to the newest scan: how fresh
    /// its goroutine data is (`None`: never read in the window).
    pub fn goroutine_read_age_s(&self, process: &ProcessHistory) -> Option<f64> {
        let last = *process.goroutine_reads.back()?;
        let newest = self.scan_times_ns.back()?;
        Some(newest.saturating_sub(self.time_of(last)) as f64 / 1e9)
    }

    /// What a process held at its sampled scans of the window: seconds from the window
    /// start and its use then, oldest first.
    pub fn usage_course(&self, process: &ProcessHistory) -> Vec<(f64, ProcessUsage)> {
        let t0 = self.time_of(*self.window().start());
        process
            .usage
            .samples()
            .map(|s| {
                let t = self.time_of(s.scan as usize).saturating_sub(t0) as f64 / 1e9;
                (t, s.usage(process.uid))
            })
            .collect()
    }

    /// Members (waits) the whole window holds: leakscope's memory grows with it.
    pub fn members(&self) -> usize {
        self.processes
            .values()
            .flat_map(|p| p.sites.values())
            .map(SiteHistory::member_count)
            .sum()
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
        self.host = census.resources.host.clone();
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
                    goroutine_reads: VecDeque::new(),
                    unreadable: None,
                    usage: UsageSeries::default(),
                    uid: None,
                    limits: None,
                    degraded: Degradations::default(),
                    bytes: 0,
                });
            entry.last_scan = scan;
            for reason in process.degraded.iter() {
                degraded::note(&mut entry.degraded, reason.clone());
            }
            entry.facts = process.facts.clone();
            entry.unreadable.clone_from(&process.unreadable);
            if let Some(usage) = &process.usage {
                entry.usage.push(scan, usage);
                entry.uid = usage.uid.or(entry.uid);
            }
            if let Some(limits) = census.resources.limits.get(key) {
                entry.limits = Some(limits.clone());
            }
            if let Some(clock) = process.birth_clock {
                entry.birth_clock.insert(scan, clock);
            }
            // Goroutines that left were last seen at the previous read.
            let previous_read = entry.goroutine_reads.back().copied().unwrap_or(scan);
            if process.goroutines_read {
                entry.goroutine_reads.push_back(scan);
            }
            for (site_key, site_census) in &process.sites {
                let site = entry.sites.entry(site_key.clone()).or_default();
                site.counts.insert(scan, site_census.count);
                site.stack_bytes = site_census.stack_bytes;
                match &site_census.members {
                    SiteMembers::All(waiters) => site.record_threads(waiters, scan),
                    SiteMembers::Changes(changes) => {
                        let gc_starts = changes
                            .arrived
                            .iter()
                            .chain(&changes.dated)
                            .map(|m| m.waitsince_ns)
                            .filter(|&w| w > key.start_mono_ns && w <= census.at_mono_ns);
                        entry.gc_starts.extend(gc_starts);
                        site.record_goroutines(changes, scan, previous_read);
                    }
                }
            }
            while entry.gc_starts.len() > MAX_GC_STARTS {
                entry.gc_starts.pop_first();
            }
        }
        let touched: Vec<ProcessKey> = census.processes.keys().copied().collect();
        self.keep_within_budget(Some(&touched));
    }

    /// The narrow, pure view of one site that the verdict judges: the scans from the
    /// process's first to its last appearance (for goroutine sites, the scans that read
    /// its goroutines), times in seconds from the window start, and every member.
    pub fn observe(
        &self,
        process_key: &ProcessKey,
        process: &ProcessHistory,
        key: &SiteKey,
        site: &SiteHistory,
    ) -> SiteObservation {
        let (mut obs, members) = self.view(process_key, process, key, site);
        obs.members
            .reserve(site.goroutines.len() + site.members.len());
        members.visit(&mut |m| obs.members.push(m.clone()));
        obs
    }

    /// [`History::observe`] without building the members: the observation's `members`
    /// stay empty, and the returned [`SitePopulation`] hands them out one at a time (the
    /// verdict of a site of a million goroutines then holds no member list).
    pub fn view<'a>(
        &'a self,
        process_key: &'a ProcessKey,
        process: &'a ProcessHistory,
        key: &SiteKey,
        site: &'a SiteHistory,
    ) -> (SiteObservation, SitePopulation<'a>) {
        let start = process.first_scan.max(self.first_scan);
        let scans: Vec<usize> = match key.kind {
            WaiterKind::Thread => (start..=process.last_scan).collect(),
            WaiterKind::Goroutine => process
                .goroutine_reads
                .iter()
                .copied()
                .filter(|&s| s >= start)
                .collect(),
        };
        let times_s = scans.iter().map(|&i| self.secs(self.time_of(i))).collect();
        let counts = scans
            .iter()
            .map(|i| site.counts.get(i).copied().unwrap_or(0))
            .collect();
        let obs = SiteObservation {
            times_s,
            counts,
            members: Vec::new(),
            window_started_before_process: process.first_scan > self.first_scan,
            wait_age_known: key.kind == WaiterKind::Thread,
            process_age_s: Some(
                self.time_of(process.last_scan)
                    .saturating_sub(process_key.start_mono_ns) as f64
                    / 1e9,
            ),
        };
        let population = SitePopulation {
            history: self,
            process_key,
            process,
            site,
            kind: key.kind,
            start,
            scans,
        };
        (obs, population)
    }

    /// Seconds from the window start.
    fn secs(&self, ns: u64) -> f64 {
        let t0 = self.scan_times_ns.front().copied().unwrap_or(0);
        ns as f64 / 1e9 - t0 as f64 / 1e9
    }

    fn visit_threads(
        &self,
        site: &SiteHistory,
        start: usize,
        visit: &mut dyn FnMut(&MemberObservation),
    ) {
        // The waits of one thread one after the other: the verdict tells a thread that
        // waits again from a new one.
        let mut waits: Vec<(&MemberId, &MemberSpan)> = site
            .members
            .iter()
            .filter(|(_, m)| m.last_scan >= start)
            .collect();
        waits.sort_unstable_by_key(|(id, m)| (**id, m.first_scan));
        for (id, m) in waits {
            let MemberId::Thread(wait) = id;
            let first = m.first_scan.max(start);
            // Seen blocked from first to last scan: a lower bound of the wait.
            let seen_s = (self.time_of(m.last_scan) - self.time_of(first)) as f64 / 1e9;
            visit(&MemberObservation {
                first: first - start,
                last: m.last_scan - start,
                blocked_for_s: m
                    .blocked_for_ns
                    .map_or(seen_s, |ns| (ns as f64 / 1e9).max(seen_s)),
                wait_age_from_runtime: false,
                parked: None,
                born: Some(self.secs(m.born)),
                waiter: Some(thread_waiter(&wait.thread)),
            });
        }
    }

    /// Goroutine parks as positions among the reads `scans`; an open park lasts to the
    /// last read. Parks are dated by the runtime's GC cycles once one is known: then the
    /// parks are walked twice, first to count the members of each GC bracket, then to
    /// spread each bracket's members across it (see [`BracketDates`]).
    fn visit_goroutines(
        &self,
        (process_key, process): (&ProcessKey, &ProcessHistory),
        site: &SiteHistory,
        scans: &[usize],
        visit: &mut dyn FnMut(&MemberObservation),
    ) {
        let (Some(&start), Some(&end)) = (scans.first(), scans.last()) else {
            return;
        };
        let end_s = self.secs(self.time_of(end));
        let goid_dater = self.goid_dater(process, start);
        let spans = || {
            site.goroutines
                .spans
                .iter()
                .filter(move |m| m.last as usize >= start)
        };
        let member = |m: &GoroutineSpan| {
            let (mut obs, park) = self.goroutine_member(process_key, process, scans, m);
            let goid = m.key >> 8;
            obs.born =
                goid_dater.map(|(clock, rate)| end_s - clock.saturating_sub(goid) as f64 / rate);
            (obs, park.open)
        };
        if process.gc_starts.is_empty() {
            spans().for_each(|m| visit(&member(m).0));
            return;
        }
        let mut brackets = BracketDates::default();
        for m in spans() {
            let (obs, open) = member(m);
            brackets.count(&obs, open);
        }
        for m in spans() {
            let (mut obs, open) = member(m);
            brackets.date(&mut obs, open);
            visit(&obs);
        }
    }

    /// One goroutine park as the verdict sees it (without its birth), and its interval.
    fn goroutine_member(
        &self,
        process_key: &ProcessKey,
        process: &ProcessHistory,
        scans: &[usize],
        m: &GoroutineSpan,
    ) -> (MemberObservation, ParkInterval) {
        let (start, last_pos) = (scans[0], scans.len() - 1);
        let first = scans
            .partition_point(|&s| s < m.first as usize)
            .min(last_pos);
        let last = if m.last == OPEN {
            last_pos
        } else {
            scans
                .partition_point(|&s| s <= m.last as usize)
                .saturating_sub(1)
                .max(first)
        };
        let (first_ns, last_ns) = (self.time_of(scans[first]), self.time_of(scans[last]));
        let seen_s = last_ns.saturating_sub(first_ns) as f64 / 1e9;
        // The read before the one that first saw it did not see it.
        let previous_read_ns =
            (m.first as usize > start && first > 0).then(|| self.time_of(scans[first - 1]));
        let park = park_interval(
            process_key,
            process,
            (first_ns, last_ns, previous_read_ns),
            m.waitsince_ns,
        );
        // g.waitsince: the park began before that GC cycle, a longer lower bound.
        let runtime_s = park
            .from_runtime
            .then(|| last_ns.saturating_sub(park.hi_ns) as f64 / 1e9);
        let dated = !process.gc_starts.is_empty();
        let obs = MemberObservation {
            first,
            last,
            blocked_for_s: seen_s.max(runtime_s.unwrap_or(0.0)),
            wait_age_from_runtime: runtime_s.is_some_and(|r| r > seen_s),
            parked: dated.then(|| [self.secs(park.lo_ns), self.secs(park.hi_ns)]),
            born: None,
            waiter: Some(m.key >> 8),
        };
        (obs, park)
    }

    /// Dates goroutine ids: the newest id at the end of the window and how many ids per
    /// second the process created during it (`None` when it created too few: then ids
    /// say nothing about time). Each P takes ids from the global counter in batches of
    /// 16, so the newest id moves in steps of up to a batch per P whatever the creation
    /// rate: fewer than [`MIN_DATING_GOIDS`] ids across the window are such steps, not a
    /// rate. Assumes the creation rate of the window held before it, the best a reader
    /// that started late can do.
    fn goid_dater(&self, process: &ProcessHistory, start: usize) -> Option<(u64, f64)> {
        let first =
            (start..=process.last_scan).find_map(|s| Some((s, *process.birth_clock.get(&s)?)))?;
        let last = (start..=process.last_scan)
            .rev()
            .find_map(|s| Some((s, *process.birth_clock.get(&s)?)))?;
        let dt = (self.time_of(last.0) - self.time_of(first.0)) as f64 / 1e9;
        let ids = last.1.checked_sub(first.1)?;
        (dt > 0.0 && ids >= MIN_DATING_GOIDS).then(|| (last.1, ids as f64 / dt))
    }
}

/// A thread as a waiter of [`MemberObservation::waiter`]: its tid and start time in one
/// word.
fn thread_waiter(thread: &ThreadKey) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = IntHasher::default();
    thread.hash(&mut h);
    h.finish()
}

/// When a goroutine member's park began, as far as the runtime and the reads tell:
/// after the latest GC cycle known to have started before it was seen parked (that
/// cycle's stack scan found it running, or it did not exist yet), after the read before
/// the one that first saw it, after the process started; and before its `g.waitsince`
/// (the first cycle that found it parked) and the read that first saw it. A cycle's
/// start is taken as the time of its stack scans, which follow within its mark phase
/// (milliseconds). `seen` is (first seen, last seen, the read before), CLOCK_MONOTONIC.
fn park_interval(
    process_key: &ProcessKey,
    process: &ProcessHistory,
    (first_seen_ns, last_seen_ns, previous_read_ns): (u64, u64, Option<u64>),
    waitsince_ns: u64,
) -> ParkInterval {
    let waitsince = (waitsince_ns > process_key.start_mono_ns && waitsince_ns <= last_seen_ns)
        .then_some(waitsince_ns);
    let hi_ns = waitsince.map_or(first_seen_ns, |w| w.min(first_seen_ns));
    let previous_gc_ns = process.gc_starts.range(..hi_ns).next_back().copied();
    let lo_ns = [
        Some(process_key.start_mono_ns),
        previous_read_ns,
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
        open: previous_read_ns.is_none() && previous_gc_ns.is_none(),
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
///
/// Two passes over the members in goroutine id order, no per-member lists (a site may
/// hold a million members): [`BracketDates::count`] every member, then
/// [`BracketDates::date`] every member in the same order.
#[derive(Default)]
struct BracketDates {
    /// Per closed bracket (its bounds' bits): members in it, members dated so far.
    sizes: HashMap<(u64, u64), (u32, u32)>,
}

impl BracketDates {
    fn bracket(m: &MemberObservation) -> Option<(u64, u64)> {
        m.parked.map(|[lo, hi]| (lo.to_bits(), hi.to_bits()))
    }

    fn count(&mut self, m: &MemberObservation, open: bool) {
        if let Some(key) = Self::bracket(m).filter(|_| !open) {
            self.sizes.entry(key).or_default().0 += 1;
        }
    }

    fn date(&mut self, m: &mut MemberObservation, open: bool) {
        let Some(key) = Self::bracket(m) else {
            return;
        };
        let (lo, hi) = (f64::from_bits(key.0), f64::from_bits(key.1));
        if open {
            m.born = Some(hi);
            return;
        }
        let Some((k, j)) = self.sizes.get_mut(&key) else {
            return;
        };
        m.born = Some(lo + (f64::from(*j) + 0.5) / f64::from(*k) * (hi - lo));
        *j += 1;
    }
}

/// The members of one site of the window, handed to the verdict one at a time (see
/// [`History::view`]).
pub struct SitePopulation<'a> {
    history: &'a History,
    process_key: &'a ProcessKey,
    process: &'a ProcessHistory,
    site: &'a SiteHistory,
    kind: WaiterKind,
    /// The window's first scan for this process, and the scans judged.
    start: usize,
    scans: Vec<usize>,
}

impl Members for SitePopulation<'_> {
    fn visit(&self, visit: &mut dyn FnMut(&MemberObservation)) {
        match self.kind {
            WaiterKind::Thread => self.history.visit_threads(self.site, self.start, visit),
            WaiterKind::Goroutine => self.history.visit_goroutines(
                (self.process_key, self.process),
                self.site,
                &self.scans,
                visit,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        census::{ProcessCensus, SiteCensus},
        verdict::{Outcome, WaitAgeSource},
    };

    fn site_key() -> SiteKey {
        SiteKey {
            kind: WaiterKind::Goroutine,
            wait: "chan send".into(),
            stack: vec![0x1000, 0x2000].into(),
        }
    }

    fn members(goids: &[u64]) -> Vec<GoroutineMember> {
        goids
            .iter()
            .map(|&goid| GoroutineMember {
                goid,
                seq: 0,
                waitsince_ns: 0,
            })
            .collect()
    }

    fn process_7() -> ProcessKey {
        ProcessKey {
            pid: 7,
            start_mono_ns: 1,
            exec_id: 0,
        }
    }

    /// One read of process 7: `count` parked at the site, what arrived and departed.
    fn census(at_s: u64, count: u32, arrived: &[u64], departed: &[u64]) -> Census {
        let mut sites = IntMap::default();
        sites.insert(
            site_key(),
            SiteCensus {
                count,
                members: SiteMembers::Changes(GoroutineChanges {
                    arrived: members(arrived),
                    departed: members(departed),
                    dated: Vec::new(),
                    creators: vec![(0x3000, count)],
                    ..GoroutineChanges::default()
                }),
                stack_bytes: StackBytes::default(),
            },
        );
        let mut c = Census {
            at_mono_ns: at_s * 1_000_000_000,
            ..Census::default()
        };
        c.processes.insert(
            process_7(),
            ProcessCensus {
                facts: Arc::default(),
                sites,
                birth_clock: None,
                goroutines_read: true,
                ..ProcessCensus::default()
            },
        );
        c
    }

    /// Check that goroutine ids date births only when the window saw enough of them
    /// created: a newest id that steps by one per-P batch (17 ids while one goroutine
    /// was created) is no clock, 300 ids over 10 s are 30 a second.
    #[test]
    fn goroutine_ids_date_births_only_beyond_batch_steps() {
        for (step, expected) in [(17u64, None), (300, Some(30.0))] {
            let mut h = History::new();
            for s in 0..11u64 {
                let mut c = census(s, 3, if s == 0 { &[1, 2, 3] } else { &[] }, &[]);
                let p = c.processes.values_mut().next().unwrap();
                p.birth_clock = Some(1000 + step * s / 10);
                h.record(&c);
            }
            let process = h.processes.values().next().unwrap();
            let rate = h.goid_dater(process, 0).map(|(_, rate)| rate);
            assert_eq!(rate, expected, "newest id up by {step}");
        }
    }

    /// Check that trimming a rolling window drops old scans and the members only they
    /// saw, and that observations are then relative to the kept window.
    #[test]
    fn trimmed_window_observes_only_recent_scans() {
        let mut h = History::new();
        for s in 0..10u64 {
            // goroutine s arrives at scan s and stays; goroutine 1000 leaves after scan 2.
            let c = match s {
                0 => census(s, 2, &[0, 1000], &[]),
                1 | 2 => census(s, s as u32 + 2, &[s], &[]),
                3 => census(s, 4, &[s], &[1000]),
                _ => census(s, s as u32 + 1, &[s], &[]),
            };
            h.record(&c);
        }
        h.trim(3_000_000_000);
        assert_eq!(h.window(), 6..=9);
        assert_eq!(h.scans(), 4);
        assert!((h.span_s() - 3.0).abs() < 1e-9);
        let (key, process) = h.processes.iter().next().unwrap();
        assert_eq!(key.pid, 7);
        let (site_key, site) = process.sites.iter().next().unwrap();
        assert_eq!(
            site.member_count(),
            10,
            "goroutine 1000 left before the window"
        );
        assert_eq!(site.most_common_creator(), Some(0x3000));
        let obs = h.observe(key, process, site_key, site);
        assert_eq!(obs.counts, vec![7, 8, 9, 10]);
        assert_eq!(obs.times_s, vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(
            obs.members.iter().filter(|m| m.first > 0).count(),
            3,
            "three arrived in the window"
        );
        assert!(obs.members.iter().all(|m| m.last == 3), "all still there");
        assert!(!obs.window_started_before_process);
    }

    /// Check that a process read only every third scan is observed at its reads (not as
    /// empty in between), that a departure closes at the read that last saw it, and that
    /// counts between reads hold the latest read's.
    #[test]
    fn sparse_reads_are_observed_at_their_reads() {
        let mut h = History::new();
        for s in 0..9u64 {
            let c = match s {
                0 => census(s, 3, &[1, 2, 10], &[]),
                3 => census(s, 4, &[11], &[]),
                6 => census(s, 4, &[12], &[1]),
                _ => {
                    // The process still shows up (its threads); its goroutines were not read.
                    let mut c = Census {
                        at_mono_ns: s * 1_000_000_000,
                        ..Census::default()
                    };
                    c.processes.insert(process_7(), ProcessCensus::default());
                    c
                }
            };
            h.record(&c);
        }
        let (key, process) = h.processes.iter().next().unwrap();
        let (site_key, site) = process.sites.iter().next().unwrap();
        assert_eq!(site.count_at(WaiterKind::Goroutine, 4), 4);
        assert_eq!(h.goroutine_read_age_s(process), Some(2.0));
        let obs = h.observe(key, process, site_key, site);
        assert_eq!(obs.times_s, vec![0.0, 3.0, 6.0]);
        assert_eq!(obs.counts, vec![3, 4, 4]);
        let departed: Vec<_> = obs.members.iter().filter(|m| m.last < 2).collect();
        assert_eq!(departed.len(), 1);
        assert_eq!((departed[0].first, departed[0].last), (0, 1));
        assert_eq!(obs.members.iter().filter(|m| m.first > 0).count(), 2);
    }

    /// Check that arrivals out of goroutine-id order merge into the sorted spans, and
    /// that departures close them and trimming drops them once out of the window.
    #[test]
    fn spans_stay_sorted_and_departures_close_them() {
        let mut spans = GoroutineSpans::default();
        spans.arrive(&members(&[5, 9, 2]), 0);
        spans.arrive(&members(&[7, 1, 12]), 1);
        let keys: Vec<u64> = spans.spans.iter().map(|s| s.key >> 8).collect();
        assert_eq!(keys, vec![1, 2, 5, 7, 9, 12]);
        spans.depart(&members(&[5, 99]), 1);
        spans.trim(1);
        assert_eq!(spans.len(), 6, "closed at scan 1, still in a window from 1");
        spans.trim(2);
        assert_eq!(spans.len(), 5);
        assert!(spans.spans.iter().all(|s| s.last == OPEN));
    }

    /// Turns each scan's full list of parks per site into what the goroutine source
    /// reports: the changes since the previous read.
    #[derive(Default)]
    struct Differ {
        previous: HashMap<SiteKey, HashMap<(u64, u8), u64>>,
    }

    impl Differ {
        fn read(
            &mut self,
            now: HashMap<SiteKey, Vec<GoroutineMember>>,
        ) -> IntMap<SiteKey, SiteCensus> {
            let mut sites = IntMap::default();
            let keys: Vec<SiteKey> = self.previous.keys().chain(now.keys()).cloned().collect();
            let mut next = HashMap::new();
            for key in keys {
                if sites.contains_key(&key) {
                    continue;
                }
                let before = self.previous.remove(&key).unwrap_or_default();
                let current = now.get(&key).cloned().unwrap_or_default();
                let mut changes = GoroutineChanges::default();
                for m in &current {
                    match before.get(&(m.goid, m.seq)) {
                        None => changes.arrived.push(*m),
                        Some(0) if m.waitsince_ns != 0 => changes.dated.push(*m),
                        Some(_) => {}
                    }
                }
                let ids: HashMap<(u64, u8), u64> = current
                    .iter()
                    .map(|m| ((m.goid, m.seq), m.waitsince_ns))
                    .collect();
                changes.departed = before
                    .keys()
                    .filter(|id| !ids.contains_key(id))
                    .map(|&(goid, seq)| GoroutineMember {
                        goid,
                        seq,
                        waitsince_ns: 0,
                    })
                    .collect();
                changes.creators = vec![(0x3000, current.len() as u32)];
                let count = current.len() as u32;
                next.insert(key.clone(), ids);
                let members = SiteMembers::Changes(changes);
                let stack_bytes = StackBytes::default();
                sites.insert(
                    key,
                    SiteCensus {
                        count,
                        members,
                        stack_bytes,
                    },
                );
            }
            self.previous = next;
            sites
        }
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
        let mut differ = Differ::default();
        for scan in 0..15 {
            let t = scan as f64;
            let mut sites: HashMap<SiteKey, Vec<GoroutineMember>> = HashMap::new();
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
                sites.entry(site).or_default().push(GoroutineMember {
                    goid: p.goid,
                    seq: p.seq,
                    waitsince_ns: waitsince,
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
                    sites: differ.read(sites),
                    birth_clock: Some(parks.iter().map(|p| p.goid).max().unwrap_or(0)),
                    goroutines_read: true,
                    ..ProcessCensus::default()
                },
            );
            h.record(&c);
        }
        (h, process)
    }

    /// Judges site `site` of the simulated process, from its observation and from its
    /// members handed out one at a time (the two must agree).
    fn judge_site(h: &History, key: &ProcessKey, site: u64) -> crate::verdict::SiteJudgement {
        let policy = crate::verdict::VerdictPolicy::default();
        let process = &h.processes[key];
        let (site_key, history) = process
            .sites
            .iter()
            .find(|(k, _)| k.stack[0] == 0x1000 + site)
            .expect("the site was seen");
        let obs = h.observe(key, process, site_key, history);
        let judged = crate::verdict::judge(&obs, &policy);
        let (course, members) = h.view(key, process, site_key, history);
        assert!(course.members.is_empty());
        let streamed = crate::verdict::judge_members(&course, &members, &policy);
        assert_eq!(streamed, judged);
        judged
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
        assert_eq!(leak.outcome(), Outcome::Leak, "{leak:?}");
        assert!(
            leak.rule.to_string().contains("parked steadily"),
            "{}",
            leak.rule
        );
        assert_eq!(leak.oldest_wait_source, Some(WaitAgeSource::Runtime));
        assert!(
            (170.0..=190.0).contains(&leak.oldest_wait_s),
            "{}",
            leak.oldest_wait_s
        );
        let pool = judge_site(&h, &key, 1);
        assert_eq!(pool.outcome(), Outcome::Ok, "{pool:?}");
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
        assert_eq!(leak.outcome(), Outcome::Leak, "{leak:?}");
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
            assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
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
        assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
    }
}
