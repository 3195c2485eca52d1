//! The goroutine reader over a fake process memory: `hostile_go` (tests/programs,
//! compiled by build.rs) gives the binary (its pclntab, go1.26 layout and the addresses
//! of `runtime.allgs` / `runtime.allglen`); the input is that process's memory: the
//! slice header and length words, then one region the table, `g`s and stacks point into.
//!
//! Input (after [`grow`], up to 48 MiB: a table of the reader's 4M goroutines at most,
//! 32 MiB of pointers, and the `g`s and stacks they lead to): the header, then the heap.
#![no_main]

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::{
    host::memory::fake::set_memory,
    sources::{
        go::executable::{GoProgram, analyse_go_bytes},
        go::reader::fuzz_read_goroutines,
    },
};

/// Where the free-form region of the input is mapped.
const HEAP: u64 = 0x7f00_0000_0000;

static PROGRAM: LazyLock<Arc<GoProgram>> = LazyLock::new(|| {
    let exe = include_bytes!(concat!(env!("OUT_DIR"), "/hostile_go"));
    Arc::new(analyse_go_bytes(exe).unwrap().unwrap())
});

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 48 << 20);
    if data.len() < 32 {
        return;
    }
    let program = PROGRAM.clone();
    let mut heap = data.into_owned();
    let header: Vec<u8> = heap.drain(..32).collect();
    set_memory(vec![
        (program.addrs.allgs, header[..24].to_vec()),
        (program.addrs.allglen, header[24..32].to_vec()),
        (HEAP, heap),
    ]);
    // The reader's time budget, as `--read-budget` gives it (a second here, under the
    // fuzzer's instrumentation): a read that takes longer must end as over budget.
    let _ = fuzz_read_goroutines(program, 0, Duration::from_secs(1));
});
