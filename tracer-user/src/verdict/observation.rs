//! What the verdict judges: one site's population over a watch window, as scan
//! indices and seconds, and its members (one per uninterrupted wait). The history
//! builds these; recorded runs in `tests/data/` are these, serialized.

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
    /// Who waits: the same number for every wait of one goroutine (its id) or one
    /// thread (a hash of its tid and start time) at the site, so that a waiter that
    /// waits again at the same place is told from a new one. `None`: every wait is its
    /// own waiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiter: Option<u64>,
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

/// The members of a site, visited one at a time: a site may hold a million members,
/// and the verdict needs only tallies of them and the births of those still waiting,
/// so whoever holds them need not build them all at once.
pub trait Members {
    /// Calls `visit` once with every member, the waits of one waiter one after the
    /// other (see [`MemberObservation::waiter`]), waiters in any order.
    fn visit(&self, visit: &mut dyn FnMut(&MemberObservation));
}

/// As they are: a recorded run keeps its members in the order they were visited.
impl Members for [MemberObservation] {
    fn visit(&self, visit: &mut dyn FnMut(&MemberObservation)) {
        self.iter().for_each(visit);
    }
}
