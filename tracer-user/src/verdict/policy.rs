//! The verdict's thresholds, in one place, with why each is what it is.

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
    /// At a site whose waits come and go: settled waiters (idle newcomers of the
    /// window still there at its end, at least the settling time after they came)
    /// needed to judge them...
    pub stayers_min: u32,
    /// ...the idle waiters that left, as a share of the settled ones, that still leave
    /// a leak (a leak's waiters never leave; a rotating crowd's leave as fast as new ones
    /// settle)...
    pub stayers_max_long_departure_ratio: f64,
    /// ...and up to which the site is a suspect (some leave, fewer than settle);
    pub stayers_suspect_long_departure_ratio: f64,
    /// ...and how far the settled cohort, net of the idle waiters that left, may stray
    /// from steady growth through the window (a share of its size: a leak's cohort
    /// grows along a line; a burst, a warm-up that levels off, a crowd whose old waiters
    /// leave as new ones settle do not).
    pub stayers_max_unevenness: f64,
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
            stayers_min: 5,
            stayers_max_long_departure_ratio: 0.1,
            stayers_suspect_long_departure_ratio: 0.5,
            stayers_max_unevenness: 0.3,
        }
    }
}
