//! `[[cluster.node_groups]]`: what loads, and one `file:line: key: what to fix` per mistake.

use crate::scenario::test_errors::*;
use crate::scenario::{parse_scenario, ScenarioError};

const IMAGE: &str = "[image]\nreference = \"r\"\nlayer_bytes = [10, 20]\n";

/// A scenario whose `[cluster]` holds `cluster` and is followed by `groups`.
fn text(cluster: &str, groups: &str) -> String {
    format!("name = \"g\"\n[cluster]\n{cluster}{groups}{IMAGE}")
}

const TWO: &str = "[[cluster.node_groups]]\nname = \"gpu\"\ncount = 4\nupload_gbps = 25.0\ndownload_gbps = 10.0\n\
    disk_write_mbps = 3000.0\nzone = \"eu-west-1a\"\npods_per_node = 2\n\
    [[cluster.node_groups]]\nname = \"cpu-old\"\ncount = 3\nupload_gbps = 1.0\ndownload_gbps = 1.0\n";

fn err(text: &str) -> ScenarioError {
    parse_scenario(text, "g.toml").expect_err("refused")
}

#[test]
fn groups_load_with_their_own_figures_and_the_pods_they_add_up_to() {
    let sc = parse_scenario(&text("", TWO), "g.toml").unwrap();
    assert_eq!(sc.cluster.pods(), 4 * 2 + 3);
    assert_eq!(sc.cluster.node_count(), 7);
    let l = sc.cluster.layout();
    assert_eq!((l[0].name.as_str(), l[0].nodes, l[0].pods, l[0].first_node), ("gpu", 4, 8, 0));
    assert_eq!((l[1].name.as_str(), l[1].first_node, l[1].first_pod, l[1].pods), ("cpu-old", 4, 8, 3));
    assert_eq!((l[0].upload_gbps, l[0].download_gbps, l[0].disk_write_mbps), (25.0, 10.0, 3000.0));
    assert_eq!((l[1].disk_write_mbps, l[1].pods_per_node, l[1].zone.as_str()), (2000.0, 1, ""));
    assert_eq!((l[0].node_of(0), l[0].node_of(7), l[1].node_of(10)), (0, 3, 6));
    // pods may be written when it agrees; the single-node keys are left unset.
    let agreed = parse_scenario(&text("pods = 11\n", TWO), "g.toml").unwrap();
    assert_eq!(agreed, sc);
    assert_eq!(sc.cluster.node_bandwidth_gbps, None);
    // The resolved scenario serializes without the single-node keys and loads again.
    let round = toml::to_string(&toml::Table::try_from(&sc).unwrap()).unwrap();
    assert!(!round.contains("node_bandwidth_gbps"), "{round}");
    assert_eq!(parse_scenario(&round, "round.toml").unwrap(), sc);
}

#[test]
fn a_cluster_without_groups_is_one_group_of_the_single_node_keys() {
    let sc = parse_scenario(&text("pods = 5\npods_per_node = 2\nnode_bandwidth_gbps = 3.0\n", ""), "g.toml").unwrap();
    let l = sc.cluster.layout();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].nodes, l[0].pods, l[0].upload_gbps, l[0].download_gbps), (3, 5, 3.0, 3.0));
    assert_eq!(l[0].node_of(4), 2);
    assert!(!sc.cluster.has_groups());
    // Defaults are filled in, so the scenario serializes as it did before groups.
    assert_eq!((sc.cluster.pods_per_node, sc.cluster.node_disk_write_mbps), (Some(2), Some(2000.0)));
}

#[test]
fn both_forms_are_refused_naming_both_keys() {
    for key in ["node_bandwidth_gbps = 6.0", "pods_per_node = 1", "node_disk_write_mbps = 100.0"] {
        let t = text(&format!("{key}\n"), TWO);
        let e = err(&t);
        let name = key.split(' ').next().unwrap();
        let shown = e.to_string();
        let want = format!(
            "g.toml:{}: cluster.{name}: cluster.{name} and cluster.node_groups are both given",
            line_of(&t, key, 0)
        );
        assert!(shown.starts_with(&want), "{shown}");
        assert!(shown.contains(&format!("remove cluster.{name}")), "{shown}");
    }
    let t = text("pods = 12\n", TWO);
    let shown = err(&t).to_string();
    assert!(shown.starts_with("g.toml:3: cluster.pods: is 12 but cluster.node_groups hold 11 pods"), "{shown}");
}

