//! Compiles the C kernel programs under src/bpf with clang-19 into $OUT_DIR.
//!
//! Kernel programs are C (CO-RE) rather than aya-ebpf Rust because the machines this
//! project builds on cannot get the `rust-src` component aya-ebpf needs.

use std::{env, path::PathBuf, process::Command};

/// Every kernel program object we build: one probe family per file.
const PROGRAMS: &[&str] = &["thread_waiters"];

fn main() {
    let bpf_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/bpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let clang = env::var("LEAKSCOPE_CLANG").unwrap_or_else(|_| "clang-19".to_string());

    println!("cargo:rerun-if-env-changed=LEAKSCOPE_CLANG");
    for header in ["vmlinux.h", "leakscope.h"] {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(header).display());
    }
    for name in PROGRAMS {
        let src = bpf_dir.join(format!("{name}.bpf.c"));
        let obj = out_dir.join(format!("{name}.bpf.o"));
        println!("cargo:rerun-if-changed={}", src.display());
        let status = Command::new(&clang)
            // The BPF backend; CO-RE relocations need BTF, which -g emits.
            .args(["-target", "bpf", "-g"])
            // bpf_tracing.h picks the pt_regs layout by architecture.
            .arg("-D__TARGET_ARCH_x86")
            // The verifier rejects many -O0 patterns (stack spills of pointers).
            .arg("-O2")
            // Warnings in kernel code are bugs waiting for a verifier error.
            .args(["-Wall", "-Werror"])
            .arg(format!("-I{}", bpf_dir.display()))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{clang} failed on {} ({s})", src.display()),
            Err(e) => panic!(
                "cannot run {clang} ({e}): install it with `cargo xtask setup` \
                 (apt-get install clang-19 libbpf-dev)"
            ),
        }
    }
}
