//! The acceptance run: the real `docker-registry` serving a 1 GiB blob; a
//! scheduler, 1 seed peer and 8 peers, all downloading it at once through `dfget
//! --digest`. Every output matches; the registry served one copy (its access log); every
//! peer got most of its bytes from parents.

use e2e::cluster::{self, dfget, start_peer, start_scheduler, PeerOptions};
use e2e::registry::Registry;
use std::time::{Duration, Instant};

const GIB: usize = 1 << 30;

#[test]
fn nine_daemons_share_one_registry_copy_of_a_1_gib_blob() {
    let dir = cluster::test_dir("registry");
    let registry = Registry::start(&dir);
    let data = cluster::random_bytes(GIB, 5);
    let hex = cluster::sha256_hex(&data);
    let digest = format!("sha256:{hex}");
    let url = registry.push_blob("e2e/big", &data, &digest);
    drop(data);
    let sched = start_scheduler(&dir);
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let mut peers: Vec<_> =
        (0..8).map(|i| start_peer(&dir, &format!("peer{i}"), Some(&sched.grpc), &PeerOptions::default())).collect();
    let started = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = peers
            .iter()
            .map(|p| {
                let (api, url, out, digest) =
                    (p.local_api.clone(), url.clone(), dir.join(format!("{}.out", p.name)), digest.clone());
                s.spawn(move || {
                    let out_result = dfget(&api, &url, &out, &["--digest", &digest]);
                    (out_result, out, Instant::now())
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let last = results.iter().map(|r| r.2).max().unwrap();
    eprintln!("registry_p2p: 8 peers done in {:.1} s", (last - started).as_secs_f64());
    for (i, (out, path, _)) in results.iter().enumerate() {
        assert!(out.status.success(), "peer{i}: {}", String::from_utf8_lossy(&out.stderr));
        // dfget checked the digest while copying; check the file once more here.
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len(), GIB);
        assert_eq!(cluster::sha256_hex(&bytes), hex, "peer{i}");
        std::fs::remove_file(path).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500)); // the access log is written as responses end
    let served = registry.bytes_served(&hex);
    eprintln!("registry_p2p: registry served {served} bytes ({:.3} copies)", served as f64 / GIB as f64);
    assert!(served >= GIB as u64, "the access log shows {served} bytes: is it counting?");
    assert!(served <= GIB as u64 + (8 << 20), "the registry served {served} bytes, more than one copy");
    for p in &peers {
        let parent = p.metric("peer_download_bytes_total{source=\"parent\"}");
        let origin = p.metric("peer_download_bytes_total{source=\"origin\"}");
        assert!(
            parent >= GIB as u64 / 2 && origin == 0,
            "{}: {parent} bytes from parents, {origin} from the registry",
            p.name
        );
    }
    for p in peers.iter_mut() {
        p.proc.stop(Duration::from_secs(10));
    }
    seed.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
