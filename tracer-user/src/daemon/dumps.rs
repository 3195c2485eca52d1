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

use thiserror::Error;

use crate::{model::ProcessKey, pprof, report, summary::WindowSummary};

/// Dump files are `leakscope-<UTC time>-pid<PID>-<comm><suffix>`; rotation touches
/// nothing else in the directory.
const PREFIX: &str = "leakscope-";
/// What one dump consists of: the JSON report and its pprof profile.
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

/// Why the dump directory is not safe for root to write in: someone other than root
/// could plant a symlink or a file there (or swap the directory) and have the daemon
/// overwrite what they choose.
#[derive(Debug, Error)]
pub enum UnsafeDumpDir {
    #[error("--dump-dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--dump-dir {path} is a symlink; give the directory itself")]
    Symlink { path: PathBuf },
    #[error("--dump-dir {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("--dump-dir is unsafe: {path} belongs to uid {uid}, not root")]
    Owner { path: PathBuf, uid: u32 },
    #[error("--dump-dir is unsafe: {path} is writable by group or others (mode {mode:o})")]
    Writable { path: PathBuf, mode: u32 },
}

impl From<UnsafeDumpDir> for std::io::Error {
    fn from(e: UnsafeDumpDir) -> Self {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)
    }
}

/// Creates the dump directory (mode 0700) if needed and checks that it is safe:
/// see [`check_dump_dir`]. Run once at start: an unsafe directory stops the daemon.
pub fn prepare_dump_dir(dir: &Path) -> Result<(), UnsafeDumpDir> {
    if let Err(source) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        return Err(UnsafeDumpDir::Io {
            path: dir.to_path_buf(),
            source,
        });
    }
    check_dump_dir(dir)
}

/// Checks that `dir` is a directory, not a symlink, owned by this (root) user and not
/// writable by group or others, and that every directory above it is owned by root or
/// this user and not writable by others unless sticky (as /tmp is).
pub fn check_dump_dir(dir: &Path) -> Result<(), UnsafeDumpDir> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    check_dump_dir_owned_by(dir, unsafe { libc::geteuid() })
}

