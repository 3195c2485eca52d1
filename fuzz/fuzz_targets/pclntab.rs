//! The Go runtime symbol table: parse, then every query the goroutine reader makes.
//!
//! Input (after [`grow`], up to 32 MiB): the table, which is also its `go:func.*`.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::Pclntab;

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 32 << 20);
    let data = &data[..];
    let Ok(mut tab) = Pclntab::parse(data, Some(0x40_1000)) else {
        return;
    };
    tab.find_func_by_name("runtime.allgadd");
    tab.func_records_end();
    tab.check_gofunc(0x40_0000, data, 64);
    // The table itself as go:func.*: inline trees then point into fuzzer bytes.
    tab.set_gofunc(0x40_0000, data.to_vec());
    for func in tab.funcs().take(64) {
        for pc in [
            func.entry,
            func.entry.saturating_add(3),
            func.end.saturating_sub(1),
        ] {
            tab.pc_to_file_line(&func, pc);
            tab.inline_frames(&func, pc);
        }
    }
    let end = tab.text_end();
    for pc in (0x40_1000..end.min(0x40_1000 + 4096)).step_by(61) {
        tab.find_func(pc);
    }
});
