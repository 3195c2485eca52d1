//! The growth verdict: pure judgement of one site's population over a watch window.
//!
//! A leak is a site where waiters keep arriving and do not leave. The count alone cannot
//! say that (in-flight waiters grow while load ramps up, yet each leaves at once), so
//! the verdict follows each member: when it arrived, whether it left, how long it waits.

use serde::{Deserialize, Serialize};

/// One member (one uninterrupted wait) of a site, as scan indices into the observation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberObservation {
    /// First and last scan that saw this wait.
    pub first: usize,
    pub last: usize,
    /// How long the member had been blocked when last seen, in seconds.
    pub blocked_for_s: f64,
    /// Creation order of the waiter: for threads, start time in seconds relative to the
    /// window start (negative: before the window); for goroutines, the goroutine id.
    /// `None` when unknown.
    #[serde(alias = "started_s")]
    pub born: Option<f64>,
    /// Goroutines, once the runtime's GC cycles date parks: the wait began within this
    /// interval (seconds, window-relative), and `born` is the park's date inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<[f64; 2]>,
    /// `blocked_for_s` comes from the runtime's `g.waitsince`, longer than the scans saw.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait_age_from_runtime: bool,
}

/// A site's population over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteObservation {
    /// Scan times, seconds from the window start.
    pub times_s: Vec<f64>,
    /// Waiters at the site per scan.
    pub counts: Vec<u32>,
    pub members: Vec<MemberObservation>,
    /// The process appeared after the window began (all its waiters are new).
    pub window_started_before_process: bool,
    /// `blocked_for_s` is the real wait age (threads); otherwise only what the scans saw.
    #[serde(default = "yes")]
    pub wait_age_known: bool,
    /// How long the process had run at the last scan, in seconds.
    #[serde(default)]
    pub process_age_s: Option<f64>,
}

fn yes() -> bool {
    true
}

impl SiteObservation {
    /// The same site as a window cut after its first `scans` scans: what a shorter
    /// diagnosis would have seen.
    pub fn prefix(&self, scans: usize) -> Self {
        let n = scans.min(self.counts.len());
        Self {
            times_s: self.times_s.iter().take(n).copied().collect(),
            counts: self.counts.iter().take(n).copied().collect(),
            members: self
                .members
                .iter()
                .filter(|m| m.first < n)
                .map(|m| MemberObservation {
                    last: m.last.min(n.saturating_sub(1)),
                    ..m.clone()
                })
                .collect(),
            window_started_before_process: self.window_started_before_process,
            wait_age_known: self.wait_age_known,
            process_age_s: self.process_age_s,
        }
    }
}

/// The verdict users act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GrowthVerdict {
    Leak,
    Ok,
}

/// How a goroutine site's oldest wait was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitAgeSource {
    /// From the runtime's `g.waitsince`: the wait began before the GC cycle that first
    /// found the goroutine parked, so this is a lower bound that covers waits begun
    /// before leakscope started.
    Runtime,
    /// Only what leakscope's own scans saw (no GC cycle has scanned the goroutine since
    /// it parked).
    Observed,
}

/// A verdict with the evidence a person needs to check it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteJudgement {
    pub verdict: GrowthVerdict,
    /// Not a leak by the evidence, but growth that may be one: more watching would tell.
    pub suspect: bool,
    /// Slope of the waiter count, per minute (least squares over the window).
    pub growth_per_min: f64,
    /// Waits that began during the window.
    pub arrivals: u32,
    /// Of those, the ones still waiting at the last scan.
    pub stayed: u32,
    /// Waits that ended during the window (the waiter woke, moved or exited).
    pub departures: u32,
    /// The longest a current member has been blocked, in seconds (a lower bound for
    /// goroutines).
    pub oldest_wait_s: f64,
    /// Goroutine sites: where `oldest_wait_s` came from (threads: always the kernel's).
    pub oldest_wait_source: Option<WaitAgeSource>,
    /// Seconds between the oldest and the newest birth of the current members, where
    /// births are known.
    pub age_spread_s: Option<f64>,
    pub reason: String,
}

