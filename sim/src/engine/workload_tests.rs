//! Workloads in the engine: a layer two images share is one task and one copy per node,
//! rolling updates create pods as earlier ones become ready, and a one-workload file runs
//! as its `[image]` twin.

use super::*;
use crate::engine::{image_bytes, run_scenario, RunOptions};
use crate::report::csvs::pods_csv;
use crate::report::summary::Summary;
use crate::scenario::parse_scenario;

const BASE: u64 = 30_000_000;

/// Two images sharing their first layer (by digest, unless `digests` is false), each on
/// all four nodes.
fn shared(modes: &str, digests: bool, web_extra: &str) -> Scenario {
    let d = |name: &str| {
        if digests {
            format!("layer_digests = [\"sha256:base\", \"sha256:{name}\"]\n")
        } else {
            String::new()
        }
    };
    let text = format!(
        "name = \"shared\"\nseed = 5\nmodes = {modes}\n[cluster]\nseed_peers = 1\n\
         [[cluster.node_groups]]\nname = \"n\"\ncount = 4\npods_per_node = 2\n\
         [[workload]]\nname = \"web\"\nreplicas = 4\n{web_extra}\
         [workload.image]\nreference = \"web\"\nlayer_bytes = [{BASE}, 20_000_000]\n{}\
         [[workload]]\nname = \"ml\"\nreplicas = 4\nstart_s = 0.2\n\
         [workload.image]\nreference = \"ml\"\nlayer_bytes = [{BASE}, 50_000_000]\n{}",
        d("web"),
        d("ml")
    );
    parse_scenario(&text, "shared.toml").expect("valid scenario")
}

#[test]
fn a_shared_layer_is_one_task_and_one_download_per_node() {
    let sc = shared("[\"p2p\"]", true, "");
    let mut world = World::new(&sc, Mode::P2p, Policy::Default).unwrap();
    // config + 2 layers of each image, the base once.
    assert_eq!(world.blobs.len(), 5);
    world.run_to_end().unwrap();
    let base = world.images[0].blobs[1];
    assert_eq!(world.images[1].blobs[1], base, "both images name the same blob");
    for node in 0..4 {
        let downloads = world.peers.iter().filter(|p| p.host == node && p.blob == base).count();
        assert_eq!(downloads, 1, "node {node} downloads the base once for both images");
        assert_eq!(world.node_pulls[node].len(), 2, "a pull per image");
    }
    let result = world.finish();
    assert!(result.pods.iter().all(|p| p.started_s.is_finite()), "every pod started");
    // The registry sends every distinct blob once, and the manifests.
    let manifests: u64 = sc.images().iter().map(|i| i.manifest_bytes).sum();
    assert_eq!(image_bytes(&sc), 2 * 8_000 + BASE + 20_000_000 + 50_000_000);
    assert_eq!(result.registry_bytes, image_bytes(&sc) + manifests);
    // Without digests the layers are distinct: the base is fetched twice.
    let apart = shared("[\"p2p\"]", false, "");
    assert_eq!(image_bytes(&apart), image_bytes(&sc) + BASE);
    let run = run_scenario(&apart, &RunOptions::default()).unwrap();
    assert_eq!(run.modes[0].registry_bytes, image_bytes(&apart) + manifests);
}

#[test]
fn in_oci_mode_a_node_holding_a_shared_layer_does_not_fetch_it_again() {
    let sc = shared("[\"oci\"]", true, "");
    let run = run_scenario(&sc, &RunOptions::default()).unwrap();
    let m = &run.modes[0];
    assert!(m.pods.iter().all(|p| p.started_s.is_finite()));
    // Four nodes, each every distinct blob once; each pull GETs its manifest.
    let manifests: u64 = sc.images().iter().map(|i| i.manifest_bytes).sum();
    assert_eq!(m.registry_bytes, 4 * (image_bytes(&sc) + manifests));
    let s = Summary::of(&run);
    let (web, ml) = (&s.modes["oci"].workloads["web"], &s.modes["oci"].workloads["ml"]);
    // The web pulls asked first (t = 0): the base is on their bill.
    assert_eq!(web.bytes_from_registry, 4 * (8_000 + BASE + 20_000_000));
    assert_eq!(ml.bytes_from_registry, 4 * (8_000 + 50_000_000));
    assert!(ml.startup_p50_s > 0.2, "ml starts after its offset: {ml:?}");
}

