//! `[[workload]]`: several Deployments, each with its image, replicas, start offset,
//! rollout strategy and the node groups it may land on.
//!
//! A scenario names its image either once (`[image]`, one Deployment of `cluster.pods`
//! pods created at t = 0, exactly as before workloads existed) or per workload, never both.
//!
//! - **Placement** (`Rollout::of`): workloads in file order, each pod on the allowed node
//!   with the fewest pods so far (of every workload), the lowest node number on a tie, never
//!   more than the node's `pods_per_node` (kube-scheduler's least-allocated spreading, with
//!   pods as the only resource). No randomness: the same file gives the same placement.
//! - **Shared layers**: a layer's identity is its entry of `layer_digests` when the image
//!   lists them (equal digests are one blob, one task of the scheduler, fetched once per
//!   node), else its image reference and index (no sharing). Two workloads naming the same
//!   `reference` run the same image: their tables must be equal, and a node running both
//!   pulls it once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::groups::GroupLayout;
use super::limits::PODS_MAX;
use super::model::{Image, Scenario};
use super::validate::{fail, Invalid};

/// One Deployment of a scenario with `[[workload]]` tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Unique, of `a-z`, `0-9` and `-`: names the workload in reports and sweep keys
    /// (`workload.<name>.replicas`).
    pub name: String,
    /// Its image, as `[image]` (`[workload.image]`).
    pub image: Image,
    /// Pods of the Deployment.
    pub replicas: u32,
    /// When its rollout begins, seconds from t = 0.
    #[serde(default)]
    pub start_s: f64,
    /// "all-at-once" (every pod created at `start_s`) or "rolling".
    #[serde(default)]
    pub strategy: Strategy,
    /// Rolling only: new pods beyond `replicas` while old ones still run (Kubernetes
    /// `maxSurge`: a number of pods or a percentage of `replicas`, rounded up; default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<PodCount>,
    /// Rolling only: pods that may be unavailable during the update (`maxUnavailable`: a
    /// number or a percentage of `replicas`, rounded down; default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<PodCount>,
    /// Rolling only: a new pod counts as ready this long after its container started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_delay_ms: Option<f64>,
    /// Names of `[[cluster.node_groups]]` its pods may run on; empty: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_groups: Vec<String>,
    /// When a preheat job of its image starts, seconds from t = 0 (`p2pctl preheat`, or the
    /// registry's push webhook): the seed peer the scheduler picks fetches every blob of the
    /// image, `[preheat] blobs_in_flight` at a time. None: no preheat. p2p modes only (oci
    /// has no seed peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preheat_at_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    #[default]
    #[serde(rename = "all-at-once")]
    AllAtOnce,
    /// A Deployment update replacing a running old version: new pods are created as earlier
    /// new ones become ready, within `max_surge` and `max_unavailable`.
    #[serde(rename = "rolling")]
    Rolling,
}

/// A number of pods, or a percentage of the replicas (`2` or `"25%"`), as Kubernetes writes
/// `maxSurge` and `maxUnavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodCount {
    Pods(u32),
    Percent(u32),
}

impl PodCount {
    /// Pods out of `replicas`: a percentage rounded up (`round_up`, maxSurge) or down.
    pub fn of(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            PodCount::Pods(n) => n,
            PodCount::Percent(p) => {
                let scaled = u64::from(p) * u64::from(replicas);
                let pods = if round_up { scaled.div_ceil(100) } else { scaled / 100 };
                pods as u32
            }
        }
    }
}

impl Serialize for PodCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PodCount::Pods(n) => s.serialize_u32(*n),
            PodCount::Percent(p) => s.serialize_str(&format!("{p}%")),
        }
    }
}

