//! The scenario a run replays: cluster, registry, image, pod lifecycle and modes.
//!
//! Every field carries its unit in its name. Defaults live in one place (the `Default`
//! impls below); `load.rs` parses and validates. A scenario file may leave any section
//! out and gets the defaults, which describe the seed benchmark (registry 10 Gbit/s,
//! peers 6 Gbit/s with SSD, 2 scheduler replicas).

use serde::{Deserialize, Serialize};

/// How a node obtains the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Every node pulls every layer straight from the registry.
    #[serde(rename = "oci")]
    Oci,
    /// Layers come through the local peer: scheduler, seed peers, other peers.
    #[serde(rename = "p2p")]
    P2p,
    /// Nydus-style: the pod starts once metadata and a startup working set are read by
    /// range requests through the peer; the rest is prefetched or read on demand.
    #[serde(rename = "p2p-lazy")]
    P2pLazy,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Oci, Mode::P2p, Mode::P2pLazy];
    pub fn name(self) -> &'static str {
        match self {
            Mode::Oci => "oci",
            Mode::P2p => "p2p",
            Mode::P2pLazy => "p2p-lazy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Report directory name and title, e.g. "tensorflow-500".
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Scheduler policy: "default", "dragonfly" or "kraken".
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default = "default_modes")]
    pub modes: Vec<Mode>,
    pub cluster: Cluster,
    #[serde(default)]
    pub registry: Registry,
    /// What the links carry besides payload (packet headers and framing).
    #[serde(default)]
    pub network: Network,
    /// The scheduler: its core's tuning (every key of `scheduler.toml`'s `[scheduler]`,
    /// same names, same defaults: the policy's preset) and what its requests cost.
    #[serde(default)]
    pub scheduler: SchedulerSection,
    /// The peers' core tuning: every key of `peerd.toml`'s `[peer]`, same names, same
    /// defaults (the policy's preset).
    #[serde(default)]
    pub peer: toml::Table,
    /// How each node's registry mirror resolves the image's manifest: the daemon's
    /// `[mirror]` keys of the same names (the rest of that table changes nothing here).
    #[serde(default)]
    pub mirror: Mirror,
    /// A `scheduler.toml` whose `[scheduler]` table the run takes (relative to this file);
    /// keys of this file's `[scheduler]` are laid over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_toml: Option<String>,
    /// A `peerd.toml` whose `[peer]` table the run takes, and the `[mirror]` keys below;
    /// this file's `[peer]` and `[mirror]` keys win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerd_toml: Option<String>,
    /// The image of a scenario with one Deployment; None with `[[workload]]` tables, which
    /// name their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// `[[workload]]`: several Deployments (`workloads.rs`); none: one of `[image]` on
    /// `cluster.pods` pods.
    #[serde(default, rename = "workload", skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<super::workloads::Workload>,
    #[serde(default)]
    pub pod: PodLifecycle,
    #[serde(default)]
    pub lazy: Lazy,
    #[serde(default)]
    pub sim: SimSettings,
    /// What moving bytes costs the CPU, against the nodes' cores (not modelled by default).
    #[serde(default, skip_serializing_if = "super::Cpu::is_default")]
    pub cpu: super::Cpu,
    /// The seed peers' preheat limits (peerd.toml's `[preheat]`), for workloads with
    /// `preheat_at_s`.
    #[serde(default, skip_serializing_if = "peer::core::PreheatLimits::is_default")]
    pub preheat: peer::core::PreheatLimits,
    /// Failures injected into the run.
    #[serde(default, skip_serializing_if = "Faults::is_empty")]
    pub faults: Faults,
    /// `[[churn.event]]`: nodes that fail or leave during the run (`churn.rs`).
    #[serde(default, skip_serializing_if = "super::Churn::is_empty")]
    pub churn: super::Churn,
    /// How `bench/fidelity.sh` emulates this scenario on real processes (the simulator
    /// itself ignores it): which client pulls and the image `e2e-oci-push` generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulation: Option<Emulation>,
}

