//! Decoding `runtime.allgadd`'s machine code for the goroutine table's addresses, up to
//! and past the 64 KiB of a function the decoder reads.
//!
//! Input (after [`grow`]): the function's code.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::allgs::analyse_allgadd;

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 128 << 10);
    let writable = |addr: u64| addr.is_multiple_of(8) && (0x50_0000..0x60_0000).contains(&addr);
    let _ = analyse_allgadd(&data, 0x40_1000, &writable);
});
