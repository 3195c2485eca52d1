//! One memory budget for everything leakscope keeps or builds from what the host gives
//! it, and the CPU budgets of binary analysis.
//!
//! Every process on the host is input, possibly hostile: its binaries, the names in
//! them, its unwind tables, its memory maps, its goroutine table and the history of its
//! waits. Each reader bounds one item (a section, a name, a table); this module bounds
//! the total. The budget (`--memory-budget`) is split into a share per
//! [`MemoryKind`]; each cache charges what it holds to its kind, evicts (least
//! recently used, or the largest holder first) to stay within its share, and refuses
//! what could never fit. One process (or one binary) may hold at most its kind's
//! per-item quota, so a hostile one cannot take the share from the others. What was
//! refused or cut is never silent: the process carries a [`Degradation`] the sinks
//! render, or (Go programs) a typed read error.
//!
//! What the budget counts: heap memory leakscope keeps from host input (estimated by
//! each cache, and measured as a whole by the counting allocator, [`alloc`]) and
//! copies of binaries held in memory files. Not counted: file pages leakscope maps
//! from binaries only root can write (page cache the kernel may reclaim at any time,
//! released from leakscope's resident set after every scan, see
//! [`crate::host::mapped`]), leakscope's own code and the kernel's BPF maps.
//!
//! The module imports nothing of leakscope but the CPU clock ([`crate::host::cpu`]):
//! every stage can charge it.

pub mod alloc;
pub mod cpu;
pub mod degraded;

use std::{
    fmt,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

/// The default `--memory-budget`: with leakscope's own code, stacks and the kernel
/// interface (about 30 MiB resident), it fits the systemd unit's `MemoryHigh=128M` and
/// the DaemonSet's 128 MiB request.
pub const DEFAULT_MEMORY_BUDGET: u64 = 96 << 20;
/// The smallest `--memory-budget` accepted: below it no share fits a real binary.
pub const MIN_MEMORY_BUDGET: u64 = 16 << 20;
/// The largest `--memory-budget` accepted.
pub const MAX_MEMORY_BUDGET: u64 = 1 << 40;

/// What a share of the budget holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemoryKind {
    /// Analysed Go programs (the pclntab and inline trees copied out of files other
    /// users can write, the symbols looked up, the runtime layout), and such a file's
    /// parts read for analysis while it is analysed.
    Programs,
    /// The symbolizer's binaries: copies of the parts of files other users can write,
    /// and the symbols and debug info it parsed (heap measured around each call).
    Symbols,
    /// Unwind tables (`.eh_frame`, `.eh_frame_hdr`, `.debug_frame`) read into memory.
    Unwind,
    /// Parsed `/proc/PID/maps` of the processes a scan unwinds and names.
    Maps,
    /// Sites' names: each site's symbolized frames, goroutine creators, the cache of
    /// symbolized addresses.
    Sites,
    /// Go processes' goroutine tables (what the incremental reader keeps per `g`).
    Goroutines,
    /// The window's history: per site counts, per wait its span.
    History,
}

impl MemoryKind {
    pub const ALL: [MemoryKind; 7] = [
        Self::Programs,
        Self::Symbols,
        Self::Unwind,
        Self::Maps,
        Self::Sites,
        Self::Goroutines,
        Self::History,
    ];