/// A scenario's `[emulation]` table: what the fidelity harness runs for real.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emulation {
    /// The client every pod runs: "skopeo" (copy to a directory, no unpack) or
    /// "containerd" (`ctr images pull`, which unpacks).
    pub client: String,
    /// Random MiB per layer for `e2e-oci-push --layers-mib` (its first layer also holds
    /// busybox); the harness checks the pushed blobs against `[image] layer_bytes`.
    pub layers_mib: Vec<u32>,
}

fn default_seed() -> u64 {
    1
}
fn default_policy() -> String {
    "default".to_string()
}
fn default_modes() -> Vec<Mode> {
    Mode::ALL.to_vec()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Pods of the rollout (one Deployment of the image). Required without node groups;
    /// with them, the sum of `count x pods_per_node` (if written, it must equal that); with
    /// `[[workload]]`, their replicas' total (likewise). Read it through `pods()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<u32>,
    /// Pods placed on one node; pods on one node share that node's pull. Without node
    /// groups only (1 when left out); read it through `pods_per_node()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_per_node: Option<u32>,
    /// NIC rate of every node, both directions, in Gbit/s. Without node groups only (6 when
    /// left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_bandwidth_gbps: Option<f64>,
    /// Sustained disk write rate of every node (SSD); incoming bytes are written to disk,
    /// so a node's effective download rate is min(NIC, disk).
    /// Megabytes (10^6 bytes) per second, not megabits: SSDs are rated in MB/s.
    /// Without node groups only (2000 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_disk_write_mbps: Option<f64>,
    /// Dedicated seed peers (the only peers that go back to the registry in p2p modes).
    #[serde(default = "three")]
    pub seed_peers: u32,
    /// NIC rate of every seed peer, both directions, in Gbit/s.
    #[serde(default = "six_gbps")]
    pub seed_peer_bandwidth_gbps: f64,
    /// Disk write rate of every seed peer, in MB/s (megabytes) like `node_disk_write_mbps`.
    #[serde(default = "ssd_mbps")]
    pub seed_peer_disk_write_mbps: f64,
    /// Scheduler replicas; tasks are spread over them by consistent hash of the task id.
    #[serde(default = "two")]
    pub scheduler_replicas: u32,
    /// `[[cluster.node_groups]]`: nodes of several kinds (`groups.rs`); none: one group of
    /// the single-node keys above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_groups: Vec<super::groups::NodeGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Registry {
    pub egress_gbps: f64,
    /// Time to first byte of any request (manifest, blob or range).
    pub request_latency_ms: f64,
    /// Requests admitted per second; excess requests wait in line.
    pub qps_limit: f64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { egress_gbps: 10.0, request_latency_ms: 5.0, qps_limit: 5000.0 }
    }
}

/// A scenario's `[network]`: TCP/IP over Ethernet framing. Link rates (`*_gbps`) are what a
/// NIC or shaper passes, headers included; transfers move payload at `wire_efficiency()`
/// of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// IP packet size: 1500 on most networks, 9000 with jumbo frames.
    pub mtu_bytes: u32,
    /// IPv4 (20) and TCP (20, plus 12 of timestamp option, on by default in Linux).
    pub ip_tcp_header_bytes: u32,
    /// What the link counts per packet besides the IP packet: 38 on a real Ethernet wire
    /// (header 14, FCS 4, preamble 8, inter-frame gap 12); 14 where tbf shapes a veth (it
    /// counts the frame as the kernel holds it: header, no FCS or gap).
    pub link_overhead_bytes: u32,
    /// The standing queue of a busy link, as a one-way delay: what a small message (a piece
    /// request, a piece-map update) waits behind the bytes the links on its way already
    /// hold. Peer-to-peer traffic pays it once per message: a piece's first bytes reach the
    /// child `scheduler.rpc_latency_ms + 2 x queue_delay_ms` after it asks (the request's
    /// way and the bytes' way back), and a parent's children learn of a new piece
    /// `queue_delay_ms` after it arrived. 0 (the default) for links whose queues stay short
    /// (fq_codel, datacenter switches with ECN); the fidelity files give the delay measured
    /// under their tbf shapers.
    pub queue_delay_ms: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network { mtu_bytes: 1500, ip_tcp_header_bytes: 52, link_overhead_bytes: 38, queue_delay_ms: 0.0 }
    }
}

