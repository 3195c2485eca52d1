//! The /proc thread source (`--thread-source procfs`), the fallback for kernels without
//! the BPF task iterator: the same verdicts at the same sites as the iterator gives,
//! here on the host (`cargo xtask kernels` runs it in Debian 6.1 and 6.12 guests too).

use std::process::Command;

use serde_json::Value;

use crate::common::{
    DIAGNOSE_SECONDS, GO_NEWEST, GoBuild, GoFlavor, Program, Spawned, WARM_UP, assert_seen_and_ok,
    diagnose_with, go_program_path, leak_sites_containing, process_verdict, require_root,
    run_leakscope, summarize_pid,
};

/// Asserts `pid` is a leak with a "leak" site whose stack names `function`.
fn assert_leak_at(report: &Value, pid: u32, function: &str) {
    let summary = summarize_pid(report, pid);
    assert_eq!(process_verdict(report, pid), "leak", "{summary}");
    let process = crate::common::find_process(report, pid).expect("verdict says present");
    assert!(
        !leak_sites_containing(process, function).is_empty(),
        "no leak site names `{function}`:\n{summary}"
    );
}

/// Check that with the /proc fallback forced, a C mutex leaker, a C leaker without frame
/// pointers (unwound by DWARF CFI from sp and pc alone) and a Go leaker are leaks at their
/// sites, a steady pool is not, the report says `"thread_source": "procfs"`, and diagnose
/// exits 1.
#[test]
fn procfs_fallback_gives_the_iterators_verdicts() {
    require_root();
    let go_build = GoBuild {
        version: GO_NEWEST,
        flavor: GoFlavor::Plain,
        package: "leaks",
    };
    let mut go_command = Command::new(go_program_path(go_build));
    go_command.arg("send");
    let mut go_leaker = Spawned::launch("goleaks send", go_command);
    let mutex_leaker = Spawned::start(Program::MutexLeak);
    let nofp_leaker = Spawned::start(Program::NofpLeak);
    let pool = Spawned::start(Program::IdlePool);
    std::thread::sleep(WARM_UP);
    go_leaker.assert_running("during warm-up");
    let pids = [
        mutex_leaker.pid(),
        nofp_leaker.pid(),
        pool.pid(),
        go_leaker.pid(),
    ];

    let (exit_code, report) =
        diagnose_with(&pids, DIAGNOSE_SECONDS, &["--thread-source", "procfs"]);

    assert_eq!(report["thread_source"], "procfs", "{report:#}");
    assert_leak_at(&report, mutex_leaker.pid(), "leak_on_mutex");
    assert_leak_at(&report, nofp_leaker.pid(), "acquire_shared_state");
    assert_leak_at(&report, go_leaker.pid(), "main.leakSendNoReceiver");
    assert_seen_and_ok(&report, pool.pid(), "the idle pool");
    assert_eq!(exit_code, 1, "leaks were found");
}

/// Check that on this kernel (which has everything the iterator needs) the default
/// thread source is the iterator, and the report says so.
#[test]
fn auto_picks_the_iterator_where_the_kernel_has_it() {
    require_root();
    let pool = Spawned::start(Program::IdlePool);
    let (_, report) = diagnose_with(&[pool.pid()], 1, &[]);
    assert_eq!(report["thread_source"], "bpf", "{report:#}");
}

/// Check that an unknown `--thread-source` is a user error: exit 2, one line naming the
/// choices.
#[test]
fn unknown_thread_source_is_an_error() {
    let run = run_leakscope(
        &[
            "diagnose".into(),
            "--thread-source".into(),
            "kprobes".into(),
        ],
        std::time::Duration::from_secs(30),
    );
    assert_eq!(run.exit_code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("auto, bpf, procfs"), "{run:?}");
}
