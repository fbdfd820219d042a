//! What a scenario becomes on real processes: the network namespaces, link rates, image and
//! configuration `bench/netns_fanout.sh` runs, or why this machine cannot emulate it.
//!
//! The emulation runs on one machine: every pod is a namespace with its own `peerd` and
//! client, every byte a pod receives is also checksummed and written by processes that
//! share this machine's cores. Past a few hundred Mbit/s per core the processes, not the
//! shaped links, set the pace, and the comparison would measure the machine instead of the
//! scenario: such a scenario is refused, with the limit that stops it.

use crate::scenario::{Mode, Scenario};

/// Pods one machine emulates: one `peerd` and one client process per pod.
pub const MAX_PODS: u32 = 16;
/// Sum of the pods' download rates. The fan-out measured about 6 CPU-ns per byte for peerd
/// and the client together on this machine type (2 cores): 1.6 Gbit/s keeps them under
/// about 60 % of the cores, so the links stay the bottleneck.
pub const MAX_AGGREGATE_MBIT: u64 = 1600;
/// tbf on a veth pair: below 1 Mbit/s the burst and latency settings dominate.
pub const MIN_LINK_MBIT: u64 = 1;
/// One link's rate: a single peerd serves about 2 Gbit/s on one core.
pub const MAX_LINK_MBIT: u64 = 2000;
/// Seed peers the script can start (the scheduler's namespace, and one more).
pub const MAX_SEEDS: u32 = 2;
/// Layers `e2e-oci-push` makes in one image.
pub const MAX_LAYERS: usize = 16;

/// The emulation of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub client: String,
    pub pods: u32,
    pub pod_rate_mbit: u64,
    pub registry_rate_mbit: u64,
    pub seed_rate_mbit: u64,
    pub seeds: u32,
    pub layers_mib: Vec<u32>,
    /// The modes emulated: `oci` (clients straight to the registry) and/or `p2p`.
    pub modes: Vec<Mode>,
    /// What the emulation does not reproduce and the reader should know.
    pub notes: Vec<String>,
}

