//! `HttpOrigin` against a tiny HTTP/1.1 server on 127.0.0.1 (plain and TLS).

use super::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

fn content() -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8).collect()
}

/// Answers one request per connection:
/// `/blob` (HEAD and ranged GET), `/nohead` (HEAD answers 405), `/norange` (ignores Range),
/// `/short` (promises 1000 bytes, sends 10), `/missing` 404, `/secret` 403, `/broken` 503.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && request.len() < 16 << 10 {
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        request.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&request).to_string();
    let mut words = text.split_whitespace();
    let method = words.next().unwrap_or("");
    let path = words.next().unwrap_or("").split('?').next().unwrap_or("");
    let range = text.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string));
    let body = content();
    let (status, headers, payload): (&str, String, Vec<u8>) = match (method, path) {
        (_, "/missing") => ("404 Not Found", String::new(), b"no".to_vec()),
        (_, "/secret") => ("403 Forbidden", String::new(), b"no".to_vec()),
        (_, "/broken") => ("503 Service Unavailable", String::new(), b"no".to_vec()),
        ("HEAD", "/nohead") => ("405 Method Not Allowed", String::new(), Vec::new()),
        (_, "/short") => ("200 OK", "Content-Length: 1000\r\n".into(), body[..10].to_vec()),
        (_, "/blob") | (_, "/nohead") if range.is_some() => {
            let spec = range.unwrap();
            let (a, b) = spec.trim().split_once('-').unwrap();
            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
            let b = b.min(body.len() - 1);
            ("206 Partial Content", format!("Content-Range: bytes {a}-{b}/{}\r\n", body.len()), body[a..=b].to_vec())
        }
        (_, "/blob") | (_, "/nohead") | (_, "/norange") => ("200 OK", String::new(), body),
        _ => ("400 Bad Request", String::new(), Vec::new()),
    };
    let length = if headers.contains("Content-Length") {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", payload.len())
    };
    let head = format!("HTTP/1.1 {status}\r\n{headers}{length}Connection: close\r\n\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = s.write_all(&payload).await;
    }
    let _ = s.shutdown().await;
}

/// Serves plain HTTP until the test ends (the runtime drops the task).
async fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(respond(s));
        }
    });
    addr
}

/// Serves HTTPS with a fresh self-signed certificate for 127.0.0.1; returns its PEM too.
pub(crate) async fn https_server() -> (SocketAddr, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    respond(tls).await;
                }
            });
        }
    });
    (addr, pem)
}

/// The test servers listen on loopback, which the address policy refuses by default.
fn on_loopback() -> HttpOriginConfig {
    HttpOriginConfig { allowed_networks: vec!["127.0.0.0/8".into()], ..Default::default() }
}

fn origin() -> HttpOrigin {
    HttpOrigin::new(on_loopback()).unwrap()
}

fn req(addr: SocketAddr, path: &str) -> OriginRequest {
    OriginRequest::new(format!("http://{addr}{path}?X-Amz-Signature=s3cr3t"))
}

#[tokio::test]
async fn length_and_ranges() {
    let addr = http_server().await;
    let o = origin();
    let data = content();
    assert_eq!(o.stat(&req(addr, "/blob")).await.unwrap().content_bytes, 10_000);
    // HEAD refused: a one-byte ranged GET tells the length.
    assert_eq!(o.stat(&req(addr, "/nohead")).await.unwrap().content_bytes, 10_000);
    assert_eq!(read_range(&o, &req(addr, "/blob"), 100..4196).await.unwrap(), data[100..4196]);
    assert_eq!(read_range(&o, &req(addr, "/blob"), 0..0).await.unwrap(), Vec::<u8>::new());
    // Pieces read in order from one request.
    let mut body = o.open_range(&req(addr, "/blob"), 0..10_000).await.unwrap();
    for piece in data.chunks(4096) {
        assert_eq!(body.read_exact(piece.len()).await.unwrap(), piece);
    }
    assert_eq!(body.remaining(), 0);
    // A server that ignores Range is fine from offset 0 (the body is cut), refused otherwise.
    assert_eq!(read_range(&o, &req(addr, "/norange"), 0..10).await.unwrap(), data[..10]);
    let err = read_range(&o, &req(addr, "/norange"), 10..20).await.unwrap_err();
    assert!(matches!(err, OriginError::RangeIgnored { status: 200, .. }), "{err}");
}

