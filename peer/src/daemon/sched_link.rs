//! The daemon's side of the scheduler: one gRPC channel per replica, the host announced to
//! every replica, and each task sent to one replica chosen by its id, so that all peers of
//! a task meet at the same scheduler. A replica that stops answering (an announce or a
//! registration times out or finds nobody) hands its tasks to their second choice among
//! the others (`sched::core::hashring::replica_among`) until it answers again.

use super::config::{DaemonConfig, HostKind};
use crate::task_id::TaskId;
use api::pb;
use api::SchedulerClient;
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// A lazily connecting channel: TLS (`svc::tls::GrpcConnector`) when `tls` is set.
#[cfg(not(madsim))]
fn channel(endpoint: &Endpoint, tls: Option<&svc::tls::Tls>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(svc::tls::GrpcConnector::new(tls.clone())),
        None => endpoint.connect_lazy(),
    }
}

/// Under madsim `[tls]` never loads.
#[cfg(madsim)]
fn channel(endpoint: &Endpoint, _tls: Option<&svc::tls::Tls>) -> Channel {
    endpoint.connect_lazy()
}

/// HTTP/2 pings on each replica's channel, and how long one may go unanswered before the
/// channel (and every stream on it) counts as broken.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SchedLink {
    replicas: Vec<(String, SchedulerClient<Channel>)>,
    host: pb::Host,
    request_timeout: Duration,
    /// Per replica, the `scheduler_instance` of its last accepted announce.
    instances: Mutex<Vec<Option<String>>>,
    /// Per replica, whether it answered the last call made to it.
    up: Mutex<Vec<bool>>,
    /// `up` after each change: downloads watch it to leave a replica that stopped answering.
    up_changes: svc::watch::Sender<Vec<bool>>,
    /// The seed peers' manifest resolvers the replicas named in the last round of
    /// announces that any answered (their union, sorted).
    resolvers: Mutex<Vec<std::net::SocketAddr>>,
}

/// One replica, as a call to it needs it.
pub struct Replica<'a> {
    pub index: usize,
    pub address: &'a str,
    pub client: SchedulerClient<Channel>,
}

/// What one round of announces found.
#[derive(Debug, Default)]
pub struct Announced {
    /// Replicas that accepted the host.
    pub accepted: usize,
    /// Replicas (by index) seen for the first time or restarted since the last round: they
    /// do not know this host's completed tasks.
    pub new_instances: Vec<usize>,
}

