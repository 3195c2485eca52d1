//! Each limit's forecast: where its value and what it counts come from, and the time
//! left at the process's rate. One small function per kind of limit.

use std::sync::Arc;

use super::{Forecast, ForecastInput, LimitKind, NoForecast, Rates};
use crate::{
    host::{
        cgroupfs::{CgroupDir, Controller, ControllerLimits},
        sysinfo::Rlimit,
    },
    resources::HostSample,
};

/// Where the sysctls and `/proc` values come from.
const PID_MAX: &str = "/proc/sys/kernel/pid_max";
const THREADS_MAX: &str = "/proc/sys/kernel/threads-max";
const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";
const MEMINFO: &str = "/proc/meminfo";

/// Every limit's forecast, in no particular order.
pub fn forecasts(input: &ForecastInput<'_>, rates: &Rates) -> Vec<Forecast> {
    let host = input.host;
    let kernel = host.kernel;
    let tasks = host.counters.tasks;
    vec![
        cgroup(input, Controller::Pids, rates),
        sysctl(LimitKind::PidMax, PID_MAX, kernel.pid_max, tasks, rates),
        sysctl(
            LimitKind::ThreadsMax,
            THREADS_MAX,
            kernel.threads_max,
            tasks,
            rates,
        ),
        nproc(input, rates),
        sysctl(
            LimitKind::MaxMapCount,
            MAX_MAP_COUNT,
            kernel.max_map_count,
            latest(input).and_then(|u| u.mappings).map(u64::from),
            rates,
        ),
        cgroup(input, Controller::Memory, rates),
        host_memory(host, rates),
    ]
}

/// The process's use at the last sample.
fn latest<'a>(input: &ForecastInput<'a>) -> Option<&'a crate::resources::ProcessUsage> {
    input.course.last().map(|(_, usage)| usage)
}

/// The time left to `value` from `used` at the rate of what `limit` counts.
fn forecast(
    limit: LimitKind,
    source: Arc<str>,
    value: Option<u64>,
    used: Option<u64>,
    rates: &Rates,
) -> Forecast {
    let rate = rates.of(limit.resource());
    let eta_s = match (value, used) {
        (None, _) => Err(NoForecast::NoLimit),
        (Some(_), None) => Err(NoForecast::Unknown("what it counts could not be read")),
        (Some(value), Some(used)) if used >= value => Ok(0.0),
        (Some(value), Some(used)) => rate.map(|r| (value - used) as f64 / r),
    };
    Forecast {
        limit,
        source,
        value,
        used,
        rate_per_s: rate.ok(),
        eta_s,
    }
}

/// A host-wide limit read from a sysctl.
fn sysctl(
    limit: LimitKind,
    path: &str,
    value: Option<u64>,
    used: Option<u64>,
    rates: &Rates,
) -> Forecast {
    let mut f = forecast(limit, path.into(), value, used, rates);
    if value.is_none() {
        f.eta_s = Err(NoForecast::Unknown("the sysctl could not be read"));
    }
    f
}

/// The tightest of the process's cgroups' limits through `controller`: the one with
/// the least left.
fn cgroup(input: &ForecastInput<'_>, controller: Controller, rates: &Rates) -> Forecast {
    let ControllerLimits { own, limited } = input.limits.of(controller);
    let version = own
        .as_ref()
        .map_or(crate::host::cgroupfs::Version::V2, |d| d.version);
    let kind = match controller {
        Controller::Pids => LimitKind::CgroupPids,
        Controller::Memory => LimitKind::CgroupMemory(version),
    };
    let Some(own) = own else {
        let mut f = forecast(kind, "".into(), None, None, rates);
        f.eta_s = Err(NoForecast::Unknown(
            "no cgroup of the process shows the controller",
        ));
        return f;
    };
    let usage = |dir: &CgroupDir| {
        let key = (controller, dir.path.clone());
        input.host.cgroup_usage.get(&key).copied()
    };
    let tightest = limited
        .iter()
        .min_by_key(|(dir, max)| usage(dir).map_or(u64::MAX, |used| max.saturating_sub(used)));
    match tightest {
        Some((dir, max)) => forecast(kind, dir.path.clone(), Some(*max), usage(dir), rates),
        None => forecast(kind, own.path.clone(), None, None, rates),
    }
}

/// The user's `RLIMIT_NPROC`, against the tasks of the process's real uid (root's are
/// not limited).
fn nproc(input: &ForecastInput<'_>, rates: &Rates) -> Forecast {
    let uid = latest(input).and_then(|u| u.uid);
    let source: Arc<str> = format!("/proc/{}/limits", input.pid).into();
    let limit = match input.limits.nproc {
        Some(Rlimit::Limit(n)) => Some(n),
        Some(Rlimit::Unlimited) | None => None,
    };
    let used = uid.and_then(|uid| input.host.tasks_by_uid.as_ref()?.get(&uid).copied());
    let mut f = forecast(LimitKind::Nproc, source, limit, used, rates);
    f.eta_s = match (uid, input.limits.nproc, &input.host.tasks_by_uid) {
        (Some(0), ..) => Err(NoForecast::NotEnforced),
        (None, ..) | (_, None, _) => Err(NoForecast::Unknown(
            "the process's uid or limits could not be read",
        )),
        (_, Some(Rlimit::Limit(_)), None) => Err(NoForecast::Unknown(
            "the user's tasks are not all listed (/proc source watching some --pid)",
        )),
        _ => f.eta_s,
    };
    f
}

/// The host's memory: `MemTotal` less `MemAvailable` in use.
fn host_memory(host: &HostSample, rates: &Rates) -> Forecast {
    let counters = host.counters;
    let used = counters
        .mem_total
        .zip(counters.mem_available)
        .map(|(total, available)| total.saturating_sub(available));
    let mut f = forecast(
        LimitKind::HostMemory,
        MEMINFO.into(),
        counters.mem_total,
        used,
        rates,
    );
    if counters.mem_total.is_none() {
        f.eta_s = Err(NoForecast::Unknown("/proc/meminfo could not be read"));
    }
    f
}
