//! The daemon's HTTP request-head parser, fed whole and byte by byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::daemon::http::parse_request_head;

fuzz_target!(|data: &[u8]| {
    let whole = parse_request_head(data);
    if data.len() < 512 {
        for cut in [1, data.len() / 2] {
            let _ = parse_request_head(&data[..cut.min(data.len())]);
        }
    }
    let _ = whole;
});
