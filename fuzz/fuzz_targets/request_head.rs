//! A request head as the mirror's port reads it: parsed as hyper does (httparse), then the
//! mirror's handling of its target (route, `?ns=`, registry choice), headers (what goes to
//! the registry and back) and Range. The same bytes as a request line of the probe port
//! (`svc::probe_http`, `/metrics` and `/healthz`).
#![no_main]
#[path = "../common/mirror.rs"]
mod mirror;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use svc::probe_http::{route_line, standard_route, Route};

fuzz_target!(|data: &[u8]| {
    probe(data);
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut slots);
    if request.parse(data).is_err() {
        return;
    }
    let mut map = HeaderMap::new();
    for h in request.headers.iter() {
        // hyper refuses the request over a header it cannot hold; the mirror never sees it.
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
        else {
            return;
        };
        map.append(name, value);
    }
    mirror::headers(&map);
    let range = map.get(http::header::RANGE).map(|v| v.to_str());
    match range {
        Some(Ok(v)) => mirror::range(Some(v)),
        Some(Err(_)) => {} // answered 416 "not ASCII"
        None => mirror::range(None),
    }
    let header = map.get(mirror::UPSTREAM_HEADER).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(target) = request.path {
        static CFG: OnceLock<peer::daemon::config::MirrorSection> = OnceLock::new();
        mirror::target(CFG.get_or_init(mirror::config), target, header);
    }
});

/// The probe port keeps the first line of a head of at most 8 KiB.
fn probe(data: &[u8]) {
    static ROUTE: OnceLock<Route> = OnceLock::new();
    let route = ROUTE.get_or_init(|| standard_route(|| "# EOF\n".to_string(), || Ok(())));
    let text = String::from_utf8_lossy(&data[..data.len().min(8 << 10)]);
    if let Some(line) = text.lines().next() {
        let reply = route_line(line, route);
        assert!([200, 404, 405].contains(&reply.status), "{line:?}: {}", reply.status);
    }
}
