//! Builds tests/programs/hostile_go.c: the goroutines target reads its fake goroutine
//! table through the binary's own pclntab, layout and symbols.
use std::{path::PathBuf, process::Command};

fn main() {
    let source = PathBuf::from("../tracer-user/tests/programs/hostile_go.c");
    println!("cargo::rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("hostile_go");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O0", "-g", "-no-pie", "-fno-omit-frame-pointer", "-o"])
        .arg(&out)
        .arg(&source)
        .env_remove("CFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("{cc}: {e}"));
    assert!(
        status.success(),
        "{cc} failed building {}",
        source.display()
    );
}
