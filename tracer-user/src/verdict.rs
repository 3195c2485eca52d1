//! The growth verdict: pure judgement of one site's population over a watch window.
//!
//! A leak is a site where waiters keep arriving and do not leave. The count alone cannot
//! say that (in-flight waiters grow while load ramps up, yet each leaves at once), so
//! the verdict follows each member: when it arrived, whether it left, how long it waits.

use serde::{Deserialize, Serialize};

/// One member (one uninterrupted wait) of a site, as scan indices into the observation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberObservation {
    /// First and last scan that saw this wait.
    pub first: usize,
    pub last: usize,
    /// How long the member had been blocked when last seen, in seconds.
    pub blocked_for_s: f64,
    /// Creation order of the waiter: for threads, start time in seconds relative to the
    /// window start (negative: before the window); for goroutines, the goroutine id.
    #[serde(alias = "started_s")]
    pub born: f64,
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

/// A verdict with the evidence a person needs to check it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteJudgement {
    pub verdict: GrowthVerdict,
    /// Slope of the waiter count, per minute (least squares over the window).
    pub growth_per_min: f64,
    /// Waits that began during the window.
    pub arrivals: u32,
    /// Of those, the ones still waiting at the last scan.
    pub stayed: u32,
    /// Waits that ended during the window (the thread woke or exited).
    pub departures: u32,
    /// The longest a current member has been blocked, in seconds.
    pub oldest_wait_s: f64,
    pub reason: String,
}

/// Thresholds of the verdict.
#[derive(Clone, Copy, Debug)]
pub struct VerdictPolicy {
    /// Fewer arrivals that stayed than this is too little evidence of growth.
    pub min_stayed: u32,
    /// Departures may be at most this fraction of the arrivals that stayed: a leak's
    /// waiters do not leave.
    pub max_departure_ratio: f64,
    /// Scans needed before anything is judged.
    pub min_scans: usize,
}

impl Default for VerdictPolicy {
    fn default() -> Self {
        Self {
            min_stayed: 3,
            max_departure_ratio: 0.25,
            min_scans: 3,
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

/// Judges one site.
pub fn judge(obs: &SiteObservation, policy: &VerdictPolicy) -> SiteJudgement {
    let n = obs.counts.len().min(obs.times_s.len());
    let last = n.saturating_sub(1);
    let current: Vec<&MemberObservation> = obs.members.iter().filter(|m| m.last == last).collect();
    let oldest_wait_s = current.iter().map(|m| m.blocked_for_s).fold(0.0, f64::max);
    // A process born inside the window has no "before": its first waiters arrived too.
    let arrived = |m: &MemberObservation| m.first > 0 || obs.window_started_before_process;
    let arrivals = obs.members.iter().filter(|m| arrived(m)).count() as u32;
    let stayed = current.iter().filter(|m| arrived(m)).count() as u32;
    let departures = obs.members.iter().filter(|m| m.last < last).count() as u32;
    let counts: Vec<f64> = obs.counts[..n].iter().map(|&c| c as f64).collect();
    let growth_per_min = slope(&obs.times_s[..n], &counts) * 60.0;

    let judgement = |verdict, reason: String| SiteJudgement {
        verdict,
        growth_per_min,
        arrivals,
        stayed,
        departures,
        oldest_wait_s,
        reason,
    };
    if n < policy.min_scans {
        return judgement(
            GrowthVerdict::Ok,
            format!("only {n} scans: too few to judge growth"),
        );
    }
    let grew = counts[last] > counts[0] && growth_per_min > 0.0;
    let few_left = departures as f64 <= policy.max_departure_ratio * stayed as f64;
    if stayed >= policy.min_stayed && grew && few_left {
        return judgement(
            GrowthVerdict::Leak,
            format!(
                "{stayed} waiters arrived and stayed, {departures} left; the population grew from {} to {} ({growth_per_min:+.1}/min)",
                obs.counts[0], obs.counts[last]
            ),
        );
    }
    let reason = if !grew {
        format!(
            "no growth: {} waiters at the start, {} at the end",
            obs.counts[0], obs.counts[last]
        )
    } else if !few_left {
        format!("waiters come and go: {arrivals} arrived, {departures} left")
    } else {
        format!("only {stayed} new waiters stayed: too few to call a leak")
    };
    judgement(GrowthVerdict::Ok, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(first: usize, last: usize) -> MemberObservation {
        MemberObservation {
            first,
            last,
            blocked_for_s: (last - first) as f64,
            born: first as f64,
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

    /// Check the slope on a known line.
    #[test]
    fn slope_of_a_line() {
        assert!((slope(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[1.0], &[1.0]), 0.0);
    }
}
