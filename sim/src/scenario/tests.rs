//! Scenario loading: the bundled files, defaults, and one error per bad-input class.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::locate::{locate, KeyPlace};
use super::*;

/// Marks the line an error must point at; `expect_at` finds it.
const MARK: &str = "# <-";

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A minimal valid scenario with `line` (marked) placed in `section` ("" = top level),
/// replacing the default line of the same key.
fn with(section: &str, line: &str) -> String {
    let key = line.split('=').next().unwrap_or("").trim();
    let marked = format!("{line} {MARK}\n");
    let mut sections: Vec<(String, Vec<String>)> = vec![
        (String::new(), vec!["name = \"t\"".into()]),
        ("cluster".into(), vec!["pods = 4".into()]),
        ("image".into(), vec!["reference = \"r\"".into(), "layer_bytes = [10, 20]".into()]),
    ];
    if !sections.iter().any(|(name, _)| name == section) {
        sections.push((section.to_string(), Vec::new()));
    }
    let mut text = String::new();
    for (name, lines) in &sections {
        if !name.is_empty() {
            text.push_str(&format!("\n[{name}]\n"));
        }
        for l in lines.iter().filter(|l| l.split('=').next().unwrap_or("").trim() != key) {
            text.push_str(&format!("{l}\n"));
        }
        if name == section {
            text.push_str(&marked);
        }
    }
    text
}

/// The minimal valid scenario, with no marked line.
fn minimal() -> String {
    with("", "seed = 1").replace(&format!(" {MARK}"), "")
}

fn parse_err(text: &str) -> ScenarioError {
    match parse_scenario(text, "bad.toml") {
        Ok(s) => panic!("expected an error, got {s:?} from\n{text}"),
        Err(e) => e,
    }
}

/// The error names bad.toml, the marked line (or `line` when unmarked) and `key`, and says
/// `fragment`, all on one line.
fn expect_at(text: &str, line: Option<usize>, key: &str, fragment: &str) -> ScenarioError {
    let marked = text.lines().position(|l| l.contains(MARK)).map(|i| i + 1);
    let line = line.or(marked).expect("a marked line or an explicit one");
    let e = parse_err(text);
    let shown = e.to_string();
    let prefix = format!("bad.toml:{line}: {key}: ");
    assert!(shown.starts_with(&prefix), "want prefix {prefix:?}, got {shown:?} from\n{text}");
    assert!(shown.contains(fragment), "want {fragment:?} in {shown:?}");
    assert!(!shown.contains('\n'), "not one line: {shown:?}");
    assert_eq!((e.line, e.key.as_deref()), (Some(line), Some(key)));
    e
}

fn bundled() -> Vec<(String, Scenario)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .expect("scenarios/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, load_scenario(p).unwrap_or_else(|e| panic!("{e}")))
        })
        .collect()
}

const NGINX_LAYERS: [u64; 4] = [1_986_743, 67_118_423, 167_792_951, 289_441_723];
const TF_LAYERS: [u64; 6] = [1_986_743, 134_234_775, 402_700_183, 671_165_591, 939_630_999, 1_073_863_703];

#[test]
fn every_bundled_scenario_loads_and_matches_the_seed_benchmark() {
    let all = bundled();
    let names: BTreeSet<&str> = all.iter().map(|(stem, _)| stem.as_str()).collect();
    for image in ["nginx", "tensorflow"] {
        for pods in [50, 100, 200, 500] {
            assert!(names.contains(format!("{image}-{pods}").as_str()), "missing {image}-{pods}");
        }
    }
    assert!(names.contains("capacity-10k") && names.contains("capacity-100k"));
    for (stem, s) in &all {
        assert_eq!(&s.name, stem, "name must match the file name");
        assert_eq!((s.seed, s.policy.as_str()), (1, "default"), "{stem}");
        assert_eq!(s.registry.egress_gbps, 10.0, "{stem}");
        assert_eq!(s.cluster.node_bandwidth_gbps(), 6.0, "{stem}");
        let layers = if stem.starts_with("nginx") { &NGINX_LAYERS[..] } else { &TF_LAYERS[..] };
        assert_eq!(s.images()[0].layer_bytes, layers, "{stem}: harness image layer sizes");
        if stem == "capacity-10k" {
            assert_eq!((s.cluster.pods(), s.modes.as_slice()), (10_000, &[Mode::P2p][..]));
        } else if stem == "capacity-100k" {
            assert_eq!((s.cluster.pods(), s.modes.as_slice()), (100_000, &[Mode::P2p][..]));
            assert_eq!(s.cluster.node_groups.len(), 2, "the issue asks for at least two node groups");
        } else {
            assert_eq!(s.modes, Mode::ALL.to_vec(), "{stem}");
            assert_eq!(s.cluster.scheduler_replicas, 2, "{stem}");
            assert_eq!(stem.rsplit('-').next(), Some(s.cluster.pods().to_string().as_str()));
        }
    }
}

