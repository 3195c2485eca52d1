//! The Go runtime's `g` layout read from a binary's DWARF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::layout::GoRuntimeLayout;

fuzz_target!(|data: &[u8]| {
    let _ = GoRuntimeLayout::from_dwarf_bytes(data);
});
