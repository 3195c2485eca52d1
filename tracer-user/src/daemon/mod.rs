//! `leakscope run`: the daemon. It keeps watching the host, serves the verdicts as
//! Prometheus metrics, and dumps the report of every process whose verdict turns to
//! "leak".
//!
//! - A scanner thread owns the scan loop ([`Driver`]; its [`Watcher`] is not `Send`): it
//!   scans every `interval` (paced by what scans cost), keeps a rolling `window` of
//!   history, and its sink judges the window after each scan, updates the
//!   [`metrics::Exporter`] and publishes the rendered metrics.
//! - A dump thread writes and rotates dumps ([`dumps`]) so disk I/O never delays a scan.
//! - The tokio runtime (one thread) serves HTTP ([`http`]) and waits for SIGTERM or
//!   SIGINT; then it stops the scanner, which drops the Watcher and with it the kernel
//!   program, and exits 0 within a second.

pub mod dumps;
pub mod http;
pub mod lock;
pub mod metrics;
pub mod web;

use std::{
    net::SocketAddr,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::oneshot,
};

use crate::{
    error::{ScanError, SourceError},
    isolate, sanitize,
    summary::WindowSummary,
    verdict::VerdictPolicy,
    watch::{Driver, Flow, ScanStats, Schedule, Sink, WatchArgs, Watcher, preflight},
};

use self::{
    dumps::{DumpJob, DumpPlanner, DumpPolicy},
    http::Shared,
    metrics::{DumpCounters, Exporter, Limits},
};

/// The default `--listen`: loopback only. Port 9929 is leakscope's.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9929";

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// What to watch and how (the flags every watching command shares).
    pub watch: WatchArgs,
    pub listen: SocketAddr,
    /// History the verdicts judge.
    pub window: Duration,
    pub limits: Limits,
    /// Dumps, when `--dump-dir` is given.
    pub dumps: Option<DumpPolicy>,
    /// The single-instance lock (`--lock-file`).
    pub lock_file: PathBuf,
    /// `/healthz` fails when no scan finished for this long (`--stall-timeout`);
    /// `None`: [`default_stall_timeout`].
    pub stall_timeout: Option<Duration>,
    /// TLS and basic authentication for the listener (`--web-config-file`).
    pub web_config: Option<PathBuf>,
}

/// The default `--stall-timeout`: five scans, at least 30 s (a first scan of a big host
/// analyses every Go executable on it).
pub fn default_stall_timeout(interval: Duration) -> Duration {
    (interval * 5).max(Duration::from_secs(30))
}

/// The longest shutdown waits for the scanner before exiting anyway (the kernel frees
/// the program with the process in any case).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(600);

