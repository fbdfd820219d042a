//! A `Range` header value on a blob: parsed, then resolved against blobs of several
//! lengths; a part is never empty and never past the end.
#![no_main]
#[path = "../common/mirror.rs"]
mod mirror;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        mirror::range(Some(text));
    }
});