/// Leaf keys of a TOML document ("cluster.pods", ...).
fn leaf_keys(text: &str) -> BTreeSet<String> {
    fn walk(table: &dyn toml_edit::TableLike, prefix: &str, out: &mut BTreeSet<String>) {
        for (name, item) in table.iter() {
            let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
            match item.as_table_like() {
                Some(t) => walk(t, &path, out),
                None => {
                    out.insert(path);
                }
            }
        }
    }
    let doc = toml_edit::Document::parse(text).expect("valid TOML");
    let mut out = BTreeSet::new();
    walk(doc.as_table(), "", &mut out);
    out
}

#[test]
fn every_bundled_scenario_writes_every_key() {
    for (stem, s) in bundled() {
        let text = std::fs::read_to_string(scenarios_dir().join(format!("{stem}.toml"))).unwrap();
        let model = leaf_keys(&toml::to_string(&s).expect("serializes"));
        let written = leaf_keys(&text);
        let missing: Vec<_> = model.difference(&written).collect();
        assert!(missing.is_empty(), "{stem}.toml leaves out {missing:?}");
    }
}

#[test]
fn defaults_fill_absent_sections_and_round_trip() {
    let s = parse_scenario(&minimal(), "min.toml").expect("minimal scenario is valid");
    assert_eq!(s.registry, Registry::default());
    assert_eq!(s.scheduler.cost, SchedulerCost::default());
    assert!(s.scheduler.tuning.is_empty() && s.peer.is_empty());
    assert_eq!(s.pod, PodLifecycle::default());
    assert_eq!(s.lazy, Lazy::default());
    assert_eq!(s.sim, SimSettings::default());
    assert_eq!((s.policy.as_str(), s.modes.clone()), ("default", Mode::ALL.to_vec()));
    assert_eq!((s.cluster.pods_per_node(), s.cluster.seed_peers, s.cluster.scheduler_replicas), (1, 3, 2));
    let text = toml::to_string(&s).expect("serializes");
    assert_eq!(parse_scenario(&text, "round.toml").expect("round trip is valid"), s);
}

