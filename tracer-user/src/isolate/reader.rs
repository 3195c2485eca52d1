//! Reads that can block run on a reader thread, so that the scan can stop waiting for
//! them.
//!
//! Reading another process can wait inside the kernel as long as something else likes:
//! opening or reading a binary on a file system that does not answer (a FUSE server, a
//! dead NFS server), `/proc/PID/maps` behind the process's memory lock. No time budget
//! checked between reads helps against a read that never returns. So each step that
//! reads a process runs as a job on a [`Reader`]'s thread, which owns what those steps
//! keep (caches); the scan waits for the job up to a deadline. Past it:
//!
//! - a job still computing (running, or its CPU time moving) is waited for a while
//!   longer, up to [`COMPUTE_FACTOR`] times the deadline: parsing a huge binary is
//!   slow, not stuck;
//! - otherwise the job is abandoned: its thread, and what it holds, are left to finish
//!   on their own (counted in [`Faults`] until they do), the process is reported
//!   unreadable with the reason and not read again until the read returns, and the next
//!   job gets a new thread with fresh state. Nothing the rest of the scan uses is shared
//!   with an abandoned thread, so nothing waits on it. At most
//!   [`super::faults::MAX_STUCK_READS`] threads may be stuck; then the reads that would
//!   need a new one are not made.
//!
//! Every job also runs isolated ([`super::on_this_thread`]: a panic costs its process,
//! and the thread's state is rebuilt since it may be half-updated), reads the
//! process's memory only where it is resident ([`crate::host::pagemap::scoped`]), and
//! holds the process by pidfd from before to after ([`crate::host::pidfd`]): a job of
//! a process whose pid is another's now is not run, and what one read of a process
//! that exited meanwhile (its pid free for another) is dropped.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use super::{
    catch::{AnalysisPanic, Step, on_this_thread, set_current_pid},
    faults::{Faults, ProcessFault, StuckRead},
};
use crate::{
    host::{
        cpu, hung, pagemap,
        pidfd::{PinnedProcess, ProcessGone},
    },
    model::ProcessKey,
};

/// A job still computing at its deadline is waited for up to this many deadlines.
pub const COMPUTE_FACTOR: u32 = 4;
/// The shortest wait before a job that does not compute is abandoned, whatever the
/// budget: a read from a disk under load can wait some milliseconds, and abandoning a
/// read costs a thread and its caches.
pub const MIN_DEADLINE: Duration = Duration::from_secs(1);
/// How often a job's progress is looked at while the scan waits for it.
const POLL: Duration = Duration::from_millis(100);

/// A job's state, settled by whichever of the reader and the scan gets there first.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// What the reader thread does after a job.
enum After {
    Next,
    /// The job panicked: its state may be half-updated, rebuild it.
    Rebuild,
    /// The job was abandoned: this thread takes no more jobs.
    Exit,
}

type Job<S> = Box<dyn FnOnce(&mut S) -> After + Send>;

/// A live reader thread.
struct Worker<S> {
    jobs: mpsc::Sender<Job<S>>,
    /// Its kernel thread id and CPU clock, to tell whether it computes or waits.
    tid: i32,
    cpu_clock: libc::clockid_t,
}

/// Runs the blocking steps of processes' analysis on a thread it can stop waiting for
/// (see the module doc). `S` is what those steps keep; each thread builds its own.
pub struct Reader<S: 'static> {
    /// Names its threads (`leakscope-<name>`).
    name: &'static str,
    new_state: fn() -> S,
    faults: Arc<Faults>,
    /// How long a job may wait before it is abandoned.
    deadline: Duration,
    live: Option<Worker<S>>,
}

