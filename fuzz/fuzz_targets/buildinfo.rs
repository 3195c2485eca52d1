//! The Go build-info blob, both formats (the pointer format reads the image itself),
//! with strings up to and past the 1 MiB the reader takes.
//!
//! Input (after [`grow`]): the image, at 0x1000.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::sources::go::buildinfo;

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 3 << 20);
    let data = &data[..];
    let read = |addr: u64, len: usize| {
        let start = usize::try_from(addr.checked_sub(0x1000)?).ok()?;
        data.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    };
    let _ = buildinfo::parse(data, 0x1000, &read);
});
