//! Faults in a real cluster on 127.0.0.1: a parent killed mid-download, the seed killed at
//! half the pieces, a piece corrupted on a peer's disk, a daemon restarted, and the
//! scheduler restarted.

use e2e::cluster::{
    self, dfget, start_peer, start_peer_with, start_scheduler, start_scheduler_at, write_peer_config, PeerOptions,
};
use e2e::origin_server::Origin;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn ok_output(out: &std::process::Output, path: &std::path::Path, want: &str, who: &str) {
    assert!(out.status.success(), "{who}: dfget failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cluster::sha256_hex(&std::fs::read(path).unwrap()), want, "{who}: output differs from the origin's");
}

#[test]
fn children_finish_when_a_parent_dies_and_when_the_seed_dies_at_half() {
    let dir = cluster::test_dir("faults");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(48 * MIB, 2));
    let want = cluster::sha256_hex(&data);
    // The origin sends at 12 MB/s: the seed is still fetching when it is killed.
    let path = "/files/faults.bin";
    let url = origin.put_throttled(path, data.clone(), 12_000_000);
    let _sched = start_scheduler(&dir);
    let sched_addr = _sched.grpc.clone();
    let mut seed = start_peer(&dir, "seed", Some(&sched_addr), &PeerOptions { seed: true, ..Default::default() });
    let slow = PeerOptions { download_rate: Some(16_000_000), ..Default::default() };
    let mut peers: Vec<_> = (0..4).map(|i| start_peer(&dir, &format!("p{i}"), Some(&sched_addr), &slow)).collect();
    let (victim_done, results) = std::thread::scope(|s| {
        let runs = cluster::dfget_each(s, &peers, &url, &dir);
        // The seed dies once it holds half the content.
        let deadline = Instant::now() + Duration::from_secs(60);
        while seed.metric("peer_download_bytes_total{source=\"origin\"}") < (data.len() / 2) as u64 {
            assert!(Instant::now() < deadline, "the seed never reached half the content");
            std::thread::sleep(Duration::from_millis(50));
        }
        seed.proc.kill();
        // A peer that is a parent of others dies a little later, mid-download.
        std::thread::sleep(Duration::from_millis(500));
        peers[0].proc.kill();
        let results: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
        (results[0].0.status.success(), results)
    });
    let _ = victim_done; // p0 was killed: its dfget may fail
    for (i, (out, path)) in results.iter().enumerate().skip(1) {
        ok_output(out, path, &want, &format!("p{i}"));
    }
    let served = origin.bytes_served(path);
    assert!(
        served <= 2 * data.len() as u64,
        "the origin served {served} bytes, more than 2 copies of {} bytes",
        data.len()
    );
    eprintln!("faults: origin served {:.2} copies", served as f64 / data.len() as f64);
    for p in peers.iter_mut().skip(1) {
        p.proc.stop(Duration::from_secs(10));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_piece_is_never_sent_and_a_restarted_peer_serves_from_its_cache() {
    let dir = cluster::test_dir("corrupt");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(24 * MIB, 3));
    let want = cluster::sha256_hex(&data);
    let path = "/files/corrupt.bin";
    let url = origin.put(path, data.clone());
    let sched = start_scheduler(&dir);
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let (a_config, a_store) = write_peer_config(&dir, "a", Some(&sched.grpc), &PeerOptions::default());
    let mut a = start_peer_with(&dir, "a", a_config.clone(), a_store.clone());
    let out_a = dir.join("a.out");
    ok_output(&dfget(&a.local_api, &url, &out_a, &[]), &out_a, &want, "a");

    // Corrupt one byte of piece 1 in a's copy; with the seed gone, a is b's only parent:
    // a must notice on its re-check and never send it; b gets it from the origin.
    seed.proc.kill();
    let content = std::fs::read_dir(a_store.join("tasks")).unwrap().next().unwrap().unwrap().path().join("content");
    let mut bytes = std::fs::read(&content).unwrap();
    bytes[(4 * MIB) + 17] ^= 0xff;
    std::fs::write(&content, &bytes).unwrap();
    let b = start_peer(&dir, "b", Some(&sched.grpc), &PeerOptions::default());
    let out_b = dir.join("b.out");
    ok_output(&dfget(&b.local_api, &url, &out_b, &[]), &out_b, &want, "b");
    assert!(a.metric("peer_upload_corrupt_pieces_total") >= 1, "a was never asked for its corrupt piece");
    assert!(b.metric("peer_download_bytes_total{source=\"parent\"}") > 0, "b got nothing from a");

    // A restarted daemon finds the task in its store: the corrupt piece was dropped, so it
    // fetches that one piece again; a second restart then serves everything from disk.
    assert_eq!(a.proc.stop(Duration::from_secs(10)), Some(0));
    let mut a = start_peer_with(&dir, "a", a_config.clone(), a_store.clone());
    let out_again = dir.join("a-again.out");
    ok_output(&dfget(&a.local_api, &url, &out_again, &[]), &out_again, &want, "a after restart");
    assert_eq!(a.proc.stop(Duration::from_secs(10)), Some(0));
    let served_before = origin.bytes_served(path);
    let mut a = start_peer_with(&dir, "a", a_config, a_store);
    let out_third = dir.join("a-third.out");
    ok_output(&dfget(&a.local_api, &url, &out_third, &[]), &out_third, &want, "a after a second restart");
    assert_eq!(a.metric("peer_download_bytes_total{source=\"parent\"}"), 0);
    assert_eq!(a.metric("peer_download_bytes_total{source=\"origin\"}"), 0);
    assert_eq!(a.metric("peer_download_bytes_total{source=\"local_cache\"}"), data.len() as u64);
    assert_eq!(origin.bytes_served(path), served_before, "the restarted peer refetched");
    a.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a daemon logs once it has registered its completed tasks with a scheduler.
const ANNOUNCED: &str = "completed tasks announced to the scheduler";

#[test]
fn completed_tasks_stay_parents_across_daemon_and_scheduler_restarts() {
    let dir = cluster::test_dir("restarts");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(16 * MIB, 4));
    let want = cluster::sha256_hex(&data);
    let path = "/files/restarts.bin";
    let url = origin.put(path, data.clone());
    let mut sched = start_scheduler(&dir);
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let (a_config, a_store) = write_peer_config(&dir, "a", Some(&sched.grpc), &PeerOptions::default());
    let mut a = start_peer_with(&dir, "a", a_config.clone(), a_store.clone());
    let out_a = dir.join("a.out");
    ok_output(&dfget(&a.local_api, &url, &out_a, &[]), &out_a, &want, "a");
    let served = origin.bytes_served(path);
    assert_eq!(served, data.len() as u64, "the seed fetched one copy");

    // Without the seed, the origin is the only other source: every byte b and c get from
    // a peer shows the scheduler knew a (and then b) held the task.
    seed.proc.kill();
    // A graceful stop leaves the scheduler: it forgets a's peers. The restarted daemon
    // registers its completed task again.
    assert_eq!(a.proc.stop(Duration::from_secs(10)), Some(0));
    let mut a = start_peer_with(&dir, "a", a_config, a_store);
    a.wait_for_log(ANNOUNCED, 1, Duration::from_secs(20));
    let mut b = start_peer(&dir, "b", Some(&sched.grpc), &PeerOptions::default());
    let out_b = dir.join("b.out");
    ok_output(&dfget(&b.local_api, &url, &out_b, &[]), &out_b, &want, "b");
    assert_eq!(b.metric("peer_download_bytes_total{source=\"parent\"}"), data.len() as u64, "b: bytes from a");
    assert_eq!(origin.bytes_served(path), served, "b went to the origin");

    // A restarted scheduler knows no peer; the daemons notice its new instance on their next
    // announce (every 2 s here) and register what they hold.
    let (grpc, http) = (sched.grpc.clone(), sched.http.clone());
    assert_eq!(sched.proc.stop(Duration::from_secs(10)), Some(0));
    let mut sched = start_scheduler_at(&dir, grpc, http);
    a.wait_for_log(ANNOUNCED, 2, Duration::from_secs(30));
    b.wait_for_log(ANNOUNCED, 1, Duration::from_secs(30));
    let mut c = start_peer(&dir, "c", Some(&sched.grpc), &PeerOptions::default());
    let out_c = dir.join("c.out");
    ok_output(&dfget(&c.local_api, &url, &out_c, &[]), &out_c, &want, "c");
    assert_eq!(c.metric("peer_download_bytes_total{source=\"parent\"}"), data.len() as u64, "c: bytes from a and b");
    assert_eq!(origin.bytes_served(path), served, "c went to the origin");
    for p in [&mut a, &mut b, &mut c] {
        p.proc.stop(Duration::from_secs(10));
    }
    sched.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