fn check_dump_dir_owned_by(dir: &Path, owner: u32) -> Result<(), UnsafeDumpDir> {
    use std::os::unix::fs::MetadataExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnsafeDumpDir::Io { path, source }
    };
    let meta = fs::symlink_metadata(dir).map_err(io(dir))?;
    if meta.file_type().is_symlink() {
        return Err(UnsafeDumpDir::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(UnsafeDumpDir::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let trusted = |uid: u32| uid == owner || uid == 0;
    if !trusted(meta.uid()) {
        return Err(UnsafeDumpDir::Owner {
            path: dir.to_path_buf(),
            uid: meta.uid(),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(UnsafeDumpDir::Writable {
            path: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    let absolute = fs::canonicalize(dir).map_err(io(dir))?;
    for ancestor in absolute.ancestors().skip(1) {
        let meta = fs::metadata(ancestor).map_err(io(ancestor))?;
        if !trusted(meta.uid()) {
            return Err(UnsafeDumpDir::Owner {
                path: ancestor.to_path_buf(),
                uid: meta.uid(),
            });
        }
        let sticky = meta.mode() & libc::S_ISVTX != 0;
        if meta.mode() & 0o002 != 0 && !sticky || meta.mode() & 0o020 != 0 && meta.gid() != 0 {
            return Err(UnsafeDumpDir::Writable {
                path: ancestor.to_path_buf(),
                mode: meta.mode() & 0o7777,
            });
        }
    }
    Ok(())
}

/// Creates `path` for writing: never an existing file, never through a symlink.
fn create_new(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Writes `job` as `<dir>/<stem>.pb.gz` (its pprof profile), then `<dir>/<stem>.json`
/// (so a reader that sees the JSON finds the profile beside it), each with mode 0600,
/// through a temporary file created with `O_EXCL | O_NOFOLLOW`, so a reader never sees
/// half a file and nothing planted in the directory is written through; creates `dir`
/// (mode 0700) if needed and checks it ([`check_dump_dir`]) before every dump. Returns
/// the JSON's path.
pub fn write_dump(dir: &Path, job: &DumpJob) -> std::io::Result<PathBuf> {
    prepare_dump_dir(dir)?;
    let stem = dump_stem(job.at, job.pid, &job.comm);
    write_atomically(
        dir,
        &format!("{stem}.pb.gz"),
        &pprof::to_pprof_gz(&job.summary),
    )?;
    let mut json = report::to_json(&job.summary);
    json.push('\n');
    write_atomically(dir, &format!("{stem}.json"), json.as_bytes())
}

/// Writes `<dir>/<name>` through a temporary file renamed over it.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = match create_new(&temp) {
        // Left by a crash (or planted): removed (a symlink itself, not its target).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::remove_file(&temp)?;
            create_new(&temp)?
        }
        other => other?,
    };
    file.write_all(bytes)?;
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
        model::WaiterKind,
        summary::testutil::{frame, process, site, window},
        verdict::Outcome,
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
                .map(|&pid| p(pid, Outcome::Leak))
                .chain(ok.iter().map(|&pid| p(pid, Outcome::Ok)))
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

    /// Check that a dump is a JSON report with its gzipped profile beside it, that
    /// rotation keeps the newest dumps, deletes all files of an old dump together, and
    /// leaves files not named like dumps alone.
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
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        fs::write(dir.join("leakscope-notes.txt"), b"mine").unwrap();
        let deleted = rotate(&dir, 3).unwrap();
        assert_eq!(deleted.len(), 4, "two dumps of two files each: {deleted:?}");
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected: Vec<String> = stems[2..]
            .iter()
            .flat_map(|s| [format!("{s}.json"), format!("{s}.pb.gz")])
            .collect();
        expected.extend(["leakscope-notes.txt".into(), "notes.txt".into()]);
        expected.sort();
        assert_eq!(left, expected);
        let text = fs::read_to_string(dir.join(&expected[0])).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        let gz = fs::read(dir.join(&expected[1])).unwrap();
        assert!(
            expected[1].ends_with(".pb.gz") && gz.starts_with(&[0x1f, 0x8b]),
            "gzip"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn job(pid: u32) -> DumpJob {
        DumpJob {
            pid,
            comm: "leaky".into(),
            summary: window_of(&[pid], &[]),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leakscope-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Check that a symlink planted where the dump's temporary file or the dump itself
    /// goes is never written through: the target keeps its content, the dump is written.
    #[test]
    fn planted_symlinks_are_not_followed() {
        let dir = scratch("dump-symlink");
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let stem = dump_stem(job(7).at, 7, "leaky");
        std::os::unix::fs::symlink(&victim, dir.join(format!(".{stem}.json.tmp"))).unwrap();
        let path = write_dump(&dir, &job(7)).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());

        let stem = dump_stem(job(8).at, 8, "leaky");
        std::os::unix::fs::symlink(&victim, dir.join(format!("{stem}.json"))).unwrap();
        let path = write_dump(&dir, &job(8)).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(
            fs::symlink_metadata(&path).unwrap().is_file(),
            "link replaced"
        );
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["processes"][0]["pid"], 8);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Check that an unsafe dump directory is refused with its reason: writable by
    /// others, a symlink, not a directory, owned by another user, or below a directory
    /// others may write in without the sticky bit; a new one is created mode 0700.
    #[test]
    fn unsafe_dump_dirs_are_refused() {
        let base = scratch("dump-dir");
        let fresh = base.join("a/b");
        prepare_dump_dir(&fresh).unwrap();
        let mode = fs::metadata(&fresh).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );

        let open = base.join("open");
        fs::create_dir(&open).unwrap();
        set_mode(&open, 0o777);
        assert!(matches!(
            check_dump_dir(&open),
            Err(UnsafeDumpDir::Writable { .. })
        ));
        assert!(
            write_dump(&open, &job(1)).is_err(),
            "no dump into an unsafe dir"
        );
        assert_eq!(fs::read_dir(&open).unwrap().count(), 0);

        let link = base.join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(matches!(
            check_dump_dir(&link),
            Err(UnsafeDumpDir::Symlink { .. })
        ));

        let file = base.join("file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            prepare_dump_dir(&file),
            Err(UnsafeDumpDir::Io { .. } | UnsafeDumpDir::NotADirectory { .. })
        ));

        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if me != 0 {
            assert!(matches!(
                check_dump_dir_owned_by(&fresh, me + 1),
                Err(UnsafeDumpDir::Owner { .. })
            ));
        }
        let below_open = open.join("dumps");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&below_open)
            .unwrap();
        assert!(matches!(
            check_dump_dir(&below_open),
            Err(UnsafeDumpDir::Writable { path, .. }) if path == open
        ));
        set_mode(&open, 0o1777);
        check_dump_dir(&below_open).unwrap();
        fs::remove_dir_all(&base).unwrap();
    }

    /// Check that a dump directory owned by another user is refused (as root: chown).
    #[test]
    fn dump_dir_of_another_user_is_refused() {
        let dir = scratch("dump-owner");
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let other = if me == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            0
        } else {
            me + 1
        };
        let refused = if me == 0 {
            check_dump_dir(&dir)
        } else {
            check_dump_dir_owned_by(&dir, other)
        };
        assert!(
            matches!(refused, Err(UnsafeDumpDir::Owner { .. })),
            "{refused:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
