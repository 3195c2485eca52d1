//! Tests against real Go binaries, built from `tracer-user/tests/go/` with
//! toolchains fetched by test-support (`scripts/fetch-go.sh`) into `target/go/VERSION`.
//! Built binaries are cached under `target/go-fixtures/`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

use super::*;

const GO_OLDEST: &str = "1.21.13";
const GO_126: &str = "1.26.6";
const GO_NEWEST: &str = "1.27.3";

fn workspace() -> PathBuf {
    test_support::workspace_root()
}

fn target_dir() -> PathBuf {
    test_support::target_dir()
}

/// One lock for fetching and building: tests run in parallel threads.
fn build_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// GOROOT of `version`, fetched on first use.
fn toolchain(version: &str) -> PathBuf {
    test_support::go::go_root(version).unwrap_or_else(|e| panic!("{e}"))
}

/// `go` of `version` in the tests' hermetic environment (CGO_ENABLED=0 unless set).
fn go(version: &str) -> Command {
    test_support::go::go_command(version).unwrap_or_else(|e| panic!("{e}"))
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A way of building a fixture.
#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    /// Directory under tracer-user/tests/go/.
    program: &'static str,
    cgo: bool,
    args: &'static [&'static str],
    /// The unstripped build with the same layout (for `go tool nm`).
    reference: &'static str,
    stripped: bool,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "normal",
        program: "leaky",
        cgo: false,
        args: &[],
        reference: "normal",
        stripped: false,
    },
    Variant {
        name: "stripped",
        program: "leaky",
        cgo: false,
        args: &["-ldflags=-s -w"],
        reference: "normal",
        stripped: true,
    },
    Variant {
        name: "pie",
        program: "leaky",
        cgo: false,
        args: &["-buildmode=pie"],
        reference: "pie",
        stripped: false,
    },
    Variant {
        name: "pie-stripped",
        program: "leaky",
        cgo: false,
        args: &["-buildmode=pie", "-ldflags=-s -w"],
        reference: "pie",
        stripped: true,
    },
    Variant {
        name: "cgo",
        program: "leakycgo",
        cgo: true,
        args: &[],
        reference: "cgo",
        stripped: false,
    },
    Variant {
        name: "cgo-stripped",
        program: "leakycgo",
        cgo: true,
        args: &["-ldflags=-s -w"],
        reference: "cgo",
        stripped: true,
    },
    Variant {
        name: "cgo-pie-stripped",
        program: "leakycgo",
        cgo: true,
        args: &["-buildmode=pie", "-ldflags=-s -w"],
        reference: "cgo-pie",
        stripped: true,
    },
    Variant {
        name: "cgo-pie",
        program: "leakycgo",
        cgo: true,
        args: &["-buildmode=pie"],
        reference: "cgo-pie",
        stripped: false,
    },
    Variant {
        name: "cgo-static",
        program: "leakycgo",
        cgo: true,
        args: &["-ldflags=-linkmode=external -extldflags=-static"],
        reference: "cgo-static",
        stripped: false,
    },
    Variant {
        name: "cgo-static-stripped",
        program: "leakycgo",
        cgo: true,
        args: &["-ldflags=-s -w -linkmode=external -extldflags=-static"],
        reference: "cgo-static",
        stripped: true,
    },
];

fn variant(name: &str) -> Variant {
    *VARIANTS
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no variant {name}"))
}

fn source_dir(program: &str) -> PathBuf {
    workspace().join("tracer-user/tests/go").join(program)
}

