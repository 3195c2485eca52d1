//! Host-wide counters and limits the kernel publishes in `/proc`, and a process's
//! resource limits: what a leak of threads or memory runs into besides its cgroup's
//! limits. Every task (thread) holds a pid (`kernel.pid_max`) and counts against
//! `kernel.threads-max` and its real user's `RLIMIT_NPROC`; every mapping (a thread
//! stack is one) against `vm.max_map_count`; memory against what the host has.

use std::path::Path;

/// Largest `/proc` file read here (`meminfo` and `limits` are about 1.5 KiB).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The sysctls that limit what a leak can take, read together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLimits {
    /// `kernel.pid_max`: pids (one per task) handed out at most.
    pub pid_max: Option<u64>,
    /// `kernel.threads-max`: tasks on the host at most.
    pub threads_max: Option<u64>,
    /// `vm.max_map_count`: mappings per process at most.
    pub max_map_count: Option<u64>,
}

impl KernelLimits {
    pub fn read() -> Self {
        let sysctl = |name: &str| read_bounded(Path::new(name)).and_then(|t| t.trim().parse().ok());
        Self {
            pid_max: sysctl("/proc/sys/kernel/pid_max"),
            threads_max: sysctl("/proc/sys/kernel/threads-max"),
            max_map_count: sysctl("/proc/sys/vm/max_map_count"),
        }
    }
}

/// What the host holds now of what the kernel limits host-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounters {
    /// Tasks (threads, kernel threads included) on the host: `/proc/loadavg`'s total.
    pub tasks: Option<u64>,
    /// `MemTotal`, in bytes.
    pub mem_total: Option<u64>,
    /// `MemAvailable`: what can be allocated without swapping, in bytes.
    pub mem_available: Option<u64>,
}

impl HostCounters {
    pub fn read() -> Self {
        let tasks = read_bounded(Path::new("/proc/loadavg")).and_then(|t| parse_loadavg_tasks(&t));
        let meminfo = read_bounded(Path::new("/proc/meminfo")).unwrap_or_default();
        Self {
            tasks,
            mem_total: meminfo_bytes(&meminfo, "MemTotal:"),
            mem_available: meminfo_bytes(&meminfo, "MemAvailable:"),
        }
    }
}

/// The total of `/proc/loadavg`'s "running/total" field: every task on the host.
fn parse_loadavg_tasks(text: &str) -> Option<u64> {
    text.split_ascii_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// A `meminfo` line's value ("MemTotal:   24576000 kB"), in bytes.
fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix(key))?;
    let mut fields = line.split_ascii_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// A soft resource limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rlimit {
    Unlimited,
    Limit(u64),
}

/// A process's `RLIMIT_NPROC` soft limit, from `/proc/PID/limits`; `None` when it
/// cannot be read.
pub fn read_nproc_limit(pid: u32) -> Option<Rlimit> {
    let text = read_bounded(Path::new(&format!("/proc/{pid}/limits")))?;
    parse_nproc_limit(&text)
}

/// "Max processes    4096    8192    processes": the soft limit is the first value.
fn parse_nproc_limit(limits: &str) -> Option<Rlimit> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max processes"))?;
    match line.split_ascii_whitespace().next()? {
        "unlimited" => Some(Rlimit::Unlimited),
        n => n.parse().ok().map(Rlimit::Limit),
    }
}

fn read_bounded(path: &Path) -> Option<String> {
    super::procfs::read_text(path, MAX_FILE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check the formats: loadavg's task total, meminfo's kB, limits' soft column.
    #[test]
    fn proc_formats() {
        assert_eq!(
            parse_loadavg_tasks("16.67 16.50 17.18 16/10294 15539\n"),
            Some(10294)
        );
        assert_eq!(parse_loadavg_tasks("1 2 3\n"), None);
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1 kB\nMemAvailable:   1000 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal:"), Some(24_576_000 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable:"), Some(1_024_000));
        assert_eq!(meminfo_bytes(meminfo, "SwapTotal:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             4096                 8192                 processes \n";
        assert_eq!(parse_nproc_limit(limits), Some(Rlimit::Limit(4096)));
        let unlimited =
            "Max processes             unlimited            unlimited            processes \n";
        assert_eq!(parse_nproc_limit(unlimited), Some(Rlimit::Unlimited));
        assert_eq!(parse_nproc_limit("Max open files 1 1 files\n"), None);
    }

    /// Check that this host's own counters and limits read as plausible numbers.
    #[test]
    fn this_host_is_read() {
        let limits = KernelLimits::read();
        assert!(limits.pid_max.unwrap() >= 301);
        assert!(limits.threads_max.unwrap() > 0);
        assert!(limits.max_map_count.unwrap() > 0);
        let counters = HostCounters::read();
        assert!(counters.tasks.unwrap() > 1);
        assert!(counters.mem_available.unwrap() <= counters.mem_total.unwrap());
        assert!(read_nproc_limit(std::process::id()).is_some());
    }
}
