//! The `leakscope` command line.

use std::{
    fs::File,
    io::{IsTerminal, Write},
    path::Path,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracer_user::{
    diagnose::{DiagnoseOptions, diagnose, stderr_is_terminal},
    report,
    sources::threads::ThreadSourceChoice,
};

/// Finds goroutine and thread leaks on this host: processes whose population of blocked
/// waiters grows without bound, and the stacks where they block.
#[derive(Parser)]
#[command(name = "leakscope", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch the host for a while and report leaking processes.
    /// Exit status: 0 no leak, 1 leak found, 2 error.
    Diagnose {
        /// How long to watch, in seconds.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=86400))]
        duration: u64,
        /// Watch only this process (repeatable). Default: every process on the host.
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Print the report as JSON (version 1, see README) on stdout.
        #[arg(long)]
        json: bool,
        /// Also write the blocked waiters as a pprof profile (gzipped profile.proto) to
        /// FILE, for `go tool pprof`.
        #[arg(long, value_name = "FILE")]
        pprof: Option<std::path::PathBuf>,
        /// Also write a flame graph (SVG) of the blocked waiters to FILE, leak sites in red.
        #[arg(long, value_name = "FILE")]
        flamegraph: Option<std::path::PathBuf>,
        /// Seconds between scans.
        #[arg(long, default_value_t = 1.0, hide = true)]
        interval: f64,
        /// Write each site's observed series as JSON to this file (verdict test data).
        #[arg(long, hide = true)]
        record_observations: Option<std::path::PathBuf>,
        /// Also report the Go runtime's own threads (idle Ms parked in runtime.futex by
        /// notesleep/stopm, ...) among Go processes' thread sites; hidden by default.
        #[arg(long)]
        show_runtime_threads: bool,
        /// Where blocked threads come from: the BPF task iterator (bpf), /proc (procfs,
        /// slower; for kernels older than 5.15), or bpf where the kernel supports it (auto).
        #[arg(long, value_name = "SOURCE", default_value = "auto", value_parser = parse_thread_source)]
        thread_source: ThreadSourceChoice,
        /// The longest one read of one Go process's goroutines may take, in seconds;
        /// past it the process is reported unreadable for that scan, with the reason.
        #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_read_budget)]
        read_budget: Duration,
        #[command(flatten)]
        kubelet_logs: KubeletLogArgs,
    },
    /// Run as a daemon: keep watching the host, serve Prometheus metrics on /metrics
    /// (and /healthz), dump the report of each process whose verdict turns to "leak".
    /// Stops on SIGTERM or SIGINT (exit 0).
    Run {
        /// Address to serve /metrics and /healthz on. Loopback by default; any other
        /// address exposes what runs on this host to whoever can reach it.
        #[arg(long, default_value = tracer_user::daemon::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Seconds between scans.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Seconds of history the verdicts judge (a rolling window).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
        window: u64,
        /// Watch only this process (repeatable). Default: every process on the host.
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Export at most this many processes (leaking first, then the largest).
        #[arg(long, default_value_t = 200)]
        max_processes: usize,
        /// Export at most this many sites per process (leaking first, then the largest).
        #[arg(long, default_value_t = 20)]
        max_sites: usize,
        /// Write the JSON report of each process whose verdict turns to "leak" here.
        #[arg(long, value_name = "DIR")]
        dump_dir: Option<std::path::PathBuf>,
        /// Least seconds between two dumps of the same process.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        dump_cooldown: u64,
        /// Most dumps written per hour, all processes together.
        #[arg(long, default_value_t = 20)]
        dump_max_per_hour: usize,
        /// Dumps kept in --dump-dir; the oldest are deleted.
        #[arg(long, default_value_t = 100)]
        dump_keep: usize,
        /// The lock file that keeps a second daemon from starting on this host.
        #[arg(long, value_name = "PATH", default_value = tracer_user::daemon::lock::DEFAULT_LOCK_FILE)]
        lock_file: std::path::PathBuf,
        /// /healthz answers 503 when no scan finished for this many seconds (a stalled
        /// or failing scanner). Default: 5 scan intervals, at least 30 s.
        #[arg(long, value_name = "SECS")]
        stall_timeout: Option<f64>,
        /// Also export the Go runtime's own threads (idle Ms) among Go processes' thread
        /// sites; hidden by default.
        #[arg(long)]
        show_runtime_threads: bool,
        /// Where blocked threads come from: bpf, procfs or auto (see diagnose).
        #[arg(long, value_name = "SOURCE", default_value = "auto", value_parser = parse_thread_source)]
        thread_source: ThreadSourceChoice,
        /// The longest one read of one Go process's goroutines may take, in seconds;
        /// past it the process is reported unreadable for that scan, with the reason.
        #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_read_budget)]
        read_budget: Duration,
        #[command(flatten)]
        kubelet_logs: KubeletLogArgs,
        /// TLS and basic authentication for the listener: a Prometheus exporter web
        /// configuration file (tls_server_config, basic_auth_users; see README).
        #[arg(long, value_name = "FILE")]
        web_config_file: Option<std::path::PathBuf>,
    },
    /// A live view of the processes with the most and the fastest-growing blocked
    /// populations, their top sites and verdicts. `q` quits.
    Top {
        /// Seconds between scans (and screen refreshes).
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Seconds of history the verdicts judge (a rolling window).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(3..=86400))]
        window: u64,
        /// Watch only this process (repeatable). Default: every process on the host.
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Also show the Go runtime's own threads among Go processes' thread sites.
        #[arg(long)]
        show_runtime_threads: bool,
        /// Where blocked threads come from: bpf, procfs or auto (see diagnose).
        #[arg(long, value_name = "SOURCE", default_value = "auto", value_parser = parse_thread_source)]
        thread_source: ThreadSourceChoice,
    },
    /// Developer tools (hidden).
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        what: DebugCommand,
    },
}