/// The fixture binary for (version, variant), built unless cached and newer
/// than its source.
fn fixture(version: &str, v: Variant) -> PathBuf {
    let src = source_dir(v.program);
    let out = target_dir().join("go-fixtures").join(version).join(v.name);
    let newest_source = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .max();
    let fresh = |p: &Path| match (p.metadata().and_then(|m| m.modified()), newest_source) {
        (Ok(built), Some(source)) => built >= source,
        (Ok(_), None) => true,
        _ => false,
    };
    if fresh(&out) {
        return out;
    }
    toolchain(version);
    let _guard = build_lock();
    if fresh(&out) {
        return out;
    }
    if v.cgo {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        assert!(
            Command::new(&cc)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "the cgo fixtures need a C compiler ({cc}): apt-get install gcc libc6-dev"
        );
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let tmp = out.with_extension("tmp");
    let mut cmd = go(version);
    cmd.current_dir(&src)
        .env("CGO_ENABLED", if v.cgo { "1" } else { "0" })
        .arg("build")
        .arg("-o")
        .arg(&tmp)
        .args(v.args)
        .arg(".");
    run(
        cmd,
        &format!("go {version} build {} ({})", v.program, v.name),
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// `go tool nm` of a binary: name -> address of text symbols.
fn nm(version: &str, bin: &Path) -> HashMap<String, u64> {
    let mut cmd = go(version);
    cmd.arg("tool").arg("nm").arg(bin);
    let text = {
        let _guard = build_lock(); // the first use may build the tool
        run(cmd, "go tool nm")
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let kind = it.next()?;
            let name = it.collect::<Vec<_>>().join(" ");
            matches!(kind, "T" | "t").then_some((name, addr))
        })
        .collect()
}

fn nm_addr(syms: &HashMap<String, u64>, name: &str) -> Option<u64> {
    syms.get(name)
        .or_else(|| syms.get(&format!("{name}.abi0")))
        .copied()
}

/// `go tool addr2line` of one address: (function, file, line).
fn addr2line(version: &str, bin: &Path, addr: u64) -> (String, String, u32) {
    use std::io::Write;
    let goroot = toolchain(version);
    let _guard = build_lock();
    let mut cmd = go(version);
    cmd.arg("tool")
        .arg("addr2line")
        .arg(bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("go tool addr2line ({}): {e}", goroot.display()));
    writeln!(child.stdin.take().unwrap(), "{addr:#x}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "go tool addr2line: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let func = lines.next().unwrap_or_default().to_string();
    let pos = lines.next().unwrap_or_default();
    let (file, line) = pos.rsplit_once(':').expect("file:line");
    (func, file.to_string(), line.parse().expect("line number"))
}

/// Line number of the first source line containing `needle`.
fn source_line(program: &str, needle: &str) -> u32 {
    let text = std::fs::read_to_string(source_dir(program).join("main.go")).unwrap();
    let idx = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {program}/main.go"));
    idx as u32 + 1
}

/// Opened binaries, shared between tests.
fn open(version: &str, variant_name: &str) -> &'static GoBinary {
    static CACHE: OnceLock<Mutex<HashMap<(String, String), &'static GoBinary>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (version.to_string(), variant_name.to_string());
    if let Some(b) = cache.lock().unwrap().get(&key) {
        return b;
    }
    let path = fixture(version, variant(variant_name));
    let bin = GoBinary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bin: &'static GoBinary = Box::leak(Box::new(bin));
    cache.lock().unwrap().insert(key, bin);
    bin
}

/// The checks every fixture must pass.
fn check_fixture(version: &str, v: Variant) {
    let what = format!("go{version} {}", v.name);
    let bin = open(version, v.name);
    let reference = fixture(version, variant(v.reference));
    let syms = nm(version, &reference);

    // Version.
    assert_eq!(bin.version().raw, format!("go{version}"), "{what}");
    let want: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(
        [
            bin.version().major,
            bin.version().minor,
            bin.version().patch
        ],
        [want[0], want[1], want[2]],
        "{what}"
    );
    assert_eq!(bin.is_pie(), v.name.contains("pie"), "{what}");
    assert_eq!(bin.has_symbols(), !v.stripped, "{what}");

    // Moduledata and go:func.* are found the runtime's way in every build.
    assert!(bin.moduledata().is_some(), "{what}: no moduledata");
    assert_eq!(
        bin.text_start_provenance(),
        Provenance::Moduledata,
        "{what}"
    );
    assert_eq!(
        bin.gofunc_provenance(),
        Some(Provenance::Moduledata),
        "{what}"
    );
    assert_eq!(
        bin.pclntab().text_start(),
        syms["runtime.text"],
        "{what}: text start"
    );
    // Only the symbols the analysis looks up are kept, never the whole table.
    assert_eq!(bin.symbol("main.knownTarget"), None, "{what}");
    if !v.stripped {
        assert_eq!(
            bin.symbol("runtime.text"),
            Some(syms["runtime.text"]),
            "{what}"
        );
        let gofunc = bin.symbol("go:func.*").expect("go:func.* symbol");
        assert_eq!(bin.pclntab().gofunc(), Some(gofunc), "{what}: gofunc");
        let md = bin
            .symbol("runtime.firstmoduledata")
            .expect("firstmoduledata symbol");
        assert_eq!(bin.moduledata().unwrap().addr, md, "{what}: moduledata");
    }

    // Functions by address and by name, against go tool nm.
    let tab = bin.pclntab();
    for name in [
        "main.knownTarget",
        "main.worker",
        "main.main",
        "runtime.gopark",
        "runtime.allgadd",
        "runtime.chanrecv1",
        "runtime.goexit",
    ]
    .into_iter()
    .chain((v.program == "leaky").then_some("main.main.func1"))
    {
        // nm names assembly functions with their ABI (`.abi0`); the
        // pclntab does not.
        let addr =
            nm_addr(&syms, name).unwrap_or_else(|| panic!("{what}: go tool nm has no {name}"));
        assert_eq!(
            tab.find_func_by_name(name),
            Some(addr),
            "{what}: {name} by name"
        );
        let f = tab
            .find_func(addr + 1)
            .unwrap_or_else(|| panic!("{what}: nothing at {addr:#x} ({name})"));
        assert_eq!(
            (f.name.as_str(), f.entry),
            (name, addr),
            "{what}: {name} by address"
        );
        assert!(f.end > f.entry, "{what}: {name} is empty");
        assert_eq!(
            tab.find_func(f.end - 1).map(|g| g.entry),
            Some(addr),
            "{what}"
        );
    }
    // Every function of the pclntab is a text symbol at the same address
    // (which checks the text start of cgo builds too).
    let mut mismatches = Vec::new();
    for f in tab.funcs() {
        // Assembly functions with a Go-ABI wrapper have both names in nm.
        // nm writes the middle dot of generated names as '.'.
        let name = f.name.replace('·', ".");
        let abi0 = format!("{name}.abi0");
        if syms.get(&name) != Some(&f.entry) && syms.get(&abi0) != Some(&f.entry) {
            mismatches.push(format!(
                "{} {:#x} (nm: {:x?})",
                f.name,
                f.entry,
                syms.get(&f.name)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} functions disagree with go tool nm: {:?}",
        mismatches.len(),
        tab.nfunc(),
        &mismatches[..mismatches.len().min(10)]
    );
    assert!(
        tab.find_func(tab.text_start().wrapping_sub(1)).is_none(),
        "{what}"
    );
    assert!(tab.find_func(tab.text_end()).is_none(), "{what}");

    // File and line of a function entry, against go tool addr2line.
    let entry = syms["main.knownTarget"];
    let (a2l_func, a2l_file, a2l_line) = addr2line(version, &reference, entry);
    assert_eq!(a2l_func, "main.knownTarget", "{what}: addr2line");
    let f = tab.find_func(entry).unwrap();
    let (file, line) = tab.pc_to_file_line(&f, entry).expect("file:line");
    assert_eq!(
        (file.as_str(), line),
        (a2l_file.as_str(), a2l_line),
        "{what}: file:line"
    );
    assert!(
        file.ends_with(&format!("tests/go/{}/main.go", v.program)),
        "{what}: {file}"
    );
    // The entry is at the `func` line up to Go 1.26; Go 1.27 places it on
    // the body's first line. startLine is the `func` line in all.
    let func_line = source_line(v.program, "func knownTarget(");
    assert_eq!(f.start_line as u32, func_line, "{what}: startLine");
    assert!(
        (func_line..func_line + 8).contains(&line),
        "{what}: line {line}"
    );
    // A runtime function's file.
    let gopark = tab.find_func(syms["runtime.gopark"]).unwrap();
    let (file, _) = tab.pc_to_file_line(&gopark, gopark.entry).unwrap();
    assert!(
        file.ends_with("src/runtime/proc.go"),
        "{what}: runtime.gopark in {file}"
    );

    // Inlining: queryReplica is inlined into worker (and into the closure in
    // the non-cgo program); the receive inside it expands to both frames.
    let recv_line = source_line(v.program, "v := <-ch");
    let mut callers = vec![(
        "main.worker",
        source_line(v.program, "out <- queryReplica(ch)"),
    )];
    if v.program == "leaky" {
        let text = std::fs::read_to_string(source_dir("leaky").join("main.go")).unwrap();
        let closure_call = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("out <- queryReplica(ch)"))
            .nth(1)
            .expect("closure call")
            .0 as u32
            + 1;
        callers.push(("main.main.func1", closure_call));
    }
    for (caller, call_line) in callers {
        let f = tab.find_func(syms[caller]).unwrap();
        let mut found = false;
        for pc in f.entry..f.end {
            let frames = tab.inline_frames(&f, pc);
            assert_eq!(
                frames.last().unwrap().function,
                caller,
                "{what}: outermost frame"
            );
            if frames.len() == 2 && frames[0].function == "main.queryReplica" {
                assert!(frames[0].file.ends_with("main.go"), "{what}: {frames:?}");
                assert_eq!(frames[1].line, call_line, "{what}: call site {frames:?}");
                if frames[0].line == recv_line {
                    found = true;
                }
            }
        }
        assert!(
            found,
            "{what}: no PC of {caller} expands to main.queryReplica at line {recv_line}"
        );
    }
}

/// Check that Go 1.21 binaries (normal, stripped, PIE, cgo, static) yield
/// version, functions, lines and inlined calls that match the toolchain's own
/// tools.
#[test]
fn go121_fixtures() {
    for v in VARIANTS {
        check_fixture(GO_OLDEST, *v);
    }
}

/// Check that Go 1.26 binaries (no text start in the pclntab header,
/// go:func.* inside .gopclntab) yield version, functions, lines and inlined
/// calls that match the toolchain's own tools.
#[test]
fn go126_fixtures() {
    for v in VARIANTS {
        check_fixture(GO_126, *v);
    }
}

/// Check that Go 1.27 binaries (moduledata with typedesclen/itaboffset
/// before gofunc) yield version, functions, lines and inlined calls that
/// match the toolchain's own tools.
#[test]
fn go127_fixtures() {
    for name in ["normal", "stripped", "pie-stripped", "cgo-stripped"] {
        check_fixture(GO_NEWEST, variant(name));
    }
}

/// Check that the Go 1.26+ layout rule (go:func.* right after the `_func`
/// records) finds the same go:func.* as the symbol table, so that it is a
/// sound fallback when no moduledata is found.
#[test]
fn gofunc_from_pclntab_layout() {
    for (version, name) in [
        (GO_126, "normal"),
        (GO_126, "pie"),
        (GO_126, "cgo"),
        (GO_NEWEST, "normal"),
    ] {
        let bin = open(version, name);
        let data = std::fs::read(fixture(version, variant(name))).unwrap();
        let (image, _) = ElfImage::parse(&data).unwrap();
        let derived = gofunc_from_layout(&image, bin.pclntab_addr(), bin.pclntab());
        assert_eq!(derived, bin.symbol("go:func.*"), "go{version} {name}");
    }
}

/// Overwrites the ELF header's section-header fields (e_shoff, e_shnum,
/// e_shstrndx) so that only program headers remain.
fn without_section_headers(mut data: Vec<u8>) -> Vec<u8> {
    data[0x28..0x30].fill(0);
    data[0x3c..0x40].fill(0);
    data
}

/// Check that binaries without section headers (only program headers) are
/// still analysed: build info, pclntab and moduledata are found by scanning
/// the segments.
#[test]
fn no_section_headers() {
    for (version, name) in [
        (GO_OLDEST, "stripped"),
        (GO_126, "pie-stripped"),
        (GO_126, "cgo-stripped"),
    ] {
        let what = format!("go{version} {name}");
        let full = open(version, name);
        let data = without_section_headers(std::fs::read(fixture(version, variant(name))).unwrap());
        let bin = GoBinary::parse(&data).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(bin.version(), full.version(), "{what}");
        assert_eq!(bin.pclntab_addr(), full.pclntab_addr(), "{what}");
        assert_eq!(
            bin.pclntab().text_start(),
            full.pclntab().text_start(),
            "{what}"
        );
        assert_eq!(bin.pclntab().gofunc(), full.pclntab().gofunc(), "{what}");
        let entry = full.pclntab().find_func_by_name("main.worker").unwrap();
        assert_eq!(
            bin.pclntab().find_func_by_name("main.worker"),
            Some(entry),
            "{what}"
        );
        let f = bin.pclntab().find_func(entry).unwrap();
        let expanded = (f.entry..f.end).any(|pc| bin.pclntab().inline_frames(&f, pc).len() == 2);
        assert!(expanded, "{what}: no inlined call expanded");
    }
}

/// Check that garbage, truncated and corrupted files give errors, not
/// panics.
#[test]
fn garbage_files_are_errors() {
    assert!(matches!(
        GoBinary::parse(&[]),
        Err(GoBinaryError::NotElf(_))
    ));
    assert!(matches!(
        GoBinary::parse(b"#!/bin/sh\necho hi\n"),
        Err(GoBinaryError::NotElf(_))
    ));
    assert!(matches!(
        GoBinary::open("/nonexistent/leakscope-go-test"),
        Err(GoBinaryError::Io { .. })
    ));
    // A non-Go ELF: this very test binary.
    let me = std::env::current_exe().unwrap();
    assert!(
        matches!(GoBinary::open(&me), Err(GoBinaryError::BuildInfo(_))),
        "a Rust binary was taken for a Go one"
    );

    let path = fixture(GO_126, variant("stripped"));
    let data = std::fs::read(&path).unwrap();
    let good = GoBinary::parse(&data).unwrap();
    // Truncations.
    for len in [
        1,
        16,
        63,
        64,
        200,
        4096,
        data.len() / 3,
        data.len() / 2,
        data.len() - 1,
    ] {
        let _ = GoBinary::parse(&data[..len]);
        let _ = GoBinary::parse(&without_section_headers(data[..len.max(64)].to_vec()));
    }
    // A broken pclntab magic is an error.
    let pcln_off = {
        let file = object::File::parse(&*data).unwrap();
        let s = file.section_by_name(".gopclntab").unwrap();
        s.file_range().unwrap().0 as usize
    };
    let mut bad = data.clone();
    bad[pcln_off] ^= 0xff;
    assert!(
        GoBinary::parse(&bad).is_err(),
        "corrupt pclntab magic accepted"
    );
    // A broken build-info magic is an error.
    let mut bad = data.clone();
    let bi = buildinfo::find_magic(&data, 0).unwrap();
    bad[bi + 1] = b'X';
    assert!(matches!(
        GoBinary::parse(&bad),
        Err(GoBinaryError::BuildInfo(_))
    ));
    // Random corruption of the pclntab's tables: lookups must not panic.
    let nfunc = good.pclntab().nfunc();
    let mut state = 0x2545_f491u32;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize
    };
    let pcln_len = {
        let file = object::File::parse(&*data).unwrap();
        file.section_by_name(".gopclntab").unwrap().size() as usize
    };
    for _ in 0..40 {
        let mut bad = data.clone();
        for _ in 0..2000 {
            let i = pcln_off + 8 + rand() % (pcln_len - 8);
            bad[i] = rand() as u8;
        }
        if let Ok(bin) = GoBinary::parse(&bad) {
            let tab = bin.pclntab();
            for _ in 0..200 {
                let pc = tab.text_start()
                    + (rand() % (tab.text_end() - tab.text_start()) as usize) as u64;
                if let Some(f) = tab.find_func(pc) {
                    let _ = tab.pc_to_file_line(&f, pc);
                    let _ = tab.inline_frames(&f, pc);
                }
            }
            let _ = tab.find_func_by_name("main.worker");
            assert!(tab.nfunc() == nfunc || tab.nfunc() > 0);
        }
    }
}

/// An ELF64 executable with only program headers: one `PT_LOAD` per
/// `(flags, bytes)`, each at its own page-aligned offset and address.
pub(crate) fn craft_elf(segments: &[(u32, Vec<u8>)]) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let phnum = segments.len();
    let mut out = vec![0u8; 0x1000];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // 64-bit
    out[5] = 1; // little endian
    out[6] = 1;
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    for (i, (flags, bytes)) in segments.iter().enumerate() {
        let off = out.len() as u64;
        let ph = 64 + i * 56;
        let put = |out: &mut Vec<u8>, at: usize, v: u64| {
            out[ph + at..ph + at + 8].copy_from_slice(&v.to_le_bytes())
        };
        out[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out[ph + 4..ph + 8].copy_from_slice(&flags.to_le_bytes());
        put(&mut out, 8, off);
        put(&mut out, 16, BASE + off);
        put(&mut out, 24, BASE + off);
        put(&mut out, 32, bytes.len() as u64);
        put(&mut out, 40, bytes.len() as u64);
        put(&mut out, 48, 0x1000);
        out.extend_from_slice(bytes);
        out.resize(out.len().next_multiple_of(0x1000), 0);
    }
    out
}

/// A Go 1.18+ inline-format build-info blob naming `version`.
pub(crate) fn craft_buildinfo(version: &str) -> Vec<u8> {
    let mut b = buildinfo::BUILDINFO_MAGIC.to_vec();
    b.push(8);
    b.push(2);
    b.resize(32, 0);
    b.push(version.len() as u8);
    b.extend_from_slice(version.as_bytes());
    b.push(0);
    b
}

/// Check that a read-only segment tiled with pclntab headers that fail their
/// sanity checks is rejected in linear time (each candidate used to copy the
/// rest of the segment before its checks: hours for this file).
#[test]
fn segment_tiled_with_fake_pclntab_headers_is_rejected_quickly() {
    let mut header = Vec::new();
    header.extend_from_slice(&pclntab::MAGIC_GO120.to_le_bytes());
    header.extend_from_slice(&[0, 0, 1, 8]);
    for word in [1u64, 0, 0, 72, 72, 72, 72, 72] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    let tiled: Vec<u8> = header.iter().copied().cycle().take(16 << 20).collect();
    let data = craft_elf(&[(PF_W | 4, craft_buildinfo("go1.26.6")), (4, tiled)]);
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(GoBinary::parse(&data).map(|_| ())));
    let result = wait
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("pclntab scan still running after 60 s");
    assert!(
        matches!(result, Err(GoBinaryError::NoPclntab)),
        "{result:?}"
    );
}

/// A copy of an ELF file with its section headers scrambled as `how` says; the
/// program headers, which the loader and the Go runtime use, are untouched.
pub(crate) fn scramble_section_headers(data: &[u8], how: &str) -> Vec<u8> {
    let mut out = data.to_vec();
    let u64_at = |d: &[u8], at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap());
    let shoff = u64_at(&out, 0x28) as usize;
    let shnum = u16::from_le_bytes(out[0x3c..0x3e].try_into().unwrap()) as usize;
    match how {
        // Every section renamed to the same junk.
        "names" => {
            for i in 0..shnum {
                out[shoff + i * 64..shoff + i * 64 + 4].copy_from_slice(&1u32.to_le_bytes());
            }
        }
        // Types, offsets and sizes garbage.
        "fields" => {
            for i in 1..shnum {
                let h = shoff + i * 64;
                out[h + 4..h + 8].copy_from_slice(&0x6fff_fff7u32.to_le_bytes());
                out[h + 24..h + 40].fill(0xee);
            }
        }
        // The table itself past the end of the file.
        "offset" => {
            let past = (data.len() as u64 + 0x1234).to_le_bytes();
            out[0x28..0x30].copy_from_slice(&past);
        }
        other => panic!("no scramble {other}"),
    }
    out
}

