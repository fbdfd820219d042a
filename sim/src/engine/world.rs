//! One mode of one scenario: the event loop, the registry, the scheduler replicas and the
//! hosts. Decisions come from `sched::core` (parents, back-to-source, seeds) and
//! `peer::core` (which piece from whom, when to reschedule); this file only carries
//! their inputs and outputs through virtual time and the bandwidth model.

use super::blobs::{BlobPlan, ImagePlan};
use super::bound;
use super::events::{Event, EventQueue};
use crate::net::{Completion, FlowNet, NodeIx, TimeNs};
use crate::result::{ModeResult, PieceTransfer, PodRecord, TraceHost, TransferEnd, REGISTRY_BUCKET_NS};
use crate::scenario::{Mode, Rolling, Rollout, Scenario};
use peer::core::resolve::Lookup;
use peer::core::{Addressing, PeerAction, PeerConfig, ResolveCache, Source, TaskDownload, UploadSlots};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sched::core::{
    hashring, Decision, HostId, HostInfo, HostKind, PeerId, PieceReport, RegisterPeer, Scheduler, TaskId,
};
use sched::Policy;
use std::collections::BTreeMap;

mod churn;
mod preheat;

pub(crate) const NS_PER_S_F: f64 = 1e9;

fn ms(v: f64) -> TimeNs {
    (v * 1e6).round() as TimeNs
}

/// A request to a scheduler replica.
#[derive(Debug, Clone)]
pub(crate) enum SchedRequest {
    Register(RegisterPeer),
    Pieces(PeerId, Vec<PieceReport>),
    ParentFailed(PeerId, PeerId),
    Reschedule(PeerId, Vec<PeerId>),
    AskBackToSource(PeerId),
    WantsAll(PeerId),
    Finished(PeerId),
    /// A completed download made known to a replica that had not heard of it (failover).
    RegisterCompleted(RegisterPeer),
    /// A host's daemon leaves (`[[churn.event]]`, `LeaveHost`).
    HostLeft(HostId),
    /// Nobody answered a seed trigger (the service's deadline).
    SeedUnavailable(TaskId, HostId),
}

struct Replica {
    core: Scheduler,
    busy_until: TimeNs,
    timer_armed: Option<TimeNs>,
    /// Stopped (`faults.replica_outage`): requests sent to it are lost.
    dead: bool,
    /// Bumped when it stops: requests and timers of an earlier life are dropped.
    life: u32,
}

/// One blob download by one host, through the peer core.
struct PeerTask {
    host: usize,
    blob: usize,
    /// The pull that opened it (its bytes are that pull's); None on a seed peer.
    pull: Option<usize>,
    dl: TaskDownload,
    is_seed: bool,
    /// Peers that hold this one as a parent (receivers of "has piece" notices).
    children: Vec<PeerId>,
    origin_stream_open: bool,
    deadline_armed: Option<TimeNs>,
    done: bool,
    /// Registered with the scheduler; false for a download the plan sends straight to the
    /// origin (`TaskDownload::skips_scheduler`), whose reports go nowhere.
    registered: bool,
    /// The scheduler replica it registered at (its requests go there).
    replica: usize,
    /// Per piece held: hops from the registry (1: read from it; a parent's + 1).
    hops: Vec<u8>,
    /// Its piece transfers neither finished nor cancelled, oldest first: where a cancel
    /// looks (all transfers ever would be millions at 10,000 nodes).
    open: Vec<usize>,
}

/// What a mirror or a seed's resolver asks about the image: the tag (containerd's first
/// request) or the manifest by digest (its second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ManifestKey {
    Tag,
    Digest,
}

