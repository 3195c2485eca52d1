//! The forecast's cases, from typed limits and usage samples alone.

use std::{collections::HashMap, sync::Arc};

use super::*;
use crate::host::{
    cgroupfs::{CgroupDir, Controller, ControllerLimits, Version},
    sysinfo::{HostCounters, KernelLimits, Rlimit},
};

const MIB: u64 = 1 << 20;

fn dir(path: &str) -> CgroupDir {
    CgroupDir {
        version: Version::V1,
        path: path.into(),
    }
}

/// A process in cgroup `/leaky` (v1) whose parent `/` sets no limit, with `pids.max`
/// and a memory limit there when given.
fn limits(pids_max: Option<u64>, memory_max: Option<u64>) -> ProcessLimits {
    let controller = |max: Option<u64>, at: &str| ControllerLimits {
        own: Some(dir(at)),
        limited: max.map(|m| (dir(at), m)).into_iter().collect(),
    };
    ProcessLimits {
        pids: controller(pids_max, "/sys/fs/cgroup/pids/leaky"),
        memory: controller(memory_max, "/sys/fs/cgroup/memory/leaky"),
        nproc: Some(Rlimit::Limit(4096)),
    }
}

/// A host of 10,000 tasks out of `pid_max` 32768 with 8 GiB of 24 GiB in use, the
/// leaky cgroup holding `pids` tasks and `memory` bytes, user 1000 holding 500 tasks.
fn host(pids: u64, memory: u64) -> HostSample {
    HostSample {
        counters: HostCounters {
            tasks: Some(10_000),
            mem_total: Some(24 << 30),
            mem_available: Some(16 << 30),
        },
        kernel: KernelLimits {
            pid_max: Some(32_768),
            threads_max: Some(192_736),
            max_map_count: Some(65_530),
        },
        tasks_by_uid: Some(HashMap::from([(0, 9_000), (1000, 500)])),
        cgroup_usage: HashMap::from([
            (
                (Controller::Pids, Arc::from("/sys/fs/cgroup/pids/leaky")),
                pids,
            ),
            (
                (Controller::Memory, Arc::from("/sys/fs/cgroup/memory/leaky")),
                memory,
            ),
        ]),
    }
}

/// `n` samples a second apart of a process (uid `uid`) whose threads, mappings and
/// resident memory grow by `threads`, `2 * threads` and `rss` a second, plus `wobble`
/// bytes up and down on alternate samples.
fn course(n: usize, uid: u32, threads: f64, rss: f64, wobble: f64) -> Vec<(f64, ProcessUsage)> {
    (0..n)
        .map(|i| {
            let t = i as f64;
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            let usage = ProcessUsage {
                threads: (100.0 + threads * t) as u32,
                mappings: Some((300.0 + 2.0 * threads * t) as u32),
                rss_bytes: (64.0 * MIB as f64 + rss * t + sign * wobble) as u64,
                uid: Some(uid),
            };
            (t, usage)
        })
        .collect()
}

fn run(limits: &ProcessLimits, host: &HostSample, course: &[(f64, ProcessUsage)]) -> Exhaustion {
    let input = ForecastInput {
        pid: 42,
        limits,
        host,
        course,
    };
    exhaustion(&input, &ForecastPolicy::default())
}

fn of(e: &Exhaustion, limit: LimitKind) -> &Forecast {
    e.forecasts.iter().find(|f| f.limit == limit).unwrap()
}

/// Check that a thread leak of 2 a second in a cgroup of pids.max 600 holding 412 is
/// forecast to hit it first, in 94 s, with the cgroup as source, and that the host's
/// and the map count's forecasts come later in order.
#[test]
fn thread_leak_hits_the_cgroups_pids_max_first() {
    let e = run(
        &limits(Some(600), None),
        &host(412, 0),
        &course(15, 1000, 2.0, 0.0, 0.0),
    );
    let first = e.first().unwrap();
    assert_eq!(first.limit, LimitKind::CgroupPids);
    assert_eq!(&*first.source, "/sys/fs/cgroup/pids/leaky");
    assert_eq!((first.value, first.used), (Some(600), Some(412)));
    assert!((first.eta_s.unwrap() - 94.0).abs() < 1e-6, "{first:?}");
    assert_eq!(
        first.to_string(),
        "will hit pids.max (600) in ~1.6 min at +120/min"
    );
    let nproc = of(&e, LimitKind::Nproc);
    assert!((nproc.eta_s.unwrap() - (4096.0 - 500.0) / 2.0).abs() < 1e-6);
    assert_eq!(&*nproc.source, "/proc/42/limits");
    let maps = of(&e, LimitKind::MaxMapCount);
    let maps_used = 300 + 4 * 14;
    assert_eq!(maps.used, Some(maps_used));
    assert!((maps.eta_s.unwrap() - (65_530 - maps_used) as f64 / 4.0).abs() < 1e-6);
    let etas: Vec<f64> = e.forecasts.iter().filter_map(|f| f.eta_s.ok()).collect();
    assert!(etas.windows(2).all(|w| w[0] <= w[1]), "{etas:?}");
    assert_eq!(
        of(&e, LimitKind::CgroupMemory(Version::V1)).eta_s,
        Err(NoForecast::NoLimit)
    );
    assert_eq!(
        of(&e, LimitKind::HostMemory).eta_s,
        Err(NoForecast::NotGrowing(Resource::Memory))
    );
}

