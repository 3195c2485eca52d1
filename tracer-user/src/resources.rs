//! What blocked waiters and their processes hold, and the limits on it: the vocabulary
//! the sources (which read it), the census and history (which carry it), the forecast
//! (which judges it) and the sinks (which render it) share. Like [`crate::model`], it
//! sits below every stage.
//!
//! - [`StackBytes`]: the stack memory waiters pin (a goroutine's stack, a thread's stack
//!   mapping), summed per site and per process.
//! - [`ProcessUsage`]: what one process holds at one scan of what the kernel limits
//!   (tasks, mappings, resident memory), from the thread source's process records.
//! - [`ProcessLimits`]: the limits on one process (its cgroups' `pids` and `memory`
//!   limits, its `RLIMIT_NPROC`), read once per process per window.
//! - [`HostSample`]: the host-wide limits and counters, and each limited cgroup's usage,
//!   read at every scan for the processes that have waiters.

use std::{collections::HashMap, sync::Arc};

use tracer_common::{ProcessRecord, UNKNOWN_U32};

use crate::{
    host::{
        cgroupfs::{Controller, ControllerLimits},
        sysinfo::{HostCounters, KernelLimits, Rlimit},
    },
    model::ProcessKey,
};

/// Stack memory pinned by blocked waiters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackBytes {
    /// Waiters whose stack is counted (a thread whose stack mapping is not recognisably
    /// a thread stack is not).
    pub stacks: u32,
    /// Their stacks' sizes: a goroutine's `g.stack.hi - g.stack.lo`, a thread's stack
    /// mapping (address space reserved for it).
    pub reserved: u64,
    /// Threads: how much of those mappings is resident; `None` when not known for every
    /// stack counted (goroutine stacks are Go heap memory, resident as the heap is).
    pub resident: Option<u64>,
}

impl StackBytes {
    /// One thread's stack mapping of `reserved` bytes, `resident` of them resident.
    pub fn thread(reserved: u64, resident: Option<u64>) -> Self {
        Self {
            stacks: 1,
            reserved,
            resident,
        }
    }

    /// Goroutine stacks: `stacks` of them, `reserved` bytes together.
    pub fn goroutines(stacks: u32, reserved: u64) -> Self {
        Self {
            stacks,
            reserved,
            resident: None,
        }
    }

    /// Adds `other`'s stacks (nothing when it counts none).
    pub fn add(&mut self, other: StackBytes) {
        if other.stacks == 0 {
            return;
        }
        self.resident = match (self.stacks, self.resident, other.resident) {
            (0, _, resident) => resident,
            (_, Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.stacks += other.stacks;
        self.reserved += other.reserved;
    }

    /// The sum of `parts`.
    pub fn sum(parts: impl IntoIterator<Item = StackBytes>) -> Self {
        let mut total = Self::default();
        for part in parts {
            total.add(part);
        }
        total
    }
}

/// What one process holds at one scan of what the kernel limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    /// Its threads: each one a task, a pid.
    pub threads: u32,
    /// Its memory mappings, when known.
    pub mappings: Option<u32>,
    /// Its resident memory, in bytes.
    pub rss_bytes: u64,
    /// Its real uid, when known.
    pub uid: Option<u32>,
}

impl ProcessUsage {
    /// What a thread source's process record says.
    pub fn of(record: &ProcessRecord) -> Self {
        let known = |v: u32| (v != UNKNOWN_U32).then_some(v);
        Self {
            threads: record.nr_threads,
            mappings: known(record.map_count),
            rss_bytes: record.rss_pages.saturating_mul(page_size()),
            uid: known(record.uid),
        }
    }
}

/// Samples a [`UsageSeries`] keeps at most: a line through 64 points is as good as
/// through a thousand, and a daemon's window of thousands of processes stays small.
pub const MAX_USAGE_SAMPLES: usize = 64;

/// One process's use at one scan, in 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageSample {
    /// The scan's number.
    pub scan: u32,
    pub threads: u32,
    /// [`UNKNOWN_U32`] when not known.
    pub mappings: u32,
    /// Resident memory in KiB (4 TiB at most).
    pub rss_kib: u32,
}

impl UsageSample {
    fn of(scan: usize, usage: &ProcessUsage) -> Self {
        Self {
            scan: scan as u32,
            threads: usage.threads,
            mappings: usage.mappings.unwrap_or(UNKNOWN_U32),
            rss_kib: u32::try_from(usage.rss_bytes / 1024).unwrap_or(u32::MAX),
        }
    }

    /// The use this sample keeps (the uid is not kept per sample).
    pub fn usage(&self, uid: Option<u32>) -> ProcessUsage {
        ProcessUsage {
            threads: self.threads,
            mappings: (self.mappings != UNKNOWN_U32).then_some(self.mappings),
            rss_bytes: u64::from(self.rss_kib) * 1024,
            uid,
        }
    }
}

/// A process's use over the window, at most [`MAX_USAGE_SAMPLES`] samples evenly
/// spread: every scan while they fit, then every second scan, every fourth... (scans
/// whose number is a multiple of the stride), and always the newest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageSeries {
    samples: std::collections::VecDeque<UsageSample>,
    stride: u32,
}

impl Default for UsageSeries {
    fn default() -> Self {
        Self {
            samples: std::collections::VecDeque::new(),
            stride: 1,
        }
    }
}

