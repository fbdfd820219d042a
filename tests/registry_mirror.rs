//! The peer daemon as a registry mirror, end to end: the real `docker-registry` holding a
//! small generated image (pushed through the registry API), a scheduler, a seed and peers;
//! clients speak to each peer's mirror the way containerd 1.6 and skopeo do (harness
//! notes: HEAD by tag with `?ns=`, manifest by digest, blobs; skopeo's `/v2/` ping and
//! repeated Accept lines). Checks digests, that the registry served each blob once, range
//! reads, refusals of bad input, the fallback to the registry, and a TLS hello.

use e2e::cluster::{self, start_peer, start_scheduler, Peer, PeerOptions};
use e2e::registry::{request, Registry};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// What containerd 1.6 sends with its manifest HEAD (one line).
const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";
/// What skopeo 1.9 sends (six separate lines).
const SKOPEO_ACCEPT: [&str; 6] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
];

struct Blob {
    digest: String,
    data: Vec<u8>,
}

impl Blob {
    fn new(data: Vec<u8>) -> Blob {
        Blob { digest: format!("sha256:{}", cluster::sha256_hex(&data)), data }
    }
}

/// A generated OCI image: a config, layers of random bytes, and its manifest.
struct Image {
    repo: String,
    tag: String,
    config: Blob,
    layers: Vec<Blob>,
    manifest: Vec<u8>,
    manifest_digest: String,
}

fn push_image(registry: &Registry, repo: &str, layer_mib: &[usize], seed: u64) -> Image {
    let layers: Vec<Blob> = layer_mib
        .iter()
        .enumerate()
        .map(|(i, m)| Blob::new(cluster::random_bytes(m * MIB + 123 * i, seed + i as u64)))
        .collect();
    let config = Blob::new(
        serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        })
        .to_string()
        .into_bytes(),
    );
    let descriptor =
        |media: &str, b: &Blob| serde_json::json!({ "mediaType": media, "digest": b.digest, "size": b.data.len() });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    for b in layers.iter().chain([&config]) {
        registry.push_blob(repo, &b.data, &b.digest);
    }
    assert_eq!(registry.push_manifest(repo, "v1", OCI_MANIFEST, &manifest), 201, "manifest push");
    let manifest_digest = format!("sha256:{}", cluster::sha256_hex(&manifest));
    Image { repo: repo.into(), tag: "v1".into(), config, layers, manifest, manifest_digest }
}