/// One line on stderr, for what the daemon does (the default log filter only shows
/// warnings, and a daemon's operator wants to see these).
macro_rules! notice {
    ($($arg:tt)*) => { eprintln!("leakscope: {}", format_args!($($arg)*)) };
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    preflight(&opts.watch, &Schedule::PacedWindow(opts.window))?;
    if opts.stall_timeout.is_some_and(|t| t < opts.watch.interval) {
        bail!("--stall-timeout must be at least one --interval");
    }
    let security = match &opts.web_config {
        Some(path) => web::WebSecurity::load(path)?,
        None => web::WebSecurity::none(),
    };
    let _lock = lock::acquire(&opts.lock_file)?;
    if let Some(dumps) = &opts.dumps {
        dumps::prepare_dump_dir(&dumps.dir)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(serve(opts, Arc::new(security)))
}

async fn serve(opts: RunOptions, security: Arc<web::WebSecurity>) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let listen = listener.local_addr().unwrap_or(opts.listen);

    let exporter = Exporter::new(opts.limits.clone());
    let stale_after = opts
        .stall_timeout
        .unwrap_or_else(|| default_stall_timeout(opts.watch.interval));
    let shared = Arc::new(Shared::new(exporter.render(), stale_after));
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    // The scanner answers with the thread source it opened (and why), or why it could not.
    let (ready_tx, ready_rx) = oneshot::channel::<Result<String, SourceError>>();
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let scanner = {
        let shared = shared.clone();
        let opts = opts.clone();
        thread::Builder::new()
            .name("leakscope-scan".into())
            .spawn(move || {
                scanner(opts, exporter, &shared, stop_rx, ready_tx);
                // Dropped on panic too: the runtime learns the scanner is gone.
                drop(done_tx);
            })
            .context("scanner thread")?
    };

    // Loading the kernel program: the only startup step that may fail.
    tokio::select! {
        ready = ready_rx => match ready {
            Ok(Ok(thread_source)) => notice!("thread source: {thread_source}"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => bail!("the scanner thread died while starting"),
        },
        _ = sigterm.recv() => return stop(stop_tx, done_rx, scanner, "SIGTERM").await,
        _ = sigint.recv() => return stop(stop_tx, done_rx, scanner, "SIGINT").await,
    }
    if security.tls.is_none() && !listen.ip().is_loopback() {
        notice!(
            "serving metrics to the network in plain HTTP{}: see --web-config-file",
            if security.auth.is_none() {
                ", without authentication"
            } else {
                ""
            }
        );
    }
    notice!(
        "watching {} every {:?} over a {:?} window; metrics on {}://{listen}/metrics ({}){}",
        if opts.watch.pids.is_empty() {
            "the host".to_string()
        } else {
            format!("pids {:?}", opts.watch.pids)
        },
        opts.watch.interval,
        opts.window,
        if security.tls.is_some() {
            "https"
        } else {
            "http"
        },
        security.describe(),
        match &opts.dumps {
            Some(d) => format!("; leak dumps in {}", d.dir.display()),
            None => String::new(),
        }
    );
    let server = tokio::spawn(http::serve(listener, shared.clone(), security));
    let watchdog = tokio::spawn(watchdog(shared, opts.watch.interval));
    let why = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
        _ = &mut done_rx => {
            server.abort();
            bail!("the scanner thread stopped unexpectedly");
        }
    };
    server.abort();
    watchdog.abort();
    stop(stop_tx, done_rx, scanner, why).await
}

/// Says on stderr when the scanner stalls (a scan runs, or none finished, for longer
/// than `--stall-timeout`) and when it recovers. Runs on the server's thread, so a
/// hung scanner cannot silence it; `/healthz` says the same to whoever asks.
async fn watchdog(shared: Arc<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(200)));
    let mut stalled = false;
    loop {
        ticks.tick().await;
        let health = shared.health(Instant::now(), isolate::current_pid());
        match health {
            http::Health::Stalled(running, pid) if !stalled => {
                stalled = true;
                notice!(
                    "scan stalled: the scan under way started {:.0} s ago{}; /healthz answers 503",
                    running.as_secs_f64(),
                    pid.map(|p| format!(", reading pid {p}"))
                        .unwrap_or_default()
                );
            }
            http::Health::Stale(ago) if !stalled => {
                stalled = true;
                notice!(
                    "scan stalled: none finished for {:.0} s; /healthz answers 503",
                    ago.as_secs_f64()
                );
            }
            http::Health::Ok(_) if stalled => {
                stalled = false;
                notice!("scans finish again");
            }
            _ => {}
        }
    }
}

/// Stops the scanner (which drops the Watcher and so unloads the kernel program).
async fn stop(
    stop_tx: mpsc::Sender<()>,
    done_rx: oneshot::Receiver<()>,
    scanner: thread::JoinHandle<()>,
    why: &str,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    drop(stop_tx);
    match tokio::time::timeout(SHUTDOWN_GRACE, done_rx).await {
        Ok(_) => {
            let _ = scanner.join();
            notice!(
                "{why}: stopped in {} ms, kernel program unloaded",
                t0.elapsed().as_millis()
            );
        }
        Err(_) => notice!(
            "{why}: the scan under way did not finish in {} ms; exiting (the kernel \
             unloads the program with the process)",
            SHUTDOWN_GRACE.as_millis()
        ),
    }
    Ok(())
}