#[test]
fn unreadable_files_name_the_path() {
    let e = load_scenario(Path::new("/nonexistent/x.toml")).unwrap_err();
    assert_eq!((e.kind, e.line), (ErrorKind::Io, None));
    assert!(e.to_string().starts_with("/nonexistent/x.toml: cannot read: "), "{e}");

    let dir = std::env::temp_dir().join(format!("sim-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
    let e = load_scenario(&binary).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().contains("binary.toml: cannot read: "), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syntax_errors_point_at_the_line() {
    let e = expect_at(&with("cluster", "pods = 3 3"), None, "cluster.pods", "invalid TOML");
    assert_eq!(e.kind, ErrorKind::Syntax);
    expect_at(&with("registry", "egress_gbps = "), None, "registry.egress_gbps", "invalid TOML");
    // A table defined twice: the second header is at fault.
    let twice = format!("{}[cluster] {MARK}\npods = 2\n", minimal());
    expect_at(&twice, None, "cluster", "invalid TOML");
    let e = parse_err("name = \"t\n");
    assert_eq!((e.line, e.kind), (Some(1), ErrorKind::Syntax));
}

#[test]
fn files_that_crash_toml_edit_are_syntax_errors() {
    // The crash input of fuzz/ scenario_toml: toml_edit 0.23.10 panicked on it while
    // recovering from the first error ("all items have spans").
    for text in ["=\n.=", "=\n.=\n[cluster]\npods = 2\n"] {
        let e = parse_err(text);
        assert_eq!(e.kind, ErrorKind::Syntax, "{e}");
        assert!(e.message.starts_with("invalid TOML") && e.line.is_some(), "{e}");
    }
}

#[test]
fn unknown_keys_list_the_valid_keys_of_their_table() {
    let e = expect_at(&with("", "colour = 1"), None, "colour", "valid keys of the top level: name, seed");
    assert_eq!(e.kind, ErrorKind::Schema);
    expect_at(&with("cluster", "podz = 3"), None, "cluster.podz", "valid keys of [cluster]: pods, pods_per_node");
    expect_at(&with("lazy", "prefetch_mb = 3"), None, "lazy.prefetch_mb", "valid keys of [lazy]: metadata_bytes");
    let extra = format!("{}[extra] {MARK}\nx = 1\n", minimal());
    expect_at(&extra, None, "extra", "unknown key \"extra\"");
    let inline = with("", "registry = { egress = 1.0 }");
    expect_at(&inline, None, "registry.egress", "valid keys of [registry]: egress_gbps");
}

#[test]
fn wrong_types_say_what_to_write() {
    expect_at(&with("cluster", "pods = \"many\""), None, "cluster.pods", "write a whole number");
    expect_at(&with("cluster", "pods = -1"), None, "cluster.pods", "invalid value: integer `-1`");
    expect_at(&with("cluster", "pods = 99999999999"), None, "cluster.pods", "expected u32");
    expect_at(
        &with("cluster", "node_bandwidth_gbps = \"fast\""),
        None,
        "cluster.node_bandwidth_gbps",
        "write a number",
    );
    expect_at(&with("lazy", "prefetch = 1"), None, "lazy.prefetch", "write true or false");
    expect_at(&with("image", "layer_bytes = [10, \"x\"]"), None, "image.layer_bytes[1]", "invalid type");
    expect_at(&with("", "name = 7"), None, "name", "write text in double quotes");
}

#[test]
fn missing_required_keys_and_tables() {
    let no_image = "name = \"t\"\n[cluster]\npods = 4\n";
    let e = expect_at(no_image, Some(1), "image", "missing [image] table");
    assert_eq!(e.kind, ErrorKind::Schema);
    expect_at("name = \"t\"\n[image]\nreference = \"r\"\nlayer_bytes = [1]\n", Some(1), "cluster", "missing [cluster]");
    let no_pods = minimal().replace("pods = 4\n", "");
    let header = no_pods.lines().position(|l| l == "[cluster]").unwrap() + 1;
    expect_at(&no_pods, Some(header), "cluster.pods", "add `pods = ...`");
    expect_at(&minimal().replace("name = \"t\"\n", ""), Some(1), "name", "add `name = ...`");
}

#[test]
fn rates_and_sizes_must_be_finite_and_positive() {
    let keys = [
        ("cluster", "node_bandwidth_gbps"),
        ("cluster", "node_disk_write_mbps"),
        ("cluster", "seed_peer_bandwidth_gbps"),
        ("cluster", "seed_peer_disk_write_mbps"),
        ("registry", "egress_gbps"),
        ("registry", "qps_limit"),
        ("pod", "unpack_mbps_per_core"),
    ];
    for (section, key) in keys {
        for (value, got) in [("-1.0", "-1"), ("0", "0"), ("0.0", "0"), ("nan", "NaN"), ("inf", "inf"), ("-inf", "-inf")]
        {
            let text = with(section, &format!("{key} = {value}"));
            let e = expect_at(&text, None, &format!("{section}.{key}"), &format!("greater than 0 (got {got})"));
            assert_eq!(e.kind, ErrorKind::Invalid);
        }
    }
}

#[test]
fn counts_must_be_at_least_one() {
    let keys = [
        ("cluster", "pods"),
        ("cluster", "pods_per_node"),
        ("cluster", "scheduler_replicas"),
        ("image", "manifest_bytes"),
        ("image", "config_bytes"),
        ("pod", "max_concurrent_downloads"),
        ("lazy", "range_read_bytes"),
        ("lazy", "range_reads_in_flight"),
    ];
    for (section, key) in keys {
        expect_at(&with(section, &format!("{key} = 0")), None, &format!("{section}.{key}"), "at least 1 (got 0)");
    }
    // Dotted keys at the top level point at their own line too.
    let dotted = format!("name = \"t\"\ncluster.pods = 0 {MARK}\nimage.reference = \"r\"\nimage.layer_bytes = [1]\n");
    expect_at(&dotted, None, "cluster.pods", "at least 1 (got 0)");
}

#[test]
fn image_layers_must_exist_and_be_non_empty() {
    expect_at(&with("image", "layer_bytes = []"), None, "image.layer_bytes", "at least one layer");
    expect_at(&with("image", "layer_bytes = [10, 0]"), None, "image.layer_bytes[1]", "at least 1 byte (got 0)");
    // In a multi-line array the element's own line is named.
    let multi = with("image", "layer_bytes = [\n  10,\n  0, # <-\n  30,\n]");
    expect_at(&multi, None, "image.layer_bytes[1]", "at least 1 byte");
    let huge = format!("layer_bytes = [{}, {}]", i64::MAX, i64::MAX);
    expect_at(&with("image", &huge), None, "image.layer_bytes", "overflows");
    expect_at(&with("image", "reference = \" \""), None, "image.reference", "must not be empty");
}

#[test]
fn policies_and_modes_are_checked() {
    expect_at(&with("", "policy = \"fastest\""), None, "policy", "valid policies: default, dragonfly, kraken");
    expect_at(&with("", "modes = [\"oci\", \"torrent\"]"), None, "modes[1]", "valid modes: oci, p2p, p2p-lazy");
    expect_at(&with("", "modes = []"), None, "modes", "at least one mode");
    expect_at(&with("", "modes = [\"p2p\", \"oci\", \"p2p\"]"), None, "modes[2]", "listed twice");
    expect_at(&with("", "name = \"../etc\""), None, "name", "directory name");
}

#[test]
fn seed_peers_are_needed_only_by_p2p_modes() {
    expect_at(&with("cluster", "seed_peers = 0"), None, "cluster.seed_peers", "at least 1 when modes include p2p");
    let oci_only = with("cluster", "seed_peers = 0").replace("name = \"t\"", "name = \"t\"\nmodes = [\"oci\"]");
    assert!(parse_scenario(&oci_only, "oci.toml").is_ok());
}

#[test]
fn latencies_and_delays_must_be_finite_and_not_negative() {
    let keys = [
        ("registry", "request_latency_ms"),
        ("scheduler", "schedule_service_us"),
        ("scheduler", "report_service_us"),
        ("scheduler", "rpc_latency_ms"),
        ("pod", "schedule_delay_ms"),
        ("pod", "schedule_jitter_ms"),
        ("pod", "container_start_ms"),
        ("lazy", "mount_ms"),
    ];
    for (section, key) in keys {
        for value in ["-1.0", "nan", "inf", "1e30"] {
            expect_at(
                &with(section, &format!("{key} = {value}")),
                None,
                &format!("{section}.{key}"),
                "must be a finite number from 0",
            );
        }
        assert!(parse_scenario(&with(section, &format!("{key} = 0.0")), "zero.toml").is_ok(), "{key} = 0 is valid");
    }
}

#[test]
fn fractions_and_sim_settings_are_bounded() {
    for value in ["-1.0", "nan", "1000.5"] {
        let text = with("network", &format!("queue_delay_ms = {value}"));
        expect_at(&text, None, "network.queue_delay_ms", "must be from 0 to 1000 ms");
    }
    assert!(parse_scenario(&with("network", "queue_delay_ms = 20.0"), "queued.toml").is_ok());
    for value in ["0.0", "-0.1", "1.5", "nan"] {
        let text = with("lazy", &format!("startup_working_set_fraction = {value}"));
        expect_at(&text, None, "lazy.startup_working_set_fraction", "must be in (0, 1]");
    }
    assert!(parse_scenario(&with("lazy", "startup_working_set_fraction = 1.0"), "one.toml").is_ok());
    for value in ["-1.0", "nan"] {
        expect_at(&with("sim", &format!("quantum_us = {value}")), None, "sim.quantum_us", "from 0 (exact)");
    }
    for value in ["0.0", "-5.0", "inf"] {
        expect_at(&with("sim", &format!("time_limit_s = {value}")), None, "sim.time_limit_s", "above 0");
    }
}

#[test]
fn absent_keys_are_placed_at_their_table_or_line_one() {
    let text = with("registry", "egress_gbps = 10.0");
    let doc = toml_edit::Document::parse(text.as_str()).unwrap();
    let header = text.lines().position(|l| l == "[registry]").unwrap() + 1;
    assert_eq!(locate(&doc, &text, "registry.qps_limit"), KeyPlace { line: header, present: false });
    assert_eq!(locate(&doc, &text, "lazy.mount_ms"), KeyPlace { line: 1, present: false });
    assert_eq!(locate(&doc, &text, "registry.egress_gbps"), KeyPlace { line: header + 1, present: true });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No input panics, and every error is one line naming the file.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,120}") {
        if let Err(e) = parse_scenario(&text, "fuzz.toml") {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("fuzz.toml:") && !shown.contains('\n'), "{}", shown);
        }
    }

    /// Cutting a bundled file anywhere gives a valid scenario or a one-line error.
    #[test]
    fn truncated_bundled_files_never_panic(cut in 0usize..4000) {
        let text = std::fs::read_to_string(scenarios_dir().join("tensorflow-500.toml")).unwrap();
        let mut end = cut.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if let Err(e) = parse_scenario(&text[..end], "cut.toml") {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("cut.toml:") && !shown.contains('\n'), "{}", shown);
        }
    }
}