/// A scenario this machine cannot emulate: every reason, each naming the key.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub Vec<String>);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this scenario cannot be emulated on this machine:")?;
        for r in &self.0 {
            write!(f, "\n  - {r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// Gbit/s to whole Mbit/s, with a note when rounding moves the rate by more than 1 %.
fn mbit(key: &str, gbps: f64, notes: &mut Vec<String>, refused: &mut Vec<String>) -> u64 {
    let exact = gbps * 1000.0;
    let whole = exact.round().max(0.0) as u64;
    if !(MIN_LINK_MBIT..=MAX_LINK_MBIT).contains(&whole) {
        refused.push(format!(
            "{key} = {gbps}: tbf links are emulated from {MIN_LINK_MBIT} to {MAX_LINK_MBIT} Mbit/s \
             ({} Gbit/s); one peerd serves about 2 Gbit/s on one core",
            MAX_LINK_MBIT as f64 / 1000.0
        ));
    } else if (whole as f64 - exact).abs() > exact * 0.01 {
        notes.push(format!("{key} = {gbps} Gbit/s is shaped as {whole} Mbit/s"));
    }
    whole
}

impl Plan {
    /// The emulation of `sc`, or every reason it cannot be emulated here.
    pub fn of(sc: &Scenario) -> Result<Plan, Refused> {
        let mut refused = Vec::new();
        let mut notes = Vec::new();
        let Some(em) = &sc.emulation else {
            return Err(Refused(vec![
                "[emulation]: missing; add `client = \"skopeo\"` (or \"containerd\") and `layers_mib = [..]`, \
                 the MiB per layer e2e-oci-push generates for [image] layer_bytes"
                    .into(),
            ]));
        };
        if !matches!(em.client.as_str(), "skopeo" | "containerd") {
            refused.push(format!("emulation.client = {:?}: expected \"skopeo\" or \"containerd\"", em.client));
        }
        match &sc.image {
            Some(image) if em.layers_mib.len() != image.layer_bytes.len() => refused.push(format!(
                "emulation.layers_mib has {} layers, image.layer_bytes {}: give one MiB figure per layer",
                em.layers_mib.len(),
                image.layer_bytes.len()
            )),
            Some(_) => {}
            None => refused.push("workload: the emulation pushes one image; use [image]".into()),
        }
        if em.layers_mib.is_empty() || em.layers_mib.len() > MAX_LAYERS {
            refused.push(format!("emulation.layers_mib: 1 to {MAX_LAYERS} layers, not {}", em.layers_mib.len()));
        }
        if em.layers_mib.contains(&0) {
            refused.push("emulation.layers_mib: every layer needs at least 1 MiB".into());
        }
        if !sc.churn.is_empty() {
            refused.push("churn.event: the emulation keeps every node up; remove [[churn.event]]".into());
        }
        let c = &sc.cluster;
        if c.has_groups() {
            refused.push("cluster.node_groups: the emulation runs one kind of node; use the single-node keys".into());
        }
        if c.pods_per_node() != 1 {
            refused.push(format!(
                "cluster.pods_per_node = {}: each pod is a namespace with its own peerd, so 1",
                c.pods_per_node()
            ));
        }
        if c.pods() == 0 || c.pods() > MAX_PODS {
            refused.push(format!(
                "cluster.pods = {}: 1 to {MAX_PODS}; each pod runs a peerd and a client on this machine's cores",
                c.pods()
            ));
        }
        if c.scheduler_replicas != 1 {
            refused.push(format!(
                "cluster.scheduler_replicas = {}: the emulation runs one scheduler",
                c.scheduler_replicas
            ));
        }
        if c.seed_peers == 0 || c.seed_peers > MAX_SEEDS {
            refused
                .push(format!("cluster.seed_peers = {}: the emulation runs 1 or {MAX_SEEDS} seed peers", c.seed_peers));
        }
        let pod_rate = mbit("cluster.node_bandwidth_gbps", c.node_bandwidth_gbps(), &mut notes, &mut refused);
        let seed_rate = mbit("cluster.seed_peer_bandwidth_gbps", c.seed_peer_bandwidth_gbps, &mut notes, &mut refused);
        let reg_rate = mbit("registry.egress_gbps", sc.registry.egress_gbps, &mut notes, &mut refused);
        let aggregate = pod_rate.saturating_mul(c.pods() as u64);
        if aggregate > MAX_AGGREGATE_MBIT {
            refused.push(format!(
                "cluster.pods x cluster.node_bandwidth_gbps = {aggregate} Mbit/s: at most {MAX_AGGREGATE_MBIT} Mbit/s \
                 on this machine; beyond it peerd and the clients (about 6 CPU-ns per byte) share too few \
                 cores and the machine, not the links, sets the pace"
            ));
        }
        if sc.pod.schedule_delay_ms != 0.0 || sc.pod.schedule_jitter_ms != 0.0 {
            refused.push("pod.schedule_delay_ms and pod.schedule_jitter_ms: the emulation starts every client at once; set both to 0".into());
        }
        if let Some(p) = sched::Policy::parse(&sc.policy) {
            if p == sched::Policy::Kraken {
                refused.push("policy = \"kraken\": peerd does not run Kraken's connection rules".into());
            }
        }
        let modes: Vec<Mode> = sc.modes.iter().copied().filter(|m| matches!(m, Mode::Oci | Mode::P2p)).collect();
        if modes.is_empty() {
            refused.push("modes: the emulation runs \"oci\" and \"p2p\"; list at least one".into());
        }
        if sc.modes.contains(&Mode::P2pLazy) {
            notes.push("p2p-lazy is not emulated (no Nydus snapshotter here); only simulated".into());
        }
        if sc.network.link_overhead_bytes != 14 {
            notes.push(format!(
                "network.link_overhead_bytes = {}: tbf on a veth counts 14 bytes per packet besides the IP packet",
                sc.network.link_overhead_bytes
            ));
        }
        let cpu = &sc.cpu;
        if cpu.node_cores.is_some() || cpu.seed_peer_cores.is_some() || cpu.registry_cores.is_some() {
            refused.push(
                "cpu.node_cores, cpu.seed_peer_cores, cpu.registry_cores: the emulation gives no process cores of its \
                 own (every one runs on this machine's); describe it with cpu.shared_host_cores"
                    .into(),
            );
        }
        let host_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match cpu.shared_host_cores {
            Some(cores) if cores == host_cores as f64 => {}
            Some(cores) => notes.push(format!(
                "cpu.shared_host_cores = {cores}: this machine has {host_cores} cores, which the emulated processes share"
            )),
            None => notes.push(format!(
                "no cpu.shared_host_cores: the simulator charges no CPU, while the emulated processes share this \
                 machine's {host_cores} cores"
            )),
        }
        if sc.registry.qps_limit < 1000.0 {
            notes.push(format!(
                "registry.qps_limit = {}: the real registry has no request limit",
                sc.registry.qps_limit
            ));
        }
        if !refused.is_empty() {
            return Err(Refused(refused));
        }
        Ok(Plan {
            name: sc.name.clone(),
            client: em.client.clone(),
            pods: c.pods(),
            pod_rate_mbit: pod_rate,
            registry_rate_mbit: reg_rate,
            seed_rate_mbit: seed_rate,
            seeds: c.seed_peers,
            layers_mib: em.layers_mib.clone(),
            modes,
            notes,
        })
    }

    /// `KEY=VALUE` lines a shell can `source` (values are plain words: no quoting needed).
    pub fn env(&self) -> String {
        let layers: Vec<String> = self.layers_mib.iter().map(|m| m.to_string()).collect();
        let what = match (self.modes.contains(&Mode::Oci), self.modes.contains(&Mode::P2p)) {
            (true, true) => "both",
            (true, false) => "direct",
            _ => "p2p",
        };
        format!(
            "NAME={}\nCLIENT={}\nWHAT={what}\nPODS={}\nPOD_RATE={}mbit\nREG_RATE={}mbit\nSEED_RATE={}mbit\nSEEDS={}\nLAYERS_MIB={}\n",
            self.name,
            self.client,
            self.pods,
            self.pod_rate_mbit,
            self.registry_rate_mbit,
            self.seed_rate_mbit,
            self.seeds,
            layers.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    const BASE: &str = r#"
name = "t"
modes = ["oci", "p2p"]
[cluster]
pods = 8
node_bandwidth_gbps = 0.1
seed_peers = 1
seed_peer_bandwidth_gbps = 0.2
scheduler_replicas = 1
[registry]
egress_gbps = 0.2
[network]
link_overhead_bytes = 14
[image]
reference = "r"
layer_bytes = [52327495, 67123553]
[pod]
schedule_delay_ms = 0.0
schedule_jitter_ms = 0.0
[emulation]
client = "skopeo"
layers_mib = [48, 64]
"#;

    fn plan(extra: &str) -> Result<Plan, Refused> {
        let text = format!("{BASE}{extra}");
        Plan::of(&parse_scenario(&text, "t.toml").unwrap())
    }

    fn this_machine() -> String {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!("[cpu]\nshared_host_cores = {cores}.0\n")
    }

    #[test]
    fn the_fanout_becomes_the_scripts_environment() {
        let p = plan(&this_machine()).unwrap();
        assert_eq!(
            p.env(),
            "NAME=t\nCLIENT=skopeo\nWHAT=both\nPODS=8\nPOD_RATE=100mbit\nREG_RATE=200mbit\nSEED_RATE=200mbit\nSEEDS=1\nLAYERS_MIB=48,64\n"
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
    }

    #[test]
    fn too_much_for_this_machine_is_refused_naming_the_limit() {
        let text =
            BASE.replace("pods = 8", "pods = 40").replace("node_bandwidth_gbps = 0.1", "node_bandwidth_gbps = 0.4");
        let e = Plan::of(&parse_scenario(&text, "t.toml").unwrap()).unwrap_err();
        let all = e.to_string();
        assert!(all.contains("cluster.pods = 40: 1 to 16"), "{all}");
        assert!(all.contains("16000 Mbit/s: at most 1600"), "{all}");
    }

    #[test]
    fn node_groups_are_refused_the_emulation_runs_one_kind_of_node() {
        let text = BASE.replace("pods = 8\nnode_bandwidth_gbps = 0.1\n", "")
            + "[[cluster.node_groups]]\nname = \"a\"\ncount = 8\nupload_gbps = 0.1\ndownload_gbps = 0.1\n";
        let e = Plan::of(&parse_scenario(&text, "t.toml").unwrap()).unwrap_err();
        assert!(e.to_string().contains("cluster.node_groups: the emulation runs one kind of node"), "{e}");
    }

    #[test]
    fn churn_is_refused_the_emulation_keeps_every_node_up() {
        let e = plan("[[churn.event]]\naction = \"fail\"\nat_s = 1.0\ncount = 1\n").unwrap_err();
        assert!(e.to_string().contains("churn.event: the emulation keeps every node up"), "{e}");
    }

    #[test]
    fn cores_of_their_own_are_refused_and_a_host_without_cores_noted() {
        let e = plan("[cpu]\nnode_cores = 2.0\n").unwrap_err();
        assert!(e.to_string().contains("describe it with cpu.shared_host_cores"), "{e}");
        let p = plan("").unwrap();
        assert!(
            p.notes.iter().any(|n| n.starts_with("no cpu.shared_host_cores: the simulator charges no CPU")),
            "{:?}",
            p.notes
        );
        let p = plan("[cpu]\nshared_host_cores = 1000.0\n").unwrap();
        assert!(
            p.notes.iter().any(|n| n.starts_with("cpu.shared_host_cores = 1000: this machine has")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn every_reason_is_given_at_once() {
        let text = BASE
            .replace("scheduler_replicas = 1", "scheduler_replicas = 2\npods_per_node = 2")
            .replace("client = \"skopeo\"", "client = \"docker\"")
            .replace("layers_mib = [48, 64]", "layers_mib = [48]")
            .replace("schedule_delay_ms = 0.0", "schedule_delay_ms = 5.0");
        let e = Plan::of(&parse_scenario(&text, "t.toml").unwrap()).unwrap_err();
        assert_eq!(e.0.len(), 5, "{e}");
    }

    #[test]
    fn a_scenario_without_emulation_says_what_to_add() {
        let text = BASE.split("[emulation]").next().unwrap().to_string();
        let e = Plan::of(&parse_scenario(&text, "t.toml").unwrap()).unwrap_err();
        assert!(e.to_string().contains("[emulation]: missing; add `client"), "{e}");
    }

    #[test]
    fn lazy_is_simulated_only() {
        let p = plan("").map(|_| ()).and_then(|_| {
            let text = BASE.replace("modes = [\"oci\", \"p2p\"]", "modes = [\"p2p\", \"p2p-lazy\"]");
            Plan::of(&parse_scenario(&text, "t.toml").unwrap())
        });
        let p = p.unwrap();
        assert_eq!(p.modes, vec![Mode::P2p]);
        assert!(p.env().contains("WHAT=p2p\n"));
        assert!(p.notes.iter().any(|n| n.contains("p2p-lazy is not emulated")), "{:?}", p.notes);
    }
}