/// Where the kubelet's log directories are, which name the pods and containers of the
/// processes (`diagnose` and `run`).
#[derive(clap::Args)]
struct KubeletLogArgs {
    /// The kubelet's pod log directory (`<namespace>_<pod>_<uid>/` per pod), as mounted
    /// here: it names each process's pod.
    #[arg(long, value_name = "DIR", default_value = tracer_user::host::kubelet::DEFAULT_POD_LOG_DIR)]
    pod_log_dir: std::path::PathBuf,
    /// The kubelet's container log links (`<pod>_<namespace>_<container>-<id>.log`), as
    /// mounted here: they name each process's container.
    #[arg(long, value_name = "DIR", default_value = tracer_user::host::kubelet::DEFAULT_CONTAINER_LOG_DIR)]
    container_log_dir: std::path::PathBuf,
}

impl KubeletLogArgs {
    fn dirs(self) -> tracer_user::host::kubelet::KubeletLogDirs {
        tracer_user::host::kubelet::KubeletLogDirs {
            pods: self.pod_log_dir,
            containers: self.container_log_dir,
        }
    }
}

/// `leakscope debug ...`: developer tools, not a stable interface.
#[derive(Subcommand)]
enum DebugCommand {
    /// Print the Go runtime layout (runtime.g offsets, wait reasons) read from a binary's
    /// DWARF, as JSON (what `cargo xtask go-layouts` puts in layouts.json).
    GoLayout {
        /// An unstripped Go executable.
        binary: std::path::PathBuf,
    },
}

fn parse_thread_source(name: &str) -> Result<ThreadSourceChoice, String> {
    ThreadSourceChoice::parse(name).ok_or_else(|| {
        format!(
            "unknown thread source {name:?}: {}",
            ThreadSourceChoice::NAMES.join(", ")
        )
    })
}

fn parse_read_budget(secs: &str) -> Result<Duration, String> {
    match secs.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.001..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{secs:?} is not a number of seconds between 0.001 and 3600"
        )),
    }
}

/// Exit statuses of `diagnose`.
const EXIT_LEAK: u8 = 1;
const EXIT_ERROR: u8 = 2;

/// Allocations from this size up get their own mapping, returned to the system when
/// freed. glibc would otherwise raise the threshold after the first large free and
/// serve the next large buffers (a read of a huge Go process, a verdict over a million
/// members) from the heap, which fragments and keeps the daemon's resident memory
/// growing.
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

