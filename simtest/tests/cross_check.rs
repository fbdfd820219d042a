//! The flow simulator's scenario `simtest/crosscheck-16.toml` replayed by the real services
//! under madsim: same peers, layer, piece size and rates. Prints the makespan (until the last
//! peer holds the layer) and the bytes the origin served. With `SIM_SUMMARY` pointing at the
//! flow simulator's `summary.json` of that scenario it also checks the two agree: the
//! same registry bytes (the layer once, give or take the manifest and config) and makespans
//! within 10 % (+6.9 % on seed 1: 3.556 s against 3.325 s). Not part of tests/madsim.sh (one run moves ~4 GB); run it with
//! `tests/madsim.sh cross-check` .
#![cfg(madsim)]

use simtest::checks::{DagWatch, Expect};
use simtest::cluster::{Cluster, Spec};
use simtest::scenario::{finish, run};
use std::time::Duration;

const SCENARIO: &str = include_str!("../crosscheck-16.toml");

fn num(v: &toml::Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = at.get(key).unwrap_or_else(|| panic!("crosscheck-16.toml: {path}: missing"));
    }
    at.as_float()
        .or(at.as_integer().map(|i| i as f64))
        .unwrap_or_else(|| panic!("crosscheck-16.toml: {path}: not a number"))
}

#[test]
fn cross_check_flow_sim() {
    run(cross_check_run);
}

async fn cross_check_run() {
    madsim::net::NetSim::current()
        .update_config(|n| n.send_latency = Duration::from_millis(1)..Duration::from_millis(2));
    let s = toml::Value::Table(toml::from_str(SCENARIO).expect("crosscheck-16.toml parses"));
    let layers = s["image"]["layer_bytes"].as_array().expect("image.layer_bytes");
    assert_eq!(layers.len(), 1, "crosscheck-16.toml: one layer expected");
    let bytes_per_s = |gbps: f64| (gbps * 1e9 / 8.0) as u64;
    let content_bytes = layers[0].as_integer().expect("layer bytes") as u64;
    let spec = Spec {
        name: "cross_check",
        schedulers: num(&s, "cluster.scheduler_replicas") as usize,
        seeds: num(&s, "cluster.seed_peers") as usize,
        peers: num(&s, "cluster.pods") as usize,
        content_bytes,
        // The piece size the flow simulator and a daemon with no [peer] override both use:
        // the default preset's sizing of this layer.
        piece_bytes: peer::core::PeerConfig::preset(sched::Policy::Default).piece_sizing.piece_bytes(content_bytes),
        peer_rate: Some(bytes_per_s(num(&s, "cluster.node_bandwidth_gbps"))),
        origin_rate: Some(bytes_per_s(num(&s, "registry.egress_gbps"))),
        start_spread: Duration::from_secs_f64(
            (num(&s, "pod.schedule_delay_ms") + num(&s, "pod.schedule_jitter_ms")) / 1e3,
        ),
        ..Spec::default()
    };
    let c = Cluster::start(spec).await;
    let mut dag = DagWatch::default();
    let everyone: Vec<usize> = (0..c.spec.peers).collect();
    let bound = Duration::from_secs(120);
    c.wait_downloads(&everyone, bound, &mut dag).await;
    let expect = Expect { peers: everyone, bound, failure_allowed: false, origin_readers: Some(c.spec.seeds + 3) };
    let summary = finish("cross_check_flow_sim", &c, &expect, &dag);
    let makespan = summary.makespan.as_secs_f64();
    println!("madsim: makespan {makespan:.3} s, origin bytes {}", summary.origin_bytes);
    for (name, attempts) in c.outcomes() {
        if let Some(a) = attempts.last() {
            println!("  {name}: started {:.3} s, ended {:?}", a.started.as_secs_f64(), a.ended);
        }
    }
    if let Some(path) = std::env::var_os("SIM_SUMMARY") {
        let text = std::fs::read_to_string(&path).expect("SIM_SUMMARY readable");
        let summary_json: serde_json::Value = serde_json::from_str(&text).expect("SIM_SUMMARY is JSON");
        let p2p = &summary_json["modes"]["p2p"];
        let sim_makespan = p2p["makespan_s"].as_f64().expect("modes.p2p.makespan_s");
        let sim_bytes = p2p["registry_bytes"].as_f64().expect("modes.p2p.registry_bytes");
        println!("flow sim: makespan {sim_makespan:.3} s, registry bytes {sim_bytes}");
        let ratio = makespan / sim_makespan;
        let layer = c.spec.content_bytes as f64;
        // The flow simulator also counts the manifest and config (~1 KB) as registry bytes.
        assert!((sim_bytes - summary.origin_bytes as f64).abs() < 0.01 * layer, "registry bytes differ");
        println!("madsim / flow sim: {:+.1} % (limit 10 %)", (ratio - 1.0) * 100.0);
        assert!(
            (0.9..=1.1).contains(&ratio),
            "makespans {makespan:.3} s (madsim) and {sim_makespan:.3} s (flow sim) differ by more than 10 %"
        );
    }
}
