//! A whole executable as leakscope analyses a process's binary: ELF, build info,
//! pclntab, moduledata, runtime layout (DWARF or table) and the goroutine table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::executable::analyse_go_bytes;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(program)) = analyse_go_bytes(data) {
        let pclntab = program.binary.pclntab();
        let start = pclntab.text_start();
        for pc in [
            start,
            start.wrapping_add(1),
            pclntab.text_end().wrapping_sub(1),
        ] {
            if let Some(func) = pclntab.find_func(pc) {
                pclntab.inline_frames(&func, pc);
            }
        }
    }
});