impl ManifestKey {
    fn addressing(self) -> Addressing {
        match self {
            ManifestKey::Tag => Addressing::Tag,
            ManifestKey::Digest => Addressing::Digest,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A manifest key of one image of the run: what mirrors and resolvers keep.
type ImageKey = (usize, ManifestKey);

/// One registry request of a seed peer's resolver, and the pulls its answer goes to.
struct ResolverFetch {
    seed: usize,
    image: usize,
    key: ManifestKey,
    waiters: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
enum TransferKind {
    Piece {
        dst: PeerId,
        piece: u32,
        from: Source,
    },
    /// A whole blob straight from the registry (oci mode): position `k` of a pull's image.
    Blob {
        pull: usize,
        k: usize,
    },
    /// A manifest's body reaching a node's mirror for a pull, from the registry (`from:
    /// None`) or from a seed peer's resolver (its host).
    Manifest {
        pull: usize,
        key: ManifestKey,
        from: Option<usize>,
    },
    /// A manifest's body reaching a seed peer's resolver from the registry.
    ResolverFetch {
        fetch: usize,
    },
}

struct Transfer {
    kind: TransferKind,
    bytes: u64,
    requested_ns: TimeNs,
    flow: Option<crate::net::FlowId>,
    cancelled: bool,
    /// Holds one of its source host's upload slots (peer pieces only).
    holds_slot: bool,
}

/// A node's pull of one image, and the pods on the node that run it. Positions (`k`) are
/// the image's: config, layers, and in p2p-lazy the bootstrap.
struct Pull {
    node: usize,
    image: usize,
    pods: Vec<u32>,
    /// Per pod, when it is bound to the node (`TimeNs::MAX` until a rolling update creates it).
    scheduled_ns: Vec<TimeNs>,
    pull_started: Option<TimeNs>,
    /// Per position: done time.
    blob_done: Vec<Option<TimeNs>>,
    next_blob: usize,
    active_blobs: usize,
    next_unpack: usize,
    unpack_free_ns: TimeNs,
    unpacked_ns: Option<TimeNs>,
    image_ready_ns: Option<TimeNs>,
    pull_done_ns: Option<TimeNs>,
    bytes_registry: u64,
    bytes_seed: u64,
    bytes_peers: u64,
    /// p2p-lazy: range reads (blob, piece range) left, and in flight.
    reads_next: usize,
    reads_in_flight: Vec<usize>,
    reads_done: usize,
    metadata_done: bool,
}

/// A rolling update in progress: its pods, and how many are created and ready.
struct RollingRun {
    gate: Rolling,
    first_pod: u32,
    replicas: u32,
    created: u32,
    ready: u32,
}

pub(crate) struct World<'a> {
    sc: &'a Scenario,
    mode: Mode,
    /// The policy of the scheduler and of every peer.
    policy: Policy,
    pub(crate) now: TimeNs,
    pub(crate) queue: EventQueue,
    net: FlowNet,
    registry: NodeIx,
    registry_next_slot_ns: f64,
    registry_requests: u64,
    rng: ChaCha8Rng,
    replicas: Vec<Replica>,
    /// Per replica, whether the daemons count it as answering (`hashring::replica_among`).
    replicas_up: Vec<bool>,
    /// Requests sent to a stopped replica.
    scheduler_requests_lost: u64,
    scheduler_requests: u64,
    scheduler_max_queue_ns: TimeNs,
    peer_cfg: PeerConfig,
    /// Host index -> net node; hosts are nodes then seed peers.
    host_net: Vec<NodeIx>,
    host_slots: Vec<UploadSlots<usize>>,
    /// Per host: the `SlotWaitEnds` event queued, if any.
    slot_timer_armed: Vec<Option<TimeNs>>,
    /// Normal nodes (hosts 0..n_nodes; seed peers after them).
    n_nodes: usize,
    pulls: Vec<Pull>,
    /// Per normal node, its pulls in the order they were laid out.
    node_pulls: Vec<Vec<usize>>,
    /// The run's images: each one's blobs, manifest and (p2p-lazy) working set.
    images: Vec<ImagePlan>,
    /// Per pod: its pull and its index among the pull's pods.
    pod_pull: Vec<(u32, u32)>,
    /// Per pod, its workload (`Rollout::workloads`).
    pod_workload: Vec<u32>,
    /// Per pod, from its creation to its binding (schedule delay + jitter).
    pod_bind_ns: Vec<TimeNs>,
    /// Per workload, its rolling update's state (None: all at once).
    rolling: Vec<Option<RollingRun>>,
    /// Per pod of a rolling update, whether its `PodReady` is queued (its binding and its
    /// image's unpack may happen in the same instant, in either order); empty without one.
    ready_queued: Vec<bool>,
    /// oci: per normal node and blob, fetching (false) or held (true): a blob two pulls of
    /// a node share is fetched once (containerd's content store).
    oci_held: Vec<Vec<Option<bool>>>,
    /// Distinct blob sizes: every image's config and layers, and in p2p-lazy each one's
    /// RAFS bootstrap last.
    blobs: Vec<u64>,
    blob_keys: Vec<u64>,
    /// (host, blob) -> peer.
    host_blob_peer: Vec<Vec<Option<PeerId>>>,
    peers: Vec<PeerTask>,
    /// Requested transfers by id. An id is recycled (`free_transfers`) once nothing can
    /// refer to it any more: a million piece transfers per 1,000 nodes would otherwise
    /// stay in memory to the end (1 GiB at capacity-10k).
    transfers: Vec<Transfer>,
    free_transfers: Vec<usize>,
    requested_transfers: u64,
    rpc_ns: TimeNs,
    /// `network.queue_delay_ms`: a peer-to-peer message's wait in busy links' queues.
    queue_ns: TimeNs,
    pub(crate) events: u64,
    /// Piece requests refused as busy after waiting `upload_slot_wait_ns`.
    busy_refusals: u64,
    /// Pieces normal nodes received, the sum and largest of their hops from the registry.
    hop_pieces: u64,
    hop_sum: u64,
    hop_max: u8,
    /// All normal nodes' upload in P2P, bits/s (each its link, or its own limit).
    node_upload_bps: f64,
    /// Per normal node, its group's zone: the IDC and location its host announces.
    host_zones: Vec<String>,
    back_to_source_asks: u64,
    /// Each node's registry mirror (the daemon's `ResolveCache`); in oci mode and under the
    /// dragonfly replica, containerd's requests passed on as they come (zero TTLs).
    mirrors: Vec<ResolveCache<ImageKey, ()>>,
    /// Per image and key, the seed host whose resolver the mirrors ask (rendezvous over the
    /// seeds); None: they ask the registry (`bound::Resolving`).
    resolver_of: Vec<[Option<usize>; 2]>,
    /// Each seed peer's resolver, by seed (host - nodes).
    resolvers: Vec<ResolveCache<ImageKey, ()>>,
    /// Per seed, the registry request a `Join` waits for, by key.
    resolver_asking: Vec<BTreeMap<ImageKey, usize>>,
    resolver_fetches: Vec<ResolverFetch>,
    /// Preheat jobs and the seeds' queues of them.
    preheats: preheat::Preheats,
    /// Nodes that failed or left (`[[churn.event]]`).
    churn: churn::Churn,
    /// Every piece transfer's end, when traced (`World::traced`).
    trace: Option<Vec<PieceTransfer>>,
    /// Reschedule requests the downloads sent.
    reschedules: u64,
    completions: Vec<Completion>,
    actions: Vec<PeerAction>,
}

impl<'a> World<'a> {
    pub(crate) fn new(sc: &'a Scenario, mode: Mode, policy: Policy) -> anyhow::Result<World<'a>> {
        // The configuration production runs: the scenario's tables read by the cores.
        let (sched_cfg, peer_cfg) =
            crate::scenario::core_configs(sc, policy).map_err(|e| anyhow::anyhow!("{}: {e}", sc.name))?;
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed ^ hashring::mix64(mode as u64 + 1));
        let mut net = FlowNet::new((sc.sim.quantum_us * 1e3).round() as u64);
        let registry = net.add_node(sc.payload_bps(sc.registry.egress_gbps), 1e12);
        net.record_egress(registry, REGISTRY_BUCKET_NS);
        let n_nodes = bound::node_count(sc) as usize;
        let seed_count = if mode == Mode::Oci { 0 } else { sc.cluster.seed_peers as usize };
        let mut host_net = Vec::new();
        // A normal peer's own rate limits (Kraken's agent limiter) cap its link in P2P; the
        // container runtime's pulls in oci mode do not go through it.
        let peer_limit = |limit: Option<u64>| match limit {
            Some(bytes_per_s) if mode != Mode::Oci => bytes_per_s as f64 * 8.0,
            _ => f64::INFINITY,
        };
        // Each node has its group's links; nodes are numbered group after group.
        let layout = sc.cluster.layout();
        let mut node_upload_bps = 0.0;
        let mut host_zones = Vec::with_capacity(n_nodes);
        for g in &layout {
            let up_bps = bound::group_up_bps(sc, g).min(peer_limit(peer_cfg.egress_limit_bytes_per_s));
            let down_bps = bound::group_down_bps(sc, g).min(peer_limit(peer_cfg.ingress_limit_bytes_per_s));
            node_upload_bps += f64::from(g.nodes) * up_bps;
            for _ in 0..g.nodes {
                host_net.push(net.add_node(up_bps, down_bps));
                host_zones.push(g.zone.clone());
            }
        }
        for _ in 0..seed_count {
            host_net.push(net.add_node(sc.payload_bps(sc.cluster.seed_peer_bandwidth_gbps), bound::seed_down_bps(sc)));
        }
        super::cpu::add_pools(&mut net, sc, mode, registry, &host_net[..n_nodes], &host_net[n_nodes..]);
        let rollout = Rollout::of(sc);
        let plan = BlobPlan::of(&rollout, mode, sc);
        let mut queue = EventQueue::default();
        let pods = lay_out_pods(sc, &rollout, &plan, n_nodes, &mut rng, &mut queue);
        let mut replicas = Vec::new();
        for r in 0..sc.cluster.scheduler_replicas {
            let core = replica_core(&sched_cfg, rng.random::<u64>() ^ u64::from(r), &host_zones, seed_count);
            replicas.push(Replica { core, busy_until: 0, timer_armed: None, dead: false, life: 0 });
        }
        if let Some(o) = &sc.faults.replica_outage {
            let replica = o.replica as usize;
            let down = ms(o.down_at_s * 1e3);
            queue.push(down, Event::ReplicaStops { replica });
            queue.push(down + ms(o.notice_ms), Event::ReplicaNoticed { replica });
            if let Some(back) = o.back_at_s {
                queue.push(ms(back * 1e3).max(down + ms(o.notice_ms)), Event::ReplicaBack { replica });
            }
        }
        let hosts = n_nodes + seed_count;
        let resolving = bound::Resolving::of(sc, mode, policy);
        // The daemon picks the seed by rendezvous hashing of the key over the seed hosts: for
        // one image, every node asks the same seed.
        let resolver_of = plan
            .images
            .iter()
            .map(|image| {
                [ManifestKey::Tag, ManifestKey::Digest].map(|key| {
                    let name = match key {
                        ManifestKey::Tag => image.reference.clone(),
                        ManifestKey::Digest => format!("{}@digest", image.reference),
                    };
                    let seeds = (n_nodes..hosts).map(|h| (h, h as u64));
                    let via_seeds = resolving.seeds_resolve(key.addressing());
                    hashring::pick(hashring::key_of(name.as_bytes()), seeds).filter(|_| via_seeds)
                })
            })
            .collect();
        let preheats = preheat::Preheats::plan(&rollout, &plan.images, sc.preheat, n_nodes..hosts, &mut queue);
        let churn = churn::Churn::plan(sc, n_nodes, seed_count, &mut queue);
        let oci_held = if mode == Mode::Oci { vec![vec![None; plan.blobs.len()]; n_nodes] } else { Vec::new() };
        let rolls = pods.rolling.iter().any(Option::is_some);
        let ready_queued = if rolls { vec![false; pods.pod_pull.len()] } else { Vec::new() };
        Ok(World {
            sc,
            mode,
            policy,
            now: 0,
            queue,
            net,
            registry,
            registry_next_slot_ns: 0.0,
            registry_requests: 0,
            rng,
            replicas_up: vec![true; replicas.len()],
            replicas,
            scheduler_requests_lost: 0,
            scheduler_requests: 0,
            scheduler_max_queue_ns: 0,
            host_slots: (0..hosts)
                .map(|_| UploadSlots::new(peer_cfg.upload_slots, peer_cfg.upload_slot_wait_ns))
                .collect(),
            slot_timer_armed: vec![None; hosts],
            peer_cfg,
            host_net,
            n_nodes,
            pulls: pods.pulls,
            node_pulls: pods.node_pulls,
            pod_pull: pods.pod_pull,
            pod_workload: pods.pod_workload,
            pod_bind_ns: pods.bind_ns,
            ready_queued,
            rolling: pods.rolling,
            oci_held,
            host_blob_peer: vec![vec![None; plan.blobs.len()]; hosts],
            blobs: plan.blobs,
            blob_keys: plan.keys,
            images: plan.images,
            peers: Vec::new(),
            transfers: Vec::new(),
            free_transfers: Vec::new(),
            requested_transfers: 0,
            rpc_ns: ms(sc.scheduler.cost.rpc_latency_ms),
            queue_ns: ms(sc.network.queue_delay_ms),
            events: 0,
            busy_refusals: 0,
            hop_pieces: 0,
            hop_sum: 0,
            hop_max: 0,
            node_upload_bps,
            host_zones,
            back_to_source_asks: 0,
            mirrors: (0..n_nodes).map(|_| ResolveCache::new(resolving.rule)).collect(),
            resolver_of,
            resolvers: (0..seed_count).map(|_| ResolveCache::new(resolving.rule)).collect(),
            resolver_asking: vec![BTreeMap::new(); seed_count],
            resolver_fetches: Vec::new(),
            preheats,
            churn,
            trace: None,
            reschedules: 0,
            completions: Vec::new(),
            actions: Vec::new(),
        })
    }

    /// Records every piece transfer (`ModeResult::piece_trace`).
    pub(crate) fn traced(mut self) -> Self {
        self.trace = Some(Vec::new());
        self
    }

    /// Runs until every node is done or the time limit passes.
    pub(crate) fn run(mut self) -> anyhow::Result<ModeResult> {
        self.run_to_end()?;
        let churn = self.churn_outcome();
        let mut result = self.finish();
        churn.apply(&mut result);
        Ok(result)
    }

    fn run_to_end(&mut self) -> anyhow::Result<()> {
        let limit = (self.sc.sim.time_limit_s * NS_PER_S_F) as TimeNs;
        loop {
            let next_event = self.queue.peek_time();
            let next_net = self.net.next_event_ns();
            let t = match (next_event, next_net) {
                (None, None) => break,
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (Some(a), Some(b)) => a.min(b),
            };
            if t > limit {
                anyhow::bail!(
                    "{} mode did not finish within sim.time_limit_s = {} s of virtual time; raise it or check the scenario ({})",
                    self.mode.name(),
                    self.sc.sim.time_limit_s,
                    self.stuck_summary()
                );
            }
            self.now = t;
            if next_net == Some(t) {
                let mut done = std::mem::take(&mut self.completions);
                self.net.advance(t, &mut done);
                for c in done.drain(..) {
                    self.events += 1;
                    self.on_flow_done(c);
                }
                self.completions = done;
            }
            while self.queue.peek_time() == Some(t) {
                let ev = self.queue.pop().expect("peeked");
                self.events += 1;
                self.handle(ev);
            }
        }
        Ok(())
    }

    fn handle(&mut self, ev: Event) {
        if self.churn_takes(&ev) {
            return;
        }
        match ev {
            Event::PodScheduled { pod } => {
                let pull = self.pod_pull[pod as usize].0 as usize;
                if self.pulls[pull].pull_started.is_none() {
                    self.pulls[pull].pull_started = Some(self.now);
                    self.resolve_manifest(pull);
                }
                self.rolling_pod_bound(pod);
            }
            Event::RollingStep { workload } => self.rolling_create(workload),
            Event::PodReady { workload } => {
                if let Some(r) = self.rolling[workload].as_mut() {
                    r.ready += 1;
                }
                self.rolling_create(workload);
            }
            Event::ManifestHeadDone { pull } => {
                // HEAD by tag answered: a digest, no body to keep (a zero TTL keeps nothing).
                let now_ms = self.now_ms();
                let (node, image) = (self.pulls[pull].node, self.pulls[pull].image);
                self.mirrors[node].complete(&(image, ManifestKey::Tag), Addressing::Tag, (), now_ms);
                self.mirror_answered(pull, ManifestKey::Tag);
            }
            Event::ResolverAsked { seed, pull, key } => self.resolver_asked(seed, pull, key),
            Event::StartTransfer { transfer } => self.start_flow(transfer),
            Event::PieceNews { peer, piece } => self.tell_children(peer, piece),
            Event::SchedDeliver { replica, life, request } => {
                if self.replicas[replica].life == life && !self.replicas[replica].dead {
                    self.sched_handle(replica, request);
                } else {
                    self.scheduler_requests_lost += 1;
                }
            }
            Event::SchedTimer { replica, life } => {
                let r = &mut self.replicas[replica];
                if r.life != life || r.dead {
                    return;
                }
                r.timer_armed = None;
                let decisions = r.core.on_timers(self.now);
                self.deliver(decisions);
                self.arm_sched_timer(replica);
            }
            Event::Decision(d) => self.apply_decision(d),
            Event::ReplicaStops { replica } => self.replica_stops(replica),
            Event::ReplicaNoticed { replica } => self.replica_noticed(replica),
            Event::ReplicaBack { replica } => self.replica_back(replica),
            Event::PeerDeadline { peer } => {
                if self.peers[peer.0 as usize].deadline_armed == Some(self.now) {
                    self.peers[peer.0 as usize].deadline_armed = None;
                    self.drive(peer);
                }
            }
            Event::SlotWaitEnds { host } => {
                if self.slot_timer_armed[host] == Some(self.now) {
                    self.slot_timer_armed[host] = None;
                }
                while let Some(id) = self.host_slots[host].expire(self.now) {
                    self.refuse_busy(id);
                }
                self.arm_slot_timer(host);
            }
            Event::UnpackDone { pull } => self.after_unpack(pull),
            Event::PreheatOrdered { job } => self.preheat_ordered(job),
            Event::PreheatResolved { job } => self.preheat_resolved(job),
            Event::Started { pull } => {
                if self.pulls[pull].unpacked_ns.is_none() {
                    self.pulls[pull].unpacked_ns = Some(self.now);
                    self.rolling_pull_ready(pull);
                }
            }
            Event::NodeDown { host, leave } => self.node_down(host, leave),
            Event::ParentUnreachable { peer, parent } => self.parent_unreachable(peer, parent),
            Event::SeedTriggerLapsed { task, host } => self.seed_trigger_lapsed(task, host),
        }
    }

    // ---- rolling updates ----

    /// Creates the pods a rolling update allows now; each is bound after its delay.
    fn rolling_create(&mut self, workload: usize) {
        let Some(r) = self.rolling[workload].as_mut() else { return };
        let allowed = r.gate.allowed(r.replicas, r.ready);
        let (from, to) = (r.first_pod + r.created, r.first_pod + allowed.max(r.created));
        r.created = allowed.max(r.created);
        for pod in from..to {
            let at = self.now + self.pod_bind_ns[pod as usize];
            let (pull, k) = self.pod_pull[pod as usize];
            self.pulls[pull as usize].scheduled_ns[k as usize] = at;
            self.queue.push(at, Event::PodScheduled { pod });
        }
    }

    /// A pod of a rolling update is bound: if its node already runs the image, it will be
    /// ready its container start and readiness delay from now.
    fn rolling_pod_bound(&mut self, pod: u32) {
        let workload = self.pod_workload[pod as usize] as usize;
        let Some(r) = &self.rolling[workload] else { return };
        let pull = self.pod_pull[pod as usize].0 as usize;
        if let Some(unpacked) = self.pulls[pull].unpacked_ns.filter(|t| *t != TimeNs::MAX) {
            let at = unpacked.max(self.now) + ms(self.sc.pod.container_start_ms) + ms(r.gate.readiness_delay_ms as f64);
            if !std::mem::replace(&mut self.ready_queued[pod as usize], true) {
                self.queue.push(at, Event::PodReady { workload });
            }
        }
    }

    /// A pull's image is unpacked (mounted): its rolling pods bound so far will be ready
    /// their container start and readiness delay from now.
    fn rolling_pull_ready(&mut self, pull: usize) {
        for k in 0..self.pulls[pull].pods.len() {
            let pod = self.pulls[pull].pods[k] as usize;
            let workload = self.pod_workload[pod] as usize;
            let Some(r) = &self.rolling[workload] else { continue };
            if self.pulls[pull].scheduled_ns[k] <= self.now && !std::mem::replace(&mut self.ready_queued[pod], true) {
                let at = self.now + ms(self.sc.pod.container_start_ms) + ms(r.gate.readiness_delay_ms as f64);
                self.queue.push(at, Event::PodReady { workload });
            }
        }
    }

    // ---- registry ----

    /// Admits one request under the QPS limit; returns when its first byte leaves.
    fn registry_admit(&mut self) -> TimeNs {
        self.registry_requests += 1;
        let slot = self.registry_next_slot_ns.max(self.now as f64);
        self.registry_next_slot_ns = slot + NS_PER_S_F / self.sc.registry.qps_limit;
        slot as TimeNs + ms(self.sc.registry.request_latency_ms)
    }

    // ---- manifests (the daemon's mirror and seed resolver, `peer::core::ResolveCache`) ----

    fn now_ms(&self) -> u64 {
        self.now / 1_000_000
    }

    /// A node's pull starts with containerd resolving the tag, then reading the manifest by
    /// its digest, both from the node's mirror (oci: from the registry).
    fn resolve_manifest(&mut self, pull: usize) {
        self.mirror_lookup(pull, ManifestKey::Tag);
    }

    /// containerd asks the node's mirror for `key` of the pull's image.
    fn mirror_lookup(&mut self, pull: usize, key: ManifestKey) {
        let now_ms = self.now_ms();
        let (node, image) = (self.pulls[pull].node, self.pulls[pull].image);
        match self.mirrors[node].lookup(&(image, key), key.addressing(), now_ms) {
            Lookup::Fresh(()) => self.mirror_answered(pull, key),
            // Only this pull asks this node's mirror for its image: the answer in flight
            // moves it on.
            Lookup::Join => {}
            Lookup::Fetch => self.mirror_asks_upstream(pull, key),
        }
    }

    /// The mirror asks a seed peer's resolver, or the registry.
    fn mirror_asks_upstream(&mut self, pull: usize, key: ManifestKey) {
        let image = self.pulls[pull].image;
        if let Some(seed) = self.resolver_of[image][key.index()] {
            // The request crosses to the seed: one way of the peers' network latency (the
            // one `scheduler.rpc_latency_ms` gives the peer-to-peer and peer-to-scheduler
            // requests; the answer pays it back in `resolver_answers`).
            self.queue.push(self.now + self.rpc_ns, Event::ResolverAsked { seed, pull, key });
            return;
        }
        self.mirror_asks_registry(pull, key);
    }

    /// The mirror asks the registry: with `tag_ttl_ms > 0` a GET (its body is kept and its
    /// digest learned), with 0 a HEAD by tag, as containerd's own.
    fn mirror_asks_registry(&mut self, pull: usize, key: ManifestKey) {
        let (node, image) = (self.pulls[pull].node, self.pulls[pull].image);
        let at = self.registry_admit();
        if key == ManifestKey::Tag && self.mirrors[node].rule().tag_ttl_ms == 0 {
            self.queue.push(at, Event::ManifestHeadDone { pull });
        } else {
            let kind = TransferKind::Manifest { pull, key, from: None };
            self.start_transfer_at(at, kind, self.images[image].manifest_bytes);
        }
    }

    /// The node's mirror answers containerd's request for `key`; the tag's answer is
    /// followed by the GET by digest.
    fn mirror_answered(&mut self, pull: usize, key: ManifestKey) {
        match key {
            ManifestKey::Tag => self.mirror_lookup(pull, ManifestKey::Digest),
            ManifestKey::Digest => self.after_manifest(pull),
        }
    }

    /// A manifest's body reached the node's mirror: kept for the key's TTL and, for a tag,
    /// its sha256 checked and kept by digest too, so the GET by digest asks nobody.
    fn manifest_arrived(&mut self, pull: usize, key: ManifestKey) {
        let now_ms = self.now_ms();
        let (node, image) = (self.pulls[pull].node, self.pulls[pull].image);
        let mirror = &mut self.mirrors[node];
        mirror.complete(&(image, key), key.addressing(), (), now_ms);
        if key == ManifestKey::Tag {
            mirror.learn(&(image, ManifestKey::Digest), Addressing::Digest, (), now_ms);
        }
        self.mirror_answered(pull, key);
    }

    /// A node's request reached seed host `seed`'s resolver: answered from its cache, joined
    /// to its request in flight, or sent to the registry as one GET for everyone asking.
    fn resolver_asked(&mut self, seed: usize, pull: usize, key: ManifestKey) {
        let s = seed - self.n_nodes;
        let now_ms = self.now_ms();
        let image = self.pulls[pull].image;
        match self.resolvers[s].lookup(&(image, key), key.addressing(), now_ms) {
            Lookup::Fresh(()) => self.resolver_answers(seed, pull, key),
            Lookup::Join => {
                let fetch = self.resolver_asking[s][&(image, key)];
                self.resolver_fetches[fetch].waiters.push(pull);
            }
            Lookup::Fetch => {
                let fetch = self.resolver_fetches.len();
                self.resolver_fetches.push(ResolverFetch { seed, image, key, waiters: vec![pull] });
                if self.resolvers[s].asking(&(image, key)) {
                    self.resolver_asking[s].insert((image, key), fetch);
                }
                let at = self.registry_admit();
                self.start_transfer_at(at, TransferKind::ResolverFetch { fetch }, self.images[image].manifest_bytes);
            }
        }
    }

    /// The registry answered a resolver's GET: the seed keeps it (and, for a tag, the
    /// manifest by its digest) and answers every node that waited for it.
    fn resolver_fetched(&mut self, fetch: usize) {
        let f = &self.resolver_fetches[fetch];
        let (seed, image, key) = (f.seed, f.image, f.key);
        let waiters = std::mem::take(&mut self.resolver_fetches[fetch].waiters);
        let s = seed - self.n_nodes;
        let now_ms = self.now_ms();
        let resolver = &mut self.resolvers[s];
        resolver.complete(&(image, key), key.addressing(), (), now_ms);
        if key == ManifestKey::Tag {
            resolver.learn(&(image, ManifestKey::Digest), Addressing::Digest, (), now_ms);
        }
        if self.resolver_asking[s].get(&(image, key)) == Some(&fetch) {
            self.resolver_asking[s].remove(&(image, key));
        }
        for pull in waiters {
            self.resolver_answers(seed, pull, key);
        }
    }

    /// The seed's answer goes back to the node: the return way of the round trip, then the
    /// manifest's body as a flow from the seed (a few KB: microseconds on any link, but its
    /// bytes cross the seed's upload like any other).
    fn resolver_answers(&mut self, seed: usize, pull: usize, key: ManifestKey) {
        let kind = TransferKind::Manifest { pull, key, from: Some(seed) };
        let bytes = self.images[self.pulls[pull].image].manifest_bytes;
        self.start_transfer_at(self.now + self.rpc_ns, kind, bytes);
    }

    /// A transfer whose flow starts at `at` (after request latency and admission).
    fn start_transfer_at(&mut self, at: TimeNs, kind: TransferKind, bytes: u64) {
        let id = self.new_transfer(kind, bytes);
        self.queue.push(at, Event::StartTransfer { transfer: id });
    }

    /// Records a transfer requested now; its flow starts later.
    fn new_transfer(&mut self, kind: TransferKind, bytes: u64) -> usize {
        let t = Transfer { kind, bytes, requested_ns: self.now, flow: None, cancelled: false, holds_slot: false };
        self.requested_transfers += 1;
        let id = match self.free_transfers.pop() {
            Some(id) => {
                self.transfers[id] = t;
                id
            }
            None => {
                self.transfers.push(t);
                self.transfers.len() - 1
            }
        };
        if let TransferKind::Piece { dst, .. } = kind {
            self.peers[dst.0 as usize].open.push(id);
        }
        id
    }

    fn start_flow(&mut self, id: usize) {
        let t = &self.transfers[id];
        if t.cancelled {
            // Cancelled before its start was due: this event was the last to name it.
            self.retire_transfer(id);
            return;
        }
        let (src, dst) = match t.kind {
            TransferKind::Manifest { pull, from: None, .. } | TransferKind::Blob { pull, .. } => {
                (self.registry, self.host_net[self.pulls[pull].node])
            }
            TransferKind::Manifest { pull, from: Some(seed), .. } => {
                (self.host_net[seed], self.host_net[self.pulls[pull].node])
            }
            TransferKind::ResolverFetch { fetch } => (self.registry, self.host_net[self.resolver_fetches[fetch].seed]),
            TransferKind::Piece { dst, from, .. } => {
                let dst_net = self.host_net[self.peers[dst.0 as usize].host];
                match from {
                    Source::Origin => (self.registry, dst_net),
                    Source::Parent(p) => (self.host_net[self.peers[p.0 as usize].host], dst_net),
                }
            }
        };
        let flow = self.net.start(self.now, src, dst, t.bytes, id as u64);
        self.transfers[id].flow = Some(flow);
    }

    fn on_flow_done(&mut self, c: Completion) {
        let id = c.tag as usize;
        if self.transfers[id].cancelled {
            // Cancelled in the same instant it completed (an endgame loser): its bytes
            // crossed the network, but nobody uses them and its slot is already free.
            // This completion was the last thing to name it.
            self.retire_transfer(id);
            return;
        }
        let kind = self.transfers[id].kind;
        match kind {
            TransferKind::Manifest { pull, key, .. } => self.manifest_arrived(pull, key),
            TransferKind::ResolverFetch { fetch } => self.resolver_fetched(fetch),
            TransferKind::Blob { pull, k } => {
                self.pulls[pull].bytes_registry += c.bytes;
                let node = self.pulls[pull].node;
                let blob = self.images[self.pulls[pull].image].blobs[k];
                self.oci_held[node][blob] = Some(true);
                self.host_blob_done(node, blob);
            }
            TransferKind::Piece { dst, piece, from } => {
                let open = &mut self.peers[dst.0 as usize].open;
                if let Some(i) = open.iter().rposition(|t| *t == id) {
                    open.remove(i);
                }
                let cost = self.now - self.transfers[id].requested_ns;
                self.piece_arrived(id, dst, piece, from, c.bytes, cost);
            }
        }
        // Done: its flow has ended, it left its peer's open list and gave back its slot.
        self.retire_transfer(id);
    }

    /// Frees the id of a transfer that no event, flow, open list or upload line holds.
    fn retire_transfer(&mut self, id: usize) {
        let t = &mut self.transfers[id];
        debug_assert!(!t.holds_slot, "a retired transfer still holds an upload slot");
        t.cancelled = true; // what the fallback scan in `cancel_transfer` then sees
        t.flow = None;
        self.free_transfers.push(id);
    }

    // ---- node pull ----

    fn after_manifest(&mut self, pull: usize) {
        match self.mode {
            Mode::Oci => self.next_oci_blobs(pull),
            Mode::P2p => self.next_p2p_blobs(pull),
            Mode::P2pLazy => {
                // RAFS bootstrap first; the container's reads need it.
                let p = &self.pulls[pull];
                let meta = self.images[p.image].meta.expect("p2p-lazy images have a bootstrap");
                self.open_peer_task(p.node, meta, true, Some(pull));
            }
        }
    }

    /// Positions a pull fetches through containerd: config, then layers (not the bootstrap).
    fn image_blob_count(&self, pull: usize) -> usize {
        self.images[self.pulls[pull].image].pulled
    }

    /// The pull's next position, now counted active, if containerd may ask for one more
    /// (`max_concurrent_downloads`): (position, node, blob).
    fn take_next_position(&mut self, pull: usize) -> Option<(usize, usize, usize)> {
        let max = self.sc.pod.max_concurrent_downloads as usize;
        if self.pulls[pull].active_blobs >= max || self.pulls[pull].next_blob >= self.image_blob_count(pull) {
            return None;
        }
        let p = &mut self.pulls[pull];
        let k = p.next_blob;
        p.next_blob += 1;
        p.active_blobs += 1;
        Some((k, p.node, self.images[p.image].blobs[k]))
    }

    fn next_oci_blobs(&mut self, pull: usize) {
        let mut held = Vec::new();
        while let Some((k, node, blob)) = self.take_next_position(pull) {
            match self.oci_held[node][blob] {
                None => {
                    self.oci_held[node][blob] = Some(false);
                    let at = self.registry_admit();
                    self.start_transfer_at(at, TransferKind::Blob { pull, k }, self.blobs[blob]);
                }
                // Another pull of the node fetches it and tells this one (`host_blob_done`).
                Some(false) => {}
                Some(true) => held.push(k),
            }
        }
        self.finish_held(pull, held);
    }

    /// Positions a pull asked for that its node already held whole: done now.
    fn finish_held(&mut self, pull: usize, held: Vec<usize>) {
        if held.is_empty() {
            return;
        }
        for k in held {
            if self.pulls[pull].blob_done[k].is_none() {
                self.pulls[pull].active_blobs -= 1;
                self.blob_finished(pull, k);
            }
        }
        match self.mode {
            Mode::Oci => self.next_oci_blobs(pull),
            _ => self.next_p2p_blobs(pull),
        }
    }

    /// containerd asks the mirror for `max_concurrent_downloads` blobs at a time, and the
    /// daemon starts a blob's download when it is asked for (it does not read the manifest
    /// ahead). A blob the node's peer already downloaded for another image is there.
    fn next_p2p_blobs(&mut self, pull: usize) {
        let mut held = Vec::new();
        while let Some((k, node, blob)) = self.take_next_position(pull) {
            let peer = self.open_peer_task(node, blob, true, Some(pull));
            if self.held_for_another(peer, pull) {
                held.push(k);
            }
        }
        self.finish_held(pull, held);
    }

    /// Whether `peer` (on the pull's node) is a download another pull opened and finished.
    fn held_for_another(&self, peer: PeerId, pull: usize) -> bool {
        let q = &self.peers[peer.0 as usize];
        q.pull != Some(pull) && q.done && q.dl.is_complete()
    }

    /// A blob is whole on a normal node: every pull of the node waiting for it goes on.
    fn host_blob_done(&mut self, node: usize, blob: usize) {
        for i in 0..self.node_pulls[node].len() {
            let pull = self.node_pulls[node][i];
            let image = &self.images[self.pulls[pull].image];
            let Some(k) = image.position(blob) else { continue };
            let is_meta = image.meta == Some(blob);
            match self.mode {
                Mode::Oci | Mode::P2p => {
                    let p = &self.pulls[pull];
                    if k >= p.next_blob || p.blob_done[k].is_some() {
                        continue;
                    }
                    self.pulls[pull].active_blobs -= 1;
                    self.blob_finished(pull, k);
                    if self.mode == Mode::Oci {
                        self.next_oci_blobs(pull);
                    } else {
                        self.next_p2p_blobs(pull);
                    }
                }
                Mode::P2pLazy => {
                    if is_meta {
                        self.pulls[pull].metadata_done = true;
                        self.next_reads(pull);
                    } else {
                        self.blob_finished(pull, k);
                    }
                }
            }
        }
    }

    fn blob_finished(&mut self, pull: usize, k: usize) {
        let count = self.image_blob_count(pull);
        let n = &mut self.pulls[pull];
        if n.blob_done[k].is_some() {
            return;
        }
        n.blob_done[k] = Some(self.now);
        let all = (0..count).all(|b| n.blob_done[b].is_some());
        if all && n.pull_done_ns.is_none() {
            n.pull_done_ns = Some(self.now);
        }
        match self.mode {
            Mode::Oci | Mode::P2p => {
                if all {
                    n.image_ready_ns.get_or_insert(self.now);
                }
                self.unpack_ready_layers(pull);
            }
            Mode::P2pLazy => {}
        }
    }

    /// containerd applies layers in order, one at a time, as each arrives (or, with
    /// `unpack_after_fetch`, once every blob is fetched).
    fn unpack_ready_layers(&mut self, pull: usize) {
        let rate_bytes_per_ns = self.sc.pod.unpack_mbps_per_core * self.sc.pod.unpack_cores * 1e6 / NS_PER_S_F;
        let count = self.image_blob_count(pull);
        let after_fetch = self.sc.pod.unpack_after_fetch;
        let now = self.now;
        let n = &mut self.pulls[pull];
        let blobs = &self.images[n.image].blobs;
        if after_fetch && n.blob_done.iter().take(count).any(|d| d.is_none()) {
            return;
        }
        while n.next_unpack < count {
            let Some(done) = n.blob_done[n.next_unpack] else {
                break;
            };
            // After the fetch, the first layer starts now, not when it arrived.
            let start = n.unpack_free_ns.max(if after_fetch { now } else { done });
            n.unpack_free_ns = start + (self.blobs[blobs[n.next_unpack]] as f64 / rate_bytes_per_ns) as TimeNs;
            n.next_unpack += 1;
        }
        if n.next_unpack == count && n.unpacked_ns.is_none() {
            let at = n.unpack_free_ns.max(self.now);
            n.unpacked_ns = Some(TimeNs::MAX);
            self.queue.push(at, Event::UnpackDone { pull });
        }
    }

    fn after_unpack(&mut self, pull: usize) {
        self.pulls[pull].unpacked_ns = Some(self.now);
        self.rolling_pull_ready(pull);
    }

    // ---- p2p ----

    /// The replica the daemons send a new registration of `blob` to.
    fn replica_of(&self, blob: usize) -> usize {
        hashring::replica_among(self.blob_keys[blob], &self.replicas_up).unwrap_or(0)
    }

    fn register_request(&self, peer: PeerId) -> RegisterPeer {
        let p = &self.peers[peer.0 as usize];
        RegisterPeer {
            peer,
            task: TaskId(p.blob as u32),
            task_key: self.blob_keys[p.blob],
            host: HostId(p.host as u32),
            piece_count: p.dl.piece_count(),
            content_length: self.blobs[p.blob],
            need_back_to_source: p.is_seed,
            policy: self.policy,
            partial: p.dl.is_partial(),
        }
    }

    /// `faults.replica_outage`: the replica stops; its state is lost (a fresh instance
    /// comes back, if it does). Requests to it are lost until the daemons notice.
    fn replica_stops(&mut self, replica: usize) {
        let seed = self.rng.random::<u64>();
        let seeds = self.host_net.len() - self.n_nodes;
        let mut core = replica_core(self.replicas[replica].core.config(), seed, &self.host_zones, seeds);
        self.forget_down_hosts(&mut core);
        let r = &mut self.replicas[replica];
        r.core = core;
        r.dead = true;
        r.life += 1;
        r.timer_armed = None;
    }

    /// The daemons find the replica gone: its tasks go to their next choice. Running
    /// downloads register there and report the pieces they hold (the daemon's rejoin);
    /// completed ones announce themselves as completed (`reannounce::spawn_moved`).
    fn replica_noticed(&mut self, replica: usize) {
        self.replicas_up[replica] = false;
        self.move_registrations(|w, p| w.peers[p].replica == replica && w.peers[p].registered);
    }

    /// The replica answers again, a fresh instance: new registrations of its tasks go to
    /// it, and the hosts holding them whole tell it so (a restarted replica hears of every
    /// completed task it is in charge of). Running downloads stay where they are (the
    /// daemon's rule).
    fn replica_back(&mut self, replica: usize) {
        let r = &mut self.replicas[replica];
        r.dead = false;
        r.busy_until = self.now;
        self.replicas_up[replica] = true;
        self.move_registrations(|w, p| {
            let q = &w.peers[p];
            q.registered && q.done && q.dl.is_complete() && w.replica_of(q.blob) == replica && q.replica != replica
        });
    }

    /// Registers the peers `pick` selects with the replica now in charge of their task.
    fn move_registrations(&mut self, pick: impl Fn(&World, usize) -> bool) {
        for p in 0..self.peers.len() {
            // A daemon that is down registers nowhere.
            if !pick(self, p) || self.churn.is_down(self.peers[p].host) {
                continue;
            }
            let to = self.replica_of(self.peers[p].blob);
            self.peers[p].replica = to;
            let peer = PeerId(p as u32);
            let req = self.register_request(peer);
            let q = &self.peers[p];
            if q.done {
                if q.dl.is_complete() {
                    let req = RegisterPeer { need_back_to_source: false, ..req };
                    self.sched_send(peer, SchedRequest::RegisterCompleted(req), false);
                }
                continue;
            }
            self.sched_send(peer, SchedRequest::Register(req), true);
            let held: Vec<PieceReport> =
                self.peers[p].dl.have().iter().map(|piece| PieceReport { piece, parent: None, cost_ns: 0 }).collect();
            if !held.is_empty() {
                self.sched_send(peer, SchedRequest::Pieces(peer, held), false);
            }
        }
    }

    /// The host's download of `blob`, opened for `pull` (None: a seed's) if it has none.
    fn open_peer_task(&mut self, host: usize, blob: usize, want_all: bool, pull: Option<usize>) -> PeerId {
        if let Some(p) = self.host_blob_peer[host][blob] {
            if want_all {
                self.peers[p.0 as usize].dl.want_all();
                self.drive(p);
            }
            return p;
        }
        let id = PeerId(self.peers.len() as u32);
        let mut dl = TaskDownload::new(self.peer_cfg.clone(), self.blobs[blob], want_all, self.now);
        let is_seed = host >= self.n_nodes;
        let direct = !is_seed && dl.skips_scheduler();
        if direct {
            dl.on_scheduler_lost(self.now);
        }
        self.peers.push(PeerTask {
            host,
            blob,
            pull,
            dl,
            is_seed,
            children: Vec::new(),
            origin_stream_open: false,
            deadline_armed: Some(self.now).filter(|_| direct),
            done: false,
            registered: !direct,
            replica: self.replica_of(blob),
            hops: Vec::new(),
            open: Vec::new(),
        });
        self.host_blob_peer[host][blob] = Some(id);
        if direct {
            // Driven once the caller has said what it wants (a lazy reader's range).
            self.queue.push(self.now, Event::PeerDeadline { peer: id });
            return id;
        }
        let req = self.register_request(id);
        self.sched_send(id, SchedRequest::Register(req), true);
        id
    }

    /// A request of `peer` to the replica it registered at.
    fn sched_send(&mut self, peer: PeerId, request: SchedRequest, schedules: bool) {
        let replica = self.peers[peer.0 as usize].replica;
        self.sched_send_to(replica, request, schedules);
    }

    /// A request to `replica`.
    fn sched_send_to(&mut self, replica: usize, request: SchedRequest, schedules: bool) {
        let service = if schedules {
            self.sc.scheduler.cost.schedule_service_us
        } else {
            self.sc.scheduler.cost.report_service_us
        };
        let arrive = self.now + self.rpc_ns;
        let r = &mut self.replicas[replica];
        let start = r.busy_until.max(arrive);
        self.scheduler_max_queue_ns = self.scheduler_max_queue_ns.max(start - arrive);
        r.busy_until = start + (service * 1e3).round() as TimeNs;
        self.scheduler_requests += 1;
        let life = r.life;
        self.queue.push(r.busy_until, Event::SchedDeliver { replica, life, request });
    }

    fn sched_handle(&mut self, replica: usize, request: SchedRequest) {
        let now = self.now;
        let core = &mut self.replicas[replica].core;
        let decisions = match request {
            SchedRequest::Register(req) => core.register_peer(now, req),
            SchedRequest::Pieces(peer, reports) => core.pieces_finished(now, peer, &reports),
            SchedRequest::ParentFailed(peer, parent) => core.piece_failed(now, peer, parent).map(|()| Vec::new()),
            SchedRequest::Reschedule(peer, blocked) => core.reschedule(now, peer, &blocked),
            SchedRequest::AskBackToSource(peer) => core.ask_back_to_source(now, peer),
            SchedRequest::WantsAll(peer) => core.peer_wants_all(now, peer),
            SchedRequest::Finished(peer) => core.peer_finished(now, peer),
            SchedRequest::RegisterCompleted(req) => core.register_completed_peer(now, req),
            SchedRequest::HostLeft(host) => core.host_left(now, host).map(|left| left.decisions),
            SchedRequest::SeedUnavailable(task, host) => Ok(core.seed_unavailable(now, task, host)),
        };
        let decisions = decisions.unwrap_or_else(|e| panic!("scheduler refused a well-formed request: {e}"));
        self.deliver(decisions);
        self.arm_sched_timer(replica);
    }

    fn arm_sched_timer(&mut self, replica: usize) {
        let r = &mut self.replicas[replica];
        if let Some(t) = r.core.next_timer() {
            if r.timer_armed.is_none_or(|armed| t < armed) {
                r.timer_armed = Some(t);
                let life = r.life;
                self.queue.push(t.max(self.now), Event::SchedTimer { replica, life });
            }
        }
    }

    fn deliver(&mut self, decisions: Vec<Decision>) {
        for d in decisions {
            self.queue.push(self.now + self.rpc_ns, Event::Decision(d));
        }
    }

    fn apply_decision(&mut self, d: Decision) {
        match d {
            Decision::TriggerSeed { task, seed_host } => {
                self.open_peer_task(seed_host.0 as usize, task.0 as usize, true, None);
            }
            Decision::Parents { peer, parents } => {
                // A new parent's first piece map carries its host's load, as it does below.
                let loads: Vec<(PeerId, u32)> = parents
                    .iter()
                    .map(|p| (p.peer, self.host_slots[self.peers[p.peer.0 as usize].host].active()))
                    .collect();
                let list = parents
                    .into_iter()
                    .map(|p| {
                        let q = &self.peers[p.peer.0 as usize];
                        (p, q.is_seed, q.dl.have().clone())
                    })
                    .collect();
                let now = self.now;
                let dl = &mut self.peers[peer.0 as usize].dl;
                dl.on_parents(now, list);
                for (parent, active) in loads {
                    dl.on_parent_uploads(parent, active);
                }
                self.sync_children(peer);
                self.drive(peer);
            }
            Decision::BackToSource { peer, .. } => {
                let now = self.now;
                self.peers[peer.0 as usize].dl.on_back_to_source(now);
                self.drive(peer);
            }
            Decision::Failed { peer, .. } => {
                // The download ends unfinished (the peer core's rule); its pod never
                // starts and the run reports it as stuck.
                let now = self.now;
                self.peers[peer.0 as usize].dl.on_scheduling_failed(now);
                self.drive(peer);
            }
        }
    }

    /// Mirrors the peer core's parent set into the parents' child lists. With symmetric
    /// connections (Kraken) a parent set is a set of connections: a new parent is a dial
    /// that the other end's core accepts (it takes the child as a source too) or refuses,
    /// and a dropped one is a close that the other end sees.
    fn sync_children(&mut self, peer: PeerId) {
        let now = self.now;
        let changes = self.peers[peer.0 as usize].dl.take_parent_changes();
        let mut refused = false;
        for (parent, added) in changes {
            let children = &mut self.peers[parent.0 as usize].children;
            if added {
                if !children.contains(&peer) {
                    children.push(peer);
                }
                if self.peer_cfg.symmetric_connections && !self.peers[parent.0 as usize].dl.has_parent(peer) {
                    let me = sched::core::ParentRef {
                        peer,
                        host: HostId(self.peers[peer.0 as usize].host as u32),
                        stripe: None,
                    };
                    let have = self.peers[peer.0 as usize].dl.have().clone();
                    // A peer on a host that is down answers no dial.
                    let up = !self.churn.is_down(self.peers[parent.0 as usize].host);
                    if up && self.peers[parent.0 as usize].dl.on_incoming(now, me, have) {
                        self.sync_children(parent);
                        self.drive(parent);
                    } else {
                        self.peers[peer.0 as usize].dl.on_dial_refused(now, parent);
                        refused = true;
                    }
                }
            } else {
                children.retain(|c| *c != peer);
                if self.peer_cfg.symmetric_connections && self.peers[parent.0 as usize].dl.has_parent(peer) {
                    self.peers[parent.0 as usize].dl.on_conn_closed(now, peer);
                    self.sync_children(parent);
                    self.drive(parent);
                }
            }
        }
        if refused {
            self.sync_children(peer);
        }
    }

    /// Polls a peer's plan and carries out what it says.
    fn drive(&mut self, peer: PeerId) {
        if self.churn.is_down(self.peers[peer.0 as usize].host) {
            return;
        }
        let now = self.now;
        let mut actions = std::mem::take(&mut self.actions);
        if self.peer_cfg.reannounce_round_robin {
            let host = self.peers[peer.0 as usize].host;
            let announcing = self.host_blob_peer[host]
                .iter()
                .flatten()
                .filter(|p| self.peers[p.0 as usize].dl.wants_announce())
                .count();
            self.peers[peer.0 as usize].dl.on_host_announcing(announcing as u32);
        }
        {
            let p = &mut self.peers[peer.0 as usize];
            p.dl.poll(now, &mut self.rng, &mut actions);
        }
        for a in actions.drain(..) {
            self.carry_out(peer, a);
        }
        self.actions = actions;
        self.sync_children(peer);
        let p = &mut self.peers[peer.0 as usize];
        if let Some(t) = p.dl.next_deadline() {
            let t = t.max(now + 1);
            if p.deadline_armed.is_none_or(|armed| t < armed || armed < now) {
                p.deadline_armed = Some(t);
                self.queue.push(t, Event::PeerDeadline { peer });
            }
        }
    }

    fn carry_out(&mut self, peer: PeerId, action: PeerAction) {
        let blob = self.peers[peer.0 as usize].blob;
        if !self.peers[peer.0 as usize].registered {
            match action {
                PeerAction::Fetch { .. } | PeerAction::Cancel { .. } | PeerAction::Finished => {}
                // Nobody to tell: the download never registered.
                _ => return,
            }
        }
        match action {
            PeerAction::Fetch { piece, from } => {
                let bytes = self.peers[peer.0 as usize].dl.piece_len(piece);
                let kind = TransferKind::Piece { dst: peer, piece, from };
                match from {
                    Source::Origin => {
                        // One streamed GET per back-to-source download: only the first
                        // piece pays the request and its latency.
                        let p = &mut self.peers[peer.0 as usize];
                        let at = if p.origin_stream_open {
                            self.now
                        } else {
                            p.origin_stream_open = true;
                            self.registry_admit()
                        };
                        self.start_transfer_at(at, kind, bytes);
                    }
                    Source::Parent(parent) => {
                        let id = self.new_transfer(kind, bytes);
                        let parent_host = self.peers[parent.0 as usize].host;
                        match self.host_slots[parent_host].admit(self.now, id) {
                            Some(id) => {
                                self.transfers[id].holds_slot = true;
                                // The request waits in the queues on its way, the piece's
                                // first bytes in those on their way back.
                                let at = self.now + self.rpc_ns + 2 * self.queue_ns;
                                self.queue.push(at, Event::StartTransfer { transfer: id });
                            }
                            None => self.arm_slot_timer(parent_host),
                        }
                    }
                }
            }
            PeerAction::Cancel { piece, from } => self.cancel_transfer(peer, piece, from),
            PeerAction::Report(reports) => self.sched_send(peer, SchedRequest::Pieces(peer, reports), false),
            PeerAction::ParentFailed { parent } => {
                self.sched_send(peer, SchedRequest::ParentFailed(peer, parent), false)
            }
            PeerAction::Reschedule { blocked } => {
                self.reschedules += 1;
                self.sched_send(peer, SchedRequest::Reschedule(peer, blocked), true)
            }
            PeerAction::AskBackToSource => {
                self.back_to_source_asks += 1;
                self.sched_send(peer, SchedRequest::AskBackToSource(peer), true)
            }
            PeerAction::WantsAll => self.sched_send(peer, SchedRequest::WantsAll(peer), true),
            PeerAction::Finished => {
                self.peers[peer.0 as usize].done = true;
                if self.peers[peer.0 as usize].registered {
                    self.sched_send(peer, SchedRequest::Finished(peer), false);
                }
                let host = self.peers[peer.0 as usize].host;
                if host < self.n_nodes {
                    self.host_blob_done(host, blob);
                } else {
                    self.preheat_peer_finished(peer);
                }
            }
        }
    }

    fn cancel_transfer(&mut self, peer: PeerId, piece: u32, from: Source) {
        let matches = |t: &Transfer| {
            !t.cancelled
                && matches!(t.kind, TransferKind::Piece { dst, piece: p, from: f } if dst == peer && p == piece && f == from)
        };
        // The plan cancels only what it has in flight, so the open list has it; the scan of
        // every transfer stays as the definition, for anything else.
        let open = &self.peers[peer.0 as usize].open;
        let found = match open.iter().rposition(|t| matches(&self.transfers[*t])) {
            Some(i) => Some(open[i]),
            None => self.transfers.iter().rposition(matches),
        };
        let Some(id) = found else { return };
        // Its id can be reused unless an event still names it: a completion in this same
        // instant (the flow has ended but is not reported yet), or a start not yet due.
        // That event then retires it.
        self.end_transfer(id, false);
    }

    /// Ends transfer `id` without telling its ends: its flow stops, its upload slot (or its
    /// place in its parent's line) is given up and it leaves its download's open list.
    /// `named`: the event being handled named it, and nothing else will, so its id is free.
    fn end_transfer(&mut self, id: usize, named: bool) {
        self.trace_end(id, TransferEnd::Cancelled, 0);
        self.transfers[id].cancelled = true;
        let mut free = named;
        if let Some(flow) = self.transfers[id].flow {
            free |= self.net.cancel(self.now, flow).is_some();
        }
        if let TransferKind::Piece { dst, from, .. } = self.transfers[id].kind {
            let open = &mut self.peers[dst.0 as usize].open;
            if let Some(i) = open.iter().rposition(|t| *t == id) {
                open.remove(i);
            }
            if let Source::Parent(parent) = from {
                let host = self.peers[parent.0 as usize].host;
                if self.transfers[id].holds_slot {
                    self.release_upload_slot(host, id);
                } else {
                    // Waiting in the parent's line: no event names it.
                    self.host_slots[host].forget(|r| *r == id);
                    free = true;
                }
            }
        }
        if free {
            self.retire_transfer(id);
        }
    }

    /// Queues a `SlotWaitEnds` for the host's oldest waiting request, unless one as early
    /// is queued already.
    fn arm_slot_timer(&mut self, host: usize) {
        if let Some(at) = self.host_slots[host].next_expiry() {
            if self.slot_timer_armed[host].is_none_or(|armed| at < armed || armed < self.now) {
                self.slot_timer_armed[host] = Some(at);
                self.queue.push(at.max(self.now), Event::SlotWaitEnds { host });
            }
        }
    }

    /// A piece request waited `upload_slot_wait_ns` in its parent's upload line: the parent
    /// answers busy, as the daemon's data plane does, and the child's plan drops the
    /// transfer (`on_transfer_dropped`, the daemon's handling of `Busy`).
    fn refuse_busy(&mut self, id: usize) {
        self.trace_end(id, TransferEnd::Busy, 0);
        let TransferKind::Piece { dst, piece, from } = self.transfers[id].kind else {
            unreachable!("only piece transfers wait for upload slots");
        };
        let open = &mut self.peers[dst.0 as usize].open;
        if let Some(i) = open.iter().rposition(|t| *t == id) {
            open.remove(i);
        }
        self.retire_transfer(id);
        self.busy_refusals += 1;
        self.peers[dst.0 as usize].dl.on_transfer_dropped(piece, from);
        self.drive(dst);
    }

    /// Transfer `id` gives back its slot; the next waiting one takes it.
    fn release_upload_slot(&mut self, host: usize, id: usize) {
        debug_assert!(self.transfers[id].holds_slot);
        self.transfers[id].holds_slot = false;
        if let Some(next) = self.host_slots[host].release() {
            debug_assert!(!self.transfers[next].cancelled, "cancelled transfers leave the line");
            self.transfers[next].holds_slot = true;
            // The request is at the parent already; its first bytes queue on their way.
            self.queue.push(self.now + self.queue_ns, Event::StartTransfer { transfer: next });
        }
    }

    /// `peer`'s children learn that it holds `piece` (the daemon's piece-map long poll
    /// answering), with its host's upload load as the reply carries it.
    fn tell_children(&mut self, peer: PeerId, piece: u32) {
        let host = self.peers[peer.0 as usize].host;
        let children = self.peers[peer.0 as usize].children.clone();
        let uploads = self.host_slots[host].active();
        for c in children {
            self.peers[c.0 as usize].dl.on_parent_has(peer, piece);
            self.peers[c.0 as usize].dl.on_parent_uploads(peer, uploads);
            self.drive(c);
        }
    }

    fn piece_arrived(&mut self, transfer: usize, peer: PeerId, piece: u32, from: Source, bytes: u64, cost: TimeNs) {
        self.trace_end(transfer, TransferEnd::Stored, bytes);
        let host = self.peers[peer.0 as usize].host;
        let fresh = !self.peers[peer.0 as usize].dl.have().contains(piece);
        if let (Some(pull), true) = (self.peers[peer.0 as usize].pull, fresh) {
            let n = &mut self.pulls[pull];
            match from {
                Source::Origin => n.bytes_registry += bytes,
                Source::Parent(p) if self.peers[p.0 as usize].is_seed => n.bytes_seed += bytes,
                Source::Parent(_) => n.bytes_peers += bytes,
            }
        }
        if fresh {
            let hops = match from {
                Source::Origin => 1,
                Source::Parent(p) => {
                    self.peers[p.0 as usize].hops.get(piece as usize).map_or(1, |h| h.saturating_add(1))
                }
            };
            let count = self.peers[peer.0 as usize].dl.piece_count() as usize;
            let held = &mut self.peers[peer.0 as usize].hops;
            if held.len() < count {
                held.resize(count, 0);
            }
            held[piece as usize] = hops;
            if host < self.n_nodes {
                self.hop_pieces += 1;
                self.hop_sum += u64::from(hops);
                self.hop_max = self.hop_max.max(hops);
            }
        }
        if let Source::Parent(parent) = from {
            self.release_upload_slot(self.peers[parent.0 as usize].host, transfer);
            self.peers[parent.0 as usize].dl.on_piece_sent(self.now, peer);
        }
        let now = self.now;
        self.peers[peer.0 as usize].dl.on_piece_done(now, piece, from, cost);
        for other in self.peers[peer.0 as usize].dl.redundant_transfers(piece) {
            self.cancel_transfer(peer, piece, other);
            self.peers[peer.0 as usize].dl.on_transfer_dropped(piece, other);
        }
        if fresh {
            if self.queue_ns == 0 {
                self.tell_children(peer, piece);
            } else {
                self.queue.push(self.now + self.queue_ns, Event::PieceNews { peer, piece });
            }
            if self.mode == Mode::P2pLazy && host < self.n_nodes {
                for i in 0..self.node_pulls[host].len() {
                    self.check_reads(self.node_pulls[host][i]);
                }
            }
        }
        self.drive(peer);
    }

    // ---- p2p-lazy ----

    fn next_reads(&mut self, pull: usize) {
        let limit = self.sc.lazy.range_reads_in_flight as usize;
        let (node, image) = (self.pulls[pull].node, self.pulls[pull].image);
        while self.pulls[pull].reads_in_flight.len() < limit
            && self.pulls[pull].reads_next < self.images[image].reads.len()
        {
            let r = self.pulls[pull].reads_next;
            self.pulls[pull].reads_next += 1;
            self.pulls[pull].reads_in_flight.push(r);
            let (blob, offset, len) = self.images[image].reads[r];
            let peer = self.open_peer_task(node, blob, false, Some(pull));
            let range = self.peers[peer.0 as usize].dl.pieces_covering(offset, len);
            self.peers[peer.0 as usize].dl.want(range);
            self.drive(peer);
        }
        self.check_reads(pull);
    }

    fn check_reads(&mut self, pull: usize) {
        let mut progressed = false;
        let (node, image) = (self.pulls[pull].node, self.pulls[pull].image);
        let in_flight = std::mem::take(&mut self.pulls[pull].reads_in_flight);
        let mut still = Vec::new();
        for r in in_flight {
            let (blob, offset, len) = self.images[image].reads[r];
            let done = self.host_blob_peer[node][blob].is_some_and(|p| {
                let dl = &self.peers[p.0 as usize].dl;
                dl.pieces_covering(offset, len).all(|i| dl.have().contains(i))
            });
            if done {
                self.pulls[pull].reads_done += 1;
                progressed = true;
            } else {
                still.push(r);
            }
        }
        self.pulls[pull].reads_in_flight = still;
        if progressed {
            if self.pulls[pull].reads_done == self.images[image].reads.len()
                && self.pulls[pull].image_ready_ns.is_none()
            {
                self.working_set_ready(pull);
            } else {
                self.next_reads(pull);
            }
        }
    }

    fn working_set_ready(&mut self, pull: usize) {
        self.pulls[pull].image_ready_ns = Some(self.now);
        let at = self.now + ms(self.sc.lazy.mount_ms);
        self.pulls[pull].unpacked_ns = None;
        self.queue.push(at, Event::Started { pull });
        if self.sc.lazy.prefetch {
            let (node, image) = (self.pulls[pull].node, self.pulls[pull].image);
            for k in 0..self.image_blob_count(pull) {
                let peer = self.open_peer_task(node, self.images[image].blobs[k], true, Some(pull));
                // A layer another image's prefetch already brought: whole here too.
                if self.held_for_another(peer, pull) {
                    self.blob_finished(pull, k);
                }
            }
        }
    }

    /// The first unfinished download, described for an error message.
    fn stuck_summary(&self) -> String {
        let unfinished = self.peers.iter().filter(|p| !p.done && p.dl.is_complete()).count();
        // A download still missing what it wants says more than a lazy reader that has
        // its ranges and waits for its node's prefetch.
        let waiting = self.peers.iter().position(|p| !p.done && !p.dl.wants_nothing_more());
        let first = waiting.or_else(|| self.peers.iter().position(|p| !p.done)).unwrap_or(self.peers.len());
        for (i, p) in self.peers.iter().enumerate().skip(first) {
            if !p.done {
                return format!(
                    "peer {i} on host {} blob {}: {}/{} pieces, {} in flight, parents {:?}, back-to-source {}, \
                     at replica {} (which has it {:?}); {} complete but not finished",
                    p.host,
                    p.blob,
                    p.dl.have().count(),
                    p.dl.piece_count(),
                    p.dl.in_flight_count(),
                    p.dl.parent_ids().collect::<Vec<_>>(),
                    p.dl.is_back_to_source(),
                    p.replica,
                    self.replicas[p.replica].core.peer_state(PeerId(i as u32)),
                    unfinished
                );
            }
        }
        "no download pending".to_string()
    }

    // ---- results ----

    fn finish(self) -> ModeResult {
        let start_ns = ms(self.sc.pod.container_start_ms);
        let s = |t: TimeNs| t as f64 / NS_PER_S_F;
        let mut pods = Vec::new();
        let mut makespan: f64 = 0.0;
        for n in &self.pulls {
            let pull_done = n.pull_done_ns.map_or(f64::NAN, s);
            if pull_done.is_finite() {
                makespan = makespan.max(pull_done);
            }
            let unpacked = n.unpacked_ns.unwrap_or(0);
            for (k, pod) in n.pods.iter().enumerate() {
                let scheduled = n.scheduled_ns[k];
                // A pod a rolling update never created (a run that did not finish) never starts.
                let started = if scheduled == TimeNs::MAX { TimeNs::MAX } else { unpacked.max(scheduled) + start_ns };
                // Bytes are the pull's; its first pod carries them.
                let first = k == 0;
                let never = |t: TimeNs| if t == TimeNs::MAX { f64::NAN } else { s(t) };
                pods.push(PodRecord {
                    pod: *pod,
                    node: n.node as u32,
                    workload: self.pod_workload[*pod as usize],
                    scheduled_s: never(scheduled),
                    pull_start_s: n.pull_started.map_or(f64::NAN, s),
                    image_ready_s: n.image_ready_ns.map_or(f64::NAN, s),
                    pull_done_s: pull_done,
                    unpacked_s: s(unpacked),
                    started_s: never(started),
                    bytes_from_registry: if first { n.bytes_registry } else { 0 },
                    bytes_from_seed_peers: if first { n.bytes_seed } else { 0 },
                    bytes_from_peers: if first { n.bytes_peers } else { 0 },
                    lost: false,
                });
            }
        }
        if self.mode == Mode::P2pLazy && !self.sc.lazy.prefetch {
            makespan = self.pulls.iter().filter_map(|n| n.image_ready_ns).map(s).fold(0.0, f64::max);
        }
        ModeResult {
            mode: self.mode,
            pods,
            registry_egress_bytes_per_bucket: self.net.egress_series(self.registry),
            registry_bytes: self.net.bytes_sent(self.registry),
            registry_requests: self.registry_requests,
            makespan_s: makespan,
            events: self.events,
            scheduler_requests: self.scheduler_requests,
            scheduler_requests_lost: self.scheduler_requests_lost,
            scheduler_max_queue_delay_s: s(self.scheduler_max_queue_ns),
            back_to_source_orders: self.replicas.iter().map(|r| r.core.stats.back_to_source_orders).sum(),
            busy_refusals: self.busy_refusals,
            piece_hops_mean: if self.hop_pieces > 0 { self.hop_sum as f64 / self.hop_pieces as f64 } else { f64::NAN },
            piece_hops_max: u32::from(self.hop_max),
            node_upload_used: {
                let sent: u64 = self.pulls.iter().map(|n| n.bytes_peers).sum();
                let could = self.node_upload_bps / 8.0 * makespan;
                if could > 0.0 && self.mode != Mode::Oci {
                    sent as f64 / could
                } else {
                    f64::NAN
                }
            },
            back_to_source_asks: self.back_to_source_asks,
            preheats: self
                .preheats
                .jobs
                .iter()
                .map(|j| crate::result::PreheatRecord {
                    image: self.images[j.image].reference.clone(),
                    seed_peer: (j.seed - self.n_nodes) as u32,
                    ordered_s: s(j.ordered_ns),
                    done_s: j.done_ns.map_or(f64::NAN, s),
                })
                .collect(),
            churn: None,
            piece_trace: self.trace.unwrap_or_default(),
            wall_s: 0.0,
        }
    }

    /// Records the end of piece transfer `id` when the run is traced.
    fn trace_end(&mut self, id: usize, end: TransferEnd, bytes: u64) {
        let Some(trace) = self.trace.as_mut() else { return };
        let t = &self.transfers[id];
        let TransferKind::Piece { dst, piece, from } = t.kind else { return };
        let host = |h: usize| {
            if h < self.n_nodes {
                TraceHost::Node(h as u32)
            } else {
                TraceHost::Seed((h - self.n_nodes) as u32)
            }
        };
        let receiver = &self.peers[dst.0 as usize];
        trace.push(PieceTransfer {
            receiver: host(receiver.host),
            blob: receiver.blob as u32,
            piece,
            source: match from {
                Source::Origin => TraceHost::Registry,
                Source::Parent(p) => host(self.peers[p.0 as usize].host),
            },
            requested_s: t.requested_ns as f64 / NS_PER_S_F,
            ended_s: self.now as f64 / NS_PER_S_F,
            bytes,
            end,
        });
    }
}

/// The pods of a run on their pulls, and what rolling updates need.
struct PodLayout {
    pulls: Vec<Pull>,
    node_pulls: Vec<Vec<usize>>,
    pod_pull: Vec<(u32, u32)>,
    pod_workload: Vec<u32>,
    bind_ns: Vec<TimeNs>,
    rolling: Vec<Option<RollingRun>>,
}

/// Lays the rollout's pods out on pulls (one per node and image, in the order pods first
/// need them) and draws each pod's binding delay (schedule delay plus seeded jitter, in pod
/// order). Pods of an all-at-once workload are created at its start and bound after their
/// delay; a rolling workload's first step is queued at its start.
fn lay_out_pods(
    sc: &Scenario,
    rollout: &Rollout,
    plan: &BlobPlan,
    n_nodes: usize,
    rng: &mut ChaCha8Rng,
    queue: &mut EventQueue,
) -> PodLayout {
    let pods = rollout.pods() as usize;
    let mut out = PodLayout {
        pulls: Vec::new(),
        node_pulls: vec![Vec::new(); n_nodes],
        pod_pull: Vec::with_capacity(pods),
        pod_workload: Vec::with_capacity(pods),
        bind_ns: Vec::with_capacity(pods),
        rolling: Vec::with_capacity(rollout.workloads.len()),
    };
    for (w, wl) in rollout.workloads.iter().enumerate() {
        let image = &plan.images[wl.image];
        for (i, &node) in wl.nodes.iter().enumerate() {
            let node = node as usize;
            let pod = wl.first_pod + i as u32;
            let pull = match out.node_pulls[node].iter().find(|p| out.pulls[**p].image == wl.image) {
                Some(p) => *p,
                None => {
                    out.pulls.push(Pull::new(node, wl.image, image.blobs.len()));
                    out.node_pulls[node].push(out.pulls.len() - 1);
                    out.pulls.len() - 1
                }
            };
            let jitter = rng.random::<f64>() * sc.pod.schedule_jitter_ms;
            let bind = ms(sc.pod.schedule_delay_ms + jitter);
            let p = &mut out.pulls[pull];
            out.pod_pull.push((pull as u32, p.pods.len() as u32));
            out.pod_workload.push(w as u32);
            out.bind_ns.push(bind);
            p.pods.push(pod);
            if wl.rolling.is_some() {
                p.scheduled_ns.push(TimeNs::MAX);
            } else {
                let at = wl.start_ns + bind;
                p.scheduled_ns.push(at);
                queue.push(at, Event::PodScheduled { pod });
            }
        }
        out.rolling.push(wl.rolling.map(|gate| {
            queue.push(wl.start_ns, Event::RollingStep { workload: w });
            RollingRun { gate, first_pod: wl.first_pod, replicas: wl.nodes.len() as u32, created: 0, ready: 0 }
        }));
    }
    out
}

impl Pull {
    fn new(node: usize, image: usize, positions: usize) -> Pull {
        Pull {
            node,
            image,
            pods: Vec::new(),
            scheduled_ns: Vec::new(),
            pull_started: None,
            blob_done: vec![None; positions],
            next_blob: 0,
            active_blobs: 0,
            next_unpack: 1,
            unpack_free_ns: 0,
            unpacked_ns: None,
            image_ready_ns: None,
            pull_done_ns: None,
            bytes_registry: 0,
            bytes_seed: 0,
            bytes_peers: 0,
            reads_next: 0,
            reads_in_flight: Vec::new(),
            reads_done: 0,
            metadata_done: false,
        }
    }
}

/// A scheduler replica's core with every host announced (at the start, and as the fresh
/// instance a stopped replica comes back as). Normal nodes announce their group's zone as
/// IDC and location; seed peers none.
fn replica_core(cfg: &sched::core::SchedulerConfig, rng_seed: u64, zones: &[String], seeds: usize) -> Scheduler {
    let mut core = Scheduler::new(cfg.clone(), ChaCha8Rng::seed_from_u64(rng_seed));
    let nodes = zones.len();
    for h in 0..nodes + seeds {
        let kind = if h < nodes { HostKind::Normal } else { HostKind::Seed };
        let zone = zones.get(h).cloned().unwrap_or_default();
        core.announce_host(
            0,
            HostInfo { id: HostId(h as u32), kind, location: zone.clone(), idc: zone, disable_shared: false },
        );
    }
    core
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    /// Finished and cancelled transfers give their ids back, so the table holds about the
    /// transfers in flight at once, not every one ever requested.
    #[test]
    fn transfer_ids_are_recycled() {
        let text = "name = \"recycle\"\nseed = 3\nmodes = [\"p2p\"]\n[cluster]\npods = 20\n\
            [image]\nreference = \"t\"\nlayer_bytes = [200_000_000]\n";
        let sc = parse_scenario(text, "recycle.toml").expect("valid scenario");
        let mut world = World::new(&sc, Mode::P2p, Policy::Default).unwrap();
        world.run_to_end().expect("the run finishes");
        let (slots, requested) = (world.transfers.len() as u64, world.requested_transfers);
        assert!(requested > 3_000, "{requested} transfers requested");
        assert!(slots * 4 < requested, "{slots} transfer slots for {requested} transfers");
        assert_eq!(world.free_transfers.len() as u64, slots, "every transfer ended and gave its id back");
    }

    /// Normal hosts announce their group's zone as IDC and location (the policies' affinity
    /// terms); seed peers none; each node's links are its group's.
    #[test]
    fn hosts_carry_their_groups_zone_and_links() {
        let text = "name = \"z\"\nmodes = [\"p2p\"]\n[cluster]\nseed_peers = 1\n\
            [[cluster.node_groups]]\nname = \"a\"\ncount = 2\nzone = \"eu-1a\"\nupload_gbps = 2.0\n\
            [[cluster.node_groups]]\nname = \"b\"\ncount = 1\nzone = \"eu-1b\"\nupload_gbps = 1.0\n\
            [image]\nreference = \"t\"\nlayer_bytes = [1000]\n";
        let sc = parse_scenario(text, "z.toml").expect("valid scenario");
        let world = World::new(&sc, Mode::P2p, Policy::Default).unwrap();
        let idc =
            |h: u32| world.replicas[0].core.host(HostId(h)).map(|x| (x.info.idc.clone(), x.info.location.clone()));
        assert_eq!(idc(0), Some(("eu-1a".into(), "eu-1a".into())));
        assert_eq!(idc(2), Some(("eu-1b".into(), "eu-1b".into())));
        assert_eq!(idc(3), Some((String::new(), String::new())), "the seed peer");
        let per_node = sc.payload_bps(2.0) * 2.0 + sc.payload_bps(1.0);
        assert_eq!(world.node_upload_bps, per_node);
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod workload_tests;
