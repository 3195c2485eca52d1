//! The cgroup filesystems, for the limits they put on a process: where each hierarchy
//! is mounted, which directory a process's cgroup is in each, and the `pids` and
//! `memory` controllers' limit and usage files of that directory and its ancestors.
//!
//! A host has cgroup v2 (one unified hierarchy, `memory.max`, `pids.max`), v1 (one
//! hierarchy per controller, `memory.limit_in_bytes`, `pids.max`) or both (hybrid: v1
//! controllers beside a unified hierarchy holding the controllers v1 does not). Every
//! hierarchy mounted (`/proc/self/mountinfo`) and named in `/proc/PID/cgroup` is looked
//! at: a limit may sit on the process's own cgroup or on any ancestor (a systemd slice,
//! a pod above its container), and the tightest is the one that counts. Files are read
//! bounded: a cgroup directory is made by whoever may make cgroups.

use std::{path::Path, sync::Arc};

/// Largest cgroup or mountinfo file read.
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// Ancestors walked above a cgroup at most (the kernel's own nesting is deeper, no
/// real layout is).
const MAX_DEPTH: usize = 64;
/// v1's "no limit": `PAGE_COUNTER_MAX` pages, rounded; anything from 2^62 is none.
const V1_UNLIMITED: u64 = 1 << 62;

/// Which controller a limit is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Controller {
    Pids,
    Memory,
}

/// Which cgroup version a hierarchy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
}

/// One mounted hierarchy that may hold a controller.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    version: Version,
    /// v1: the controllers it holds (`pids`, `memory`, `cpu,cpuacct`...); v2: empty.
    controllers: Vec<String>,
    /// The cgroup the mount shows at its mount point (`/` unless a sub-tree is mounted).
    root: String,
    /// Where it is mounted.
    mount_point: String,
}

/// The cgroup hierarchies mounted here, from `/proc/self/mountinfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    mounts: Vec<Mount>,
}

/// A directory of a controller's hierarchy: the cgroup's files are in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupDir {
    pub version: Version,
    pub path: Arc<str>,
}

/// What limits a process through one controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerLimits {
    /// The process's own cgroup in the hierarchy holding the controller; `None` when no
    /// mounted hierarchy holds it, or the process's cgroup is not visible from here.
    pub own: Option<CgroupDir>,
    /// The process's cgroup and its ancestors that set a limit, innermost first, each
    /// with its limit (tasks or bytes).
    pub limited: Vec<(CgroupDir, u64)>,
}

