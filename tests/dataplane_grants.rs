//! Data-plane grants on real processes (issue 25, the fourth hole): with a cluster key on
//! the scheduler and every peer, a rollout still shares one origin copy, and a process that
//! reaches a peer's data port without the scheduler's grant is refused the task's pieces
//! (it knows the task id: it follows from the URL alone).

use e2e::cluster::{self, start_peer, start_scheduler_full, PeerOptions};
use e2e::origin_server::Origin;
use peer::task_id::{TaskIdRules, TaskRequest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// HELLO, then one GetPiece for `task` piece 0; the reply frame's kind and body.
fn get_piece_without_grant(data_addr: &str, task: &[u8; 32]) -> (u8, Vec<u8>) {
    let mut s = TcpStream::connect(data_addr).expect("the data port accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[b'P', b'2', b'P', b'D', 0, 3, 0, 0]).unwrap();
    let mut hello = [0u8; 8];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..4], b"P2PD");
    let mut frame = Vec::new();
    frame.extend_from_slice(&(5u32 + 32 + 4).to_be_bytes());
    frame.push(0x02);
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(task);
    frame.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&frame).unwrap();
    let mut header = [0u8; 9];
    s.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 5];
    s.read_exact(&mut body).unwrap();
    (header[4], body)
}

#[test]
fn with_a_cluster_key_peers_share_the_blob_and_a_stranger_at_the_data_port_gets_nothing() {
    let dir = cluster::test_dir("grants");
    let key = dir.join("grant.key");
    std::fs::write(&key, cluster::random_bytes(32, 9)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key_line = format!("grant_key_file = \"{}\"", key.display());
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(32 * MIB, 2));
    let want = cluster::sha256_hex(&data);
    let url = origin.put("/files/private.bin", data.clone());
    let (grpc, http) = (format!("127.0.0.1:{}", cluster::free_port()), format!("127.0.0.1:{}", cluster::free_port()));
    let mut sched = start_scheduler_full(&dir, grpc, http, &key_line, "");
    let keyed = PeerOptions { extra_toml: format!("[dataplane]\n{key_line}\n"), ..Default::default() };
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..keyed.clone() });
    let mut peers: Vec<_> = (0..3).map(|i| start_peer(&dir, &format!("peer{i}"), Some(&sched.grpc), &keyed)).collect();
    let outputs = cluster::dfget_all(&peers, &url, &dir);
    for (i, (out, path)) in outputs.iter().enumerate() {
        assert!(out.status.success(), "peer{i}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(cluster::sha256_hex(&std::fs::read(path).unwrap()), want, "peer{i} output");
    }
    // Pieces went between peers under grants, and no genuine request was refused.
    let from_parents: u64 = peers.iter().map(|p| p.metric("peer_download_bytes_total{source=\"parent\"}")).sum();
    assert!(from_parents > 0, "nothing came from a parent");
    let served = origin.bytes_served("/files/private.bin");
    assert!(served <= (data.len() + 4 * MIB) as u64, "origin served {served} bytes");
    for p in peers.iter().chain(std::iter::once(&seed)) {
        assert_eq!(p.metric("peer_upload_unauthorized_replies_total"), 0, "{} refused a genuine child", p.name);
    }
    // A stranger who can reach the data port and derive the task id from the URL.
    let task = TaskIdRules::default().task_id(&TaskRequest { url: &url, ..Default::default() }).unwrap();
    for p in peers.iter().chain(std::iter::once(&seed)) {
        let (kind, body) = get_piece_without_grant(&p.data, task.as_bytes());
        assert_eq!(kind, 0xE0, "{} answered a request without a grant with frame kind {kind:#x}", p.name);
        assert_eq!(body[0], 7, "{}: error code {} (7 = unauthorized)", p.name, body[0]);
        let message = String::from_utf8_lossy(&body[3..]);
        assert!(message.contains("grant"), "{}: {message}", p.name);
        // (The counter is copied from the data plane's stats on a timer.)
        let counted = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            p.metric("peer_upload_unauthorized_replies_total") == 1
        });
        assert!(counted, "{} did not count the refusal in 5 s", p.name);
    }
    for p in peers.iter_mut() {
        assert_eq!(p.proc.stop(Duration::from_secs(10)), Some(0), "{} exits 0 on SIGTERM", p.name);
    }
    seed.proc.stop(Duration::from_secs(10));
    sched.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
