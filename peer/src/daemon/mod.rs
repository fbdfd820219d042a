//! The peer daemon: one per node (or a seed peer with `host.kind = "seed"`). It downloads
//! tasks for local clients (`local_api.rs`, used by `dfget`) and for the scheduler's seed
//! orders (`seed.rs`) and preheat jobs (`preheat/`), each by the peer core's plan
//! (`download.rs`, `fetch.rs`); serves pieces to other peers over the data plane; keeps the
//! scheduler informed (`sched_link.rs`); collects garbage; exposes `/metrics` and `/healthz`.
//!
//! Under `--cfg madsim` the same code runs on madsim's network and virtual time: only the
//! HTTP origin is left out (`start_with_origin` takes a simulated one) and the local API is
//! served by madsim-tonic from its address (`serve_api`).

pub mod config;
pub mod download;
pub mod error;
mod fetch;
pub mod local_api;
pub mod metrics;
pub mod preheat;
// The mirror speaks hyper to real registries: no madsim build (the suite drives the local API).
#[cfg(not(madsim))]
pub mod mirror;
mod reannounce;
pub mod sched_link;
mod seed;
mod tasks;

pub use config::{load, parse, DaemonConfig, HostKind};
pub use error::{DownloadError, ErrorKind};

use crate::core::PeerConfig;
use crate::dataplane::{PeerClient, Server};
#[cfg(not(madsim))]
use crate::origin::HttpOrigin;
use crate::origin::Origin;
use crate::storage::{Store, StoreConfig};
use crate::task_id::{TaskId, TaskIdRules};
use api::pb;
use metrics::{Metrics, Snapshot};
use sched_link::SchedLink;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use svc::watch;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What every part of a running daemon shares.
pub struct Ctx {
    pub cfg: DaemonConfig,
    pub peer_config: PeerConfig,
    pub store: Arc<Store>,
    pub client: Arc<PeerClient>,
    pub origin: Arc<dyn Origin>,
    /// For registries the mirror reads with `insecure = true` (None: no such registry).
    origin_insecure: Option<Arc<dyn Origin>>,
    pub ids: TaskIdRules,
    pub sched: SchedLink,
    pub metrics: Arc<Metrics>,
    running: tasks::Running,
    /// Preheat jobs the scheduler ordered from this seed (`preheat/`).
    preheats: preheat::Preheats,
    started: Instant,
    peer_seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// The data-plane server (its counters feed /metrics and the host load); taken at shutdown.
    server: std::sync::Mutex<Option<Arc<Server>>>,
}

impl Ctx {
    /// Nanoseconds since the daemon started: the peer core's clock.
    pub fn now_ns(&self) -> u64 {
        download::ns_between(self.started, Instant::now())
    }

    pub fn instant_of(&self, ns: u64) -> Instant {
        self.started + Duration::from_nanos(ns)
    }

    /// The origin a job reads: certificates verified, or not for an insecure registry.
    pub fn origin_for(&self, insecure: bool) -> &Arc<dyn Origin> {
        match (&self.origin_insecure, insecure) {
            (Some(o), true) => o,
            _ => &self.origin,
        }
    }

    /// A fresh peer id for one download of `task` on this host.
    pub fn new_peer_id(&self, task: &TaskId) -> String {
        let seq = self.peer_seq.fetch_add(1, Ordering::Relaxed);
        let boot = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("{}-{}-{boot:x}-{seq}", self.sched.host().id, &task.to_hex()[..16])
    }

    pub fn load(&self) -> pb::HostLoad {
        let upload = self.server().map(|s| s.stats()).unwrap_or_default();
        pb::HostLoad { uploads_in_flight: upload.uploads_active, ..Default::default() }
    }

    fn server(&self) -> Option<Arc<Server>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            upload: self.server().map(|s| s.stats()).unwrap_or_default(),
            store_used_bytes: self.store.used_bytes(),
            store_quota_bytes: self.store.quota_bytes(),
            tasks_cached: self.store.tasks().len() as u64,
            downloads_running: self.running.count() as u64,
            tls_refused_data: self.cfg.tls.as_ref().map_or(0, |t| t.refused(svc::tls::Listener::Data)),
            tls_refused_local_api: self.cfg.tls.as_ref().map_or(0, |t| t.refused(svc::tls::Listener::LocalApi)),
            tls_reloads: self.cfg.tls.as_ref().map_or(0, |t| t.reloads()),
        }
    }

    /// Runs garbage collection now and tells the scheduler which tasks left.
    pub async fn collect_garbage(&self) {
        let store = self.store.clone();
        let policy = self.cfg.gc.policy(self.store.quota_bytes());
        let report = match crate::dataplane::io::blocking(move || store.gc(&policy)).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "garbage collection failed"),
        };
        for evicted in &report.evicted {
            tracing::info!(task = %evicted.task, bytes = evicted.bytes, reason = ?evicted.reason, "task evicted");
            self.sched.leave_task(&evicted.task).await;
        }
        for e in &report.delete_errors {
            tracing::warn!(error = %e, "evicted task files not deleted");
        }
    }
}