impl SchedLink {
    /// Channels connect lazily: a scheduler that is down at start is retried on each call.
    pub fn new(cfg: &DaemonConfig, host: pb::Host) -> Result<SchedLink, String> {
        let mut replicas = Vec::new();
        for address in &cfg.scheduler.addresses {
            // With [tls] the connector below does TLS itself, whichever scheme is written.
            let dialed = match &cfg.tls {
                Some(_) => address.replacen("https://", "http://", 1),
                None => address.clone(),
            };
            let endpoint = Endpoint::from_shared(dialed)
                .map_err(|e| format!("scheduler address {address:?}: {e}"))?
                .connect_timeout(Duration::from_millis(cfg.scheduler.connect_timeout_ms))
                // A replica on a host that died leaves its streams half-open: without pings
                // its downloads would wait on it for ever instead of failing over.
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true);
            replicas.push((address.clone(), SchedulerClient::new(channel(&endpoint, cfg.tls.as_ref()))));
        }
        Ok(SchedLink {
            instances: Mutex::new(vec![None; replicas.len()]),
            up: Mutex::new(vec![true; replicas.len()]),
            up_changes: svc::watch::channel(vec![true; replicas.len()]).0,
            replicas,
            host,
            resolvers: Mutex::new(Vec::new()),
            request_timeout: Duration::from_millis(cfg.scheduler.request_timeout_ms),
        })
    }

    pub fn host(&self) -> &pb::Host {
        &self.host
    }

    pub fn is_enabled(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// The replica in charge of `task` among those answering.
    pub fn for_task(&self, task: &TaskId) -> Option<Replica<'_>> {
        let index = self.replica_of(task)?;
        let (address, client) = &self.replicas[index];
        Some(Replica { index, address: address.as_str(), client: client.clone() })
    }

    /// The index of the replica in charge of `task` among those answering now.
    pub fn replica_of(&self, task: &TaskId) -> Option<usize> {
        self.replica_of_among(task, &self.up())
    }

    /// ... among the replicas `up` marks as answering (`hashring::replica_among`, the rule
    /// the simulator routes by too).
    pub fn replica_of_among(&self, task: &TaskId, up: &[bool]) -> Option<usize> {
        let b = task.as_bytes();
        let key = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        sched::core::hashring::replica_among(key, up)
    }

    /// Which replicas answered the last call made to them.
    pub fn up(&self) -> Vec<bool> {
        self.up.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Told of every change of `up`.
    pub fn watch_up(&self) -> svc::watch::Receiver<Vec<bool>> {
        self.up_changes.subscribe()
    }

    /// Records whether replica `index` answered a call; says so in the log when that changes.
    pub fn mark(&self, index: usize, answering: bool) {
        let up = {
            let mut up = self.up.lock().unwrap_or_else(|e| e.into_inner());
            if index >= up.len() || up[index] == answering {
                return;
            }
            up[index] = answering;
            self.up_changes.send_replace(up.clone());
            up.clone()
        };
        let address = &self.replicas[index].0;
        if answering {
            tracing::info!(scheduler = address, "scheduler replica answers again; its tasks come back to it");
        } else if up.iter().any(|u| *u) {
            tracing::warn!(
                scheduler = address,
                "scheduler replica does not answer; its tasks go to the other replicas"
            );
        } else {
            tracing::warn!(scheduler = address, "no scheduler replica answers");
        }
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    pub fn replicas(&self) -> impl Iterator<Item = (&str, SchedulerClient<Channel>)> {
        self.replicas.iter().map(|(a, c)| (a.as_str(), c.clone()))
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Announces the host to every replica, all at once (a replica that does not answer
    /// holds up none of the others).
    pub async fn announce(&self, load: pb::HostLoad) -> Announced {
        let mut host = self.host.clone();
        host.load = Some(load);
        let mut out = Announced::default();
        let mut resolvers = std::collections::BTreeSet::new();
        let calls: Vec<_> = self
            .replicas()
            .map(|(_, mut client)| {
                let request = pb::AnnounceHostRequest { host: Some(host.clone()) };
                let timeout = self.request_timeout;
                tokio::spawn(async move { tokio::time::timeout(timeout, client.announce_host(request)).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let address = self.replicas[i].0.as_str();
            let Ok(result) = call.await else { continue };
            match result {
                Ok(Ok(response)) => {
                    self.mark(i, true);
                    out.accepted += 1;
                    let response = response.into_inner();
                    for r in &response.resolvers {
                        match r.parse::<std::net::SocketAddr>() {
                            Ok(a) => {
                                resolvers.insert(a);
                            }
                            Err(_) => tracing::warn!(scheduler = address, resolver = r, "not IP:PORT; ignored"),
                        }
                    }
                    let instance = response.scheduler_instance;
                    let mut seen = self.instances.lock().unwrap_or_else(|e| e.into_inner());
                    if seen[i].as_deref() != Some(instance.as_str()) {
                        if seen[i].is_some() {
                            tracing::info!(scheduler = address, instance, "scheduler restarted");
                        }
                        seen[i] = Some(instance);
                        out.new_instances.push(i);
                    }
                }
                Ok(Err(status)) => {
                    // Unavailable: nobody listens there, or it is shutting down.
                    self.mark(i, status.code() != tonic::Code::Unavailable);
                    tracing::warn!(scheduler = address, error = %status.message(), "announce refused")
                }
                Err(_) => {
                    self.mark(i, false);
                    tracing::warn!(scheduler = address, "announce timed out")
                }
            }
        }
        if out.accepted > 0 {
            let resolvers: Vec<_> = resolvers.into_iter().collect();
            let mut held = self.resolvers.lock().unwrap_or_else(|e| e.into_inner());
            if *held != resolvers {
                tracing::info!(resolvers = ?resolvers, "seed resolvers for manifests");
                *held = resolvers;
            }
        }
        out
    }

    /// The seed peers' manifest resolvers, as the schedulers last named them.
    pub fn resolvers(&self) -> Vec<std::net::SocketAddr> {
        self.resolvers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tells every replica the host is going away.
    pub async fn leave(&self) {
        for (address, mut client) in self.replicas() {
            let call = client.leave_host(pb::LeaveHostRequest { host_id: self.host.id.clone() });
            if let Ok(Err(status)) = tokio::time::timeout(self.request_timeout, call).await {
                tracing::debug!(scheduler = address, error = %status.message(), "leave refused");
            }
        }
    }

    /// The task no longer lives here (garbage-collected).
    pub async fn leave_task(&self, task: &TaskId) {
        if let Some(Replica { mut client, .. }) = self.for_task(task) {
            let call =
                client.leave_task(pb::LeaveTaskRequest { host_id: self.host.id.clone(), task_id: task.to_hex() });
            let _ = tokio::time::timeout(self.request_timeout, call).await;
        }
    }

    /// The lengths the scheduler recorded for a task (the first peer's), if it knows it.
    pub async fn task_lengths(&self, task: &TaskId) -> Option<(u64, u64)> {
        let Replica { mut client, .. } = self.for_task(task)?;
        let call = client.stat_task(pb::StatTaskRequest { task_id: task.to_hex(), include_peers: false, max_peers: 0 });
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(stat)) => {
                let s = stat.into_inner();
                (s.piece_length_bytes > 0).then_some((s.content_length_bytes, s.piece_length_bytes))
            }
            _ => None,
        }
    }
}

/// The host as announced.
/// `resolver_port`: the seed's manifest resolver (`listen.resolver`), 0 for none.
pub fn host_message(cfg: &DaemonConfig, data_port: u16, resolver_port: u16) -> pb::Host {
    let hostname = if cfg.host.hostname.is_empty() { system_hostname() } else { cfg.host.hostname.clone() };
    let id = if cfg.host.id.is_empty() { format!("{hostname}-{data_port}") } else { cfg.host.id.clone() };
    pb::Host {
        id,
        hostname,
        ip: cfg.host.advertise_ip.to_string(),
        data_port: u32::from(data_port),
        upload_capacity_bytes_per_s: cfg.host.upload_capacity_bytes_per_s,
        download_capacity_bytes_per_s: cfg.host.download_capacity_bytes_per_s,
        kind: match cfg.host.kind {
            HostKind::Normal => pb::HostKind::Normal,
            HostKind::Seed => pb::HostKind::Seed,
        }
        .into(),
        idc: cfg.host.idc.clone(),
        location: cfg.host.location.clone(),
        disable_shared: false,
        load: None,
        resolver_port: u32::from(resolver_port),
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
