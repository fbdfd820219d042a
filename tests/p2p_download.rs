//! P2P downloads through real processes on 127.0.0.1: the `scheduler` binary, one seed
//! `peerd`, normal `peerd`s and `dfget`, with a counting HTTP origin. Checks the bytes,
//! how many copies the origin served, and where each peer's bytes came from.

use e2e::cluster::{self, start_peer, start_scheduler, PeerOptions};
use e2e::origin_server::Origin;
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

#[test]
fn peers_share_one_origin_copy() {
    let dir = cluster::test_dir("share");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(64 * MIB, 1));
    let want = cluster::sha256_hex(&data);
    let url = origin.put("/files/share.bin", data.clone());
    let mut sched = start_scheduler(&dir);
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let mut peers: Vec<_> =
        (0..4).map(|i| start_peer(&dir, &format!("peer{i}"), Some(&sched.grpc), &PeerOptions::default())).collect();
    let outputs = cluster::dfget_all(&peers, &url, &dir);
    for (i, (out, path)) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "peer{i}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&peers[i].proc.log)
        );
        assert_eq!(cluster::sha256_hex(&std::fs::read(path).unwrap()), want, "peer{i} output");
    }
    let served = origin.bytes_served("/files/share.bin");
    let requests = origin.requests("/files/share.bin");
    let by_peer: Vec<(String, u64)> = peers
        .iter()
        .chain(std::iter::once(&seed))
        .map(|p| (p.name.clone(), p.metric("peer_download_bytes_total{source=\"origin\"}")))
        .collect();
    assert!(
        served <= data.len() as u64 + (4 * MIB) as u64,
        "origin served {served} bytes in {requests} requests for a {} byte file; from the origin by peer: {by_peer:?}",
        data.len()
    );
    for p in &peers {
        let parent = p.metric("peer_download_bytes_total{source=\"parent\"}");
        let from_origin = p.metric("peer_download_bytes_total{source=\"origin\"}");
        assert!(parent > from_origin, "{}: {parent} bytes from parents, {from_origin} from the origin", p.name);
    }
    for p in peers.iter_mut() {
        assert_eq!(p.proc.stop(Duration::from_secs(10)), Some(0), "{} exits 0 on SIGTERM", p.name);
    }
    seed.proc.stop(Duration::from_secs(10));
    sched.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The daemon reaches the origin only through the scheduler: peers whose plans ask for it
/// whenever they want more parents (never content with fewer than 16 useful ones, no
/// reschedule before asking) still cost the origin at most the seed's copy and one more
/// under `back_to_source_limit = 1`. A daemon that went there on its own would have sent
/// every peer to the origin.
#[test]
fn peers_that_give_up_on_p2p_go_to_the_origin_only_when_the_scheduler_admits_them() {
    let dir = cluster::test_dir("ask-origin");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(32 * MIB, 2));
    let want = cluster::sha256_hex(&data);
    let url = origin.put("/files/ask.bin", data.clone());
    let (grpc, http) = (format!("127.0.0.1:{}", cluster::free_port()), format!("127.0.0.1:{}", cluster::free_port()));
    let _sched = cluster::start_scheduler_with(&dir, grpc.clone(), http, "back_to_source_limit = 1");
    let _seed = start_peer(
        &dir,
        "seed",
        Some(&grpc),
        &PeerOptions { seed: true, piece_bytes: MIB as u64, ..Default::default() },
    );
    let impatient = PeerOptions {
        piece_bytes: MIB as u64,
        peer_toml: "max_reschedules = 0\nmin_useful_parents = 16\nreschedule_backoff_ns = 50_000_000".into(),
        ..Default::default()
    };
    let peers: Vec<_> = (0..4).map(|i| start_peer(&dir, &format!("peer{i}"), Some(&grpc), &impatient)).collect();
    let outputs = cluster::dfget_all(&peers, &url, &dir);
    for (i, (out, path)) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "peer{i}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&peers[i].proc.log)
        );
        assert_eq!(cluster::sha256_hex(&std::fs::read(path).unwrap()), want, "peer{i} output");
    }
    let asked = peers
        .iter()
        .filter(|p| {
            std::fs::read_to_string(&p.proc.log).unwrap_or_default().contains("asking the scheduler for the origin")
        })
        .count();
    assert!(asked > 0, "no peer asked the scheduler for the origin");
    let served = origin.bytes_served("/files/ask.bin");
    let by_peer: Vec<(String, u64)> =
        peers.iter().map(|p| (p.name.clone(), p.metric("peer_download_bytes_total{source=\"origin\"}"))).collect();
    assert!(
        served <= 2 * data.len() as u64 + (4 * MIB) as u64,
        "origin served {served} bytes for a {} byte file ({asked} peers asked); from the origin by peer: {by_peer:?}",
        data.len()
    );
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