/// Why the daemon cannot start; each names the key or resource at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage.dir: {0}")]
    Store(#[from] crate::storage::StoreError),
    #[error("origin: {0}")]
    Origin(#[from] crate::origin::OriginError),
    #[error("dataplane: {0}")]
    Dataplane(String),
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("scheduler.addresses: {0}")]
    Scheduler(String),
    #[error("mirror: {0}")]
    Mirror(String),
}

/// A running daemon.
pub struct Running {
    pub data_addr: SocketAddr,
    pub local_api_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// None when `mirror.enabled` is false.
    pub mirror_addr: Option<SocketAddr>,
    /// A seed host's manifest resolver (`listen.resolver`); None on normal hosts.
    pub resolver_addr: Option<SocketAddr>,
    pub ctx: Arc<Ctx>,
    shutdown: watch::Sender<bool>,
    api: JoinHandle<Result<(), String>>,
    server: Arc<Server>,
}

/// Starts a daemon that reads the origin over HTTP(S) (`[origin]`).
#[cfg(not(madsim))]
pub async fn start(cfg: DaemonConfig) -> Result<Running, StartError> {
    let origin: Arc<dyn Origin> = Arc::new(HttpOrigin::new(cfg.origin.clone())?);
    start_with_origin(cfg, origin).await
}