impl Network {
    /// Payload bytes per byte a link passes (1448 / 1538 = 0.941 by default).
    pub fn wire_efficiency(&self) -> f64 {
        let payload = f64::from(self.mtu_bytes.saturating_sub(self.ip_tcp_header_bytes));
        payload / f64::from(self.mtu_bytes + self.link_overhead_bytes)
    }
}

impl Scenario {
    /// A link's payload rate in bits/s, from its rate in Gbit/s.
    pub fn payload_bps(&self, link_gbps: f64) -> f64 {
        link_gbps * 1e9 * self.network.wire_efficiency()
    }
}

/// A scenario's `[mirror]`: the daemon's rule for manifests (`peer::core::ResolveRule`),
/// read by the same names as `peerd.toml`'s `[mirror]`. Oci mode (no mirror) and the
/// `dragonfly` replica (its proxy forwards manifest requests) ignore it
/// (`engine::Resolving`).
///
/// - `tag_ttl_ms > 0`: a mirror that must resolve the tag upstream GETs the manifest (not
///   HEAD), checks its digest and keeps it, so containerd's GET by digest that follows is
///   answered on the node. 0: each HEAD by tag goes to the registry as it came; so does
///   each GET by digest with `auth_check_ttl_ms = 0`.
/// - `resolve_via_seeds` (with a seed peer): for each key it keeps (a TTL above 0), the
///   mirror asks a seed peer's resolver (rendezvous pick over the seeds), which asks the
///   registry once for all the nodes asking at the time and answers the rest from its own
///   cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mirror {
    /// A tag resolved upstream is reused this long; 0: every resolution goes upstream.
    pub tag_ttl_ms: u64,
    /// A manifest by digest (and a client's credentials for it) is reused this long: the
    /// rule's `digest_ttl_ms`.
    pub auth_check_ttl_ms: u64,
    /// Normal nodes resolve what they keep through a seed peer instead of the registry.
    pub resolve_via_seeds: bool,
}

impl Default for Mirror {
    fn default() -> Self {
        let rule = peer::core::ResolveRule::default();
        Mirror { tag_ttl_ms: rule.tag_ttl_ms, auth_check_ttl_ms: rule.digest_ttl_ms, resolve_via_seeds: true }
    }
}

impl Mirror {
    /// The keys `[mirror]` takes, in the order a file writes them.
    pub const KEYS: [&'static str; 3] = ["tag_ttl_ms", "auth_check_ttl_ms", "resolve_via_seeds"];

    /// The rule every mirror and seed resolver of the run holds (no stale answers: the
    /// simulator has no registry outages).
    pub fn rule(&self) -> peer::core::ResolveRule {
        peer::core::ResolveRule {
            tag_ttl_ms: self.tag_ttl_ms,
            digest_ttl_ms: self.auth_check_ttl_ms,
            ..peer::core::ResolveRule::default()
        }
    }
}

/// `[faults]`: failures the run injects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// One scheduler replica stops (its state is lost) and comes back later, as a fresh
    /// instance. The daemons' rule applies (`hashring::replica_among`): once they notice, the
    /// replica's tasks go to their next choice, running downloads register there with the
    /// pieces they hold and completed ones announce themselves; back, it takes new work
    /// for its tasks and hears of their completed copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_outage: Option<ReplicaOutage>,
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        self.replica_outage.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaOutage {
    /// Which replica (0-based, below `cluster.scheduler_replicas`).
    pub replica: u32,
    /// When it stops, seconds from the start of the run.
    pub down_at_s: f64,
    /// When it answers again; none: it stays down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_at_s: Option<f64>,
    /// How long after it stops the daemons notice and leave it: a killed process resets
    /// their streams at once; a host that died is found by the next announce
    /// (`scheduler.announce_interval_ms`) or the HTTP/2 keepalive (20 s).
    #[serde(default = "notice_ms")]
    pub notice_ms: f64,
}

fn notice_ms() -> f64 {
    1000.0
}

/// A scenario's `[scheduler]`: the cost keys below, and any key of the core's
/// `SchedulerConfig` (`tuning`, checked by `SchedulerConfig::from_table` at load).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSection {
    #[serde(flatten)]
    pub cost: SchedulerCost,
    #[serde(flatten)]
    pub tuning: toml::Table,
}

