//! leakscope against processes that attack it: `hostile_go` (tests/programs) poses as a
//! Go binary and fills its fake goroutine table with wrapping stack pointers, frame
//! pointer cycles, ever-new creators, garbage pointers, thousands of distinct stacks and
//! a declared length of millions. leakscope must stay bounded in time and memory, mark
//! what it cannot read as unreadable with the reason, and still find a real leaker
//! beside them.
//!
//! Then one test per kind of memory without a ceiling (issue 24): binaries rewritten
//! (`elfedit`) or built (`hostile_go` with `-DHOSTILE_NAMES`) so that reading them
//! naively takes gigabytes: Go frame names of 64 KiB with inline trees that loop over
//! thousands of new sites, symbol tables of 100,000 names into one long string,
//! compressed debug sections that inflate to gigabytes, sparse gigabyte binaries,
//! processes whose maps are tens of megabytes, unwind tables of 120 MiB, and a process
//! churning 100,000 fake goroutines. Each diagnosis must stay within the memory budget
//! and say, for the process whose analysis was cut, why. leakscope runs under an
//! address-space limit, so a build without these bounds aborts on an allocation
//! failure rather than take the machine's memory. `LEAKSCOPE_TEST_BINARY` runs these
//! tests against another build (to show them failing against one without the bounds).

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::procfs::{self, Usage};

use crate::common::{
    LOADED_RETRY_FACTOR, MIN_COVERED_SHARE, Program, Spawned, TempDir, WARM_UP, check_report_shape,
    find_process, leak_sites_containing, program_path, require_root, summarize_pid,
};
use crate::elfedit::{ElfEdit, SHF_COMPRESSED, zlib_zeros};

/// Peak resident memory allowed to a scoped diagnosis of the hostile processes (a
/// debug build; the same diagnosis of well-behaved programs peaks near 50 MB).
const MAX_PEAK_RSS_KB: u64 = 200 * 1024;
/// Peak resident memory allowed to a diagnosis of one kind of memory attack: the
/// systemd unit's `MemoryHigh` (each attack fills one kind's share of the default
/// --memory-budget at most; a debug build's diagnosis of well-behaved programs takes
/// about 45 MiB).
const MAX_BUDGETED_RSS_KB: u64 = 128 * 1024;
/// Address space leakscope may take in these tests: past it an allocation fails (and a
/// build without the bounds aborts) instead of taking the machine's memory.
const ADDRESS_SPACE_LIMIT: u64 = 4 << 30;
/// The user who owns the files "another user" wrote.
const NOBODY: u32 = 65534;

/// The leakscope under test: this build's, or `LEAKSCOPE_TEST_BINARY`.
fn leakscope_binary() -> std::ffi::OsString {
    std::env::var_os("LEAKSCOPE_TEST_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_leakscope").into())
}

/// Starts `hostile_go MODE`.
fn start_hostile(mode: &str) -> Spawned {
    let mut command = Command::new(program_path(Program::HostileGo));
    command.arg(mode);
    Spawned::launch(&format!("hostile_go {mode}"), command)
}

/// What one measured diagnosis did.
struct Measured {
    report: Value,
    wall: Duration,
    /// CPU time (user + system) at the last sample before it exited.
    cpu: Duration,
    peak_rss_kb: u64,
}

