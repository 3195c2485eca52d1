//! What a process costs, sampled from `/proc`: CPU time and resident memory (current
//! and peak), and its thread count. CPU-seconds and memory are what the budgets are
//! stated in because other load on a shared machine slows a run without changing them.

/// One sample of a process's cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    /// Resident memory now (VmRSS), bytes.
    pub rss_bytes: u64,
    /// Peak resident memory (VmHWM), bytes.
    pub peak_rss_bytes: u64,
}

/// A sample of `pid`'s cost, or None when it is gone (or not readable).
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Usage {
        cpu_s: cpu_ticks_in_stat(&stat)? as f64 / clock_ticks_per_s() as f64,
        rss_bytes: status_kib(&status, "VmRSS")? * 1024,
        peak_rss_bytes: status_kib(&status, "VmHWM")? * 1024,
    })
}

/// A sample of what `pid` and every process under it cost together (CPU times, resident
/// and peak memory summed): `leakscope diagnose` does its work in a child process.
/// None when `pid` is gone.
pub fn tree_usage(pid: u32) -> Option<Usage> {
    let mut total = usage(pid)?;
    for child in children(pid) {
        if let Some(under) = tree_usage(child) {
            total.cpu_s += under.cpu_s;
            total.rss_bytes += under.rss_bytes;
            total.peak_rss_bytes += under.peak_rss_bytes;
        }
    }
    Some(total)
}

/// The children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    (tasks.flatten())
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// User + system CPU time of `pid`, seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(cpu_ticks_in_stat(&stat)? as f64 / clock_ticks_per_s() as f64)
}

/// The threads `pid` has now.
pub fn thread_count(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
}

/// Clock ticks per second, the unit of `/proc/PID/stat`'s times.
pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100).max(1)
}

/// utime + stime from a `/proc/PID/stat` line. The fields after the command (which may
/// hold spaces and parentheses) start at the state, field 3; utime and stime are 14, 15.
fn cpu_ticks_in_stat(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

/// A `Key:   N kB` line of `/proc/PID/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that CPU ticks are read after the last `)`, so a comm with spaces and
    /// parentheses does not shift the fields.
    #[test]
    fn stat_fields_after_a_hostile_comm() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 99 1000 50";
        assert_eq!(cpu_ticks_in_stat(stat), Some(12));
        assert_eq!(cpu_ticks_in_stat("42 (cut"), None);
    }

    /// Check that this process's own sample is plausible: some memory, peak at least the
    /// current, threads at least one.
    #[test]
    fn own_usage_is_plausible() {
        let me = std::process::id();
        let own = usage(me).expect("own /proc entry");
        assert!(own.rss_bytes > 0 && own.peak_rss_bytes >= own.rss_bytes);
        assert!(own.cpu_s >= 0.0);
        assert!(thread_count(me) >= Some(1));
        assert_eq!(status_kib("VmRSS:\t  1234 kB\n", "VmRSS"), Some(1234));
        assert_eq!(usage(u32::MAX), None);
    }

    /// Check that a tree's sample adds its children's: a child's CPU time counts.
    #[test]
    fn tree_usage_adds_children() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
            ])
            .spawn()
            .expect("sh");
        let me = std::process::id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = None;
        while std::time::Instant::now() < deadline {
            let (own, tree) = (usage(me).unwrap(), tree_usage(me).unwrap());
            if tree.cpu_s > own.cpu_s && tree.peak_rss_bytes > own.peak_rss_bytes {
                seen = Some((own, tree));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen.is_some(), "the child's CPU and memory never counted");
    }
}
