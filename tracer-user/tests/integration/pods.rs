//! Pods: a C leaker and a Go leaker, the two containers of one pod, moved into
//! kubelet-shaped cgroups made on this host (the v1 controllers beside the v2 unified
//! hierarchy at /sys/fs/cgroup/unified), with the kubelet's log directories faked in a
//! scratch directory. `diagnose --json`, the text report and the daemon's metrics must
//! name each one's namespace, pod and container; once, a real Prometheus with the
//! shipped rules must record the fleet series for them, and every query of the fleet
//! dashboard must run and find them. The cgroups made are removed afterwards, even when
//! a test fails.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::daemon::Daemon;
use test_support::http::{Series, parse_exposition};

use crate::common::{
    DIAGNOSE_SECONDS, GO_NEWEST, GoBuild, Program, Spawned, TempDir, WARM_UP, diagnose_with,
    go_program_path, program_path, require_root, run_leakscope, start_daemon, wait_for,
    wait_healthy,
};
use crate::daemon::{
    Prometheus, dashboard_exprs_of, deploy_dir, http_get, prom_query, sample_value,
};

/// Where the cgroup hierarchies are mounted.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long the daemon may take to judge both leakers and Prometheus to record them.
const METRICS_TIMEOUT: Duration = Duration::from_secs(90);
const NAMESPACE: &str = "shop";

/// The cgroups of this test's pod, removed when dropped: its own (the pod's and its
/// containers', unique to the run) deepest first, after moving whatever still runs in
/// them to the hierarchy's root; then the shared levels above (`kubepods.slice`,
/// `kubepods/besteffort`, ...) when they are empty. Other runs of these tests (another
/// checkout's, at the same time) share those levels: one may remove an empty level
/// while another is about to make a pod below it, which then makes the level again.
/// (The forecast tests make theirs with it too, with no shared levels.)
pub(crate) struct MadeCgroups {
    /// (hierarchy root, directory, the pod's own), outermost first.
    pub(crate) dirs: Vec<(PathBuf, PathBuf, bool)>,
}

/// Tries to make a pod's cgroups when other runs keep removing the shared levels.
const MAKE_ATTEMPTS: usize = 20;

impl MadeCgroups {
    /// Makes `shared/own` (each missing level) in the hierarchy mounted at `root`:
    /// `shared` the levels other pods share, `own` the pod's.
    pub(crate) fn make(&mut self, root: &Path, shared: &str, own: &str) -> PathBuf {
        for _ in 0..MAKE_ATTEMPTS {
            if let Some(dir) = self.try_make(root, shared, own) {
                return dir;
            }
        }
        panic!(
            "cannot make the cgroup {shared}/{own} in {}: its levels keep vanishing",
            root.display()
        )
    }

    /// One attempt: `None` when a level was removed meanwhile (by another run's cleanup).
    fn try_make(&mut self, root: &Path, shared: &str, own: &str) -> Option<PathBuf> {
        let levels = |path: &str, is_own: bool| -> Vec<(String, bool)> {
            path.split('/')
                .filter(|c| !c.is_empty())
                .map(|c| (c.to_string(), is_own))
                .collect()
        };
        let mut dir = root.to_path_buf();
        for (component, is_own) in levels(shared, false).into_iter().chain(levels(own, true)) {
            dir.push(component);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return None,
                Err(e) => panic!("cannot make the cgroup {}: {e}", dir.display()),
            }
            if !self.dirs.iter().any(|(_, known, _)| *known == dir) {
                self.dirs.push((root.to_path_buf(), dir.clone(), is_own));
            }
        }
        Some(dir)
    }
}

