//! A cluster of madsim nodes running the real services: scheduler replicas
//! (`sched::service::start`), seed and normal peer daemons (`peer::daemon::start_with_origin`
//! with the simulated origin), and the origin node. Each normal peer downloads the blob
//! through its daemon's local API (gRPC on loopback, as `dfget` does) when its node starts,
//! and again after each restart; the outcome of every attempt is recorded.

use crate::origin::{OriginState, SimOriginClient};
use api::daemon_pb::daemon_client::DaemonClient;
use api::daemon_pb::DownloadRequest;
use madsim::runtime::{Handle, NodeHandle};
use peer::dataplane::RateLimit;
use sched::service::shared::Shared;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const GRPC_PORT: u16 = 8002;
pub const ORIGIN_PORT: u16 = 80;
pub const BLOB_PATH: &str = "/v2/sim/blobs/layer";
const LOCAL_API: &str = "http://127.0.0.1:65000";

/// The shape of a cluster and its links.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The test's name (names its scratch directory).
    pub name: &'static str,
    pub schedulers: usize,
    pub seeds: usize,
    pub peers: usize,
    pub content_bytes: u64,
    pub piece_bytes: u64,
    /// Each peer's and seed's upload and download capacity (data-plane token buckets), bytes/s.
    pub peer_rate: Option<u64>,
    /// The origin's egress capacity, bytes/s.
    pub origin_rate: Option<u64>,
    pub policy: &'static str,
    /// Normal peers start their download at a uniform random moment in [0, this).
    pub start_spread: Duration,
    /// Pass the blob's digest with each download (it then names the task).
    pub with_digest: bool,
    /// One peer (by index) with this rate instead of `peer_rate`: a slow node.
    pub slow_peer: Option<(usize, u64)>,
    /// The daemons' `scheduler.announce_interval_ms` (how soon they find a replica gone).
    pub announce_interval_ms: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            name: "unnamed",
            schedulers: 1,
            seeds: 1,
            peers: 6,
            content_bytes: 24 << 20,
            piece_bytes: 1 << 20,
            peer_rate: Some(100 << 20),
            origin_rate: Some(200 << 20),
            policy: "default",
            start_spread: Duration::from_millis(200),
            with_digest: true,
            slow_peer: None,
            announce_interval_ms: 5000,
        }
    }
}

/// How one download attempt of a peer ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Done; the file's sha256 matched the origin's blob or not.
    Done { sha_ok: bool, bytes: u64, from_origin: u64, from_parents: u64 },
    /// The daemon reported an error.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub started: Duration,
    pub ended: Option<(Duration, Ended)>,
}

/// Per peer name, its attempts in order.
pub type Outcomes = Arc<Mutex<BTreeMap<String, Vec<Attempt>>>>;

pub struct Cluster {
    pub spec: Spec,
    pub origin: Arc<OriginState>,
    pub origin_node: NodeHandle,
    pub schedulers: Vec<NodeHandle>,
    pub seeds: Vec<NodeHandle>,
    pub peers: Vec<NodeHandle>,
    pub peer_names: Vec<String>,
    pub outcomes: Outcomes,
    /// The live `Shared` of each scheduler replica (replaced when it restarts).
    pub sched_state: Arc<Mutex<Vec<Option<Arc<Shared>>>>>,
    pub blob_sha: [u8; 32],
    pub url: String,
    pub digest: String,
    pub started: Instant,
    dir: PathBuf,
}

/// Deterministic blob bytes from the run's seeded generator.
pub fn blob(len: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(madsim::rand::random());
    let mut v = vec![0u8; len as usize];
    rng.fill_bytes(&mut v);
    v
}

fn ip(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
}

