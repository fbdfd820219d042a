//! `[[workload]]`: what loads, where pods land, and one `file:line: key: what to fix` per
//! mistake.

use super::*;
use crate::scenario::parse_scenario;
use crate::scenario::test_errors::*;

const GROUPS: &str = "[cluster]\nseed_peers = 1\n\
    [[cluster.node_groups]]\nname = \"big\"\ncount = 3\npods_per_node = 2\n\
    [[cluster.node_groups]]\nname = \"small\"\ncount = 2\n";

fn workload(name: &str, reference: &str, replicas: u32, extra: &str) -> String {
    format!(
        "[[workload]]\nname = \"{name}\"\nreplicas = {replicas}\n{extra}\
         [workload.image]\nreference = \"{reference}\"\nlayer_bytes = [100, 200]\nlayer_digests = [\"sha256:base\", \"sha256:{name}\"]\n"
    )
}

fn text(cluster: &str, workloads: &[String]) -> String {
    format!("name = \"w\"\n{cluster}{}", workloads.concat())
}

fn expect(text: &str, line: usize, key: &str, fragment: &str) {
    expect_refused(text, "w.toml", line, key, fragment);
}

#[test]
fn workloads_load_and_pods_are_their_replicas() {
    let t = text(GROUPS, &[workload("web", "nginx", 3, "start_s = 2.5\n"), workload("ml", "tf", 2, "")]);
    let sc = parse_scenario(&t, "w.toml").unwrap();
    assert_eq!(sc.cluster.pods(), 5);
    assert!(sc.has_workloads() && sc.image.is_none());
    let r = Rollout::of(&sc);
    assert_eq!(r.images.len(), 2);
    assert_eq!((r.workloads[0].first_pod, r.workloads[1].first_pod), (0, 3));
    assert_eq!(r.workloads[0].start_ns, 2_500_000_000);
    assert_eq!(r.workloads[1].rolling, None);
    // The resolved scenario serializes and loads again, the same.
    let again = toml::to_string(&sc).unwrap();
    assert_eq!(parse_scenario(&again, "again.toml").unwrap(), sc);
}

/// Least allocated first, lowest node on a tie, never above pods_per_node; a workload's
/// node groups bound where it goes.
#[test]
fn placement_spreads_over_the_allowed_nodes_and_shares_them() {
    // Nodes 0-2 (big, 2 pods each), 3-4 (small, 1 each).
    let t = text(GROUPS, &[workload("web", "nginx", 4, ""), workload("ml", "tf", 3, "node_groups = [\"big\"]\n")]);
    let r = Rollout::of(&parse_scenario(&t, "w.toml").unwrap());
    assert_eq!(r.workloads[0].nodes, vec![0, 1, 2, 3]);
    // Node 4 is not allowed; big nodes 0-2 hold one web pod each: ml fills their second slot.
    assert_eq!(r.workloads[1].nodes, vec![0, 1, 2]);
    // Without groups: as many nodes as the pods need, filled one after the other.
    let t = text("[cluster]\npods_per_node = 2\n", &[workload("a", "x", 3, ""), workload("b", "y", 2, "")]);
    let r = Rollout::of(&parse_scenario(&t, "w.toml").unwrap());
    assert_eq!((r.workloads[0].nodes.clone(), r.workloads[1].nodes.clone()), (vec![0, 1, 2], vec![0, 1]));
}

#[test]
fn replicas_that_do_not_fit_their_groups_are_refused_with_the_room_left() {
    let t = text(GROUPS, &[workload("ml", "tf", 7, "node_groups = [\"big\"]\n")]);
    expect(
        &t,
        line_of(&t, "replicas = 7", 0),
        "workload[0].replicas",
        "7 pods do not fit: its nodes (big) have room for 6",
    );
}

#[test]
fn image_and_workloads_together_are_refused() {
    let t = text(GROUPS, &[workload("web", "nginx", 1, "")]) + "[image]\nreference = \"r\"\nlayer_bytes = [1]\n";
    expect(&t, line_of(&t, "[image]", 0), "image", "[image] and [[workload]] are both given");
}

#[test]
fn a_single_bracket_workload_says_it_is_an_array_of_tables() {
    let t = "name = \"w\"\n[cluster]\npods = 1\n[workload]\nname = \"a\"\n";
    expect(t, 4, "workload", "workloads are an array of tables: write [[workload]]");
}

