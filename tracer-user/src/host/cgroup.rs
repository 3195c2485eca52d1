//! Where a process runs, as people know it: its cgroup (a systemd unit, a container
//! scope), its container id and, for a container the kubelet started, its pod: the pod
//! UID and container id read from the cgroup path, the namespace, pod and container
//! names from the kubelet's log directories ([`super::kubelet`]). Read once per process
//! (it is identity) and kept with the process's facts.
//!
//! `/proc/PID/cgroup` has one line per hierarchy: `0::/path` for the v2 unified
//! hierarchy, `N:controllers:/path` for each v1 hierarchy (`N:name=systemd:/path` for
//! systemd's own). A host has either or both (hybrid: v1 controllers beside the unified
//! hierarchy), and a process may sit at the root of one and deep in another: a
//! cgroupfs-driver kubelet on a hybrid host places pods in the v1 controllers only,
//! under `/kubepods/...`, while the unified and `name=systemd` lines stay `/`. So every
//! line is read, and the path that names a pod wins.
//!
//! The kubelet's paths (runtime prefix and id in the last component):
//!
//! | driver | path |
//! |---|---|
//! | systemd | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope` |
//! | systemd | `/kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope` (Guaranteed: no QoS slice), `docker-<id>.scope` (cri-dockerd) |
//! | cgroupfs | `/kubepods/besteffort/pod<uid>/<id>` (containerd, cri-dockerd), `/kubepods/pod<uid>/crio-<id>` |
//!
//! with any prefix (a kubelet `--cgroup-root`, kind's `/kubelet.slice/kubelet-kubepods...`,
//! a node container's `/docker/<id>/kubepods/...`), `/..` components when leakscope runs
//! in a cgroup namespace of its own (a DaemonSet's container), and sub-cgroups a
//! container makes inside its own. The cgroup names under a delegated systemd user
//! manager (`user@UID.service`) are the user's to choose, so a pod-shaped path there
//! names no pod.

use std::{io::Read, time::Instant};

use super::kubelet::{KubeletLogs, is_container_id, pod_uid};

/// At most this much of `/proc/PID/cgroup` is read (one line per hierarchy, each path
/// up to the kernel's PATH_MAX; deeper nesting is not the kubelet's).
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// At most this many lines (hierarchies) are considered.
const MAX_LINES: usize = 64;

/// A process's cgroup labels and pod, read from `/proc/PID/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLabels {
    /// The last component of the process's cgroup path (a systemd unit, a container
    /// scope), container ids cut to 12 hex digits; empty for the root cgroup.
    pub cgroup: String,
    /// The container id (12 hex digits) when the cgroup path names one; else empty.
    pub container: String,
    /// The pod, when the kubelet placed the process.
    pub pod: Option<PodIdentity>,
}

/// A process's pod and container, as kube-state-metrics and cAdvisor name them (the
/// JSON report's `pod`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PodIdentity {
    /// Empty when the kubelet's log directories do not name the pod.
    pub namespace: String,
    /// The pod's name; empty when the kubelet's log directories do not name it.
    pub name: String,
    /// The pod's UID (with dashes, as the API has it).
    pub uid: String,
    /// The container's name; empty for the pod's own cgroup, its sandbox (pause), CRI-O's
    /// conmon, or when no log link names it.
    pub container: String,
    /// The container's full id (64 hex digits); empty for the pod's own cgroup.
    pub container_id: String,
}

impl PodIdentity {
    /// Whether the log directories have named everything the path allows.
    pub fn is_named(&self) -> bool {
        !self.namespace.is_empty()
            && !self.name.is_empty()
            && (self.container_id.is_empty() || !self.container.is_empty())
    }

    /// For people: `pod shop/checkout-7d9f, container api`, or by UID and id where the
    /// kubelet's log directories do not name them. Not escaped: the names are checked
    /// DNS names, the rest hex.
    pub fn describe(&self) -> String {
        let pod = if self.name.is_empty() {
            format!("pod uid {}", self.uid)
        } else {
            format!("pod {}/{}", self.namespace, self.name)
        };
        match (self.container.as_str(), self.container_id.get(..12)) {
            ("", None) => pod,
            ("", Some(id)) => format!("{pod}, container id {id}"),
            (name, _) => format!("{pod}, container {name}"),
        }
    }
}