/// Starts a daemon that reads the origin through `origin` (a simulation's own origin;
/// `[origin]` is then not used).
pub async fn start_with_origin(cfg: DaemonConfig, origin: Arc<dyn Origin>) -> Result<Running, StartError> {
    let (store, opened) = Store::open(StoreConfig { ..cfg.storage.clone() })?;
    tracing::info!(dir = %cfg.storage.dir.display(), report = ?opened, "store open");
    // Many simulated daemons share one process under madsim: no memory held ahead there.
    #[cfg(not(madsim))]
    {
        let (pool, piece_bytes) = (store.buffers(), cfg.core.piece_sizing.largest_piece_bytes());
        let bytes = cfg.storage.prefault_buffer_bytes as usize;
        let t = Instant::now();
        match crate::dataplane::io::blocking(move || pool.prefault(piece_bytes as usize, bytes)).await {
            Ok(0) => {}
            Ok(made) => {
                let ms = t.elapsed().as_millis() as u64;
                tracing::info!(buffers = made, piece_bytes, ms, "piece buffers prefaulted");
            }
            Err(e) => tracing::warn!(error = %e, "prefaulting piece buffers failed; they are made on demand"),
        }
    }
    let store = Arc::new(store);
    // Registries marked `insecure` in the mirror get an origin that skips certificate checks.
    #[cfg(not(madsim))]
    let origin_insecure: Option<Arc<dyn Origin>> = if cfg.mirror.registries.iter().any(|r| r.insecure) {
        let config = crate::origin::HttpOriginConfig { insecure_skip_verify: true, ..cfg.origin.clone() };
        Some(Arc::new(HttpOrigin::new(config)?))
    } else {
        None
    };
    #[cfg(madsim)]
    let origin_insecure: Option<Arc<dyn Origin>> = None;
    match &cfg.tls {
        Some(tls) => {
            tracing::info!(tls = ?tls, "mutual TLS on the data plane, towards the scheduler, and on the local API unless it is on loopback")
        }
        None => tracing::info!("no [tls]: the data plane and the scheduler link are plain TCP"),
    }
    match &cfg.dataplane.server.grant_key {
        None => tracing::warn!(
            "no [dataplane] grant_key_file: the data port serves every task in the store to anyone who reaches it, private blobs included; give the scheduler and every peer the same grant key file"
        ),
        Some(key) => {
            if let Some(warning) = key.permission_warning() {
                tracing::warn!("{warning}");
            }
            tracing::info!(key_file = %key.path().display(), "the data port serves a task only with the scheduler's grant");
        }
    }
    let client = PeerClient::with_buffers(cfg.dataplane.client.clone(), store.buffers())
        .map_err(|e| StartError::Dataplane(e.to_string()))?;
    let client = Arc::new(client);
    let server =
        Server::bind(cfg.listen.data, store.clone(), cfg.dataplane.server.clone()).await.map_err(|e| match e {
            crate::dataplane::ServerError::Bind { addr, source } => {
                StartError::Bind { key: "listen.data", addr, source }
            }
            other => StartError::Dataplane(other.to_string()),
        })?;
    let server = Arc::new(server);
    let data_addr = server.local_addr();
    let bind = |key: &'static str, addr: SocketAddr| async move {
        let l = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { key, addr, source })?;
        let local = l.local_addr().unwrap_or(addr);
        Ok::<_, StartError>((l, local))
    };
    let (api_listener, local_api_addr) = bind_api(cfg.listen.local_api).await?;
    let (http_listener, http_addr) = bind("listen.http", cfg.listen.http).await?;
    let mirror_listener = match cfg.mirror.enabled && cfg!(not(madsim)) {
        true => Some(bind("listen.mirror", cfg.listen.mirror).await?),
        false => None,
    };
    let resolver_listener = match cfg.mirror.enabled && cfg.host.kind == HostKind::Seed && cfg!(not(madsim)) {
        true => Some(bind("listen.resolver", cfg.listen.resolver).await?),
        false => None,
    };
    let resolver_port = resolver_listener.as_ref().map_or(0, |(_, a)| a.port());

    let host = sched_link::host_message(&cfg, data_addr.port(), resolver_port);
    let sched = SchedLink::new(&cfg, host).map_err(StartError::Scheduler)?;
    let peer_config = cfg.core.clone();
    tracing::info!(config = %effective_peer_config(&peer_config), "peer core configuration");
    let (shutdown, shutdown_rx) = watch::channel(false);
    let preheats = preheat::Preheats::new(cfg.preheat.jobs_in_flight);
    let ctx = Arc::new(Ctx {
        ids: TaskIdRules::new(&cfg.task_id),
        cfg,
        peer_config,
        store,
        client,
        origin,
        origin_insecure,
        sched,
        metrics: Arc::new(Metrics::new()),
        running: tasks::Running::default(),
        preheats,
        started: Instant::now(),
        peer_seq: AtomicU64::new(0),
        shutdown: shutdown_rx.clone(),
        server: std::sync::Mutex::new(Some(server.clone())),
    });

    // The first announce before serving, so seed orders and parents can name this host.
    if ctx.sched.is_enabled() {
        let announced = ctx.sched.announce(ctx.load()).await;
        if announced.accepted == 0 {
            tracing::warn!("no scheduler accepted the host yet; downloads go to the origin until one does");
        }
        reannounce::spawn(&ctx, announced.new_instances);
    }
    tokio::spawn(announce_loop(ctx.clone()));
    tokio::spawn(gc_loop(ctx.clone()));
    if ctx.cfg.host.kind == HostKind::Seed {
        for (address, client) in ctx.sched.replicas() {
            tokio::spawn(seed::watch(ctx.clone(), address.to_string(), client));
        }
    }
    let route = {
        let (m, h) = (Arc::downgrade(&ctx), Arc::downgrade(&ctx));
        svc::probe_http::standard_route(
            move || m.upgrade().map(|c| c.metrics.render(&c.snapshot())).unwrap_or_default(),
            move || match h.upgrade() {
                Some(c) if !*c.shutdown.borrow() => Ok(()),
                _ => Err("shutting down".into()),
            },
        )
    };
    tokio::spawn(svc::probe_http::serve(http_listener, shutdown_rx.clone(), route));
    #[cfg(madsim)]
    let mirror_addr: Option<SocketAddr> = mirror_listener.map(|(_, addr)| addr);
    #[cfg(madsim)]
    let resolver_addr: Option<SocketAddr> = resolver_listener.map(|(_, addr)| addr);
    #[cfg(not(madsim))]
    let (mirror_addr, resolver_addr) = match mirror_listener {
        Some((listener, addr)) => {
            // One mirror for both listeners: the seed's own pulls and the cluster's
            // resolutions share its answers.
            let m = Arc::new(mirror::Mirror::new(ctx.clone()).map_err(StartError::Mirror)?);
            let resolver_addr = resolver_listener.map(|(l, a)| {
                tokio::spawn(mirror::serve_resolver(m.clone(), l, shutdown_rx.clone()));
                a
            });
            tokio::spawn(mirror::serve(m, listener, shutdown_rx.clone()));
            (Some(addr), resolver_addr)
        }
        None => (None, None),
    };
    let api = tokio::spawn(serve_api(ctx.clone(), api_listener, shutdown_rx));
    tracing::info!(
        host = ctx.sched.host().id,
        data = %data_addr,
        local_api = %local_api_addr,
        http = %http_addr,
        mirror = ?mirror_addr,
        resolver = ?resolver_addr,
        kind = ?ctx.cfg.host.kind,
        "peer daemon serving"
    );
    Ok(Running { data_addr, local_api_addr, http_addr, mirror_addr, resolver_addr, ctx, shutdown, api, server })
}