fn mirror_toml(registry: &str) -> String {
    format!(
        "[mirror]\ndefault_registry = \"{registry}\"\nupstream_timeout_ms = 20000\n[[mirror.registries]]\nhost = \"{registry}\"\nendpoint = \"http://{registry}\"\n"
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn get(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, method, path, headers, &[]).unwrap_or_else(|| panic!("{method} {path} via {addr}: no response"))
}

/// containerd 1.6's sequence for one image through `mirror`; checks every digest.
fn containerd_pull(mirror: &str, registry: &str, image: &Image) {
    let ns = format!("ns={}", registry.replace(':', "%3A"));
    let (status, headers, body) = get(
        mirror,
        "HEAD",
        &format!("/v2/{}/manifests/{}?{ns}", image.repo, image.tag),
        &[("Accept", CONTAINERD_ACCEPT)],
    );
    assert_eq!(status, 200, "HEAD manifest by tag via {mirror}");
    assert!(body.is_empty());
    assert_eq!(header(&headers, "Docker-Content-Digest"), Some(image.manifest_digest.as_str()), "{headers:?}");
    assert_eq!(header(&headers, "Content-Type"), Some(OCI_MANIFEST));
    assert_eq!(header(&headers, "Content-Length"), Some(image.manifest.len().to_string().as_str()));
    let (status, _, body) = get(
        mirror,
        "GET",
        &format!("/v2/{}/manifests/{}?{ns}", image.repo, image.manifest_digest),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json, */*")],
    );
    assert_eq!((status, body.as_slice()), (200, image.manifest.as_slice()), "manifest by digest via {mirror}");
    for blob in [&image.config].into_iter().chain(image.layers.iter()) {
        let (status, headers, body) = get(
            mirror,
            "GET",
            &format!("/v2/{}/blobs/{}?{ns}", image.repo, blob.digest),
            &[("Accept", "application/vnd.oci.image.layer.v1.tar+gzip, */*"), ("Accept-Encoding", "gzip")],
        );
        assert_eq!(
            status,
            200,
            "blob {} via {mirror}: {}",
            blob.digest,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        assert_eq!(header(&headers, "Content-Length"), Some(blob.data.len().to_string().as_str()));
        assert_eq!(header(&headers, "Docker-Content-Digest"), Some(blob.digest.as_str()));
        assert_eq!(format!("sha256:{}", cluster::sha256_hex(&body)), blob.digest, "blob bytes via {mirror}");
    }
    let layer = &image.layers[0];
    let (status, headers, body) = get(mirror, "HEAD", &format!("/v2/{}/blobs/{}?{ns}", image.repo, layer.digest), &[]);
    assert_eq!((status, body.len()), (200, 0), "HEAD blob via {mirror}");
    assert_eq!(header(&headers, "Content-Length"), Some(layer.data.len().to_string().as_str()));
    assert_eq!(header(&headers, "Docker-Content-Digest"), Some(layer.digest.as_str()));
}

/// skopeo 1.9's sequence (no ns: the mirror's default registry): ping, manifest by tag
/// with six Accept lines, blobs.
fn skopeo_pull(mirror: &str, image: &Image) {
    let (status, _, _) = get(mirror, "GET", "/v2/", &[("Docker-Distribution-Api-Version", "registry/2.0")]);
    assert_eq!(status, 200, "/v2/ via {mirror}");
    let accept: Vec<(&str, &str)> = SKOPEO_ACCEPT.iter().map(|a| ("Accept", *a)).collect();
    let (status, headers, body) = get(mirror, "GET", &format!("/v2/{}/manifests/{}", image.repo, image.tag), &accept);
    assert_eq!(
        status,
        200,
        "manifest by tag with repeated Accept lines via {mirror}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(body, image.manifest);
    assert_eq!(header(&headers, "Content-Type"), Some(OCI_MANIFEST));
    for blob in image.layers.iter().chain([&image.config]) {
        let (status, _, body) = get(mirror, "GET", &format!("/v2/{}/blobs/{}", image.repo, blob.digest), &[]);
        assert_eq!(status, 200);
        assert_eq!(format!("sha256:{}", cluster::sha256_hex(&body)), blob.digest);
    }
}

/// The daemon still answers its mirror (a request it answers itself, registry or not).
fn alive(mirror: &str) {
    let (status, _, body) = get(mirror, "GET", "/v2/_/manifests/x", &[]);
    assert_eq!(status, 400, "the mirror stopped answering: {}", String::from_utf8_lossy(&body));
}

fn json_message(body: &[u8]) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    v["errors"][0]["message"].as_str().unwrap_or_default().to_string()
}

fn bad_input_is_refused_and_the_daemon_stays_up(peer: &Peer, registry: &str, image: &Image) {
    let m = peer.mirror.as_str();
    let blob = &image.layers[0];
    let blob_path = format!("/v2/{}/blobs/{}?ns={registry}", image.repo, blob.digest);

    // Not an open relay.
    let (status, _, body) = get(m, "GET", "/v2/library/alpine/manifests/latest?ns=evil.example%3A5000", &[]);
    let message = json_message(&body);
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("evil.example:5000") && message.contains("mirror.registries"), "{message}");
    let (status, _, _) =
        get(m, "GET", &blob_path.replace(registry, "10.0.0.1:5000"), &[("X-P2p-Upstream", "other.example")]);
    assert_eq!(status, 403);

    // Malformed paths and methods.
    for (path, want) in [
        ("/v2/UPPER/manifests/latest", 400),
        ("/v2/a/../b/manifests/latest", 400),
        ("/v2/a/blobs/sha256:nothex", 400),
        ("/v2/a/manifests/%00", 400),
        ("/v1/whatever", 404),
        ("/metrics", 404),
    ] {
        let (status, _, body) = get(m, "GET", path, &[]);
        assert_eq!(status, want, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!json_message(&body).is_empty(), "{path}: the refusal says why");
    }
    let (status, headers, _) = get(m, "POST", &format!("/v2/{}/blobs/uploads/", image.repo), &[]);
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "Allow"), Some("GET, HEAD"));

    // Absurd and unsatisfiable ranges.
    for range in ["bytes=5-2", "bytes=abc", "items=0-1", "bytes=99999999999999999999999-", "bytes=-0"] {
        let (status, _, body) = get(m, "GET", &blob_path, &[("Range", range)]);
        assert_eq!(status, 416, "{range}");
        assert!(json_message(&body).contains("Range"), "{range}: {}", String::from_utf8_lossy(&body));
    }
    let (status, headers, body) = get(m, "GET", &blob_path, &[("Range", &format!("bytes={}-", blob.data.len()))]);
    assert_eq!(status, 416);
    assert_eq!(header(&headers, "Content-Range"), Some(format!("bytes */{}", blob.data.len()).as_str()));
    assert!(json_message(&body).contains("starts at byte"));
    // Several ranges: the whole blob (documented).
    let (status, _, body) = get(m, "GET", &blob_path, &[("Range", "bytes=0-1,5-6")]);
    assert_eq!((status, body.len()), (200, blob.data.len()));

    // An oversized request head: 431, and the daemon is fine.
    let big = "x".repeat(64 << 10);
    let (status, _, _) = get(m, "GET", "/v2/", &[("X-Big", &big)]);
    assert_eq!(status, 431, "oversized header");
    alive(m);

    // A TLS ClientHello on the plain port: a plain 400, connection closed, daemon up.
    let mut s = TcpStream::connect(m).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03];
    hello.extend(std::iter::repeat_n(0u8, 160));
    s.write_all(&hello).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
    // Garbage and a half-sent request.
    let mut s = TcpStream::connect(m).unwrap();
    s.write_all(b"\x00\x01\x02garbage\r\n\r\n").unwrap();
    drop(s);
    let mut s = TcpStream::connect(m).unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    drop(s);
    alive(m);
    assert!(peer.metric("peer_mirror_requests_total{kind=\"tls_hello\",result=\"client_error\"}") >= 1);
}