/// Check that a goroutine leak (threads flat) whose memory grows 1 MiB a second in a
/// cgroup limited to 256 MiB holding 200 MiB is forecast to hit the memory limit in
/// 56 s, and that the thread limits say threads are not growing.
#[test]
fn memory_growth_hits_the_cgroups_memory_limit() {
    let e = run(
        &limits(None, Some(256 * MIB)),
        &host(10, 200 * MIB),
        &course(15, 0, 0.0, MIB as f64, 0.0),
    );
    let first = e.first().unwrap();
    assert_eq!(first.limit, LimitKind::CgroupMemory(Version::V1));
    assert_eq!(first.limit.name(), "memory.limit_in_bytes");
    assert!((first.eta_s.unwrap() - 56.0).abs() < 1e-6, "{first:?}");
    assert_eq!(
        first.to_string(),
        "will hit memory.limit_in_bytes (256 MiB) in ~56 s at +60 MiB/min"
    );
    assert_eq!(
        of(&e, LimitKind::CgroupPids).eta_s,
        Err(NoForecast::NoLimit)
    );
    assert_eq!(
        of(&e, LimitKind::PidMax).eta_s,
        Err(NoForecast::NotGrowing(Resource::Tasks))
    );
    assert_eq!(
        of(&e, LimitKind::Nproc).eta_s,
        Err(NoForecast::NotEnforced),
        "root"
    );
    let host_memory = of(&e, LimitKind::HostMemory);
    assert!((host_memory.eta_s.unwrap() - (16u64 << 30) as f64 / MIB as f64).abs() < 1e-6);
}

/// Check that memory rising by 0.6 MiB a second under swings of 4 MiB gets no forecast
/// and says it is too noisy, which is then the process's reason; that too few samples
/// say so; and that a limit already reached is reached now.
#[test]
fn noise_few_samples_and_reached_limits() {
    let noisy = run(
        &limits(None, Some(256 * MIB)),
        &host(10, 200 * MIB),
        &course(15, 0, 0.0, 0.6 * MIB as f64, 4.0 * MIB as f64),
    );
    assert_eq!(noisy.first(), None);
    let closest = noisy.closest().unwrap();
    assert!(
        matches!(
            closest.eta_s,
            Err(NoForecast::TooNoisy {
                resource: Resource::Memory,
                ..
            })
        ),
        "{closest:?}"
    );
    let said = noisy.to_string();
    assert!(
        said.starts_with("no exhaustion forecast: memory.limit_in_bytes: memory trend too noisy"),
        "{said}"
    );
    let few = run(
        &limits(Some(600), None),
        &host(412, 0),
        &course(3, 1000, 2.0, 0.0, 0.0),
    );
    assert_eq!(
        of(&few, LimitKind::CgroupPids).eta_s,
        Err(NoForecast::TooFewSamples(3))
    );
    let reached = run(
        &limits(Some(600), None),
        &host(600, 0),
        &course(3, 1000, 2.0, 0.0, 0.0),
    );
    assert_eq!(reached.first().unwrap().eta_s, Ok(0.0));
    assert_eq!(
        reached.first().unwrap().to_string(),
        "has hit pids.max (600)"
    );
}

/// Check that the tightest of a cgroup and its ancestor is the one with the least left,
/// not the smallest limit, and that a cgroup whose usage was not read is not guessed.
#[test]
fn tightest_ancestor_and_unread_usage() {
    let mut l = limits(Some(1000), None);
    l.pids.limited.push((dir("/sys/fs/cgroup/pids"), 5000));
    let mut h = host(400, 0);
    h.cgroup_usage
        .insert((Controller::Pids, Arc::from("/sys/fs/cgroup/pids")), 4800);
    let e = run(&l, &h, &course(15, 1000, 2.0, 0.0, 0.0));
    let pids = of(&e, LimitKind::CgroupPids);
    assert_eq!(
        (&*pids.source, pids.value),
        ("/sys/fs/cgroup/pids", Some(5000))
    );
    assert!((pids.eta_s.unwrap() - 100.0).abs() < 1e-6);
    h.cgroup_usage.clear();
    let e = run(&l, &h, &course(15, 1000, 2.0, 0.0, 0.0));
    assert!(matches!(
        of(&e, LimitKind::CgroupPids).eta_s,
        Err(NoForecast::Unknown(_))
    ));
    let mut partial = host(400, 0);
    partial.tasks_by_uid = None;
    let e = run(
        &limits(None, None),
        &partial,
        &course(15, 1000, 2.0, 0.0, 0.0),
    );
    assert!(matches!(
        of(&e, LimitKind::Nproc).eta_s,
        Err(NoForecast::Unknown(_))
    ));
}

/// Check that a steady process (nothing grows) gets no forecast anywhere and says
/// nothing is growing.
#[test]
fn steady_process_gets_no_forecast() {
    let e = run(
        &limits(Some(600), Some(256 * MIB)),
        &host(412, 200 * MIB),
        &course(30, 1000, 0.0, 0.0, 0.0),
    );
    assert_eq!(e.first(), None);
    assert!(e.forecasts.iter().all(|f| f.eta_s.is_err()));
    assert_eq!(
        e.closest().unwrap().eta_s,
        Err(NoForecast::NotGrowing(Resource::Memory)),
        "memory first among what does not grow"
    );
}