/// Thresholds of the verdict.
#[derive(Clone, Copy, Debug)]
pub struct VerdictPolicy {
    /// Scans needed before anything is judged.
    pub min_scans: usize,
    /// Arrivals that stayed needed to call a leak from the window alone.
    pub min_stayed: u32,
    /// Departures allowed, as a fraction of all members seen: a leak's waiters do not
    /// leave, a pool's come and go.
    pub max_departure_ratio: f64,
    /// Members with known births needed to call a leak from their birth history.
    pub lifetime_min_members: usize,
    /// The births must spread over at least this long (seconds)...
    pub lifetime_min_span_s: f64,
    /// ...fairly regularly (coefficient of variation of the gaps between births)...
    pub lifetime_max_gap_cv: f64,
    /// ...and go on until now: the newest birth at most this many typical gaps ago.
    pub lifetime_recency_gaps: f64,
    /// For threads: the share of members blocked since (nearly) their birth.
    pub lifetime_min_stuck_share: f64,
    /// Where births are unknown (goroutines): members needed, and process age in
    /// seconds, before the population may be compared with the process's life.
    pub accumulation_min_members: usize,
    pub accumulation_min_age_s: f64,
}

impl Default for VerdictPolicy {
    fn default() -> Self {
        Self {
            min_scans: 3,
            min_stayed: 3,
            max_departure_ratio: 0.1,
            lifetime_min_members: 5,
            lifetime_min_span_s: 30.0,
            lifetime_max_gap_cv: 1.0,
            lifetime_recency_gaps: 2.5,
            lifetime_min_stuck_share: 0.8,
            accumulation_min_members: 6,
            accumulation_min_age_s: 60.0,
        }
    }
}

/// Least-squares slope of `ys` over `xs` (per unit of `xs`); 0 when undefined.
pub fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return 0.0;
    }
    let mx = xs[..n].iter().sum::<f64>() / n as f64;
    let my = ys[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for i in 0..n {
        sxy += (xs[i] - mx) * (ys[i] - my);
        sxx += (xs[i] - mx) * (xs[i] - mx);
    }
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// What the birth history of a site's current members says.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BirthHistory {
    members: usize,
    span_s: f64,
    mean_gap_s: f64,
    gap_cv: f64,
    max_gap_s: f64,
    newest_age_s: f64,
    /// Share of members blocked since (nearly) their birth; `None` when unknown.
    stuck_share: Option<f64>,
}

/// The birth history of the current members from their finite births (sorted here).
fn birth_history(births: &mut [f64], end_s: f64, stuck_share: Option<f64>) -> Option<BirthHistory> {
    if births.len() < 2 {
        return None;
    }
    births.sort_unstable_by(f64::total_cmp);
    let gaps = || births.windows(2).map(|w| w[1] - w[0]);
    let gap_count = births.len() - 1;
    let span_s = births[births.len() - 1] - births[0];
    let mean_gap_s = span_s / gap_count as f64;
    let var = gaps().map(|g| (g - mean_gap_s).powi(2)).sum::<f64>() / gap_count as f64;
    let gap_cv = if mean_gap_s > 0.0 {
        var.sqrt() / mean_gap_s
    } else {
        f64::INFINITY
    };
    Some(BirthHistory {
        members: births.len(),
        span_s,
        mean_gap_s,
        gap_cv,
        max_gap_s: gaps().fold(0.0, f64::max),
        newest_age_s: end_s - births[births.len() - 1],
        stuck_share,
    })
}

/// The members of a site, visited one at a time: a site may hold a million members,
/// and the verdict needs only tallies of them and the births of those still waiting,
/// so whoever holds them need not build them all at once.
pub trait Members {
    /// Calls `visit` once with every member, in any order.
    fn visit(&self, visit: &mut dyn FnMut(&MemberObservation));
}

impl Members for [MemberObservation] {
    fn visit(&self, visit: &mut dyn FnMut(&MemberObservation)) {
        self.iter().for_each(visit);
    }
}

