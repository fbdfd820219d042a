//! `[[churn.event]]`: what loads, which nodes go and when, and one `file:line: key: what to
//! fix` per mistake.

use super::*;
use crate::scenario::parse_scenario;
use crate::scenario::test_errors::*;

/// 10 nodes, 2 seed peers; `events` follow.
fn text(events: &str) -> String {
    format!(
        "name = \"c\"\nmodes = [\"p2p\"]\n[cluster]\npods = 10\nseed_peers = 2\n\
         [image]\nreference = \"r\"\nlayer_bytes = [1000]\n{events}"
    )
}

const GROUPS: &str = "name = \"c\"\nmodes = [\"p2p\"]\n[cluster]\nseed_peers = 1\n\
    [[cluster.node_groups]]\nname = \"web\"\ncount = 6\n\
    [[cluster.node_groups]]\nname = \"gpu\"\ncount = 4\n\
    [image]\nreference = \"r\"\nlayer_bytes = [1000]\n";

fn expect(text: &str, needle: &str, key: &str, fragment: &str) {
    expect_refused(text, "c.toml", last_line_of(text, needle), key, fragment);
}

fn event(body: &str) -> String {
    format!("[[churn.event]]\n{body}")
}

#[test]
fn events_load_and_serialize_back() {
    let t = text(&format!(
        "{}{}",
        event("name = \"crash\"\naction = \"fail\"\nat_s = 1.5\nfraction = 0.2\n"),
        event("action = \"leave\"\nper_minute = 6.0\nfrom_s = 10.0\nuntil_s = 40.0\n")
    ));
    let sc = parse_scenario(&t, "c.toml").unwrap();
    let e = &sc.churn.event;
    assert_eq!(e.len(), 2);
    assert_eq!((e[0].action, e[0].at_s, e[0].fraction), (ChurnAction::Fail, Some(1.5), Some(0.2)));
    assert_eq!((e[1].action, e[1].per_minute, e[1].until_s), (ChurnAction::Leave, Some(6.0), Some(40.0)));
    let again = toml::to_string(&sc).unwrap();
    assert_eq!(parse_scenario(&again, "again.toml").unwrap(), sc);
    // A scenario without churn serializes without it (existing files are unchanged).
    let plain = parse_scenario(&text(""), "c.toml").unwrap();
    assert!(!toml::to_string(&plain).unwrap().contains("churn"));
}

/// 20 % of 10 nodes at 1.5 s, then one node every 10 s from 10 s to 40 s (10, 20, 30): seven
/// distinct nodes in time order, drawn from the seed alone.
#[test]
fn the_plan_takes_distinct_nodes_in_time_order_from_the_seed() {
    let t = text(&format!(
        "{}{}",
        event("action = \"leave\"\nper_minute = 6.0\nfrom_s = 10.0\nuntil_s = 40.0\n"),
        event("action = \"fail\"\nat_s = 1.5\ncount = 4\n")
    ));
    let sc = parse_scenario(&t, "c.toml").unwrap();
    let plan = sc.churn.plan(&sc, sc.seed, 2);
    let times: Vec<f64> = plan.iter().map(|g| g.at_s).collect();
    assert_eq!(times, [1.5, 1.5, 1.5, 1.5, 10.0, 20.0, 30.0]);
    assert!(plan[..4].iter().all(|g| g.action == ChurnAction::Fail && !g.seed));
    let mut nodes: Vec<u32> = plan.iter().map(|g| g.index).collect();
    assert!(nodes.iter().all(|n| *n < 10));
    nodes.sort_unstable();
    nodes.dedup();
    assert_eq!(nodes.len(), 7, "each node goes once: {plan:?}");
    assert_eq!(plan, sc.churn.plan(&sc, sc.seed, 2), "the same seed, the same nodes");
    assert_ne!(plan, sc.churn.plan(&sc, sc.seed + 1, 2), "another seed, other nodes");
}