impl<S: 'static> Reader<S> {
    /// A reader whose threads keep an `S` made by `new_state`, abandoning a job that
    /// waits past `deadline` (at least [`MIN_DEADLINE`], see the module doc); a process
    /// whose step fails is recorded in `faults`.
    pub fn new(
        name: &'static str,
        new_state: fn() -> S,
        faults: Arc<Faults>,
        deadline: Duration,
    ) -> Self {
        Self::exactly(name, new_state, faults, deadline.max(MIN_DEADLINE))
    }

    /// [`Reader::new`] with this very deadline.
    fn exactly(
        name: &'static str,
        new_state: fn() -> S,
        faults: Arc<Faults>,
        deadline: Duration,
    ) -> Self {
        Self {
            name,
            new_state,
            faults,
            deadline,
            live: None,
        }
    }

    /// Runs step `step` of the analysis of process `key` on the reader thread, unless
    /// the process failed before; waits for it up to the deadline. The process is read
    /// only where its memory is resident.
    pub fn run<R: Send + 'static>(
        &mut self,
        key: ProcessKey,
        step: Step,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, ProcessFault> {
        if let Some(fault) = self.faults.of(&key) {
            return Err(fault);
        }
        let faults = self.faults.clone();
        let worker = self.worker()?;
        let progress = (worker.tid, worker.cpu_clock);
        let (tx, rx) = mpsc::sync_channel::<Result<R, Failed>>(1);
        let settled = Arc::new(AtomicU8::new(RUNNING));
        let job: Job<S> = {
            let settled = settled.clone();
            Box::new(move |state: &mut S| {
                let cpu = cpu::thread_cpu_time();
                let out = pagemap::scoped(key.pid, || pinned(key, step, || job(state)));
                hung::done();
                cpu::add_delegated(cpu::thread_cpu_time().saturating_sub(cpu));
                let panicked = matches!(out, Err(Failed::Panic(_)));
                let _ = tx.send(out);
                if settled
                    .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    faults.returned(key);
                    hung::returned();
                    return After::Exit;
                }
                if panicked {
                    After::Rebuild
                } else {
                    After::Next
                }
            })
        };
        if worker.jobs.send(job).is_err() {
            // Its thread is gone (it cannot be: jobs never unwind); start afresh.
            self.live = None;
            return Err(self.faults.panicked(
                key,
                AnalysisPanic {
                    step,
                    message: "the reader thread is gone".into(),
                },
            ));
        }
        set_current_pid(key.pid);
        let waited = self.wait(&rx, &settled, progress);
        set_current_pid(0);
        match waited {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(Failed::Panic(panic))) => Err(self.faults.panicked(key, panic)),
            Ok(Err(Failed::Gone(gone))) => Err(ProcessFault::Gone(gone)),
            Err(after) => {
                // Left to finish on its own, with what it holds; no file is opened on
                // the file system it is stuck in until it returns.
                self.live = None;
                hung::abandoned(progress.0);
                Err(self.faults.stuck(key, StuckRead { step, after }))
            }
        }
    }

    /// The live reader thread, started when there is none (unless too many are stuck).
    fn worker(&mut self) -> Result<&Worker<S>, ProcessFault> {
        if self.live.is_none() {
            self.faults.may_start_reader()?;
            self.live = Some(spawn(self.name, self.new_state).map_err(|e| {
                log::warn!("cannot start a reader thread: {e}");
                ProcessFault::TooManyStuck(self.faults.stuck_reads().now)
            })?);
        }
        Ok(self.live.as_ref().expect("started above"))
    }

    /// Waits for the job's outcome; `Err(waited)` when it was abandoned.
    fn wait<R>(
        &self,
        outcome: &mpsc::Receiver<R>,
        settled: &AtomicU8,
        (tid, cpu_clock): (i32, libc::clockid_t),
    ) -> Result<R, Duration> {
        let started = Instant::now();
        let mut cpu = cpu::clock_time(cpu_clock);
        loop {
            match outcome.recv_timeout(POLL) {
                Ok(out) => return Ok(out),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(started.elapsed()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let waited = started.elapsed();
            if waited < self.deadline {
                continue;
            }
            let now = cpu::clock_time(cpu_clock);
            let computing = thread_running(tid) || now > cpu;
            cpu = now;
            if computing && waited < self.deadline * COMPUTE_FACTOR {
                continue;
            }
            let abandon =
                settled.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
            return match abandon {
                Ok(_) => Err(waited),
                // It finished just now: its outcome is sent before it settles.
                Err(_) => outcome.recv().map_err(|_| waited),
            };
        }
    }
}

/// Why a job gave nothing.
enum Failed {
    Panic(AnalysisPanic),
    Gone(ProcessGone),
}

/// Runs `read` of process `key` (step `step`, isolated) with the process pinned from
/// before it to after it (see [`crate::host::pidfd`]): what it read is dropped unless
/// it was the process `key` names all along.
fn pinned<R>(key: ProcessKey, step: Step, read: impl FnOnce() -> R) -> Result<R, Failed> {
    let process = PinnedProcess::open(key.pid, key.start_mono_ns).map_err(Failed::Gone)?;
    let out = on_this_thread(key.pid, step, read).map_err(Failed::Panic)?;
    process.check().map_err(Failed::Gone)?;
    Ok(out)
}

/// Starts a reader thread with a fresh state; returns it once it runs.
fn spawn<S: 'static>(name: &'static str, new_state: fn() -> S) -> std::io::Result<Worker<S>> {
    let (jobs, inbox) = mpsc::channel::<Job<S>>();
    let (started, ids) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name(format!("leakscope-{name}"))
        .spawn(move || {
            // SAFETY: gettid and pthread_self have no preconditions; the clock id is
            // written to a local.
            let ids = unsafe {
                let mut clock: libc::clockid_t = 0;
                let ok = libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) == 0;
                (libc::gettid(), ok.then_some(clock))
            };
            let _ = started.send(ids);
            let mut state = new_state();
            for job in inbox {
                match job(&mut state) {
                    After::Next => {}
                    After::Rebuild => state = new_state(),
                    After::Exit => return,
                }
            }
        })?;
    let (tid, cpu_clock) = ids
        .recv()
        .map_err(|_| std::io::Error::other("the reader thread died"))?;
    let cpu_clock = cpu_clock.unwrap_or(libc::CLOCK_THREAD_CPUTIME_ID);
    Ok(Worker {
        jobs,
        tid,
        cpu_clock,
    })
}