#[cfg(not(madsim))]
type ApiListener = TcpListener;
/// Under madsim, madsim-tonic binds its own simulated endpoint from the address.
#[cfg(madsim)]
type ApiListener = SocketAddr;

#[cfg(not(madsim))]
async fn bind_api(addr: SocketAddr) -> Result<(ApiListener, SocketAddr), StartError> {
    let l =
        TcpListener::bind(addr).await.map_err(|source| StartError::Bind { key: "listen.local_api", addr, source })?;
    let local = l.local_addr().unwrap_or(addr);
    Ok((l, local))
}

/// madsim-tonic does not report the port it bound, so port 0 cannot be told to clients.
#[cfg(madsim)]
async fn bind_api(addr: SocketAddr) -> Result<(ApiListener, SocketAddr), StartError> {
    if addr.port() == 0 {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "under madsim, give a fixed port");
        return Err(StartError::Bind { key: "listen.local_api", addr, source });
    }
    Ok((addr, addr))
}

#[cfg(madsim)]
async fn serve_api(ctx: Arc<Ctx>, addr: ApiListener, mut stop: watch::Receiver<bool>) -> Result<(), String> {
    tonic::transport::Server::builder()
        .add_service(api::daemon_pb::daemon_server::DaemonServer::new(local_api::LocalApi::new(ctx)))
        .serve_with_shutdown(addr, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| e.to_string())
}

/// With `[tls]`, a local API that listens beyond loopback takes only clients with a
/// certificate of the cluster CA (`dfget --tls-*`); on loopback it stays plain, as the
/// node's own clients reach it there.
#[cfg(not(madsim))]
async fn serve_api(ctx: Arc<Ctx>, listener: ApiListener, mut stop: watch::Receiver<bool>) -> Result<(), String> {
    let on_loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let tls = ctx.cfg.tls.clone().filter(|_| !on_loopback);
    let router = tonic::transport::Server::builder()
        .add_service(api::daemon_pb::daemon_server::DaemonServer::new(local_api::LocalApi::new(ctx)));
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = match tls {
        Some(tls) => {
            let incoming = svc::tls::grpc_incoming(listener, tls, svc::tls::Listener::LocalApi);
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
    };
    served.map_err(|e| e.to_string())
}

async fn announce_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut up_before = ctx.sched.up();
    let mut up_changes = ctx.sched.watch_up();
    let every = Duration::from_millis(ctx.cfg.scheduler.announce_interval_ms);
    let mut next = tokio::time::Instant::now() + every;
    loop {
        svc::select! {
            _ = tokio::time::sleep_until(next) => {}
            Ok(()) = up_changes.changed() => {
                // A replica found gone (by a download's registration, a rejoin's announce):
                // its completed tasks go to their new replicas now, not at the next round,
                // or those would trigger a seed for them while this host holds them whole.
                // A replica back is left to the round, which knows whether it restarted.
                let up = ctx.sched.up();
                let gone: Vec<bool> = up_before.iter().zip(&up).map(|(b, u)| *b && *u).collect();
                if gone != up_before {
                    let before = std::mem::replace(&mut up_before, gone.clone());
                    reannounce::spawn_moved(&ctx, before, gone, &[]);
                }
                continue;
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        next = tokio::time::Instant::now() + every;
        if ctx.sched.is_enabled() {
            let announced = ctx.sched.announce(ctx.load()).await;
            reannounce::spawn(&ctx, announced.new_instances.clone());
            // Replicas that stopped or started answering since the last round: the
            // completed tasks that changed hands.
            let up = ctx.sched.up();
            if up != up_before {
                let before = std::mem::replace(&mut up_before, up.clone());
                reannounce::spawn_moved(&ctx, before, up, &announced.new_instances);
            }
        }
    }
}

async fn gc_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let every = Duration::from_millis(ctx.cfg.gc.interval_ms);
    loop {
        svc::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        ctx.collect_garbage().await;
    }
}

impl Running {
    /// Stops serving: downloads end, the scheduler is told the host leaves, metadata is
    /// flushed. Completed tasks stay on disk for the next start.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if self.ctx.sched.is_enabled() {
            self.ctx.sched.leave().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.api).await;
        self.ctx.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Ok(server) = Arc::try_unwrap(self.server) {
            server.shutdown().await;
        }
        if let Err(e) = self.ctx.store.flush() {
            tracing::warn!(error = %e, "store flush at shutdown failed");
        }
        tracing::info!("peer daemon stopped");
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// The core configuration as one line of TOML, for the start-up log (the simulator writes
/// the same table beside its reports).
fn effective_peer_config(cfg: &PeerConfig) -> String {
    toml::to_string(cfg).map(|t| t.lines().collect::<Vec<_>>().join("; ")).unwrap_or_else(|e| e.to_string())
}
