//! The scan loop every watching command runs: [`preflight`] checks what the watch needs,
//! [`Driver::open`] opens the sources, [`Driver::run`] scans on the command's
//! [`Schedule`] and hands each scan to the command's [`Sink`].
//!
//! The commands differ in when they scan and what they do with a scan, nothing else:
//! `diagnose` scans every interval for a fixed time and renders the whole watch once at
//! the end; `run` keeps a rolling window, paces its scans by what they cost and exports
//! each; `top` keeps a rolling window and redraws after each scan.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    time::{Duration, Instant},
};

use super::{
    args::{MIN_SCANS_PER_WINDOW, WatchArgs},
    watcher::{ScanStats, Watcher},
};
use crate::{
    census::Scope,
    error::{ScanError, SourceError, WatchError},
    host::cpu::scan_cpu_time,
    isolate,
    sources::go::reader::ReadPacing,
};

/// When a command scans.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// `diagnose`: every `--interval` for this long, the whole watch one window; every
    /// scan reads every Go process (a diagnosis is short).
    Fixed(Duration),
    /// `run`: a rolling window of this span; scans paced by their cost
    /// ([`SCAN_PACING`]) and huge Go processes read less often.
    PacedWindow(Duration),
    /// `top`: a rolling window of this span, a scan every `--interval`; huge Go
    /// processes read less often.
    Window(Duration),
}

/// Scans that never end take at most this share of one core on average: after a scan
/// that cost `c` seconds of CPU the next starts `c / 0.04` seconds later at the
/// earliest (so a host whose scans cost 0.2 s is scanned every 5 s instead of every
/// `--interval`), at most 20 s later.
pub const SCAN_PACING: ReadPacing = ReadPacing {
    cpu_share: 0.04,
    max_interval: Duration::from_secs(20),
    // Unused: a scan is paced, never cut short (its Go reads have their own budget).
    time_budget: Duration::ZERO,
};

impl Schedule {
    /// What one verdict judges: a diagnosis's whole duration, or the rolling window.
    pub fn span(&self) -> Duration {
        match *self {
            Self::Fixed(span) | Self::PacedWindow(span) | Self::Window(span) => span,
        }
    }

    /// The rolling window the history is trimmed to, if any.
    pub fn window(&self) -> Option<Duration> {
        match *self {
            Self::Fixed(_) => None,
            Self::PacedWindow(window) | Self::Window(window) => Some(window),
        }
    }

    /// How often each Go process is read, each read taking at most `budget`.
    fn go_reads(&self, budget: Duration) -> ReadPacing {
        let pacing = match self {
            Self::Fixed(_) => ReadPacing::EVERY_SCAN,
            Self::PacedWindow(_) | Self::Window(_) => ReadPacing::WATCHING,
        };
        ReadPacing {
            time_budget: budget,
            ..pacing
        }
    }

