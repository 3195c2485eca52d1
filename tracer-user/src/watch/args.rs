//! The flags every watching command (`diagnose`, `run`, `top`) shares, declared once so
//! that each means the same and has one valid range in every command: which processes,
//! how often, which thread source, how long one Go read may take, the Go runtime's own
//! threads, where the kubelet names pods, how much memory what leakscope keeps of the
//! host may take. `run` and `top` also share the rolling
//! `--window`. Commands differ only in defaults (`run` scans every 2 s, `top` and
//! `diagnose` every second), which each sets on its own subcommand.

use std::{path::PathBuf, time::Duration};

use crate::{
    budget::{self, DEFAULT_MEMORY_BUDGET, MAX_MEMORY_BUDGET, MIN_MEMORY_BUDGET},
    host::kubelet::{DEFAULT_CONTAINER_LOG_DIR, DEFAULT_POD_LOG_DIR, KubeletLogDirs},
    sources::{go::reader::DEFAULT_READ_TIME_BUDGET, threads::ThreadSourceChoice},
};

/// The valid `--interval`, in seconds.
pub const INTERVAL_RANGE_S: (f64, f64) = (0.05, 3600.0);
/// The valid `--read-budget`, in seconds.
pub const READ_BUDGET_RANGE_S: (f64, f64) = (0.001, 3600.0);
/// The longest `--window` and `--duration`, in seconds (a day).
pub const MAX_WINDOW_S: u64 = 86_400;
/// Scans a rolling window must cover at least, for a verdict to judge a course.
pub const MIN_SCANS_PER_WINDOW: u32 = 3;

/// What to watch and how: the flags of `diagnose`, `run` and `top` alike.
#[derive(clap::Args, Clone, Debug)]
pub struct WatchArgs {
    /// Watch only this process (repeatable). Default: every process on the host.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Seconds between scans, from 0.05 to 3600.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// Also report the Go runtime's own threads (idle Ms parked in runtime.futex by
    /// notesleep/stopm, ...) among Go processes' thread sites; hidden by default.
    #[arg(long)]
    pub show_runtime_threads: bool,
    /// Where blocked threads come from: the BPF task iterator (bpf), /proc (procfs,
    /// slower; for kernels older than 5.15), or bpf where the kernel supports it (auto).
    #[arg(long, value_name = "SOURCE", default_value = "auto", value_parser = parse_thread_source)]
    pub thread_source: ThreadSourceChoice,
    /// The longest one read of one Go process's goroutines may take, in seconds (0.001
    /// to 3600); past it the process is reported unreadable for that scan, with the reason.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_read_budget)]
    pub read_budget: Duration,
    /// Memory for everything leakscope keeps or builds from what the host runs
    /// (binaries, names, unwind tables, maps, goroutine tables, history), e.g. 96M or
    /// 1G, from 16M to 1T; what does not fit is evicted or refused, and a process whose
    /// analysis was cut says why.
    #[arg(long, value_name = "SIZE", default_value = "96M", value_parser = parse_memory_budget)]
    pub memory_budget: u64,
    #[command(flatten)]
    pub kubelet_logs: KubeletLogArgs,
}

impl Default for WatchArgs {
    fn default() -> Self {
        Self {
            pids: Vec::new(),
            interval: Duration::from_secs(1),
            show_runtime_threads: false,
            thread_source: ThreadSourceChoice::Auto,
            read_budget: DEFAULT_READ_TIME_BUDGET,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            kubelet_logs: KubeletLogArgs::default(),
        }
    }
}

/// Where the kubelet's log directories are, which name the pods and containers of the
/// processes.
#[derive(clap::Args, Clone, Debug)]
pub struct KubeletLogArgs {
    /// The kubelet's pod log directory (`<namespace>_<pod>_<uid>/` per pod), as mounted
    /// here: it names each process's pod.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_POD_LOG_DIR)]
    pub pod_log_dir: PathBuf,
    /// The kubelet's container log links (`<pod>_<namespace>_<container>-<id>.log`), as
    /// mounted here: they name each process's container.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONTAINER_LOG_DIR)]
    pub container_log_dir: PathBuf,
}

impl Default for KubeletLogArgs {
    fn default() -> Self {
        let dirs = KubeletLogDirs::default();
        Self {
            pod_log_dir: dirs.pods,
            container_log_dir: dirs.containers,
        }
    }
}

impl KubeletLogArgs {
    pub fn dirs(&self) -> KubeletLogDirs {
        KubeletLogDirs {
            pods: self.pod_log_dir.clone(),
            containers: self.container_log_dir.clone(),
        }
    }
}

/// The rolling window `run` and `top` judge.
#[derive(clap::Args, Clone, Debug)]
pub struct WindowArgs {
    /// Seconds of history the verdicts judge (a rolling window), up to 86400; it must
    /// cover at least 3 scans.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_window)]
    pub window: Duration,
}