/// `scenarios/published/`: published results of other systems re-expressed as scenarios
/// (sched/README.md). Each loads, runs a baseline policy and says where its figure comes from.
#[test]
fn published_scenarios_load_and_name_their_source() {
    let dir = scenarios_dir().join("published");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/published exists") {
        let p = entry.expect("readable entry").path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let s = load_scenario(&p).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("# A published"), "{}: the first comment names the published result", p.display());
        assert!(text.contains("Assumed"), "{}: states what it assumes", p.display());
        assert_ne!(s.policy, "default", "{}: runs the baseline it re-expresses", p.display());
        n += 1;
    }
    assert!(n >= 1, "no published scenario in {}", dir.display());
}

/// `[[cluster]]` and `[[image]]` (an array where a table is expected) and a list or table
/// where one value is expected say so, with the line, instead of serde's "cluster[0]:
/// invalid type: map, expected u32".
#[test]
fn arrays_and_tables_in_the_wrong_place_are_named_as_such() {
    let text = minimal().replace("[cluster]", "[[cluster]]");
    let e = parse_scenario(&text, "s.toml").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("cluster"), "{e}");
    assert!(
        e.to_string().contains("written as [[cluster]], an array of tables")
            && e.to_string().contains("write [cluster]"),
        "{e}"
    );
    let line = text.lines().position(|l| l.trim() == "[[cluster]]").unwrap() + 1;
    assert_eq!(e.line, Some(line), "{e}");
    let text = minimal().replace("[cluster]", "[cluster]\nnode_bandwidth_gbps = [1.0, 2.0]");
    let e = parse_scenario(&text, "s.toml").unwrap_err().to_string();
    assert!(e.contains("cluster.node_bandwidth_gbps") && e.contains("a list where one value is expected"), "{e}");
    // The list of the scenario's tables is the model's.
    let s = parse_scenario(&minimal(), "min.toml").unwrap();
    let model: toml::Table = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
    let tables: Vec<&String> = model.iter().filter(|(_, v)| v.is_table()).map(|(k, _)| k).collect();
    for key in &tables {
        assert!(super::load::TABLES.contains(&key.as_str()), "{key} is a table of the scenario; add it to TABLES");
    }
}