    /// A rolling window must cover a few scans, or no verdict has a course to judge.
    fn check(&self, interval: Duration) -> Result<(), WatchError> {
        match self.window() {
            Some(window) if window < interval * MIN_SCANS_PER_WINDOW => {
                Err(WatchError::WindowTooShort {
                    window_s: window.as_secs_f64(),
                    interval_s: interval.as_secs_f64(),
                    scans: MIN_SCANS_PER_WINDOW,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Checks what a watch needs before anything starts: flags that agree with each other,
/// root, and that named pids exist.
pub fn preflight(args: &WatchArgs, schedule: &Schedule) -> Result<(), WatchError> {
    schedule.check(args.interval)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(WatchError::NotRoot);
    }
    // Root with some of root's capabilities cut (a unit's bounding set, a pod's security
    // context) finds less, silently: say so, once.
    for shortfall in crate::host::capabilities::shortfalls() {
        eprintln!("leakscope: {shortfall}");
    }
    for &pid in &args.pids {
        if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(WatchError::UnknownPid(pid));
        }
    }
    Ok(())
}

/// Whether a watch goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What a command does with its scans, and how it waits for the next one.
pub trait Sink {
    type Error;

    /// Before each scan: whether to scan at all (the daemon stops here when told to).
    fn before_scan(&mut self) -> Result<Flow, Self::Error> {
        Ok(Flow::Continue)
    }

    /// After each scan, with its outcome and the watcher (its history trimmed to the
    /// window): render, export, or give up.
    fn scanned(
        &mut self,
        watcher: &mut Watcher,
        scan: Result<ScanStats, ScanError>,
    ) -> Result<Flow, Self::Error>;

    /// Until `deadline`, when the next scan starts (or until the user or a signal stops
    /// the watch).
    fn wait_until(&mut self, deadline: Instant) -> Result<Flow, Self::Error> {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        Ok(Flow::Continue)
    }
}

/// One watch: the sources and what they found so far, on a schedule.
pub struct Driver {
    watcher: Watcher,
    schedule: Schedule,
    interval: Duration,
}

impl Driver {
    /// Opens the sources as `args` ask (loads the kernel program, or falls back to
    /// /proc as `--thread-source` allows); nothing is scanned yet.
    pub fn open(args: &WatchArgs, schedule: Schedule) -> Result<Self, SourceError> {
        // Before any cache charges it (false only when a test opened a driver before).
        crate::budget::configure(args.memory_budget);
        let mut watcher = Watcher::new(
            Scope::of_pids(&args.pids),
            args.thread_source,
            schedule.go_reads(args.read_budget),
        )?;
        watcher.set_show_runtime_threads(args.show_runtime_threads);
        // Limits are read once per process per window.
        watcher.set_limits_refresh(schedule.span());
        watcher.set_kubelet_log_dirs(args.kubelet_logs.dirs());
        Ok(Self {
            watcher,
            schedule,
            interval: args.interval,
        })
    }

    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    pub fn watcher_mut(&mut self) -> &mut Watcher {
        &mut self.watcher
    }

    /// Scans on the schedule until it ends (`diagnose`) or the sink stops it.
    pub fn run<S: Sink>(&mut self, sink: &mut S) -> Result<(), S::Error> {
        let mut beat = Beat::default();
        loop {
            if sink.before_scan()? == Flow::Stop {
                return Ok(());
            }
            let (started, cpu) = (Instant::now(), scan_cpu_time());
            let scan = self.scan();
            if sink.scanned(&mut self.watcher, scan)? == Flow::Stop {
                return Ok(());
            }
            let cost = scan_cpu_time().saturating_sub(cpu);
            let next = beat.after_scan(self.schedule, self.interval, started, cost, Instant::now());
            let Some(deadline) = next else {
                return Ok(());
            };
            if sink.wait_until(deadline)? == Flow::Stop {
                return Ok(());
            }
        }
    }

    /// One scan, its history trimmed to the window. A panic outside any one process's
    /// analysis fails this scan, not the watch.
    fn scan(&mut self) -> Result<ScanStats, ScanError> {
        let (watcher, window) = (&mut self.watcher, self.schedule.window());
        catch_unwind(AssertUnwindSafe(|| {
            let stats = watcher.scan()?;
            if let Some(window) = window {
                watcher.trim(window);
            }
            Ok(stats)
        }))
        .unwrap_or_else(|panic| Err(ScanError::Panic(isolate::panic_message(panic.as_ref()))))
    }
}

/// The rhythm of a watch: when its window began and when the next scan is due.
#[derive(Clone, Copy, Debug, Default)]
struct Beat {
    /// When the first scan ended. A fixed watch counts its duration from there: the first
    /// scan reads, unwinds and symbolizes everything once, which on a busy host can take
    /// longer than the whole `--duration`, and a watch that ended with its first scan
    /// would have seen no course at all.
    start: Option<Instant>,
    /// The interval's beat from the first scan's start, kept from scan to scan so that
    /// scans do not drift.
    next: Option<Instant>,
}

impl Beat {
    /// When the next scan starts (`None`: the watch is over), after a scan that started
    /// at `started` and cost `cost` of CPU, at `now`.
    fn after_scan(
        &mut self,
        schedule: Schedule,
        interval: Duration,
        started: Instant,
        cost: Duration,
        now: Instant,
    ) -> Option<Instant> {
        let start = *self.start.get_or_insert(now);
        let next = self.next.unwrap_or(started) + interval;
        let next = match schedule {
            Schedule::Fixed(duration) => {
                if now.duration_since(start) >= duration {
                    return None;
                }
                // A late scan is followed at once, with no burst to catch up.
                next.max(now).min(start + duration)
            }
            // A host whose scans are expensive (thousands of processes) is scanned less
            // often; a scan longer than the interval is followed at once, with no burst
            // to catch up.
            Schedule::PacedWindow(_) => next.max(started + SCAN_PACING.pause_after(cost)).max(now),
            Schedule::Window(_) => next.max(now),
        };
        self.next = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a rolling window must cover 3 scans and a fixed watch need not, and
    /// that each schedule reads Go processes as it should, within the budget.
    #[test]
    fn schedules_check_their_window_and_pace_go_reads() {
        let second = Duration::from_secs(1);
        assert!(Schedule::Window(second * 3).check(second).is_ok());
        let short = Schedule::PacedWindow(second * 2).check(second);
        assert!(
            matches!(short, Err(WatchError::WindowTooShort { scans: 3, .. })),
            "{short:?}"
        );
        assert!(Schedule::Fixed(second).check(second * 60).is_ok());
        let budget = Duration::from_millis(7);
        let diagnose = Schedule::Fixed(second).go_reads(budget);
        assert_eq!(diagnose.max_interval, ReadPacing::EVERY_SCAN.max_interval);
        assert_eq!(diagnose.time_budget, budget);
        let top = Schedule::Window(second).go_reads(budget);
        assert_eq!(top.max_interval, ReadPacing::WATCHING.max_interval);
        assert_eq!(top.time_budget, budget);
        assert_eq!(Schedule::Fixed(second).window(), None);
        assert_eq!(Schedule::Window(second).window(), Some(second));
    }

    /// Check each schedule's beat: a fixed watch scans every interval and ends at its
    /// duration after the first scan (its last wait cut to it), however long that first
    /// scan took; a paced window waits out an expensive scan's
    /// cost / 4%; a late scan is followed at once, with no burst.
    #[test]
    fn beats_follow_the_schedule() {
        let (t0, ms) = (Instant::now(), Duration::from_millis);
        let interval = ms(1000);
        let mut beat = Beat::default();
        let fixed = Schedule::Fixed(ms(2500));
        let after = |beat: &mut Beat, schedule, started, cost, now| {
            beat.after_scan(schedule, interval, t0 + started, cost, t0 + now)
        };
        assert_eq!(
            after(&mut beat, fixed, ms(0), ms(1), ms(100)),
            Some(t0 + ms(1000))
        );
        assert_eq!(
            after(&mut beat, fixed, ms(1000), ms(1), ms(1100)),
            Some(t0 + ms(2000))
        );
        assert_eq!(
            after(&mut beat, fixed, ms(2000), ms(1), ms(2100)),
            Some(t0 + ms(2600)),
            "the duration counts from the end of the first scan"
        );
        assert_eq!(after(&mut beat, fixed, ms(2600), ms(1), ms(2650)), None);

        // A first scan longer than the whole duration: the watch goes on for the
        // duration after it, with no burst of catch-up scans.
        let mut beat = Beat::default();
        assert_eq!(
            after(&mut beat, fixed, ms(0), ms(19_000), ms(19_000)),
            Some(t0 + ms(19_000))
        );
        assert_eq!(
            after(&mut beat, fixed, ms(19_000), ms(1), ms(19_100)),
            Some(t0 + ms(20_000))
        );
        assert_eq!(
            after(&mut beat, fixed, ms(20_000), ms(1), ms(20_100)),
            Some(t0 + ms(21_000))
        );

        let (mut beat, paced) = (Beat::default(), Schedule::PacedWindow(ms(60_000)));
        assert_eq!(
            after(&mut beat, paced, ms(0), ms(10), ms(50)),
            Some(t0 + ms(1000))
        );
        let costly = after(&mut beat, paced, ms(1000), ms(200), ms(1300));
        assert_eq!(costly, Some(t0 + ms(6000)), "0.2 s of CPU earns 5 s");
        let late = after(&mut beat, paced, ms(6000), ms(1), ms(9000));
        assert_eq!(late, Some(t0 + ms(9000)), "late: at once");

        let (mut beat, window) = (Beat::default(), Schedule::Window(ms(60_000)));
        assert_eq!(
            after(&mut beat, window, ms(0), ms(900), ms(50)),
            Some(t0 + ms(1000))
        );
        assert_eq!(
            after(&mut beat, window, ms(1000), ms(1), ms(3500)),
            Some(t0 + ms(3500))
        );
        assert_eq!(
            after(&mut beat, window, ms(3500), ms(1), ms(3600)),
            Some(t0 + ms(4500))
        );
    }
}
