//! Decoding `runtime.allgadd`'s machine code for the goroutine table's addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::allgs::analyse_allgadd;

fuzz_target!(|data: &[u8]| {
    let writable = |addr: u64| addr.is_multiple_of(8) && (0x50_0000..0x60_0000).contains(&addr);
    let _ = analyse_allgadd(data, 0x40_1000, &writable);
});