impl<'de> Deserialize<'de> for PodCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PodCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number of pods or a percentage of the replicas in quotes, e.g. 2 or \"25%\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PodCount, E> {
                u32::try_from(v).map(PodCount::Pods).map_err(|_| E::custom(format!("{v} pods: {PERCENT_HINT}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PodCount, E> {
                u32::try_from(v).map(PodCount::Pods).map_err(|_| E::custom(format!("{v} pods: {PERCENT_HINT}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PodCount, E> {
                let pct = v.strip_suffix('%').and_then(|n| n.trim().parse::<u32>().ok()).filter(|p| *p <= 100);
                pct.map(PodCount::Percent).ok_or_else(|| E::custom(format!("{v:?}: {PERCENT_HINT}")))
            }
        }
        d.deserialize_any(V)
    }
}

const PERCENT_HINT: &str =
    "write a whole number of pods (e.g. 2) or a percentage from 0 to 100 in quotes (e.g. \"25%\")";

/// `max_surge` and `max_unavailable` when a rolling workload leaves them out (Kubernetes').
const ROLLING_DEFAULT: PodCount = PodCount::Percent(25);

/// A rolling workload's gate, in pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub readiness_delay_ms: u64,
}

impl Rolling {
    /// New pods that may exist once `ready` of them are ready: an update of `replicas` old
    /// pods keeps at most `replicas + max_surge` pods and at least `replicas -
    /// max_unavailable` ready ones, so old pods go as new ones become ready and
    /// `max_surge + max_unavailable + ready` new ones may exist (the Deployment
    /// controller's arithmetic with every old pod ready).
    pub fn allowed(&self, replicas: u32, ready: u32) -> u32 {
        self.max_surge.saturating_add(self.max_unavailable).saturating_add(ready).min(replicas)
    }
}

/// One workload as the engine runs it: its image (by index in `Rollout::images`), its pods
/// (numbered after the previous workload's) and the node of each.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadLayout {
    pub name: String,
    pub image: usize,
    pub first_pod: u32,
    /// The node of each of its pods, in pod order.
    pub nodes: Vec<u32>,
    /// When its rollout begins, nanoseconds.
    pub start_ns: u64,
    /// None: every pod is created at `start_ns`.
    pub rolling: Option<Rolling>,
    /// When its image's preheat starts, nanoseconds; None: no preheat.
    pub preheat_ns: Option<u64>,
}

/// Every workload of a run and the distinct images they run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub images: Vec<Image>,
    pub workloads: Vec<WorkloadLayout>,
}

/// Name of the one workload of a scenario written with `[image]` (reports leave it out).
pub const IMPLICIT_WORKLOAD: &str = "all";

impl Rollout {
    /// The rollout of a validated scenario: its `[image]` on every pod of the cluster's
    /// layout, or its workloads placed on their nodes.
    pub fn of(s: &Scenario) -> Rollout {
        match place(s) {
            Ok(r) => r,
            Err(e) => panic!("placement of a validated scenario failed: {}: {}", e.key, e.message),
        }
    }

    pub fn pods(&self) -> u32 {
        self.workloads.iter().map(|w| w.nodes.len() as u32).sum()
    }
}

impl Scenario {
    /// Whether the file declared `[[workload]]` tables (reports then show workloads).
    pub fn has_workloads(&self) -> bool {
        !self.workloads.is_empty()
    }

    /// The distinct images of the run: `[image]`, or the workloads' by reference.
    pub fn images(&self) -> Vec<&Image> {
        if let Some(image) = &self.image {
            return vec![image];
        }
        let mut out: Vec<&Image> = Vec::new();
        for w in &self.workloads {
            if !out.iter().any(|i| i.reference == w.image.reference) {
                out.push(&w.image);
            }
        }
        out
    }
}

/// The placement, or why it cannot be done.
fn place(s: &Scenario) -> Result<Rollout, Invalid> {
    let layout = node_layout(s);
    let Some(image) = &s.image else { return place_workloads(s, &layout) };
    let mut nodes = Vec::with_capacity(s.cluster.pods() as usize);
    for g in &layout {
        nodes.extend((g.first_pod..g.first_pod + g.pods).map(|p| g.node_of(p)));
    }
    let w = WorkloadLayout {
        name: IMPLICIT_WORKLOAD.into(),
        image: 0,
        first_pod: 0,
        nodes,
        start_ns: 0,
        rolling: None,
        preheat_ns: None,
    };
    Ok(Rollout { images: vec![image.clone()], workloads: vec![w] })
}

/// The cluster's groups as they are laid out; without groups, a workload scenario has as
/// many nodes as its pods need at `pods_per_node` each.
fn node_layout(s: &Scenario) -> Vec<GroupLayout> {
    let mut c = s.cluster.clone();
    if s.has_workloads() && !c.has_groups() {
        c.pods = Some(replicas_total(s).min(u64::from(PODS_MAX)) as u32);
    }
    c.layout()
}

fn replicas_total(s: &Scenario) -> u64 {
    s.workloads.iter().map(|w| u64::from(w.replicas)).sum()
}

