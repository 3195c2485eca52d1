//! The Go runtime's `g` layout read from a binary's DWARF (sections compressed or not).
//!
//! Input (after [`grow`], up to 32 MiB): the ELF file.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::layout::GoRuntimeLayout;

fuzz_target!(|data: &[u8]| {
    let _ = GoRuntimeLayout::from_dwarf_bytes(&grow(data, 32 << 20));
});