/// Runs `leakscope diagnose --json` on `pids` for `seconds`, sampling its peak RSS
/// (VmHWM) and CPU time from /proc while it runs; kills it past twice the duration
/// plus a minute.
fn diagnose_measured(pids: &[u32], seconds: u32) -> Measured {
    let mut command = Command::new(leakscope_binary());
    command.args(["diagnose", "--json", "--duration", &seconds.to_string()]);
    for pid in pids {
        command.args(["--pid", &pid.to_string()]);
    }
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE_LIMIT,
                rlim_max: ADDRESS_SPACE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leakscope");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = start + Duration::from_secs(2 * u64::from(seconds) + 60);
    let mut most = Usage::default();
    let status = loop {
        // The tree: diagnose works in a child process.
        if let Some(usage) = procfs::tree_usage(child.id()) {
            most.peak_rss_bytes = most.peak_rss_bytes.max(usage.peak_rss_bytes);
            most.cpu_s = most.cpu_s.max(usage.cpu_s);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "leakscope diagnose on hostile processes still running after {:?}",
                start.elapsed()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let wall = start.elapsed();
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        // 1: a leak was found.
        matches!(status.code(), Some(0 | 1)) && !stderr.contains("panicked"),
        "leakscope diagnose failed ({status}):\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{stderr}"));
    check_report_shape(&report).unwrap_or_else(|e| panic!("report shape: {e}"));
    Measured {
        report,
        wall,
        cpu: Duration::from_secs_f64(most.cpu_s),
        peak_rss_kb: most.peak_rss_bytes / 1024,
    }
}

/// Check that the hostile program's file reads as the Go 1.26 binary it poses as, with
/// the go1.26 `g` offsets its source hard-codes: otherwise the attacks below would
/// not reach the goroutine reader at all.
#[test]
fn hostile_program_poses_as_go_1_26() {
    let data = std::fs::read(program_path(Program::HostileGo)).unwrap();
    let program = tracer_user::sources::go::executable::analyse_go_bytes(&data)
        .expect("hostile_go analyses")
        .expect("hostile_go is taken for Go");
    assert_eq!(
        program.release,
        tracer_user::model::GoRelease::Known {
            major: 1,
            minor: 26
        }
    );
    let l = &program.layout;
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/hostile_go.c"),
    )
    .unwrap();
    for (name, offset) in [
        ("G_SIZE", l.g_size),
        ("G_STACK_HI", l.g_stack_hi),
        ("G_SCHED_SP", l.g_sched_sp),
        ("G_SCHED_PC", l.g_sched_pc),
        ("G_SCHED_BP", l.g_sched_bp),
        ("G_ATOMICSTATUS", l.g_atomicstatus),
        ("G_GOID", l.g_goid),
        ("G_WAITREASON", l.g_waitreason),
        ("G_GOPC", l.g_gopc),
        ("G_STARTPC", l.g_startpc),
    ] {
        assert!(
            source.contains(&format!("#define {name} {offset}\n")),
            "hostile_go.c's {name} is not {offset} (layouts.json go1.26)"
        );
    }
}