/// Per-request service time of one scheduler replica (requests are served one at a time, as on
/// one core). The defaults are the real service's CPU per request on one core, end to end over
/// gRPC (`sched/benches/service_rpc_cost.rs`; figures in `sim/README.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerCost {
    /// Register, reschedule and any request that runs parent selection.
    pub schedule_service_us: f64,
    /// Piece and peer progress reports.
    pub report_service_us: f64,
    /// One-way network latency between a peer and the scheduler.
    pub rpc_latency_ms: f64,
}

impl Default for SchedulerCost {
    fn default() -> Self {
        SchedulerCost { schedule_service_us: 100.0, report_service_us: 3.0, rpc_latency_ms: 0.25 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Reference, for reports.
    pub reference: String,
    /// Compressed size of each layer blob, in bytes, in manifest order.
    pub layer_bytes: Vec<u64>,
    #[serde(default = "manifest_bytes")]
    pub manifest_bytes: u64,
    /// Image config blob size (fetched like a layer).
    #[serde(default = "config_bytes")]
    pub config_bytes: u64,
    /// Each layer's digest, in manifest order: layers of equal digest in two images are one
    /// blob (one scheduler task, fetched once per node). Left out: no layer is shared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_digests: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodLifecycle {
    /// Time from pod creation until kube-scheduler binds it to a node.
    pub schedule_delay_ms: f64,
    /// Extra uniform random delay [0, jitter) per pod, from the run's seed.
    pub schedule_jitter_ms: f64,
    /// containerd's max_concurrent_downloads: layers fetched at once per node.
    pub max_concurrent_downloads: u32,
    /// Decompress + untar rate per core, in MB/s of compressed layer bytes.
    pub unpack_mbps_per_core: f64,
    /// Cores a node spends on unpacking; a fraction where several emulated nodes share one
    /// machine's cores (the fidelity scenarios: 2 cores among 4 pods = 0.5).
    pub unpack_cores: f64,
    /// containerd 1.6's `ctr images pull` fetches every layer, then unpacks them (true);
    /// containerd 1.7 and later (and the CRI's pulls) unpack each layer as it arrives, in
    /// order (false).
    pub unpack_after_fetch: bool,
    /// From image ready to the container's process running.
    pub container_start_ms: f64,
}

impl Default for PodLifecycle {
    fn default() -> Self {
        PodLifecycle {
            schedule_delay_ms: 10.0,
            schedule_jitter_ms: 20.0,
            max_concurrent_downloads: 3,
            unpack_mbps_per_core: 150.0,
            unpack_cores: 2.0,
            unpack_after_fetch: false,
            container_start_ms: 500.0,
        }
    }
}

/// Nydus-style lazy loading (mode `p2p-lazy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lazy {
    /// RAFS bootstrap (metadata) read before the container can start.
    pub metadata_bytes: u64,
    /// Share of the image's bytes the container reads before it is "started".
    pub startup_working_set_fraction: f64,
    /// Size of one on-demand range read.
    pub range_read_bytes: u64,
    /// Range reads in flight at once per node (FUSE / fscache threads).
    pub range_reads_in_flight: u32,
    /// Fetch the rest of the image in the background after start.
    pub prefetch: bool,
    /// Mounting the RAFS filesystem (replaces unpack).
    pub mount_ms: f64,
}

impl Default for Lazy {
    fn default() -> Self {
        Lazy {
            metadata_bytes: 4_000_000,
            startup_working_set_fraction: 0.06,
            range_read_bytes: 1 << 20,
            range_reads_in_flight: 8,
            prefetch: true,
            mount_ms: 100.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    /// Bandwidth re-solve quantum; 0 re-solves at every change (exact, slow).
    pub quantum_us: f64,
    /// Stop a mode that has not finished by this virtual time.
    pub time_limit_s: f64,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings { quantum_us: 250.0, time_limit_s: 7200.0 }
    }
}

fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}
fn six_gbps() -> f64 {
    6.0
}
fn ssd_mbps() -> f64 {
    2000.0
}
fn manifest_bytes() -> u64 {
    2_000
}
fn config_bytes() -> u64 {
    8_000
}
