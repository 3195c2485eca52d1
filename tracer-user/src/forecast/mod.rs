//! When a leak breaks its process: pure judgement of the limits a leaking process runs
//! into, beside the verdict that found the leak.
//!
//! For each limit (its cgroups' `pids.max` and memory limit, its user's
//! `RLIMIT_NPROC`, the host's `kernel.pid_max`, `kernel.threads-max`,
//! `vm.max_map_count` and available memory) the forecast takes how much of what the
//! limit counts is in use now (a cgroup's tasks, the host's, the user's, the process's
//! mappings, memory) and how fast the process's own use of it grew over the window (a
//! least-squares line through its threads, mappings or resident memory at each scan,
//! [`trend`]), and says when, at that rate, the limit is reached. The first limit
//! reached is the process's exhaustion.
//!
//! Honest by construction: no forecast for a process that does not leak (the summary
//! asks only for leaking ones), none for a limit that is not set ("no limit" is said),
//! none when what it counts is not growing, and none when the growth is too noisy to
//! extrapolate (the slope's standard error over a quarter of the slope: the time left
//! would be off by more than half at two standard errors); each says why.

pub mod limit;
pub mod render;
pub mod trend;

use std::sync::Arc;

use crate::{
    host::cgroupfs::Version,
    resources::{HostSample, ProcessLimits, ProcessUsage},
};

use self::trend::Trend;

/// Which limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKind {
    /// A cgroup's `pids.max` (v1 `pids` controller, or v2): the cgroup's tasks.
    CgroupPids,
    /// `kernel.pid_max`: every task holds a pid.
    PidMax,
    /// `kernel.threads-max`: the host's tasks.
    ThreadsMax,
    /// `RLIMIT_NPROC`: the tasks of the process's real user.
    Nproc,
    /// `vm.max_map_count`: the process's mappings (every thread stack is one).
    MaxMapCount,
    /// A cgroup's memory limit: `memory.max` (v2) or `memory.limit_in_bytes` (v1).
    CgroupMemory(Version),
    /// The host's memory: `MemAvailable` left.
    HostMemory,
}

/// What a limit counts, as the process's growth is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Threads (tasks): the process's thread count.
    Tasks,
    /// Memory mappings.
    Mappings,
    /// Memory, in bytes: the process's resident memory.
    Memory,
}

impl LimitKind {
    /// The limit's name, as the JSON `limit` and the metrics' `limit` label say it.
    pub fn name(self) -> &'static str {
        match self {
            Self::CgroupPids => "pids.max",
            Self::PidMax => "kernel.pid_max",
            Self::ThreadsMax => "kernel.threads-max",
            Self::Nproc => "RLIMIT_NPROC",
            Self::MaxMapCount => "vm.max_map_count",
            Self::CgroupMemory(Version::V2) => "memory.max",
            Self::CgroupMemory(Version::V1) => "memory.limit_in_bytes",
            Self::HostMemory => "MemAvailable",
        }
    }

    /// What the limit counts.
    pub fn resource(self) -> Resource {
        match self {
            Self::CgroupPids | Self::PidMax | Self::ThreadsMax | Self::Nproc => Resource::Tasks,
            Self::MaxMapCount => Resource::Mappings,
            Self::CgroupMemory(_) | Self::HostMemory => Resource::Memory,
        }
    }
}

impl Resource {
    /// What grows, in words.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tasks => "threads",
            Self::Mappings => "mappings",
            Self::Memory => "memory",
        }
    }
}

/// Why a limit has no forecast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoForecast {
    /// The limit is not set (`max`, `unlimited`).
    NoLimit,
    /// The limit does not apply (`RLIMIT_NPROC` to root).
    NotEnforced,
    /// The limit or what it counts could not be read; says which.
    Unknown(&'static str),
    /// Too few samples of the process's use over the window to fit a line.
    TooFewSamples(usize),
    /// What the limit counts did not grow in the process over the window.
    NotGrowing(Resource),
    /// It grew, but too unevenly to extrapolate: the rate per second and the slope's
    /// relative standard error.
    TooNoisy {
        resource: Resource,
        rate_per_s: f64,
        relative_error: f64,
    },
}

/// One limit's forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    pub limit: LimitKind,
    /// Where the limit was read: a cgroup's directory, a sysctl's or a `/proc` file.
    pub source: Arc<str>,
    /// The limit, in what it counts (tasks, mappings, bytes); `None` when not set.
    pub value: Option<u64>,
    /// What it counts now, where known.
    pub used: Option<u64>,
    /// The process's growth of what the limit counts, per second, when measured.
    pub rate_per_s: Option<f64>,
    /// Seconds until the limit is reached at that rate (0: reached now), or why not said.
    pub eta_s: Result<f64, NoForecast>,
}

/// Every limit a leaking process runs into, the first reached first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exhaustion {
    /// Limits with a forecast by time left, then the others.
    pub forecasts: Vec<Forecast>,
}