#[tokio::test]
async fn statuses_and_failures_are_typed() {
    let addr = http_server().await;
    let o = origin();
    type Check = fn(&OriginError) -> bool;
    let cases: [(&str, Check); 3] = [
        ("/missing", |e| matches!(e, OriginError::NotFound { status: 404, .. })),
        ("/secret", |e| matches!(e, OriginError::Forbidden { status: 403, .. })),
        ("/broken", |e| matches!(e, OriginError::ServerError { status: 503, .. })),
    ];
    for (path, expected) in cases {
        let err = read_range(&o, &req(addr, path), 0..10).await.unwrap_err();
        assert!(expected(&err), "{path}: {err}");
        assert!(err.status().is_some());
        let text = err.to_string();
        assert!(text.contains(path) && !text.contains("s3cr3t") && !text.contains("X-Amz"), "{text}");
    }
    let err = o.stat(&req(addr, "/missing")).await.unwrap_err();
    assert!(matches!(err, OriginError::NotFound { .. }), "{err}");

    let err = read_range(&o, &req(addr, "/short"), 0..1000).await.unwrap_err();
    assert!(matches!(err, OriginError::ShortRead { expected: 1000, received: 10, .. }), "{err}");
    assert!(err.is_transient());

    let err = o.stat(&OriginRequest::new("ftp://example.com/x")).await.unwrap_err();
    assert!(matches!(err, OriginError::UnsupportedScheme { ref scheme, .. } if scheme == "ftp"), "{err}");
    let err = o.stat(&OriginRequest::new("not a url")).await.unwrap_err();
    assert!(matches!(err, OriginError::InvalidUrl { .. }), "{err}");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = o.stat(&OriginRequest::new(format!("http://{dead}/blob"))).await.unwrap_err();
    assert!(matches!(err, OriginError::Unreachable { .. }), "{err}");
    let bad_header = req(addr, "/blob").with_header("bad header", "x");
    assert!(matches!(o.stat(&bad_header).await, Err(OriginError::InvalidUrl { .. })));
}

#[tokio::test]
async fn certificates_are_verified_unless_told_otherwise() {
    let (addr, pem) = https_server().await;
    let url = format!("https://{addr}/blob");
    let err = origin().stat(&OriginRequest::new(&url)).await.unwrap_err();
    assert!(matches!(err, OriginError::Tls { .. }), "self-signed must be refused by default: {err}");

    let insecure = HttpOrigin::new(HttpOriginConfig { insecure_skip_verify: true, ..on_loopback() }).unwrap();
    assert_eq!(insecure.stat(&OriginRequest::new(&url)).await.unwrap().content_bytes, 10_000);

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let trusting = HttpOrigin::new(HttpOriginConfig { ca_cert_files: vec![ca], ..on_loopback() }).unwrap();
    assert_eq!(read_range(&trusting, &OriginRequest::new(&url), 5..10).await.unwrap(), content()[5..10]);

    let missing = HttpOriginConfig { ca_cert_files: vec![dir.path().join("nope.pem")], ..Default::default() };
    let err = HttpOrigin::new(missing).err().unwrap();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[tokio::test]
async fn internal_addresses_are_refused_by_default_even_behind_a_name() {
    let (addr, _) = https_server().await;
    let strict = HttpOrigin::new(HttpOriginConfig::default()).unwrap();
    let err = strict.stat(&OriginRequest::new(format!("https://{addr}/blob"))).await.unwrap_err();
    assert!(matches!(err, OriginError::AddressRefused { .. }), "{err}");
    assert!(err.to_string().contains("loopback address") && err.to_string().contains("allowed_networks"), "{err}");
    assert!(!err.is_transient());
    // A name resolving to loopback is refused where it is dialled.
    let err = strict.stat(&OriginRequest::new(format!("https://localhost:{}/blob", addr.port()))).await.unwrap_err();
    assert!(matches!(err, OriginError::AddressRefused { .. }), "{err}");
    assert!(err.to_string().contains("localhost resolves to"), "{err}");
    // A configured registry's host is reached wherever it is.
    let trusted = HttpOrigin::new(HttpOriginConfig {
        trusted_hosts: vec!["127.0.0.1".into()],
        insecure_skip_verify: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(trusted.stat(&OriginRequest::new(format!("https://{addr}/blob"))).await.unwrap().content_bytes, 10_000);
}
