//! The keys a sweep may vary: every numeric key of the scenario as a run reads it, in
//! dotted form, whether the file writes it or leaves it at its default. `[scheduler]` and
//! `[peer]` hold every key of the cores' configurations (`core_configs`, the policy's preset
//! as defaults), so `scheduler.candidate_parent_limit` or `peer.upload_slots` can be varied
//! in a file that never mentions them. Entries of an array of tables are reached by index
//! or by name: `cluster.node_groups[0].count`, `cluster.node_groups.gpu.count`.

use std::collections::BTreeMap;

use super::vary::NumKind;
use crate::scenario::{core_configs, Scenario};

/// What a dotted key holds.
#[derive(Debug, Clone, PartialEq)]
enum Leaf {
    Number(NumKind),
    /// Not a number: "text", "a list", "a table", ... and the value.
    Other(&'static str),
}

/// Every key of a scenario, with the effective value of each.
#[derive(Debug, Clone)]
pub struct KeyCatalog {
    leaves: BTreeMap<String, Leaf>,
    values: toml::Table,
}

impl KeyCatalog {
    pub fn of(sc: &Scenario) -> Result<KeyCatalog, String> {
        let policy = sched::Policy::parse(&sc.policy).ok_or_else(|| format!("unknown policy {:?}", sc.policy))?;
        let mut values = toml::Table::try_from(sc).map_err(|e| format!("the scenario as a table: {e}"))?;
        let (sched_cfg, peer_cfg) = core_configs(sc, policy).map_err(|e| e.to_string())?;
        let tables = [
            ("scheduler", toml::Table::try_from(&sched_cfg).map_err(|e| e.to_string())?),
            ("peer", toml::Table::try_from(&peer_cfg).map_err(|e| e.to_string())?),
        ];
        for (name, core) in tables {
            let entry = values.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                for (k, v) in core {
                    t.insert(k, v);
                }
            }
        }
        // `[cpu]` is left out of a scenario that keeps its defaults, and its cores are left
        // out until given: a sweep may still vary them.
        let cpu = toml::Table::try_from(&sc.cpu).map_err(|e| e.to_string())?;
        values.insert("cpu".into(), toml::Value::Table(cpu));
        let mut leaves = BTreeMap::new();
        collect("", &values, &mut leaves);
        for cores in ["node_cores", "seed_peer_cores", "registry_cores", "shared_host_cores"] {
            leaves.entry(format!("cpu.{cores}")).or_insert(Leaf::Number(NumKind::Float));
        }
        Ok(KeyCatalog { leaves, values })
    }

    /// Whether `key` is a number the scenario reads, and which kind; else a one-line reason
    /// with the keys that are close to it.
    pub fn numeric(&self, key: &str) -> Result<NumKind, String> {
        match self.leaves.get(key) {
            Some(Leaf::Number(kind)) => Ok(*kind),
            Some(Leaf::Other(what)) => {
                let under: Vec<&str> = self.numbers().filter(|k| k.starts_with(&format!("{key}."))).collect();
                let hint =
                    if under.is_empty() { String::new() } else { format!("; its numeric keys: {}", under.join(", ")) };
                Err(format!("{key} is {what}, not a number{hint}"))
            }
            None => Err(format!("{key} is not a key of the scenario; {}", self.close_to(key))),
        }
    }

    /// The effective value of a table (e.g. `peer.piece_sizing`), if `key` names one.
    pub fn table(&self, key: &str) -> Option<&toml::Table> {
        let mut t = &self.values;
        for seg in key.split('.') {
            t = t.get(seg)?.as_table()?;
        }
        Some(t)
    }

    fn numbers(&self) -> impl Iterator<Item = &str> {
        self.leaves.iter().filter(|(_, l)| matches!(l, Leaf::Number(_))).map(|(k, _)| k.as_str())
    }