fn main() -> ExitCode {
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    tracer_user::isolate::install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version: clap's own output, success.
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // Errors promise one line on stderr: clap's first line names the problem.
            let rendered = e.render().to_string();
            let reason = rendered.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "leakscope: {} (see --help)",
                reason.trim_start_matches("error: ")
            );
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("leakscope: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Creates (truncates) an output file named on the command line.
fn create_output(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// leakscope must not slow down what it watches: when the CPU is contended, its scans
/// wait, the watched programs do not.
const OWN_NICE: libc::c_int = 10;

fn lower_own_priority() {
    // SAFETY: setpriority has no memory-safety preconditions. Failure (e.g. already
    // niced further by the caller) is harmless.
    unsafe {
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        if current < OWN_NICE {
            libc::setpriority(libc::PRIO_PROCESS, 0, OWN_NICE);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    lower_own_priority();
    match cli.command {
        Command::Diagnose {
            duration,
            pids,
            json,
            pprof,
            flamegraph,
            interval,
            record_observations,
            show_runtime_threads,
            thread_source,
            read_budget,
            kubelet_logs,
        } => {
            let opts = DiagnoseOptions {
                duration: Duration::from_secs(duration),
                interval: Duration::from_secs_f64(interval.clamp(0.05, 60.0)),
                pids,
                progress: stderr_is_terminal(),
                record_observations,
                show_runtime_threads,
                thread_source,
                read_budget,
                kubelet_logs: kubelet_logs.dirs(),
            };
            // Opened first: a path that cannot be written fails now, not after the watch.
            let pprof = pprof
                .map(|p| create_output(&p).map(|f| (p, f)))
                .transpose()?;
            let flamegraph = flamegraph
                .map(|p| create_output(&p).map(|f| (p, f)))
                .transpose()?;
            let summary = diagnose(&opts)?;
            if let Some((path, mut file)) = pprof {
                file.write_all(&tracer_user::pprof::to_pprof_gz(&summary))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some((path, mut file)) = flamegraph {
                let svg = tracer_user::flamegraph::to_svg(&summary).context("flame graph")?;
                file.write_all(&svg)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if json {
                println!("{}", report::to_json(&summary));
            } else {
                let style = report::TextStyle::for_output(std::io::stdout().is_terminal());
                print!("{}", report::to_text(&summary, style));
            }
            Ok(if summary.has_leak() { EXIT_LEAK } else { 0 })
        }
        Command::Run {
            listen,
            interval,
            window,
            pids,
            max_processes,
            max_sites,
            dump_dir,
            dump_cooldown,
            dump_max_per_hour,
            dump_keep,
            lock_file,
            stall_timeout,
            show_runtime_threads,
            thread_source,
            read_budget,
            kubelet_logs,
            web_config_file,
        } => {
            use tracer_user::daemon;
            if !(interval.is_finite() && (0.05..=3600.0).contains(&interval)) {
                anyhow::bail!("--interval must be between 0.05 and 3600 seconds");
            }
            if stall_timeout.is_some_and(|t| !(t.is_finite() && (0.05..=86400.0).contains(&t))) {
                anyhow::bail!("--stall-timeout must be between 0.05 and 86400 seconds");
            }
            daemon::run(daemon::RunOptions {
                listen,
                interval: Duration::from_secs_f64(interval),
                window: Duration::from_secs(window),
                pids,
                limits: daemon::metrics::Limits {
                    max_processes,
                    max_sites,
                },
                dumps: daemon::dump_policy(
                    dump_dir,
                    Duration::from_secs(dump_cooldown),
                    dump_max_per_hour,
                    dump_keep,
                ),
                lock_file,
                stall_timeout: stall_timeout.map(Duration::from_secs_f64),
                show_runtime_threads,
                thread_source,
                read_budget,
                kubelet_logs: kubelet_logs.dirs(),
                web_config: web_config_file,
            })?;
            Ok(0)
        }
        Command::Top {
            interval,
            window,
            pids,
            show_runtime_threads,
            thread_source,
        } => {
            if !(interval.is_finite() && (0.2..=60.0).contains(&interval)) {
                anyhow::bail!("--interval must be between 0.2 and 60 seconds");
            }
            tracer_user::top::run(tracer_user::top::TopOptions {
                interval: Duration::from_secs_f64(interval),
                window: Duration::from_secs(window),
                pids,
                show_runtime_threads,
                thread_source,
            })?;
            Ok(0)
        }
        Command::Debug {
            what: DebugCommand::GoLayout { binary },
        } => {
            use tracer_user::sources::go::layout::GoRuntimeLayout;
            let layout = GoRuntimeLayout::from_dwarf(&binary)?
                .ok_or_else(|| anyhow::anyhow!("{} has no DWARF", binary.display()))?;
            println!("{}", serde_json::to_string_pretty(&layout)?);
            Ok(0)
        }
    }
}
