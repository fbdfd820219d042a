//! What the mirror does with a request once hyper has parsed its head (`daemon/mirror/mod.rs`,
//! `Mirror::route` and `blob::serve`), minus the I/O, with the properties each step keeps.
#![allow(dead_code)]
use http::{HeaderMap, HeaderName, Uri};
use peer::daemon::config::{MirrorSection, RegistryEntry};
use peer::daemon::mirror::fuzzing as m;

pub const UPSTREAM_HEADER: &str = "X-P2p-Upstream";

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The configuration of the mirror's unit tests: two registries, an allow list.
pub fn config() -> MirrorSection {
    MirrorSection {
        registries: vec![
            RegistryEntry { host: "127.0.0.1:5000".into(), endpoint: "http://127.0.0.1:5000".into(), insecure: false },
            RegistryEntry {
                host: "docker.io".into(),
                endpoint: "https://registry-1.docker.io".into(),
                insecure: false,
            },
        ],
        allowed_hosts: vec!["*.trusted.example".into(), "quay.io".into()],
        upstream_header: UPSTREAM_HEADER.into(),
        ..MirrorSection::default()
    }
}

/// A request target (path and query, as hyper hands it over).
pub fn target(cfg: &MirrorSection, target: &str, header: Option<&str>) {
    let Ok(uri) = target.parse::<Uri>() else { return };
    route(uri.path());
    let query = uri.query();
    let ns = m::ns_param(query);
    let kept = m::upstream_query(query);
    if !kept.is_empty() {
        assert!(kept.starts_with('?'));
        for kv in kept[1..].split('&') {
            assert!(!kv.is_empty() && kv.split('=').next() != Some("ns"), "ns passed upstream: {kept:?}");
        }
    }
    match m::resolve(cfg, ns.as_deref(), header) {
        Ok(u) => {
            assert!(u.endpoint.starts_with("http://") || u.endpoint.starts_with("https://"), "{u:?}");
            assert!(!u.host.contains('/') && !u.host.is_empty(), "{u:?}");
        }
        Err(refusal) => assert!(!refusal.message().is_empty() && [400, 403].contains(&refusal.status())),
    }
}

/// A request path.
pub fn route(path: &str) {
    match m::parse_route(path) {
        Ok(m::Route::Ping | m::Route::Listing) => {}
        Ok(m::Route::Manifest { name, reference }) => {
            name_ok(&name);
            assert!(!reference.is_empty() && !reference.contains('/'), "{reference:?}");
        }
        Ok(m::Route::Blob { name, digest, sha256 }) => {
            name_ok(&name);
            if let Some(sha256) = sha256 {
                assert_eq!(sha256.to_oci(), digest, "the sha256 read is the one in the path");
            }
            assert!(!digest.contains('/'), "{digest:?}");
        }
        Err(e) => assert!([400, 404, 405].contains(&e.status) && !e.message.is_empty(), "{e:?}"),
    }
}

fn name_ok(name: &str) {
    assert!(!name.is_empty() && name.len() <= 255, "{name:?}");
    assert!(
        name.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
        "a traversal component got through: {name:?}"
    );
    assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)), "{name:?}");
}

/// A Range header value, against blobs of a few lengths.
pub fn range(value: Option<&str>) {
    let Ok(spec) = m::parse_range(value) else { return };
    for len in [0u64, 1, 2, 10, 4 << 20, u64::MAX - 1, u64::MAX] {
        match spec.resolve(len) {
            m::Resolved::Whole => {}
            m::Resolved::Part { start, end } => {
                assert!(start < end && end <= len, "{value:?} on {len} bytes: {start}..{end}");
            }
            m::Resolved::Unsatisfiable(why) => assert!(!why.is_empty()),
        }
    }
}

/// The client's headers passed to the registry, and the registry's passed back.
pub fn headers(map: &HeaderMap) {
    let named: Vec<String> = map
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let hop = |name: &HeaderName| HOP_BY_HOP.contains(&name.as_str()) || named.iter().any(|n| n == name.as_str());
    let up = m::to_upstream(map, UPSTREAM_HEADER);
    for name in up.keys() {
        assert!(!hop(name), "hop-by-hop {name} passed upstream");
        assert!(name != http::header::HOST && name != http::header::CONTENT_LENGTH, "{name} passed upstream");
        assert!(!name.as_str().eq_ignore_ascii_case(UPSTREAM_HEADER), "the mirror's own header passed upstream");
    }
    for name in m::to_client(map).keys() {
        assert!(!hop(name), "hop-by-hop {name} passed to the client");
    }
    for (name, value) in m::credentials(map) {
        assert_eq!(name, "Authorization");
        assert!(map.get_all(http::header::AUTHORIZATION).iter().any(|v| v.as_bytes() == value.as_bytes()));
    }
}
