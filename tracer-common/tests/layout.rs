//! The Rust mirrors must match the C header byte for byte.

use std::{mem::offset_of, process::Command};

use tracer_common::{ProcessRecord, RecordHeader, ThreadWaiterRecord};

/// Check that every field of `struct ls_thread_waiter`, as the host C compiler lays out
/// leakscope.h, sits at the offset the Rust mirror uses; likewise `struct ls_process`.
#[test]
fn record_layout_matches_c_header() {
    let dir = std::env::temp_dir().join(format!("leakscope-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let bin = dir.join("layout");
    let fields = [
        "tgid",
        "tid",
        "process_start_mono_ns",
        "thread_start_mono_ns",
        "exec_id",
        "nvcsw",
        "nivcsw",
        "last_arrival_ns",
        "sched_now_ns",
        "mono_now_ns",
        "ip",
        "sp",
        "bp",
        "syscall_nr",
        "args",
        "state",
        "flags",
        "comm",
    ];
    let mut c = format!(
        "#include <linux/types.h>\n#include <stdio.h>\n#include <stddef.h>\n#include \"{}\"\n\
         int main(void) {{\n printf(\"size %zu\\n\", sizeof(struct ls_thread_waiter));\n\
         printf(\"header %zu\\n\", sizeof(struct ls_record_header));\n",
        tracer_ebpf::LEAKSCOPE_H
    );
    for f in fields {
        c.push_str(&format!(
            " printf(\"{f} %zu\\n\", offsetof(struct ls_thread_waiter, {f}));\n"
        ));
    }
    for f in [
        "tgid",
        "nr_threads",
        "start_mono_ns",
        "exec_id",
        "mono_now_ns",
        "comm",
    ] {
        c.push_str(&format!(
            " printf(\"process.{f} %zu\\n\", offsetof(struct ls_process, {f}));\n"
        ));
    }
    c.push_str(" printf(\"process.size %zu\\n\", sizeof(struct ls_process));\n");
    c.push_str(" return 0;\n}\n");
    std::fs::write(&src, c).unwrap();
    let status = Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed to compile the layout probe");
    let out = Command::new(&bin).output().expect("run layout probe");
    let text = String::from_utf8(out.stdout).unwrap();
    let c_layout: std::collections::HashMap<&str, usize> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    let rust_layout = [
        ("size", size_of::<ThreadWaiterRecord>()),
        ("header", size_of::<RecordHeader>()),
        ("tgid", offset_of!(ThreadWaiterRecord, tgid)),
        ("tid", offset_of!(ThreadWaiterRecord, tid)),
        (
            "process_start_mono_ns",
            offset_of!(ThreadWaiterRecord, process_start_mono_ns),
        ),
        (
            "thread_start_mono_ns",
            offset_of!(ThreadWaiterRecord, thread_start_mono_ns),
        ),
        ("exec_id", offset_of!(ThreadWaiterRecord, exec_id)),
        ("nvcsw", offset_of!(ThreadWaiterRecord, nvcsw)),
        ("nivcsw", offset_of!(ThreadWaiterRecord, nivcsw)),
        (
            "last_arrival_ns",
            offset_of!(ThreadWaiterRecord, last_arrival_ns),
        ),
        ("sched_now_ns", offset_of!(ThreadWaiterRecord, sched_now_ns)),
        ("mono_now_ns", offset_of!(ThreadWaiterRecord, mono_now_ns)),
        ("ip", offset_of!(ThreadWaiterRecord, ip)),
        ("sp", offset_of!(ThreadWaiterRecord, sp)),
        ("bp", offset_of!(ThreadWaiterRecord, bp)),
        ("syscall_nr", offset_of!(ThreadWaiterRecord, syscall_nr)),
        ("args", offset_of!(ThreadWaiterRecord, args)),
        ("state", offset_of!(ThreadWaiterRecord, state)),
        ("flags", offset_of!(ThreadWaiterRecord, flags)),
        ("comm", offset_of!(ThreadWaiterRecord, comm)),
    ];
    let process_layout = [
        ("process.size", size_of::<ProcessRecord>()),
        ("process.tgid", offset_of!(ProcessRecord, tgid)),
        ("process.nr_threads", offset_of!(ProcessRecord, nr_threads)),
        (
            "process.start_mono_ns",
            offset_of!(ProcessRecord, start_mono_ns),
        ),
        ("process.exec_id", offset_of!(ProcessRecord, exec_id)),
        (
            "process.mono_now_ns",
            offset_of!(ProcessRecord, mono_now_ns),
        ),
        ("process.comm", offset_of!(ProcessRecord, comm)),
    ];
    for (name, rust) in rust_layout.into_iter().chain(process_layout) {
        assert_eq!(
            c_layout.get(name),
            Some(&rust),
            "layout of `{name}` differs between C and Rust"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
