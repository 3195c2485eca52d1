//! What the verdict says, typed: the outcome (ok, suspect, leak) and the rule that
//! decided it, carrying that rule's evidence. Every sink renders these: the text and
//! JSON `reason` from [`Rule`]'s `Display`, the metrics' `rule` label from
//! [`Rule::name`], the JSON `verdict`/`suspect` pair and pprof's `verdict` label from
//! [`Outcome`]. No sink re-derives a verdict or parses a reason.

use std::fmt;

/// The verdict users act on. Ordered by severity, so a process's outcome is the
/// greatest of its sites'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// No leak, nothing to watch.
    Ok,
    /// No leak proven, but growth that may be one: more watching would tell.
    Suspect,
    /// Waiters arrive and never leave.
    Leak,
}

impl Outcome {
    /// "ok", "suspect" or "leak": pprof's `verdict` label, `top`'s column.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Suspect => "suspect",
            Self::Leak => "leak",
        }
    }

    /// The JSON report's `verdict`: "leak" or "ok" (version 1 predates suspects: a
    /// suspect is "ok" with `"suspect": true`).
    pub fn json_verdict(self) -> &'static str {
        match self {
            Self::Leak => "leak",
            Self::Ok | Self::Suspect => "ok",
        }
    }

    pub fn is_leak(self) -> bool {
        self == Self::Leak
    }

    pub fn is_suspect(self) -> bool {
        self == Self::Suspect
    }
}

/// The waiter count at the window's first and last scan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CountSpan {
    pub first: u32,
    pub last: u32,
}

/// How the births behind [`Rule::SteadyBirths`] were dated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BirthClock {
    /// Threads' start times, each thread blocked since (nearly) its birth.
    ThreadStart,
    /// Goroutine ids dated by the process's goroutine creation rate.
    GoroutineId,
    /// Goroutine parks dated by the runtime's GC cycles (`g.waitsince`).
    GcCycles,
}

/// The births of a site's current members, steady up to now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteadyBirths {
    pub clock: BirthClock,
    /// Members with a known birth.
    pub members: usize,
    /// From the oldest birth to the newest, and the mean gap between births.
    pub span_s: f64,
    pub every_s: f64,
    /// Seconds from the newest birth to the window's end.
    pub newest_age_s: f64,
    /// Waits that began during the window and lasted to its end.
    pub stayed: u32,
}

/// The waiters that stayed at a site whose other waits come and go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stayers {
    /// Waiters (goroutines, threads) that came to the site during the window and never
    /// left it, there for `settle_s` or more at its end, not busy.
    pub settled: u32,
    /// Waits that began during the window and ended within it.
    pub churned: u32,
    /// Waiters that left the site during the window, not busy either.
    pub long_departures: u32,
    /// How fast the settled cohort grew, per minute.
    pub growth_per_min: f64,
    pub settle_s: f64,
}

/// Which rule decided a site's verdict, with the evidence it read. Each variant has one
/// outcome ([`Rule::outcome`]); the rules are tried in the order they are listed.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// Too few scans to judge anything.
    TooFewScans { scans: usize },
    /// Most waits come and go, but a cohort of waiters that came during the window
    /// never left, grew steadily through it, and (nearly) no waiter left after a long
    /// wait.
    NeverLeft(Stayers),
    /// Most waits come and go and a cohort that never left grew, but some waiters left
    /// after waiting as long: a crowd that rotates, or a leak.
    StayersMayGrow(Stayers),
    /// More than a tenth of the members seen left: the waiters come and go (a pool, a
    /// ramp of short requests, sleepers), however the count moves.
    ComeAndGo {
        arrivals: u32,
        departures: u32,
        window_s: f64,
    },
    /// Waiters arrived during the watch and stayed, the population grew, and arrivals
    /// went on to the end of the window.
    StayedAndGrowing {
        stayed: u32,
        departures: u32,
        counts: CountSpan,
        growth_per_min: f64,
    },
    /// The current members were born (or parked) steadily over the process's life, up
    /// to now, and none left.
    SteadyBirths(SteadyBirths),
    /// Births unknown: the members fit steady accumulation over the process's life at
    /// the pace the window shows, and none left.
    Accumulated {
        members: usize,
        process_age_s: f64,
        every_s: f64,
        stayed: u32,
    },
    /// The population grew, then stopped arriving (a warm-up).
    LevelledOff { counts: CountSpan },
    /// A few waiters arrived and stayed while none left: too few to call a leak.
    FewStayed { stayed: u32, window_s: f64 },
    /// The population grew, but too few new waiters stayed to suspect anything.
    TooFewStayed { stayed: u32 },
    /// The population did not grow.
    NoGrowth { counts: CountSpan },
}

