//! A request target as hyper hands it to the mirror (path and query): route, `?ns=`, the
//! query passed upstream, and the registry chosen from `?ns=` or the upstream header.
#![no_main]
#[path = "../common/mirror.rs"]
mod mirror;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    static CFG: OnceLock<peer::daemon::config::MirrorSection> = OnceLock::new();
    let cfg = CFG.get_or_init(mirror::config);
    // Everything after the first newline is the upstream header's value.
    let (target, header) = match text.split_once('\n') {
        Some((t, h)) => (t, Some(h)),
        None => (text, None),
    };
    mirror::route(target);
    mirror::target(cfg, target, header);
});