/// What the verdict needs of a site's members, in one pass over them.
#[derive(Debug, Default)]
struct MemberTally {
    /// Members seen at all, and those still waiting at the last scan.
    seen: usize,
    current: usize,
    /// Waits that began during the window; of those, the ones still waiting.
    arrivals: u32,
    stayed: u32,
    /// Waits that ended before the last scan.
    departures: u32,
    /// When the latest arrival was first seen (seconds, window-relative).
    latest_arrival_s: Option<f64>,
    /// The current member blocked longest: its wait, and whether the runtime dated it.
    oldest: Option<(f64, bool)>,
    /// Finite births of the current members.
    births: Vec<f64>,
    /// Current members blocked since (nearly) their birth.
    stuck: usize,
    /// Current members' park intervals: the earliest end and the latest start, while
    /// every one is dated.
    parks: Option<(f64, f64)>,
    undated_park: bool,
}

impl MemberTally {
    fn of(obs: &SiteObservation, members: &(impl Members + ?Sized), last: usize) -> Self {
        let end_s = obs.times_s.get(last).copied().unwrap_or(0.0);
        let mut tally = Self::default();
        members.visit(&mut |m| tally.add(obs, m, last, end_s));
        tally
    }

    fn add(&mut self, obs: &SiteObservation, m: &MemberObservation, last: usize, end_s: f64) {
        // A process born inside the window has no "before": its first waiters arrived too.
        let arrived = m.first > 0 || obs.window_started_before_process;
        let current = m.last == last;
        self.seen += 1;
        if m.last < last {
            self.departures += 1;
        }
        if arrived {
            self.arrivals += 1;
            self.stayed += u32::from(current);
            let at = obs.times_s.get(m.first.min(last)).copied().unwrap_or(0.0);
            self.latest_arrival_s = Some(self.latest_arrival_s.map_or(at, |t| t.max(at)));
        }
        if !current {
            return;
        }
        self.current += 1;
        if self.oldest.is_none_or(|(s, _)| m.blocked_for_s >= s) {
            self.oldest = Some((m.blocked_for_s, m.wait_age_from_runtime));
        }
        if let Some(born) = m.born.filter(|b| b.is_finite()) {
            self.births.push(born);
        }
        // Blocked since birth, give or take the thread's start-up work.
        let age = m.born.map_or(0.0, |b| end_s - b);
        self.stuck += usize::from(m.blocked_for_s >= 0.8 * age - 1.0);
        match m.parked {
            Some([lo, hi]) => {
                let (earliest_hi, latest_lo) = self.parks.unwrap_or((hi, lo));
                self.parks = Some((earliest_hi.min(hi), latest_lo.max(lo)));
            }
            None => self.undated_park = true,
        }
    }

    /// The least time the current members' parks must have been spread over, when every
    /// one has a dated park: from the earliest latest-possible start to the latest
    /// earliest-possible start. `None` when some park is undated.
    fn proven_park_span(&self) -> Option<f64> {
        let (earliest_hi, latest_lo) = self.parks.filter(|_| !self.undated_park)?;
        Some((latest_lo - earliest_hi).max(0.0))
    }
}

/// Judges one site: do waiters arrive here and stay, with no sign of the growth stopping?
/// The members are `obs.members`; see [`judge_members`].
pub fn judge(obs: &SiteObservation, policy: &VerdictPolicy) -> SiteJudgement {
    judge_members(obs, obs.members.as_slice(), policy)
}