fn place_workloads(s: &Scenario, layout: &[GroupLayout]) -> Result<Rollout, Invalid> {
    let node_total: usize = layout.iter().map(|g| g.nodes as usize).sum();
    let mut used = vec![0u32; node_total];
    let mut images: Vec<Image> = Vec::new();
    let mut out = Vec::new();
    let mut first_pod = 0u32;
    for (i, w) in s.workloads.iter().enumerate() {
        let image = match images.iter().position(|im| im.reference == w.image.reference) {
            Some(k) => k,
            None => {
                images.push(w.image.clone());
                images.len() - 1
            }
        };
        let allowed = |g: &GroupLayout| w.node_groups.is_empty() || w.node_groups.contains(&g.name);
        // Least allocated first, then the lowest node: a min-heap of (pods, node).
        let mut heap: BinaryHeap<Reverse<(u32, u32)>> = BinaryHeap::new();
        for g in layout.iter().filter(|g| allowed(g)) {
            for n in g.first_node..g.first_node + g.nodes {
                if used[n as usize] < g.pods_per_node {
                    heap.push(Reverse((used[n as usize], n)));
                }
            }
        }
        let cap_of = |n: u32| {
            layout.iter().find(|g| (g.first_node..g.first_node + g.nodes).contains(&n)).map_or(0, |g| g.pods_per_node)
        };
        let mut nodes = Vec::with_capacity(w.replicas as usize);
        for _ in 0..w.replicas {
            let Some(Reverse((pods, n))) = heap.pop() else {
                return Err(Invalid {
                    key: format!("workload[{i}].replicas"),
                    message: format!(
                        "{} pods do not fit: its nodes ({}) have room for {} more (pods_per_node of each group, after the workloads above); lower replicas, allow more node groups or raise counts or pods_per_node",
                        w.replicas,
                        if w.node_groups.is_empty() { "every group".to_string() } else { w.node_groups.join(", ") },
                        nodes.len()
                    ),
                });
            };
            nodes.push(n);
            used[n as usize] = pods + 1;
            if pods + 1 < cap_of(n) {
                heap.push(Reverse((pods + 1, n)));
            }
        }
        let rolling = (w.strategy == Strategy::Rolling).then(|| {
            let surge = w.max_surge.unwrap_or(ROLLING_DEFAULT).of(w.replicas, true);
            let mut unavailable = w.max_unavailable.unwrap_or(ROLLING_DEFAULT).of(w.replicas, false);
            if surge == 0 && unavailable == 0 {
                // As the Deployment controller does, so the update can progress.
                unavailable = 1;
            }
            Rolling {
                max_surge: surge,
                max_unavailable: unavailable,
                readiness_delay_ms: w.readiness_delay_ms.unwrap_or(0.0).round() as u64,
            }
        });
        out.push(WorkloadLayout {
            name: w.name.clone(),
            image,
            first_pod,
            nodes,
            start_ns: (w.start_s * 1e9).round() as u64,
            rolling,
            preheat_ns: w.preheat_at_s.map(|s| (s * 1e9).round() as u64),
        });
        first_pod += w.replicas;
    }
    Ok(Rollout { images, workloads: out })
}

/// After `validate` and the groups' `settle`: with workloads, `cluster.pods` is their
/// replicas' total.
pub(crate) fn settle(s: &mut Scenario) {
    if s.has_workloads() {
        s.cluster.pods = Some(replicas_total(s) as u32);
    }
}

/// Longest accepted start offset or readiness delay: a day.
const OFFSET_MAX_S: f64 = 86_400.0;

/// `[image]` or `[[workload]]`, each workload well formed, the total in bounds, the
/// placement possible. Runs after the cluster's checks.
pub(crate) fn validate(s: &Scenario) -> Result<(), Invalid> {
    if s.workloads.is_empty() {
        return Ok(());
    }
    if s.image.is_some() {
        return fail(
            "image",
            "[image] and [[workload]] are both given; with workloads each names its own image in [workload.image]: \
             move [image] into a workload, or remove the [[workload]] tables"
                .into(),
        );
    }
    let total = replicas_total(s);
    if total > u64::from(PODS_MAX) {
        return fail(
            "workload",
            format!(
                "replicas add up to {total} pods; at most {PODS_MAX}: the simulator keeps a record per pod and node"
            ),
        );
    }
    if let Some(pods) = s.cluster.pods {
        if u64::from(pods) != total {
            return fail(
                "cluster.pods",
                format!("is {pods} but the workloads' replicas add up to {total}; leave pods out, or make them agree"),
            );
        }
    }
    for (i, w) in s.workloads.iter().enumerate() {
        one(s, i, w)?;
    }
    place(s).map(|_| ())
}

