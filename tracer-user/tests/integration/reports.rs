//! leakscope's outputs opened where people look: the `--pprof` profile in the real
//! `go tool pprof`, the `--flamegraph` SVG, and `leakscope top` in a real terminal
//! (tmux), each on a host running a leaking Go program and a leaking C program.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use crate::{
    common::{
        DIAGNOSE_SECONDS, GO_NEWEST, GoBuild, GoFlavor, PPROF_GO, Program, Spawned, WARM_UP,
        go_command, go_program_path, go_tool_pprof, pprof_top_functions, program_path,
        require_root, run_diagnosis,
    },
    daemon::{Background, TempDir, free_port, http_get, wait_for},
};

/// Where the Go leaker parks: `main.sendResult`, inlined into
/// `main.leakSendNoReceiver` (pprof shows the innermost of an inline chain).
const GO_LEAK_FUNCTIONS: [&str; 2] = ["main.sendResult", "main.leakSendNoReceiver"];
/// Where the C leaker blocks.
const C_LEAK_FUNCTION: &str = "leak_on_mutex";

/// Starts the Go leaker (a goroutine parked on a channel send every 250 ms) and the C
/// leaker (a thread blocked on a mutex every 250 ms), warmed up.
fn start_leakers() -> (Spawned, Spawned) {
    let build = GoBuild {
        version: GO_NEWEST,
        flavor: GoFlavor::Plain,
        package: "leaks",
    };
    let mut go = Command::new(go_program_path(build));
    go.arg("send");
    let mut go = Spawned::launch("goleaks send", go);
    let mut c = Spawned::launch(
        Program::MutexLeak.name(),
        Command::new(program_path(Program::MutexLeak)),
    );
    thread::sleep(WARM_UP);
    go.assert_running("during warm-up");
    c.assert_running("during warm-up");
    (go, c)
}

/// Check that `diagnose --pprof` writes a profile the real `go tool pprof -top` opens
/// with the Go and the C leak sites as its two top rows, whose labels name the verdict
/// and both programs, and whose `go tool pprof -http` top view lists them first; that
/// `--flamegraph` writes an SVG naming both leak sites, marked as leaks; and that the
/// text report, piped, is plain and gives each leaking process's uptime.
#[test]
fn pprof_and_flame_graph_show_the_go_and_c_leak_sites() {
    require_root();
    let scratch = TempDir::new("leakscope-reports");
    let (go, c) = start_leakers();
    let profile = scratch.0.join("waiters.pb.gz");
    let svg = scratch.0.join("waiters.svg");
    let args = |duration_s: u32| -> Vec<String> {
        [
            "diagnose",
            "--duration",
            &duration_s.to_string(),
            "--pid",
            &go.pid().to_string(),
            "--pid",
            &c.pid().to_string(),
            "--pprof",
            profile.to_str().unwrap(),
            "--flamegraph",
            svg.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = run_diagnosis(args, &[], DIAGNOSE_SECONDS);
    assert_eq!(run.exit_code, 1, "a leak was found: {run:?}");
    // The text report, piped: plain, each leaking process with its uptime.
    assert!(
        !run.stdout.contains('\x1b'),
        "colour in a pipe:\n{}",
        run.stdout
    );
    for pid in [go.pid(), c.pid()] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("LEAK  pid {pid} ")))
            .unwrap_or_else(|| panic!("no LEAK line for {pid}:\n{}", run.stdout));
        assert!(line.contains(", up "), "{line}");
    }

    let top = go_tool_pprof(&["-top"], &profile);
    assert!(top.contains("Type: leaked"), "{top}");
    let rows = pprof_top_functions(&top);
    let first_two = &rows[..2.min(rows.len())];
    assert!(first_two.contains(&C_LEAK_FUNCTION), "{top}");
    assert!(
        first_two.iter().any(|f| GO_LEAK_FUNCTIONS.contains(f)),
        "{top}"
    );
    let tags = go_tool_pprof(&["-tags"], &profile);
    for expected in [
        "verdict",
        "leak",
        "goleaks",
        "mutex_leak",
        "chan send",
        "futex",
    ] {
        assert!(tags.contains(expected), "no {expected:?} in:\n{tags}");
    }
    check_pprof_web_ui(&profile, &scratch.0.join("pprof-http.log"));

    let svg = fs::read_to_string(&svg).expect("the flame graph was written");
    assert!(svg.starts_with("<?xml"), "not an SVG");
    assert!(
        svg.contains(&format!("{C_LEAK_FUNCTION} mutex_leak.c:")) && svg.contains("(leak)"),
        "the C leak site is not named"
    );
    assert!(
        GO_LEAK_FUNCTIONS
            .iter()
            .any(|f| svg.contains(&format!("{f} leaks.go:"))),
        "the Go leak site is not named"
    );
    assert!(svg.contains("LEAK goleaks (pid") && svg.contains("LEAK mutex_leak (pid"));
}