    /// The name in metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Programs => "programs",
            Self::Symbols => "symbols",
            Self::Unwind => "unwind",
            Self::Maps => "maps",
            Self::Sites => "sites",
            Self::Goroutines => "goroutines",
            Self::History => "history",
        }
    }

    /// This kind's share of the budget, in 96ths (MiB at the default budget).
    const fn share_96ths(self) -> u64 {
        match self {
            Self::Programs => 10,
            Self::Symbols => 10,
            Self::Unwind => 6,
            Self::Maps => 2,
            Self::Sites => 8,
            Self::Goroutines => 32,
            Self::History => 28,
        }
    }

    /// The most one process (programs, symbols and unwind tables: one binary) may hold
    /// of this kind, in 96ths of the budget.
    const fn quota_96ths(self) -> u64 {
        match self {
            Self::Programs => 10,
            Self::Symbols => 10,
            Self::Unwind => 3,
            Self::Maps => 1,
            Self::Sites => 4,
            // One huge Go program is legitimate: it may fill the share (a million parked
            // goroutines take about 27 MiB of table and 24 of history; the default
            // budget follows up to about 1.2 million: see the goroutine table's
            // `a_million_goroutines_fit_the_default_budget`).
            Self::Goroutines => 32,
            Self::History => 28,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// The shares are the whole budget, checked when compiling.
const _: () = {
    let mut sum = 0;
    let mut i = 0;
    while i < MemoryKind::ALL.len() {
        sum += MemoryKind::ALL[i].share_96ths();
        assert!(MemoryKind::ALL[i].quota_96ths() <= MemoryKind::ALL[i].share_96ths());
        assert!(MemoryKind::ALL[i] as usize == i);
        i += 1;
    }
    assert!(sum == 96, "the shares add up to the budget");
};

/// One kind's account.
#[derive(Default)]
struct Account {
    share: u64,
    quota: u64,
    held: AtomicU64,
    evicted_bytes: AtomicU64,
    refused: AtomicU64,
}

/// Why something was not kept: it does not fit the budget. Reads `needs 40.0 MiB, over
/// the 10.0 MiB budget for programs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("needs {}, over the {} budget for {kind}", human_bytes(*.needed), human_bytes(*.limit))]
pub struct OverBudget {
    pub kind: MemoryKind,
    /// What it would hold.
    pub needed: u64,
    /// The share or quota it exceeds.
    pub limit: u64,
}

/// The memory budget: a share per kind, what each holds, what was evicted and refused.
/// Shared by every cache (atomics: the daemon's HTTP side reads it for the metrics).
pub struct MemoryBudget {
    total: u64,
    accounts: [Account; MemoryKind::ALL.len()],
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// One kind's figures, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindUsage {
    pub kind: MemoryKind,
    pub share: u64,
    pub held: u64,
    pub evicted_bytes: u64,
    pub refused: u64,
}

impl MemoryBudget {
    /// A budget of `total` bytes, split into the kinds' shares.
    pub fn new(total: u64) -> Self {
        let part = |n: u64| (total / 96).saturating_mul(n);
        Self {
            total,
            accounts: MemoryKind::ALL.map(|kind| Account {
                share: part(kind.share_96ths()),
                quota: part(kind.quota_96ths()),
                ..Account::default()
            }),
        }
    }

    /// A budget for one test: leaked, so that caches can hold it like the global one.
    pub fn leaked(total: u64) -> &'static Self {
        Box::leak(Box::new(Self::new(total)))
    }

    fn account(&self, kind: MemoryKind) -> &Account {
        &self.accounts[kind.index()]
    }

    /// The whole budget, bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The bytes `kind` may hold.
    pub fn share(&self, kind: MemoryKind) -> u64 {
        self.account(kind).share
    }

    /// The bytes one process (one binary, for programs, symbols and unwind tables) may hold of
    /// `kind`.
    pub fn quota(&self, kind: MemoryKind) -> u64 {
        self.account(kind).quota
    }

    /// The bytes `kind` holds now.
    pub fn held(&self, kind: MemoryKind) -> u64 {
        self.account(kind).held.load(Ordering::Relaxed)
    }

    /// Whether `kind` could ever hold one item of `bytes` (within its per-item quota).
    pub fn check_item(&self, kind: MemoryKind, bytes: u64) -> Result<(), OverBudget> {
        let limit = self.quota(kind);
        if bytes > limit {
            return Err(OverBudget {
                kind,
                needed: bytes,
                limit,
            });
        }
        Ok(())
    }

    /// How many bytes `kind` must let go of before holding `bytes` more (0: it fits).
    pub fn shortfall(&self, kind: MemoryKind, bytes: u64) -> u64 {
        (self.held(kind).saturating_add(bytes)).saturating_sub(self.share(kind))
    }

    /// How many bytes `kind` holds over its share now.
    pub fn excess(&self, kind: MemoryKind) -> u64 {
        self.shortfall(kind, 0)
    }

    /// Takes `bytes` into `kind` if they fit its share and quota; the caller evicts
    /// first (see [`Self::shortfall`]) or gives up.
    pub fn try_charge(&self, kind: MemoryKind, bytes: u64) -> Result<(), OverBudget> {
        self.check_item(kind, bytes)?;
        let account = self.account(kind);
        let fits = account
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                let new = held.checked_add(bytes)?;
                (new <= account.share).then_some(new)
            });
        match fits {
            Ok(_) => Ok(()),
            Err(_) => Err(OverBudget {
                kind,
                needed: bytes,
                limit: account.share,
            }),
        }
    }

    /// Takes `bytes` into `kind` unconditionally (what is already held and will be
    /// trimmed, such as the history of a scan just recorded).
    pub fn charge(&self, kind: MemoryKind, bytes: u64) {
        self.account(kind).held.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives `bytes` of `kind` back (dropped by its holder).
    pub fn release(&self, kind: MemoryKind, bytes: u64) {
        let held = &self.account(kind).held;
        let _ = held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
            Some(h.saturating_sub(bytes))
        });
    }

    /// Moves what `kind` holds from `before` to `after` bytes (a holder re-measured).
    pub fn adjust(&self, kind: MemoryKind, before: u64, after: u64) {
        if after >= before {
            self.charge(kind, after - before);
        } else {
            self.release(kind, before - after);
        }
    }

    /// Counts `bytes` of `kind` let go to make room or to stay within the share (and
    /// releases them).
    pub fn evicted(&self, kind: MemoryKind, bytes: u64) {
        self.release(kind, bytes);
        self.note_evicted(kind, bytes);
    }

    /// Counts `bytes` of `kind` let go of, which its holder accounts for itself.
    pub fn note_evicted(&self, kind: MemoryKind, bytes: u64) {
        self.account(kind)
            .evicted_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one item of `kind` refused (or cut) because it did not fit.
    pub fn refused(&self, kind: MemoryKind) {
        self.account(kind).refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Every kind's figures.
    pub fn usage(&self) -> Vec<KindUsage> {
        MemoryKind::ALL
            .iter()
            .map(|&kind| {
                let a = self.account(kind);
                KindUsage {
                    kind,
                    share: a.share,
                    held: a.held.load(Ordering::Relaxed),
                    evicted_bytes: a.evicted_bytes.load(Ordering::Relaxed),
                    refused: a.refused.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// Bytes of one kind held by one value, given back when it drops (an analysed Go
/// program's tables, a binary read for analysis).
#[derive(Debug)]
pub struct Charge {
    budget: &'static MemoryBudget,
    kind: MemoryKind,
    bytes: u64,
}

impl Charge {
    /// Takes `bytes` of `kind` from `budget` if they fit (see
    /// [`MemoryBudget::try_charge`]).
    pub fn try_new(
        budget: &'static MemoryBudget,
        kind: MemoryKind,
        bytes: u64,
    ) -> Result<Self, OverBudget> {
        budget.try_charge(kind, bytes)?;
        Ok(Self {
            budget,
            kind,
            bytes,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.kind, self.bytes);
    }
}

static GLOBAL: OnceLock<MemoryBudget> = OnceLock::new();

/// Sets the process's budget (`--memory-budget`), before anything charges it; false
/// when it was set (or used) already.
pub fn configure(total: u64) -> bool {
    GLOBAL.set(MemoryBudget::new(total)).is_ok()
}

/// The process's budget: as configured, else [`DEFAULT_MEMORY_BUDGET`].
pub fn global() -> &'static MemoryBudget {
    GLOBAL.get_or_init(|| MemoryBudget::new(DEFAULT_MEMORY_BUDGET))
}

/// Parses a size: bytes, or a number with `K`, `M`, `G` (powers of 1024, `KiB`,
/// `MiB`, `GiB` too), e.g. `96M`, `128MiB`, `1.5G`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Bytes as people read them: `96.0 MiB`, `512 KiB`, `300 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the shares split the budget, charges within a share are taken and
    /// past it refused (nothing taken), and that eviction and refusals are counted.
    #[test]
    fn shares_charges_and_refusals() {
        let budget = MemoryBudget::new(96 << 20);
        let total: u64 = MemoryKind::ALL.iter().map(|&k| budget.share(k)).sum();
        assert_eq!(total, 96 << 20);
        let k = MemoryKind::Unwind;
        assert_eq!(budget.share(k), 6 << 20);
        assert_eq!(budget.quota(k), 3 << 20);
        assert!(budget.try_charge(k, 3 << 20).is_ok());
        let err = budget.try_charge(k, (3 << 20) + 1).unwrap_err();
        assert_eq!((err.kind, err.limit), (k, 3 << 20), "over the quota");
        assert!(budget.try_charge(k, 3 << 20).is_ok());
        let err = budget.try_charge(k, 1).unwrap_err();
        assert_eq!(err.limit, 6 << 20, "over the share");
        assert_eq!(budget.held(k), 6 << 20);
        assert_eq!(budget.shortfall(k, 100), 100);
        budget.evicted(k, 1 << 20);
        budget.refused(k);
        let usage = budget.usage()[k as usize];
        assert_eq!(usage.held, 5 << 20);
        assert_eq!(usage.evicted_bytes, 1 << 20);
        assert_eq!(usage.refused, 1);
        budget.release(k, u64::MAX);
        assert_eq!(budget.held(k), 0, "releases never underflow");
        budget.adjust(k, 0, 10);
        budget.adjust(k, 10, 4);
        assert_eq!(budget.held(k), 4);
    }

    /// Check that a charge holds its bytes while it lives and gives them back when it
    /// drops, and is refused past the quota.
    #[test]
    fn charges_give_back_on_drop() {
        let budget = MemoryBudget::leaked(96 << 20);
        let k = MemoryKind::Programs;
        let charge = Charge::try_new(budget, k, 5 << 20).unwrap();
        assert_eq!((budget.held(k), charge.bytes()), (5 << 20, 5 << 20));
        assert!(Charge::try_new(budget, k, 13 << 20).is_err());
        drop(charge);
        assert_eq!(budget.held(k), 0);
    }

    /// Check that sizes parse with and without units, and garbage does not.
    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("96M"), Some(96 << 20));
        assert_eq!(parse_size("96MiB"), Some(96 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("64 KiB"), Some(64 << 10));
        for bad in ["", "M", "12X", "-5M", "1e400", "NaN"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(human_bytes(96 << 20), "96.0 MiB");
        assert_eq!(human_bytes(300), "300 B");
    }
}