/// Judges one site whose members come from `members` (`obs.members` is not read).
///
/// Three kinds of evidence, each explained in the reason:
/// - who leaves: a site whose waiters leave (a pool, a ramp of short requests, sleepers)
///   is no leak, however its count moves;
/// - the window: waiters that arrived during the watch and stayed, still arriving at the
///   end (a warm-up that levels off stops arriving);
/// - the members' births: a slow leak adds little within a window, but its members were
///   born steadily over the process's life, up to now, and sit blocked since birth.
pub fn judge_members(
    obs: &SiteObservation,
    members: &(impl Members + ?Sized),
    policy: &VerdictPolicy,
) -> SiteJudgement {
    let n = obs.counts.len().min(obs.times_s.len());
    let last = n.saturating_sub(1);
    let end_s = obs.times_s.get(last).copied().unwrap_or(0.0);
    let start_s = obs.times_s.first().copied().unwrap_or(0.0);
    let mut tally = MemberTally::of(obs, members, last);
    let oldest_wait_s = tally.oldest.map_or(0.0, |(s, _)| s.max(0.0));
    let oldest_wait_source = (!obs.wait_age_known).then_some(match tally.oldest {
        Some((_, true)) => WaitAgeSource::Runtime,
        _ => WaitAgeSource::Observed,
    });
    let (arrivals, stayed, departures) = (tally.arrivals, tally.stayed, tally.departures);
    let counts: Vec<f64> = obs.counts[..n].iter().map(|&c| c as f64).collect();
    let growth_per_min = slope(&obs.times_s[..n], &counts) * 60.0;
    let stuck_share = (obs.wait_age_known && tally.current > 0)
        .then(|| tally.stuck as f64 / tally.current as f64);
    let births = birth_history(&mut tally.births, end_s, stuck_share);

    let judgement = |verdict, suspect, reason: String| SiteJudgement {
        verdict,
        suspect,
        growth_per_min,
        arrivals,
        stayed,
        departures,
        oldest_wait_s,
        oldest_wait_source,
        age_spread_s: births.map(|b| b.span_s),
        reason,
    };
    if n < policy.min_scans {
        return judgement(
            GrowthVerdict::Ok,
            false,
            format!("only {n} scans: too few to judge growth"),
        );
    }
    let window_s = end_s - start_s;
    let (first_count, last_count) = (obs.counts[0], obs.counts[last]);

    // Who leaves.
    let seen = tally.seen.max(1) as f64;
    if departures as f64 > policy.max_departure_ratio * seen {
        return judgement(
            GrowthVerdict::Ok,
            false,
            format!(
                "waiters come and go: {arrivals} arrived, {departures} left during {window_s:.0} s"
            ),
        );
    }

    // Are arrivals still coming at the end of the window? Look back over a quarter of it,
    // or over 2.5 typical gaps between arrivals when they are sparse.
    let stopped = tally.latest_arrival_s.is_some_and(|latest| {
        let mean_gap = window_s / arrivals as f64;
        let lookback = (window_s / 4.0).max(2.5 * mean_gap).min(window_s / 2.0);
        latest < end_s - lookback
    });
    let grew = last_count > first_count && growth_per_min > 0.0;

    if stayed >= policy.min_stayed && grew && !stopped {
        return judgement(
            GrowthVerdict::Leak,
            false,
            format!(
                "{stayed} waiters arrived and stayed, {departures} left; the population grew from {first_count} to {last_count} ({growth_per_min:+.1}/min) and was still growing at the end",
            ),
        );
    }

    if let Some(b) = births {
        let regular = b.gap_cv <= policy.lifetime_max_gap_cv && b.max_gap_s <= 0.5 * b.span_s;
        let recent = b.newest_age_s <= policy.lifetime_recency_gaps * b.mean_gap_s + 1.0;
        let stuck = b
            .stuck_share
            .is_none_or(|s| s >= policy.lifetime_min_stuck_share);
        // Goroutine parks dated by GC cycles: the dates inside a cycle's bracket are only
        // spread by id order, so the brackets alone must prove the spread, and a park
        // date is no birth: members that leave are a pool re-parking, not a leak.
        let parks = tally.proven_park_span();
        let proven = parks.is_none_or(|span| departures == 0 && span >= policy.lifetime_min_span_s);
        if b.members >= policy.lifetime_min_members
            && b.span_s >= policy.lifetime_min_span_s
            && regular
            && recent
            && stuck
            && proven
            && !stopped
            && last_count >= first_count
        {
            let what = if parks.is_some() {
                "goroutines parked"
            } else {
                "waiters born"
            };
            let dated = if parks.is_some() {
                "; dated by the runtime's GC cycles"
            } else {
                ""
            };
            let stuck = if b.stuck_share.is_some() {
                ", each blocked since birth"
            } else {
                ""
            };
            return judgement(
                GrowthVerdict::Leak,
                false,
                format!(
                    "{} {what} steadily over {:.0} s (one every {:.1} s, the newest {:.0} s ago{dated}){stuck}, none left; {stayed} arrived during the watch",
                    b.members, b.span_s, b.mean_gap_s, b.newest_age_s,
                ),
            );
        }
    }

    // Births unknown (goroutine ids are a poor clock: the runtime hands them to each P in
    // batches): does the population fit steady accumulation over the process's life, at
    // the pace the window shows? A pool or a plateau fills early and then stops
    // arriving; a slow leak's members number about its pace times the process's age.
    let births_known = births.is_some_and(|b| b.members == tally.current);
    if let Some(age_s) = obs.process_age_s
        && !births_known
        && departures == 0
        && stayed >= 1
        && !stopped
        && last_count >= first_count
        && tally.current >= policy.accumulation_min_members
        && age_s >= policy.accumulation_min_age_s
        && window_s > 0.0
    {
        let pace = tally.current as f64 / age_s;
        let expected = pace * window_s;
        let seen = stayed as f64;
        if seen >= 0.3 * expected && seen <= 3.0 * expected + 2.0 {
            return judgement(
                GrowthVerdict::Leak,
                false,
                format!(
                    "{} waiters accumulated over the process's {age_s:.0} s (one every {:.1} s), none left, and {stayed} more arrived during the watch at that pace",
                    tally.current,
                    1.0 / pace,
                ),
            );
        }
    }

    if stopped && grew {
        return judgement(
            GrowthVerdict::Ok,
            false,
            format!(
                "grew from {first_count} to {last_count}, then levelled off: no arrival in the last part of the window"
            ),
        );
    }
    // One newcomer is everyday noise (a runtime thread going idle); two that stay while
    // nobody leaves is worth a second look.
    if stayed >= 2 && last_count >= first_count + 2 {
        return judgement(
            GrowthVerdict::Ok,
            true,
            format!(
                "suspect: {stayed} waiter(s) arrived and stayed, none left, but too few to call a leak in {window_s:.0} s; watch longer (--duration)"
            ),
        );
    }
    let reason = if !grew {
        format!("no growth: {first_count} waiters at the start, {last_count} at the end")
    } else {
        format!("only {stayed} new waiters stayed: too few to call a leak")
    };
    judgement(GrowthVerdict::Ok, false, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(first: usize, last: usize) -> MemberObservation {
        MemberObservation {
            first,
            last,
            blocked_for_s: (last - first) as f64,
            born: Some(first as f64),
            ..MemberObservation::default()
        }
    }

    fn observation(scans: usize, members: Vec<MemberObservation>) -> SiteObservation {
        let counts = (0..scans)
            .map(|i| {
                members
                    .iter()
                    .filter(|m| m.first <= i && i <= m.last)
                    .count() as u32
            })
            .collect();
        SiteObservation {
            times_s: (0..scans).map(|i| i as f64).collect(),
            counts,
            members,
            window_started_before_process: false,
            wait_age_known: false,
            process_age_s: None,
        }
    }

    /// Check that waiters arriving every scan and never leaving are a leak.
    #[test]
    fn steady_arrivals_that_stay_are_a_leak() {
        let members = (0..10).flat_map(|i| [member(i, 9), member(i, 9)]).collect();
        let j = judge(&observation(10, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Leak, "{j:?}");
        assert_eq!(j.departures, 0);
        assert_eq!(j.stayed, 18);
        assert!(
            (j.growth_per_min - 120.0).abs() < 1e-6,
            "{}",
            j.growth_per_min
        );
    }

    /// Check that a fixed pool whose members all stay blocked, none arriving, is no leak.
    #[test]
    fn idle_fixed_pool_is_ok() {
        let members = (0..16).map(|_| member(0, 9)).collect();
        let j = judge(&observation(10, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Ok, "{j:?}");
        assert_eq!(j.arrivals, 0);
    }

    /// Check that a busy pool, whose workers wake and re-park between scans, is no leak
    /// even when the count happens to end higher than it started.
    #[test]
    fn churning_pool_is_ok() {
        let mut members: Vec<_> = (0..10)
            .flat_map(|i| (0..4).map(move |_| member(i, i)))
            .collect();
        members.extend((0..3).map(|_| member(9, 9)));
        let j = judge(&observation(10, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Ok, "{j:?}");
        assert!(j.departures >= 36);
    }

    /// Check that a ramp of in-flight waiters, each leaving after a scan, is no leak.
    #[test]
    fn load_ramp_with_short_waits_is_ok() {
        let members = (0..10)
            .flat_map(|i| (0..=i).map(move |_| member(i, (i + 1).min(9))))
            .collect();
        let j = judge(&observation(10, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Ok, "{j:?}");
    }

    /// Check that a window too short to judge never yields a leak.
    #[test]
    fn too_few_scans_is_ok() {
        let j = judge(
            &observation(2, vec![member(1, 1); 50]),
            &VerdictPolicy::default(),
        );
        assert_eq!(j.verdict, GrowthVerdict::Ok);
    }

    #[derive(Deserialize)]
    struct RecordedSite {
        comm: String,
        observation: SiteObservation,
    }

    /// Check that a recorded real run (mutex, condvar and Rust mpsc leakers beside a busy
    /// 16-worker pool, 10 s) is judged right, and stays right on every shorter window of
    /// at least 4 scans.
    #[test]
    fn recorded_native_run_is_judged_right() {
        let sites: Vec<RecordedSite> =
            serde_json::from_str(include_str!("../tests/data/native-leaks-and-pool-10s.json"))
                .unwrap();
        assert_eq!(sites.len(), 4);
        for site in &sites {
            let expected = if site.comm.ends_with("_leak") {
                GrowthVerdict::Leak
            } else {
                GrowthVerdict::Ok
            };
            for scans in 4..=site.observation.counts.len() {
                let j = judge(&site.observation.prefix(scans), &VerdictPolicy::default());
                assert_eq!(
                    j.verdict, expected,
                    "{} over {scans} scans: {j:?}",
                    site.comm
                );
            }
        }
    }

    /// A member present for the whole window, born at `born` (seconds, window-relative)
    /// and blocked for `blocked` seconds at the end of a `scans`-scan window.
    fn resident(scans: usize, born: f64, blocked: f64) -> MemberObservation {
        MemberObservation {
            first: 0,
            last: scans - 1,
            blocked_for_s: blocked,
            born: Some(born),
            ..MemberObservation::default()
        }
    }

    fn thread_observation(scans: usize, members: Vec<MemberObservation>) -> SiteObservation {
        SiteObservation {
            wait_age_known: true,
            ..observation(scans, members)
        }
    }

    /// Check that a very slow leak (one every 10 s, running for two minutes before the
    /// watch) is found from its members' births although the window adds only one.
    #[test]
    fn very_slow_leak_is_found_from_births() {
        let end = 14.0;
        let mut members: Vec<_> = (0..12)
            .map(|i| {
                let born = -115.0 + 10.0 * i as f64;
                resident(15, born, end - born - 0.01)
            })
            .collect();
        members.push(MemberObservation {
            first: 8,
            last: 14,
            blocked_for_s: 6.0,
            born: Some(7.9),
            ..MemberObservation::default()
        });
        let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Leak, "{j:?}");
        assert!(j.reason.contains("born steadily"), "{}", j.reason);
    }

    /// Check that long-lived waiters constant in number, all born together, are no leak.
    #[test]
    fn long_lived_constant_population_is_ok() {
        let members = (0..200)
            .map(|i| resident(15, -100.0 + i as f64 * 0.001, 113.9))
            .collect();
        let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
        assert_eq!((j.verdict, j.suspect), (GrowthVerdict::Ok, false), "{j:?}");
    }

    /// Check that a pool built up steadily long ago, then idle, is no leak: its births
    /// stopped long before now.
    #[test]
    fn pool_built_long_ago_is_ok() {
        let members = (0..60)
            .map(|i| {
                let born = -300.0 + i as f64;
                resident(15, born, 14.0 - born)
            })
            .collect();
        let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Ok, "{j:?}");
    }

    /// Check that a warm-up that levels off inside the window is no leak and no suspect.
    #[test]
    fn plateau_levelling_off_in_the_window_is_ok() {
        let members = (1..6)
            .flat_map(|scan| (0..10).map(move |_| member(scan, 14)))
            .collect();
        let j = judge(&observation(15, members), &VerdictPolicy::default());
        assert_eq!((j.verdict, j.suspect), (GrowthVerdict::Ok, false), "{j:?}");
        assert!(j.reason.contains("levelled off"), "{}", j.reason);
    }

    /// Check that one waiter every two seconds, staying, is a leak within 15 scans.
    #[test]
    fn slow_leak_every_two_seconds_is_a_leak() {
        let members = (0..7).map(|k| member(1 + 2 * k, 14)).collect();
        let j = judge(&observation(15, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Leak, "{j:?}");
    }

    /// Check that one arrival that stays is noise, and two that stay, with nothing else
    /// to go on, are a suspect, not a leak.
    #[test]
    fn one_arrival_is_only_a_suspect() {
        let mut members: Vec<_> = (0..4).map(|_| member(0, 14)).collect();
        members.push(member(9, 14));
        let j = judge(&observation(15, members.clone()), &VerdictPolicy::default());
        assert_eq!(
            (j.verdict, j.suspect),
            (GrowthVerdict::Ok, false),
            "one is noise: {j:?}"
        );
        members.push(member(12, 14));
        let j = judge(&observation(15, members), &VerdictPolicy::default());
        assert_eq!((j.verdict, j.suspect), (GrowthVerdict::Ok, true), "{j:?}");
    }

    /// Check that threads born steadily but not blocked since birth (workers that ran,
    /// then went idle) are not called a leak from their births.
    #[test]
    fn workers_that_ran_before_idling_are_not_a_lifetime_leak() {
        let members = (0..12)
            .map(|i| {
                let born = -115.0 + 10.0 * i as f64;
                resident(15, born, 3.0)
            })
            .collect();
        let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Ok, "{j:?}");
    }

    /// Check that a slow goroutine leak, whose births are unknown, is found because its
    /// population fits steady accumulation over the process's life at the window's pace,
    /// while a pool filled at start with one late newcomer is not.
    #[test]
    fn slow_accumulation_over_process_life_is_a_leak() {
        let scans = 15;
        let unknown = |first, last| MemberObservation {
            first,
            last,
            blocked_for_s: 0.0,
            born: None,
            ..MemberObservation::default()
        };
        let mut leak: Vec<_> = (0..12).map(|_| unknown(0, scans - 1)).collect();
        leak.push(unknown(8, scans - 1));
        let mut obs = observation(scans, leak);
        obs.process_age_s = Some(135.0);
        let j = judge(&obs, &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Leak, "{j:?}");
        assert!(j.reason.contains("accumulated"), "{}", j.reason);

        let mut pool: Vec<_> = (0..200).map(|_| unknown(0, scans - 1)).collect();
        pool.push(unknown(8, scans - 1));
        let mut obs = observation(scans, pool);
        obs.process_age_s = Some(135.0);
        let j = judge(&obs, &VerdictPolicy::default());
        assert_eq!(
            j.verdict,
            GrowthVerdict::Ok,
            "200 members at start, 1 newcomer: {j:?}"
        );
    }

    #[derive(Deserialize)]
    struct ShapeCases {
        processes: Vec<ShapeCase>,
    }

    #[derive(Deserialize)]
    struct ShapeCase {
        case: String,
        pid: u32,
        expected: String,
        leak_functions: Vec<String>,
    }

    #[derive(Deserialize)]
    struct ShapeSite {
        pid: u32,
        stack: Vec<Option<String>>,
        observation: SiteObservation,
    }

    /// Check that every site of a recorded `cargo xtask accuracy` run (each shape of a
    /// leak and of a steady program, threads and goroutines, 15 s) is judged right: a site
    /// is a leak exactly when its stack holds one of its case's leak functions; and that
    /// a longer window never turns a right "leak" into "ok" once it was found.
    #[test]
    fn recorded_shapes_are_judged_right() {
        let cases: ShapeCases =
            serde_json::from_str(include_str!("../tests/data/shapes/cases.json")).unwrap();
        let sites: Vec<ShapeSite> =
            serde_json::from_str(include_str!("../tests/data/shapes/observations.json")).unwrap();
        let policy = VerdictPolicy::default();
        let mut wrong = Vec::new();
        let mut leaks_found = std::collections::BTreeSet::new();
        for site in &sites {
            let case = cases
                .processes
                .iter()
                .find(|c| c.pid == site.pid)
                .expect("every pid has a case");
            let at_leak_function = site
                .stack
                .iter()
                .flatten()
                .any(|f| case.leak_functions.iter().any(|l| f.contains(l.as_str())));
            let expected = if case.expected == "leak" && at_leak_function {
                GrowthVerdict::Leak
            } else {
                GrowthVerdict::Ok
            };
            let j = judge(&site.observation, &policy);
            if j.verdict != expected {
                wrong.push(format!(
                    "{} ({:?}): expected {expected:?}, got {:?}: {}",
                    case.case,
                    site.stack.iter().flatten().nth(3),
                    j.verdict,
                    j.reason
                ));
            }
            if j.verdict == GrowthVerdict::Leak && expected == GrowthVerdict::Leak {
                leaks_found.insert(case.case.clone());
                let scans = site.observation.counts.len();
                let first_leak = (3..=scans)
                    .find(|&k| {
                        judge(&site.observation.prefix(k), &policy).verdict == GrowthVerdict::Leak
                    })
                    .unwrap();
                for k in first_leak..=scans {
                    let jk = judge(&site.observation.prefix(k), &policy);
                    assert_eq!(
                        jk.verdict,
                        GrowthVerdict::Leak,
                        "{}: leak at {first_leak} scans but not at {k}: {}",
                        case.case,
                        jk.reason
                    );
                }
            }
        }
        assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
        let leak_cases = cases
            .processes
            .iter()
            .filter(|c| c.expected == "leak")
            .count();
        assert_eq!(
            leaks_found.len(),
            leak_cases,
            "every leak case has a leak site found: {leaks_found:?}"
        );
    }

    /// Goroutine members present all window, parked at `parks` (window-relative s), each
    /// dated within a 2 s GC bracket by the runtime.
    fn dated_parks(scans: usize, parks: &[f64]) -> Vec<MemberObservation> {
        parks
            .iter()
            .map(|&p| MemberObservation {
                first: 0,
                last: scans - 1,
                blocked_for_s: 14.0 - p,
                born: Some(p),
                parked: Some([p - 2.0, p]),
                wait_age_from_runtime: true,
            })
            .collect()
    }

    /// Check that goroutines parked one every 10 s over three minutes, dated by the
    /// runtime, none leaving, are a leak with a runtime wait age; that the same site with
    /// one member leaving (a pool re-parking) is not; and that parks whose GC brackets
    /// overlap too much to prove a spread are not either.
    #[test]
    fn goroutine_parks_dated_by_the_runtime() {
        let parks: Vec<f64> = (0..18).map(|k| -170.0 + 10.0 * k as f64).collect();
        let j = judge(
            &observation(15, dated_parks(15, &parks)),
            &VerdictPolicy::default(),
        );
        assert_eq!(j.verdict, GrowthVerdict::Leak, "{j:?}");
        assert_eq!(j.oldest_wait_source, Some(WaitAgeSource::Runtime));
        assert!(
            (j.oldest_wait_s - 184.0).abs() < 1e-9,
            "{}",
            j.oldest_wait_s
        );

        let mut leaving = dated_parks(15, &parks);
        leaving.push(MemberObservation {
            last: 6,
            ..leaving[0].clone()
        });
        let j = judge(&observation(15, leaving), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Ok, "one left: {j:?}");

        let mut wide = dated_parks(15, &parks);
        for m in &mut wide {
            m.parked = Some([-200.0, 0.0]);
        }
        let j = judge(&observation(15, wide), &VerdictPolicy::default());
        assert_eq!(j.verdict, GrowthVerdict::Ok, "nothing proven: {j:?}");
    }

    /// Check the slope on a known line.
    #[test]
    fn slope_of_a_line() {
        assert!((slope(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[1.0], &[1.0]), 0.0);
    }
}
