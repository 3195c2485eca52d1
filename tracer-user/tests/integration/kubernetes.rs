//! The DaemonSet's security context is enough: the image built by the shipped
//! Containerfile runs in a real container (podman) exactly as
//! `deploy/kubernetes/daemonset.yaml` declares it (host pid namespace, every
//! capability dropped but the ones it adds, no new privileges, read-only root file
//! system, its mounts, its arguments, its web configuration secret), read from the
//! manifest, and finds the leaks each capability is there for: a root C leaker (the BPF
//! iterator: BPF, PERFMON), a Go leaker of another user whose binary root may not read
//! (SYS_PTRACE, DAC_READ_SEARCH), a C leaker whose executable was deleted
//! (CHECKPOINT_RESTORE, through /proc/PID/map_files).
//!
//! Two things differ from a cluster, both for this machine's sake: the container uses
//! the host's network (the test scrapes it on a free loopback port, put in place of
//! `--listen`), and the scan is narrowed to the test's programs with `--pid` and a short
//! `--interval`/`--window` (the host is shared with other tests). podman runs with runc
//! (crun refuses this machine's hybrid cgroups) and with explicit ulimits (this sandbox
//! may not raise its own).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use test_support::http::{Series, parse_exposition};

use crate::common::{
    GO_NEWEST, GoBuild, GoFlavor, Program, Spawned, TempDir, WARM_UP, free_port, go_program_path,
    program_path, require_root, sites, wait_for,
};
use crate::daemon::{deploy_dir, tool};
use crate::web::{PASSWORD, USER, curl_tls, write_web_config};

/// The test's base image, made from Debian's packages (what distroless/cc holds).
const BASE_IMAGE: &str = "localhost/leakscope-test-base:bookworm";
/// The packages in it.
const BASE_PACKAGES: [&str; 3] = ["base-files", "libc6", "libgcc-s1"];
/// How long the containerized daemon may take to find all three leaks.
const LEAKS_TIMEOUT: Duration = Duration::from_secs(120);
/// nobody's uid and gid.
const NOBODY: u32 = 65534;

/// The DaemonSet's one container, as the manifest declares it.
fn daemonset() -> (Value, Value) {
    let text = fs::read_to_string(deploy_dir().join("kubernetes/daemonset.yaml"))
        .expect("deploy/kubernetes/daemonset.yaml");
    let yaml: serde_norway::Value = serde_norway::from_str(&text).expect("the DaemonSet is YAML");
    let ds = serde_json::to_value(yaml).expect("YAML as JSON");
    let pod = ds["spec"]["template"]["spec"].clone();
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    (pod.clone(), containers[0].clone())
}