/// Whether leakscope's thread `tid` is running or waiting for a CPU (state `R` in
/// `/proc/self/task/TID/stat`), rather than waiting for something else.
fn thread_running(tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // The state follows the command name (in parentheses).
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        == Some("R")
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, Sender};

    use std::process::Command;

    use super::*;
    use crate::host::pidfd::start_mono_ns;

    /// A key of this process, the `n`th (keys that differ by their exec id only; the
    /// start read once, as the scan dates a process once).
    fn key(n: u32) -> ProcessKey {
        static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let pid = std::process::id();
        ProcessKey {
            pid,
            start_mono_ns: *START.get_or_init(|| start_mono_ns(pid).expect("this process")),
            exec_id: u64::from(n),
        }
    }

    /// A reader whose state counts the jobs its thread ran.
    fn counting(faults: &Arc<Faults>, deadline: Duration) -> Reader<u32> {
        Reader::exactly("test-read", || 0, faults.clone(), deadline)
    }

    /// Check that jobs run on the reader's thread with its state, in turn, and that a
    /// panicking job fails its process only (recorded once) and rebuilds the state.
    #[test]
    fn jobs_run_on_the_reader_thread_with_its_state() {
        let faults = Arc::new(Faults::default());
        let mut reader = counting(&faults, Duration::from_secs(5));
        let me = std::thread::current().id();
        for expected in 1..=3 {
            let (count, other_thread) = reader
                .run(key(1), Step::Unwind, move |n| {
                    *n += 1;
                    (*n, std::thread::current().id() != me)
                })
                .unwrap();
            assert_eq!((count, other_thread), (expected, true));
        }
        let failed = reader.run(key(2), Step::Symbolize, |_| -> u32 { panic!("bad") });
        assert!(matches!(failed, Err(ProcessFault::Panic(p)) if p.step == Step::Symbolize));
        assert!(
            reader.run(key(2), Step::Unwind, |n| *n).is_err(),
            "not read again"
        );
        assert_eq!(
            reader.run(key(1), Step::Unwind, |n| *n),
            Ok(0),
            "state rebuilt"
        );
    }

    /// Check that a job that blocks (on a channel nobody writes, as a read on a file
    /// system that does not answer) is abandoned after the deadline: the scan goes on
    /// with a new thread, the process is not read while the read is stuck, is counted,
    /// and is read again once the read returns; at the cap no new thread is started.
    #[test]
    fn a_blocked_job_is_abandoned_and_counted_until_it_returns() {
        let faults = Arc::new(Faults::default());
        let deadline = Duration::from_millis(300);
        let mut reader = counting(&faults, deadline);
        let (release, blocked): (Sender<()>, Receiver<()>) = mpsc::channel();
        let t0 = Instant::now();
        let stuck = reader.run(key(3), Step::GoTable, move |_| blocked.recv().is_ok());
        let waited = t0.elapsed();
        assert!(
            matches!(&stuck, Err(ProcessFault::Stuck(s)) if s.step == Step::GoTable),
            "{stuck:?}"
        );
        assert!(waited >= deadline && waited < deadline * 3, "{waited:?}");
        assert_eq!(faults.stuck_reads().now, 1);
        assert!(
            reader.run(key(3), Step::Unwind, |_| ()).is_err(),
            "not read while stuck"
        );
        assert_eq!(
            reader.run(key(4), Step::Unwind, |n| *n),
            Ok(0),
            "a new thread"
        );
        release.send(()).unwrap();
        let returned = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            faults.stuck_reads().now == 0
        });
        assert!(returned, "the stuck read returned and was counted so");
        assert_eq!(reader.run(key(3), Step::Unwind, |_| 5), Ok(5), "read again");

        // Fill the cap with blocked jobs: then no new reader is started.
        let mut releases = Vec::new();
        for pid in 0..super::super::faults::MAX_STUCK_READS as u32 {
            let (tx, rx) = mpsc::channel::<()>();
            releases.push(tx);
            assert!(
                reader
                    .run(key(100 + pid), Step::Unwind, move |_| rx.recv().is_ok())
                    .is_err()
            );
        }
        let refused = reader.run(key(200), Step::Unwind, |_| ());
        assert!(
            matches!(refused, Err(ProcessFault::TooManyStuck(_))),
            "{refused:?}"
        );
        drop(releases);
    }

    /// Check that a job of a process whose pid is another's now (a key of another start)
    /// is not run, and that what a job read of a process that exited during it is
    /// dropped, the process not remembered as failed.
    #[test]
    fn a_process_that_is_not_the_one_keyed_is_not_read() {
        let faults = Arc::new(Faults::default());
        let mut reader = counting(&faults, Duration::from_secs(5));
        let mut reused = key(1);
        reused.start_mono_ns -= 5_000_000_000;
        let ran = Arc::new(AtomicU8::new(0));
        let flag = ran.clone();
        let out = reader.run(reused, Step::Unwind, move |_| {
            flag.store(1, Ordering::SeqCst)
        });
        assert_eq!(out, Err(ProcessFault::Gone(ProcessGone::PidReused)));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "not run");

        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        let child_key = ProcessKey {
            pid,
            start_mono_ns: start_mono_ns(pid).unwrap(),
            exec_id: 1,
        };
        assert_eq!(reader.run(child_key, Step::GoTable, |_| 7), Ok(7));
        let exits = reader.run(child_key, Step::GoTable, move |_| {
            let _ = child.kill();
            let _ = child.wait();
            7
        });
        assert_eq!(exits, Err(ProcessFault::Gone(ProcessGone::Exited)));
        assert_eq!(faults.of(&child_key), None, "nothing remembered");
    }

    /// Check that a job that computes past the deadline is waited for (up to the
    /// compute factor), not abandoned.
    #[test]
    fn a_computing_job_is_not_abandoned_at_the_deadline() {
        let faults = Arc::new(Faults::default());
        let mut reader = counting(&faults, Duration::from_millis(200));
        let spun = reader.run(key(5), Step::Symbolize, |_| {
            let t0 = Instant::now();
            let mut x = 0u64;
            while t0.elapsed() < Duration::from_millis(450) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            x > 0
        });
        assert_eq!(spun, Ok(true));
        assert_eq!(faults.stuck_reads().total, 0);
    }
}
