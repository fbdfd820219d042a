//! Preheat (`[[workload]] preheat_at_s`) through the engine: after a preheat, a rollout
//! reads no blob from the registry, and its pods start sooner than without one.

use crate::engine::{run_scenario, RunOptions};
use crate::result::ModeResult;
use crate::scenario::{parse_scenario, Mode, Scenario};

/// 12 nodes on 1 Gbit/s, a 0.2 Gbit/s registry (150 MB in about 6.4 s), one 150 MB image
/// rolled out at t = 10 s.
fn scenario(preheat: &str, extra: &str) -> Scenario {
    let text = format!(
        "name = \"preheat\"\nmodes = [\"oci\", \"p2p\", \"p2p-lazy\"]\n[cluster]\nseed_peers = 2\n\
         seed_peer_bandwidth_gbps = 1.0\n\
         [[cluster.node_groups]]\nname = \"n\"\ncount = 12\nupload_gbps = 1.0\ndownload_gbps = 1.0\n\
         [registry]\negress_gbps = 0.2\n\
         [[workload]]\nname = \"app\"\nreplicas = 12\nstart_s = 10.0\n{preheat}\
         [workload.image]\nreference = \"app\"\nlayer_bytes = [50_000_000, 100_000_000]\n{extra}"
    );
    parse_scenario(&text, "preheat.toml").expect("valid scenario")
}

fn mode(run: &crate::result::RunResult, mode: Mode) -> &ModeResult {
    run.modes.iter().find(|m| m.mode == mode).unwrap()
}

fn p50_s(m: &ModeResult) -> f64 {
    let mut t: Vec<f64> = m.pods.iter().map(|p| p.started_s).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

#[test]
fn after_a_preheat_the_rollout_reads_no_blob_from_the_registry() {
    let run = run_scenario(&scenario("preheat_at_s = 0.0\n", ""), &RunOptions::default()).unwrap();
    let plain = run_scenario(&scenario("", ""), &RunOptions::default()).unwrap();
    for m in [Mode::P2p, Mode::P2pLazy] {
        let (pre, without) = (mode(&run, m), mode(&plain, m));
        assert_eq!(pre.preheats.len(), 1, "{m:?}: one job");
        let job = &pre.preheats[0];
        // 150 MB at the registry's 0.2 Gbit/s is about 6.4 s: done before the rollout.
        assert!(job.done_s > 6.0 && job.done_s < 10.0, "{m:?}: preheat done at {} s", job.done_s);
        for p in &pre.pods {
            assert_eq!(p.bytes_from_registry, 0, "{m:?}: pod {} read from the registry", p.pod);
        }
        // Once the rollout began the registry sent manifests at most (buckets of 100 ms).
        let during: u64 = pre.registry_egress_bytes_per_bucket.iter().skip(100).sum();
        assert!(during < 100_000, "{m:?}: the registry sent {during} bytes during the rollout");
        assert!(pre.registry_bytes <= without.registry_bytes, "{m:?}: no second copy");
        // Without a preheat the rollout waits for the registry's 6.4 s; with it, the links.
        assert!(
            p50_s(pre) + 3.0 < p50_s(without),
            "{m:?}: preheated p50 {} s, without {} s",
            p50_s(pre),
            p50_s(without)
        );
    }
    assert!(mode(&run, Mode::Oci).preheats.is_empty(), "oci has no seed peers");
}

#[test]
fn one_blob_at_a_time_is_slower_than_four() {
    // Two layers: with one blob in flight the seed fetches them one after the other.
    let one =
        run_scenario(&scenario("preheat_at_s = 0.0\n", "[preheat]\nblobs_in_flight = 1\n"), &RunOptions::default())
            .unwrap();
    let four = run_scenario(&scenario("preheat_at_s = 0.0\n", ""), &RunOptions::default()).unwrap();
    let (one, four) = (mode(&one, Mode::P2p).preheats[0].done_s, mode(&four, Mode::P2p).preheats[0].done_s);
    // Either way the registry's link is the limit; one at a time adds each blob's start.
    assert!(one >= four, "one at a time {one} s, four {four} s");
}

#[test]
fn a_late_preheat_still_finishes_and_changes_nothing_for_oci() {
    // Ordered after the rollout began: the seed already fetches the blobs for the nodes; the
    // job finds them there.
    let run = run_scenario(&scenario("preheat_at_s = 11.0\n", ""), &RunOptions::default()).unwrap();
    let plain = run_scenario(&scenario("", ""), &RunOptions::default()).unwrap();
    let job = &mode(&run, Mode::P2p).preheats[0];
    assert!(job.done_s.is_finite(), "the job completes");
    assert_eq!(mode(&run, Mode::Oci).makespan_s, mode(&plain, Mode::Oci).makespan_s);
}