/// The kubelet's QoS class of a pod, from its cgroup's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// Who names the pod's cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupDriver {
    /// systemd slices and scopes (`kubepods-pod<uid>.slice`, UID with underscores).
    Systemd,
    /// Plain directories (`pod<uid>`).
    Cgroupfs,
}

/// The container runtime, from the prefix of the container's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerRuntime {
    /// `cri-containerd-<id>.scope`.
    Containerd,
    /// `crio-<id>.scope`, `crio-<id>`.
    CriO,
    /// `docker-<id>.scope` (cri-dockerd).
    Docker,
    /// A bare id (cgroupfs driver: containerd, or cri-dockerd), or one the path does not
    /// name.
    Unnamed,
}

/// What a kubelet-made cgroup path says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletCgroup {
    /// The pod's UID, with dashes.
    pub uid: String,
    /// `None` when the QoS cgroup is hidden (behind a cgroup namespace's `/..`).
    pub qos: Option<QosClass>,
    pub driver: CgroupDriver,
    /// The container's runtime and full id; `None` for the pod's own cgroup and for
    /// CRI-O's conmon (the runtime's monitor, not the container).
    pub container: Option<(ContainerRuntime, String)>,
}

/// The pod a cgroup path names, if the kubelet made it.
pub fn kubelet_cgroup(path: &str) -> Option<KubeletCgroup> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, component) in components.iter().enumerate() {
        let parent = i.checked_sub(1).map(|p| components[p]);
        let Some((driver, qos, uid)) = pod_component(component, parent) else {
            continue;
        };
        if components[..i].iter().any(|c| is_user_delegated(c)) {
            return None;
        }
        let container = components
            .get(i + 1)
            .and_then(|c| container_component(c))
            .flatten();
        return Some(KubeletCgroup {
            uid,
            qos,
            driver,
            container,
        });
    }
    None
}

/// A pod's cgroup: `[<prefix>-]kubepods[-<qos>]-pod<uid with _>.slice` (systemd) or
/// `pod<uid>` under `kubepods`, `burstable` or `besteffort` (cgroupfs).
fn pod_component(
    component: &str,
    parent: Option<&str>,
) -> Option<(CgroupDriver, Option<QosClass>, String)> {
    if let Some(stem) = component.strip_suffix(".slice") {
        let (qos_slice, uid) = stem.rsplit_once("-pod")?;
        let uid = pod_uid(uid, '_')?;
        let is = |suffix: &str| qos_slice == suffix || qos_slice.ends_with(&format!("-{suffix}"));
        let qos = if is("kubepods") {
            QosClass::Guaranteed
        } else if is("kubepods-burstable") {
            QosClass::Burstable
        } else if is("kubepods-besteffort") {
            QosClass::BestEffort
        } else {
            return None;
        };
        return Some((CgroupDriver::Systemd, Some(qos), uid));
    }
    let uid = pod_uid(component.strip_prefix("pod")?, '-')?;
    let qos = match parent {
        Some("kubepods") => Some(QosClass::Guaranteed),
        Some("burstable") => Some(QosClass::Burstable),
        Some("besteffort") => Some(QosClass::BestEffort),
        Some("..") | None => None,
        Some(_) => return None,
    };
    Some((CgroupDriver::Cgroupfs, qos, uid))
}

/// The container cgroup under a pod's: `Some(None)` for CRI-O's conmon, `None` for what
/// names no container.
fn container_component(component: &str) -> Option<Option<(ContainerRuntime, String)>> {
    let stem = component.strip_suffix(".scope").unwrap_or(component);
    if stem
        .strip_prefix("crio-conmon-")
        .is_some_and(is_container_id)
    {
        return Some(None);
    }
    for (prefix, runtime) in [
        ("cri-containerd-", ContainerRuntime::Containerd),
        ("crio-", ContainerRuntime::CriO),
        ("docker-", ContainerRuntime::Docker),
        ("", ContainerRuntime::Unnamed),
    ] {
        if let Some(id) = stem.strip_prefix(prefix).filter(|id| is_container_id(id)) {
            return Some(Some((runtime, id.to_string())));
        }
    }
    container_id(component).map(|id| Some((ContainerRuntime::Unnamed, id.to_string())))
}