#[test]
fn peers_serve_an_image_through_their_mirrors_with_one_registry_copy() {
    let dir = cluster::test_dir("mirror");
    let registry = Registry::start(&dir);
    let image = push_image(&registry, "e2e/app", &[3, 9, 20], 40);
    // A blob only ever read by ranges (the lazy-read path).
    let lazy = Blob::new(cluster::random_bytes(48 * MIB + 77, 99));
    registry.push_blob(&image.repo, &lazy.data, &lazy.digest);
    let sched = start_scheduler(&dir);
    let options = PeerOptions { piece_bytes: 1 << 20, extra_toml: mirror_toml(&registry.addr), ..Default::default() };
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..options.clone() });
    let mut peers: Vec<Peer> =
        (0..3).map(|i| start_peer(&dir, &format!("peer{i}"), Some(&sched.grpc), &options)).collect();
    for p in &peers {
        assert!(p.mirror.starts_with("127.0.0.1:"), "{}: mirror at {:?}", p.name, p.mirror);
    }

    // containerd on two peers one after the other, skopeo on the third.
    let started = Instant::now();
    containerd_pull(&peers[0].mirror, &registry.addr, &image);
    containerd_pull(&peers[1].mirror, &registry.addr, &image);
    skopeo_pull(&peers[2].mirror, &image);
    eprintln!("registry_mirror: 3 pulls in {:.2} s", started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_millis(500)); // the access log is written as responses end
    for blob in [&image.config].into_iter().chain(image.layers.iter()) {
        let gets = registry.requests("GET", &blob.digest);
        let heads = registry.requests("HEAD", &blob.digest);
        eprintln!(
            "registry_mirror: {} ({} bytes): {gets} GET, {heads} HEAD at the registry",
            blob.digest,
            blob.data.len()
        );
        assert_eq!(gets, 1, "the registry served {} {gets} times for 3 pulls", blob.digest);
    }
    for p in &peers {
        let p2p = p.metric("peer_mirror_bytes_total{source=\"p2p\"}");
        assert!(
            p2p as usize >= image.layers.iter().map(|l| l.data.len()).sum::<usize>(),
            "{}: {p2p} bytes from P2P",
            p.name
        );
        assert_eq!(p.metric("peer_download_bytes_total{source=\"origin\"}"), 0, "{}: went to the registry", p.name);
    }

    // 100 random range reads of a blob no peer holds yet, spread over the peers.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let before = registry.requests("GET", &lazy.digest) + registry.requests("HEAD", &lazy.digest);
    let started = Instant::now();
    for i in 0..100 {
        let len = lazy.data.len() as u64;
        let start = rng.random_range(0..len);
        let end = (start + rng.random_range(1..2 * MIB as u64)).min(len) - 1;
        let range = if i % 10 == 9 { format!("bytes={start}-") } else { format!("bytes={start}-{end}") };
        let end = if i % 10 == 9 { len - 1 } else { end };
        let mirror = &peers[i % peers.len()].mirror;
        let (status, headers, body) = get(
            mirror,
            "GET",
            &format!("/v2/{}/blobs/{}?ns={}", image.repo, lazy.digest, registry.addr),
            &[("Range", &range)],
        );
        assert_eq!(status, 206, "{range} via {mirror}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        assert_eq!(header(&headers, "Content-Range"), Some(format!("bytes {start}-{end}/{len}").as_str()), "{range}");
        assert!(body == lazy.data[start as usize..=end as usize], "{range} via {mirror}: wrong bytes");
    }
    std::thread::sleep(Duration::from_millis(500));
    let requests = registry.requests("GET", &lazy.digest) + registry.requests("HEAD", &lazy.digest) - before;
    let gets = registry.requests("GET", &lazy.digest);
    eprintln!(
        "registry_mirror: 100 range reads in {:.2} s; the registry saw {requests} requests for that blob ({gets} GET)",
        started.elapsed().as_secs_f64()
    );
    assert!(requests <= 10, "the registry saw {requests} requests for 100 range reads");
    let fetched: u64 = peers.iter().map(|p| p.metric("peer_download_bytes_total{source=\"parent\"}")).sum();
    let fallbacks = cluster::metric_at(&sched.http, "sched_seed_fallbacks_total");
    eprintln!("registry_mirror: peers fetched {fetched} bytes from parents in all; {fallbacks} seed fallbacks");

    bad_input_is_refused_and_the_daemon_stays_up(&peers[0], &registry.addr, &image);

    for p in peers.iter_mut() {
        assert_eq!(p.proc.stop(Duration::from_secs(10)), Some(0), "{} exits cleanly", p.name);
    }
    seed.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_mirror_falls_back_to_the_registry_when_p2p_cannot_serve() {
    let dir = cluster::test_dir("mirror-fallback");
    let registry = Registry::start(&dir);
    let image = push_image(&registry, "e2e/fb", &[6, 2], 70);
    let mut sched = start_scheduler(&dir);
    let options = PeerOptions { piece_bytes: 1 << 20, extra_toml: mirror_toml(&registry.addr), ..Default::default() };
    let mut peer = start_peer(&dir, "peer", Some(&sched.grpc), &options);
    // A store too small for the 6 MiB layer: P2P fails before the first byte.
    let small = PeerOptions { quota_bytes: 4 << 20, ..options.clone() };
    let mut tiny = start_peer(&dir, "tiny", Some(&sched.grpc), &small);

    // The scheduler is down: downloads go to the registry by themselves.
    sched.proc.kill();
    containerd_pull(&peer.mirror, &registry.addr, &image);
    assert!(peer.metric("peer_download_bytes_total{source=\"origin\"}") > 0);

    containerd_pull(&tiny.mirror, &registry.addr, &image);
    let fallbacks = tiny.metric("peer_mirror_upstream_fallbacks_total{reason=\"p2p_failed\"}");
    assert!(fallbacks >= 1, "tiny: {fallbacks} fallbacks");
    assert!(tiny.metric("peer_mirror_requests_total{kind=\"blob\",result=\"fallback\"}") >= 1);
    assert!(tiny.metric("peer_mirror_bytes_total{source=\"upstream\"}") >= 6 * MIB as u64);
    alive(&tiny.mirror);

    // An unknown blob: the registry's 404 comes back as it is.
    let missing = format!("sha256:{}", "0".repeat(64));
    let (status, _, body) = get(&peer.mirror, "GET", &format!("/v2/{}/blobs/{missing}", image.repo), &[]);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("BLOB_UNKNOWN"), "{}", String::from_utf8_lossy(&body));

    // The registry itself down: a clear 502 naming it.
    registry_down_gives_502(&peer, &image, registry);
    peer.proc.stop(Duration::from_secs(10));
    tiny.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

fn registry_down_gives_502(peer: &Peer, image: &Image, mut registry: Registry) {
    let addr = registry.addr.clone();
    registry.proc.kill();
    let (status, _, body) = get(&peer.mirror, "GET", &format!("/v2/{}/manifests/{}", image.repo, image.tag), &[]);
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(json_message(&body).contains(&addr), "{}", String::from_utf8_lossy(&body));
    alive(&peer.mirror);
}

/// Throughput of one big blob through a mirror whose parent holds it, against a GET
/// straight from the registry and a `dfget` of it through another fresh peer (figures
/// printed; run with --ignored, it takes a while).
#[test]
#[ignore]
fn throughput_through_the_mirror_against_the_registry() {
    let size_mib: usize = std::env::var("MIRROR_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(384);
    let dir = cluster::test_dir("mirror-bench");
    let registry = Registry::start(&dir);
    let blob = Blob::new(cluster::random_bytes(size_mib * MIB, 3));
    registry.push_blob("e2e/bench", &blob.data, &blob.digest);
    let sched = start_scheduler(&dir);
    let options = PeerOptions { extra_toml: mirror_toml(&registry.addr), ..Default::default() };
    let mut warm = start_peer(&dir, "warm", Some(&sched.grpc), &options);
    let mut cold = start_peer(&dir, "cold", Some(&sched.grpc), &options);
    let mut other = start_peer(&dir, "other", Some(&sched.grpc), &options);
    let path = format!("/v2/e2e/bench/blobs/{}", blob.digest);
    // (seconds to the first body byte, seconds in all); the body is hashed as it comes.
    let timed = |addr: &str| {
        use sha2::{Digest, Sha256};
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let (mut head, mut first, mut hasher, mut body) = (Vec::new(), None, Sha256::new(), 0usize);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            if first.is_none() {
                head.extend_from_slice(chunk);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..end]));
                let rest = head.split_off(end + 4);
                first = Some(t.elapsed().as_secs_f64());
                hasher.update(&rest);
                body += rest.len();
                chunk = &[];
            }
            hasher.update(chunk);
            body += chunk.len();
        }
        assert_eq!(body, blob.data.len());
        let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(format!("sha256:{got}"), blob.digest);
        (first.unwrap_or_default(), t.elapsed().as_secs_f64())
    };
    let mb = blob.data.len() as f64 / 1e6;
    let direct: Vec<(f64, f64)> = (0..3).map(|_| timed(&registry.addr)).collect();
    let warm_up = timed(&warm.mirror);
    // Warm: its download completed (content checked and synced), as a parent long in place.
    let deadline = Instant::now() + Duration::from_secs(30);
    while warm.metric("peer_downloads_total{result=\"ok\"}") < 1 {
        assert!(Instant::now() < deadline, "the warm peer's download did not complete");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_before = cpu_seconds(warm.proc.pid()) + cpu_seconds(cold.proc.pid());
    let through = timed(&cold.mirror);
    let cpu = cpu_seconds(warm.proc.pid()) + cpu_seconds(cold.proc.pid()) - cpu_before;
    let cached = timed(&cold.mirror);
    let out = dir.join("other.out");
    let t = Instant::now();
    let r =
        cluster::dfget(&other.local_api, &format!("http://{}{path}", registry.addr), &out, &["--digest", &blob.digest]);
    let dfget_secs = t.elapsed().as_secs_f64();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let best_direct = direct.iter().map(|d| d.1).fold(f64::MAX, f64::min);
    eprintln!(
        "mirror bench, {mb:.0} MB blob: registry direct {:.0} MB/s (best of 3: {:?} s); \
         mirror of the first peer (registry behind it) {:.0} MB/s (first byte after {:.2} s); \
         mirror, warm parent {:.0} MB/s ({:.2} x direct; first byte after {:.2} s); \
         daemons' CPU {:.2} s ({:.2} s per GB); dfget through a third peer, two parents {:.0} MB/s; mirror, local cache {:.0} MB/s",
        mb / best_direct,
        direct.iter().map(|d| (d.1 * 100.0).round() / 100.0).collect::<Vec<_>>(),
        mb / warm_up.1,
        warm_up.0,
        mb / through.1,
        best_direct / through.1,
        through.0,
        cpu,
        cpu / mb * 1000.0,
        mb / dfget_secs,
        mb / cached.1
    );
    assert_eq!(registry.requests("GET", &blob.digest), 3 + 1, "3 direct GETs and one for the first peer");
    for p in [&mut warm, &mut cold, &mut other] {
        p.proc.stop(Duration::from_secs(10));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// N clients at once, each through its own peer's mirror, against N at once straight from
/// the registry (figures printed; run with --ignored).
#[test]
#[ignore]
fn fan_out_through_mirrors_against_the_registry() {
    let size_mib: usize = std::env::var("MIRROR_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let n: usize = std::env::var("MIRROR_BENCH_PEERS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let dir = cluster::test_dir("mirror-fanout");
    let registry = Registry::start(&dir);
    let blob = Blob::new(cluster::random_bytes(size_mib * MIB, 4));
    registry.push_blob("e2e/fan", &blob.data, &blob.digest);
    let sched = start_scheduler(&dir);
    let options = PeerOptions { extra_toml: mirror_toml(&registry.addr), ..Default::default() };
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..options.clone() });
    let mut peers: Vec<Peer> =
        (0..n).map(|i| start_peer(&dir, &format!("peer{i}"), Some(&sched.grpc), &options)).collect();
    let path = format!("/v2/e2e/fan/blobs/{}", blob.digest);
    let fan = |addrs: Vec<String>| -> f64 {
        let t = Instant::now();
        std::thread::scope(|s| {
            let runs: Vec<_> = addrs
                .iter()
                .map(|a| {
                    let path = &path;
                    s.spawn(move || get(a, "GET", path, &[]))
                })
                .collect();
            for r in runs {
                let (status, _, body) = r.join().unwrap();
                assert_eq!(status, 200);
                assert_eq!(format!("sha256:{}", cluster::sha256_hex(&body)), blob.digest);
            }
        });
        t.elapsed().as_secs_f64()
    };
    let direct = fan(vec![registry.addr.clone(); n]);
    let pids: Vec<u32> = peers.iter().map(|p| p.proc.pid()).chain([seed.proc.pid()]).collect();
    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let gets_before = registry.requests("GET", &blob.digest);
    let mirrored = fan(peers.iter().map(|p| p.mirror.clone()).collect());
    let cpu: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
    std::thread::sleep(Duration::from_millis(500));
    let gets = registry.requests("GET", &blob.digest) - gets_before;
    let served = registry.bytes_served(&blob.digest);
    let mb = blob.data.len() as f64 / 1e6;
    eprintln!(
        "mirror fan-out, {n} clients x {mb:.0} MB: registry direct {direct:.2} s; through {n} peers' mirrors {mirrored:.2} s \
         ({:.2} x direct), daemons' CPU {cpu:.2} s; registry: {gets} GET for the mirrored run, {:.2} copies in all (direct run included: {n})",
        mirrored / direct,
        served as f64 / blob.data.len() as f64
    );
    assert_eq!(gets, 1, "the seed alone read the registry");
    for p in peers.iter_mut() {
        p.proc.stop(Duration::from_secs(10));
    }
    seed.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a client got before the server closed: status and body bytes (a cut connection is
/// not an error here).
fn get_cut(addr: &str, path: &str) -> (u16, Option<usize>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim().parse().unwrap_or(0))
    });
    (status, length, out[end + 4..].to_vec())
}