impl Drop for MadeCgroups {
    fn drop(&mut self) {
        for (root, dir, own) in self.dirs.iter().rev() {
            if !own {
                // A shared level: removed when empty (one try; another run may be in it).
                let _ = fs::remove_dir(dir);
                continue;
            }
            for pid in fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                let _ = fs::write(root.join("cgroup.procs"), pid);
            }
            // A cgroup whose last process exited a moment ago may still be busy.
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = fs::remove_dir(dir) {
                if e.kind() == ErrorKind::NotFound {
                    break;
                }
                if Instant::now() >= deadline {
                    eprintln!("cannot remove the test cgroup {}: {e}", dir.display());
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// One way the kubelet lays out a pod's cgroups.
struct Shape {
    /// For messages: runtime, driver, hierarchy, QoS class.
    name: &'static str,
    /// The hierarchies (under /sys/fs/cgroup) the pod is placed in.
    hierarchies: &'static [&'static str],
    /// The pod's cgroup, from its UID.
    pod_cgroup: fn(&str) -> String,
    /// A container's cgroup (below its pod's), from its id.
    container_cgroup: fn(&str) -> String,
}

/// A pod's two containers, as the kubelet would name them.
struct PodUnderTest {
    uid: String,
    name: String,
    /// (container name, full id, program).
    containers: [(&'static str, String); 2],
}

/// A fresh UUID from the kernel (lowercase hex, like a pod UID).
fn uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("read /proc/sys/kernel/random/uuid")
        .trim()
        .to_string()
}

impl PodUnderTest {
    fn new() -> Self {
        let uid = uuid();
        let id = || format!("{}{}", uuid(), uuid()).replace('-', "");
        PodUnderTest {
            name: format!("checkout-7d9f8b6c4-{}", &uid[..5]),
            uid,
            containers: [("worker", id()), ("api", id())],
        }
    }

    /// The kubelet's log directories for the pod, in `root`: `pods/<namespace>_<pod>_<uid>/
    /// <container>/0.log` and the links `containers/<pod>_<namespace>_<container>-<id>.log`.
    fn fake_kubelet_logs(&self, root: &Path) -> (PathBuf, PathBuf) {
        let (pods, containers) = (root.join("pods"), root.join("containers"));
        let pod_dir = pods.join(format!("{NAMESPACE}_{}_{}", self.name, self.uid));
        for (container, id) in &self.containers {
            fs::create_dir_all(pod_dir.join(container)).unwrap();
            let log = pod_dir.join(container).join("0.log");
            fs::write(&log, "").unwrap();
            fs::create_dir_all(&containers).unwrap();
            let link = format!("{}_{NAMESPACE}_{container}-{id}.log", self.name);
            std::os::unix::fs::symlink(&log, containers.join(link)).unwrap();
        }
        (pods, containers)
    }

    fn expected_pod(&self, container: usize) -> Value {
        let (name, id) = &self.containers[container];
        serde_json::json!({
            "namespace": NAMESPACE,
            "name": self.name,
            "uid": self.uid,
            "container": name,
            "container_id": id,
        })
    }
}

/// Starts the C leaker (container 0) and the Go leaker (container 1) and moves each into
/// its container's cgroup in every hierarchy; warmed up.
fn start_leakers_in(container_dirs: &[Vec<PathBuf>; 2]) -> [Spawned; 2] {
    let c = Spawned::launch(
        Program::MutexLeak.name(),
        Command::new(program_path(Program::MutexLeak)),
    );
    let mut go = Command::new(go_program_path(GoBuild::plain(GO_NEWEST, "leaks")));
    go.arg("send");
    let go = Spawned::launch("goleaks send", go);
    let mut leakers = [c, go];
    for (leaker, dirs) in leakers.iter().zip(container_dirs) {
        for dir in dirs {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, leaker.pid().to_string()).unwrap_or_else(|e| {
                panic!(
                    "cannot move {} into {}: {e}",
                    leaker.name(),
                    procs.display()
                )
            });
        }
    }
    thread::sleep(WARM_UP);
    for leaker in &mut leakers {
        leaker.assert_running("during warm-up");
    }
    leakers
}

/// The daemon's series of `pid` named `name`.
fn series_of<'a>(all: &'a [Series], name: &str, pid: u32) -> Option<&'a Series> {
    all.iter()
        .find(|s| s.name == name && s.label("pid") == Some(pid.to_string().as_str()))
}

/// What each test checks its pod's leakers in.
#[derive(Clone, Copy)]
struct Outputs {
    /// The text report, beside `diagnose --json`.
    text: bool,
    /// The daemon's metrics.
    metrics: bool,
    /// The fleet rules and dashboard in a real Prometheus (needs `metrics`).
    fleet: bool,
}

/// A pod of the C and Go leakers in its cgroups, with its kubelet log directories.
/// Dropped in field order: the leakers die before their cgroups are removed.
struct PlacedPod {
    _leakers: [Spawned; 2],
    pids: [u32; 2],
    _cgroups: MadeCgroups,
    pod: PodUnderTest,
    /// `--pod-log-dir DIR --container-log-dir DIR`.
    log_dir_args: Vec<String>,
    scratch: TempDir,
}

/// Places a fresh pod of the C and Go leakers in `shape`.
fn place_pod(shape: &Shape) -> PlacedPod {
    require_root();
    let roots: Vec<PathBuf> = shape
        .hierarchies
        .iter()
        .map(|h| Path::new(CGROUP_ROOT).join(h))
        .collect();
    for root in &roots {
        assert!(
            root.join("cgroup.procs").is_file(),
            "{}: no cgroup hierarchy mounted at {} (this test needs the host's cgroups, \
             v1 controllers and the v2 unified hierarchy, mounted and writable by root)",
            shape.name,
            root.display()
        );
    }
    let pod = PodUnderTest::new();
    let scratch = TempDir::new(&format!("leakscope-pods-{}", &pod.uid[..8]));
    let (pod_logs, container_logs) = pod.fake_kubelet_logs(&scratch.0);
    let mut cgroups = MadeCgroups { dirs: Vec::new() };
    let pod_cgroup = (shape.pod_cgroup)(&pod.uid);
    // The levels above the pod's own (`kubepods.slice/kubepods-burstable.slice`) are
    // shared with other pods.
    let (shared, pod_level) = pod_cgroup.rsplit_once('/').unwrap_or(("", &pod_cgroup));
    let own_paths = pod
        .containers
        .clone()
        .map(|(_, id)| format!("{pod_level}/{}", (shape.container_cgroup)(&id)));
    let container_paths = own_paths.clone().map(|own| format!("{shared}/{own}"));
    let container_dirs = own_paths.map(|own| {
        roots
            .iter()
            .map(|root| cgroups.make(root, shared, &own))
            .collect::<Vec<_>>()
    });
    let leakers = start_leakers_in(&container_dirs);
    let pids = leakers.each_ref().map(Spawned::pid);
    for (pid, path) in pids.iter().zip(&container_paths) {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            text.contains(&format!("/{path}\n")),
            "{}: {text}",
            shape.name
        );
    }
    PlacedPod {
        _leakers: leakers,
        pids,
        _cgroups: cgroups,
        pod,
        log_dir_args: vec![
            "--pod-log-dir".into(),
            pod_logs.display().to_string(),
            "--container-log-dir".into(),
            container_logs.display().to_string(),
        ],
        scratch,
    }
}