/// Cgroups a systemd user manager delegates to its user, who names them at will.
fn is_user_delegated(component: &str) -> bool {
    component == "user.slice" || (component.starts_with("user@") && component.ends_with(".service"))
}

/// The 64-hex-digit container id inside a cgroup path component, e.g. in
/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `libpod-<id>.scope` or `<id>`.
fn container_id(component: &str) -> Option<&str> {
    let bytes = component.as_bytes();
    let mut start = 0;
    while start + 64 <= bytes.len() {
        let run = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        if run >= 64 {
            return Some(&component[start..start + 64]);
        }
        start += run + 1;
    }
    None
}

/// Which hierarchy a `/proc/PID/cgroup` line is of, in the order its path is preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hierarchy {
    /// `0::` (cgroup v2).
    Unified,
    /// `N:name=systemd:` (systemd's v1 hierarchy).
    SystemdV1,
    /// `N:controllers:` (a v1 controller hierarchy).
    Controller,
}

/// What `/proc/PID/cgroup` says, before any name is looked up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The path the labels come from: the first (unified, then `name=systemd`, then
    /// controllers) that names a pod, else the unified or `name=systemd` path if not the
    /// root, else the deepest controller path; `/` when none.
    pub path: String,
    /// The pod, when the path is the kubelet's.
    pub kubelet: Option<KubeletCgroup>,
}

impl ProcCgroup {
    /// Reads the text of a `/proc/PID/cgroup` file (at most [`MAX_LINES`] lines; a
    /// line that is not `id:controllers:/path` is skipped).
    pub fn parse(text: &str) -> Self {
        let mut lines: Vec<(Hierarchy, &str)> = text
            .lines()
            .take(MAX_LINES)
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                if !path.starts_with('/') {
                    return None;
                }
                let hierarchy = if id == "0" && controllers.is_empty() {
                    Hierarchy::Unified
                } else if controllers.split(',').any(|c| c == "name=systemd") {
                    Hierarchy::SystemdV1
                } else {
                    Hierarchy::Controller
                };
                Some((hierarchy, path))
            })
            .collect();
        lines.sort_by_key(|(hierarchy, _)| *hierarchy);
        if let Some((path, kubelet)) = lines
            .iter()
            .find_map(|(_, path)| kubelet_cgroup(path).map(|k| (*path, k)))
        {
            return ProcCgroup {
                path: path.to_string(),
                kubelet: Some(kubelet),
            };
        }
        let depth = |path: &str| path.split('/').filter(|c| !c.is_empty()).count();
        let path = lines
            .iter()
            .filter(|(h, path)| *h != Hierarchy::Controller && depth(path) > 0)
            .map(|(_, path)| *path)
            .next()
            .or_else(|| {
                // The deepest controller path; the first of equals.
                lines
                    .iter()
                    .filter(|(_, path)| depth(path) > 0)
                    .rev()
                    .max_by_key(|(_, path)| depth(path))
                    .map(|(_, path)| *path)
            })
            .unwrap_or("/");
        ProcCgroup {
            path: path.to_string(),
            kubelet: None,
        }
    }

    /// The labels of the path, with the pod named as far as `kubelet`'s directories
    /// allow (looked up as of `now`).
    pub fn labels(&self, kubelet: &mut KubeletLogs, now: Instant) -> CgroupLabels {
        let path = self.path.trim();
        let id = path.split('/').rev().find_map(container_id);
        let last = path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
        let cgroup = match container_id(last) {
            Some(id) => last.replacen(id, &id[..12], 1),
            None => last.to_string(),
        };
        let pod = match &self.kubelet {
            Some(placement) => Some(PodIdentity {
                uid: placement.uid.clone(),
                container_id: placement
                    .container
                    .as_ref()
                    .map(|(_, id)| id.clone())
                    .unwrap_or_default(),
                ..PodIdentity::default()
            }),
            // A path that hides its pod (a cgroup namespace's `/..` over it): a
            // container the kubelet's links name is still one of a pod.
            None => id
                .and_then(|id| kubelet.container(id, now).map(|_| id))
                .map(|id| PodIdentity {
                    container_id: id.to_string(),
                    ..PodIdentity::default()
                }),
        };
        let mut labels = CgroupLabels {
            cgroup,
            container: id.map(|id| id[..12].to_string()).unwrap_or_default(),
            pod,
        };
        if let Some(named) = complete_pod_names(&labels, kubelet, now) {
            labels = named;
        }
        labels
    }
}