/// The scanner thread: owns the scan loop, and with it the Watcher, from load to unload.
fn scanner(
    opts: RunOptions,
    exporter: Exporter,
    shared: &Shared,
    stop: mpsc::Receiver<()>,
    ready: oneshot::Sender<Result<String, SourceError>>,
) {
    let mut driver = match Driver::open(&opts.watch, Schedule::PacedWindow(opts.window)) {
        Ok(driver) => driver,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let watcher = driver.watcher();
    exporter.set_thread_source(watcher.thread_source());
    shared.watch_stuck_reads(watcher.faults());
    let _ = ready.send(Ok(watcher.thread_source_reason().to_string()));
    let mut sink = Publisher::new(&opts, exporter, shared, stop);
    let Ok(()) = driver.run(&mut sink);
}

/// The daemon's sink: judges the window after each scan, exports it, plans dumps, and
/// publishes the metrics; stops when told to.
struct Publisher<'a> {
    exporter: Exporter,
    shared: &'a Shared,
    stop: mpsc::Receiver<()>,
    policy: VerdictPolicy,
    planner: DumpPlanner,
    dumper: Option<Dumper>,
    /// Whether scans fail now (said once, and once when they work again).
    failing: bool,
    scans: u64,
    /// Test hook: the scan after this many hangs until the daemon stops.
    stall_after: Option<u64>,
}

impl<'a> Publisher<'a> {
    fn new(
        opts: &RunOptions,
        exporter: Exporter,
        shared: &'a Shared,
        stop: mpsc::Receiver<()>,
    ) -> Self {
        let dumper = (opts.dumps.as_ref())
            .map(|policy| Dumper::start(policy.clone(), exporter.dump_counters()));
        // Without --dump-dir the planner still tells leak transitions, for the log.
        let planner = match &opts.dumps {
            Some(p) => DumpPlanner::new(p.cooldown, p.max_per_hour),
            None => DumpPlanner::new(Duration::ZERO, 0),
        };
        Self {
            exporter,
            shared,
            stop,
            policy: VerdictPolicy::default(),
            planner,
            dumper,
            failing: false,
            scans: 0,
            stall_after: isolate::injected_stall_after_scans(),
        }
    }

    /// Judge, export, plan dumps, publish the metrics.
    fn publish(&mut self, watcher: &mut Watcher, stats: &ScanStats) {
        let exporter = &self.exporter;
        exporter.observe_scan(Ok(stats), watcher.history().span_s());
        let t = Instant::now();
        let (summary, _) = watcher.summary(&self.policy, false);
        // The window remembers processes that exited; the metrics should not.
        let summary = summary.only(|p| p.alive);
        exporter.observe_history(watcher.history());
        exporter.observe_memory(crate::budget::global());
        exporter.observe_summary(&summary, t.elapsed().as_secs_f64());
        let plan = self
            .planner
            .plan(&summary, Instant::now(), SystemTime::now());
        announce(&summary, &plan);
        if let Some(dumper) = &self.dumper {
            for (pid, why) in &plan.deferred {
                notice!("dump of pid {pid} put off: {why}");
                exporter.dump_counters().deferred.inc();
            }
            for job in plan.dumps {
                dumper.send(job);
            }
        }
        let body = exporter.render();
        self.shared.publish(|s| {
            s.metrics = body;
            s.last_ok = Some(Instant::now());
            s.last_error = None;
            s.scanning_since = None;
        });
    }

    /// Says a failed scan (once while scans keep failing) and publishes it.
    fn failed(&mut self, watcher: &Watcher, error: String) {
        if !self.failing {
            notice!("scan failed: {}", sanitize::log_text(&error));
            self.failing = true;
        }
        log::debug!("scan failed: {error}");
        self.exporter
            .observe_scan(Err(()), watcher.history().span_s());
        let body = self.exporter.render();
        self.shared.publish(|s| {
            s.metrics = body;
            s.last_error = Some(error);
            s.scanning_since = None;
        });
    }
}

