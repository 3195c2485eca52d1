//! The /proc fallback's files of one thread (`stat`, `status`, `syscall`, `sched`, the
//! fd link) as a process can shape them (its `comm` is in `stat` and heads `sched`; any
//! bytes but NUL, up to 15), each up to the 64 KiB the source reads; then the records
//! made of them through the iterator's record stream and the wait classification.
//!
//! Input (after [`grow`]): `comm`, the rest of `stat` after `) `, `status`, `syscall`,
//! `sched` (after its header line), the fd link, separated by `\n##\n`.
#![no_main]

use leakscope_fuzz::{grow, split_parts};
use libfuzzer_sys::fuzz_target;
use tracer_user::sources::threads::{
    bpf::parse_records,
    procfs::{MAX_PROC_FILE, ThreadFiles, fuzz_thread_files},
    wait::WaitClassifier,
};

/// What the kernel keeps of a name (TASK_COMM_LEN less its NUL).
const COMM_MAX: usize = 15;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_PROC_FILE as usize)]).into_owned()
}

/// `sched` as the kernel writes it: a header line naming the task, then the fields.
fn sched_with_header(comm: &str, fields: &str) -> String {
    let dashes = "-".repeat(60);
    text(format!("{comm} (2, #threads: 1)\n{dashes}\n{fields}").as_bytes())
}

fn as_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: the records are plain #[repr(C)] data without padding (tracer-common).
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 6 * MAX_PROC_FILE as usize);
    let parts = split_parts(&data, b"\n##\n", 6);
    let comm_bytes: Vec<u8> = parts[0]
        .iter()
        .copied()
        .filter(|&b| b != 0)
        .take(COMM_MAX)
        .collect();
    let comm = String::from_utf8_lossy(&comm_bytes).into_owned();
    let rest = String::from_utf8_lossy(parts[1]);
    let stat = text(format!("2 ({comm}) {rest}").as_bytes());
    let status = text(parts[2]);
    let syscall = text(parts[3]);
    let sched_fields = String::from_utf8_lossy(parts[4]);
    let fd_link = text(parts[5]);
    let files = |sched: &str| {
        fuzz_thread_files(&ThreadFiles {
            process_stat: &stat,
            stat: &stat,
            status: &status,
            syscall: &syscall,
            sched,
            fd_link: &fd_link,
        })
    };
    let sched = sched_with_header(&comm, &sched_fields);
    let Some((process, waiter)) = files(&sched) else {
        return;
    };
    // The name is the process's; the fields after it are the kernel's.
    if !rest.contains(')') {
        let named = &waiter.comm[..waiter.comm.iter().position(|&b| b == 0).unwrap_or(16)];
        assert!(
            comm.as_bytes().starts_with(named),
            "comm {comm:?} read as {named:?}"
        );
        // A name cannot change what the kernel's fields say (here: when it last ran).
        let plain = files(&sched_with_header("x", &sched_fields)).map(|(_, w)| w.last_arrival_ns);
        assert_eq!(
            plain,
            Some(waiter.last_arrival_ns),
            "the name {comm:?} in sched's header changed its exec_start"
        );
    }
    // The records as the iterator's byte stream, read back and classified.
    let mut stream = as_bytes(&process).to_vec();
    stream.extend_from_slice(as_bytes(&waiter));
    let records = parse_records(&stream);
    assert_eq!((records.processes.len(), records.waiters.len()), (1, 1));
    let mut classifier = WaitClassifier::default();
    for record in &records.waiters {
        let _ = classifier.classify(record);
    }
});
