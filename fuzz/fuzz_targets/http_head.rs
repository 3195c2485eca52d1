//! The daemon's HTTP request-head parser: the outcome of pushing the input in arbitrary
//! chunks (as reads return it) must equal pushing it at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::daemon::http::{HeadReader, parse_request_head};

fuzz_target!(|data: &[u8]| {
    // First byte: chunk size (1..=256); the rest: the bytes a client sends.
    let Some((&size, head)) = data.split_first() else {
        return;
    };
    let whole = parse_request_head(head);
    let mut reader = HeadReader::new();
    let mut chunked = Ok(None);
    for chunk in head.chunks(usize::from(size) + 1) {
        chunked = reader.push(chunk);
        if !matches!(chunked, Ok(None)) {
            break;
        }
    }
    assert_eq!(whole, chunked, "chunked pushes differ from one push");
});
