//! Source of the limits on every process with waiters, and of what they count now.
//!
//! What a leak will run into: its cgroups' `pids.max` and memory limits (the process's
//! own cgroup and every ancestor, v1 or v2), its `RLIMIT_NPROC`, the host's
//! `kernel.pid_max`, `kernel.threads-max` and `vm.max_map_count`. Limits change rarely:
//! each process's are read once per window (a cgroup's ancestors once per window for
//! every process in it), the sysctls likewise. What they count changes all the time,
//! but only its latest value is needed (the growth comes from the process's own
//! records, see [`crate::resources::ProcessUsage`]): at each scan, the host's task
//! count and memory (two small files) and each limited cgroup's usage (one or two files
//! per cgroup, not per process). Reading one process's limits is a step of its
//! analysis ([`Step::Limits`]): a bug it reaches costs that process, which is then
//! reported unreadable, not the scan.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    host::{
        cgroupfs::{CgroupDir, CgroupMounts, Controller, ControllerLimits, read_usage},
        procfs::read_text,
        sysinfo::{HostCounters, KernelLimits, read_nproc_limit},
    },
    isolate::{Faults, Step},
    model::ProcessKey,
    resources::{HostSample, ProcessLimits, ResourceScan},
};

/// Limits are read again after this long when no window says otherwise.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Largest `/proc/PID/cgroup` read (see [`crate::host::cgroup`]).
const MAX_CGROUP_FILE: u64 = 64 * 1024;
/// The controllers whose limits a leak runs into.
const CONTROLLERS: [Controller; 2] = [Controller::Pids, Controller::Memory];

/// The limits above one cgroup directory, by controller, innermost first.
type CgroupChain = Vec<(CgroupDir, u64)>;

/// Something read at some time, kept until it is `refresh` old.
struct Dated<T> {
    value: T,
    read_at: Instant,
}

impl<T> Dated<T> {
    fn now(value: T, read_at: Instant) -> Self {
        Self { value, read_at }
    }
}

/// Reads limits once per window and what they count at every scan.
pub struct LimitSource {
    mounts: Dated<CgroupMounts>,
    kernel: Dated<KernelLimits>,
    /// Each process's limits.
    processes: HashMap<ProcessKey, Dated<Arc<ProcessLimits>>>,
    /// The limits above each cgroup directory, by controller (shared by its processes).
    cgroups: HashMap<(Controller, Arc<str>), Dated<CgroupChain>>,
    /// How long what was read is kept.
    refresh: Duration,
    /// The processes whose analysis failed (shared with the sources and the census).
    faults: Arc<Faults>,
}

impl LimitSource {
    /// A source that records a process whose limits cannot be read in `faults`.
    pub fn new(faults: Arc<Faults>) -> Self {
        let now = Instant::now();
        Self {
            mounts: Dated::now(CgroupMounts::discover(), now),
            kernel: Dated::now(KernelLimits::read(), now),
            processes: HashMap::new(),
            cgroups: HashMap::new(),
            refresh: DEFAULT_REFRESH,
            faults,
        }
    }

    /// Limits are read again once they are `refresh` old: once per window (a
    /// diagnosis's whole duration, the daemon's `--window`).
    pub fn set_refresh(&mut self, refresh: Duration) {
        self.refresh = refresh;
    }