    /// The numeric keys a typo of `key` most likely meant, or the ones of its table.
    fn close_to(&self, key: &str) -> String {
        let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
        let limit = (key.len() / 4).max(2);
        let mut scored: Vec<(usize, &str)> = self
            .numbers()
            .filter_map(|k| {
                let whole = edit_distance(key, k);
                let tail = edit_distance(&last(key), &last(k));
                let d = whole.min(tail + 1);
                (whole <= limit || tail <= 2.min(last(key).len() / 3 + 1)).then_some((d, k))
            })
            .collect();
        scored.sort();
        let close: Vec<&str> = scored.iter().take(5).map(|(_, k)| *k).collect();
        match close.as_slice() {
            [one] => format!("did you mean {one}?"),
            [_, ..] => format!("close: {}", close.join(", ")),
            [] => {
                let table = key.split('.').next().unwrap_or("");
                let of_table: Vec<&str> = self.numbers().filter(|k| k.starts_with(&format!("{table}."))).collect();
                if of_table.is_empty() {
                    let mut tables: Vec<&str> = self.numbers().map(|k| k.split('.').next().unwrap_or(k)).collect();
                    tables.dedup();
                    format!("numeric keys are top-level or under {}, e.g. cluster.pods", tables.join(", "))
                } else {
                    format!("numeric keys of [{table}]: {}", of_table.join(", "))
                }
            }
        }
    }
}