/// `[faults] replica_outage`: a replica the cluster does not have, a cluster of one replica
/// and a return before the stop are refused, naming the key; a good one loads.
#[test]
fn replica_outages_are_checked() {
    let base = minimal().replace("[cluster]", "[cluster]\nscheduler_replicas = 2");
    let with_outage = |outage: &str| format!("{base}\n[faults]\nreplica_outage = {{ {outage} }}\n");
    let s = parse_scenario(&with_outage("replica = 1, down_at_s = 2.0, back_at_s = 4.0"), "ok.toml").unwrap();
    let o = s.faults.replica_outage.expect("loaded");
    assert_eq!((o.replica, o.down_at_s, o.back_at_s, o.notice_ms), (1, 2.0, Some(4.0), 1000.0));
    for (outage, key, says) in [
        ("replica = 2, down_at_s = 2.0", "faults.replica_outage.replica", "has 2 scheduler replicas"),
        ("replica = 0, down_at_s = 2.0, back_at_s = 1.0", "faults.replica_outage.back_at_s", "must be after"),
        ("replica = 0, down_at_s = -1.0", "faults.replica_outage.down_at_s", "finite number"),
    ] {
        let e = parse_err(&with_outage(outage));
        assert_eq!(e.key.as_deref(), Some(key), "{outage}: {e}");
        assert!(e.to_string().contains(says), "{outage}: {e}");
    }
    let one = minimal().replace("[cluster]", "[cluster]\nscheduler_replicas = 1");
    let e = parse_err(&format!("{one}\n[faults]\nreplica_outage = {{ replica = 0, down_at_s = 1.0 }}\n"));
    assert!(e.to_string().contains("at least 2"), "{e}");
}