/// Check that a diagnosis watching every attack of `hostile_go` at once (wrapping
/// stack pointers, frame-pointer cycles, churning creators, garbage pointers, 20,000
/// distinct stacks) and a table declaring 15 million goroutines stays within its time
/// and memory budget, reports the huge table as unreadable with the reason, and still
/// finds the real thread leak beside them.
#[test]
fn hostile_goroutine_tables_stay_bounded_and_a_real_leak_is_found() {
    require_root();
    let mut all = start_hostile("all");
    let mut huge = start_hostile("huge");
    let mut leaker = Spawned::start(Program::MutexLeak);
    thread::sleep(WARM_UP);
    all.assert_running("during warm-up");
    huge.assert_running("during warm-up");
    let pids = [all.pid(), huge.pid(), leaker.pid()];
    let mut seconds: u32 = 6;
    let mut run = diagnose_measured(&pids, seconds);
    // A run whose scans a loaded machine starved proves nothing: once more, longer (as
    // common::run_diagnosis does).
    if !run.report["duration_s"]
        .as_f64()
        .is_some_and(|span| span >= f64::from(seconds) * MIN_COVERED_SHARE)
    {
        eprintln!("hostile diagnose: its scans were starved of CPU; watching again, longer");
        seconds *= LOADED_RETRY_FACTOR;
        run = diagnose_measured(&pids, seconds);
    }
    all.assert_running("while leakscope watched");
    huge.assert_running("while leakscope watched");
    leaker.assert_running("while leakscope watched");
    let report = &run.report;
    let summary = format!(
        "{}\n{}\n{}",
        summarize_pid(report, all.pid()),
        summarize_pid(report, huge.pid()),
        summarize_pid(report, leaker.pid())
    );

    let huge_process = find_process(report, huge.pid())
        .unwrap_or_else(|| panic!("the huge table's process is not in the report:\n{summary}"));
    let error = huge_process["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("allglen"),
        "a 15M-goroutine table must be unreadable with the reason, got error {error:?}:\n{summary}"
    );
    assert_eq!(huge_process["runtime"], "go1.26", "{summary}");
    // Every attack in `all` is bounded by the reader itself: the process is read (its
    // garbage dropped), not left to the daemon's panic isolation as a last resort.
    let all_process = find_process(report, all.pid())
        .unwrap_or_else(|| panic!("the hostile process is not in the report:\n{summary}"));
    assert!(
        all_process["error"].is_null(),
        "the attacks must be read without error or panic, got {}:\n{summary}",
        all_process["error"]
    );
    let leaker_process = find_process(report, leaker.pid())
        .unwrap_or_else(|| panic!("the real leaker is not in the report:\n{summary}"));
    assert_eq!(leaker_process["verdict"], "leak", "{summary}");
    assert!(
        !leak_sites_containing(leaker_process, "leak_on_mutex").is_empty(),
        "the real leak site is not reported:\n{summary}"
    );

    let cpu = run.cpu;
    eprintln!(
        "hostile diagnose: wall {:?}, cpu {:?}, peak RSS {} KiB",
        run.wall, cpu, run.peak_rss_kb
    );
    assert!(
        run.peak_rss_kb <= MAX_PEAK_RSS_KB,
        "peak RSS {} KiB over the {} KiB budget",
        run.peak_rss_kb,
        MAX_PEAK_RSS_KB
    );
    // CPU is the bound that does not move with other load (leakscope is niced); the
    // wall-clock bound only catches a hang.
    assert!(
        run.wall <= Duration::from_secs(u64::from(seconds) + 60),
        "took {:?} for a {seconds} s diagnosis",
        run.wall
    );
    assert!(
        cpu <= Duration::from_secs(u64::from(seconds)),
        "used {cpu:?} of CPU in a {seconds} s diagnosis"
    );
}

/// Runs `binary MODE` (a rewritten or rebuilt program) and lets it warm up.
fn start_binary(binary: &std::path::Path, args: &[&str]) -> Spawned {
    let mut command = Command::new(binary);
    command.args(args);
    let name = format!("{} {}", binary.display(), args.join(" "));
    let mut spawned = Spawned::launch(&name, command);
    thread::sleep(WARM_UP);
    spawned.assert_running("during warm-up");
    spawned
}

/// Copies a built program to `dir/name`, owned by `owner` (mode 0755).
fn copy_program(program: Program, dir: &TempDir, name: &str, owner: u32) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::copy(program_path(program), &path).unwrap();
    std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
    path
}

/// Diagnoses `pids` and checks the run stayed within the memory budget and time; returns
/// the report and a summary of `pids` for messages.
fn diagnose_within_budget(pids: &[u32], seconds: u32, what: &str) -> (Value, String) {
    let run = diagnose_measured(pids, seconds);
    let summary: Vec<String> = pids
        .iter()
        .map(|&p| summarize_pid(&run.report, p))
        .collect();
    let summary = summary.join("\n");
    eprintln!(
        "{what}: wall {:?}, cpu {:?}, peak RSS {} KiB",
        run.wall, run.cpu, run.peak_rss_kb
    );
    assert!(
        run.peak_rss_kb <= MAX_BUDGETED_RSS_KB,
        "{what}: peak RSS {} KiB over {} KiB:\n{summary}",
        run.peak_rss_kb,
        MAX_BUDGETED_RSS_KB
    );
    assert!(
        run.wall <= Duration::from_secs(u64::from(seconds) + 60),
        "{what}: took {:?} for a {seconds} s diagnosis",
        run.wall
    );
    (run.report, summary)
}