/// The capabilities the DaemonSet adds (as podman names them, without `CAP_`).
pub fn declared_capabilities() -> Vec<String> {
    let (_, container) = daemonset();
    let caps = &container["securityContext"]["capabilities"];
    assert_eq!(
        caps["drop"],
        serde_json::json!(["ALL"]),
        "drops every capability"
    );
    caps["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .map(|c| c.as_str().expect("a capability name").to_string())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `command`, panicking with its output unless it succeeds; its stdout.
fn must(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn podman() -> Command {
    let mut command = Command::new(tool("podman"));
    command.args(["--runtime", "runc"]);
    command
}

/// The base image, made once from Debian's packages (`apt-get download`, unpacked,
/// `podman import`).
fn base_image(scratch: &Path) {
    let exists = podman()
        .args(["image", "exists", BASE_IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return;
    }
    let debs = scratch.join("debs");
    let root = scratch.join("base-root");
    fs::create_dir_all(&debs).unwrap();
    fs::create_dir_all(&root).unwrap();
    must(
        Command::new("apt-get")
            .arg("download")
            .args(BASE_PACKAGES)
            .current_dir(&debs),
    );
    for deb in fs::read_dir(&debs).unwrap().flatten() {
        must(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb.path())
                .arg(&root),
        );
    }
    let tar = scratch.join("base.tar");
    must(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    must(podman().arg("import").arg(&tar).arg(BASE_IMAGE));
}

/// The image of the shipped Containerfile, with this test build's leakscope as the
/// release binary it copies.
fn build_image(scratch: &Path, tag: &str) {
    base_image(scratch);
    let context = scratch.join("context");
    fs::create_dir_all(context.join("target/release")).unwrap();
    fs::copy(
        env!("CARGO_BIN_EXE_leakscope"),
        context.join("target/release/leakscope"),
    )
    .unwrap();
    let root = deploy_dir().join("..");
    fs::copy(root.join("Containerfile"), context.join("Containerfile")).unwrap();
    fs::copy(
        root.join(".containerignore"),
        context.join(".containerignore"),
    )
    .unwrap();
    must(
        podman()
            .args(["build", "--quiet", "--build-arg"])
            .arg(format!("BASE={BASE_IMAGE}"))
            .args(["-t", tag, "-f"])
            .arg(context.join("Containerfile"))
            .arg(&context),
    );
}

/// The host side of each of the DaemonSet's volumes, in the scratch directory: the
/// kubelet's log directories (empty stand-ins), the web configuration secret, the state
/// directory and the lock file. Panics on a volume this test does not know, so a new
/// mount in the manifest is tried here too.
fn volume_sources(pod: &Value, scratch: &Path) -> BTreeMap<String, PathBuf> {
    let web = scratch.join("web");
    fs::create_dir_all(&web).unwrap();
    write_web_config(&web);
    let mut sources = BTreeMap::new();
    for volume in pod["volumes"].as_array().expect("volumes") {
        let name = volume["name"].as_str().unwrap().to_string();
        let source = if volume["secret"]["secretName"] == "leakscope-web" {
            web.clone()
        } else {
            let host = volume["hostPath"]["path"]
                .as_str()
                .unwrap_or_else(|| panic!("volume {name}: neither hostPath nor the web secret"));
            let stand_in = scratch.join(format!("host{host}"));
            match volume["hostPath"]["type"].as_str() {
                Some("FileOrCreate") => {
                    fs::create_dir_all(stand_in.parent().unwrap()).unwrap();
                    fs::write(&stand_in, "").unwrap();
                }
                Some("Directory" | "DirectoryOrCreate") => fs::create_dir_all(&stand_in).unwrap(),
                other => panic!("volume {name}: hostPath type {other:?}"),
            }
            stand_in
        };
        sources.insert(name, source);
    }
    sources
}

/// `podman run` arguments for the container as declared: security context, mounts,
/// environment, arguments (with `--listen` on `port` and the test's narrowing).
fn run_arguments(
    pod: &Value,
    container: &Value,
    scratch: &Path,
    port: u16,
    pids: &[u32],
) -> Vec<String> {
    let sc = &container["securityContext"];
    let mut args: Vec<String> = vec!["run".into(), "--detach".into(), "--network=host".into()];
    if pod["hostPID"] == true {
        args.push("--pid=host".into());
    }
    args.push(format!(
        "--user={}:{}",
        sc["runAsUser"].as_u64().expect("runAsUser"),
        sc["runAsGroup"].as_u64().expect("runAsGroup")
    ));
    assert_eq!(sc["privileged"], false, "not privileged");
    args.extend(
        strings(&sc["capabilities"]["drop"])
            .iter()
            .map(|c| format!("--cap-drop={c}")),
    );
    args.extend(
        declared_capabilities()
            .iter()
            .map(|c| format!("--cap-add={c}")),
    );
    if sc["allowPrivilegeEscalation"] == false {
        args.push("--security-opt=no-new-privileges".into());
    }
    if sc["readOnlyRootFilesystem"] == true {
        args.push("--read-only".into());
    }
    if sc["seccompProfile"]["type"] == "Unconfined" {
        args.push("--security-opt=seccomp=unconfined".into());
    }
    if sc["appArmorProfile"]["type"] == "Unconfined" {
        args.push("--security-opt=apparmor=unconfined".into());
    }
    // This sandbox cannot raise its limits, and podman's defaults are above them.
    args.extend([
        "--ulimit=nofile=4096:4096".into(),
        "--ulimit=nproc=4096:4096".into(),
    ]);
    let sources = volume_sources(pod, scratch);
    for mount in container["volumeMounts"].as_array().expect("volumeMounts") {
        let source = &sources[mount["name"].as_str().unwrap()];
        let target = mount["mountPath"].as_str().unwrap();
        let mode = if mount["readOnly"] == true {
            "ro"
        } else {
            "rw"
        };
        args.push(format!("--volume={}:{target}:{mode}", source.display()));
    }
    for env in container["env"].as_array().into_iter().flatten() {
        args.push(format!(
            "--env={}={}",
            env["name"].as_str().unwrap(),
            env["value"].as_str().unwrap_or_default()
        ));
    }
    args.extend(["--entrypoint".into(), "/usr/bin/leakscope".into()]);
    args.push("IMAGE".into());
    for arg in strings(&container["args"]) {
        if arg.starts_with("--listen=") {
            args.push(format!("--listen=127.0.0.1:{port}"));
        } else {
            args.push(arg);
        }
    }
    args.extend(["--interval=1".into(), "--window=30".into()]);
    args.extend(pids.iter().map(|pid| format!("--pid={pid}")));
    args
}

/// An image built by the test, removed when dropped.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "--force", &self.0]).output();
    }
}

/// A container started by the test, stopped and removed when dropped.
struct Container(String);

impl Container {
    fn logs(&self) -> String {
        let out = podman().args(["logs", &self.0]).output();
        out.map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
    }

    fn host_pid(&self) -> u32 {
        must(podman().args(["inspect", "--format", "{{.State.Pid}}", &self.0]))
            .trim()
            .parse()
            .expect("the container's pid")
    }

    fn is_running(&self) -> bool {
        must(podman().args(["inspect", "--format", "{{.State.Running}}", &self.0])).trim() == "true"
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "5", &self.0])
            .output();
    }
}