/// When a forecast is given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastPolicy {
    /// Samples of the process's use needed to fit a line.
    pub min_samples: usize,
    /// Slope over its standard error needed to call something growing at all.
    pub min_growth_t: f64,
    /// Largest relative standard error of the slope extrapolated.
    pub max_relative_error: f64,
}

impl Default for ForecastPolicy {
    fn default() -> Self {
        Self {
            min_samples: 4,
            min_growth_t: 2.0,
            max_relative_error: 0.25,
        }
    }
}

/// What the forecast of one process is made from: its limits (read once per window),
/// the host's and its cgroups' usage at the last scan, and the process's own use at
/// each sampled scan (seconds from the window start, oldest first).
#[derive(Clone, Copy, Debug)]
pub struct ForecastInput<'a> {
    pub pid: u32,
    pub limits: &'a ProcessLimits,
    pub host: &'a HostSample,
    pub course: &'a [(f64, ProcessUsage)],
}

/// Every limit's forecast for a leaking process, the first reached first.
pub fn exhaustion(input: &ForecastInput<'_>, policy: &ForecastPolicy) -> Exhaustion {
    let rates = Rates::measure(input.course, policy);
    let mut forecasts = limit::forecasts(input, &rates);
    forecasts.sort_by(|a, b| match (&a.eta_s, &b.eta_s) {
        (Ok(x), Ok(y)) => x.total_cmp(y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => std::cmp::Ordering::Equal,
    });
    Exhaustion { forecasts }
}

impl Exhaustion {
    /// The first limit reached, when any has a forecast.
    pub fn first(&self) -> Option<&Forecast> {
        self.forecasts.first().filter(|f| f.eta_s.is_ok())
    }

    /// When no limit has a forecast, the limit whose reason says most: growth too noisy
    /// to extrapolate before too few samples, before nothing growing (memory first),
    /// before a limit not read, not enforced or not set.
    pub fn closest(&self) -> Option<&Forecast> {
        if self.first().is_some() {
            return None;
        }
        // Among limits whose count is not growing, memory first: a goroutine leak grows
        // no thread count, and whether its memory grows is what people ask.
        let rank = |f: &&Forecast| match f.eta_s {
            Err(NoForecast::TooNoisy { .. }) => (0, 0),
            Err(NoForecast::TooFewSamples(_)) => (1, 0),
            Err(NoForecast::NotGrowing(Resource::Memory)) => (2, 0),
            Err(NoForecast::NotGrowing(_)) => (2, 1),
            Err(NoForecast::Unknown(_)) => (3, 0),
            Err(NoForecast::NotEnforced) => (4, 0),
            Err(NoForecast::NoLimit) | Ok(_) => (5, 0),
        };
        self.forecasts.iter().min_by_key(rank)
    }
}

/// The process's growth of each resource over the window, or why it is not told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub tasks: Result<f64, NoForecast>,
    pub mappings: Result<f64, NoForecast>,
    pub memory: Result<f64, NoForecast>,
}

impl Rates {
    /// Fits each resource's course and judges the fit.
    pub fn measure(course: &[(f64, ProcessUsage)], policy: &ForecastPolicy) -> Self {
        let series = |resource: Resource, of: &dyn Fn(&ProcessUsage) -> Option<f64>| {
            let samples: Vec<(f64, f64)> = course
                .iter()
                .filter_map(|(t, u)| Some((*t, of(u)?)))
                .collect();
            rate_of(resource, &samples, policy)
        };
        Self {
            tasks: series(Resource::Tasks, &|u| Some(f64::from(u.threads))),
            mappings: series(Resource::Mappings, &|u| u.mappings.map(f64::from)),
            memory: series(Resource::Memory, &|u| Some(u.rss_bytes as f64)),
        }
    }

    /// The rate of `resource`.
    pub fn of(&self, resource: Resource) -> Result<f64, NoForecast> {
        match resource {
            Resource::Tasks => self.tasks,
            Resource::Mappings => self.mappings,
            Resource::Memory => self.memory,
        }
    }
}

/// The growth per second of one resource's samples, if it grows clearly enough to
/// extrapolate.
fn rate_of(
    resource: Resource,
    samples: &[(f64, f64)],
    policy: &ForecastPolicy,
) -> Result<f64, NoForecast> {
    if samples.len() < policy.min_samples {
        return Err(NoForecast::TooFewSamples(samples.len()));
    }
    let trend = Trend::fit(samples).ok_or(NoForecast::TooFewSamples(samples.len()))?;
    let growing = trend.slope > 0.0
        && (trend.slope_error == 0.0 || trend.slope / trend.slope_error >= policy.min_growth_t);
    if !growing {
        return Err(NoForecast::NotGrowing(resource));
    }
    let relative_error = trend.relative_error();
    if relative_error > policy.max_relative_error {
        return Err(NoForecast::TooNoisy {
            resource,
            rate_per_s: trend.slope,
            relative_error,
        });
    }
    Ok(trend.slope)
}

#[cfg(test)]
mod tests;
