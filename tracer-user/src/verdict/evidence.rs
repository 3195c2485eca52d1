//! The evidence the rules read, gathered from one site's observation in one pass over
//! its members: tallies of who arrived, stayed and left, the births of the current
//! members, and the population's course (first and last count, slope).

use super::{
    observation::{MemberObservation, Members, SiteObservation},
    rule::CountSpan,
    settled::{SettledCourse, SettledTally},
    stats::slope,
};

/// What the birth history of a site's current members says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BirthHistory {
    pub members: usize,
    pub span_s: f64,
    pub mean_gap_s: f64,
    pub gap_cv: f64,
    pub max_gap_s: f64,
    pub newest_age_s: f64,
    /// Share of members blocked since (nearly) their birth; `None` when unknown.
    pub stuck_share: Option<f64>,
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

/// What the verdict needs of a site's members, in one pass over them.
#[derive(Debug, Default)]
pub struct MemberTally {
    /// Members seen at all, and those still waiting at the last scan.
    pub seen: usize,
    pub current: usize,
    /// Waits that began during the window; of those, the ones still waiting.
    pub arrivals: u32,
    pub stayed: u32,
    /// Waits that ended before the last scan.
    pub departures: u32,
    /// When the latest arrival was first seen (seconds, window-relative).
    pub latest_arrival_s: Option<f64>,
    /// The current member blocked longest: its wait, and whether the runtime dated it.
    pub oldest: Option<(f64, bool)>,
    /// Finite births of the current members.
    births: Vec<f64>,
    /// Current members blocked since (nearly) their birth.
    stuck: usize,
    /// Current members' park intervals: the earliest end and the latest start, while
    /// every one is dated.
    parks: Option<(f64, f64)>,
    undated_park: bool,
    /// The waits that lasted, set apart from the churn.
    settled: SettledTally,
}

impl MemberTally {
    fn of(obs: &SiteObservation, members: &(impl Members + ?Sized), last: usize) -> Self {
        let end_s = obs.times_s.get(last).copied().unwrap_or(0.0);
        let mut tally = Self {
            settled: SettledTally::new(&obs.times_s[..obs.times_s.len().min(last + 1)]),
            ..Self::default()
        };
        members.visit(&mut |m| tally.add(obs, m, last, end_s));
        tally
    }

    fn add(&mut self, obs: &SiteObservation, m: &MemberObservation, last: usize, end_s: f64) {
        // A process born inside the window has no "before": its first waiters arrived too.
        let arrived = m.first > 0 || obs.window_started_before_process;
        let current = m.last == last;
        self.settled.add(&obs.times_s, m, arrived, last);
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
    pub fn proven_park_span(&self) -> Option<f64> {
        let (earliest_hi, latest_lo) = self.parks.filter(|_| !self.undated_park)?;
        Some((latest_lo - earliest_hi).max(0.0))
    }
}

/// Everything the rules read about one site.
#[derive(Debug)]
pub struct Evidence {
    /// Scans judged, and the window's span and end (seconds from its start).
    pub scans: usize,
    pub window_s: f64,
    pub end_s: f64,
    pub counts: CountSpan,
    /// Slope of the waiter count over the window, per minute.
    pub growth_per_min: f64,
    pub tally: MemberTally,
    /// The current members' births, when at least two are known.
    pub births: Option<BirthHistory>,
    /// The idle newcomers that stayed at least the settling time, and the idle waiters
    /// that left.
    pub settled: SettledCourse,
    /// The count ended higher than it began, and its slope is positive.
    pub grew: bool,
    /// Arrivals stopped before the last part of the window.
    pub stopped: bool,
    pub process_age_s: Option<f64>,
}

impl Evidence {
    /// Gathers the evidence of `obs` with its members from `members` (`obs.members` is
    /// not read).
    pub fn gather(obs: &SiteObservation, members: &(impl Members + ?Sized)) -> Self {
        let n = obs.counts.len().min(obs.times_s.len());
        let last = n.saturating_sub(1);
        let end_s = obs.times_s.get(last).copied().unwrap_or(0.0);
        let start_s = obs.times_s.first().copied().unwrap_or(0.0);
        let mut tally = MemberTally::of(obs, members, last);
        let counts: Vec<f64> = obs.counts[..n].iter().map(|&c| c as f64).collect();
        let growth_per_min = slope(&obs.times_s[..n], &counts) * 60.0;
        let stuck_share = (obs.wait_age_known && tally.current > 0)
            .then(|| tally.stuck as f64 / tally.current as f64);
        let births = birth_history(&mut tally.births, end_s, stuck_share);
        let count_span = CountSpan {
            first: obs.counts.first().copied().unwrap_or(0),
            last: obs.counts.get(last).copied().unwrap_or(0),
        };
        let window_s = end_s - start_s;
        let stopped = arrivals_stopped(&tally, window_s, end_s);
        let settled = tally.settled.course(&obs.times_s[..n]);
        Self {
            settled,
            scans: n,
            window_s,
            end_s,
            counts: count_span,
            growth_per_min,
            grew: count_span.last > count_span.first && growth_per_min > 0.0,
            stopped,
            births,
            tally,
            process_age_s: obs.process_age_s,
        }
    }

    /// Whether the current members' births are all known.
    pub fn births_known(&self) -> bool {
        self.births.is_some_and(|b| b.members == self.tally.current)
    }
}

/// Are arrivals still coming at the end of the window? Looks back over a quarter of it,
/// or over 2.5 typical gaps between arrivals when they are sparse.
fn arrivals_stopped(tally: &MemberTally, window_s: f64, end_s: f64) -> bool {
    tally.latest_arrival_s.is_some_and(|latest| {
        let mean_gap = window_s / tally.arrivals as f64;
        let lookback = (window_s / 4.0).max(2.5 * mean_gap).min(window_s / 2.0);
        latest < end_s - lookback
    })
}
