//! The growth verdict: pure judgement of one site's population over a watch window.
//!
//! A leak is a site where waiters keep arriving and do not leave. The count alone cannot
//! say that (in-flight waiters grow while load ramps up, yet each leaves at once), so
//! the verdict follows each member: when it arrived, whether it left, how long it waits.
//!
//! - [`observation`]: what is judged (a site's counts per scan and its members);
//! - [`evidence`]: what the rules read, gathered in one pass over the members;
//! - [`rules`]: one small function per rule, tried in order;
//! - [`rule`]: the typed outcome and the rule that decided it, with its evidence,
//!   which every sink renders.

pub mod evidence;
pub mod observation;
pub mod policy;
pub mod rule;
mod rules;
pub mod settled;
pub mod stats;

pub use observation::{MemberObservation, Members, SiteObservation};
pub use policy::VerdictPolicy;
pub use rule::{BirthClock, CountSpan, Outcome, Rule, Stayers, SteadyBirths};
pub use stats::slope;

use serde::Serialize;

use evidence::Evidence;

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
#[derive(Clone, Debug, PartialEq)]
pub struct SiteJudgement {
    /// The rule that decided, with its evidence; it says the outcome.
    pub rule: Rule,
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
}

impl SiteJudgement {
    pub fn outcome(&self) -> Outcome {
        self.rule.outcome()
    }

    pub fn is_leak(&self) -> bool {
        self.outcome().is_leak()
    }

    pub fn is_suspect(&self) -> bool {
        self.outcome().is_suspect()
    }
}

/// Judges one site: do waiters arrive here and stay, with no sign of the growth stopping?
/// The members are `obs.members`; see [`judge_members`].
pub fn judge(obs: &SiteObservation, policy: &VerdictPolicy) -> SiteJudgement {
    judge_members(obs, obs.members.as_slice(), policy)
}

/// Judges one site whose members come from `members` (`obs.members` is not read).
///
/// Three kinds of evidence, each named by the rule that decides (see [`rules`]):
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
    let evidence = Evidence::gather(obs, members);
    let rule = rules::decide(&evidence, policy);
    let t = &evidence.tally;
    let oldest_wait_source = (!obs.wait_age_known).then_some(match t.oldest {
        Some((_, true)) => WaitAgeSource::Runtime,
        _ => WaitAgeSource::Observed,
    });
    SiteJudgement {
        rule,
        growth_per_min: evidence.growth_per_min,
        arrivals: t.arrivals,
        stayed: t.stayed,
        departures: t.departures,
        oldest_wait_s: t.oldest.map_or(0.0, |(s, _)| s.max(0.0)),
        oldest_wait_source,
        age_spread_s: evidence.births.map(|b| b.span_s),
    }
}

#[cfg(test)]
mod tests;