/// A leaking Go program of user nobody, from a binary only nobody may read.
fn private_go_leaker(scratch: &Path) -> Spawned {
    let dir = scratch.join("nobody");
    fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("goleaks");
    fs::copy(
        go_program_path(GoBuild {
            version: GO_NEWEST,
            flavor: GoFlavor::Plain,
            package: "leaks",
        }),
        &binary,
    )
    .unwrap();
    for path in [&dir, &binary] {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut command = Command::new(&binary);
    command.arg("send").uid(NOBODY).gid(NOBODY);
    Spawned::launch("goleaks send (nobody)", command)
}

/// A C leaker whose executable is deleted once it runs.
fn deleted_leaker(scratch: &Path) -> Spawned {
    let binary = scratch.join("deleted_leak");
    fs::copy(program_path(Program::MutexLeak), &binary).unwrap();
    let leaker = Spawned::launch("deleted_leak", Command::new(&binary));
    std::thread::sleep(Duration::from_millis(300));
    fs::remove_file(&binary).unwrap();
    leaker
}

/// Whether `pid` is judged a leak at a site whose label contains `site`.
fn leaks_at(series: &[Series], pid: u32, site: &str) -> bool {
    let pid = pid.to_string();
    series.iter().any(|s| {
        s.name == "leakscope_site_leak"
            && s.value == 1.0
            && s.label("pid") == Some(pid.as_str())
            && s.label("site").is_some_and(|l| l.contains(site))
    })
}

/// The capability sets and no_new_privs of a process, from its status file.
fn capability_sets(pid: u32) -> BTreeMap<String, String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.starts_with("Cap") || *key == "NoNewPrivs")
        .map(|(key, value)| (key.to_string(), value.trim().to_string()))
        .collect()
}

/// The capability mask of `names` (`BPF`, `SYS_PTRACE`, ...), as /proc shows it.
fn capability_mask(names: &[String]) -> String {
    let bit = |name: &str| match name {
        "DAC_READ_SEARCH" => 2,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        "CHECKPOINT_RESTORE" => 40,
        other => panic!("add capability {other} to this test's table"),
    };
    format!("{:016x}", names.iter().map(|n| 1u64 << bit(n)).sum::<u64>())
}

