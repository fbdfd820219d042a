//! Mutual TLS on real processes (issue 25 item 1): a scheduler, a seed and two peers on
//! 127.0.0.1, every one with a `[tls]` table of one throwaway cluster CA. The peers download
//! through each other over TLS; a peer with a certificate of another CA is refused by the
//! scheduler (a log line and `sched_tls_handshake_failures_total`), a plain-TCP client by a
//! peer's data port (`peer_tls_handshake_failures_total{listener="data"}`), and the
//! genuine peers keep serving.

use e2e::cluster::{self, start_peer, start_scheduler_full, PeerOptions};
use e2e::origin_server::Origin;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use svc::tls::test_certs::TestCa;

const MIB: usize = 1 << 20;
/// The name every server certificate of the test cluster carries (`[tls] server_name`).
const CLUSTER_NAME: &str = "p2pimg.cluster.test";

fn metric(http: &str, sample: &str) -> u64 {
    let body = cluster::http_get(http, "/metrics").unwrap_or_default();
    body.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse::<f64>().ok())).map_or(0, |v| v as u64)
}

fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cluster_on_mutual_tls_shares_pieces_and_refuses_strangers() {
    let dir = cluster::test_dir("mtls");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let mut ca = TestCa::new("p2pimg test cluster CA");
    let tls_of = |ca: &mut TestCa, name: &str| ca.write(&certs, name, &[CLUSTER_NAME], Some(CLUSTER_NAME)).to_toml();

    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(24 * MIB, 25));
    let want = cluster::sha256_hex(&data);
    let url = origin.put("/files/mtls.bin", data.clone());

    let (grpc, http) = (format!("127.0.0.1:{}", cluster::free_port()), format!("127.0.0.1:{}", cluster::free_port()));
    let sched_tls = tls_of(&mut ca, "scheduler");
    let mut sched = start_scheduler_full(&dir, grpc, http, "", &format!("\n{sched_tls}"));
    let with_tls = |ca: &mut TestCa, name: &str, seed: bool| PeerOptions {
        seed,
        piece_bytes: 2 << 20,
        extra_toml: tls_of(ca, name),
        ..Default::default()
    };
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &with_tls(&mut ca, "seed", true));
    let mut peers: Vec<_> = (0..2)
        .map(|i| {
            start_peer(&dir, &format!("peer{i}"), Some(&sched.grpc), &with_tls(&mut ca, &format!("peer{i}"), false))
        })
        .collect();

    // Genuine members: the download goes seed -> peers over TLS.
    for (i, (out, path)) in cluster::dfget_all(&peers, &url, &dir).iter().enumerate() {
        assert!(out.status.success(), "peer{i}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(cluster::sha256_hex(&std::fs::read(path).unwrap()), want, "peer{i} output");
    }
    let from_parents: u64 = peers.iter().map(|p| p.metric("peer_download_bytes_total{source=\"parent\"}")).sum();
    assert!(from_parents >= data.len() as u64, "the peers got {from_parents} bytes from parents over TLS");
    assert!(origin.bytes_served("/files/mtls.bin") <= data.len() as u64 + (4 * MIB) as u64);
    let refused_grpc = "sched_tls_handshake_failures_total{listener=\"grpc\"}";
    assert_eq!(metric(&sched.http, refused_grpc), 0, "no genuine member was refused");

    // A peer whose certificate comes from another CA: the scheduler refuses it, says so
    // in one line, and counts it.
    let rogue_certs = dir.join("rogue-certs");
    std::fs::create_dir_all(&rogue_certs).unwrap();
    let mut rogue_ca = TestCa::new("someone else's CA");
    let rogue_tls = rogue_ca.write(&rogue_certs, "rogue", &[CLUSTER_NAME], Some(CLUSTER_NAME)).to_toml();
    let opts = PeerOptions { extra_toml: rogue_tls, ..Default::default() };
    let mut rogue = start_peer(&dir, "rogue", Some(&sched.grpc), &opts);
    wait_until("the scheduler refusing the rogue peer", Duration::from_secs(20), || {
        metric(&sched.http, refused_grpc) >= 1
    });
    let log = std::fs::read_to_string(&sched.proc.log).unwrap();
    assert!(log.contains("TLS handshake refused"), "the scheduler logs the refusal:\n{log}");
    assert!(log.contains("gRPC takes only clients with a certificate of the cluster CA"), "{log}");
    let seed_log = std::fs::read_to_string(&seed.proc.log).unwrap();
    assert!(seed_log.contains("mutual TLS on the data plane"), "{seed_log}");
    let hosts = cluster::http_get(&sched.http, "/api/v1/hosts").unwrap_or_default();
    assert!(!hosts.contains("rogue"), "the rogue host never registered:\n{hosts}");

    // A plain-TCP client at a peer's data port gets no greeting, only a refused handshake.
    let mut raw = std::net::TcpStream::connect(&peers[0].data).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = raw.write_all(&peer::dataplane::frame::HELLO);
    let mut buf = [0u8; 64];
    let got = raw.read(&mut buf).unwrap_or(0);
    assert!(got == 0 || !buf[..got].starts_with(b"P2PD"), "a plain client got a greeting: {:?}", &buf[..got]);
    wait_until("the data port counting the plain client", Duration::from_secs(15), || {
        peers[0].metric("peer_tls_handshake_failures_total{listener=\"data\"}") >= 1
    });

    // The genuine members still serve: a second file, through peer1.
    let data2 = Arc::new(cluster::random_bytes(6 * MIB, 26));
    let url2 = origin.put("/files/mtls2.bin", data2.clone());
    let out2 = dir.join("second.out");
    let o = cluster::dfget(&peers[1].local_api, &url2, &out2, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cluster::sha256_hex(&std::fs::read(&out2).unwrap()), cluster::sha256_hex(&data2));

    let rogue_log = std::fs::read_to_string(&rogue.proc.log).unwrap();
    assert!(rogue_log.contains("UnknownIssuer"), "the rogue learns why: its CA is not the scheduler's:\n{rogue_log}");
    rogue.proc.stop(Duration::from_secs(10));
    for p in peers.iter_mut() {
        assert_eq!(p.proc.stop(Duration::from_secs(10)), Some(0), "{} exits 0 on SIGTERM", p.name);
    }
    seed.proc.stop(Duration::from_secs(10));
    sched.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
