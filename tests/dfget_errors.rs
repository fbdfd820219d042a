//! Bad input through `dfget` and a real daemon: each gives a clear message, its own exit
//! code, and leaves no output file (nor a temporary one) behind.

use e2e::cluster::{self, dfget, start_peer, start_scheduler, PeerOptions};
use e2e::origin_server::Origin;
use std::path::Path;
use std::sync::Arc;

fn no_output_left(dir: &Path, name: &str) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.contains(name))
        .collect();
    assert!(left.is_empty(), "files left for {name}: {left:?}");
}

/// (name, daemon's local API, URL, extra arguments, exit code, what stderr says).
type Case<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>, i32, &'a str);

#[test]
fn bad_requests_fail_cleanly_with_their_exit_codes() {
    let dir = cluster::test_dir("errors");
    let outputs = dir.join("outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(24 << 20, 4));
    let url = origin.put("/files/ok.bin", data.clone());
    let sched = start_scheduler(&dir);
    let _seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let peer = start_peer(&dir, "peer", Some(&sched.grpc), &PeerOptions::default());
    let small =
        start_peer(&dir, "small", Some(&sched.grpc), &PeerOptions { quota_bytes: 8 << 20, ..Default::default() });
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let missing = format!("http://{}/files/missing.bin", origin.addr);
    let closed = format!("http://127.0.0.1:{}/x.bin", cluster::free_port());
    let cases: Vec<Case> = vec![
        ("scheme", peer.local_api.as_str(), "ftp://example.com/x.bin", vec![], 2, "unsupported scheme"),
        ("notaurl", peer.local_api.as_str(), "http//nope", vec![], 2, "invalid URL"),
        ("baddigest", peer.local_api.as_str(), url.as_str(), vec!["--digest", "sha256:xyz"], 2, "--digest"),
        ("notfound", peer.local_api.as_str(), missing.as_str(), vec![], 3, "not found"),
        ("unreachable", peer.local_api.as_str(), closed.as_str(), vec![], 7, "unreachable"),
        ("mismatch", peer.local_api.as_str(), url.as_str(), vec!["--digest", wrong.as_str()], 5, "sha256"),
        ("quota", small.local_api.as_str(), url.as_str(), vec![], 6, "quota"),
        ("nodaemon", "127.0.0.1:1", url.as_str(), vec![], 4, "cannot reach the peer daemon"),
        // Internal addresses `[origin] allowed_networks` does not name (the suites allow
        // 127.0.0.0/8 only): a cloud metadata service, a private network.
        (
            "metadata",
            peer.local_api.as_str(),
            "http://169.254.169.254/latest/meta-data/",
            vec![],
            2,
            "link-local address",
        ),
        ("internal", peer.local_api.as_str(), "http://10.0.0.1/x.bin", vec![], 2, "private address"),
    ];
    for (name, api, url, extra, code, says) in cases {
        let out_path = outputs.join(format!("{name}.out"));
        let out = dfget(api, url, &out_path, &extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{name}: exit code; stderr: {stderr}");
        assert!(stderr.to_lowercase().contains(&says.to_lowercase()), "{name}: message {stderr:?} lacks {says:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: one line expected: {stderr:?}");
        no_output_left(&outputs, name);
    }
    // The daemons are still up and serve a good request after all that.
    let ok = outputs.join("ok.out");
    let out = dfget(&peer.local_api, &url, &ok, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cluster::sha256_hex(&std::fs::read(&ok).unwrap()), cluster::sha256_hex(&data));
    let _ = std::fs::remove_dir_all(&dir);
}