#[test]
fn a_blob_that_fails_its_digest_is_never_finished_cleanly() {
    let dir = cluster::test_dir("mirror-digest");
    // A "registry" that serves other bytes than the digest names (3 pieces of 1 MiB).
    let lying = e2e::origin_server::Origin::start();
    let named = cluster::random_bytes(3 * MIB, 1);
    let served = cluster::random_bytes(3 * MIB, 2);
    let digest = format!("sha256:{}", cluster::sha256_hex(&named));
    let path = format!("/v2/e2e/bad/blobs/{digest}");
    lying.put(&path, std::sync::Arc::new(served));
    let host = lying.addr.to_string();
    let options = PeerOptions { piece_bytes: 1 << 20, extra_toml: mirror_toml(&host), ..Default::default() };
    let mut peer = start_peer(&dir, "peer", None, &options);
    let (status, length, body) = get_cut(&peer.mirror, &path);
    assert_eq!((status, length), (200, Some(3 * MIB)), "the response starts as the first pieces arrive");
    assert!(body.len() < 3 * MIB, "the body was finished ({} bytes) though the blob fails its digest", body.len());
    eprintln!("registry_mirror: a blob failing its digest: the body was cut after {} of {} bytes", body.len(), 3 * MIB);
    alive(&peer.mirror);
    peer.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// User + system CPU seconds of a process so far (/proc/PID/stat, 100 ticks per second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // Fields after the command: state is skipped by the parse; utime, stime are 14, 15 in
    // the man page, i.e. 11 and 12 here (state was not a number).
    (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) as f64 / 100.0
}

