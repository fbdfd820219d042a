//! `[[cluster.node_groups]]`: a cluster as it is, nodes of several kinds.
//!
//! Without groups, `[cluster]`'s single-node keys (`pods`, `pods_per_node`,
//! `node_bandwidth_gbps`, `node_disk_write_mbps`) describe one group of identical nodes,
//! exactly as before groups existed. With groups, those keys are refused (each group says
//! its own) and `pods` may be left out: it is the sum of `count x pods_per_node`.

use serde::{Deserialize, Serialize};

use super::limits::PODS_MAX;
use super::model::{Cluster, Scenario};
use super::validate::{fail, positive, Invalid};

/// One kind of node: how many, and what each has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    /// Unique in the scenario, of `a-z`, `0-9` and `-`: names the group in reports and in
    /// sweep keys (`cluster.node_groups.<name>.count`).
    pub name: String,
    /// Nodes of the group.
    pub count: u32,
    /// Pods placed on each node of the group.
    #[serde(default = "one")]
    pub pods_per_node: u32,
    /// NIC rate out of each node, in Gbit/s.
    #[serde(default = "six_gbps")]
    pub upload_gbps: f64,
    /// NIC rate into each node, in Gbit/s.
    #[serde(default = "six_gbps")]
    pub download_gbps: f64,
    /// Sustained disk write rate of each node, in MB/s (10^6 bytes); a node's download is
    /// min(NIC, disk).
    #[serde(default = "ssd_mbps")]
    pub disk_write_mbps: f64,
    /// Where the nodes are (e.g. "eu-west-1a"): the IDC and location the scheduler's
    /// policies compare; empty: none, as for a cluster without groups.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
}

/// A group as the engine lays it out: its nodes and pods are numbered after the previous
/// group's, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLayout {
    pub name: String,
    pub first_node: u32,
    pub nodes: u32,
    pub first_pod: u32,
    pub pods: u32,
    pub pods_per_node: u32,
    pub upload_gbps: f64,
    pub download_gbps: f64,
    pub disk_write_mbps: f64,
    pub zone: String,
}

impl GroupLayout {
    /// The node a pod of this group runs on (`pod` counted over the whole cluster).
    pub fn node_of(&self, pod: u32) -> u32 {
        self.first_node + (pod - self.first_pod) / self.pods_per_node.max(1)
    }
}

/// The single-node keys of `[cluster]` that groups replace.
const SINGLE_KEYS: [&str; 3] = ["pods_per_node", "node_bandwidth_gbps", "node_disk_write_mbps"];

/// Name of the one group of a cluster written without groups (reports leave it out).
pub const IMPLICIT_GROUP: &str = "all";

impl Cluster {
    /// The groups as the engine lays them out: the declared ones, or one of the
    /// single-node keys.
    pub fn layout(&self) -> Vec<GroupLayout> {
        if self.node_groups.is_empty() {
            let ppn = self.pods_per_node();
            let pods = self.pods();
            return vec![GroupLayout {
                name: IMPLICIT_GROUP.to_string(),
                first_node: 0,
                nodes: pods.div_ceil(ppn.max(1)),
                first_pod: 0,
                pods,
                pods_per_node: ppn,
                upload_gbps: self.node_bandwidth_gbps(),
                download_gbps: self.node_bandwidth_gbps(),
                disk_write_mbps: self.node_disk_write_mbps(),
                zone: String::new(),
            }];
        }
        let (mut node, mut pod) = (0u32, 0u32);
        self.node_groups
            .iter()
            .map(|g| {
                let pods = g.count.saturating_mul(g.pods_per_node);
                let l = GroupLayout {
                    name: g.name.clone(),
                    first_node: node,
                    nodes: g.count,
                    first_pod: pod,
                    pods,
                    pods_per_node: g.pods_per_node,
                    upload_gbps: g.upload_gbps,
                    download_gbps: g.download_gbps,
                    disk_write_mbps: g.disk_write_mbps,
                    zone: g.zone.clone(),
                };
                node = node.saturating_add(g.count);
                pod = pod.saturating_add(pods);
                l
            })
            .collect()
    }

    /// Nodes of the cluster (seed peers apart).
    pub fn node_count(&self) -> u32 {
        self.layout().iter().map(|g| g.nodes).fold(0, u32::saturating_add)
    }

    /// Pods of the rollout: `pods`, or with groups the sum of `count x pods_per_node`.
    pub fn pods(&self) -> u32 {
        self.pods.unwrap_or(0)
    }

    /// `pods_per_node` of a cluster without groups (1 when left out).
    pub fn pods_per_node(&self) -> u32 {
        self.pods_per_node.unwrap_or(1)
    }