impl UsageSeries {
    /// Adds the use at scan `scan` (scans come in order).
    pub fn push(&mut self, scan: usize, usage: &ProcessUsage) {
        let stride = self.stride;
        // The newest sample was kept only for being the newest.
        if self.samples.back().is_some_and(|s| s.scan % stride != 0) {
            self.samples.pop_back();
        }
        self.samples.push_back(UsageSample::of(scan, usage));
        if self.samples.len() > MAX_USAGE_SAMPLES {
            self.stride *= 2;
            let (stride, newest) = (self.stride, scan as u32);
            self.samples
                .retain(|s| s.scan % stride == 0 || s.scan == newest);
        }
    }

    /// Drops the samples of scans before `first` (out of the window).
    pub fn trim(&mut self, first: usize) {
        while self
            .samples
            .front()
            .is_some_and(|s| (s.scan as usize) < first)
        {
            self.samples.pop_front();
        }
    }

    pub fn samples(&self) -> impl Iterator<Item = &UsageSample> {
        self.samples.iter()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The host's page size, in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// The limits on one process, read once per process per window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Its cgroups' `pids.max` (v1 `pids` controller or v2).
    pub pids: ControllerLimits,
    /// Its cgroups' memory limits (`memory.max`, v1 `memory.limit_in_bytes`).
    pub memory: ControllerLimits,
    /// Its `RLIMIT_NPROC` soft limit (`None`: could not be read).
    pub nproc: Option<Rlimit>,
}

impl ProcessLimits {
    /// The limits through `controller`.
    pub fn of(&self, controller: Controller) -> &ControllerLimits {
        match controller {
            Controller::Pids => &self.pids,
            Controller::Memory => &self.memory,
        }
    }
}

/// The host-wide limits and counters at one scan, and the usage of every cgroup that
/// limits a watched process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSample {
    /// Tasks and memory on the host, read at every scan.
    pub counters: HostCounters,
    /// The sysctls, read once per window.
    pub kernel: KernelLimits,
    /// Tasks per real uid over every process on the host; `None` when the thread
    /// source did not list them all (`/proc` watching some `--pid`s).
    pub tasks_by_uid: Option<HashMap<u32, u64>>,
    /// What each limited cgroup holds now (`pids.current`, or memory in use), by its
    /// controller and directory.
    pub cgroup_usage: HashMap<(Controller, Arc<str>), u64>,
}

/// What one scan read of limits and usage beyond the process records.
#[derive(Clone, Debug, Default)]
pub struct ResourceScan {
    pub host: HostSample,
    /// The limits of the processes with waiters (the same `Arc` until read again).
    pub limits: HashMap<ProcessKey, Arc<ProcessLimits>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that stack bytes add up, that a waiter whose stack is not counted changes
    /// nothing, and that resident bytes are known only while known for every stack.
    #[test]
    fn stack_bytes_add_up() {
        let total = StackBytes::sum([
            StackBytes::thread(8 << 20, Some(16 << 10)),
            StackBytes::default(),
            StackBytes::thread(8 << 20, Some(8 << 10)),
        ]);
        assert_eq!(
            total,
            StackBytes {
                stacks: 2,
                reserved: 16 << 20,
                resident: Some(24 << 10),
            }
        );
        let mut mixed = total;
        mixed.add(StackBytes::thread(1 << 20, None));
        assert_eq!(
            (mixed.stacks, mixed.reserved, mixed.resident),
            (3, 17 << 20, None)
        );
        let goroutines = StackBytes::sum([StackBytes::goroutines(3, 3 * 8192)]);
        assert_eq!(goroutines.resident, None);
        assert_eq!(goroutines.reserved, 24576);
    }

    /// Check that a long series keeps at most its cap of samples, evenly spread over
    /// the scans with the newest always in, that trimming drops what left the window,
    /// and that a sample gives back what was pushed.
    #[test]
    fn usage_series_stays_small_and_even() {
        let mut series = UsageSeries::default();
        let usage = |n: u32| ProcessUsage {
            threads: n,
            mappings: Some(2 * n),
            rss_bytes: u64::from(n) * 4096,
            uid: Some(7),
        };
        for scan in 0..1000 {
            series.push(scan, &usage(scan as u32));
            assert!(series.len() <= MAX_USAGE_SAMPLES);
        }
        let scans: Vec<u32> = series.samples().map(|s| s.scan).collect();
        assert_eq!(scans.last(), Some(&999));
        let gaps: Vec<u32> = scans.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps[..gaps.len() - 1].iter().all(|&g| g == gaps[0]),
            "{gaps:?}"
        );
        assert!(scans.len() >= MAX_USAGE_SAMPLES / 2, "{}", scans.len());
        series.trim(900);
        assert!(series.samples().all(|s| s.scan >= 900));
        let last = series.samples().last().unwrap();
        assert_eq!(last.usage(Some(7)), usage(999));
        let unknown = UsageSample::of(1, &ProcessUsage::default());
        assert_eq!(unknown.usage(None).mappings, None);
    }

    /// Check that a record's unknown mapping count and uid stay unknown, and resident
    /// pages become bytes.
    #[test]
    fn usage_of_a_record() {
        let record = ProcessRecord {
            nr_threads: 12,
            map_count: UNKNOWN_U32,
            uid: 1000,
            rss_pages: 3,
            ..ProcessRecord::default()
        };
        let usage = ProcessUsage::of(&record);
        assert_eq!(usage.threads, 12);
        assert_eq!(usage.mappings, None);
        assert_eq!(usage.uid, Some(1000));
        assert_eq!(usage.rss_bytes, 3 * page_size());
    }
}