/// The labels with the pod's names filled in from the kubelet's log directories, when
/// they name more than `labels` has (a container's log link is made just after it
/// starts: a process seen at once is named a moment later); `None` when nothing more is
/// known. Cheap when there is nothing to look up: see [`KubeletLogs`].
pub fn complete_pod_names(
    labels: &CgroupLabels,
    kubelet: &mut KubeletLogs,
    now: Instant,
) -> Option<CgroupLabels> {
    let pod = labels.pod.as_ref().filter(|pod| !pod.is_named())?;
    // Looked up first, cloned only when something is found: a sandbox, never named,
    // costs a lookup per scan.
    let container = (!pod.container_id.is_empty() && pod.container.is_empty())
        .then(|| kubelet.container(&pod.container_id, now))
        .flatten();
    let uid = match &container {
        Some(names) if pod.uid.is_empty() => kubelet.uid_of(&names.namespace, &names.pod, now),
        _ => None,
    };
    let uid = uid.as_deref().unwrap_or(&pod.uid);
    let names = match &container {
        Some(names) => Some((names.namespace.clone(), names.pod.clone())),
        None if pod.name.is_empty() && !uid.is_empty() => kubelet
            .pod(uid, now)
            .map(|names| (names.namespace, names.name)),
        None => None,
    };
    if container.is_none() && names.is_none() {
        return None;
    }
    let mut named = pod.clone();
    named.uid = uid.to_string();
    if let Some(names) = container {
        named.container = names.container;
    }
    if let Some((namespace, name)) = names {
        (named.namespace, named.name) = (namespace, name);
    }
    Some(CgroupLabels {
        pod: Some(named),
        ..labels.clone()
    })
}

/// Reads a process's cgroup (at most [`MAX_FILE_BYTES`]; a line cut there is dropped)
/// and names its pod; empty when it has exited or has none.
pub fn read_cgroup(pid: u32, kubelet: &mut KubeletLogs) -> CgroupLabels {
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/cgroup")) else {
        return CgroupLabels::default();
    };
    let mut bytes = Vec::new();
    if file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).is_err() {
        return CgroupLabels::default();
    }
    ProcCgroup::of_file(&bytes).labels(kubelet, Instant::now())
}

