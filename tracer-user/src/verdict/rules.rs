//! The verdict's rules, one small function each, tried in order: the first that
//! applies decides. Each returns the [`Rule`] with the evidence it read, or `None`.

use super::{
    evidence::Evidence,
    policy::VerdictPolicy,
    rule::{BirthClock, Rule, Stayers, SteadyBirths},
};

type RuleFn = fn(&Evidence, &VerdictPolicy) -> Option<Rule>;

/// The rules, in the order they are tried; [`no_growth`] closes the list.
const RULES: [RuleFn; 9] = [
    too_few_scans,
    never_left,
    stayers_may_grow,
    come_and_go,
    stayed_and_growing,
    steady_births,
    accumulated,
    levelled_off,
    few_stayed,
];

/// The rule that decides the site's verdict.
pub fn decide(evidence: &Evidence, policy: &VerdictPolicy) -> Rule {
    RULES
        .iter()
        .find_map(|rule| rule(evidence, policy))
        .unwrap_or_else(|| no_growth(evidence))
}

/// Nothing is judged from fewer scans than the policy needs.
fn too_few_scans(e: &Evidence, policy: &VerdictPolicy) -> Option<Rule> {
    (e.scans < policy.min_scans).then_some(Rule::TooFewScans { scans: e.scans })
}

/// Whether most of the site's waiters come and go: more than the policy's share of the
/// members seen left during the window.
fn churns(e: &Evidence, policy: &VerdictPolicy) -> bool {
    let t = &e.tally;
    f64::from(t.departures) > policy.max_departure_ratio * t.seen.max(1) as f64
}

/// At a site whose waits come and go, the waiters that came and never left, when
/// enough of them settled steadily through the window while the population grew:
/// `None` otherwise. The idle waiters that left are for the callers to weigh.
fn settled_cohort(e: &Evidence, policy: &VerdictPolicy) -> Option<Stayers> {
    let s = &e.settled;
    let growing = churns(e, policy)
        && s.settled >= policy.stayers_min
        && s.unevenness
            .is_some_and(|u| u <= policy.stayers_max_unevenness)
        && e.grew;
    growing.then_some(Stayers {
        settled: s.settled,
        churned: e.tally.arrivals - e.tally.stayed,
        long_departures: s.long_departures,
        growth_per_min: s.growth_per_min,
        settle_s: s.settle_s,
    })
}

/// Who stays among those who come and go: a leak hidden at a busy site (idle
/// keep-alive connections that never close beside busy ones, a leaked worker parked
/// where live workers park) is a cohort of idle waiters that came and never left,
/// growing steadily, while (nearly) no idle waiter left.
fn never_left(e: &Evidence, policy: &VerdictPolicy) -> Option<Rule> {
    let s = settled_cohort(e, policy)?;
    let ratio = policy.stayers_max_long_departure_ratio;
    (f64::from(s.long_departures) <= ratio * f64::from(s.settled)).then_some(Rule::NeverLeft(s))
}

/// The same cohort, but some idle waiters left too, fewer than settled: a crowd that
/// rotates while it grows, or a leak beside it; the window cannot tell.
fn stayers_may_grow(e: &Evidence, policy: &VerdictPolicy) -> Option<Rule> {
    let s = settled_cohort(e, policy)?;
    let ratio = policy.stayers_suspect_long_departure_ratio;
    (f64::from(s.long_departures) <= ratio * f64::from(s.settled))
        .then_some(Rule::StayersMayGrow(s))
}

/// Who leaves: a site whose waiters leave (a pool, a ramp of short requests, sleepers)
/// is no leak, however its count moves.
fn come_and_go(e: &Evidence, policy: &VerdictPolicy) -> Option<Rule> {
    let t = &e.tally;
    churns(e, policy).then_some(Rule::ComeAndGo {
        arrivals: t.arrivals,
        departures: t.departures,
        window_s: e.window_s,
    })
}