#[test]
fn a_group_event_takes_that_groups_nodes_and_seed_peers_only_when_asked() {
    let t = format!(
        "{GROUPS}{}{}",
        event("action = \"fail\"\nat_s = 1.0\nfraction = 0.5\nnode_group = \"gpu\"\n"),
        event("action = \"leave\"\nat_s = 0.5\ncount = 1\nseed_peers = true\n")
    );
    let sc = parse_scenario(&t, "c.toml").unwrap();
    let plan = sc.churn.plan(&sc, sc.seed, 1);
    assert_eq!(plan.len(), 3);
    assert_eq!((plan[0].index, plan[0].seed), (0, true));
    assert!(plan[1..].iter().all(|g| (6..10).contains(&g.index) && !g.seed), "gpu nodes are 6-9: {plan:?}");
    // oci has no seed peers: the event takes nothing there, and the same nodes go.
    assert_eq!(sc.churn.plan(&sc, sc.seed, 0), plan[1..]);
}

#[test]
fn misshapen_tables_say_how_to_write_them() {
    let t = text("[[churn]]\naction = \"fail\"\n");
    expect(&t, "[[churn]]", "churn", "write [[churn.event]] (two brackets) once per event");
    let t = text("[churn.event]\naction = \"fail\"\nat_s = 1.0\ncount = 1\n");
    expect(&t, "[churn.event]", "churn.event", "events are an array of tables");
    let t = text(&event("action = \"explode\"\nat_s = 1.0\ncount = 1\n"));
    expect(&t, "explode", "churn.event[0].action", "unknown action \"explode\"; valid actions: fail or leave");
    let t = text(&event("action = \"fail\"\nat = 1.0\ncount = 1\n"));
    expect(&t, "at = 1.0", "churn.event[0].at", "unknown key \"at\"");
}

#[test]
fn each_mistake_names_its_key() {
    let one = |body: &str| text(&event(body));
    expect(&one("action = \"fail\"\n"), "[[churn.event]]", "churn.event[0]", "says neither when nor how often");
    expect(
        &one("action = \"fail\"\nat_s = 1.0\ncount = 1\nper_minute = 2.0\n"),
        "per_minute",
        "churn.event[0].per_minute",
        "at_s and per_minute are both given",
    );
    expect(&one("action = \"fail\"\nat_s = 1.0\n"), "at_s", "churn.event[0].at_s", "add count (nodes) or fraction");
    expect(
        &one("action = \"fail\"\nat_s = 1.0\ncount = 1\nfraction = 0.5\n"),
        "fraction",
        "churn.event[0].fraction",
        "count and fraction are both given",
    );
    expect(&one("action = \"fail\"\nat_s = 1.0\ncount = 0\n"), "count", "churn.event[0].count", "at least 1 node");
    expect(
        &one("action = \"fail\"\nat_s = 1.0\ncount = 11\n"),
        "count",
        "churn.event[0].count",
        "is 11 nodes but the event takes from 10; give at most 10",
    );
    expect(&one("action = \"fail\"\nat_s = 1.0\nfraction = 1.5\n"), "fraction", "churn.event[0].fraction", "(0, 1]");
    expect(
        &one("action = \"fail\"\nat_s = 1.0\nfraction = 0.01\n"),
        "fraction",
        "churn.event[0].fraction",
        "0.01 of 10 nodes rounds to no node; give at least 0.0500",
    );
    expect(&one("action = \"fail\"\nat_s = -1.0\ncount = 1\n"), "at_s", "churn.event[0].at_s", "from 0 to 86400 s");
    expect(
        &one("action = \"fail\"\nat_s = 8000.0\ncount = 1\n"),
        "at_s",
        "churn.event[0].at_s",
        "is 8000 s, after sim.time_limit_s = 7200 s, when a run is stopped; give at most 7200",
    );
    expect(
        &one("action = \"fail\"\nat_s = 1.0\ncount = 1\nuntil_s = 5.0\n"),
        "until_s",
        "churn.event[0].until_s",
        "belongs to a rate (per_minute)",
    );
    expect(
        &one("action = \"fail\"\nper_minute = 1.0\ncount = 1\nuntil_s = 5.0\n"),
        "count",
        "churn.event[0].count",
        "belongs to a one-time event (at_s)",
    );
    expect(&one("action = \"fail\"\nper_minute = 1.0\n"), "per_minute", "churn.event[0].per_minute", "needs until_s");
    expect(
        &one("action = \"fail\"\nper_minute = 0.0\nuntil_s = 5.0\n"),
        "per_minute",
        "churn.event[0].per_minute",
        "above 0",
    );
    expect(
        &one("action = \"fail\"\nper_minute = 1.0\nfrom_s = 9.0\nuntil_s = 5.0\n"),
        "until_s",
        "churn.event[0].until_s",
        "(5) must be after from_s (9)",
    );
    expect(
        &one("action = \"fail\"\nper_minute = 60.0\nuntil_s = 30.0\n"),
        "per_minute",
        "churn.event[0].per_minute",
        "is 30 nodes but the event takes from 10",
    );
    expect(
        &one("action = \"fail\"\nat_s = 1.0\ncount = 1\nnode_group = \"gpu\"\n"),
        "node_group",
        "churn.event[0].node_group",
        "the cluster declares no [[cluster.node_groups]]",
    );
    expect(
        &format!("{GROUPS}{}", event("action = \"fail\"\nat_s = 1.0\ncount = 1\nnode_group = \"tpu\"\n")),
        "node_group",
        "churn.event[0].node_group",
        "names \"tpu\", which is no node group; the groups: web, gpu",
    );
    expect(
        &one("action = \"fail\"\nat_s = 1.0\ncount = 1\nseed_peers = true\nnode_group = \"x\"\n"),
        "seed_peers",
        "churn.event[0].seed_peers",
        "seed_peers = true and node_group are both given",
    );
    expect(
        &one("action = \"fail\"\nat_s = 1.0\ncount = 3\nseed_peers = true\n"),
        "count",
        "churn.event[0].count",
        "is 3 nodes but the event takes from 2",
    );
    let no_seeds = "name = \"c\"\nmodes = [\"oci\"]\n[cluster]\npods = 10\nseed_peers = 0\n\
        [image]\nreference = \"r\"\nlayer_bytes = [1000]\n"
        .to_string()
        + &event("action = \"fail\"\nat_s = 1.0\ncount = 1\nseed_peers = true\n");
    expect(&no_seeds, "seed_peers = true", "churn.event[0].seed_peers", "the cluster has no seed peers");
    let two = text(&format!(
        "{}{}",
        event("name = \"a\"\naction = \"fail\"\nat_s = 1.0\ncount = 1\n"),
        event("name = \"a\"\naction = \"fail\"\nat_s = 2.0\ncount = 1\n")
    ));
    expect(&two, "name = \"a\"", "churn.event[1].name", "\"a\" is also the name of churn.event[0]");
    expect(&one("name = \"A b\"\naction = \"fail\"\nat_s = 1.0\ncount = 1\n"), "name", "churn.event[0].name", "a-z");
}