/// max_surge 1 and max_unavailable 0: one new pod at a time, the next created only once
/// the previous one is ready (started + readiness delay).
#[test]
fn a_rolling_update_creates_pods_as_earlier_ones_become_ready() {
    let rolling = "strategy = \"rolling\"\nmax_surge = 1\nmax_unavailable = 0\nreadiness_delay_ms = 1000\n";
    for mode in ["p2p", "oci", "p2p-lazy"] {
        let sc = shared(&format!("[\"{mode}\"]"), true, rolling);
        let run = run_scenario(&sc, &RunOptions::default()).unwrap();
        let mut web: Vec<_> = run.modes[0].pods.iter().filter(|p| p.workload == 0).collect();
        web.sort_by(|a, b| a.scheduled_s.total_cmp(&b.scheduled_s));
        assert_eq!(web.len(), 4);
        for pair in web.windows(2) {
            let ready = pair[0].started_s + 1.0;
            // Created when the previous pod is ready, bound 10-30 ms later.
            let bound = pair[1].scheduled_s - ready;
            assert!((0.01..0.03 + 1e-9).contains(&bound), "{mode}: {:?} then {:?}", pair[0], pair[1]);
        }
        // The all-at-once workload is not held back.
        let ml_last = run.modes[0].pods.iter().filter(|p| p.workload == 1).map(|p| p.scheduled_s).fold(0.0, f64::max);
        assert!(ml_last < 0.2 + 0.031, "{mode}: ml bound at {ml_last}");
    }
    // Surge 2: two at once at first.
    let sc = shared("[\"p2p\"]", true, "strategy = \"rolling\"\nmax_surge = 2\nmax_unavailable = 0\n");
    let run = run_scenario(&sc, &RunOptions::default()).unwrap();
    let mut web: Vec<f64> = run.modes[0].pods.iter().filter(|p| p.workload == 0).map(|p| p.scheduled_s).collect();
    web.sort_by(f64::total_cmp);
    assert!(web[1] < 0.031 && web[2] > 0.5, "{web:?}");
}

/// One all-at-once workload on nodes of one pod each runs exactly as the `[image]` file
/// it rewrites: same pods, same figures; only pods.csv gains its workload column.
#[test]
fn one_workload_runs_as_its_image_twin() {
    let image = "[image]\nreference = \"r\"\nlayer_bytes = [40_000_000, 10_000_000]\n";
    let head = "name = \"twin\"\nseed = 3\n[cluster]\nseed_peers = 2\n";
    let old = parse_scenario(&format!("{head}pods = 6\n{image}"), "twin.toml").unwrap();
    let new = parse_scenario(
        &format!("{head}[[workload]]\nname = \"app\"\nreplicas = 6\n{}", image.replace("[image]", "[workload.image]")),
        "twin.toml",
    )
    .unwrap();
    let (a, b) =
        (run_scenario(&old, &RunOptions::default()).unwrap(), run_scenario(&new, &RunOptions::default()).unwrap());
    // Every figure but the wall time (and NaN, which is not equal to itself, printed alike).
    let figures = |r: &crate::result::RunResult| -> Vec<String> {
        r.modes.iter().map(|m| format!("{:?}", crate::result::ModeResult { wall_s: 0.0, ..m.clone() })).collect()
    };
    assert_eq!(figures(&a), figures(&b));
    let (sa, sb) = (Summary::of(&a), Summary::of(&b));
    assert_eq!(sa.modes["p2p"].registry_bytes, sb.modes["p2p"].registry_bytes);
    assert!(!sa.to_json().contains("workloads") && sb.to_json().contains("\"workloads\""));
    let (ca, cb) = (pods_csv(&a).unwrap(), pods_csv(&b).unwrap());
    assert!(ca.starts_with("mode,pod,node,scheduled_s,"), "{ca}");
    assert!(cb.starts_with("mode,pod,node,workload,scheduled_s,") && cb.contains("\noci,0,0,app,"), "{cb}");
}