fn collect(prefix: &str, t: &toml::Table, out: &mut BTreeMap<String, Leaf>) {
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let leaf = match v {
            toml::Value::Integer(_) => Leaf::Number(NumKind::Int),
            toml::Value::Float(_) => Leaf::Number(NumKind::Float),
            toml::Value::String(_) => Leaf::Other("text"),
            toml::Value::Boolean(_) => Leaf::Other("true or false"),
            toml::Value::Datetime(_) => Leaf::Other("a date"),
            toml::Value::Array(items) => {
                // An array of tables (`[[cluster.node_groups]]`): each entry's keys by index,
                // and by its name where it has one (`cluster.node_groups.gpu.count`).
                for (i, item) in items.iter().enumerate() {
                    let Some(entry) = item.as_table() else { continue };
                    collect(&format!("{key}[{i}]"), entry, out);
                    if let Some(name) = entry.get("name").and_then(toml::Value::as_str) {
                        collect(&format!("{key}.{name}"), entry, out);
                    }
                }
                Leaf::Other("a list")
            }
            toml::Value::Table(sub) => {
                collect(&key, sub, out);
                Leaf::Other("a table")
            }
        };
        out.insert(key, leaf);
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(row[j]).min(cur) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    fn catalog() -> KeyCatalog {
        let sc = parse_scenario(
            "name = \"t\"\n[cluster]\npods = 4\n[image]\nreference = \"r\"\nlayer_bytes = [10, 20]\n",
            "t.toml",
        )
        .unwrap();
        KeyCatalog::of(&sc).unwrap()
    }

    #[test]
    fn written_defaulted_and_core_keys_are_known_with_their_kind() {
        let c = catalog();
        assert_eq!(c.numeric("cluster.pods"), Ok(NumKind::Int));
        assert_eq!(c.numeric("cluster.seed_peers"), Ok(NumKind::Int));
        assert_eq!(c.numeric("cluster.node_bandwidth_gbps"), Ok(NumKind::Float));
        assert_eq!(c.numeric("registry.egress_gbps"), Ok(NumKind::Float));
        assert_eq!(c.numeric("scheduler.schedule_service_us"), Ok(NumKind::Float));
        assert_eq!(c.numeric("scheduler.candidate_parent_limit"), Ok(NumKind::Int));
        assert_eq!(c.numeric("peer.upload_slots"), Ok(NumKind::Int));
        assert_eq!(c.numeric("peer.piece_sizing.target_pieces"), Ok(NumKind::Int));
        assert_eq!(c.numeric("seed"), Ok(NumKind::Int));
        assert_eq!(c.table("peer.piece_sizing").unwrap()["rule"].as_str(), Some("scaled"));
    }

    #[test]
    fn cpu_keys_are_known_before_a_file_writes_them() {
        let c = catalog();
        assert_eq!(c.numeric("cpu.node_cores"), Ok(NumKind::Float));
        assert_eq!(c.numeric("cpu.shared_host_cores"), Ok(NumKind::Float));
        assert_eq!(c.numeric("cpu.daemon_receive_ns_per_byte"), Ok(NumKind::Float));
    }

    #[test]
    fn group_keys_are_known_by_index_and_by_name() {
        let sc = parse_scenario(
            "name = \"t\"\n[cluster]\n[[cluster.node_groups]]\nname = \"gpu\"\ncount = 2\n\
             [image]\nreference = \"r\"\nlayer_bytes = [10, 20]\n",
            "t.toml",
        )
        .unwrap();
        let c = KeyCatalog::of(&sc).unwrap();
        assert_eq!(c.numeric("cluster.node_groups[0].count"), Ok(NumKind::Int));
        assert_eq!(c.numeric("cluster.node_groups.gpu.count"), Ok(NumKind::Int));
        assert_eq!(c.numeric("cluster.node_groups.gpu.download_gbps"), Ok(NumKind::Float));
        assert_eq!(
            c.numeric("cluster.node_groups.gpu.name").unwrap_err(),
            "cluster.node_groups.gpu.name is text, not a number"
        );
        let e = c.numeric("cluster.node_groups.gpu.cont").unwrap_err();
        assert!(e.contains("cluster.node_groups.gpu.count"), "{e}");
    }

    /// A workload's keys by name (`workload.web.replicas`) or index, and a grid point written
    /// into the file reaches that workload.
    #[test]
    fn workload_keys_are_known_by_name_and_vary_that_workload() {
        let text = "name = \"t\"\n[cluster]\n\
             [[workload]]\nname = \"web\"\nreplicas = 2\n[workload.image]\nreference = \"a\"\nlayer_bytes = [10]\n\
             [[workload]]\nname = \"ml\"\nreplicas = 1\nstart_s = 1.5\n[workload.image]\nreference = \"b\"\nlayer_bytes = [20]\n";
        let sc = parse_scenario(text, "t.toml").unwrap();
        let c = KeyCatalog::of(&sc).unwrap();
        assert_eq!(c.numeric("workload.web.replicas"), Ok(NumKind::Int));
        assert_eq!(c.numeric("workload.ml.start_s"), Ok(NumKind::Float));
        assert_eq!(c.numeric("workload.web.start_s"), Ok(NumKind::Float), "left at its default, still a key");
        assert_eq!(c.numeric("workload[1].replicas"), Ok(NumKind::Int));
        assert_eq!(c.numeric("workload.ml.image.config_bytes"), Ok(NumKind::Int));
        let file = crate::scenario::ScenarioFile::from_text(std::path::Path::new("dir/t.toml"), text);
        let set = |k: &str, v: crate::scenario::Num| (k.to_string(), toml::Value::from(v));
        let varied = file
            .load_with(&[
                set("workload.ml.replicas", crate::scenario::Num::Int(5)),
                set("workload.web.start_s", crate::scenario::Num::Float(3.0)),
            ])
            .unwrap();
        assert_eq!((varied.workloads[1].replicas, varied.workloads[0].start_s), (5, 3.0));
        assert_eq!(varied.cluster.pods(), 7);
        let e = file.load_with(&[set("workload.ml.replicas", crate::scenario::Num::Int(0))]).unwrap_err();
        assert!(e.to_string().contains("workload[1].replicas: must be at least 1 pod"), "{e}");
    }

    #[test]
    fn unknown_and_non_numeric_keys_are_refused_with_what_is_close() {
        let c = catalog();
        assert_eq!(
            c.numeric("cluster.seedpeers").unwrap_err(),
            "cluster.seedpeers is not a key of the scenario; did you mean cluster.seed_peers?"
        );
        let e = c.numeric("seed_peers").unwrap_err();
        assert!(e.contains("cluster.seed_peers"), "{e}");
        let e = c.numeric("cluster.zzzzzzzzzz").unwrap_err();
        assert!(e.contains("numeric keys of [cluster]: cluster.node_bandwidth_gbps"), "{e}");
        let e = c.numeric("nothing.here.at.all").unwrap_err();
        assert!(e.contains("numeric keys are top-level or under") && e.contains("cluster"), "{e}");
        assert_eq!(c.numeric("name").unwrap_err(), "name is text, not a number");
        assert_eq!(c.numeric("image.layer_bytes").unwrap_err(), "image.layer_bytes is a list, not a number");
        assert_eq!(
            c.numeric("pod.unpack_after_fetch").unwrap_err(),
            "pod.unpack_after_fetch is true or false, not a number"
        );
        let e = c.numeric("peer.piece_sizing").unwrap_err();
        assert!(
            e.starts_with("peer.piece_sizing is a table, not a number; its numeric keys: peer.piece_sizing.max_bytes"),
            "{e}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
