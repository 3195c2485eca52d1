//! The waiters that stay, set apart from the churn around them.
//!
//! At a busy site most waits end within moments (keep-alive readers parking at the same
//! read hundreds of times a second, pool workers between jobs), and a leak hides among
//! them: its waiters block at the same place and never leave. So the verdict also
//! follows each waiter (a goroutine, a thread) across its waits at the site: a waiter
//! that waits there again at once never left (a pool worker back from a job, an idle
//! connection's goroutine woken by a TCP keep-alive probe every 15 s and parked again).
//! Busy waiters (none of whose waits lasted three scan intervals) are set aside. Of the
//! others it counts the newcomers that were still there at the end of the window, a
//! quarter of the window or more after they came (the settled cohort), how that cohort
//! grew over the window, and the waiters that left. A crowd of idle connections that
//! rotates (one hangs up, one arrives) settles newcomers too, but its old waiters leave
//! at the same pace; a leak's never do. Busy waiters, and waiters that were there all
//! along and stay, count for neither.
//!
//! Tallied in the same single pass over the members as the rest of the evidence: a
//! count per scan and the waiter at hand, nothing per member.

use super::{
    observation::MemberObservation,
    stats::{slope, unevenness},
};

/// The settling time, how long a newcomer must have stayed at the site, as a share of
/// the window, and at least [`QUIET_INTERVALS`].
const SETTLE_SHARE: f64 = 0.25;
/// The shortest wait of a waiter that is not busy, in scan intervals: a busy waiter
/// seen at every scan is seen in a new wait at each.
const QUIET_INTERVALS: f64 = 3.0;

/// The settled cohort and the idle waiters that left, counted per scan.
#[derive(Debug, Default)]
pub struct SettledTally {
    /// Seconds a newcomer must have stayed at the site to have settled.
    settle_s: f64,
    /// Seconds one wait must last for its waiter not to be busy.
    quiet_s: f64,
    /// The last scan a newcomer may come at and still have settled by the end.
    last_settling_scan: Option<usize>,
    /// Per scan: the idle newcomers first seen at it that were still there at the end
    /// of the window, at least `settle_s` later.
    arrivals_at: Vec<u32>,
    /// Per scan: the idle waiters last seen at it that left.
    departures_at: Vec<u32>,
    /// The waiter whose waits are being visited.
    waiter: Option<WaiterCourse>,
}

/// One waiter's waits at the site, gathered as they are visited.
#[derive(Clone, Copy, Debug)]
struct WaiterCourse {
    id: Option<u64>,
    /// The first and last scan that saw it at the site.
    first: usize,
    last: usize,
    /// It was there at the window's first scan, before it.
    resident: bool,
    /// Its longest wait, in seconds: under `quiet_s`, it is busy.
    longest_s: f64,
}

/// How the settled cohort of a site grew over the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SettledCourse {
    /// Waiters that came during the window and were still there at its end, at least
    /// `settle_s` after they came, not busy (one wait of theirs lasted three scan
    /// intervals or more).
    pub settled: u32,
    /// Waiters that left during the window, not busy either.
    pub long_departures: u32,
    pub settle_s: f64,
    /// Slope of the cohort's size over the time its members could arrive in (from the
    /// window's start to `settle_s` before its end), per minute.
    pub growth_per_min: f64,
    /// The cohort net of the idle waiters that left, over that time: how far its
    /// course strays from a straight line up, as a share of where it ends (0: perfectly
    /// steady; a burst, a warm-up that levels off or a crowd whose old waiters leave as
    /// new ones settle stray far); `None` when it does not end above where it began.
    pub unevenness: Option<f64>,
}

impl SettledTally {
    /// An empty tally for a window of scans at `times_s` (seconds from its start).
    pub fn new(times_s: &[f64]) -> Self {
        let n = times_s.len();
        let window_s =
            times_s.last().copied().unwrap_or(0.0) - times_s.first().copied().unwrap_or(0.0);
        let interval_s = if n > 1 {
            window_s / (n - 1) as f64
        } else {
            0.0
        };
        let quiet_s = QUIET_INTERVALS * interval_s;
        let settle_s = (SETTLE_SHARE * window_s).max(quiet_s);
        let span_end_s = times_s.last().copied().unwrap_or(0.0) - settle_s;
        Self {
            settle_s,
            quiet_s,
            last_settling_scan: times_s.iter().rposition(|&t| t <= span_end_s),
            arrivals_at: vec![0; n],
            departures_at: vec![0; n],
            waiter: None,
        }
    }

    /// Counts one member: `arrived` during the window, current when last seen at scan
    /// `last`, the window's last.
    pub fn add(&mut self, times_s: &[f64], m: &MemberObservation, arrived: bool, last: usize) {
        let at = |scan: usize| times_s.get(scan.min(last)).copied().unwrap_or(0.0);
        // What the scans saw, or longer where the wait's age is known (threads) or
        // dated by the runtime (goroutines).
        let waited_s = (at(m.last) - at(m.first)).max(m.blocked_for_s);
        let this = WaiterCourse {
            id: m.waiter,
            first: m.first,
            last: m.last,
            resident: !arrived,
            longest_s: waited_s,
        };
        match &mut self.waiter {
            Some(w) if w.id.is_some() && w.id == m.waiter => {
                w.first = w.first.min(this.first);
                w.last = w.last.max(this.last);
                w.resident |= this.resident;
                w.longest_s = w.longest_s.max(this.longest_s);
            }
            _ => {
                if let Some(done) = self.waiter.replace(this) {
                    self.count(done, last);
                }
            }
        }
    }

    /// Counts a waiter once all its waits were visited, unless it is busy: a newcomer
    /// still there at the end, long enough after it came, settled; one gone left.
    fn count(&mut self, w: WaiterCourse, last: usize) {
        if w.longest_s < self.quiet_s {
            return;
        }
        let counts = if w.last < last {
            (&mut self.departures_at, w.last)
        } else if !w.resident && self.last_settling_scan.is_some_and(|s| w.first <= s) {
            (&mut self.arrivals_at, w.first)
        } else {
            return;
        };
        if let Some(n) = counts.0.get_mut(counts.1) {
            *n += 1;
        }
    }

    /// The cohort's course over the window (`times_s` as given to [`SettledTally::new`]),
    /// once every member was added.
    pub fn course(&mut self, times_s: &[f64]) -> SettledCourse {
        if let Some(done) = self.waiter.take() {
            self.count(done, times_s.len().saturating_sub(1));
        }
        let start_s = times_s.first().copied().unwrap_or(0.0);
        let end_s = times_s.last().copied().unwrap_or(0.0);
        let span_end_s = end_s - self.settle_s;
        // The cohort's size, and its size net of the idle waiters that left, at each
        // scan of the time it could settle in.
        let (mut settled, mut net) = (0u32, 0i64);
        let (mut xs, mut sizes, mut nets) = (Vec::new(), Vec::new(), Vec::new());
        for ((&t, &arrived), &left) in times_s
            .iter()
            .zip(&self.arrivals_at)
            .zip(&self.departures_at)
        {
            settled += arrived;
            if t <= span_end_s {
                net += i64::from(arrived) - i64::from(left);
                xs.push(t);
                sizes.push(f64::from(settled));
                nets.push(net as f64);
            }
        }
        SettledCourse {
            settled,
            long_departures: self.departures_at.iter().sum(),
            settle_s: self.settle_s,
            growth_per_min: slope(&xs, &sizes) * 60.0,
            unevenness: unevenness(&xs, &nets, start_s),
        }
    }
}
