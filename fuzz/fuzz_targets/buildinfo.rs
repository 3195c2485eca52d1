//! The Go build-info blob, both formats (the pointer format reads the image itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::buildinfo;

fuzz_target!(|data: &[u8]| {
    let read = |addr: u64, len: usize| {
        let start = usize::try_from(addr.checked_sub(0x1000)?).ok()?;
        data.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    };
    let _ = buildinfo::parse(data, 0x1000, &read);
});