/// The window: waiters that arrived during the watch and stayed, the population
/// growing, still arriving at the end (a warm-up that levels off stops arriving).
fn stayed_and_growing(e: &Evidence, policy: &VerdictPolicy) -> Option<Rule> {
    let t = &e.tally;
    (t.stayed >= policy.min_stayed && e.grew && !e.stopped).then_some(Rule::StayedAndGrowing {
        stayed: t.stayed,
        departures: t.departures,
        counts: e.counts,
        growth_per_min: e.growth_per_min,
    })
}

/// The members' births: a slow leak adds little within a window, but its members were
/// born steadily over the process's life, up to now, and sit blocked since birth.
/// Goroutine parks dated by GC cycles: the dates inside a cycle's bracket are only
/// spread by id order, so the brackets alone must prove the spread, and a park date is
/// no birth: members that leave are a pool re-parking, not a leak.
fn steady_births(e: &Evidence, policy: &VerdictPolicy) -> Option<Rule> {
    let b = e.births?;
    let t = &e.tally;
    let regular = b.gap_cv <= policy.lifetime_max_gap_cv && b.max_gap_s <= 0.5 * b.span_s;
    let recent = b.newest_age_s <= policy.lifetime_recency_gaps * b.mean_gap_s + 1.0;
    let stuck = b
        .stuck_share
        .is_none_or(|s| s >= policy.lifetime_min_stuck_share);
    let parks = t.proven_park_span();
    let proven = parks.is_none_or(|span| t.departures == 0 && span >= policy.lifetime_min_span_s);
    let steady = b.members >= policy.lifetime_min_members
        && b.span_s >= policy.lifetime_min_span_s
        && regular
        && recent
        && stuck
        && proven
        && !e.stopped
        && e.counts.last >= e.counts.first;
    let clock = match (parks, b.stuck_share) {
        (Some(_), _) => BirthClock::GcCycles,
        (None, Some(_)) => BirthClock::ThreadStart,
        (None, None) => BirthClock::GoroutineId,
    };
    steady.then_some(Rule::SteadyBirths(SteadyBirths {
        clock,
        members: b.members,
        span_s: b.span_s,
        every_s: b.mean_gap_s,
        newest_age_s: b.newest_age_s,
        stayed: t.stayed,
    }))
}

/// Births unknown (goroutine ids are a poor clock: the runtime hands them to each P in
/// batches): does the population fit steady accumulation over the process's life, at
/// the pace the window shows? A pool or a plateau fills early and then stops arriving;
/// a slow leak's members number about its pace times the process's age.
fn accumulated(e: &Evidence, policy: &VerdictPolicy) -> Option<Rule> {
    let t = &e.tally;
    let age_s = e.process_age_s?;
    let candidate = !e.births_known()
        && t.departures == 0
        && t.stayed >= 1
        && !e.stopped
        && e.counts.last >= e.counts.first
        && t.current >= policy.accumulation_min_members
        && age_s >= policy.accumulation_min_age_s
        && e.window_s > 0.0;
    if !candidate {
        return None;
    }
    let pace = t.current as f64 / age_s;
    let expected = pace * e.window_s;
    let seen = f64::from(t.stayed);
    (seen >= 0.3 * expected && seen <= 3.0 * expected + 2.0).then_some(Rule::Accumulated {
        members: t.current,
        process_age_s: age_s,
        every_s: 1.0 / pace,
        stayed: t.stayed,
    })
}

/// A warm-up: the population grew, then arrivals stopped.
fn levelled_off(e: &Evidence, _: &VerdictPolicy) -> Option<Rule> {
    (e.stopped && e.grew).then_some(Rule::LevelledOff { counts: e.counts })
}

/// One newcomer is everyday noise (a runtime thread going idle); two that stay while
/// nobody leaves is worth a second look.
fn few_stayed(e: &Evidence, _: &VerdictPolicy) -> Option<Rule> {
    let stayed = e.tally.stayed;
    (stayed >= 2 && e.counts.last >= e.counts.first + 2).then_some(Rule::FewStayed {
        stayed,
        window_s: e.window_s,
    })
}

/// What is left: no growth, or growth with too few newcomers staying to matter.
fn no_growth(e: &Evidence) -> Rule {
    if e.grew {
        Rule::TooFewStayed {
            stayed: e.tally.stayed,
        }
    } else {
        Rule::NoGrowth { counts: e.counts }
    }
}
