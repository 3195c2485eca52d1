//! The command line of the watching commands: the flags `diagnose`, `run` and `top` share
//! mean the same and have one valid range in each, and a value out of it is a user error
//! (one line on stderr naming the flag, exit 2) in each, before anything is loaded.

use std::time::Duration;

use crate::common::{TempDir, run_leakscope};

/// The watching commands, each with the flags that keep a wrongly accepted run short
/// and harmless (a daemon on a free port with its own lock file; a one-second diagnosis).
fn commands(scratch: &TempDir) -> [Vec<String>; 3] {
    let lock = scratch.0.join("leakscope.lock").display().to_string();
    [
        vec!["diagnose".into(), "--duration".into(), "1".into()],
        vec![
            "run".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--lock-file".into(),
            lock,
        ],
        vec!["top".into()],
    ]
}

/// Runs `command` with `bad` appended and checks it is refused: exit 2, one line on
/// stderr, naming `flag`.
fn assert_refused(command: &[String], bad: &[&str], flag: &str) {
    let args: Vec<String> = command
        .iter()
        .cloned()
        .chain(bad.iter().map(|a| a.to_string()))
        .collect();
    let run = run_leakscope(&args, Duration::from_secs(30));
    assert_eq!(run.exit_code, 2, "{args:?}: {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
    assert!(
        run.stderr.contains(flag),
        "{args:?} should name {flag}: {run:?}"
    );
}

/// Check that a value out of range (or no number) for each shared flag is refused by
/// `diagnose`, `run` and `top` alike: exit 2 and one line on stderr naming the flag.
#[test]
fn shared_flags_out_of_range_are_refused_by_every_command() {
    let scratch = TempDir::new("leakscope-cli");
    let bad: [&[&str]; 8] = [
        &["--interval", "0.01"],
        &["--interval", "3601"],
        &["--interval", "soon"],
        &["--read-budget", "0"],
        &["--read-budget", "3601"],
        &["--thread-source", "kprobes"],
        &["--pid", "x"],
        &["--pid", "0"],
    ];
    for command in commands(&scratch) {
        for args in bad {
            let flag = if args[1] == "0" && args[0] == "--pid" {
                // A well-formed pid that names no process: refused at start.
                "no such process: 0"
            } else {
                args[0]
            };
            assert_refused(&command, args, flag);
        }
    }
}

/// Check that `run` and `top` refuse the same rolling windows: out of range, or too
/// short for 3 scans of the interval.
#[test]
fn windows_out_of_range_are_refused_by_run_and_top() {
    let scratch = TempDir::new("leakscope-cli-window");
    for command in &commands(&scratch)[1..] {
        assert_refused(command, &["--window", "0"], "--window");
        assert_refused(command, &["--window", "86401"], "--window");
        assert_refused(command, &["--window", "5", "--interval", "2"], "--window");
    }
}
