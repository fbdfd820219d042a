//! Starting and stopping one scheduler service: binds the gRPC and HTTP listeners, spawns
//! the timer task and the metrics responder, and serves until `Running::shutdown`.
//!
//! Shutdown: new RPCs are refused, every open stream ends with UNAVAILABLE (clients
//! reconnect, to another replica if there is one), tonic drains the connections for at
//! most `shutdown_grace`, and the background tasks stop.

use super::config::ServiceConfig;
use super::grpc::SchedulerService;
use super::metrics::Metrics;
use super::shared::Shared;
use super::state::State;
use super::timers::{self, Clock};
use api::pb::scheduler_server::SchedulerServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use svc::watch;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
}

#[derive(Debug, thiserror::Error)]
#[error("gRPC server failed: {0}")]
pub struct ServeError(String);

/// A service that is serving.
pub struct Running {
    /// Where gRPC is served (the real port when the configuration said 0).
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    server: JoinHandle<Result<(), ServeError>>,
}

pub async fn start(cfg: ServiceConfig) -> Result<Running, StartError> {
    let (grpc_addr, grpc_listener) = bind_grpc(cfg.grpc_addr).await?;
    let http_listener = TcpListener::bind(cfg.http_addr).await.map_err(|source| StartError::Bind {
        key: "listen.http",
        addr: cfg.http_addr,
        source,
    })?;
    let http_addr = http_listener.local_addr().unwrap_or(cfg.http_addr);

    let seed = cfg.rng_seed.unwrap_or_else(seed_from_clock);
    let metrics = Arc::new(Metrics::new());
    match &cfg.grants {
        Some(grants) => {
            if let Some(warning) = grants.key().permission_warning() {
                tracing::warn!("{warning}");
            }
            tracing::info!(key_file = %grants.key().path().display(), "Parents carry data-plane grants");
        }
        None => tracing::info!(
            "no [service] grant_key_file: Parents carry no data-plane grant, so parents configured with a grant key refuse every download"
        ),
    }
    if let Some(tls) = &cfg.tls {
        metrics.watch_tls(tls.clone());
        tracing::info!(tls = ?tls, "gRPC takes only clients with a certificate of the cluster CA");
    }
    let state = State::new(cfg.scheduler.clone(), cfg.tuning, seed, metrics).with_grants(cfg.grants.clone());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(state, Clock::start(), cfg.tuning, shutdown_rx.clone()));

    tokio::spawn(timers::run(shared.clone()));
    match &cfg.preheat.auth {
        Some(auth) => tracing::info!(auth_file = %auth.path().display(), "preheat POSTs need [preheat] auth_file's value"),
        None => tracing::info!(
            "no [preheat] auth_file: anyone who reaches listen.http can start preheats (POST /api/v1/preheat, /api/v1/webhooks/harbor)"
        ),
    }
    tokio::spawn(super::http::serve(http_listener, shared.clone(), cfg.preheat.clone()));

    let service = SchedulerService::new(shared.clone());
    let signal = {
        let shared = shared.clone();
        let mut rx = shutdown_rx;
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
            shared.with_state("shutdown", |s, _| {
                s.close_all_streams(Status::unavailable("the scheduler is shutting down; reconnect"))
            });
        }
    };
    let server =
        tokio::spawn(serve(service, cfg.tuning.max_message_bytes, grpc_addr, grpc_listener, cfg.tls.clone(), signal));
    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        policy = cfg.scheduler.policy.name(),
        rng_seed = seed,
        "scheduler serving"
    );
    Ok(Running { grpc_addr, http_addr, shared, shutdown, grace: cfg.tuning.shutdown_grace, server })
}

impl Running {
    /// Starts the shutdown; `wait` returns when it is done.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `signal` completes, then shuts down gracefully. A server that stops by
    /// itself before that is an error.
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        svc::select! {
            joined = &mut self.server => {
                flatten(joined)?;
                return Err(ServeError("the gRPC server stopped by itself".to_string()));
            }
            _ = signal => {}
        }
        self.shutdown();
        self.wait().await
    }

    /// Waits for the server to stop (after `shutdown`, at most `shutdown_grace` more).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        let mut stopping = self.shutdown.subscribe();
        svc::select! {
            joined = &mut self.server => return flatten(joined),
            _ = stopping.wait_for(|stop| *stop) => {}
        }
        match tokio::time::timeout(self.grace, &mut self.server).await {
            Ok(joined) => flatten(joined),
            Err(_) => {
                tracing::warn!(
                    grace_ms = self.grace.as_millis() as u64,
                    "connections still open after the grace period"
                );
                self.server.abort();
                Ok(())
            }
        }
    }
}

fn flatten(joined: Result<Result<(), ServeError>, tokio::task::JoinError>) -> Result<(), ServeError> {
    joined.map_err(|e| ServeError(e.to_string()))?
}

#[cfg(not(madsim))]
type GrpcListener = TcpListener;
/// Under madsim, madsim-tonic binds its own simulated endpoint from the address.
#[cfg(madsim)]
type GrpcListener = ();

#[cfg(not(madsim))]
async fn bind_grpc(addr: SocketAddr) -> Result<(SocketAddr, GrpcListener), StartError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| StartError::Bind { key: "listen.grpc", addr, source })?;
    Ok((listener.local_addr().unwrap_or(addr), listener))
}

/// madsim-tonic does not report the port it bound, so port 0 cannot be told to clients.
#[cfg(madsim)]
async fn bind_grpc(addr: SocketAddr) -> Result<(SocketAddr, GrpcListener), StartError> {
    if addr.port() == 0 {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "under madsim, give a fixed port");
        return Err(StartError::Bind { key: "listen.grpc", addr, source });
    }
    Ok((addr, ()))
}

#[cfg(not(madsim))]
async fn serve(
    service: SchedulerService,
    max_message_bytes: usize,
    _addr: SocketAddr,
    listener: GrpcListener,
    tls: Option<svc::tls::Tls>,
    signal: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let router = tonic::transport::Server::builder()
        .add_service(SchedulerServer::new(service).max_decoding_message_size(max_message_bytes));
    let served = match tls {
        Some(tls) => {
            let incoming = svc::tls::grpc_incoming(listener, tls, svc::tls::Listener::Grpc);
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
    };
    served.map_err(|e| ServeError(e.to_string()))
}

#[cfg(madsim)]
async fn serve(
    service: SchedulerService,
    max_message_bytes: usize,
    addr: SocketAddr,
    _listener: GrpcListener,
    _tls: Option<svc::tls::Tls>,
    signal: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    tonic::transport::Server::builder()
        .add_service(SchedulerServer::new(service).max_decoding_message_size(max_message_bytes))
        .serve_with_shutdown(addr, signal)
        .await
        .map_err(|e| ServeError(e.to_string()))
}

/// No seed configured: any value will do, as long as replicas differ.
fn seed_from_clock() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