/// The process's `degraded` reasons.
fn degraded(process: &Value) -> Vec<&str> {
    process["degraded"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Builds `hostile_go.c` with `-DHOSTILE_NAMES` (the flags the test programs use).
fn build_hostile_names(dir: &TempDir) -> std::path::PathBuf {
    let out = dir.path().join("hostile_go_names");
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/hostile_go.c");
    let status = Command::new("cc")
        .args([
            "-O0",
            "-g",
            "-no-pie",
            "-fno-omit-frame-pointer",
            "-DHOSTILE_NAMES",
            "-o",
        ])
        .arg(&out)
        .arg(source)
        .status()
        .expect("run cc");
    assert!(
        status.success(),
        "building hostile_go -DHOSTILE_NAMES failed"
    );
    out
}

/// Check that Go frame naming stays bounded: a binary whose parking function has a
/// 64 KiB name in a 64 KiB file and an inline tree that loops, parked at some 8,000
/// distinct stacks (every new site named at once), costs at most the names the budget
/// keeps: names are cut at 1 KiB, the loop is followed once, and the sites past the
/// process's quota keep their addresses only, which the report says.
#[test]
fn go_frame_names_and_looping_inline_trees_stay_within_budget() {
    require_root();
    let dir = TempDir::new("hostile-names");
    let binary = build_hostile_names(&dir);
    let mut hostile = start_binary(&binary, &["sites"]);
    let (report, summary) = diagnose_within_budget(&[hostile.pid()], 4, "Go frame names");
    hostile.assert_running("while leakscope watched");
    let process = find_process(&report, hostile.pid())
        .unwrap_or_else(|| panic!("the hostile process is not in the report:\n{summary}"));
    assert!(process["error"].is_null(), "{summary}");
    let sites = process["sites"].as_array().unwrap();
    assert!(sites.len() > 1000, "{} sites:\n{summary}", sites.len());
    let names: Vec<&str> = sites
        .iter()
        .flat_map(|s| s["stack"].as_array().unwrap())
        .flat_map(|f| [f["function"].as_str(), f["file"].as_str()])
        .flatten()
        .collect();
    assert!(names.iter().any(|n| n.starts_with("NNNN")), "{summary}");
    assert!(names.iter().all(|n| n.len() <= 1024), "a name over 1 KiB");
    let deepest = sites
        .iter()
        .map(|s| s["stack"].as_array().unwrap().len())
        .max();
    assert!(
        deepest <= Some(16),
        "the inline loop was followed: {deepest:?} frames"
    );
    assert!(
        degraded(process).iter().any(|d| d.contains("not named")),
        "its unnamed sites are not said: {:?}\n{summary}",
        degraded(process)
    );
}

/// Check that a Go binary whose symbol table holds 100,000 symbols all named by one
/// 1 MiB string (100 GB if each name were copied) is analysed within the budget: its
/// goroutine table is read (the symbols leakscope looks up still found).
#[test]
fn symbol_tables_of_endless_names_stay_within_budget() {
    require_root();
    let dir = TempDir::new("hostile-symtab");
    let path = dir.path().join("hostile_go_symtab");
    let mut elf = ElfEdit::open(&program_path(Program::HostileGo));
    let mut strtab = elf.section(".strtab").to_vec();
    let long_name = strtab.len() as u32;
    strtab.extend(std::iter::repeat_n(b'S', 1 << 20));
    strtab.push(0);
    let mut symtab = elf.section(".symtab").to_vec();
    for i in 0..100_000u64 {
        // Elf64_Sym: name, info (global function), other, shndx 1, value, size.
        symtab.extend_from_slice(&long_name.to_le_bytes());
        symtab.extend_from_slice(&[0x12, 0]);
        symtab.extend_from_slice(&1u16.to_le_bytes());
        symtab.extend_from_slice(&(0x1000 + i).to_le_bytes());
        symtab.extend_from_slice(&1u64.to_le_bytes());
    }
    let (strtab_len, symtab_len) = (strtab.len() as u64, symtab.len() as u64);
    let at = elf.append(strtab);
    elf.repoint(".strtab", at, strtab_len, None);
    let at = elf.append(symtab);
    elf.repoint(".symtab", at, symtab_len, None);
    elf.write(&path);
    let mut hostile = start_binary(&path, &["wrap"]);
    let (report, summary) = diagnose_within_budget(&[hostile.pid()], 3, "symbol tables");
    hostile.assert_running("while leakscope watched");
    let process = find_process(&report, hostile.pid())
        .unwrap_or_else(|| panic!("the hostile process is not in the report:\n{summary}"));
    assert_eq!(process["runtime"], "go1.26", "{summary}");
    assert!(process["error"].is_null(), "{summary}");
}

/// Check that compressed debug sections declaring 250 MiB each (six of them: 1.5 GiB,
/// in a root-owned binary, which leakscope trusts to say how much they inflate to) are
/// never inflated: the Go runtime layout comes from the table of its version (its
/// goroutines are read), and the symbolizer names its frames from the symbol table,
/// saying why there is no file and line.
#[test]
fn compressed_debug_sections_are_not_inflated_past_the_budget() {
    require_root();
    let dir = TempDir::new("hostile-dwarf");
    let path = dir.path().join("hostile_go_dwarf");
    let mut elf = ElfEdit::open(&program_path(Program::HostileGo));
    let inflated = 250u64 << 20;
    let mut section = Vec::new();
    // Elf64_Chdr: ch_type 1 (zlib), reserved, ch_size, ch_addralign.
    section.extend_from_slice(&1u32.to_le_bytes());
    section.extend_from_slice(&0u32.to_le_bytes());
    section.extend_from_slice(&inflated.to_le_bytes());
    section.extend_from_slice(&1u64.to_le_bytes());
    section.extend(zlib_zeros(inflated));
    let len = section.len() as u64;
    let at = elf.append(section);
    for name in [
        ".debug_info",
        ".debug_abbrev",
        ".debug_line",
        ".debug_str",
        ".debug_aranges",
        ".debug_line_str",
    ] {
        elf.repoint(name, at, len, Some(SHF_COMPRESSED));
    }
    elf.write(&path);
    let mut hostile = start_binary(&path, &["wrap"]);
    let (report, summary) = diagnose_within_budget(&[hostile.pid()], 3, "compressed debug");
    hostile.assert_running("while leakscope watched");
    let process = find_process(&report, hostile.pid())
        .unwrap_or_else(|| panic!("the hostile process is not in the report:\n{summary}"));
    assert!(process["error"].is_null(), "{summary}");
    assert!(
        degraded(process)
            .iter()
            .any(|d| d.contains("without file and line") && d.contains("debug info")),
        "{:?}\n{summary}",
        degraded(process)
    );
}

/// Check that sparse binaries are never copied whole: a Go binary of another user
/// grown to a gigabyte (read whole, 1 GiB of memory) is read from the parts its
/// analysis needs, and four C leakers of another user grown to 60 MiB each (copied
/// whole for the symbolizer, 240 MiB) are held as copies of their symbol tables: the
/// leaks are found at their sites and the Go process is read.
#[test]
fn sparse_gigabyte_binaries_are_not_copied_whole() {
    require_root();
    let dir = TempDir::new("hostile-sparse");
    let go = copy_program(Program::HostileGo, &dir, "hostile_go_sparse", NOBODY);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&go)
        .unwrap()
        .set_len((1 << 30) - 4096)
        .unwrap();
    let mut hostile = start_binary(&go, &["wrap"]);
    let mut leakers: Vec<Spawned> = (0..4)
        .map(|i| {
            let path = copy_program(
                Program::MutexLeak,
                &dir,
                &format!("mutex_leak_sparse_{i}"),
                NOBODY,
            );
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(60 << 20)
                .unwrap();
            start_binary(&path, &[])
        })
        .collect();
    let mut pids = vec![hostile.pid()];
    pids.extend(leakers.iter().map(Spawned::pid));
    let (report, summary) = diagnose_within_budget(&pids, 4, "sparse binaries");
    hostile.assert_running("while leakscope watched");
    let go = find_process(&report, hostile.pid())
        .unwrap_or_else(|| panic!("the sparse Go process is not in the report:\n{summary}"));
    assert!(go["error"].is_null(), "{summary}");
    for leaker in &mut leakers {
        leaker.assert_running("while leakscope watched");
        let process = find_process(&report, leaker.pid())
            .unwrap_or_else(|| panic!("a sparse leaker is not in the report:\n{summary}"));
        assert!(
            !leak_sites_containing(process, "leak_on_mutex").is_empty(),
            "{summary}"
        );
    }
}

/// Check that processes whose maps are tens of megabytes (7,000 mappings of a 4,000-byte
/// path each, 28 MB of /proc/PID/maps, eight of them) are not held parsed until the
/// scan ends: each is over the per-process quota, not read, and says so.
#[test]
fn huge_process_maps_stay_within_budget() {
    require_root();
    let mut hostile: Vec<Spawned> = (0..8)
        .map(|_| start_binary(&program_path(Program::HostileGo), &["maps"]))
        .collect();
    let pids: Vec<u32> = hostile.iter().map(Spawned::pid).collect();
    let (report, summary) = diagnose_within_budget(&pids, 3, "process maps");
    for h in &mut hostile {
        h.assert_running("while leakscope watched");
        let process = find_process(&report, h.pid())
            .unwrap_or_else(|| panic!("a process is not in the report:\n{summary}"));
        assert!(
            degraded(process).iter().any(|d| d.contains("memory maps")),
            "{:?}\n{summary}",
            degraded(process)
        );
    }
}

/// Check that unwind tables of 120 MiB (a C leaker of another user whose `.eh_frame`
/// and `.eh_frame_hdr` are 60 MiB each, three copies) are not read: checked against the
/// per-binary quota before a byte is read, the leakers are unwound by frame pointers,
/// found leaking at their site, and say so.
#[test]
fn huge_unwind_tables_are_refused_before_reading() {
    require_root();
    let dir = TempDir::new("hostile-unwind");
    let mut leakers: Vec<Spawned> = (0..3)
        .map(|i| {
            let path = dir.path().join(format!("mutex_leak_unwind_{i}"));
            let mut elf = ElfEdit::open(&program_path(Program::MutexLeak));
            let hole = elf.append_hole(120 << 20);
            elf.repoint(".eh_frame", hole, 60 << 20, None);
            elf.repoint(".eh_frame_hdr", hole + (60 << 20), 60 << 20, None);
            elf.write(&path);
            std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
            start_binary(&path, &[])
        })
        .collect();
    let pids: Vec<u32> = leakers.iter().map(Spawned::pid).collect();
    let (report, summary) = diagnose_within_budget(&pids, 4, "unwind tables");
    for leaker in &mut leakers {
        leaker.assert_running("while leakscope watched");
        let process = find_process(&report, leaker.pid())
            .unwrap_or_else(|| panic!("a leaker is not in the report:\n{summary}"));
        assert_eq!(process["verdict"], "leak", "{summary}");
        assert!(
            degraded(process)
                .iter()
                .any(|d| d.contains("unwind tables")),
            "{:?}\n{summary}",
            degraded(process)
        );
    }
}

/// Check that the window's history of a process churning 150,000 fake goroutines (all
/// re-parked with new ids twice a second: 150,000 new waits per read, over 100 MiB of
/// history in half a minute) stays within the history's share: the waits that ended
/// earliest are forgotten, and the process says so.
#[test]
fn history_of_churning_goroutines_stays_within_budget() {
    require_root();
    let mut hostile = start_binary(&program_path(Program::HostileGo), &["flood"]);
    let (report, summary) = diagnose_within_budget(&[hostile.pid()], 30, "history");
    hostile.assert_running("while leakscope watched");
    let process = find_process(&report, hostile.pid())
        .unwrap_or_else(|| panic!("the flooding process is not in the report:\n{summary}"));
    assert!(
        degraded(process).iter().any(|d| d.contains("history cut")),
        "{:?}\n{summary}",
        degraded(process)
    );
}