/// Seconds from `low` to `high` (fractions allowed), as every seconds flag takes them.
pub fn parse_seconds(secs: &str, (low, high): (f64, f64)) -> Result<Duration, String> {
    match secs.parse::<f64>() {
        Ok(s) if s.is_finite() && (low..=high).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{secs:?} is not a number of seconds between {low} and {high}"
        )),
    }
}

/// `--interval`: seconds, from 0.05 to 3600.
pub fn parse_interval(secs: &str) -> Result<Duration, String> {
    parse_seconds(secs, INTERVAL_RANGE_S)
}

/// `--read-budget`: seconds, from 0.001 to 3600.
pub fn parse_read_budget(secs: &str) -> Result<Duration, String> {
    parse_seconds(secs, READ_BUDGET_RANGE_S)
}

/// `--memory-budget`: a size from 16 MiB to 1 TiB.
pub fn parse_memory_budget(size: &str) -> Result<u64, String> {
    match budget::parse_size(size) {
        Some(bytes) if (MIN_MEMORY_BUDGET..=MAX_MEMORY_BUDGET).contains(&bytes) => Ok(bytes),
        _ => Err(format!(
            "{size:?} is not a size between 16M and 1T (bytes, or with K, M, G, T)"
        )),
    }
}

/// `--window` and `--duration`: whole seconds, from 1 to a day.
pub fn parse_window(secs: &str) -> Result<Duration, String> {
    match secs.parse::<u64>() {
        Ok(s) if (1..=MAX_WINDOW_S).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "{secs:?} is not a whole number of seconds between 1 and {MAX_WINDOW_S}"
        )),
    }
}

/// `--thread-source`: auto, bpf or procfs.
pub fn parse_thread_source(name: &str) -> Result<ThreadSourceChoice, String> {
    ThreadSourceChoice::parse(name).ok_or_else(|| {
        format!(
            "unknown thread source {name:?}: {}",
            ThreadSourceChoice::NAMES.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Command {
        #[command(flatten)]
        watch: WatchArgs,
        #[command(flatten)]
        window: WindowArgs,
    }

    fn parse(args: &[&str]) -> Result<Command, String> {
        Command::try_parse_from(std::iter::once("leakscope").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    /// Check that the shared flags parse to their values and defaults.
    #[test]
    fn shared_flags_parse() {
        let c = parse(&[
            "--pid",
            "7",
            "--pid",
            "9",
            "--interval",
            "0.5",
            "--thread-source",
            "procfs",
            "--read-budget",
            "0.25",
            "--memory-budget",
            "200MiB",
            "--show-runtime-threads",
            "--window",
            "60",
        ])
        .unwrap();
        assert_eq!(c.watch.pids, [7, 9]);
        assert_eq!(c.watch.interval, Duration::from_millis(500));
        assert_eq!(c.watch.thread_source, ThreadSourceChoice::Procfs);
        assert_eq!(c.watch.read_budget, Duration::from_millis(250));
        assert_eq!(c.watch.memory_budget, 200 << 20);
        assert!(c.watch.show_runtime_threads);
        assert_eq!(c.window.window, Duration::from_secs(60));
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults.watch.interval, WatchArgs::default().interval);
        assert_eq!(defaults.watch.read_budget, DEFAULT_READ_TIME_BUDGET);
        assert_eq!(defaults.watch.memory_budget, DEFAULT_MEMORY_BUDGET);
        assert_eq!(defaults.watch.thread_source, ThreadSourceChoice::Auto);
        assert_eq!(
            defaults.watch.kubelet_logs.dirs(),
            KubeletLogDirs::default()
        );
    }

    /// Check that each flag's range ends are accepted and a value past either end, or
    /// not a number, is refused with the flag named.
    #[test]
    fn out_of_range_values_are_refused() {
        for ok in [
            ["--interval", "0.05"],
            ["--interval", "3600"],
            ["--read-budget", "0.001"],
            ["--read-budget", "3600"],
            ["--window", "1"],
            ["--window", "86400"],
            ["--memory-budget", "16M"],
            ["--memory-budget", "1T"],
        ] {
            assert!(parse(&ok).is_ok(), "{ok:?}");
        }
        for bad in [
            ["--interval", "0.04"],
            ["--interval", "3601"],
            ["--interval", "NaN"],
            ["--interval", "inf"],
            ["--read-budget", "0"],
            ["--read-budget", "3600.5"],
            ["--window", "0"],
            ["--window", "86401"],
            ["--window", "1.5"],
            ["--memory-budget", "15M"],
            ["--memory-budget", "2T"],
            ["--memory-budget", "lots"],
            ["--thread-source", "kprobes"],
            ["--pid", "x"],
        ] {
            let error = parse(&bad).expect_err(&format!("{bad:?} accepted"));
            assert!(error.contains(bad[0]), "{bad:?}: {error}");
        }
    }
}