/// `[mirror]`: the daemon's rule by default (`ResolveRule::default()`), its three keys read
/// by their daemon names, and each bad value refused naming the key and its line: a key
/// the simulator does not model (the daemon's `serve_stale_on_error`), a wrong type, a TTL
/// beyond a day.
#[test]
fn mirror_keys_default_to_the_daemons_rule_and_are_checked() {
    let s = parse_scenario(&minimal(), "min.toml").unwrap();
    assert_eq!(s.mirror, Mirror { tag_ttl_ms: 5_000, auth_check_ttl_ms: 60_000, resolve_via_seeds: true });
    let rule = peer::core::ResolveRule::default();
    assert_eq!(s.mirror.rule(), rule);
    let s = parse_scenario(
        &minimal().replace(
            "[cluster]",
            "[mirror]\ntag_ttl_ms = 0\nauth_check_ttl_ms = 7\nresolve_via_seeds = false\n\n[cluster]",
        ),
        "m.toml",
    )
    .unwrap();
    assert_eq!(s.mirror, Mirror { tag_ttl_ms: 0, auth_check_ttl_ms: 7, resolve_via_seeds: false });
    assert_eq!((s.mirror.rule().tag_ttl_ms, s.mirror.rule().digest_ttl_ms), (0, 7));

    let e = expect_at(
        &with("mirror", "serve_stale_on_error = true"),
        None,
        "mirror.serve_stale_on_error",
        "valid keys of [mirror]: tag_ttl_ms, auth_check_ttl_ms, resolve_via_seeds; the simulator takes only",
    );
    assert_eq!(e.kind, ErrorKind::Schema);
    expect_at(&with("mirror", "tag_ttl_ms = \"5s\""), None, "mirror.tag_ttl_ms", "write a whole number");
    expect_at(&with("mirror", "auth_check_ttl_ms = -1"), None, "mirror.auth_check_ttl_ms", "expected u64");
    expect_at(&with("mirror", "resolve_via_seeds = 1"), None, "mirror.resolve_via_seeds", "write true or false");
    let e = expect_at(
        &with("mirror", "tag_ttl_ms = 86400001"),
        None,
        "mirror.tag_ttl_ms",
        "must be from 0 (keep nothing) to 86400000 ms, a day (got 86400001)",
    );
    assert_eq!(e.kind, ErrorKind::Invalid);
    expect_at(&with("mirror", "auth_check_ttl_ms = 100000000"), None, "mirror.auth_check_ttl_ms", "a day");
}