/// Check that a Go binary whose section headers are scrambled (it still runs) is
/// analysed through its program headers, and one that cannot be analysed at all is
/// an unreadable Go program, never "not Go".
#[test]
fn scrambled_section_headers_are_still_go() {
    use executable::{UnreadableGoKind, analyse_go_bytes};
    for (version, name) in [(GO_126, "normal"), (GO_126, "pie-stripped")] {
        let data = std::fs::read(fixture(version, variant(name))).unwrap();
        for how in ["names", "fields", "offset"] {
            let what = format!("go{version} {name}, scrambled {how}");
            let scrambled = scramble_section_headers(&data, how);
            let program = analyse_go_bytes(&scrambled)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .unwrap_or_else(|| panic!("{what}: taken for a native binary"));
            assert_eq!(
                program.release,
                crate::model::GoRelease::Known {
                    major: 1,
                    minor: 26
                },
                "{what}"
            );
        }
    }
    // Build info present, pclntab gone: unreadable, with the reason.
    let data = std::fs::read(fixture(GO_126, variant("stripped"))).unwrap();
    let mut broken = scramble_section_headers(&data, "names");
    let magic = pclntab::MAGIC_GO120.to_le_bytes();
    let mut at = 0;
    while let Some(pos) = broken[at..].windows(4).position(|w| w == magic) {
        broken[at + pos] ^= 0xff;
        at += pos + 1;
    }
    let err = analyse_go_bytes(&broken).err().expect("taken for healthy");
    assert!(
        matches!(err.kind, UnreadableGoKind::Binary(GoBinaryError::NoPclntab)),
        "{err:?}"
    );
}

/// Check that a compressed DWARF section declaring a huge uncompressed size is
/// refused before anything is inflated.
#[test]
fn compressed_dwarf_bomb_is_refused_before_inflating() {
    use object::ObjectSection;
    let data = std::fs::read(fixture(GO_126, variant("normal"))).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let info = file.section_by_name(".debug_info").unwrap();
    let (offset, _) = info.file_range().unwrap();
    assert_eq!(
        info.compressed_data().unwrap().format,
        object::CompressionFormat::Zlib,
        "Go compresses its DWARF"
    );
    let mut bomb = data.clone();
    // Elf64_Chdr: ch_type u32, reserved u32, ch_size u64, ch_addralign u64.
    let at = offset as usize + 8;
    bomb[at..at + 8].copy_from_slice(&(8u64 << 30).to_le_bytes());
    let err = layout::GoRuntimeLayout::from_dwarf_bytes(&bomb).unwrap_err();
    assert!(
        matches!(err, layout::LayoutError::DwarfTooLarge { size, .. } if size == 8 << 30),
        "{err:?}"
    );
}
