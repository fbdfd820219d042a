//! Scheduler replicas on real processes (issue 24): two replicas, a seed and four peers
//! downloading one file; the replica in charge of the task is killed (SIGKILL) at about
//! 30 % of the seed's fetch and started again at about 60 %. The downloads register at the
//! other replica with the pieces they hold and finish; only the seed reads the origin.

use e2e::cluster::{self, metric_at, start_peer, start_scheduler, start_scheduler_at, PeerOptions, Scheduler};
use e2e::origin_server::Origin;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn registrations(s: &Scheduler) -> u64 {
    // Every registration gets parents or an order; a replica that never saw the task has none.
    metric_at(&s.http, "sched_decisions_total{kind=\"parents\"}")
        + metric_at(&s.http, "sched_decisions_total{kind=\"back_to_source\"}")
}

#[test]
fn downloads_move_to_the_other_replica_when_theirs_dies_and_the_registry_sends_one_copy() {
    let dir = cluster::test_dir("failover");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(48 * MIB, 24));
    let want = cluster::sha256_hex(&data);
    // 12 MB/s at the origin: the seed's fetch takes about 4 s.
    let path = "/files/failover.bin";
    let url = origin.put_throttled(path, data.clone(), 12_000_000);
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let mut replicas = [start_scheduler(&dir_a), start_scheduler(&dir_b)];
    let addresses = format!("{},{}", replicas[0].grpc, replicas[1].grpc);
    let mut seed = start_peer(&dir, "seed", Some(&addresses), &PeerOptions { seed: true, ..Default::default() });
    let slow = PeerOptions { download_rate: Some(24_000_000), ..Default::default() };
    let mut peers: Vec<_> = (0..4).map(|i| start_peer(&dir, &format!("p{i}"), Some(&addresses), &slow)).collect();
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < deadline, "{what} did not happen within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let fetched = || seed.metric("peer_download_bytes_total{source=\"origin\"}");
    let (in_charge, before) = std::thread::scope(|s| {
        let runs = cluster::dfget_each(s, &peers, &url, &dir);
        until("the seed reaching 30 %", &|| fetched() >= (data.len() * 3 / 10) as u64);
        let in_charge = if registrations(&replicas[0]) > 0 { 0 } else { 1 };
        let before = registrations(&replicas[1 - in_charge]);
        let (grpc, http) = (replicas[in_charge].grpc.clone(), replicas[in_charge].http.clone());
        replicas[in_charge].proc.kill();
        until("the seed reaching 60 %", &|| fetched() >= (data.len() * 6 / 10) as u64);
        let home = if in_charge == 0 { &dir_a } else { &dir_b };
        replicas[in_charge] = start_scheduler_at(home, grpc, http);
        for (i, h) in runs.into_iter().enumerate() {
            let (out, file) = h.join().unwrap();
            assert!(out.status.success(), "p{i}: dfget failed: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(cluster::sha256_hex(&std::fs::read(&file).unwrap()), want, "p{i}: bytes differ");
        }
        (in_charge, before)
    });
    let other = &replicas[1 - in_charge];
    let moved = registrations(other) - before;
    let served = origin.bytes_served(path);
    eprintln!(
        "failover: replica {in_charge} killed at 30 %, back at 60 %; {moved} registrations moved to the other; origin served {:.3} copies",
        served as f64 / data.len() as f64
    );
    assert!(moved >= 4, "the downloads did not move to the other replica ({moved} registrations there)");
    assert!(served as f64 <= 1.05 * data.len() as f64, "the origin served {served} bytes for {} bytes", data.len());
    for p in &peers {
        assert_eq!(p.metric("peer_download_bytes_total{source=\"origin\"}"), 0, "{} read the origin", p.name);
    }
    for p in peers.iter_mut() {
        assert_eq!(p.proc.stop(Duration::from_secs(10)), Some(0), "{} exits cleanly", p.name);
    }
    seed.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
