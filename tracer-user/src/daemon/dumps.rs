//! Automatic dumps: when a process's verdict turns to "leak", its report (the
//! `diagnose --json` document, with that process only) is written under `--dump-dir`,
//! with its pprof profile beside it.
//!
//! [`DumpPlanner`] decides (pure, clock passed in): one dump per leak episode, at most
//! one per process per `cooldown`, at most `max_per_hour` in all; an episode the limits
//! put off is retried at later reports while it lasts. [`write_dump`] writes a dump
//! atomically and [`rotate`] keeps the newest `keep`.

use std::{
    collections::{HashMap, VecDeque},
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use crate::{census::ProcessKey, report, summary::WindowSummary};

/// Dump files are `leakscope-<UTC time>-pid<PID>-<comm><suffix>`; rotation touches
/// nothing else in the directory.
const PREFIX: &str = "leakscope-";
/// What one dump may consist of: the JSON report, and later its pprof profile.
const SUFFIXES: [&str; 2] = [".json", ".pb.gz"];

/// The dump rules.
#[derive(Clone, Debug)]
pub struct DumpPolicy {
    pub dir: PathBuf,
    /// Least time between two dumps of one process.
    pub cooldown: Duration,
    /// Most dumps in any hour, all processes together.
    pub max_per_hour: usize,
    /// Dumps kept in `dir`; older ones are deleted.
    pub keep: usize,
}

/// What the planner saw change in one report.
#[derive(Debug, Default)]
pub struct Plan {
    /// Processes whose verdict turned to "leak" in this report.
    pub new_leaks: Vec<u32>,
    /// Processes whose verdict went back to "ok".
    pub cleared: Vec<u32>,
    /// Dumps to write now.
    pub dumps: Vec<DumpJob>,
    /// Leak episodes first put off by a rate limit in this report: (pid, why).
    pub deferred: Vec<(u32, &'static str)>,
}

/// One dump to write.
#[derive(Debug)]
pub struct DumpJob {
    pub pid: u32,
    pub comm: String,
    /// The window with this process only.
    pub summary: WindowSummary,
    pub at: SystemTime,
}

#[derive(Debug, Default)]
struct Episode {
    dumped: bool,
    deferred: bool,
}

/// Decides which leaks get a dump; see the module doc.
#[derive(Debug)]
pub struct DumpPlanner {
    cooldown: Duration,
    max_per_hour: usize,
    /// Processes leaking at the last report.
    leaking: HashMap<ProcessKey, Episode>,
    last_dump: HashMap<ProcessKey, Instant>,
    recent: VecDeque<Instant>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl DumpPlanner {
    pub fn new(cooldown: Duration, max_per_hour: usize) -> Self {
        Self {
            cooldown,
            max_per_hour,
            leaking: HashMap::new(),
            last_dump: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// Compares `summary` with the previous one and says what to dump now.
    pub fn plan(&mut self, summary: &WindowSummary, now: Instant, wall: SystemTime) -> Plan {
        let mut plan = Plan::default();
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= HOUR)
        {
            self.recent.pop_front();
        }
        let cooldown = self.cooldown;
        self.last_dump
            .retain(|_, &mut t| now.duration_since(t) < cooldown);
        let mut leaking = HashMap::new();
        for p in &summary.processes {
            let id = p.key;
            let pid = id.pid;
            if !p.is_leak() {
                if self.leaking.contains_key(&id) {
                    plan.cleared.push(pid);
                }
                continue;
            }
            let mut episode = self.leaking.remove(&id).unwrap_or_else(|| {
                plan.new_leaks.push(pid);
                Episode::default()
            });
            if !episode.dumped {
                let why = if self.last_dump.contains_key(&id) {
                    Some("this process was dumped less than --dump-cooldown ago")
                } else if self.recent.len() >= self.max_per_hour {
                    Some("--dump-max-per-hour dumps were written in the last hour")
                } else {
                    None
                };
                match why {
                    None => {
                        episode.dumped = true;
                        self.last_dump.insert(id, now);
                        self.recent.push_back(now);
                        plan.dumps.push(DumpJob {
                            pid,
                            comm: p.facts.comm.clone(),
                            summary: summary.only(|q| q.key == id),
                            at: wall,
                        });
                    }
                    Some(why) if !episode.deferred => {
                        episode.deferred = true;
                        plan.deferred.push((pid, why));
                    }
                    Some(_) => {}
                }
            }
            leaking.insert(id, episode);
        }
        self.leaking = leaking;
        plan
    }
}

/// The file name (without suffix) of a dump: sorts by time.
pub fn dump_stem(at: SystemTime, pid: u32, comm: &str) -> String {
    let time: String = humantime::format_rfc3339_millis(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let comm: String = comm
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{time}-pid{pid}-{comm}")
}

/// Writes `job` as `<dir>/<stem>.json` (mode 0600, through a temporary file, so a
/// reader never sees half a dump); creates `dir` (mode 0700) if needed.
pub fn write_dump(dir: &Path, job: &DumpJob) -> std::io::Result<PathBuf> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let stem = dump_stem(job.at, job.pid, &job.comm);
    let path = dir.join(format!("{stem}.json"));
    let temp = dir.join(format!(".{stem}.json.tmp"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(report::to_json(&job.summary).as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, &path)?;
    Ok(path)
}

/// Deletes the oldest dumps (all files of a stem together) beyond the newest `keep`;
/// returns the files deleted. Files not named like dumps are left alone.
pub fn rotate(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut by_stem: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PREFIX) {
            continue;
        }
        let Some(stem) = SUFFIXES.iter().find_map(|s| name.strip_suffix(s)) else {
            continue;
        };
        by_stem
            .entry(stem.to_string())
            .or_default()
            .push(entry.path());
    }
    let mut stems: Vec<String> = by_stem.keys().cloned().collect();
    // The time comes first in the stem: newest last.
    stems.sort();
    let cut = stems.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for stem in &stems[..cut] {
        for path in &by_stem[stem] {
            match fs::remove_file(path) {
                Ok(()) => deleted.push(path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        census::WaiterKind,
        summary::testutil::{frame, process, site, window},
        verdict::GrowthVerdict,
    };

    fn window_of(leaking: &[u32], ok: &[u32]) -> WindowSummary {
        let p = |pid: u32, verdict| {
            let stack = vec![frame("wait_here", None, 0x1000)];
            process(
                pid,
                "native",
                vec![site(WaiterKind::Thread, "futex", verdict, 5, stack)],
            )
        };
        window(
            leaking
                .iter()
                .map(|&pid| p(pid, GrowthVerdict::Leak))
                .chain(ok.iter().map(|&pid| p(pid, GrowthVerdict::Ok)))
                .collect(),
        )
    }

    fn pids(plan: &Plan) -> Vec<u32> {
        plan.dumps.iter().map(|d| d.pid).collect()
    }

    /// Check that a leak is dumped once when its verdict turns to leak, not again while
    /// it stays a leak, and that the dump holds that process only.
    #[test]
    fn dumps_once_per_leak_episode() {
        let mut planner = DumpPlanner::new(Duration::from_secs(600), 10);
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let plan = planner.plan(&window_of(&[1], &[2]), t0, wall);
        assert_eq!(pids(&plan), [1]);
        assert_eq!(plan.new_leaks, [1]);
        assert_eq!(plan.dumps[0].summary.processes.len(), 1);
        assert_eq!(plan.dumps[0].summary.host, "h");
        let plan = planner.plan(&window_of(&[1], &[2]), t0 + Duration::from_secs(2), wall);
        assert!(plan.dumps.is_empty() && plan.new_leaks.is_empty());
        let plan = planner.plan(&window_of(&[], &[1, 2]), t0 + Duration::from_secs(4), wall);
        assert_eq!(plan.cleared, [1]);
    }

    /// Check that a process flapping between leak and ok is dumped at most once per
    /// cooldown, and that the put-off episode is dumped once the cooldown has passed.
    #[test]
    fn per_process_cooldown_defers_then_dumps() {
        let mut planner = DumpPlanner::new(Duration::from_secs(600), 10);
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(pids(&planner.plan(&window_of(&[1], &[]), at(0), wall)), [1]);
        planner.plan(&window_of(&[], &[1]), at(10), wall);
        let plan = planner.plan(&window_of(&[1], &[]), at(20), wall);
        assert!(plan.dumps.is_empty());
        assert_eq!(plan.new_leaks, [1]);
        assert_eq!(plan.deferred.len(), 1, "counted once per episode");
        let plan = planner.plan(&window_of(&[1], &[]), at(30), wall);
        assert!(plan.dumps.is_empty() && plan.deferred.is_empty());
        assert_eq!(
            pids(&planner.plan(&window_of(&[1], &[]), at(600), wall)),
            [1]
        );
    }

    /// Check that the hourly limit holds across processes and frees up after an hour.
    #[test]
    fn hourly_limit_across_processes() {
        let mut planner = DumpPlanner::new(Duration::from_secs(1), 2);
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let plan = planner.plan(&window_of(&[1, 2, 3], &[]), t0, wall);
        assert_eq!(pids(&plan), [1, 2]);
        assert_eq!(plan.deferred, [(3, plan.deferred[0].1)]);
        let plan = planner.plan(&window_of(&[1, 2, 3], &[]), t0 + HOUR, wall);
        assert_eq!(pids(&plan), [3]);
    }

    /// Check that rotation keeps the newest dumps, deletes all files of an old dump
    /// together, and leaves files not named like dumps alone.
    #[test]
    fn rotation_keeps_newest_and_ignores_other_files() {
        let dir = std::env::temp_dir().join(format!("leakscope-rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut stems = Vec::new();
        for i in 0..5u64 {
            let job = DumpJob {
                pid: 100 + i as u32,
                comm: "a.b/c".into(),
                summary: window_of(&[100 + i as u32], &[]),
                at: base + Duration::from_millis(1500 * i),
            };
            let path = write_dump(&dir, &job).unwrap();
            let stem = dump_stem(job.at, job.pid, &job.comm);
            assert!(path.ends_with(format!("{stem}.json")), "{path:?}");
            stems.push(stem);
        }
        assert!(stems[0].starts_with("leakscope-20270115T"), "{}", stems[0]);
        assert!(stems[0].ends_with("-pid100-a_b_c"), "{}", stems[0]);
        fs::write(dir.join(format!("{}.pb.gz", stems[0])), b"x").unwrap();
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        fs::write(dir.join("leakscope-notes.txt"), b"mine").unwrap();
        let deleted = rotate(&dir, 3).unwrap();
        assert_eq!(deleted.len(), 3, "{deleted:?}");
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected: Vec<String> = stems[2..].iter().map(|s| format!("{s}.json")).collect();
        expected.extend(["leakscope-notes.txt".into(), "notes.txt".into()]);
        expected.sort();
        assert_eq!(left, expected);
        let text = fs::read_to_string(dir.join(&expected[0])).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
