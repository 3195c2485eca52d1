//! A process's cgroup, as the short names people know it by: the unit or container
//! scope it runs in, and the container id when there is one.

/// A process's container/cgroup labels, read from `/proc/PID/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLabels {
    /// The last component of the process's cgroup path (a systemd unit, a container
    /// scope), container ids cut to 12 hex digits; empty for the root cgroup.
    pub cgroup: String,
    /// The container id (12 hex digits) when the cgroup path names one; else empty.
    pub container: String,
}

/// The labels for a `/proc/PID/cgroup` file's text: the cgroup v2 line (`0::/path`), or
/// on a v1-only host the `name=systemd` hierarchy.
pub fn cgroup_labels(proc_cgroup: &str) -> CgroupLabels {
    let path = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            proc_cgroup.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "name=systemd")
                    .then_some(path)
            })
        })
        .unwrap_or("/")
        .trim();
    let container = path
        .split('/')
        .rev()
        .find_map(container_id)
        .map(|id| id[..12].to_string())
        .unwrap_or_default();
    let last = path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
    let cgroup = match container_id(last) {
        Some(id) => last.replacen(id, &id[..12], 1),
        None => last.to_string(),
    };
    CgroupLabels { cgroup, container }
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

/// Reads a process's cgroup; empty when it has exited or has none.
pub fn read_cgroup(pid: u32) -> CgroupLabels {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|text| cgroup_labels(&text))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that cgroup v2 paths become a short label (unit, container scope with the
    /// id cut to 12 digits), that a v1-only file uses the systemd hierarchy, and the
    /// root cgroup gives no label.
    #[test]
    fn cgroup_labels_are_short() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            cgroup_labels("0::/system.slice/nginx.service\n"),
            CgroupLabels {
                cgroup: "nginx.service".into(),
                container: String::new()
            }
        );
        assert_eq!(
            cgroup_labels(&format!("0::/system.slice/docker-{id}.scope\n")),
            CgroupLabels {
                cgroup: "docker-0123456789ab.scope".into(),
                container: "0123456789ab".into()
            }
        );
        let k8s = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{id}.scope"
        );
        assert_eq!(cgroup_labels(&k8s).container, "0123456789ab");
        let v1 = "12:pids:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-4.scope\n";
        assert_eq!(cgroup_labels(v1).cgroup, "session-4.scope");
        assert_eq!(cgroup_labels("0::/\n"), CgroupLabels::default());
    }
}
