//! Every step of one process's analysis runs isolated: a panic in any of them (injected
//! with the test hook `LEAKSCOPE_INJECT_PANIC_PID=PID:STEP`, one process per step) costs
//! that process's result, reported unreadable with the step and the reason, while the
//! rest of the host is watched on and the leak beside it is found.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    GO_NEWEST, GoBuild, Program, Spawned, TempDir, WARM_UP, find_process, go_program_path,
    program_path, require_root, run_leakscope_env,
};

/// The steps of a C program's analysis (facts, waits, stacks, names, binaries, limits)
/// and of a Go program's (its runtime's threads, its executable, its goroutine table,
/// its fold).
const NATIVE_STEPS: [&str; 7] = [
    "facts",
    "waits",
    "unwind",
    "symbolize",
    "build-id",
    "hold-binary",
    "limits",
];
const GO_STEPS: [&str; 4] = ["runtime-threads", "go-program", "go-table", "go-census"];

/// A copy of `program` under its own name in `dir`: its own file, so that the reads
/// of its binary (its build id, holding it for the symbolizer) are its own, not
/// answered from what another process's analysis cached.
fn own_copy(dir: &TempDir, program: &std::path::Path, name: &str) -> std::path::PathBuf {
    let copy = dir.path().join(name);
    std::fs::copy(program, &copy).expect("copy the test program");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// Check that a panic in each step of a process's analysis — the thread pass (its
/// facts, waits, unwinding, naming, build-id reads, holding its binary), reading its
/// limits, and the Go
/// reader (hiding runtime threads, the executable, the goroutine table, the census
/// fold) — marks only that process unreadable, naming the step, while `diagnose`
/// finishes normally and finds the leak of the process beside them.
#[test]
fn a_panic_in_any_step_costs_only_that_process() {
    require_root();
    let scratch = TempDir::new("leakscope-isolation");
    let mut leak = Spawned::launch(
        Program::MutexLeak.name(),
        Command::new(program_path(Program::MutexLeak)),
    );
    let condvar = program_path(Program::CondvarLeak);
    let goleaks = go_program_path(GoBuild::plain(GO_NEWEST, "leaks"));
    let mut victims: Vec<(&str, Spawned)> = Vec::new();
    for step in NATIVE_STEPS {
        let copy = own_copy(&scratch, &condvar, &format!("v-{step}"));
        victims.push((step, Spawned::launch(step, Command::new(copy))));
    }
    for step in GO_STEPS {
        let mut command = Command::new(&goleaks);
        command.arg("pool");
        victims.push((step, Spawned::launch(step, command)));
    }
    std::thread::sleep(WARM_UP);
    leak.assert_running("during warm-up");
    for (_, victim) in &mut victims {
        victim.assert_running("during warm-up");
    }
    let injected: Vec<String> = (victims.iter())
        .map(|(step, v)| format!("{}:{step}", v.pid()))
        .collect();
    let env = [("LEAKSCOPE_INJECT_PANIC_PID", injected.join(","))];
    let mut args: Vec<String> = ["diagnose", "--duration", "4", "--json"]
        .map(String::from)
        .to_vec();
    let pids = std::iter::once(leak.pid()).chain(victims.iter().map(|(_, v)| v.pid()));
    for pid in pids {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    let run = run_leakscope_env(&args, &env, Duration::from_secs(120));
    let report: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    assert_eq!(run.exit_code, 1, "a leak was found: {run:?}");
    let leak_report = find_process(&report, leak.pid()).expect("the leak is reported");
    assert_eq!(leak_report["verdict"], "leak", "{leak_report}");
    assert!(leak_report["error"].is_null(), "{leak_report}");
    for (step, victim) in &victims {
        let reported = find_process(&report, victim.pid())
            .unwrap_or_else(|| panic!("the victim of step {step} is not reported: {report:#}"));
        let error = reported["error"].as_str().unwrap_or("");
        assert!(
            error.contains("internal error")
                && error.contains(&format!("({step}; panic: injected")),
            "step {step}: the victim's error: {reported}\nstderr:\n{}",
            run.stderr
        );
        assert_eq!(reported["verdict"], "ok", "step {step}: {reported}");
        assert_eq!(
            reported["sites"].as_array().map(Vec::len),
            Some(0),
            "{reported}"
        );
    }
    let lines = |pid: u32| {
        (run.stderr.lines())
            .filter(|l| l.contains(&format!("pid {pid}: internal error")))
            .count()
    };
    for (step, victim) in &victims {
        assert_eq!(
            lines(victim.pid()),
            1,
            "step {step}: said once:\n{}",
            run.stderr
        );
    }
}

/// Check that with the `/proc` thread source a panic while listing one process's
/// threads (its `/proc` files are the process's to shape) leaves that process out, said
/// once on stderr, while the leak beside it is found.
#[test]
fn a_panic_listing_one_process_from_proc_leaves_only_it_out() {
    require_root();
    let mut leak = Spawned::launch(
        Program::MutexLeak.name(),
        Command::new(program_path(Program::MutexLeak)),
    );
    let mut victim = Spawned::launch(
        Program::CondvarLeak.name(),
        Command::new(program_path(Program::CondvarLeak)),
    );
    std::thread::sleep(WARM_UP);
    leak.assert_running("during warm-up");
    victim.assert_running("during warm-up");
    let env = [(
        "LEAKSCOPE_INJECT_PANIC_PID",
        format!("{}:threads", victim.pid()),
    )];
    let mut args: Vec<String> = [
        "diagnose",
        "--duration",
        "4",
        "--json",
        "--thread-source",
        "procfs",
    ]
    .map(String::from)
    .to_vec();
    for pid in [leak.pid(), victim.pid()] {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    let run = run_leakscope_env(&args, &env, Duration::from_secs(120));
    let report: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    assert_eq!(run.exit_code, 1, "a leak was found: {run:?}");
    let leak_report = find_process(&report, leak.pid()).expect("the leak is reported");
    assert_eq!(leak_report["verdict"], "leak", "{leak_report}");
    assert!(find_process(&report, victim.pid()).is_none(), "{report:#}");
    let said = (run.stderr.lines())
        .filter(|l| l.contains(&format!("pid {}: internal error", victim.pid())))
        .filter(|l| l.contains("(threads; panic: injected"))
        .count();
    assert_eq!(said, 1, "said once:\n{}", run.stderr);
}