impl CgroupMounts {
    /// The hierarchies mounted in leakscope's mount namespace.
    pub fn discover() -> Self {
        read_bounded(Path::new("/proc/self/mountinfo"))
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// Reads the text of a `mountinfo` file: its `cgroup` and `cgroup2` mounts.
    pub fn parse(text: &str) -> Self {
        let mounts = text.lines().filter_map(parse_mount).collect();
        Self { mounts }
    }

    /// The directory of the process's cgroup in the hierarchy holding `controller`,
    /// from its `/proc/PID/cgroup` text, when a mount shows it.
    pub fn own_dir(&self, cgroup_file: &str, controller: Controller) -> Option<CgroupDir> {
        let name = match controller {
            Controller::Pids => "pids",
            Controller::Memory => "memory",
        };
        for line in cgroup_file.lines().take(MAX_DEPTH) {
            let mut parts = line.splitn(3, ':');
            let (id, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mount = if id == "0" && list.is_empty() {
                self.mounts.iter().find(|m| m.version == Version::V2)
            } else if list.split(',').any(|c| c == name) {
                self.mounts
                    .iter()
                    .find(|m| m.version == Version::V1 && m.controllers.iter().any(|c| c == name))
            } else {
                None
            };
            let Some(mount) = mount else {
                continue;
            };
            // v2 holds the controller only where no v1 hierarchy does.
            if mount.version == Version::V2 && self.has_v1(name) {
                continue;
            }
            return mount.dir(path);
        }
        None
    }

    fn has_v1(&self, controller: &str) -> bool {
        self.mounts
            .iter()
            .any(|m| m.version == Version::V1 && m.controllers.iter().any(|c| c == controller))
    }

    /// The limits `controller` sets on cgroup `own` and its ancestors up to its
    /// hierarchy's mount point, innermost first, read now.
    pub fn limits_above(&self, own: &CgroupDir, controller: Controller) -> Vec<(CgroupDir, u64)> {
        let mount_point = self
            .mounts
            .iter()
            .map(|m| m.mount_point.as_str())
            .filter(|m| own.path.starts_with(m))
            .max_by_key(|m| m.len())
            .unwrap_or("/");
        let mut limited = Vec::new();
        let mut dir = Path::new(&*own.path);
        for _ in 0..MAX_DEPTH {
            if let Some(limit) = read_limit(dir, own.version, controller) {
                let at = CgroupDir {
                    version: own.version,
                    path: dir.to_string_lossy().into(),
                };
                limited.push((at, limit));
            }
            match dir.parent() {
                Some(parent) if dir != Path::new(mount_point) => dir = parent,
                _ => break,
            }
        }
        limited
    }
}

impl Mount {
    /// The directory of cgroup `path` (as `/proc/PID/cgroup` names it) in this mount.
    fn dir(&self, path: &str) -> Option<CgroupDir> {
        // A cgroup above our namespace's root, or outside the mounted sub-tree.
        if path.starts_with("/..") {
            return None;
        }
        let relative = if self.root == "/" {
            path
        } else {
            path.strip_prefix(self.root.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))?
        };
        let relative = relative.trim_start_matches('/');
        if relative.split('/').any(|c| c == "..") {
            return None;
        }
        let path = if relative.is_empty() {
            self.mount_point.clone()
        } else {
            format!("{}/{relative}", self.mount_point.trim_end_matches('/'))
        };
        Some(CgroupDir {
            version: self.version,
            path: path.into(),
        })
    }
}

/// One `mountinfo` line of a cgroup mount: `ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS] -
/// TYPE SOURCE SUPEROPTS`.
fn parse_mount(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let (root, mount_point) = (fields.nth(3)?, fields.next()?);
    let mut after = after.split(' ');
    let (fs_type, _source, superopts) = (after.next()?, after.next()?, after.next()?);
    let (version, controllers) = match fs_type {
        "cgroup2" => (Version::V2, Vec::new()),
        "cgroup" => {
            let known = ["pids", "memory"];
            let controllers: Vec<String> = superopts
                .split(',')
                .filter(|o| known.contains(o))
                .map(str::to_string)
                .collect();
            (Version::V1, controllers)
        }
        _ => return None,
    };
    Some(Mount {
        version,
        controllers,
        root: unescape_octal(root),
        mount_point: unescape_octal(mount_point),
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\NNN` (octal, one
/// byte: `\000` to `\377`; anything past it is left as it is, not read as a byte
/// that overflows: the cgroup fuzz target's mountinfo, seed mountinfo-octal-past-a-byte).
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\'
                && (b'0'..=b'3').contains(&d[0])
                && d.iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The limit a cgroup directory sets, if any: `pids.max`, `memory.max` (v2) or
/// `memory.limit_in_bytes` (v1); "max" and v1's huge default are none.
fn read_limit(dir: &Path, version: Version, controller: Controller) -> Option<u64> {
    let value = read_number(&dir.join(limit_file(controller, version)))?;
    (value < V1_UNLIMITED).then_some(value)
}

/// The file a controller's limit is set in, by version (as the JSON and metrics name the
/// limit).
pub fn limit_file(controller: Controller, version: Version) -> &'static str {
    match (controller, version) {
        (Controller::Pids, _) => "pids.max",
        (Controller::Memory, Version::V2) => "memory.max",
        (Controller::Memory, Version::V1) => "memory.limit_in_bytes",
    }
}

/// What a cgroup holds now of what `controller` limits: its tasks (`pids.current`), or
/// its memory in use that reclaim cannot simply drop (usage less inactive file pages,
/// the working set the kubelet and cAdvisor count).
pub fn read_usage(dir: &CgroupDir, controller: Controller) -> Option<u64> {
    let dir_path = Path::new(&*dir.path);
    match (controller, dir.version) {
        (Controller::Pids, _) => read_number(&dir_path.join("pids.current")),
        (Controller::Memory, version) => {
            let (usage, inactive) = match version {
                Version::V2 => ("memory.current", "inactive_file"),
                Version::V1 => ("memory.usage_in_bytes", "total_inactive_file"),
            };
            let usage = read_number(&dir_path.join(usage))?;
            let stat = read_bounded(&dir_path.join("memory.stat")).unwrap_or_default();
            let inactive = stat_value(&stat, inactive).unwrap_or(0);
            Some(usage.saturating_sub(inactive))
        }
    }
}

/// A `key value` line's value in a `memory.stat` file.
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A cgroup file holding one number, or "max" (`u64::MAX`).
fn read_number(path: &Path) -> Option<u64> {
    let text = read_bounded(path)?;
    match text.trim() {
        "max" => Some(u64::MAX),
        number => number.parse().ok(),
    }
}

fn read_bounded(path: &Path) -> Option<String> {
    super::procfs::read_text(path, MAX_FILE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PURE_V2: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    fn dir(version: Version, path: &str) -> Option<CgroupDir> {
        Some(CgroupDir {
            version,
            path: path.into(),
        })
    }

    /// Check that on a hybrid host (this project's machines) pids and memory are found
    /// in their v1 hierarchies, not in the unified one, and on a pure v2 host in the
    /// unified hierarchy.
    #[test]
    fn controllers_are_found_in_their_hierarchy() {
        let hybrid = CgroupMounts::parse(HYBRID);
        let cgroup = "9:name=systemd:/\n8:pids:/leaky\n4:memory:/m/leaky\n0::/u\n";
        assert_eq!(
            hybrid.own_dir(cgroup, Controller::Pids),
            dir(Version::V1, "/sys/fs/cgroup/pids/leaky")
        );
        assert_eq!(
            hybrid.own_dir(cgroup, Controller::Memory),
            dir(Version::V1, "/sys/fs/cgroup/memory/m/leaky")
        );
        let v2 = CgroupMounts::parse(PURE_V2);
        let cgroup = "0::/system.slice/leaky.service\n";
        assert_eq!(
            v2.own_dir(cgroup, Controller::Pids),
            dir(Version::V2, "/sys/fs/cgroup/system.slice/leaky.service")
        );
        assert_eq!(
            v2.own_dir("0::/\n", Controller::Memory),
            dir(Version::V2, "/sys/fs/cgroup")
        );
    }

    /// Check that a cgroup outside what leakscope's namespace or the mount shows is not
    /// guessed at, a mounted sub-tree maps paths below it, and escaped mount points are
    /// read back.
    #[test]
    fn invisible_cgroups_and_sub_tree_mounts() {
        let v2 = CgroupMounts::parse(PURE_V2);
        assert_eq!(v2.own_dir("0::/../sibling\n", Controller::Pids), None);
        assert_eq!(v2.own_dir("0::/a/../../b\n", Controller::Pids), None);
        let sub =
            CgroupMounts::parse("50 23 0:40 /kubepods /host\\040cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            sub.own_dir("0::/kubepods/pod1/c1\n", Controller::Pids),
            dir(Version::V2, "/host cgroup/pod1/c1")
        );
        assert_eq!(sub.own_dir("0::/kubepodsX/c\n", Controller::Pids), None);
        assert_eq!(
            CgroupMounts::parse("").own_dir("0::/\n", Controller::Pids),
            None
        );
    }

    /// Check that octal escapes read back one byte each, `\377` at most, and that one
    /// past a byte (`\400`-`\777`, which the kernel never writes) stays as written.
    #[test]
    fn octal_escapes_past_a_byte_stay_as_written() {
        assert_eq!(unescape_octal("/a\\040b\\134c\\011"), "/a b\\c\t");
        assert_eq!(unescape_octal("/\\377"), "/\u{fffd}");
        assert_eq!(unescape_octal("/a\\512c\\777"), "/a\\512c\\777");
        assert_eq!(unescape_octal("\\04"), "\\04");
    }

    /// Check, on a hierarchy laid out in a scratch directory, that the limits of a
    /// cgroup and its ancestors are read up to the mount point ("max" and v1's huge
    /// default are no limit), and that usage is the tasks, or memory less inactive file
    /// pages.
    #[test]
    fn limits_and_usage_of_a_cgroup_and_its_ancestors() {
        let root = std::env::temp_dir().join(format!("leakscope-cgroupfs-{}", std::process::id()));
        let leaf = root.join("slice/leaky");
        std::fs::create_dir_all(&leaf).unwrap();
        let write =
            |dir: &Path, file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        let slice = root.join("slice");
        write(&root, "pids.max", "max\n");
        write(&slice, "pids.max", "100\n");
        write(&leaf, "pids.max", "max\n");
        write(&leaf, "pids.current", "42\n");
        write(&slice, "memory.limit_in_bytes", "9223372036854771712\n");
        write(&leaf, "memory.limit_in_bytes", "268435456\n");
        write(&leaf, "memory.usage_in_bytes", "100000\n");
        write(
            &leaf,
            "memory.stat",
            "cache 5\ninactive_file 1\ntotal_inactive_file 30000\n",
        );
        let mounts = CgroupMounts::parse(&format!(
            "39 31 0:36 / {} rw - cgroup cgroup rw,pids,memory\n",
            root.display()
        ));
        let own = mounts
            .own_dir("5:memory,pids:/slice/leaky\n", Controller::Pids)
            .unwrap();
        assert_eq!(&*own.path, leaf.to_str().unwrap());
        let pids = mounts.limits_above(&own, Controller::Pids);
        assert_eq!(pids.len(), 1);
        assert_eq!(
            (&*pids[0].0.path, pids[0].1),
            (slice.to_str().unwrap(), 100)
        );
        let memory = mounts.limits_above(&own, Controller::Memory);
        assert_eq!(memory.len(), 1, "v1's default is no limit");
        assert_eq!(
            (&*memory[0].0.path, memory[0].1),
            (leaf.to_str().unwrap(), 256 << 20)
        );
        assert_eq!(read_usage(&own, Controller::Pids), Some(42));
        assert_eq!(read_usage(&own, Controller::Memory), Some(70000));
        assert_eq!(
            limit_file(Controller::Memory, Version::V1),
            "memory.limit_in_bytes"
        );
        assert_eq!(limit_file(Controller::Memory, Version::V2), "memory.max");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Check, on this host's real hierarchies, that a process's own pids cgroup is found
    /// and its limits walk up to the mount point without failing.
    #[test]
    fn own_limits_are_read_from_the_real_hierarchies() {
        let mounts = CgroupMounts::discover();
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", std::process::id()));
        let own = mounts.own_dir(&own.unwrap(), Controller::Pids);
        if mounts.mounts.is_empty() {
            assert_eq!(own, None);
            return;
        }
        let own = own.expect("a mounted pids controller holds this process");
        assert!(Path::new(&*own.path).is_dir(), "{own:?}");
        for (at, limit) in &mounts.limits_above(&own, Controller::Pids) {
            assert!(own.path.starts_with(&*at.path));
            assert!(*limit < V1_UNLIMITED);
        }
    }
}
