//! Node groups in the engine: each node runs at its group's rates, results are
//! deterministic and the bound holds (zones: `world.rs`'s tests).

use super::*;
use crate::report::csvs::{node_groups_csv, pods_csv};
use crate::report::summary::Summary;
use crate::scenario::parse_scenario;

/// 4 nodes at 10 Gbit/s and 4 at 0.5 Gbit/s behind a 10 Gbit/s registry, a 200 MB image.
fn mixed(modes: &str) -> Scenario {
    let text = format!(
        "name = \"mixed\"\nseed = 7\nmodes = {modes}\n[cluster]\nseed_peers = 1\n\
         [[cluster.node_groups]]\nname = \"fast\"\ncount = 4\nupload_gbps = 10.0\ndownload_gbps = 10.0\nzone = \"a\"\n\
         [[cluster.node_groups]]\nname = \"slow\"\ncount = 4\nupload_gbps = 0.5\ndownload_gbps = 0.5\nzone = \"b\"\n\
         [registry]\negress_gbps = 10.0\n[image]\nreference = \"t\"\nlayer_bytes = [100_000_000, 100_000_000]\n"
    );
    parse_scenario(&text, "mixed.toml").expect("valid scenario")
}

#[test]
fn in_oci_mode_the_slow_group_starts_after_the_fast_group() {
    let sc = mixed("[\"oci\"]");
    let run = run_scenario(&sc, &RunOptions::default()).unwrap();
    let summary = Summary::of(&run);
    let groups = &summary.modes["oci"].node_groups;
    let (fast, slow) = (&groups["fast"], &groups["slow"]);
    assert_eq!((fast.pods, slow.pods), (4, 4));
    // Max-min fair shares of the registry: slow nodes at their 0.5 Gbit/s link, fast ones
    // at (10 - 4 x 0.5) / 4 = 2 Gbit/s: the slow image takes about four times as long.
    assert!(slow.startup_p50_s > 2.0 * fast.startup_max_s, "fast {fast:?}, slow {slow:?}");
    assert_eq!(fast.bytes_from_registry, slow.bytes_from_registry, "every oci node pulls the whole image");
    assert_eq!(fast.bytes_from_registry, 4 * image_bytes(&sc));
    // Each pod's node is in its group's range.
    assert_eq!(run.node_groups.len(), 2);
    assert!(run.modes[0].pods.iter().filter(|p| p.node >= 4).all(|p| p.started_s > fast.startup_max_s));
}

#[test]
fn the_same_file_and_seed_give_the_same_bytes() {
    let sc = mixed("[\"oci\", \"p2p\"]");
    let a = run_scenario(&sc, &RunOptions::default()).unwrap();
    let b = run_scenario(&sc, &RunOptions::default()).unwrap();
    assert_eq!(Summary::of(&a).to_json(), Summary::of(&b).to_json());
    assert_eq!(pods_csv(&a).unwrap(), pods_csv(&b).unwrap());
    let csv = node_groups_csv(&a).unwrap().expect("written with groups");
    assert_eq!(Some(csv.clone()), node_groups_csv(&b).unwrap());
    assert!(csv.starts_with("node,node_group,zone\n0,fast,a\n") && csv.ends_with("7,slow,b\n"), "{csv}");
    assert!(Summary::of(&a).to_json().contains("\"node_groups\""));
}

#[test]
fn p2p_with_groups_finishes_no_sooner_than_the_heterogeneous_bound() {
    let sc = mixed("[\"p2p\"]");
    let run = run_scenario(&sc, &RunOptions::default()).unwrap();
    let bound = lower_bound_s(&sc);
    // The slowest node's download, 200 MB at 0.5 Gbit/s of payload, sets it here.
    let f_bits = image_bytes(&sc) as f64 * 8.0;
    assert!((bound - f_bits / sc.payload_bps(0.5)).abs() < 1e-9, "{bound}");
    assert!(run.modes[0].makespan_s >= bound, "makespan {} under the bound {bound}", run.modes[0].makespan_s);
    assert!(run.request_floor_s >= bound * 0.99, "{}", run.request_floor_s);
}

/// A cluster written without groups: no `node_groups` anywhere in the reports.
#[test]
fn a_cluster_without_groups_reports_none() {
    let plain = parse_scenario(
        "name = \"p\"\nmodes = [\"oci\"]\n[cluster]\npods = 3\n[image]\nreference = \"t\"\nlayer_bytes = [1000]\n",
        "p.toml",
    )
    .unwrap();
    let run = run_scenario(&plain, &RunOptions::default()).unwrap();
    assert!(run.node_groups.is_empty());
    assert_eq!(node_groups_csv(&run).unwrap(), None);
    assert!(!Summary::of(&run).to_json().contains("node_groups"));
}