/// Check that the image of the shipped Containerfile, run by podman exactly as the
/// DaemonSet declares it (its capabilities read from the manifest), holds exactly
/// those capabilities with no new privileges, serves its metrics over TLS with basic
/// authentication from the mounted web configuration, uses the BPF thread source,
/// finds the root C leak, the Go leak of another user's unreadable binary and the leak
/// of a deleted executable at their sites, writes a dump to its state volume, and
/// exits 0 on SIGTERM.
#[test]
fn the_daemonset_security_context_is_enough() {
    require_root();
    let scratch = TempDir::new("leakscope-kubernetes");
    let dir = scratch.path().to_path_buf();
    let image = Image(format!("localhost/leakscope-test:{}", std::process::id()));
    build_image(&dir, &image.0);

    let mut root_leaker =
        Spawned::launch("mutex_leak", Command::new(program_path(Program::MutexLeak)));
    let mut go_leaker = private_go_leaker(&dir);
    let mut deleted = deleted_leaker(&dir);
    std::thread::sleep(WARM_UP);
    for leaker in [&mut root_leaker, &mut go_leaker, &mut deleted] {
        leaker.assert_running("during warm-up");
    }
    let pids = [root_leaker.pid(), go_leaker.pid(), deleted.pid()];

    let (pod, container) = daemonset();
    let port = free_port();
    let mut args = run_arguments(&pod, &container, &dir, port, &pids);
    let at = args.iter().position(|a| a == "IMAGE").unwrap();
    args[at] = image.0.clone();
    let name = format!("leakscope-test-{}", std::process::id());
    args.insert(1, format!("--name={name}"));
    must(podman().args(&args));
    let running = Container(name);

    let web = dir.join("web");
    let credentials = format!("{USER}:{PASSWORD}");
    let found = wait_for(LEAKS_TIMEOUT, || {
        assert!(
            running.is_running(),
            "the container stopped:\n{}",
            running.logs()
        );
        let scrape = curl_tls(&web, port, "/metrics", &["-u", &credentials]);
        let series = parse_exposition(&scrape.body);
        (leaks_at(&series, pids[0], "leak_on_mutex")
            && leaks_at(&series, pids[1], "main.sendResult")
            && leaks_at(&series, pids[2], "leak_on_mutex"))
        .then_some(series)
    });
    let Some(series) = found else {
        let scrape = curl_tls(&web, port, "/metrics", &["-u", &credentials]);
        panic!(
            "not every leak found in {LEAKS_TIMEOUT:?}:\n{}\ncontainer log:\n{}",
            scrape
                .body
                .lines()
                .filter(|l| l.starts_with("leakscope_site_leak")
                    || l.starts_with("leakscope_process_leak"))
                .collect::<Vec<_>>()
                .join("\n"),
            running.logs()
        );
    };
    assert!(
        series.iter().any(|s| s.name == "leakscope_thread_source"
            && s.label("source") == Some("bpf")
            && s.value == 1.0),
        "not the BPF thread source:\n{}",
        running.logs()
    );
    assert!(
        !running.logs().contains("without CAP_"),
        "the declared capabilities fall short:\n{}",
        running.logs()
    );
    let unauthorized = curl_tls(&web, port, "/metrics", &[]);
    assert_eq!(unauthorized.status, 401, "{unauthorized:?}");

    let sets = capability_sets(running.host_pid());
    let declared = capability_mask(&declared_capabilities());
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(
            sets[set], declared,
            "{set} is not the declared capabilities: {sets:?}"
        );
    }
    assert_eq!(sets["CapAmb"], "0000000000000000", "{sets:?}");
    assert_eq!(sets["NoNewPrivs"], "1", "{sets:?}");

    let dumps = dir.join("host/var/lib/leakscope/dumps");
    let dumped = wait_for(Duration::from_secs(30), || {
        fs::read_dir(&dumps)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .then_some(())
    });
    assert!(
        dumped.is_some(),
        "no dump in the state volume:\n{}",
        running.logs()
    );

    let stopped = must(podman().args(["stop", "--time", "10", &running.0]));
    assert!(stopped.contains(&running.0), "{stopped}");
    let code = must(podman().args(["inspect", "--format", "{{.State.ExitCode}}", &running.0]));
    assert_eq!(
        code.trim(),
        "0",
        "exit status on SIGTERM:\n{}",
        running.logs()
    );
}

