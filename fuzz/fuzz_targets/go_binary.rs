//! A whole executable as leakscope analyses a process's binary: ELF, build info,
//! pclntab, moduledata, runtime layout (DWARF or table) and the goroutine table.
//!
//! Input (after [`grow`], up to 32 MiB): the executable's bytes.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::executable::analyse_go_bytes;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(program)) = analyse_go_bytes(&grow(data, 32 << 20)) {
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
