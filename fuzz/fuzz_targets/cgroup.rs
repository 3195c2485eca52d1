//! /proc/PID/cgroup as whoever names cgroups can shape it (any bytes but `/` and NUL in
//! a name, any depth, up to the 64 KiB read), and the kubelet's log directory entry
//! names (up to a listing's 20,000 entries of 255 bytes): every parse gives a bounded,
//! plain outcome, and what it says about a pod keeps its shape. The cgroup's limits are
//! then looked for (`cgroupfs.rs`) under the mounts of a hybrid, a pure v2 and a
//! sub-tree-mounted host: a cgroup's name never leads outside the mount (no `..`).
//! A fourth part is read as `/proc/self/mountinfo` (leakscope's own: parsed, no more).
//!
//! Input (after [`grow`]): the cgroup file, the pod log directory's entries (one per
//! line), the container log directory's entries, the mountinfo, separated by `\n##\n`.
#![no_main]

use std::{
    path::{Component, Path},
    time::Instant,
};

use leakscope_fuzz::{grow, split_parts};
use libfuzzer_sys::fuzz_target;
use tracer_user::host::{
    cgroup::{ProcCgroup, kubelet_cgroup},
    cgroupfs::{CgroupMounts, Controller},
    kubelet::{
        KubeletLogs, is_container_id, is_dns_label, is_dns_subdomain, parse_container_link,
        parse_pod_dir, pod_uid,
    },
};

/// The cgroup file read (64 KiB), two listings of 20,000 names of 255 bytes and a
/// mountinfo of 256 KiB, with room to spare past each.
const MAX_INPUT: usize = (64 << 10) + 2 * 20_001 * 256 + (256 << 10);

/// Mount tables as hosts have them: (mountinfo, the mount points).
const HOSTS: [(&str, &[&str]); 3] = [
    (
        "35 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
         39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        &[
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified",
        ],
    ),
    (
        "30 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        &["/sys/fs/cgroup"],
    ),
    (
        "50 23 0:40 /kubepods /host\\040cgroup rw - cgroup2 cgroup2 rw\n",
        &["/host cgroup"],
    ),
];

/// The cgroup directories named by `cgroup_file` under each host's mounts stay under
/// one of its mount points.
fn check_limit_dirs(cgroup_file: &str) {
    for (mountinfo, points) in HOSTS {
        let mounts = CgroupMounts::parse(mountinfo);
        for controller in [Controller::Pids, Controller::Memory] {
            let Some(dir) = mounts.own_dir(cgroup_file, controller) else {
                continue;
            };
            let path = Path::new(&*dir.path);
            assert!(
                points.iter().any(|p| path.starts_with(p))
                    && !path.components().any(|c| c == Component::ParentDir),
                "cgroup file {cgroup_file:?} leads to {path:?}"
            );
        }
    }
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let data = grow(data, MAX_INPUT);
    let parts = split_parts(&data, b"\n##\n", 4);
    let _ = CgroupMounts::parse(&String::from_utf8_lossy(parts[3]));
    let now = Instant::now();
    let mut kubelet = KubeletLogs::with_entries(lines(parts[1]), lines(parts[2]), now);
    let parsed = ProcCgroup::of_file(parts[0]);
    if let Some(pod) = &parsed.kubelet {
        assert_eq!(pod_uid(&pod.uid, '-').as_deref(), Some(pod.uid.as_str()));
        if let Some((_, id)) = &pod.container {
            assert!(is_container_id(id));
        }
    }
    let labels = parsed.labels(&mut kubelet, now);
    assert!(!labels.cgroup.contains('/'));
    assert!(labels.container.is_empty() || labels.container.len() == 12);
    if let Some(pod) = &labels.pod {
        assert!(pod.namespace.is_empty() || is_dns_label(&pod.namespace));
        assert!(pod.name.is_empty() || is_dns_subdomain(&pod.name));
        assert!(pod.container.is_empty() || is_dns_label(&pod.container));
        assert!(pod.container_id.is_empty() || is_container_id(&pod.container_id));
    }
    let text = String::from_utf8_lossy(parts[0]);
    check_limit_dirs(&text);
    for line in text.lines().take(64) {
        let _ = kubelet_cgroup(line);
        if let Some((names, uid)) = parse_pod_dir(line) {
            assert!(is_dns_label(&names.namespace) && is_dns_subdomain(&names.name));
            assert_eq!(pod_uid(&uid, '-'), Some(uid));
        }
        if let Some((names, id)) = parse_container_link(line) {
            assert!(is_dns_label(&names.container) && is_container_id(&id));
        }
    }
});