/// Serves `profile` with `go tool pprof -http` and checks that its top view lists both
/// leak sites above the frames that only call them (start_thread, the goroutine's
/// wrapper).
fn check_pprof_web_ui(profile: &std::path::Path, log: &std::path::Path) {
    let port = free_port();
    let mut command = go_command(PPROF_GO);
    command
        .args(["tool", "pprof", "-no_browser"])
        .arg(format!("-http=127.0.0.1:{port}"))
        .arg(profile);
    let mut pprof = Background::start("go tool pprof -http", command, log.to_path_buf());
    let page = wait_for(Duration::from_secs(30), || {
        match http_get(port, "/ui/top") {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    });
    pprof.assert_running();
    let page = page.unwrap_or_else(|| panic!("no /ui/top; pprof said:\n{}", pprof.log()));
    let at = |name: &str| page.find(name).unwrap_or(usize::MAX);
    let go_leak = GO_LEAK_FUNCTIONS.iter().map(|f| at(f)).min().unwrap();
    assert!(at(C_LEAK_FUNCTION) < at("start_thread"), "{page}");
    assert!(go_leak < at("main.spawnLeak.gowrap1"), "{page}");
}

/// A tmux server of this test's own, killed when dropped.
struct Tmux {
    socket: String,
}

/// The terminal `top` is told it has (its tty's window size).
const TOP_COLUMNS: usize = 80;
const TOP_ROWS: usize = 24;

/// The tmux pane around it: wider and taller than `top`'s terminal, so a line `top`
/// writes past its 80 columns, or a row past its 24, shows in the capture instead of
/// being cut by the pane itself.
const PANE_COLUMNS: &str = "160";
const PANE_ROWS: &str = "40";

impl Tmux {
    fn start(command: &str) -> Self {
        let tmux = Self {
            socket: format!("leakscope-test-{}", std::process::id()),
        };
        let status = tmux
            .command()
            .args([
                "new-session",
                "-d",
                "-x",
                PANE_COLUMNS,
                "-y",
                PANE_ROWS,
                command,
            ])
            .status()
            .expect("tmux is needed to test `leakscope top` (cargo xtask setup installs it)");
        assert!(status.success(), "tmux new-session failed: {status}");
        tmux
    }

    fn command(&self) -> Command {
        let mut tmux = Command::new("tmux");
        tmux.args(["-L", &self.socket]).stdin(Stdio::null());
        tmux
    }

    /// The screen as text, or None once the session is gone.
    fn screen(&self) -> Option<String> {
        let out = self.command().args(["capture-pane", "-p"]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn send_keys(&self, keys: &str) {
        let status = self.command().args(["send-keys", keys]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// Check that `leakscope top` on an 80x24 terminal (the tty's size, inside a 160x40
/// tmux pane) shows both leakers as LEAK with their leak sites, within 80 columns (the
/// long Go site line cut at exactly 80) and 24 rows, and exits 0 when `q` is pressed.
#[test]
fn top_in_a_terminal_shows_the_leaks_and_quits_on_q() {
    require_root();
    let scratch = TempDir::new("leakscope-top");
    let (go, c) = start_leakers();
    let status_file = scratch.0.join("status");
    let command = format!(
        "stty cols {TOP_COLUMNS} rows {TOP_ROWS}; {} top --pid {} --pid {}; echo $? > {}",
        env!("CARGO_BIN_EXE_leakscope"),
        go.pid(),
        c.pid(),
        status_file.display()
    );
    let tmux = Tmux::start(&command);
    let leak_line = |screen: &str, pid: u32| {
        screen
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{pid} ")) && l.contains("LEAK"))
    };
    let screen = wait_for(Duration::from_secs(60), || {
        let screen = tmux.screen()?;
        (leak_line(&screen, go.pid()) && leak_line(&screen, c.pid())).then_some(screen)
    })
    .unwrap_or_else(|| {
        panic!(
            "top never showed both leaks; last screen:\n{}",
            tmux.screen().unwrap_or_default()
        )
    });
    assert!(screen.starts_with("leakscope top"), "{screen}");
    assert!(
        screen.contains(&format!("thread:futex:{C_LEAK_FUNCTION}")),
        "{screen}"
    );
    assert!(screen.contains("goroutine:chan send:main."), "{screen}");
    let widths: Vec<usize> = screen
        .lines()
        .map(|l| l.trim_end().chars().count())
        .collect();
    assert!(
        widths.iter().all(|&w| w <= TOP_COLUMNS),
        "a line past {TOP_COLUMNS} columns: {widths:?}\n{screen}"
    );
    // The Go leak's site line (34 columns, then a label of about 60) is longer than the
    // terminal: cut at its edge, so the check above had something to catch.
    assert!(
        widths.contains(&TOP_COLUMNS),
        "no line reaches column {TOP_COLUMNS}, so none was cut: {widths:?}\n{screen}"
    );
    let below: Vec<&str> = screen
        .lines()
        .skip(TOP_ROWS)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        below.is_empty(),
        "rows past {TOP_ROWS}: {below:?}\n{screen}"
    );

    tmux.send_keys("q");
    let status = wait_for(Duration::from_secs(5), || {
        fs::read_to_string(&status_file).ok()
    })
    .unwrap_or_else(|| {
        panic!(
            "top did not exit on q; screen:\n{}",
            tmux.screen().unwrap_or_default()
        )
    });
    assert_eq!(status.trim(), "0", "top's exit status");
}