/// A sweep reaches an event's numbers by index or by name.
#[test]
fn event_keys_are_sweepable_by_index_and_name() {
    let t = text(&event("name = \"crash\"\naction = \"fail\"\nat_s = 1.5\nfraction = 0.2\n"));
    let sc = parse_scenario(&t, "c.toml").unwrap();
    let c = crate::sweep::keys::KeyCatalog::of(&sc).unwrap();
    use crate::sweep::vary::NumKind;
    assert_eq!(c.numeric("churn.event[0].at_s"), Ok(NumKind::Float));
    assert_eq!(c.numeric("churn.event.crash.fraction"), Ok(NumKind::Float));
    let file = crate::scenario::ScenarioFile::from_text(std::path::Path::new("dir/c.toml"), &t);
    let set = |k: &str, v: crate::scenario::Num| (k.to_string(), toml::Value::from(v));
    let varied = file
        .load_with(&[
            set("churn.event.crash.fraction", crate::scenario::Num::Float(0.5)),
            set("churn.event[0].at_s", crate::scenario::Num::Float(3.0)),
        ])
        .unwrap();
    assert_eq!((varied.churn.event[0].fraction, varied.churn.event[0].at_s), (Some(0.5), Some(3.0)));
    let e = file.load_with(&[set("churn.event.crash.fraction", crate::scenario::Num::Float(2.0))]).unwrap_err();
    assert!(e.to_string().starts_with("dir/c.toml:13: churn.event[0].fraction: must be in (0, 1]"), "{e}");
}
