//! The `leakscope` command line.

use std::{
    fs::File,
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracer_user::{
    budget::alloc::CountingAlloc,
    daemon,
    diagnose::{DiagnoseOptions, diagnose, stderr_is_terminal},
    report, top,
    watch::{WatchArgs, WindowArgs},
};

/// The system allocator, counting live bytes: what leakscope holds, as a whole
/// (`leakscope_memory_heap_bytes`), and what a library keeps after a call.
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Finds goroutine and thread leaks on this host: processes whose population of blocked
/// waiters grows without bound, and the stacks where they block.
#[derive(Parser)]
#[command(name = "leakscope", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands. The flags every watching command shares (`--pid`, `--interval`,
/// `--thread-source`, `--read-budget`, ...) are one [`WatchArgs`], the same in each;
/// only their defaults differ, set here per command.
#[derive(Subcommand)]
enum Command {
    /// Watch the host for a while and report leaking processes.
    /// Exit status: 0 no leak, 1 leak found, 2 error.
    Diagnose(DiagnoseArgs),
    /// Run as a daemon: keep watching the host, serve Prometheus metrics on /metrics
    /// (and /healthz), dump the report of each process whose verdict turns to "leak".
    /// Stops on SIGTERM or SIGINT (exit 0).
    #[command(mut_arg("interval", |a| a.default_value("2")))]
    Run(RunArgs),
    /// A live view of the processes with the most and the fastest-growing blocked
    /// populations, their top sites and verdicts. `q` quits.
    #[command(mut_arg("window", |a| a.default_value("60")))]
    Top(TopArgs),
    /// Developer tools (hidden).
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        what: DebugCommand,
    },
}

#[derive(clap::Args)]
struct DiagnoseArgs {
    /// How long to watch, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=86400))]
    duration: u64,
    #[command(flatten)]
    watch: WatchArgs,
    /// Print the report as JSON (version 1, see README) on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the blocked waiters as a pprof profile (gzipped profile.proto) to
    /// FILE, for `go tool pprof`.
    #[arg(long, value_name = "FILE")]
    pprof: Option<PathBuf>,
    /// Also write a flame graph (SVG) of the blocked waiters to FILE, leak sites in red.
    #[arg(long, value_name = "FILE")]
    flamegraph: Option<PathBuf>,
    /// Write each site's observed series as JSON to this file (verdict test data).
    #[arg(long, hide = true)]
    record_observations: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    watch: WatchArgs,
    #[command(flatten)]
    window: WindowArgs,
    /// Address to serve /metrics and /healthz on. Loopback by default; any other
    /// address exposes what runs on this host to whoever can reach it.
    #[arg(long, default_value = daemon::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Export at most this many processes (leaking first, then the largest).
    #[arg(long, default_value_t = 200)]
    max_processes: usize,
    /// Export at most this many sites per process (leaking first, then the largest).
    #[arg(long, default_value_t = 20)]
    max_sites: usize,
    /// Write the JSON report of each process whose verdict turns to "leak" here.
    #[arg(long, value_name = "DIR")]
    dump_dir: Option<PathBuf>,
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
    #[arg(long, value_name = "PATH", default_value = daemon::lock::DEFAULT_LOCK_FILE)]
    lock_file: PathBuf,
    /// /healthz answers 503 when no scan finished for this many seconds (0.05 to
    /// 86400; a stalled or failing scanner). Default: 5 scan intervals, at least 30 s.
    #[arg(long, value_name = "SECS", value_parser = parse_stall_timeout)]
    stall_timeout: Option<Duration>,
    /// TLS and basic authentication for the listener: a Prometheus exporter web
    /// configuration file (tls_server_config, basic_auth_users; see README).
    #[arg(long, value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Also export this pprof label key (repeatable, at most 4) on every goroutine
    /// site's series, as the label `label_KEY`: its value in the most common label set
    /// of the site's members. Off by default: label values may be as many as requests.
    #[arg(long = "metric-label-key", value_name = "KEY")]
    metric_label_keys: Vec<String>,
}

#[derive(clap::Args)]
struct TopArgs {
    #[command(flatten)]
    watch: WatchArgs,
    #[command(flatten)]
    window: WindowArgs,
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

fn parse_stall_timeout(secs: &str) -> Result<Duration, String> {
    tracer_user::watch::args::parse_seconds(secs, (0.05, 86400.0))
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
    let one_shot = matches!(cli.command, Command::Diagnose(_));
    let work = move || match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Each cause once, on one line (see error::one_line).
            eprintln!("leakscope: {}", tracer_user::error::one_line(e.as_ref()));
            EXIT_ERROR
        }
    };
    if one_shot {
        // Returns to the shell with the report even when a read is stuck for good.
        tracer_user::isolate::detach::exit_with_child(work);
    }
    ExitCode::from(work())
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
        Command::Diagnose(args) => diagnose_command(args),
        Command::Run(args) => {
            daemon::metrics::check_label_keys(&args.metric_label_keys)
                .map_err(anyhow::Error::msg)?;
            daemon::run(args.options())?;
            Ok(0)
        }
        Command::Top(args) => {
            top::run(top::TopOptions {
                watch: args.watch,
                window: args.window.window,
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

/// `leakscope diagnose`: watch, then write the report (and the files asked for).
fn diagnose_command(args: DiagnoseArgs) -> anyhow::Result<u8> {
    let opts = DiagnoseOptions {
        watch: args.watch,
        duration: Duration::from_secs(args.duration),
        progress: stderr_is_terminal(),
        record_observations: args.record_observations,
    };
    // Opened first: a path that cannot be written fails now, not after the watch.
    let open = |path: Option<PathBuf>| path.map(|p| create_output(&p).map(|f| (p, f)));
    let pprof = open(args.pprof).transpose()?;
    let flamegraph = open(args.flamegraph).transpose()?;
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
    if args.json {
        println!("{}", report::to_json(&summary));
    } else {
        let style = report::TextStyle::for_output(std::io::stdout().is_terminal());
        print!("{}", report::to_text(&summary, style));
    }
    Ok(if summary.has_leak() { EXIT_LEAK } else { 0 })
}

impl RunArgs {
    fn options(self) -> daemon::RunOptions {
        daemon::RunOptions {
            watch: self.watch,
            listen: self.listen,
            window: self.window.window,
            limits: daemon::metrics::Limits {
                max_processes: self.max_processes,
                max_sites: self.max_sites,
                label_keys: self.metric_label_keys,
            },
            dumps: daemon::dump_policy(
                self.dump_dir,
                Duration::from_secs(self.dump_cooldown),
                self.dump_max_per_hour,
                self.dump_keep,
            ),
            lock_file: self.lock_file,
            stall_timeout: self.stall_timeout,
            web_config: self.web_config_file,
        }
    }
}
