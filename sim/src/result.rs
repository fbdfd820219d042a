//! What one run produces: per mode, per pod timings and byte sources, registry egress over
//! time, and the headline metrics of `summary.json`. The engine fills these; `report/`
//! writes them out.

use crate::scenario::Mode;
use serde::Serialize;

/// Registry egress is recorded in buckets of this length (registry.csv rows).
pub const REGISTRY_BUCKET_NS: u64 = 100_000_000;

/// One pod of one mode. Times are seconds since the rollout began (t = 0: all pods created).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodRecord {
    pub pod: u32,
    pub node: u32,
    /// Its workload, by index in `RunResult::workloads` (0 for a scenario without them).
    pub workload: u32,
    /// kube-scheduler bound the pod to its node.
    pub scheduled_s: f64,
    /// The node began resolving the manifest (first pod of the node only; others share it).
    pub pull_start_s: f64,
    /// The node holds every byte it needs to start the pod: the whole image (oci, p2p) or
    /// metadata + startup working set (p2p-lazy).
    pub image_ready_s: f64,
    /// The node holds the whole image (p2p-lazy: after background prefetch; NaN if off).
    pub pull_done_s: f64,
    /// Unpack (oci, p2p) or mount (p2p-lazy) finished.
    pub unpacked_s: f64,
    /// The container's process is running: the pod's start time.
    pub started_s: f64,
    pub bytes_from_registry: u64,
    pub bytes_from_seed_peers: u64,
    pub bytes_from_peers: u64,
    /// Its node failed or left (`[[churn.event]]`) before it started: it never will
    /// (`started_s` is NaN), and start percentiles leave it out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

/// One mode of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeResult {
    pub mode: Mode,
    pub pods: Vec<PodRecord>,
    /// Bytes the registry sent in each `REGISTRY_BUCKET_NS` bucket, from t = 0.
    pub registry_egress_bytes_per_bucket: Vec<u64>,
    pub registry_bytes: u64,
    pub registry_requests: u64,
    /// From t = 0 until the last node holds the whole image (before unpack).
    pub makespan_s: f64,
    /// Discrete events the engine processed for this mode.
    pub events: u64,
    /// Requests each scheduler replica served, and the longest queueing delay seen.
    pub scheduler_requests: u64,
    pub scheduler_max_queue_delay_s: f64,
    /// Requests sent to a stopped replica (`faults.replica_outage`), lost.
    #[serde(default)]
    pub scheduler_requests_lost: u64,
    /// Back-to-source orders the scheduler gave (p2p modes).
    pub back_to_source_orders: u64,
    /// Downloads' asks for the origin (`AskBackToSource`), admitted or not.
    pub back_to_source_asks: u64,
    /// Piece requests refused as busy after `upload_slot_wait_ns` in a parent's line.
    pub busy_refusals: u64,
    /// Pieces normal nodes received: mean and largest hops from the registry (1: read from
    /// it, 2: from a seed peer that read it, ...): how deep the distribution trees are.
    pub piece_hops_mean: f64,
    pub piece_hops_max: u32,
    /// Bytes normal nodes sent one another over what their uploads could have sent from
    /// t = 0 to the makespan: how much of the cluster's upload the policy used.
    pub node_upload_used: f64,
    /// Preheat jobs (`[[workload]] preheat_at_s`), one per image, in image order; empty
    /// without any (and in oci, which has no seed peers).
    pub preheats: Vec<PreheatRecord>,
    /// What node churn (`[[churn.event]]`) did; None for a scenario without churn.
    pub churn: Option<ChurnRecord>,
    /// Every piece transfer, when the run was asked for them (`RunOptions::trace_pieces`);
    /// empty otherwise. Not in `summary.json`.
    #[serde(skip)]
    pub piece_trace: Vec<PieceTransfer>,
    /// Wall-clock seconds spent simulating this mode.
    pub wall_s: f64,
}

/// A host in a piece trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceHost {
    Registry,
    /// A normal node, by its index (`pods.csv`'s `node`).
    Node(u32),
    /// A seed peer, from 0.
    Seed(u32),
}

impl std::fmt::Display for TraceHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceHost::Registry => f.write_str("registry"),
            TraceHost::Node(n) => write!(f, "node{n}"),
            TraceHost::Seed(n) => write!(f, "seed{n}"),
        }
    }
}

/// How a traced piece transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEnd {
    /// The piece arrived (a duplicate of one already held counts too).
    Stored,
    /// Cancelled by the download (a redundant copy, a timeout) or its parent leaving.
    Cancelled,
    /// Refused busy after waiting `upload_slot_wait_ns` for an upload slot.
    Busy,
}

impl TransferEnd {
    pub fn name(self) -> &'static str {
        match self {
            TransferEnd::Stored => "stored",
            TransferEnd::Cancelled => "cancelled",
            TransferEnd::Busy => "busy",
        }
    }
}

/// One piece transfer of a traced run: who asked whom for which piece, when, and how it
/// ended (`pieces.csv`; `bench/piece_trace.py` gives the same for a real run).
#[derive(Debug, Clone, PartialEq)]
pub struct PieceTransfer {
    pub receiver: TraceHost,
    /// The blob (layer, config, bootstrap) by its index in the run.
    pub blob: u32,
    pub piece: u32,
    pub source: TraceHost,
    pub requested_s: f64,
    pub ended_s: f64,
    /// The piece's bytes when stored, else 0.
    pub bytes: u64,
    pub end: TransferEnd,
}

/// Node churn in one mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChurnRecord {
    /// Nodes (or seed peers) that crashed, and that left telling the scheduler.
    pub nodes_failed: u32,
    pub nodes_left: u32,
    /// Pods whose node went before they started.
    pub pods_lost: u64,
    /// Times a download found a parent gone: a transfer broken mid-way, a connection
    /// refused, a piece-map stream broken.
    pub parent_failures: u64,
    /// Reschedule requests the downloads sent (churn or not: compare with a run without).
    pub reschedules: u64,
}

/// One preheat job of a mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreheatRecord {
    /// The image's reference.
    pub image: String,
    /// Which seed peer ran it (0 = the first).
    pub seed_peer: u32,
    pub ordered_s: f64,
    /// Every blob of the image on the seed; NaN when the run ended before.
    pub done_s: f64,
}

/// A whole run of one scenario under one policy and seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub policy: String,
    pub image_bytes: u64,
    /// Kumar & Ross minimum distribution time for the p2p setting.
    pub lower_bound_s: f64,
    /// What manifest requests and one node's link cost any p2p rollout
    /// (`engine::request_floor_s`); printed beside the bound, not in summary.json.
    pub request_floor_s: f64,
    pub modes: Vec<ModeResult>,
    /// The scenario's `[[cluster.node_groups]]` in file order, with their nodes; empty
    /// when it declares none (one kind of node: reports show no groups).
    pub node_groups: Vec<GroupNodes>,
    /// The scenario's `[[workload]]` names in file order (`PodRecord::workload` indexes
    /// them); empty when it declares none (one Deployment: reports show no workloads).
    pub workloads: Vec<String>,
    /// The cores' configuration the run used, as TOML (`[scheduler]` and `[peer]`, every
    /// key): what to give `scheduler.toml` and `peerd.toml` to deploy what was simulated.
    pub config_toml: String,
}

/// One node group of a run: which nodes (`PodRecord::node`) are its.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupNodes {
    pub name: String,
    pub first_node: u32,
    pub nodes: u32,
    pub zone: String,
}

impl GroupNodes {
    pub fn holds(&self, node: u32) -> bool {
        (self.first_node..self.first_node + self.nodes).contains(&node)
    }
}