impl Sink for Publisher<'_> {
    type Error = std::convert::Infallible;

    fn before_scan(&mut self) -> Result<Flow, Self::Error> {
        if let Ok(()) | Err(mpsc::TryRecvError::Disconnected) = self.stop.try_recv() {
            return Ok(Flow::Stop);
        }
        self.shared
            .publish(|s| s.scanning_since = Some(Instant::now()));
        if self.stall_after.is_some_and(|n| self.scans >= n) {
            // Test hook: a scan that never ends, until the daemon stops.
            let _ = self.stop.recv();
            return Ok(Flow::Stop);
        }
        self.scans += 1;
        Ok(Flow::Continue)
    }

    fn scanned(
        &mut self,
        watcher: &mut Watcher,
        scan: Result<ScanStats, ScanError>,
    ) -> Result<Flow, Self::Error> {
        // A panic while judging or exporting fails this scan, not the daemon.
        let outcome = scan.map_err(|e| e.to_string()).and_then(|stats| {
            catch_unwind(AssertUnwindSafe(|| self.publish(watcher, &stats))).map_err(|panic| {
                let panic = ScanError::Panic(isolate::panic_message(panic.as_ref()));
                panic.to_string()
            })
        });
        match outcome {
            Ok(()) if self.failing => {
                notice!("scans work again");
                self.failing = false;
            }
            Ok(()) => {}
            Err(e) => self.failed(watcher, e),
        }
        Ok(Flow::Continue)
    }

    fn wait_until(&mut self, deadline: Instant) -> Result<Flow, Self::Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        Ok(match self.stop.recv_timeout(left) {
            Err(mpsc::RecvTimeoutError::Timeout) => Flow::Continue,
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => Flow::Stop,
        })
    }
}

/// Logs verdict changes.
fn announce(summary: &WindowSummary, plan: &dumps::Plan) {
    for &pid in &plan.new_leaks {
        let Some(p) = summary.processes.iter().find(|p| p.key.pid == pid) else {
            continue;
        };
        let site = p
            .sites
            .iter()
            .find(|s| s.is_leak())
            .map(|s| s.label.as_str())
            .unwrap_or_default();
        notice!(
            "LEAK pid {pid} {} ({}): {} blocked waiters, {:+.1}/min; site {}",
            sanitize::log_text(&p.facts.comm),
            sanitize::log_text(&p.facts.exe),
            p.waiters,
            p.growth_per_min,
            sanitize::log_text(site)
        );
    }
    for &pid in &plan.cleared {
        notice!("pid {pid}: no longer judged a leak");
    }
}

/// The dump writer thread's handle.
struct Dumper {
    jobs: mpsc::Sender<DumpJob>,
}

impl Dumper {
    fn start(policy: DumpPolicy, counters: DumpCounters) -> Self {
        let (jobs, rx) = mpsc::channel::<DumpJob>();
        let spawned = thread::Builder::new()
            .name("leakscope-dump".into())
            .spawn(move || {
                for job in rx {
                    match dumps::write_dump(&policy.dir, &job) {
                        Ok(path) => {
                            counters.written.inc();
                            notice!(
                                "dumped the report of pid {} ({}) to {}",
                                job.pid,
                                sanitize::log_text(&job.comm),
                                path.display()
                            );
                        }
                        Err(e) => {
                            counters.errors.inc();
                            notice!(
                                "cannot dump pid {} to {}: {e}",
                                job.pid,
                                policy.dir.display()
                            );
                            continue;
                        }
                    }
                    match dumps::rotate(&policy.dir, policy.keep) {
                        Ok(deleted) => {
                            for path in deleted {
                                log::info!("rotated out {}", path.display());
                            }
                        }
                        Err(e) => notice!("cannot rotate dumps in {}: {e}", policy.dir.display()),
                    }
                }
            });
        if let Err(e) = spawned {
            notice!("cannot start the dump thread: {e}; no dumps");
        }
        Self { jobs }
    }

    fn send(&self, job: DumpJob) {
        // A dead writer has said why already.
        let _ = self.jobs.send(job);
    }
}

/// `--dump-dir` and its options, as the command line gives them.
pub fn dump_policy(
    dir: Option<PathBuf>,
    cooldown: Duration,
    max_per_hour: usize,
    keep: usize,
) -> Option<DumpPolicy> {
    dir.map(|dir| DumpPolicy {
        dir,
        cooldown,
        max_per_hour,
        keep: keep.max(1),
    })
}
