//! `p2pctl` against a real scheduler with a seed and two peers that downloaded a file:
//! the tables list them, `--json` is the listing API's JSON, a task's URL comes without
//! its query, and bad input or an unreachable scheduler gets a clear error and its exit code.

use e2e::cluster::{self, binary, dfget, start_peer, start_scheduler, PeerOptions};
use e2e::origin_server::Origin;
use std::process::{Command, Output};
use std::sync::Arc;

fn p2pctl(scheduler: &str, args: &[&str]) -> Output {
    Command::new(binary("p2pctl"))
        .args(["--scheduler", scheduler])
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .expect("p2pctl runs")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "p2pctl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn p2pctl_lists_hosts_tasks_and_peers_of_a_real_rollout() {
    let dir = cluster::test_dir("p2pctl");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(12 << 20, 9));
    let url = origin.put("/files/listed.bin", data.clone());
    let signed = format!("{url}?X-Signature=secret");
    let sched = start_scheduler(&dir);
    let _seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let peers: Vec<_> =
        ["a", "b"].iter().map(|n| start_peer(&dir, n, Some(&sched.grpc), &PeerOptions::default())).collect();
    for p in &peers {
        let out = dfget(&p.local_api, &signed, &dir.join(format!("{}.out", p.name)), &[]);
        assert!(out.status.success(), "dfget: {}", String::from_utf8_lossy(&out.stderr));
    }

    let hosts: Vec<serde_json::Value> =
        serde_json::from_str(&stdout(&p2pctl(&sched.http, &["--json", "hosts"]))).unwrap();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    assert_eq!(hosts.iter().filter(|h| h["kind"] == "seed").count(), 1, "{hosts:?}");
    let table = stdout(&p2pctl(&sched.http, &["hosts"]));
    assert!(table.starts_with("HOST") && table.lines().count() == 4, "{table}");
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");

    let tasks: Vec<serde_json::Value> =
        serde_json::from_str(&stdout(&p2pctl(&sched.http, &["--json", "tasks"]))).unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = tasks[0]["id"].as_str().unwrap().to_string();
    assert_eq!(tasks[0]["content_length_bytes"], 12 << 20);
    assert!(tasks[0]["succeeded"].as_u64().unwrap() >= 2, "{tasks:?}");
    let shown = tasks[0]["url"].as_str().unwrap();
    assert!(shown.ends_with("/files/listed.bin?<redacted>") && !shown.contains("secret"), "the URL shown: {shown}");

    let listed = stdout(&p2pctl(&sched.http, &["peers", "--task", &task]));
    assert!(listed.matches("succeeded").count() >= 2 && listed.contains("100%"), "{listed}");
    let none = stdout(&p2pctl(&sched.http, &["peers", "--task", "unknown-task"]));
    assert!(none.starts_with("no peers known"), "{none}");

    let bad = p2pctl(&sched.http, &["nodes"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unexpected argument \"nodes\""));
    let closed = format!("127.0.0.1:{}", cluster::free_port());
    let down = p2pctl(&closed, &["hosts"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the scheduler"));
    let _ = std::fs::remove_dir_all(&dir);
}
