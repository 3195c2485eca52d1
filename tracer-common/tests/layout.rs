//! The Rust mirrors must match the C header byte for byte.

use std::{mem::offset_of, process::Command};

use tracer_common::{ProcessRecord, RecordHeader, ThreadWaiterRecord, fd_kind};

/// Every `enum ls_fd_kind` value and its Rust mirror.
const FD_KINDS: [(&str, u32); 18] = [
    ("LS_FD_NONE", fd_kind::NONE),
    ("LS_FD_UNKNOWN", fd_kind::UNKNOWN),
    ("LS_FD_SOCKET", fd_kind::SOCKET),
    ("LS_FD_PIPE", fd_kind::PIPE),
    ("LS_FD_FILE", fd_kind::FILE),
    ("LS_FD_DIR", fd_kind::DIR),
    ("LS_FD_CHARDEV", fd_kind::CHARDEV),
    ("LS_FD_TTY", fd_kind::TTY),
    ("LS_FD_BLOCKDEV", fd_kind::BLOCKDEV),
    ("LS_FD_EVENTFD", fd_kind::EVENTFD),
    ("LS_FD_EPOLL", fd_kind::EPOLL),
    ("LS_FD_SIGNALFD", fd_kind::SIGNALFD),
    ("LS_FD_TIMERFD", fd_kind::TIMERFD),
    ("LS_FD_INOTIFY", fd_kind::INOTIFY),
    ("LS_FD_PIDFD", fd_kind::PIDFD),
    ("LS_FD_IO_URING", fd_kind::IO_URING),
    ("LS_FD_ANON", fd_kind::ANON),
    ("LS_FD_OTHER", fd_kind::OTHER),
];

/// Check that every field of `struct ls_thread_waiter`, as the host C compiler lays out
/// leakscope.h, sits at the offset the Rust mirror uses; likewise `struct ls_process`
/// and the values of `enum ls_fd_kind`.
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
        "fd",
        "fd_kind",
        "fd_detail",
        "reserved",
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
        "map_count",
        "uid",
        "rss_pages",
    ] {
        c.push_str(&format!(
            " printf(\"process.{f} %zu\\n\", offsetof(struct ls_process, {f}));\n"
        ));
    }
    c.push_str(" printf(\"process.size %zu\\n\", sizeof(struct ls_process));\n");
    c.push_str(" printf(\"LS_UNKNOWN_U32 %u\\n\", LS_UNKNOWN_U32);\n");
    for (name, _) in FD_KINDS {
        c.push_str(&format!(" printf(\"{name} %d\\n\", (int){name});\n"));
    }
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
        ("fd", offset_of!(ThreadWaiterRecord, fd)),
        ("fd_kind", offset_of!(ThreadWaiterRecord, fd_kind)),
        ("fd_detail", offset_of!(ThreadWaiterRecord, fd_detail)),
        ("reserved", offset_of!(ThreadWaiterRecord, reserved)),
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
        ("process.map_count", offset_of!(ProcessRecord, map_count)),
        ("process.uid", offset_of!(ProcessRecord, uid)),
        ("process.rss_pages", offset_of!(ProcessRecord, rss_pages)),
        ("LS_UNKNOWN_U32", tracer_common::UNKNOWN_U32 as usize),
    ];
    let fd_kinds = FD_KINDS.map(|(name, value)| (name, value as usize));
    for (name, rust) in rust_layout
        .into_iter()
        .chain(process_layout)
        .chain(fd_kinds)
    {
        assert_eq!(
            c_layout.get(name),
            Some(&rust),
            "layout of `{name}` differs between C and Rust"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
