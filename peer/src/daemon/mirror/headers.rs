//! Header pass-through: every request header goes upstream and every response header comes
//! back, repeated lines (skopeo's several `Accept` lines) kept as separate lines, except the
//! hop-by-hop ones (RFC 9110 §7.6.1: those named by `Connection`, and the classic list),
//! `Host` (the upstream's own), and the mirror's upstream header.

use http::header::{HeaderMap, HeaderName, CONNECTION, HOST};

/// Hop-by-hop headers that never cross a proxy.
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

/// The headers named by `Connection` (lowercase), which are hop-by-hop too.
fn named_by_connection(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_hop_by_hop(name: &HeaderName, extra: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || extra.iter().any(|e| e == name.as_str())
}

/// The request headers to send upstream (the request has no body: `Content-Length` goes too).
pub fn to_upstream(client: &HeaderMap, upstream_header: &str) -> HeaderMap {
    let extra = named_by_connection(client);
    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        if is_hop_by_hop(name, &extra)
            || name == HOST
            || name == http::header::CONTENT_LENGTH
            || name.as_str().eq_ignore_ascii_case(upstream_header)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The response headers to give the client. `Content-Length` is kept: the mirror streams
/// exactly the upstream's body.
pub fn to_client(upstream: &HeaderMap) -> HeaderMap {
    let extra = named_by_connection(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if !is_hop_by_hop(name, &extra) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The headers of a blob the registry vouched for (HEAD) that a P2P answer repeats.
pub const BLOB_HEADERS: &[&str] = &[
    "content-type",
    "docker-content-digest",
    "etag",
    "docker-distribution-api-version",
    "cache-control",
    "last-modified",
];

/// The client's credentials, passed to the P2P download's origin reads.
pub fn credentials(client: &HeaderMap) -> Vec<(String, String)> {
    client
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| ("Authorization".to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn repeated_accept_lines_stay_separate_and_hop_by_hop_go() {
        let client = map(&[
            ("Host", "127.0.0.1:65001"),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
            ("Accept", "application/vnd.docker.distribution.manifest.v2+json"),
            ("Accept", "application/vnd.oci.image.index.v1+json"),
            ("Authorization", "Bearer t"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic x"),
            ("TE", "trailers"),
            ("X-P2p-Upstream", "127.0.0.1:5000"),
            ("User-Agent", "containerd/1.6.20"),
            ("Range", "bytes=5-"),
            ("Content-Length", "0"),
        ]);
        let up = to_upstream(&client, "x-p2p-upstream");
        let accepts: Vec<_> = up.get_all("accept").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(accepts.len(), 3, "three Accept lines, not merged");
        assert_eq!(accepts[1], "application/vnd.docker.distribution.manifest.v2+json");
        for gone in [
            "host",
            "connection",
            "x-secret-hop",
            "keep-alive",
            "proxy-authorization",
            "te",
            "x-p2p-upstream",
            "content-length",
        ] {
            assert!(!up.contains_key(gone), "{gone} must not go upstream");
        }
        for kept in ["authorization", "user-agent", "range"] {
            assert!(up.contains_key(kept), "{kept} goes upstream");
        }
    }

    #[test]
    fn response_headers_come_back() {
        let upstream = map(&[
            ("Docker-Content-Digest", "sha256:ab"),
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
            ("Content-Length", "884"),
            ("WWW-Authenticate", "Bearer realm=\"https://auth\",service=\"r\""),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]);
        let back = to_client(&upstream);
        assert_eq!(back.get("docker-content-digest").unwrap(), "sha256:ab");
        assert_eq!(back.get("content-length").unwrap(), "884");
        assert!(back.get("www-authenticate").unwrap().to_str().unwrap().contains("realm"));
        assert_eq!(back.get_all("set-cookie").iter().count(), 2);
        assert!(!back.contains_key("transfer-encoding") && !back.contains_key("connection"));
    }

    #[test]
    fn credentials_are_the_authorization_lines() {
        let h = map(&[("Authorization", "Bearer abc"), ("Cookie", "x")]);
        assert_eq!(credentials(&h), vec![("Authorization".to_string(), "Bearer abc".to_string())]);
        assert!(credentials(&HeaderMap::new()).is_empty());
    }
}