/// Runs a pod of the C and Go leakers in `shape`; checks that `diagnose --json` names
/// each one's pod and container, and the other `outputs`. The daemon is started first
/// and the diagnoses run one after the other, so that no more than two leakscopes
/// share the machine's two cores per test.
fn check_pod_shape(shape: &Shape, outputs: Outputs) {
    let placed = place_pod(shape);
    let mut daemon = outputs.metrics.then(|| {
        let mut args = vec!["--interval", "1", "--window", "60"];
        args.extend(placed.log_dir_args.iter().map(String::as_str));
        start_daemon(&placed.scratch, &placed.pids, &args, &[])
    });
    check_json_report(shape, &placed);
    if outputs.text {
        check_text_report(shape, &placed);
    }
    if let Some(daemon) = &mut daemon {
        check_metrics(shape, &placed, daemon);
        if outputs.fleet {
            check_fleet_view(&placed.scratch, daemon.port(), &placed.pod);
        }
    }
    drop(daemon);
    drop(placed);
}

/// `diagnose --json`: each leaker a leak, in its container of the pod.
fn check_json_report(shape: &Shape, placed: &PlacedPod) {
    let args: Vec<&str> = placed.log_dir_args.iter().map(String::as_str).collect();
    let (code, report) = diagnose_with(&placed.pids, DIAGNOSE_SECONDS, &args);
    assert_eq!(code, 1, "{}: a leak was found: {report:#}", shape.name);
    for (i, pid) in placed.pids.iter().enumerate() {
        let process = report["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == *pid)
            .unwrap_or_else(|| panic!("{}: pid {pid} not reported: {report:#}", shape.name));
        assert_eq!(process["verdict"], "leak", "{}: {process:#}", shape.name);
        assert_eq!(
            process["pod"],
            placed.pod.expected_pod(i),
            "{}: {process:#}",
            shape.name
        );
        let id = &placed.pod.containers[i].1;
        assert_eq!(process["container"], &id[..12], "{}", shape.name);
    }
}

/// The text report: under each LEAK line, its pod and container.
fn check_text_report(shape: &Shape, placed: &PlacedPod) {
    let mut args = vec![
        "diagnose".to_string(),
        "--duration".into(),
        DIAGNOSE_SECONDS.to_string(),
    ];
    for pid in placed.pids {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    args.extend(placed.log_dir_args.iter().cloned());
    let text = run_leakscope(&args, Duration::from_secs(120));
    assert_eq!(text.exit_code, 1, "{}: {text:?}", shape.name);
    for (pid, (container, _)) in placed.pids.iter().zip(&placed.pod.containers) {
        let expected = format!(
            "  pod {NAMESPACE}/{}, container {container}",
            placed.pod.name
        );
        let leak_line = format!("LEAK  pid {pid} ");
        let mut lines = text
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with(&leak_line));
        assert!(
            lines.next().is_some(),
            "{}: no LEAK line for {pid}:\n{}",
            shape.name,
            text.stdout
        );
        assert_eq!(
            lines.next(),
            Some(expected.as_str()),
            "{}:\n{}",
            shape.name,
            text.stdout
        );
    }
}

/// The daemon's metrics: each leaker's series judged a leak, with namespace, pod,
/// container and container_id.
fn check_metrics(shape: &Shape, placed: &PlacedPod, daemon: &mut Daemon) {
    wait_healthy(daemon);
    let judged = wait_for(METRICS_TIMEOUT, || {
        daemon
            .process()
            .assert_running("while its metrics were awaited");
        let (_, exposition) = http_get(daemon.port(), "/metrics").ok()?;
        let all = parse_exposition(&exposition);
        placed
            .pids
            .iter()
            .map(|pid| {
                series_of(&all, "leakscope_process_leak", *pid)
                    .filter(|s| s.value == 1.0)
                    .cloned()
            })
            .collect::<Option<Vec<Series>>>()
    });
    let leaks = judged.unwrap_or_else(|| {
        panic!(
            "{}: the daemon did not judge both leakers in {METRICS_TIMEOUT:?}:\n{}",
            shape.name,
            daemon.log()
        )
    });
    for (series, (container, id)) in leaks.iter().zip(&placed.pod.containers) {
        let expected = [
            ("namespace", NAMESPACE),
            ("pod", placed.pod.name.as_str()),
            ("container", container),
            ("container_id", &id[..12]),
        ];
        for (label, value) in expected {
            assert_eq!(
                series.label(label),
                Some(value),
                "{}: {series:?}",
                shape.name
            );
        }
    }
}

/// A real Prometheus scraping the daemon with the shipped rules records the pod's
/// containers and the leak sites, and every query of the fleet dashboard runs and,
/// with the pod selected, finds them (the workload panel needs kube-state-metrics,
/// which is not here).
fn check_fleet_view(scratch: &TempDir, daemon_port: u16, pod: &PodUnderTest) {
    let rules = fs::read_to_string(deploy_dir().join("prometheus/rules.yml")).unwrap();
    let mut prometheus = Prometheus::start(scratch, daemon_port, &rules);
    let prom_port = prometheus.port;
    prometheus.wait_ready();
    let pod_selector = format!("namespace=\"{NAMESPACE}\",pod=\"{}\"", pod.name);
    let recorded = wait_for(METRICS_TIMEOUT, || {
        prometheus.assert_running();
        let containers = prom_query(
            prom_port,
            &format!(
                "namespace_pod_container:leakscope_leaking_processes:sum{{{pod_selector}}} == 1"
            ),
        );
        let sites = prom_query(prom_port, "site:leakscope_leaked_waiters:sum");
        let site_named = |f: &str| {
            sites
                .iter()
                .any(|s| s["metric"]["site"].as_str().is_some_and(|l| l.contains(f)))
        };
        (containers.len() == 2 && site_named("leak_on_mutex") && site_named("main.sendResult"))
            .then_some(())
    });
    assert!(
        recorded.is_some(),
        "the fleet rules did not record the pod's leaking containers and sites in {METRICS_TIMEOUT:?}:\n{}",
        prometheus.log()
    );
    let per_pod = prom_query(
        prom_port,
        &format!("namespace_pod:leakscope_leaking_processes:sum{{{pod_selector}}}"),
    );
    assert_eq!(per_pod.len(), 1);
    assert_eq!(sample_value(&per_pod[0]), 2.0, "{per_pod:?}");

    for expr in dashboard_exprs_of("leakscope-fleet.json") {
        let query = expr
            .replace("$namespace", NAMESPACE)
            .replace("$pod", &pod.name);
        // A variable's `label_values(SELECTOR, label)`: its selector must find series.
        let query = match query.strip_prefix("label_values(") {
            Some(rest) => rest
                .rsplit_once(',')
                .map(|(selector, _)| selector.to_string())
                .unwrap_or(query.clone()),
            None => query,
        };
        let result = prom_query(prom_port, &query);
        if !query.contains("workload") {
            assert!(
                !result.is_empty(),
                "the fleet dashboard's `{expr}` finds nothing"
            );
        }
    }
}

/// Check that in cgroup v2 (the unified hierarchy), with the systemd driver and
/// containerd, a Burstable pod's C and Go leakers are named by namespace, pod and
/// container (the pod UID written with underscores) in JSON, text and metrics, and that
/// the fleet rules and dashboard of a real Prometheus find them.
#[test]
fn v2_systemd_driver_containerd_pod_is_named() {
    check_pod_shape(
        &Shape {
            name: "containerd, systemd driver, cgroup v2, Burstable",
            hierarchies: &["unified"],
            pod_cgroup: |uid| {
                format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
                    uid.replace('-', "_")
                )
            },
            container_cgroup: |id| format!("cri-containerd-{id}.scope"),
        },
        Outputs {
            text: true,
            metrics: true,
            fleet: true,
        },
    );
}

