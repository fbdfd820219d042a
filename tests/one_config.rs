//! One configuration: a scenario's `[scheduler]` and `[peer]` tables take every key of
//! `scheduler.toml`'s `[scheduler]` and `peerd.toml`'s `[peer]`, by the same names, with the
//! same defaults, and come out as the same core configuration the services run.

use peer::core::PeerConfig;
use sched::core::SchedulerConfig;
use sched::Policy;

const SCENARIO_HEAD: &str = "name = \"one-config\"\nmodes = [\"p2p\"]\n[cluster]\npods = 4\n[image]\nreference = \"r\"\nlayer_bytes = [1000000]\n";

/// The cores' configurations a scenario with these tables runs.
fn scenario(policy: Policy, scheduler: &str, peer: &str) -> (SchedulerConfig, PeerConfig) {
    let text = format!("policy = \"{}\"\n{SCENARIO_HEAD}[scheduler]\n{scheduler}\n[peer]\n{peer}\n", policy.name());
    let sc = sim::scenario::parse_scenario(&text, "one-config.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    sim::scenario::core_configs(&sc, policy).unwrap()
}

/// What the daemon runs for this `[peer]` table.
fn daemon(policy: Policy, peer: &str) -> PeerConfig {
    let text = format!("[peer]\npolicy = \"{}\"\n{peer}\n", policy.name());
    peer::daemon::config::parse(&text, "peerd.toml").unwrap_or_else(|e| panic!("{e}\n{text}")).core
}

/// The policies the daemon runs: kraken's two-way connections are a simulator baseline
/// (`peer.policy` refused, tested below).
const DAEMON_POLICIES: [Policy; 2] = [Policy::Default, Policy::Dragonfly];

fn service(policy: Policy, scheduler: &str) -> SchedulerConfig {
    let text = format!("[scheduler]\npolicy = \"{}\"\n{scheduler}\n", policy.name());
    sched::service::config::parse(&text, "scheduler.toml").unwrap_or_else(|e| panic!("{e}\n{text}")).scheduler
}

/// A valid value other than `v` for a key, written as TOML.
fn other_value(key: &str, v: &toml::Value) -> String {
    match (key, v) {
        ("piece_sizing", _) => "{ rule = \"fixed\", piece_bytes = 2097152 }".into(),
        ("piece_selection", toml::Value::String(s)) if s == "rarest_first" => "\"random_from_best_parent\"".into(),
        ("piece_selection", _) => "\"rarest_first\"".into(),
        ("conn_lifecycle", _) => {
            "{ preemption_interval_ns = 20000000000, conn_tti_ns = 10000000000, conn_ttl_ns = 60000000000, blacklist_ns = 5000000000 }".into()
        }
        (_, toml::Value::Boolean(b)) => (!b).to_string(),
        (_, toml::Value::Float(f)) => (f + 0.5).to_string(),
        // Counts and durations: one more, or one less at a type's maximum; at least 2 s for
        // durations the cores bound below (retry interval, idle timeout, ...).
        (_, toml::Value::Integer(i)) if key.ends_with("_ns") => (i + 2_000_000_000).to_string(),
        (_, toml::Value::Integer(i)) if *i >= i64::from(u32::MAX) => (i - 1).to_string(),
        (_, toml::Value::Integer(i)) => (i + 1).to_string(),
        (k, other) => panic!("no test value for {k} = {other}"),
    }
}

#[test]
fn unset_keys_have_the_same_defaults_everywhere() {
    for policy in Policy::ALL {
        let (s, p) = scenario(policy, "", "");
        assert_eq!(s, SchedulerConfig::preset(policy), "{policy:?}");
        assert_eq!(p, PeerConfig::preset(policy), "{policy:?}");
        if DAEMON_POLICIES.contains(&policy) {
            assert_eq!(p, daemon(policy, ""), "{policy:?}");
        }
        assert_eq!(s, service(policy, ""), "{policy:?}");
    }
}

#[test]
fn every_peer_key_of_peerd_toml_is_a_scenario_key() {
    for policy in DAEMON_POLICIES {
        let mut preset = toml::Table::try_from(PeerConfig::preset(policy)).unwrap();
        preset.remove("policy");
        for key in ["conn_lifecycle", "reannounce_interval_ns", "egress_limit_bytes_per_s", "ingress_limit_bytes_per_s"]
        {
            preset.entry(key).or_insert(toml::Value::Integer(1_000_000_000));
        }
        for (key, value) in preset {
            if matches!(key.as_str(), "symmetric_connections" | "conn_lifecycle" | "reannounce_round_robin") {
                // Kraken's connection rules: the daemon refuses them (below).
                continue;
            }
            let line = format!("{key} = {}", other_value(&key, &value));
            let from_daemon = daemon(policy, &line);
            let (_, from_scenario) = scenario(policy, "", &line);
            assert_eq!(from_scenario, from_daemon, "{policy:?}: {line}");
            assert_ne!(from_daemon, PeerConfig::preset(policy), "{policy:?}: {line} changed nothing");
        }
    }
}

#[test]
fn every_scheduler_key_of_scheduler_toml_is_a_scenario_key() {
    for policy in Policy::ALL {
        let mut preset = toml::Table::try_from(SchedulerConfig::preset(policy)).unwrap();
        preset.remove("policy");
        for (key, value) in preset {
            let mut line = format!("{key} = {}", other_value(&key, &value));
            // Keys the core checks against each other move together.
            if key == "stripes" && policy == Policy::Default {
                line.push_str("\nstripe_fanout = 10");
            }
            if key == "poll_initial_ns" {
                line.push_str("\npoll_max_ns = 100000000000");
            }
            let from_service = service(policy, &line);
            let (from_scenario, _) = scenario(policy, &line, "");
            assert_eq!(from_scenario, from_service, "{policy:?}: {line}");
            assert_ne!(from_service, SchedulerConfig::preset(policy), "{policy:?}: {line} changed nothing");
        }
    }
}

#[test]
fn the_daemon_refuses_what_only_the_simulator_runs_and_says_so() {
    for text in [
        "[peer]\npolicy = \"kraken\"\n",
        "[peer]\nsymmetric_connections = true\n",
        "[peer]\nreannounce_round_robin = true\n",
    ] {
        let e = peer::daemon::config::parse(text, "peerd.toml").unwrap_err().to_string();
        assert!(e.starts_with("peerd.toml:2: peer."), "{e}");
    }
    let e = peer::daemon::config::parse(
        "[peer]\nconn_lifecycle = { preemption_interval_ns = 1000000000, conn_tti_ns = 1, conn_ttl_ns = 1, blacklist_ns = 1 }\n",
        "peerd.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("peerd.toml:2: peer.conn_lifecycle:"), "{e}");
}

#[test]
fn the_example_files_run_in_a_scenario_as_they_run_in_production() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let peerd = root.join("peer/peerd.example.toml");
    let sched_file = root.join("sched/scheduler.example.toml");
    let daemon = peer::daemon::config::load(&peerd).unwrap().core;
    let service = sched::service::config::load(&sched_file).unwrap().scheduler;
    // Top-level keys precede the tables.
    let text = format!("scheduler_toml = {:?}\npeerd_toml = {:?}\n{SCENARIO_HEAD}", sched_file, peerd);
    let sc = sim::scenario::parse_scenario(&text, "s.toml").unwrap();
    let (s, p) = sim::scenario::core_configs(&sc, Policy::Default).unwrap();
    assert_eq!((s, p), (service, daemon));
}

#[test]
fn a_scenario_table_naming_another_policy_is_refused_with_its_line() {
    let text = format!("policy = \"default\"\n{SCENARIO_HEAD}[peer]\npolicy = \"kraken\"\n");
    let e = sim::scenario::parse_scenario(&text, "s.toml").unwrap_err().to_string();
    assert!(e.starts_with("s.toml:10: peer.policy: is \"kraken\" but the scenario's policy is \"default\""), "{e}");
    let text = format!("{SCENARIO_HEAD}[peer]\nmax_parents = \"many\"\n");
    let e = sim::scenario::parse_scenario(&text, "s.toml").unwrap_err().to_string();
    assert!(e.starts_with("s.toml:9: peer.max_parents:"), "{e}");
    let text = format!("{SCENARIO_HEAD}[scheduler]\nstripes = 0\n");
    let e = sim::scenario::parse_scenario(&text, "s.toml").unwrap_err().to_string();
    assert!(e.starts_with("s.toml:9: scheduler.stripes: stripes = 0"), "{e}");
}
