//! What a budget cut from what leakscope reports of a process. A process whose analysis
//! was refused or cut by the memory or CPU budget carries these reasons through the
//! census, the history and the summary to every sink (the JSON `degraded`, the text
//! report, `leakscope_process_degraded`), so that it never looks silently complete.

use std::{collections::BTreeSet, fmt, sync::Arc, time::Duration};

use super::{MemoryKind, OverBudget, human_bytes};

/// Reasons kept per process (the first ones: they name the cause well enough).
pub const MAX_DEGRADATIONS: usize = 8;

/// Which budget was short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// `needed` bytes of `kind` over its `limit` (share or quota).
    Memory {
        kind: MemoryKind,
        needed: u64,
        limit: u64,
    },
    /// The work took `spent` of CPU, over its `budget` (milliseconds).
    Cpu { spent_ms: u64, budget_ms: u64 },
    /// Compressed in a file another user can write: it could inflate past any size it
    /// declares, so it is never inflated (counted against `symbols`).
    UntrustedCompressed,
}

impl From<OverBudget> for Cause {
    fn from(e: OverBudget) -> Self {
        Self::Memory {
            kind: e.kind,
            needed: e.needed,
            limit: e.limit,
        }
    }
}

impl Cause {
    /// CPU over budget.
    pub fn cpu(spent: Duration, budget: Duration) -> Self {
        Self::Cpu {
            spent_ms: spent.as_millis() as u64,
            budget_ms: budget.as_millis() as u64,
        }
    }

    /// The budget that was short: a [`MemoryKind`]'s name, or `cpu`.
    pub fn budget(&self) -> &'static str {
        match self {
            Self::Memory { kind, .. } => kind.name(),
            Self::Cpu { .. } => "cpu",
            Self::UntrustedCompressed => MemoryKind::Symbols.name(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Memory {
                kind,
                needed,
                limit,
            } => {
                let (needed, limit) = (human_bytes(needed), human_bytes(limit));
                if needed == limit {
                    write!(f, "needs more than the {limit} budget for {kind}")
                } else {
                    write!(f, "needs {needed}, over the {limit} budget for {kind}")
                }
            }
            Self::Cpu {
                spent_ms,
                budget_ms,
            } => write!(
                f,
                "took {:.1} s of CPU, over its {:.1} s budget",
                spent_ms as f64 / 1e3,
                budget_ms as f64 / 1e3
            ),
            Self::UntrustedCompressed => f.write_str(
                "would inflate compressed data in a file another user can write (it could \
                 inflate past any size it declares)",
            ),
        }
    }
}

/// What was cut, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Degradation {
    /// Frames in `module` are named from its symbol table only (no file, no line): its
    /// debug info was not read.
    DebugInfo { module: Arc<str>, cause: Cause },
    /// Frames in `module` are not named (addresses only): it was not read.
    Symbols { module: Arc<str>, cause: Cause },
    /// Stacks through `module` are unwound by frame pointers only: its unwind tables
    /// were not read.
    Unwind { module: Arc<str>, cause: Cause },
    /// Its memory maps were not read: its threads' stacks are their blocked pc only.
    Maps { cause: Cause },
    /// Some of its sites' frames are not named (addresses only).
    SiteNames { cause: Cause },
    /// The window's history of it was cut: `forgotten` waits that ended earliest (or,
    /// past those, the oldest) are forgotten, so its verdicts see less than the window.
    History { forgotten: u64, cause: Cause },
}

impl Degradation {
    /// Whether `other` cuts the same thing (the same kind of cut, of the same binary),
    /// whatever the figures: a process keeps the first such reason only.
    pub fn same_cut(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.module() == other.module()
    }

    /// The binary a cut is about, if any.
    pub fn module(&self) -> Option<&str> {
        match self {
            Self::DebugInfo { module, .. }
            | Self::Symbols { module, .. }
            | Self::Unwind { module, .. } => Some(module),
            Self::Maps { .. } | Self::SiteNames { .. } | Self::History { .. } => None,
        }
    }

    pub fn cause(&self) -> &Cause {
        match self {
            Self::DebugInfo { cause, .. }
            | Self::Symbols { cause, .. }
            | Self::Unwind { cause, .. }
            | Self::Maps { cause }
            | Self::SiteNames { cause }
            | Self::History { cause, .. } => cause,
        }
    }

    /// The budget that was short (the metric's `budget` label).
    pub fn budget(&self) -> &'static str {
        self.cause().budget()
    }
}

/// One line; a module path is process-controlled text, which the sinks escape.
impl fmt::Display for Degradation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DebugInfo { module, cause } => write!(
                f,
                "frames in {module} named without file and line: reading its debug info {cause}"
            ),
            Self::Symbols { module, cause } => {
                write!(
                    f,
                    "frames in {module} not named: reading its symbols {cause}"
                )
            }
            Self::Unwind { module, cause } => write!(
                f,
                "stacks through {module} unwound by frame pointers only: reading its unwind \
                 tables {cause}"
            ),
            Self::Maps { cause } => write!(
                f,
                "stacks not unwound (blocked pc only): reading its memory maps {cause}"
            ),
            Self::SiteNames { cause } => write!(
                f,
                "some sites not named (addresses only): naming them {cause}"
            ),
            Self::History { forgotten, cause } => write!(
                f,
                "history cut, {forgotten} earliest-ended waits forgotten: keeping it {cause}"
            ),
        }
    }
}

/// A process's reasons, the first [`MAX_DEGRADATIONS`] distinct ones.
pub type Degradations = Arc<BTreeSet<Degradation>>;

/// Adds `reason` to `set` (bounded, one reason per cut: see
/// [`Degradation::same_cut`]); true when it was new.
pub fn note(set: &mut Degradations, reason: Degradation) -> bool {
    if set.len() >= MAX_DEGRADATIONS || set.iter().any(|d| d.same_cut(&reason)) {
        return false;
    }
    Arc::make_mut(set).insert(reason);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that reasons read as one line naming what was cut and the budget, and
    /// that a process keeps a bounded set of distinct ones.
    #[test]
    fn reasons_render_and_stay_bounded() {
        let cause = Cause::Memory {
            kind: MemoryKind::Symbols,
            needed: 115 << 20,
            limit: 24 << 20,
        };
        let d = Degradation::DebugInfo {
            module: "/usr/bin/big".into(),
            cause,
        };
        assert_eq!(
            d.to_string(),
            "frames in /usr/bin/big named without file and line: reading its debug info \
             needs 115.0 MiB, over the 24.0 MiB budget for symbols"
        );
        assert_eq!(d.budget(), "symbols");
        let cpu = Degradation::Maps {
            cause: Cause::cpu(Duration::from_millis(2500), Duration::from_secs(1)),
        };
        assert!(
            cpu.to_string()
                .ends_with("took 2.5 s of CPU, over its 1.0 s budget")
        );
        assert_eq!(cpu.budget(), "cpu");
        let mut set = Degradations::default();
        assert!(note(&mut set, d.clone()));
        assert!(!note(&mut set, d));
        for i in 0..3u64 {
            note(
                &mut set,
                Degradation::History {
                    forgotten: i,
                    cause,
                },
            );
        }
        assert_eq!(set.len(), 2, "one history cut per process: {set:?}");
        for i in 0..20u64 {
            note(
                &mut set,
                Degradation::Unwind {
                    module: format!("/lib/{i}.so").into(),
                    cause,
                },
            );
        }
        assert_eq!(set.len(), MAX_DEGRADATIONS);
    }
}
