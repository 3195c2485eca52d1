//! /proc/PID/cgroup as whoever names cgroups can shape it (any bytes but `/` and NUL in
//! a name, any depth), and the kubelet's log directory entry names: every parse gives a
//! bounded, plain outcome, and what it says about a pod keeps its shape.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use tracer_user::host::{
    cgroup::{ProcCgroup, kubelet_cgroup},
    kubelet::{
        KubeletLogDirs, KubeletLogs, is_container_id, is_dns_label, is_dns_subdomain,
        parse_container_link, parse_pod_dir, pod_uid,
    },
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = ProcCgroup::parse(&text);
    if let Some(pod) = &parsed.kubelet {
        assert_eq!(pod_uid(&pod.uid, '-').as_deref(), Some(pod.uid.as_str()));
        if let Some((_, id)) = &pod.container {
            assert!(is_container_id(id));
        }
    }
    let mut kubelet = KubeletLogs::new(KubeletLogDirs {
        pods: "/nonexistent/leakscope-fuzz/pods".into(),
        containers: "/nonexistent/leakscope-fuzz/containers".into(),
    });
    let labels = parsed.labels(&mut kubelet, Instant::now());
    assert!(!labels.cgroup.contains('/'));
    assert!(labels.container.is_empty() || labels.container.len() == 12);
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