impl Rule {
    /// What the rule concludes.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::NeverLeft(_)
            | Self::StayedAndGrowing { .. }
            | Self::SteadyBirths(_)
            | Self::Accumulated { .. } => Outcome::Leak,
            Self::StayersMayGrow(_) | Self::FewStayed { .. } => Outcome::Suspect,
            Self::TooFewScans { .. }
            | Self::ComeAndGo { .. }
            | Self::LevelledOff { .. }
            | Self::TooFewStayed { .. }
            | Self::NoGrowth { .. } => Outcome::Ok,
        }
    }

    /// A short stable name: the metrics' `rule` label and the JSON `rule`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TooFewScans { .. } => "too_few_scans",
            Self::NeverLeft(_) => "never_left",
            Self::StayersMayGrow(_) => "stayers_may_grow",
            Self::ComeAndGo { .. } => "come_and_go",
            Self::StayedAndGrowing { .. } => "stayed_and_growing",
            Self::SteadyBirths(b) => match b.clock {
                BirthClock::GcCycles => "parked_steadily",
                BirthClock::ThreadStart | BirthClock::GoroutineId => "born_steadily",
            },
            Self::Accumulated { .. } => "accumulated",
            Self::LevelledOff { .. } => "levelled_off",
            Self::FewStayed { .. } => "few_stayed",
            Self::TooFewStayed { .. } => "too_few_stayed",
            Self::NoGrowth { .. } => "no_growth",
        }
    }
}

/// The reason, in words a person reads in one glance.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewScans { scans } => write!(f, "only {scans} scans: too few to judge growth"),
            Self::NeverLeft(s) => {
                write_stayers(f, s)?;
                if s.long_departures > 0 {
                    write!(f, " ({} idle one(s) left)", s.long_departures)?;
                }
                Ok(())
            }
            Self::StayersMayGrow(s) => {
                f.write_str("suspect: ")?;
                write_stayers(f, s)?;
                write!(
                    f,
                    ", but {} idle ones left too: a crowd that rotates, or a leak; watch longer (--duration)",
                    s.long_departures
                )
            }
            Self::ComeAndGo {
                arrivals,
                departures,
                window_s,
            } => write!(
                f,
                "waiters come and go: {arrivals} arrived, {departures} left during {window_s:.0} s"
            ),
            Self::StayedAndGrowing {
                stayed,
                departures,
                counts,
                growth_per_min,
            } => write!(
                f,
                "{stayed} waiters arrived and stayed, {departures} left; the population grew from {} to {} ({growth_per_min:+.1}/min) and was still growing at the end",
                counts.first, counts.last
            ),
            Self::SteadyBirths(b) => write_steady_births(f, b),
            Self::Accumulated {
                members,
                process_age_s,
                every_s,
                stayed,
            } => write!(
                f,
                "{members} waiters accumulated over the process's {process_age_s:.0} s (one every {every_s:.1} s), none left, and {stayed} more arrived during the watch at that pace"
            ),
            Self::LevelledOff { counts } => write!(
                f,
                "grew from {} to {}, then levelled off: no arrival in the last part of the window",
                counts.first, counts.last
            ),
            Self::FewStayed { stayed, window_s } => write!(
                f,
                "suspect: {stayed} waiter(s) arrived and stayed, none left, but too few to call a leak in {window_s:.0} s; watch longer (--duration)"
            ),
            Self::TooFewStayed { stayed } => {
                write!(
                    f,
                    "only {stayed} new waiters stayed: too few to call a leak"
                )
            }
            Self::NoGrowth { counts } => write!(
                f,
                "no growth: {} waiters at the start, {} at the end",
                counts.first, counts.last
            ),
        }
    }
}

/// `37 arrived and never left while 560 came and went; the ones that stay grew +148/min`.
fn write_stayers(f: &mut fmt::Formatter<'_>, s: &Stayers) -> fmt::Result {
    write!(
        f,
        "{} arrived and never left while {} came and went; the ones that stay grew {:+.0}/min",
        s.settled, s.churned, s.growth_per_min
    )
}

fn write_steady_births(f: &mut fmt::Formatter<'_>, b: &SteadyBirths) -> fmt::Result {
    let (what, dated, stuck) = match b.clock {
        BirthClock::GcCycles => (
            "goroutines parked",
            "; dated by the runtime's GC cycles",
            "",
        ),
        BirthClock::ThreadStart => ("waiters born", "", ", each blocked since birth"),
        BirthClock::GoroutineId => ("waiters born", "", ""),
    };
    write!(
        f,
        "{} {what} steadily over {:.0} s (one every {:.1} s, the newest {:.0} s ago{dated}){stuck}, none left; {} arrived during the watch",
        b.members, b.span_s, b.every_s, b.newest_age_s, b.stayed
    )
}