#[test]
fn a_table_for_the_array_and_an_array_for_the_table_say_so() {
    let t = text("", "[cluster.node_groups]\nname = \"a\"\ncount = 2\n");
    let shown = err(&t).to_string();
    assert!(shown.starts_with("g.toml:3: cluster.node_groups: written as a table; node groups are an array of tables: write [[cluster.node_groups]]"), "{shown}");
    let t = text("", "node_groups = { name = \"a\", count = 2 }\n");
    assert!(err(&t).to_string().starts_with("g.toml:3: cluster.node_groups: written as a table"), "{t}");
    let t = "name = \"g\"\n[[cluster]]\npods = 2\n".to_string() + IMAGE;
    let shown = err(&t).to_string();
    assert!(
        shown.starts_with("g.toml:2: cluster: written as [[cluster]], an array of tables")
            && shown.contains("[[cluster.node_groups]]"),
        "{shown}"
    );
}

#[test]
fn mistakes_in_a_group_name_the_group_by_index_and_its_line() {
    // Unknown key: serde names it, with the valid ones.
    let t = text("", &TWO.replace("zone = ", "bandwidth_gbps = 3.0\nzone = "));
    let shown = err(&t).to_string();
    let line = line_of(&t, "bandwidth_gbps = 3.0", 0);
    assert!(
        shown.starts_with(&format!(
            "g.toml:{line}: cluster.node_groups[0].bandwidth_gbps: unknown key \"bandwidth_gbps\""
        )),
        "{shown}"
    );
    assert!(shown.contains("upload_gbps") && shown.contains("download_gbps"), "{shown}");
    // Zero count, in the second group.
    let t = text("", &TWO.replace("count = 3", "count = 0"));
    let shown = err(&t).to_string();
    let line = line_of(&t, "count = 0", 0);
    assert!(
        shown.starts_with(&format!("g.toml:{line}: cluster.node_groups[1].count: must be at least 1 node (got 0)")),
        "{shown}"
    );
    // Duplicate names.
    let t = text("", &TWO.replace("\"cpu-old\"", "\"gpu\""));
    let shown = err(&t).to_string();
    let line = line_of(&t, "name = \"gpu\"", 4);
    assert!(
        shown.starts_with(&format!(
            "g.toml:{line}: cluster.node_groups[1].name: \"gpu\" is also the name of cluster.node_groups[0]"
        )),
        "{shown}"
    );
    // A name outside [a-z0-9-]; a rate of 0; a missing count.
    let shown = err(&text("", &TWO.replace("\"cpu-old\"", "\"CPU old\""))).to_string();
    assert!(shown.contains("cluster.node_groups[1].name: must be a non-empty name of a-z, 0-9 and '-'"), "{shown}");
    let shown = err(&text("", &TWO.replace("upload_gbps = 1.0", "upload_gbps = 0.0"))).to_string();
    assert!(shown.contains("cluster.node_groups[1].upload_gbps: must be a finite number greater than 0"), "{shown}");
    let shown = err(&text("", &TWO.replace("count = 4\n", ""))).to_string();
    assert!(shown.starts_with("g.toml:3: cluster.node_groups[0].count: required key is missing"), "{shown}");
}

#[test]
fn no_pods_and_no_groups_asks_for_either() {
    let shown = err(&text("seed_peers = 1\n", "")).to_string();
    assert!(shown.starts_with("g.toml:2: cluster.pods: required key is missing; add `pods = ...`, or describe the nodes with [[cluster.node_groups]]"), "{shown}");
}

#[test]
fn the_limit_applies_to_the_groups_total_before_anything_is_allocated() {
    let big = "[[cluster.node_groups]]\nname = \"a\"\ncount = 4000000000\npods_per_node = 4000000000\n";
    let shown = err(&text("", big)).to_string();
    assert!(shown.contains("cluster.node_groups: add up to 16000000000000000000 pods"), "{shown}");
    assert!(shown.contains("at most 1000000"), "{shown}");
}