/// A `peerd_toml` gives the run its `[mirror]` keys as it gives its `[peer]` table; the
/// scenario's own `[mirror]` keys win, the file's other `[mirror]` keys (registries,
/// listener limits, stale answers) are the daemon's alone, and a bad value in the file is
/// reported at its line there.
#[test]
fn a_peerd_toml_gives_its_mirror_keys_and_the_scenario_wins() {
    let dir = std::env::temp_dir().join(format!("sim-scenario-mirror-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let peerd = |mirror: &str| {
        let text = format!(
            "[peer]\nupload_slots = 7\n\n[mirror]\nenabled = true\nmax_connections = 64\n\
             serve_stale_on_error = true\n{mirror}\n[[mirror.registries]]\nhost = \"docker.io\"\n"
        );
        std::fs::write(dir.join("peerd.toml"), text).unwrap();
    };
    let scenario = |own: &str| {
        let text = minimal().replace("name = \"t\"", "name = \"t\"\npeerd_toml = \"peerd.toml\"")
            + &format!("\n[mirror]\n{own}\n");
        std::fs::write(dir.join("s.toml"), text).unwrap();
        load_scenario(&dir.join("s.toml"))
    };
    peerd("tag_ttl_ms = 0\nauth_check_ttl_ms = 1000\nresolve_via_seeds = false");
    let s = scenario("").unwrap();
    assert_eq!(s.mirror, Mirror { tag_ttl_ms: 0, auth_check_ttl_ms: 1000, resolve_via_seeds: false });
    assert_eq!(s.peer.get("upload_slots").and_then(|v| v.as_integer()), Some(7));
    let s = scenario("tag_ttl_ms = 2000\nresolve_via_seeds = true").unwrap();
    assert_eq!(s.mirror, Mirror { tag_ttl_ms: 2000, auth_check_ttl_ms: 1000, resolve_via_seeds: true });
    // A file without the keys leaves the defaults.
    peerd("");
    assert_eq!(scenario("").unwrap().mirror, Mirror::default());
    // Faults in the file: its own name and line (line 8: after the 7 lines written above).
    let shown = dir.join("peerd.toml").display().to_string();
    for (line, key, says) in [
        ("tag_ttl_ms = -5", "mirror.tag_ttl_ms", "is -5; write a whole number of milliseconds"),
        ("auth_check_ttl_ms = \"1m\"", "mirror.auth_check_ttl_ms", "is string; write a whole number"),
        ("tag_ttl_ms = 90000000", "mirror.tag_ttl_ms", "must be from 0 (keep nothing) to 86400000 ms"),
        ("resolve_via_seeds = \"yes\"", "mirror.resolve_via_seeds", "is string; write true or false"),
    ] {
        peerd(line);
        let e = scenario("").unwrap_err();
        assert!(e.to_string().starts_with(&format!("{shown}:8: {key}: {says}")), "{line}: {e}");
        assert_eq!(e.kind, ErrorKind::Invalid);
        // The scenario's own key wins, so the file's bad one is not read.
        let own = key.trim_start_matches("mirror.");
        let value = if own == "resolve_via_seeds" { "true" } else { "10" };
        assert!(scenario(&format!("{own} = {value}")).is_ok(), "{line}");
    }
    std::fs::write(dir.join("peerd.toml"), "mirror = 3\n").unwrap();
    let e = scenario("").unwrap_err();
    assert!(e.to_string().starts_with(&format!("{shown}:1: mirror: is integer; write a [mirror] table")), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