#[test]
fn the_registry_decides_who_gets_a_blob_even_from_the_cache() {
    let dir = cluster::test_dir("mirror-auth");
    let private = e2e::origin_server::Origin::start();
    let blob = Blob::new(cluster::random_bytes(5 * MIB + 3, 21));
    let path = format!("/v2/e2e/private/blobs/{}", blob.digest);
    private.put(&path, std::sync::Arc::new(blob.data.clone()));
    private.require_authorization(&path, "Bearer good");
    let host = private.addr.to_string();
    let options = PeerOptions { piece_bytes: 1 << 20, extra_toml: mirror_toml(&host), ..Default::default() };
    let mut peer = start_peer(&dir, "peer", None, &options);
    let m = peer.mirror.clone();
    let refused = |authorization: Option<&str>| {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
        let (status, h, body) = get(&m, "GET", &path, &headers);
        assert_eq!(status, 401, "{authorization:?}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            header(&h, "WWW-Authenticate"),
            Some(e2e::origin_server::CHALLENGE),
            "the challenge comes back unchanged"
        );
        assert!(String::from_utf8_lossy(&body).contains("UNAUTHORIZED"), "the registry's body too");
    };
    refused(None);
    // The client's credentials go upstream, and with the P2P download to its origin reads.
    let (status, h, body) = get(&m, "GET", &path, &[("Authorization", "Bearer good")]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    assert!(body == blob.data);
    assert!(peer.metric("peer_mirror_bytes_total{source=\"p2p\"}") >= blob.data.len() as u64);
    assert_eq!(header(&h, "Content-Length"), Some(blob.data.len().to_string().as_str()));
    let (status, h, body) = get(&m, "HEAD", &path, &[("Authorization", "Bearer good")]);
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(header(&h, "Content-Length"), Some(blob.data.len().to_string().as_str()));
    // The blob is in this peer's store now; still not for clients the registry refuses.
    refused(None);
    refused(Some("Bearer stolen"));
    let (status, _, body) = get(&m, "GET", &path, &[("Authorization", "Bearer good"), ("Range", "bytes=10-19")]);
    assert_eq!((status, body.as_slice()), (206, &blob.data[10..20]));
    peer.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_that_goes_away_does_not_stop_the_shared_download() {
    let dir = cluster::test_dir("mirror-disconnect");
    let slow = e2e::origin_server::Origin::start();
    let blob = Blob::new(cluster::random_bytes(24 * MIB, 31));
    let path = format!("/v2/e2e/slow/blobs/{}", blob.digest);
    // About 2 s for the whole blob.
    slow.put_throttled(&path, std::sync::Arc::new(blob.data.clone()), 12 << 20);
    let host = slow.addr.to_string();
    let options = PeerOptions { piece_bytes: 1 << 20, extra_toml: mirror_toml(&host), ..Default::default() };
    let mut peer = start_peer(&dir, "peer", None, &options);
    // The first client reads the head and a little of the body, then hangs up.
    let mut s = TcpStream::connect(&peer.mirror).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = vec![0u8; 256 << 10];
    s.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..200]));
    drop(s);
    // A second client gets all of it from the same download: one copy from the registry.
    let (status, _, body) = get(&peer.mirror, "GET", &path, &[]);
    assert_eq!(status, 200);
    assert!(body == blob.data, "wrong bytes for the second client");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slow.bytes_served(&path), blob.data.len() as u64, "the registry served one copy");
    assert_eq!(peer.metric("peer_downloads_total{result=\"ok\"}"), 1, "one download for both clients");
    assert_eq!(peer.metric("peer_downloads_total{result=\"failed\"}"), 0, "the hang-up stopped nothing");
    peer.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn range_reads_fetch_only_their_pieces_and_an_idle_lazy_download_ends() {
    let dir = cluster::test_dir("mirror-lazy");
    let origin = e2e::origin_server::Origin::start();
    let blob = Blob::new(cluster::random_bytes(32 * MIB + 9, 41));
    let path = format!("/v2/e2e/lazy/blobs/{}", blob.digest);
    origin.put(&path, std::sync::Arc::new(blob.data.clone()));
    let host = origin.addr.to_string();
    // lazy_idle_ms belongs to [mirror]: right after the section header.
    let extra = mirror_toml(&host).replacen("[mirror]\n", "[mirror]\nlazy_idle_ms = 300\n", 1);
    let options = PeerOptions { piece_bytes: 1 << 20, extra_toml: extra, ..Default::default() };
    let mut peer = start_peer(&dir, "peer", None, &options);
    let read = |start: usize, end: usize| {
        let (status, _, body) = get(&peer.mirror, "GET", &path, &[("Range", &format!("bytes={start}-{end}"))]);
        assert_eq!(status, 206);
        assert!(body == blob.data[start..=end], "bytes {start}-{end}");
    };
    read(5 * MIB + 10, 5 * MIB + 20);
    read(20 * MIB - 5, 20 * MIB + 5);
    // Only the pieces covering the reads left the origin (1 + 2 pieces of 1 MiB).
    std::thread::sleep(Duration::from_millis(200));
    let served = origin.bytes_served(&path);
    assert!(served <= 3 * MIB as u64, "the origin served {served} bytes for three pieces");
    // Nobody reads: the lazy download ends; the next read starts another that keeps the pieces.
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer.metric("peer_downloads_total{result=\"idle\"}") < 1 {
        assert!(Instant::now() < deadline, "the idle lazy download did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    read(5 * MIB, 6 * MIB - 1);
    read(31 * MIB, 32 * MIB + 8);
    std::thread::sleep(Duration::from_millis(200));
    let served = origin.bytes_served(&path);
    assert!(served <= 4 * MIB as u64 + 9, "the origin served {served} bytes: held pieces were fetched again");
    peer.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The mirror's slow-loris of issue 25: 640 sockets each send half a request line and
/// wait. They hold no request slot (a slot is taken once a head is whole), so a genuine
/// client is answered within 1 s meanwhile, and the mirror closes them after
/// `request_head_timeout_ms`.
#[test]
fn idle_sockets_do_not_keep_genuine_clients_out() {
    let dir = cluster::test_dir("mirror-loris");
    let options = PeerOptions {
        extra_toml: "[mirror]\ndefault_registry = \"127.0.0.1:9\"\nmax_requests = 64\nrequest_head_timeout_ms = 2000\n"
            .into(),
        ..Default::default()
    };
    let peer = start_peer(&dir, "peer", None, &options);
    let m = peer.mirror.as_str();
    alive(m);
    let mut idle = Vec::new();
    for _ in 0..640 {
        let mut s = TcpStream::connect(m).unwrap();
        s.write_all(b"GET /v2/ HTT").unwrap();
        idle.push(s);
    }
    for round in 0..3 {
        let started = Instant::now();
        alive(m);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "round {round}: a genuine request took {took:?} behind 640 idle sockets"
        );
    }
    // Past the head deadline the mirror has closed them: reads see the end.
    std::thread::sleep(Duration::from_millis(2500));
    let mut closed = 0;
    for s in idle.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 512];
        // The end (0), or a 408/400 answer then the end: either way the mirror let go.
        if s.read(&mut buf).is_ok() {
            closed += 1;
        }
    }
    assert!(closed >= 600, "only {closed} of 640 half-sent requests were closed after the head deadline");
    alive(m);
}

