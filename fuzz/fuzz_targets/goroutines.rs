//! The goroutine reader over a fake process memory: `hostile_go` (tests/programs,
//! compiled by build.rs) gives the binary (its pclntab, go1.26 layout and the addresses
//! of `runtime.allgs` / `runtime.allglen`); the input is that process's memory: the
//! slice header and length words, then one region the table, `g`s and stacks point into.
#![no_main]

use std::sync::{Arc, LazyLock};

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
    if data.len() < 32 {
        return;
    }
    let program = PROGRAM.clone();
    let (header, heap) = data.split_at(32);
    set_memory(vec![
        (program.addrs.allgs, header[..24].to_vec()),
        (program.addrs.allglen, header[24..32].to_vec()),
        (HEAP, heap.to_vec()),
    ]);
    let _ = fuzz_read_goroutines(program, 0);
});