impl ProcCgroup {
    /// What the first [`MAX_FILE_BYTES`] of a `/proc/PID/cgroup` file say: a line cut
    /// at the limit is dropped, bytes that are not UTF-8 are replaced.
    pub fn of_file(bytes: &[u8]) -> Self {
        let mut bytes = &bytes[..bytes.len().min(MAX_FILE_BYTES as usize)];
        if bytes.len() as u64 == MAX_FILE_BYTES
            && let Some(end) = bytes.iter().rposition(|&b| b == b'\n')
        {
            bytes = &bytes[..end + 1];
        }
        Self::parse(&String::from_utf8_lossy(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::kubelet::KubeletLogDirs;

    const UID: &str = "6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f";
    const STATIC_UID: &str = "0123456789abcdef0123456789abcdef";

    fn id() -> String {
        "0123456789abcdef".repeat(4)
    }

    fn no_kubelet() -> KubeletLogs {
        KubeletLogs::new(KubeletLogDirs {
            pods: "/nonexistent/leakscope/pods".into(),
            containers: "/nonexistent/leakscope/containers".into(),
        })
    }

    fn labels(text: &str) -> CgroupLabels {
        ProcCgroup::parse(text).labels(&mut no_kubelet(), Instant::now())
    }

    /// The systemd driver's slice for a pod of `qos` ("" for Guaranteed).
    fn systemd_pod(qos: &str, uid: &str) -> String {
        let uid = uid.replace('-', "_");
        match qos {
            "" => format!("/kubepods.slice/kubepods-pod{uid}.slice"),
            qos => format!("/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice"),
        }
    }

    /// The cgroupfs driver's directory for a pod of `qos` ("" for Guaranteed).
    fn cgroupfs_pod(qos: &str, uid: &str) -> String {
        match qos {
            "" => format!("/kubepods/pod{uid}"),
            qos => format!("/kubepods/{qos}/pod{uid}"),
        }
    }

    /// Check that cgroup v2 paths become a short label (unit, container scope with the
    /// id cut to 12 digits), that a v1-only file uses the systemd hierarchy, and the
    /// root cgroup gives no label.
    #[test]
    fn cgroup_labels_are_short() {
        let id = id();
        assert_eq!(
            labels("0::/system.slice/nginx.service\n"),
            CgroupLabels {
                cgroup: "nginx.service".into(),
                ..CgroupLabels::default()
            }
        );
        assert_eq!(
            labels(&format!("0::/system.slice/docker-{id}.scope\n")),
            CgroupLabels {
                cgroup: "docker-0123456789ab.scope".into(),
                container: "0123456789ab".into(),
                pod: None,
            }
        );
        let v1 = "12:pids:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-4.scope\n";
        assert_eq!(labels(v1).cgroup, "session-4.scope");
        assert_eq!(labels("0::/\n"), CgroupLabels::default());
        assert_eq!(labels(""), CgroupLabels::default());
    }

    /// Check that every runtime, driver and QoS class the kubelet makes gives the pod's
    /// UID (dashes restored from the systemd driver's underscores), QoS class, driver and
    /// the container's runtime and id, from real-world paths.
    #[test]
    fn kubelet_paths_of_every_runtime_driver_and_qos_class() {
        let id = id();
        let cases = [
            // containerd, systemd driver (kubeadm's default on cgroup v2).
            (
                format!(
                    "{}/cri-containerd-{id}.scope",
                    systemd_pod("burstable", UID)
                ),
                CgroupDriver::Systemd,
                Some(QosClass::Burstable),
                ContainerRuntime::Containerd,
            ),
            (
                format!("{}/cri-containerd-{id}.scope", systemd_pod("", UID)),
                CgroupDriver::Systemd,
                Some(QosClass::Guaranteed),
                ContainerRuntime::Containerd,
            ),
            // CRI-O, systemd driver (OpenShift).
            (
                format!("{}/crio-{id}.scope", systemd_pod("besteffort", UID)),
                CgroupDriver::Systemd,
                Some(QosClass::BestEffort),
                ContainerRuntime::CriO,
            ),
            // cri-dockerd (Docker), systemd driver.
            (
                format!("{}/docker-{id}.scope", systemd_pod("burstable", UID)),
                CgroupDriver::Systemd,
                Some(QosClass::Burstable),
                ContainerRuntime::Docker,
            ),
            // containerd or cri-dockerd, cgroupfs driver: a bare id.
            (
                format!("{}/{id}", cgroupfs_pod("besteffort", UID)),
                CgroupDriver::Cgroupfs,
                Some(QosClass::BestEffort),
                ContainerRuntime::Unnamed,
            ),
            (
                format!("{}/{id}", cgroupfs_pod("", UID)),
                CgroupDriver::Cgroupfs,
                Some(QosClass::Guaranteed),
                ContainerRuntime::Unnamed,
            ),
            // CRI-O, cgroupfs driver.
            (
                format!("{}/crio-{id}", cgroupfs_pod("burstable", UID)),
                CgroupDriver::Cgroupfs,
                Some(QosClass::Burstable),
                ContainerRuntime::CriO,
            ),
            // kind: the kubelet's --cgroup-root under the node container's.
            (
                format!(
                    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
                     kubelet-kubepods-besteffort-pod{}.slice/cri-containerd-{id}.scope",
                    UID.replace('-', "_")
                ),
                CgroupDriver::Systemd,
                Some(QosClass::BestEffort),
                ContainerRuntime::Containerd,
            ),
            (
                format!("/docker/{id}/kubelet/kubepods/burstable/pod{UID}/{id}"),
                CgroupDriver::Cgroupfs,
                Some(QosClass::Burstable),
                ContainerRuntime::Unnamed,
            ),
            // Seen from a cgroup namespace of its own (leakscope in a DaemonSet's
            // container): ancestors are `..`; a container's own sub-cgroup is ignored.
            (
                format!(
                    "/../../kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope/init.scope",
                    UID.replace('-', "_")
                ),
                CgroupDriver::Systemd,
                Some(QosClass::Burstable),
                ContainerRuntime::Containerd,
            ),
            (
                format!("/../../pod{UID}/{id}"),
                CgroupDriver::Cgroupfs,
                None,
                ContainerRuntime::Unnamed,
            ),
        ];
        for (path, driver, qos, runtime) in cases {
            let placed = kubelet_cgroup(&path).unwrap_or_else(|| panic!("no pod in {path}"));
            assert_eq!(placed.uid, UID, "{path}");
            assert_eq!(placed.driver, driver, "{path}");
            assert_eq!(placed.qos, qos, "{path}");
            assert_eq!(placed.container, Some((runtime, id.clone())), "{path}");
        }
        // A static pod's UID is its manifest's hash.
        let path = format!("{}/{id}", cgroupfs_pod("burstable", STATIC_UID));
        assert_eq!(kubelet_cgroup(&path).unwrap().uid, STATIC_UID);
    }

    /// Check that the pod's own cgroup and CRI-O's conmon give the pod but no
    /// container, and that paths that only look like a pod's give none: a user's
    /// delegated subtree, a UID of the wrong shape, an unknown QoS parent.
    #[test]
    fn pod_level_cgroups_and_lookalikes() {
        let id = id();
        let pod_only = kubelet_cgroup(&systemd_pod("besteffort", UID)).unwrap();
        assert_eq!(pod_only.container, None);
        let conmon = format!("{}/crio-conmon-{id}.scope", systemd_pod("burstable", UID));
        let conmon = kubelet_cgroup(&conmon).unwrap();
        assert_eq!((conmon.uid.as_str(), conmon.container), (UID, None));
        for not_a_pod in [
            format!(
                "/user.slice/user-1000.slice/user@1000.service/app.slice{}/{id}",
                cgroupfs_pod("burstable", UID)
            ),
            format!(
                "/user.slice/user-1000.slice/user@1000.service{}/cri-containerd-{id}.scope",
                systemd_pod("", UID)
            ),
            format!("/kubepods/burstable/pod{}/{id}", &UID[..35]),
            format!("/kubepods/burstable/pod{}/{id}", UID.to_uppercase()),
            format!("/kubepods.slice/kubepods-pod{UID}.slice/{id}"),
            format!("/kubepods/other/pod{UID}/{id}"),
            format!("/system.slice/pod{UID}.slice/{id}"),
            "/system.slice/podman.service".to_string(),
            "/".to_string(),
        ] {
            assert_eq!(kubelet_cgroup(&not_a_pod), None, "{not_a_pod}");
        }
    }

    /// Check that every line of the file is read: a cgroupfs-driver pod that only the v1
    /// controllers place (the unified and name=systemd lines at `/`, the class of
    /// "reports no cgroup at all"), a systemd-driver pod in the unified hierarchy of a
    /// hybrid host, a v1-only host, and a process placed in some controllers only.
    #[test]
    fn every_line_of_hybrid_and_v1_files_is_read() {
        let id = id();
        let v1_only_pod = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{id}\n11:name=systemd:/\n\
             4:memory:/process_api/0dd4ea862207ac99b51276fe6d42d875\n\
             1:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{id}\n0::/\n"
        );
        let parsed = ProcCgroup::parse(&v1_only_pod);
        assert_eq!(parsed.kubelet.unwrap().uid, UID);
        let labelled = labels(&v1_only_pod);
        assert_eq!(labelled.cgroup, "0123456789ab");
        assert_eq!(labelled.container, "0123456789ab");
        assert_eq!(
            labelled.pod,
            Some(PodIdentity {
                uid: UID.into(),
                container_id: id.clone(),
                ..PodIdentity::default()
            })
        );

        let hybrid_systemd = format!(
            "9:name=systemd:/\n8:pids:/\n0::{}/cri-containerd-{id}.scope\n",
            systemd_pod("burstable", UID)
        );
        let labelled = labels(&hybrid_systemd);
        assert_eq!(labelled.cgroup, "cri-containerd-0123456789ab.scope");
        assert_eq!(labelled.pod.unwrap().uid, UID);

        let v1_systemd = format!(
            "10:memory:{pod}/docker-{id}.scope\n1:name=systemd:{pod}/docker-{id}.scope\n",
            pod = systemd_pod("", UID)
        );
        assert_eq!(labels(&v1_systemd).pod.unwrap().container_id, id);

        // No pod: unified, then name=systemd, then the deepest controller path.
        let some_controllers = "9:name=systemd:/\n8:pids:/batch\n4:memory:/batch/job-7\n0::/\n";
        assert_eq!(labels(some_controllers).cgroup, "job-7");
        let unified_first =
            "9:name=systemd:/init.scope\n8:pids:/a/b/c\n0::/system.slice/cron.service\n";
        assert_eq!(labels(unified_first).cgroup, "cron.service");
    }

    /// Check that the kubelet's log directories name the pod (by UID) and the container
    /// (by id), that a container whose log link comes after its first scan is named by
    /// [`complete_pod_names`] later, that a path hiding its pod (a cgroup namespace)
    /// gets it from the container's link, and that a plain Docker container is no pod.
    #[test]
    fn pods_are_named_from_the_kubelet_log_directories() {
        use crate::host::kubelet::{RELIST_EVERY, fake::FakeLogs};
        let (api, sidecar, docker) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let fake = FakeLogs::new("cgroup-names");
        fake.pod(&format!("shop_checkout-7d9f8b6c4-x2x9z_{UID}"));
        fake.link(&format!("checkout-7d9f8b6c4-x2x9z_shop_api-{api}.log"));
        let mut kubelet = KubeletLogs::new(fake.dirs());
        let t0 = Instant::now();
        let file = |id: &str| {
            format!(
                "0::{}/cri-containerd-{id}.scope\n",
                systemd_pod("burstable", UID)
            )
        };
        let named = ProcCgroup::parse(&file(&api)).labels(&mut kubelet, t0);
        let pod = PodIdentity {
            namespace: "shop".into(),
            name: "checkout-7d9f8b6c4-x2x9z".into(),
            uid: UID.into(),
            container: "api".into(),
            container_id: api.clone(),
        };
        assert_eq!(named.pod.as_ref(), Some(&pod));
        assert_eq!(named.cgroup, "cri-containerd-aaaaaaaaaaaa.scope");
        assert_eq!(complete_pod_names(&named, &mut kubelet, t0), None);

        let early = ProcCgroup::parse(&file(&sidecar)).labels(&mut kubelet, t0);
        let early_pod = early.pod.clone().unwrap();
        assert_eq!(
            (early_pod.name.as_str(), early_pod.container.as_str()),
            ("checkout-7d9f8b6c4-x2x9z", "")
        );
        fake.link(&format!(
            "checkout-7d9f8b6c4-x2x9z_shop_sidecar-{sidecar}.log"
        ));
        let later = complete_pod_names(&early, &mut kubelet, t0 + RELIST_EVERY).unwrap();
        assert_eq!(later.pod.unwrap().container, "sidecar");

        let hidden = format!("0::/../cri-containerd-{api}.scope\n");
        assert_eq!(
            ProcCgroup::parse(&hidden).labels(&mut kubelet, t0).pod,
            Some(pod)
        );
        let plain = format!("0::/system.slice/docker-{docker}.scope\n");
        let plain = ProcCgroup::parse(&plain).labels(&mut kubelet, t0 + RELIST_EVERY * 2);
        assert_eq!(
            (plain.container.as_str(), plain.pod),
            ("cccccccccccc", None)
        );
    }

    /// Check that hostile files give a bounded, plain outcome: odd bytes, lines without
    /// colons or paths, thousands of lines (only the first ones read), a long path.
    #[test]
    fn hostile_cgroup_files_are_bounded() {
        let id = id();
        assert_eq!(
            labels("garbage\n:::\n0::relative\n\u{0}\u{1b}[31m\n"),
            CgroupLabels::default()
        );
        let many = "5:pids:/a\n".repeat(10_000) + &format!("0::/kubepods/pod{UID}/{id}\n");
        let parsed = ProcCgroup::parse(&many);
        assert_eq!(parsed.kubelet, None, "only the first {MAX_LINES} lines");
        assert_eq!(parsed.path, "/a");
        let long = format!("0::/{}\n", "x/".repeat(30_000));
        assert_eq!(labels(&long).cgroup, "x");
        let odd = "0::/system.slice/we\u{fffd}ird\u{1b}name.service\n";
        assert_eq!(labels(odd).cgroup, "we\u{fffd}ird\u{1b}name.service");
    }
}