/// Check that in the v1 controllers only (pids, cpu, cpuacct: the unified and
/// name=systemd lines stay `/`), with the cgroupfs driver and cri-dockerd's bare ids,
/// a BestEffort pod's C and Go leakers are named in JSON, text and metrics (such a
/// process once reported no cgroup at all).
#[test]
fn v1_cgroupfs_driver_docker_pod_is_named() {
    check_pod_shape(
        &Shape {
            name: "cri-dockerd, cgroupfs driver, cgroup v1 controllers, BestEffort",
            hierarchies: &["pids", "cpu", "cpuacct"],
            pod_cgroup: |uid| format!("kubepods/besteffort/pod{uid}"),
            container_cgroup: |id| id.to_string(),
        },
        Outputs {
            text: true,
            metrics: true,
            fleet: false,
        },
    );
}

/// Check that on a hybrid host whose kubelet uses the systemd driver in the v1
/// hierarchies (name=systemd and the controllers), a Guaranteed CRI-O pod's C and Go
/// leakers are named in the JSON report (the text and metrics render the same facts,
/// checked by the two tests above).
#[test]
fn v1_systemd_driver_crio_guaranteed_pod_is_named() {
    check_pod_shape(
        &Shape {
            name: "CRI-O, systemd driver, cgroup v1 with name=systemd, Guaranteed",
            hierarchies: &["systemd", "pids"],
            pod_cgroup: |uid| format!("kubepods.slice/kubepods-pod{}.slice", uid.replace('-', "_")),
            container_cgroup: |id| format!("crio-{id}.scope"),
        },
        Outputs {
            text: false,
            metrics: false,
            fleet: false,
        },
    );
}