impl Cluster {
    pub async fn start(spec: Spec) -> Cluster {
        let handle = Handle::current();
        let content = Arc::new(blob(spec.content_bytes));
        let blob_sha: [u8; 32] = Sha256::digest(content.as_slice()).into();
        let digest = format!("sha256:{}", hex(&blob_sha));
        let origin = OriginState::new(BTreeMap::from([(BLOB_PATH.to_string(), content)]));
        origin.set_egress(spec.origin_rate.map(|r| RateLimit { bytes_per_s: r, burst_bytes: CHUNK_BURST }));
        let origin_addr = SocketAddr::new(ip(9, 1), ORIGIN_PORT);
        let origin_node = {
            let o = origin.clone();
            handle.create_node().name("origin").ip(origin_addr.ip()).init(move || o.clone().serve(origin_addr)).build()
        };

        // The same path on every run of this test and seed (a path differing between a batch
        // and a replay could change the order of hashed maps keyed by it).
        let dir = scratch_root().join(format!("simtest-{}-{}", spec.name, handle.seed()));
        let _ = std::fs::remove_dir_all(&dir);

        let sched_state = Arc::new(Mutex::new(vec![None; spec.schedulers]));
        let mut schedulers = Vec::new();
        let mut sched_addrs = Vec::new();
        for i in 0..spec.schedulers {
            let addr = ip(0, 1 + i as u8);
            sched_addrs.push(format!("http://{addr}:{GRPC_PORT}"));
            let toml = scheduler_toml(&spec, madsim::rand::random::<u64>() >> 1);
            let slots = sched_state.clone();
            let node = handle
                .create_node()
                .name(format!("sched-{i}"))
                .ip(addr)
                .init(move || {
                    let (toml, slots) = (toml.clone(), slots.clone());
                    async move {
                        let cfg = sched::service::parse(&toml, "sim-scheduler.toml").expect("scheduler config");
                        let running = sched::service::start(cfg).await.expect("scheduler starts");
                        slots.lock().unwrap()[i] = Some(running.shared().clone());
                        let _ = running.wait().await;
                    }
                })
                .build();
            schedulers.push(node);
        }

        let outcomes: Outcomes = Arc::new(Mutex::new(BTreeMap::new()));
        let url = format!("http://registry.sim{BLOB_PATH}");
        let started = Instant::now();
        let mut seeds = Vec::new();
        for i in 0..spec.seeds {
            let name = format!("seed-{i}");
            let node_ip = ip(1, 1 + i as u8);
            let toml = peer_toml(&spec, &name, node_ip, true, &sched_addrs, &dir.join(&name));
            seeds.push(daemon_node(&handle, name, node_ip, toml, origin_addr, None));
        }
        let mut peers = Vec::new();
        let mut peer_names = Vec::new();
        for i in 0..spec.peers {
            let name = format!("peer-{i:02}");
            let node_ip = ip(2, 1 + i as u8);
            let mut own = spec.clone();
            if let Some((slow, rate)) = spec.slow_peer.filter(|(slow, _)| *slow == i) {
                let _ = slow;
                own.peer_rate = Some(rate);
            }
            let toml = peer_toml(&own, &name, node_ip, false, &sched_addrs, &dir.join(&name));
            let spread = spec.start_spread.as_nanos() as u64;
            let delay = Duration::from_nanos(if spread == 0 { 0 } else { madsim::rand::random::<u64>() % spread });
            let job = Job {
                name: name.clone(),
                url: url.clone(),
                digest: spec.with_digest.then(|| digest.clone()),
                sha: blob_sha,
                outcomes: outcomes.clone(),
                delay,
                started,
            };
            peers.push(daemon_node(&handle, name.clone(), node_ip, toml, origin_addr, Some(job)));
            peer_names.push(name);
        }
        Cluster {
            spec,
            origin,
            origin_node,
            schedulers,
            seeds,
            peers,
            peer_names,
            outcomes,
            sched_state,
            blob_sha,
            url,
            digest,
            started,
            dir,
        }
    }

    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until every peer in `expect` has a finished last attempt, or `bound` of virtual
    /// time has passed since the cluster started. Checks the scheduler's DAGs every 10 ms.
    pub async fn wait_downloads(&self, expect: &[usize], bound: Duration, dag: &mut crate::checks::DagWatch) {
        while self.now() < bound {
            dag.check(self);
            let all = {
                let o = self.outcomes.lock().unwrap();
                expect
                    .iter()
                    .all(|i| o.get(&self.peer_names[*i]).and_then(|a| a.last()).is_some_and(|a| a.ended.is_some()))
            };
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Steps of virtual time with the DAG check running.
    pub async fn run_for(&self, d: Duration, dag: &mut crate::checks::DagWatch) {
        let until = self.now() + d;
        while self.now() < until {
            dag.check(self);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills a node, keeps it down for `down` (checks running), then starts it again.
    /// (madsim's `restart` alone does not close the node's sockets, so a restarted server
    /// could not bind its ports again.)
    pub async fn bounce(&self, node: &NodeHandle, down: Duration, dag: &mut crate::checks::DagWatch) {
        Handle::current().kill(node.id());
        self.run_for(down, dag).await;
        Handle::current().restart(node.id());
    }

    pub fn outcomes(&self) -> BTreeMap<String, Vec<Attempt>> {
        self.outcomes.lock().unwrap().clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const CHUNK_BURST: u64 = 1 << 20;

struct Job {
    name: String,
    url: String,
    digest: Option<String>,
    sha: [u8; 32],
    outcomes: Outcomes,
    delay: Duration,
    started: Instant,
}

fn daemon_node(
    handle: &Handle,
    name: String,
    node_ip: IpAddr,
    toml: String,
    origin_addr: SocketAddr,
    job: Option<Job>,
) -> NodeHandle {
    let job = job.map(Arc::new);
    handle
        .create_node()
        .name(name.clone())
        .ip(node_ip)
        .init(move || {
            let (toml, name, job) = (toml.clone(), name.clone(), job.clone());
            async move {
                let cfg = peer::daemon::parse(&toml, &format!("{name}.toml")).expect("daemon config");
                let origin = Arc::new(SimOriginClient {
                    addr: origin_addr,
                    connect_timeout: Duration::from_secs(1),
                    read_timeout: Duration::from_secs(5),
                });
                let running = match peer::daemon::start_with_origin(cfg, origin).await {
                    Ok(r) => r,
                    Err(e) => panic!("{name}: daemon did not start: {e}"),
                };
                if let Some(job) = job {
                    tokio::time::sleep(job.delay).await;
                    download(&job).await;
                }
                std::future::pending::<()>().await;
                drop(running);
            }
        })
        .build()
}

/// One download through the local API, as `dfget` does it; the outcome is recorded.
async fn download(job: &Job) {
    let index = {
        let mut o = job.outcomes.lock().unwrap();
        let attempts = o.entry(job.name.clone()).or_default();
        attempts.push(Attempt { started: job.started.elapsed(), ended: None });
        attempts.len() - 1
    };
    let ended = match run_download(job).await {
        Ok(e) => e,
        Err(e) => Ended::Failed(e),
    };
    let mut o = job.outcomes.lock().unwrap();
    o.get_mut(&job.name).unwrap()[index].ended = Some((job.started.elapsed(), ended));
}

async fn run_download(job: &Job) -> Result<Ended, String> {
    // madsim clogs a node's loopback with the node: retry the connection as a supervisor
    // retries dfget (bounded).
    let mut tries = 0;
    let channel = loop {
        match tonic::transport::Endpoint::from_static(LOCAL_API).connect().await {
            Ok(c) => break c,
            Err(e) if tries >= 100 => return Err(format!("local API unreachable after {tries} tries: {e}")),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut client = DaemonClient::new(channel);
    let request = DownloadRequest { url: job.url.clone(), digest: job.digest.clone(), ..Default::default() };
    // madsim-tonic opens a connection per call, and packet loss can refuse or break it even
    // on loopback. Such an error comes from the transport, not the daemon: the call is made
    // again (bounded), which joins the running download as a second dfget would.
    let transport = |s: &tonic::Status| {
        s.code() == tonic::Code::Unavailable && matches!(s.message(), "connection refused" | "transport error")
    };
    let mut tries = 0;
    'call: loop {
        let mut stream = match client.download(request.clone()).await {
            Ok(s) => s.into_inner(),
            Err(s) if tries < 100 && transport(&s) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'call;
            }
            Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
        };
        loop {
            match stream.message().await {
                Ok(Some(p)) if p.done => {
                    let bytes = std::fs::read(&p.content_path).map_err(|e| format!("{}: {e}", p.content_path))?;
                    let sha: [u8; 32] = Sha256::digest(&bytes).into();
                    return Ok(Ended::Done {
                        sha_ok: sha == job.sha,
                        bytes: bytes.len() as u64,
                        from_origin: p.bytes_from_origin,
                        from_parents: p.bytes_from_parents,
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("progress stream ended without a result".into()),
                Err(s) if tries < 100 && transport(&s) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'call;
                }
                Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
            }
        }
    }
}

fn scheduler_toml(spec: &Spec, rng_seed: u64) -> String {
    format!(
        r#"
[listen]
grpc = "0.0.0.0:{GRPC_PORT}"
http = "0.0.0.0:8000"
[service]
rng_seed = {rng_seed}
evict_interval_ms = 5000
seed_register_timeout_ms = 3000
register_timeout_ms = 3000
shutdown_grace_ms = 1000
[log]
filter = "warn"
[scheduler]
policy = "{policy}"
"#,
        policy = spec.policy
    )
}

fn peer_toml(spec: &Spec, name: &str, node_ip: IpAddr, seed: bool, scheds: &[String], dir: &std::path::Path) -> String {
    let rate = |key: &str| match spec.peer_rate {
        Some(r) => format!("{key} = {{ bytes_per_s = {r}, burst_bytes = {} }}\n", spec.piece_bytes.max(256 << 10)),
        None => String::new(),
    };
    let capacity = spec.peer_rate.unwrap_or(1_250_000_000);
    let addresses: Vec<String> = scheds.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"
[host]
id = "{name}"
hostname = "{name}"
advertise_ip = "{node_ip}"
kind = "{kind}"
upload_capacity_bytes_per_s = {capacity}
download_capacity_bytes_per_s = {capacity}
[listen]
data = "0.0.0.0:65002"
local_api = "127.0.0.1:65000"
http = "0.0.0.0:65003"
[scheduler]
addresses = [{addresses}]
announce_interval_ms = {announce}
connect_timeout_ms = 1000
request_timeout_ms = 3000
[storage]
dir = "{dir}"
quota_bytes = {quota}
meta_flush_pieces = 4
[dataplane.server]
{upload}idle_timeout_ms = 20000
max_sync_wait_ms = 5000
[dataplane.client]
{download}connect_timeout_ms = 1000
request_timeout_ms = 10000
[peer]
policy = "{policy}"
piece_sizing = {{ rule = "fixed", piece_bytes = {piece} }}
upload_slot_wait_ns = 2_000_000_000
[download]
sync_wait_ms = 2000
origin_retries = 8
origin_retry_backoff_ms = 200
hold_for_client_ms = 1000
[log]
filter = "warn"
"#,
        kind = if seed { "seed" } else { "normal" },
        addresses = addresses.join(", "),
        announce = spec.announce_interval_ms,
        dir = dir.display(),
        quota = spec.content_bytes * 4 + (64 << 20),
        upload = rate("upload_rate"),
        download = rate("download_rate"),
        policy = spec.policy,
        piece = spec.piece_bytes,
    )
}

/// Where the daemons' stores go: `SIMTEST_DIR`, else /dev/shm (the stores fsync a lot, and
/// fsync on a real disk costs wall time, not virtual time), else the temp dir.
fn scratch_root() -> PathBuf {
    if let Some(d) = std::env::var_os("SIMTEST_DIR") {
        return PathBuf::from(d);
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        return shm;
    }
    std::env::temp_dir()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