#[test]
fn workload_mistakes_name_the_workload_and_key() {
    let two = |a: &str, b: &str| text(GROUPS, &[workload("web", "nginx", 1, a), workload("ml", "tf", 1, b)]);
    let t = text(GROUPS, &[workload("web", "nginx", 1, ""), workload("web", "tf", 1, "")]);
    expect(&t, line_of(&t, "name = \"web\"", 12), "workload[1].name", "also the name of workload[0]");
    let t = two("", "replicas = 0\n");
    // `replicas` is written twice otherwise: the test helper puts it first.
    let t = t.replacen("replicas = 1\nreplicas = 0\n", "replicas = 0\n", 1);
    expect(&t, line_of(&t, "replicas = 0", 0), "workload[1].replicas", "at least 1 pod");
    let t = two("max_surge = 2\n", "");
    expect(&t, line_of(&t, "max_surge", 0), "workload[0].max_surge", "strategy = \"rolling\" only");
    let t = two("strategy = \"rolling\"\nmax_surge = \"150%\"\n", "");
    expect(&t, line_of(&t, "max_surge", 0), "workload[0].max_surge", "a percentage from 0 to 100");
    let t = two("strategy = \"rolling\"\nmax_surge = 0\nmax_unavailable = \"0%\"\n", "");
    expect(&t, line_of(&t, "max_unavailable", 0), "workload[0].max_unavailable", "both 0");
    let t = two("strategy = \"canary\"\n", "");
    expect(
        &t,
        line_of(&t, "canary", 0),
        "workload[0].strategy",
        "unknown strategy \"canary\"; valid strategies: all-at-once or rolling",
    );
    let t = two("node_groups = [\"gpu\"]\n", "");
    expect(
        &t,
        line_of(&t, "\"gpu\"", 0),
        "workload[0].node_groups[0]",
        "\"gpu\" is not a node group; the node groups are big, small",
    );
    let t = two("start_s = -1.0\n", "");
    expect(&t, line_of(&t, "start_s", 0), "workload[0].start_s", "from 0 to 86400 s");
    // One digest, two sizes.
    let t = text(GROUPS, &[workload("web", "nginx", 1, ""), workload("ml", "tf", 1, "")])
        .replacen("layer_bytes = [100, 200]", "layer_bytes = [101, 200]", 2)
        .replacen("layer_bytes = [101, 200]", "layer_bytes = [100, 200]", 1);
    expect(
        &t,
        line_of(&t, "[101, 200]", 0),
        "workload[1].image.layer_bytes[0]",
        "digest \"sha256:base\" is 100 bytes in workload[0]",
    );
    // One reference, two images.
    let t = text(GROUPS, &[workload("web", "nginx", 1, ""), workload("ml", "nginx", 1, "")]);
    expect(
        &t,
        line_of(&t, "reference = \"nginx\"", line_of(&t, "name = \"ml\"", 0)),
        "workload[1].image.reference",
        "one reference is one image",
    );
    let t = two("", "").replacen(
        "layer_digests = [\"sha256:base\", \"sha256:web\"]",
        "layer_digests = [\"sha256:base\"]",
        1,
    );
    expect(
        &t,
        line_of(&t, "layer_digests = [\"sha256:base\"]", 0),
        "workload[0].image.layer_digests",
        "lists 1 digests for 2 layers",
    );
    // Unknown key: serde lists the workload's keys.
    let t = two("replica = 3\n", "");
    expect(&t, line_of(&t, "replica = 3", 0), "workload[0].replica", "unknown key \"replica\"");
}

#[test]
fn replicas_beyond_the_limit_are_refused_before_placement() {
    let t = text("[cluster]\n", &[workload("a", "x", 900_000, ""), workload("b", "y", 900_000, "")]);
    expect(&t, line_of(&t, "[[workload]]", 0), "workload", "add up to 1800000 pods; at most 1000000");
}

#[test]
fn rolling_gates_follow_kubernetes_rounding() {
    let t = text(
        GROUPS,
        &[workload("web", "nginx", 5, "strategy = \"rolling\"\nmax_surge = \"25%\"\nreadiness_delay_ms = 1500\n")],
    );
    let r = Rollout::of(&parse_scenario(&t, "w.toml").unwrap());
    // 25% of 5: surge rounds up to 2, unavailable (default 25%) down to 1.
    let gate = r.workloads[0].rolling.unwrap();
    assert_eq!(gate, Rolling { max_surge: 2, max_unavailable: 1, readiness_delay_ms: 1500 });
    assert_eq!((gate.allowed(5, 0), gate.allowed(5, 1), gate.allowed(5, 4)), (3, 4, 5));
    // Both 0 after rounding: the controller lets one pod be unavailable.
    let t = text(
        GROUPS,
        &[workload("web", "nginx", 3, "strategy = \"rolling\"\nmax_surge = 0\nmax_unavailable = \"25%\"\n")],
    );
    let r = Rollout::of(&parse_scenario(&t, "w.toml").unwrap());
    assert_eq!(r.workloads[0].rolling.unwrap().max_unavailable, 1);
}