    /// The limits of `processes` (those with waiters), read when not known or old, the
    /// usage of every cgroup limiting them and the host's counters, now; `tasks_by_uid`
    /// is what the thread source counted.
    pub fn scan<'a>(
        &mut self,
        processes: impl IntoIterator<Item = &'a ProcessKey>,
        tasks_by_uid: Option<HashMap<u32, u64>>,
    ) -> ResourceScan {
        let now = Instant::now();
        self.refresh_host(now);
        let refresh = self.refresh;
        self.cgroups
            .retain(|_, dated| now.duration_since(dated.read_at) < refresh);
        let mut limits = HashMap::new();
        let faults = self.faults.clone();
        for &process in processes {
            // A process whose limits cannot be read has none (and is unreadable).
            if let Ok(read) = faults.guard(process, Step::Limits, || self.limits_of(process, now)) {
                limits.insert(process, read);
            }
        }
        self.processes.retain(|p, _| limits.contains_key(p));
        let host = HostSample {
            counters: HostCounters::read(),
            kernel: self.kernel.value,
            tasks_by_uid,
            cgroup_usage: cgroup_usage(limits.values()),
        };
        ResourceScan { host, limits }
    }

    /// Reads the mounts and sysctls again when old.
    fn refresh_host(&mut self, now: Instant) {
        if now.duration_since(self.kernel.read_at) >= self.refresh {
            self.kernel = Dated::now(KernelLimits::read(), now);
            self.mounts = Dated::now(CgroupMounts::discover(), now);
        }
    }

    /// A process's limits, as read within the window or now.
    fn limits_of(&mut self, process: ProcessKey, now: Instant) -> Arc<ProcessLimits> {
        if let Some(known) = self.processes.get(&process)
            && now.duration_since(known.read_at) < self.refresh
        {
            return known.value.clone();
        }
        let pid = process.pid;
        let cgroup_file = read_text(Path::new(&format!("/proc/{pid}/cgroup")), MAX_CGROUP_FILE)
            .unwrap_or_default();
        let [pids, memory] = CONTROLLERS.map(|c| self.controller_limits(&cgroup_file, c, now));
        let value = Arc::new(ProcessLimits {
            pids,
            memory,
            nproc: read_nproc_limit(pid),
        });
        self.processes
            .insert(process, Dated::now(value.clone(), now));
        value
    }

    /// What limits a process (whose `/proc/PID/cgroup` says `cgroup_file`) through
    /// `controller`, its cgroup's ancestors read once per window.
    fn controller_limits(
        &mut self,
        cgroup_file: &str,
        controller: Controller,
        now: Instant,
    ) -> ControllerLimits {
        let mounts = &self.mounts.value;
        let Some(own) = mounts.own_dir(cgroup_file, controller) else {
            return ControllerLimits::default();
        };
        let limited = self
            .cgroups
            .entry((controller, own.path.clone()))
            .or_insert_with(|| Dated::now(mounts.limits_above(&own, controller), now))
            .value
            .clone();
        ControllerLimits {
            own: Some(own),
            limited,
        }
    }
}

/// What every cgroup that limits one of these processes holds now, each read once.
fn cgroup_usage<'a>(
    limits: impl Iterator<Item = &'a Arc<ProcessLimits>>,
) -> HashMap<(Controller, Arc<str>), u64> {
    let mut usage = HashMap::new();
    for process in limits {
        for controller in CONTROLLERS {
            for (dir, _) in &process.of(controller).limited {
                let key = (controller, dir.path.clone());
                if usage.contains_key(&key) {
                    continue;
                }
                if let Some(used) = read_usage(dir, controller) {
                    usage.insert(key, used);
                }
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a process's limits are read once and kept (the same `Arc`) until
    /// they are a window old, that a process no longer with waiters is forgotten, and
    /// that the host's counters are read at every scan.
    #[test]
    fn limits_are_read_once_per_window() {
        let own = ProcessKey {
            pid: std::process::id(),
            start_mono_ns: 1,
            exec_id: 1,
        };
        let mut source = LimitSource::new(Arc::default());
        let first = source.scan([&own], None);
        let again = source.scan([&own], Some(HashMap::from([(0, 3)])));
        assert!(Arc::ptr_eq(&first.limits[&own], &again.limits[&own]));
        assert_eq!(again.host.tasks_by_uid, Some(HashMap::from([(0, 3)])));
        assert!(again.host.counters.tasks.is_some());
        assert!(first.limits[&own].nproc.is_some());
        source.set_refresh(Duration::ZERO);
        let fresh = source.scan([&own], None);
        assert!(!Arc::ptr_eq(&first.limits[&own], &fresh.limits[&own]));
        source.scan([], None);
        assert!(source.processes.is_empty());
    }
}
