//! The daemon's HTTP request-head parser: the outcome of pushing the input in arbitrary
//! chunks (as reads return it) must equal pushing it at once, up to and past the 8 KiB
//! a head may hold; the credentials of an `Authorization` header are decoded.
//!
//! Input (after [`grow`]): a chunk size byte (1..=256), then the bytes a client sends.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::daemon::{
    http::{HeadReader, MAX_REQUEST_HEAD, parse_request_head},
    web::basic_credentials,
};

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 2 * MAX_REQUEST_HEAD + 1);
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
    if let Ok(Some(request)) = whole
        && let Some(authorization) = &request.authorization
        && let Some((user, password)) = basic_credentials(authorization)
    {
        assert!(user.len() + password.len() < MAX_REQUEST_HEAD);
    }
});