fn one(s: &Scenario, i: usize, w: &Workload) -> Result<(), Invalid> {
    let key = |k: &str| format!("workload[{i}].{k}");
    let plain = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-';
    if w.name.is_empty() || !w.name.chars().all(plain) {
        return fail(&key("name"), format!("must be a non-empty name of a-z, 0-9 and '-' (got {:?})", w.name));
    }
    if let Some(j) = s.workloads[..i].iter().position(|o| o.name == w.name) {
        return fail(
            &key("name"),
            format!("{:?} is also the name of workload[{j}]; give each workload its own name", w.name),
        );
    }
    super::validate::image_at(&key("image"), &w.image)?;
    if let Some(j) = s.workloads[..i].iter().position(|o| o.image.reference == w.image.reference && o.image != w.image)
    {
        return fail(
            &key("image.reference"),
            format!(
                "{:?} is also workload[{j}]'s image, with other sizes or digests; one reference is one image: make the tables equal, or change the reference",
                w.image.reference
            ),
        );
    }
    shared_layers_agree(s, i)?;
    if w.replicas == 0 {
        return fail(&key("replicas"), "must be at least 1 pod (got 0); leave the workload out instead".into());
    }
    if !(w.start_s.is_finite() && (0.0..=OFFSET_MAX_S).contains(&w.start_s)) {
        return fail(
            &key("start_s"),
            format!("must be a finite number from 0 to {OFFSET_MAX_S} s (got {})", w.start_s),
        );
    }
    if let Some(at) = w.preheat_at_s {
        if !(at.is_finite() && (0.0..=OFFSET_MAX_S).contains(&at)) {
            return fail(
                &key("preheat_at_s"),
                format!("must be a finite number from 0 to {OFFSET_MAX_S} s (got {at})"),
            );
        }
    }
    if w.strategy == Strategy::AllAtOnce {
        let rolling_keys = [
            ("max_surge", w.max_surge.is_some()),
            ("max_unavailable", w.max_unavailable.is_some()),
            ("readiness_delay_ms", w.readiness_delay_ms.is_some()),
        ];
        if let Some((k, _)) = rolling_keys.iter().find(|(_, given)| *given) {
            return fail(
                &key(k),
                format!("applies to strategy = \"rolling\" only; set strategy = \"rolling\" or remove {k}"),
            );
        }
    } else {
        if let Some(PodCount::Pods(0) | PodCount::Percent(0)) = w.max_surge {
            if let Some(PodCount::Pods(0) | PodCount::Percent(0)) = w.max_unavailable {
                return fail(
                    &key("max_unavailable"),
                    "max_surge and max_unavailable are both 0: the update could never start; make one of them above 0"
                        .into(),
                );
            }
        }
        let d = w.readiness_delay_ms.unwrap_or(0.0);
        if !(d.is_finite() && (0.0..=OFFSET_MAX_S * 1e3).contains(&d)) {
            return fail(
                &key("readiness_delay_ms"),
                format!("must be a finite number from 0 to {} ms (got {d})", OFFSET_MAX_S * 1e3),
            );
        }
    }
    for (j, g) in w.node_groups.iter().enumerate() {
        let names: Vec<&str> = s.cluster.node_groups.iter().map(|g| g.name.as_str()).collect();
        if !names.contains(&g.as_str()) {
            let have = if names.is_empty() {
                "the cluster declares no [[cluster.node_groups]]; remove node_groups or declare the groups".to_string()
            } else {
                format!("the node groups are {}", names.join(", "))
            };
            return fail(&format!("workload[{i}].node_groups[{j}]"), format!("{g:?} is not a node group; {have}"));
        }
    }
    Ok(())
}

/// A digest listed by two images (or twice) names one blob: the same size everywhere.
fn shared_layers_agree(s: &Scenario, i: usize) -> Result<(), Invalid> {
    let w = &s.workloads[i];
    for (k, digest) in w.image.layer_digests.iter().enumerate() {
        let bytes = w.image.layer_bytes[k];
        let earlier = s.workloads[..=i].iter().enumerate().flat_map(|(j, o)| {
            let upto = if j == i { k } else { o.image.layer_digests.len() };
            o.image.layer_digests[..upto].iter().zip(&o.image.layer_bytes).map(move |(d, b)| (j, d, *b))
        });
        for (j, d, b) in earlier {
            if d == digest && b != bytes {
                return fail(
                    &format!("workload[{i}].image.layer_bytes[{k}]"),
                    format!(
                        "is {bytes} but digest {digest:?} is {b} bytes in workload[{j}]; one digest is one blob: make the sizes equal or the digests differ"
                    ),
                );
            }
            if d == digest && j == i {
                return fail(
                    &format!("workload[{i}].image.layer_digests[{k}]"),
                    format!("{digest:?} is listed twice in this image; list each layer once"),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod tests;