/// The manifest traffic of a rollout: 6 peers pulling at once with containerd's requests
/// cost the registry one manifest request (the seed's resolver asked once for all of them,
/// the by-digest GET and the blob HEADs answered from it), a re-pushed tag is seen once
/// `tag_ttl_ms` has passed, and during an outage the last answer is served, marked stale.
#[test]
fn manifests_are_resolved_once_for_the_cluster() {
    let dir = cluster::test_dir("mirror-manifests");
    let mut registry = Registry::start(&dir);
    let image = push_image(&registry, "e2e/rollout", &[2, 3], 50);
    let sched = start_scheduler(&dir);
    let toml = mirror_toml(&registry.addr).replacen(
        "[mirror]\n",
        "[mirror]\ntag_ttl_ms = 1500\nauth_check_ttl_ms = 3000\nserve_stale_on_error = true\n",
        1,
    );
    let options = PeerOptions { piece_bytes: 1 << 20, extra_toml: toml, ..Default::default() };
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..options.clone() });
    assert!(seed.resolver.starts_with("127.0.0.1:"), "the seed serves a resolver: {:?}", seed.resolver);
    let mut peers: Vec<Peer> =
        (0..6).map(|i| start_peer(&dir, &format!("peer{i}"), Some(&sched.grpc), &options)).collect();
    for p in &peers {
        p.wait_for_log("seed resolvers for manifests", 1, Duration::from_secs(10));
    }

    std::thread::scope(|s| {
        for p in &peers {
            let (mirror, registry, image) = (&p.mirror, &registry.addr, &image);
            s.spawn(move || containerd_pull(mirror, registry, image));
        }
    });
    std::thread::sleep(Duration::from_millis(500)); // the access log is written as responses end
    let manifest_requests = registry.requests("GET", "/manifests/") + registry.requests("HEAD", "/manifests/");
    let blob_heads = registry.requests("HEAD", "/blobs/");
    eprintln!(
        "registry_manifests: 6 pulls cost the registry {manifest_requests} manifest requests, {blob_heads} blob HEADs"
    );
    assert_eq!(manifest_requests, 1, "one GET by tag for the cluster");
    assert_eq!(blob_heads, 0, "blob lengths come from the manifest the same credentials read");
    for blob in [&image.config].into_iter().chain(image.layers.iter()) {
        assert_eq!(registry.requests("GET", &blob.digest), 1, "{} read once", blob.digest);
    }
    for p in &peers {
        assert_eq!(
            p.metric("peer_mirror_manifest_answers_total{source=\"seed\"}"),
            1,
            "{}: the tag from the seed",
            p.name
        );
        assert_eq!(
            p.metric("peer_mirror_manifest_answers_total{source=\"cache\"}"),
            1,
            "{}: the digest from its own",
            p.name
        );
        assert_eq!(p.metric("peer_mirror_manifest_answers_total{source=\"registry\"}"), 0, "{}", p.name);
    }
    let seed_answers =
        |source: &str| seed.metric(&format!("peer_mirror_manifest_answers_total{{source=\"{source}\"}}"));
    assert_eq!(seed_answers("registry"), 1);
    assert_eq!(seed_answers("joined") + seed_answers("cache"), 5);

    // The tag pushed again: seen once the TTL has passed, at the cost of one request.
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["annotations"] = serde_json::json!({ "build": "2" });
    let manifest = manifest.to_string().into_bytes();
    assert_eq!(registry.push_manifest(&image.repo, &image.tag, OCI_MANIFEST, &manifest), 201);
    let new_digest = format!("sha256:{}", cluster::sha256_hex(&manifest));
    std::thread::sleep(Duration::from_millis(1600));
    let head = |p: &Peer, accept: &str| {
        get(&p.mirror, "HEAD", &format!("/v2/{}/manifests/{}", image.repo, image.tag), &[("Accept", accept)])
    };
    for p in &peers[..3] {
        let (status, h, _) = head(p, CONTAINERD_ACCEPT);
        assert_eq!((status, header(&h, "Docker-Content-Digest")), (200, Some(new_digest.as_str())), "{}", p.name);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(registry.requests("GET", "/manifests/"), 2, "one more GET for the re-pushed tag");

    // The registry down: the last answer, marked stale; a request never answered before
    // gets the 502.
    let addr = registry.addr.clone();
    registry.proc.kill();
    std::thread::sleep(Duration::from_millis(1600));
    let (status, h, _) = head(&peers[4], CONTAINERD_ACCEPT);
    assert_eq!((status, header(&h, "Docker-Content-Digest")), (200, Some(new_digest.as_str())), "{h:?}");
    assert!(header(&h, "Warning").is_some_and(|w| w.starts_with("110")), "marked stale: {h:?}");
    assert!(seed_answers("stale") >= 1);
    let (status, _, body) = head(&peers[5], "application/vnd.oci.image.index.v1+json");
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    // A cached blob, its registry's yes (3 s) expired: served on that yes, marked stale; the
    // same blob for credentials the registry never vouched for: the 502.
    let layer = &image.layers[0];
    let path = format!("/v2/{}/blobs/{}", image.repo, layer.digest);
    let (status, h, body) = get(&peers[3].mirror, "GET", &path, &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    assert!(header(&h, "Warning").is_some_and(|w| w.starts_with("110")), "marked stale: {h:?}");
    assert_eq!(format!("sha256:{}", cluster::sha256_hex(&body)), layer.digest, "the blob's bytes");
    assert_eq!(peers[3].metric("peer_mirror_stale_blobs_total"), 1);
    let (status, _, _) = get(&peers[3].mirror, "GET", &path, &[("Authorization", "Basic c29tZW9uZTplbHNl")]);
    assert_eq!(status, 502, "other credentials were never vouched for");
    let _ = addr;
    for p in peers.iter_mut() {
        assert_eq!(p.proc.stop(Duration::from_secs(10)), Some(0), "{} exits cleanly", p.name);
    }
    seed.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