/// `leakscope ARGS` under `setpriv` with exactly `capabilities` (bounding, inheritable
/// and so permitted and effective sets) and no new privileges: (exit code, stderr).
fn run_with_capabilities(capabilities: &[String], args: &[&str]) -> (i32, String) {
    let out = output_with_capabilities(capabilities, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `leakscope ARGS` under `setpriv` with exactly `capabilities` (as
/// [`run_with_capabilities`]) exits with and prints.
fn output_with_capabilities(capabilities: &[String], args: &[&str]) -> std::process::Output {
    let set: Vec<String> = capabilities
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let set = format!("-all,{}", set.join(","));
    Command::new(tool("setpriv"))
        .args([
            "--bounding-set",
            &set,
            "--inh-caps",
            &set,
            "--no-new-privs",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_leakscope"))
        .args(args)
        .output()
        .expect("run setpriv")
}

/// Check that leakscope says at start which capability it lacks and what that costs:
/// nothing with the DaemonSet's capabilities, one line naming CAP_DAC_READ_SEARCH
/// without it.
#[test]
fn a_missing_capability_is_said_at_start() {
    require_root();
    let pool = Spawned::start(Program::IdlePool);
    let pid = pool.pid().to_string();
    let args = ["diagnose", "--duration", "1", "--pid", pid.as_str()];
    let declared = declared_capabilities();
    let (code, stderr) = run_with_capabilities(&declared, &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("without CAP_"), "{stderr}");
    let fewer: Vec<String> = declared
        .into_iter()
        .filter(|c| c != "DAC_READ_SEARCH")
        .collect();
    let (code, stderr) = run_with_capabilities(&fewer, &args);
    assert_eq!(code, 0, "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("without CAP_"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(
        said[0].starts_with("leakscope: without CAP_DAC_READ_SEARCH: ")
            && said[0].contains("Go program"),
        "{stderr}"
    );
}

/// `leakscope diagnose --json` of `pid` with exactly `capabilities`: its report, and
/// that process in it (panics, saying why, when either is missing).
fn diagnose_with_capabilities(capabilities: &[String], pid: u32) -> (Value, Value) {
    let pid_arg = pid.to_string();
    let args = ["diagnose", "--duration", "2", "--json", "--pid", &pid_arg];
    let out = output_with_capabilities(capabilities, &args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}), exit {:?}:\n{stdout}\n{stderr}",
            out.status
        )
    });
    let process = crate::common::find_process(&report, pid)
        .unwrap_or_else(|| panic!("process {pid} not in the report:\n{report:#}\n{stderr}"))
        .clone();
    (report, process)
}

/// Check that a Go program whose executable leakscope may not open (another user's
/// binary of mode 0700, leakscope without CAP_DAC_READ_SEARCH: opening its
/// /proc/PID/exe is EACCES) is reported unreadable saying why, its runtime unknown,
/// rather than watched as a healthy native process; with the capability, the same
/// program is read as Go.
#[test]
fn a_go_program_whose_executable_cannot_be_opened_is_unreadable() {
    require_root();
    let scratch = TempDir::new("exe-unreadable");
    let mut leaker = private_go_leaker(&scratch.0);
    std::thread::sleep(WARM_UP);
    leaker.assert_running("during warm-up");
    let declared = declared_capabilities();
    let fewer: Vec<String> = declared
        .iter()
        .filter(|c| *c != "DAC_READ_SEARCH")
        .cloned()
        .collect();

    let (report, process) = diagnose_with_capabilities(&fewer, leaker.pid());
    assert_eq!(process["runtime"], "unknown", "{report:#}");
    let error = process["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("could not tell whether it runs Go (cannot open its executable: ")
            && error.contains("os error 13")
            && error.ends_with("goroutines not read"),
        "not said why: {error:?}\n{report:#}"
    );
    assert!(
        sites(&process).iter().all(|s| s["kind"] != "goroutine"),
        "{report:#}"
    );

    let (report, process) = diagnose_with_capabilities(&declared, leaker.pid());
    let runtime = process["runtime"].as_str().unwrap_or_default();
    assert!(runtime.starts_with("go1."), "{report:#}");
    assert!(process.get("error").is_none(), "{report:#}");
    assert!(
        sites(&process).iter().any(|s| s["kind"] == "goroutine"),
        "its goroutines were not read:\n{report:#}"
    );
    leaker.assert_running("after the diagnoses");
}