    /// `node_bandwidth_gbps` of a cluster without groups (6 when left out).
    pub fn node_bandwidth_gbps(&self) -> f64 {
        self.node_bandwidth_gbps.unwrap_or(6.0)
    }

    /// `node_disk_write_mbps` of a cluster without groups (2000 when left out).
    pub fn node_disk_write_mbps(&self) -> f64 {
        self.node_disk_write_mbps.unwrap_or(2000.0)
    }

    /// Whether the file declared `[[cluster.node_groups]]` (reports then show groups).
    pub fn has_groups(&self) -> bool {
        !self.node_groups.is_empty()
    }
}

/// The cluster's node keys: one form or the other, groups well formed, the total in bounds.
pub(crate) fn validate(s: &Scenario) -> Result<(), Invalid> {
    let c = &s.cluster;
    if c.node_groups.is_empty() {
        return match c.pods {
            Some(_) => Ok(()),
            // The workloads' replicas (`workloads::validate`).
            None if s.has_workloads() => Ok(()),
            None => fail(
                "cluster.pods",
                "required key is missing; add `pods = ...`, or describe the nodes with [[cluster.node_groups]]".into(),
            ),
        };
    }
    let given = |key: &str| match key {
        "pods_per_node" => c.pods_per_node.is_some(),
        "node_bandwidth_gbps" => c.node_bandwidth_gbps.is_some(),
        _ => c.node_disk_write_mbps.is_some(),
    };
    if let Some(key) = SINGLE_KEYS.into_iter().find(|k| given(k)) {
        return fail(
            &format!("cluster.{key}"),
            format!(
                "cluster.{key} and cluster.node_groups are both given; with node groups each group sets its own \
                 (pods_per_node, upload_gbps, download_gbps, disk_write_mbps): remove cluster.{key}"
            ),
        );
    }
    let mut total: u64 = 0;
    for (i, g) in c.node_groups.iter().enumerate() {
        let key = |k: &str| format!("cluster.node_groups[{i}].{k}");
        let plain = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-';
        if g.name.is_empty() || !g.name.chars().all(plain) {
            return fail(&key("name"), format!("must be a non-empty name of a-z, 0-9 and '-' (got {:?})", g.name));
        }
        if let Some(j) = c.node_groups[..i].iter().position(|o| o.name == g.name) {
            return fail(
                &key("name"),
                format!("{:?} is also the name of cluster.node_groups[{j}]; give each group its own name", g.name),
            );
        }
        if g.count == 0 {
            return fail(&key("count"), "must be at least 1 node (got 0); leave the group out instead".into());
        }
        if g.pods_per_node == 0 {
            return fail(&key("pods_per_node"), "must be at least 1 (got 0)".into());
        }
        for (k, v) in [("upload_gbps", g.upload_gbps), ("download_gbps", g.download_gbps)] {
            positive(&key(k), v)?;
        }
        positive(&key("disk_write_mbps"), g.disk_write_mbps)?;
        if g.zone.chars().any(char::is_control) {
            return fail(&key("zone"), "must be plain text without control characters".into());
        }
        total += u64::from(g.count) * u64::from(g.pods_per_node);
    }
    if total > u64::from(PODS_MAX) {
        return fail(
            "cluster.node_groups",
            format!(
                "add up to {total} pods (count x pods_per_node); at most {PODS_MAX}: the simulator keeps a record per pod and node"
            ),
        );
    }
    match c.pods {
        // With workloads, pods are their replicas and groups' pods_per_node a ceiling.
        Some(_) if s.has_workloads() => Ok(()),
        Some(pods) if u64::from(pods) != total => fail(
            "cluster.pods",
            format!(
                "is {pods} but cluster.node_groups hold {total} pods (count x pods_per_node); leave pods out, or make them agree"
            ),
        ),
        _ => Ok(()),
    }
}

/// After `validate`: the cluster as every later step reads it. Without groups the
/// single-node keys take their defaults (so the scenario serializes as before groups);
/// with groups `pods` is their total.
pub(crate) fn settle(c: &mut Cluster) {
    if c.node_groups.is_empty() {
        c.pods_per_node = Some(c.pods_per_node());
        c.node_bandwidth_gbps = Some(c.node_bandwidth_gbps());
        c.node_disk_write_mbps = Some(c.node_disk_write_mbps());
    } else {
        let total = c.node_groups.iter().map(|g| g.count.saturating_mul(g.pods_per_node)).fold(0, u32::saturating_add);
        c.pods = Some(total);
    }
}

fn one() -> u32 {
    1
}
fn six_gbps() -> f64 {
    6.0
}
fn ssd_mbps() -> f64 {
    2000.0
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
