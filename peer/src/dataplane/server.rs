//! The parent side: serves piece maps (long poll) and piece bytes, re-verified, from the store
//! (`Store::read_piece_shared`: from its memory cache of verified pieces when it holds the
//! piece, else read from disk and re-hashed).
//!
//! Per connection one reader loop reads requests (at most `max_requests_per_connection` in
//! flight; beyond that it stops reading, which pushes back through TCP), each request runs
//! as its own task, and one writer task sends the replies in the order they are ready,
//! charging the upload token bucket as the bytes go out. A piece holds an upload slot from
//! the disk read until its last byte is written.
//!
//! With a grant key (`ServerConfig::grant_key`) the reader loop answers a request for a
//! task only when the connection presented a valid grant for it (`grants::ConnGrants`),
//! else at once with `Unauthorized`. Without one, every task in the store is served.

use super::frame::{self, ErrorCode, PiecesReply, Request, HELLO, MAX_DIGESTS_PER_REPLY, MAX_REQUEST_BODY};
use super::grants::ConnGrants;
use super::io::{blocking, read_body, read_header, server_stream, write_frame, Stream};
use super::ratelimit::{RateLimit, TokenBucket};
use super::slots::{UploadGate, UploadSlot};
use crate::storage::{PieceMap, SharedPiece, Store, StoreError};
use crate::task_id::TaskId;
use sched::core::PieceSet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use svc::grant::{unix_now_s, GrantKey};
use svc::watch;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes written (and charged to the upload bucket) at a time.
const WRITE_CHUNK_BYTES: usize = 256 << 10;
const READ_BUFFER_BYTES: usize = 64 << 10;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors...), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Piece uploads at once, across connections and tasks (`core::UploadSlots`). Not a
    /// key of `[dataplane.server]`: the daemon sets it from `[peer] upload_slots`, the
    /// core's value the simulator models too.
    #[serde(skip)]
    pub upload_slots: u32,
    /// A piece request waits at most this long for a slot, then gets `Busy`. Set from
    /// `[peer] upload_slot_wait_ns`.
    #[serde(skip)]
    pub slot_wait_ms: u64,
    /// Upload bandwidth of this host; none: unlimited.
    pub upload_rate: Option<RateLimit>,
    /// Connections beyond this are closed at once.
    pub max_connections: u32,
    /// Requests in flight per connection; the server stops reading beyond it.
    pub max_requests_per_connection: u32,
    /// A connection with no new request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Once a request's first byte is in, the whole frame must be within this, or the
    /// connection is closed (a sender trickling a frame holds no slot for long).
    pub frame_timeout_ms: u64,
    /// Connections open at once from one source address; more are closed at once, so one
    /// host cannot take every slot of `max_connections`.
    pub max_connections_per_source: u32,
    /// Longest long poll a child may ask for.
    pub max_sync_wait_ms: u32,
    /// The cluster key: a task is served only on a connection that presented the
    /// scheduler's grant for it. None: served to anyone. Not a key of
    /// `[dataplane.server]`: the daemon reads it from `[dataplane] grant_key_file`.
    #[serde(skip)]
    pub grant_key: Option<GrantKey>,
    /// `[tls]`: a connection is served only after a TLS handshake with a client certificate
    /// of the cluster CA. None: plain TCP.
    #[serde(skip)]
    pub tls: Option<svc::tls::Tls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            upload_slots: 32,
            slot_wait_ms: 10_000,
            upload_rate: None,
            max_connections: 1024,
            max_requests_per_connection: 32,
            idle_timeout_ms: 120_000,
            frame_timeout_ms: 10_000,
            max_connections_per_source: 64,
            max_sync_wait_ms: 30_000,
            grant_key: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.upload_slots == 0 || self.max_connections == 0 || self.max_requests_per_connection == 0 {
            return Err("upload_slots, max_connections and max_requests_per_connection must be at least 1".into());
        }
        if self.frame_timeout_ms == 0 || self.max_connections_per_source == 0 {
            return Err("frame_timeout_ms and max_connections_per_source must be at least 1".into());
        }
        if let Some(rate) = &self.upload_rate {
            rate.validate("upload_rate")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data-plane server configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub connections_open: u64,
    pub connections_total: u64,
    pub connections_refused: u64,
    pub requests: u64,
    pub pieces_sent: u64,
    pub piece_bytes_sent: u64,
    /// Pieces found corrupt on the re-check before sending (dropped, not sent).
    pub corrupt_pieces: u64,
    /// Piece requests answered `Busy` (no upload slot in time).
    pub busy_replies: u64,
    /// Requests refused for want of a valid grant (`Unauthorized`).
    pub unauthorized_replies: u64,
    pub uploads_active: u32,
    pub uploads_peak: u32,
}

#[derive(Default)]
struct Counters {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    requests: AtomicU64,
    pieces_sent: AtomicU64,
    piece_bytes_sent: AtomicU64,
    corrupt_pieces: AtomicU64,
    busy_replies: AtomicU64,
    unauthorized_replies: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

struct Shared {
    store: Arc<Store>,
    config: ServerConfig,
    gate: Arc<UploadGate>,
    upload_bucket: Option<TokenBucket>,
    counters: Counters,
    connections: Arc<Semaphore>,
    /// Open connections per source address (`max_connections_per_source`); only looked up
    /// by key, never iterated.
    per_source: Mutex<HashMap<IpAddr, u32>>,
}

/// A running data-plane server. Dropping it stops it (connections close at their next step).
pub struct Server {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    shared: Arc<Shared>,
    accept_loop: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (port 0 picks one; see `local_addr`) and serves `store`.
    pub async fn bind(addr: SocketAddr, store: Arc<Store>, config: ServerConfig) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let upload_bucket = match config.upload_rate {
            Some(rate) => Some(TokenBucket::new(rate, "upload_rate").map_err(ServerError::Config)?),
            None => None,
        };
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            store,
            gate: UploadGate::new(config.upload_slots),
            upload_bucket,
            counters: Counters::default(),
            connections: Arc::new(Semaphore::new(config.max_connections as usize)),
            per_source: Mutex::new(HashMap::new()),
            config,
        });
        let (shutdown, stop) = watch::channel(false);
        let accept_loop = tokio::spawn(accept_loop(listener, shared.clone(), stop));
        Ok(Server { local_addr, shutdown, shared, accept_loop: Some(accept_loop) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            connections_open: get(&c.connections_open),
            connections_total: get(&c.connections_total),
            connections_refused: get(&c.connections_refused),
            requests: get(&c.requests),
            pieces_sent: get(&c.pieces_sent),
            piece_bytes_sent: get(&c.piece_bytes_sent),
            corrupt_pieces: get(&c.corrupt_pieces),
            busy_replies: get(&c.busy_replies),
            unauthorized_replies: get(&c.unauthorized_replies),
            uploads_active: self.shared.gate.active(),
            uploads_peak: self.shared.gate.peak_active(),
        }
    }

    /// Stops accepting and tells every connection to close; waits for the accept loop.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(handle) = self.accept_loop.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Resolves once `flag` is set or its sender is gone.
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|&set| set).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = svc::select! {
            accepted = listener.accept() => accepted,
            _ = raised(&mut stop) => return,
        };
        let (stream, from) = match accepted {
            Ok((stream, peer)) => (stream, peer),
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(from_source) = SourceSlot::take(&shared, from.ip()) else {
            bump(&shared.counters.connections_refused, 1);
            drop(stream);
            continue;
        };
        match shared.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                bump(&shared.counters.connections_total, 1);
                tokio::spawn(serve_connection(stream, from, shared.clone(), stop.clone(), (permit, from_source)));
            }
            Err(_) => {
                bump(&shared.counters.connections_refused, 1);
                drop(stream);
            }
        }
    }
}

/// One of a source address's `max_connections_per_source`; given back when dropped.
struct SourceSlot {
    shared: Arc<Shared>,
    source: IpAddr,
}

impl SourceSlot {
    fn take(shared: &Arc<Shared>, source: IpAddr) -> Option<SourceSlot> {
        let mut open = shared.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(source).or_insert(0);
        if *n >= shared.config.max_connections_per_source {
            return None;
        }
        *n += 1;
        Some(SourceSlot { shared: shared.clone(), source })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.shared.per_source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// A reply on its way to the writer, with what it holds until written.
enum Outgoing {
    Frame { bytes: Vec<u8>, _request: OwnedSemaphorePermit },
    Piece { head: Vec<u8>, piece: SharedPiece, _slot: UploadSlot, _request: OwnedSemaphorePermit },
}

async fn serve_connection(
    tcp: TcpStream,
    from: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _conn: (OwnedSemaphorePermit, SourceSlot),
) {
    let open = &shared.counters.connections_open;
    bump(open, 1);
    let _ = tcp.set_nodelay(true);
    let Some(stream) = server_stream(shared.config.tls.as_ref(), tcp, from).await else {
        open.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
    let greeting = async {
        write_frame(&mut wr, &HELLO).await?;
        let mut hello = [0u8; 8];
        rd.read_exact(&mut hello).await?;
        frame::check_hello(&hello).map_err(std::io::Error::other)
    };
    if !matches!(tokio::time::timeout(HELLO_TIMEOUT, greeting).await, Ok(Ok(()))) {
        open.fetch_sub(1, Ordering::Relaxed);
        return;
    }

    let max_requests = shared.config.max_requests_per_connection as usize;
    let (replies, outgoing) = mpsc::channel::<Outgoing>(max_requests);
    let (closed_tx, closed) = watch::channel(false);
    let writer = tokio::spawn(write_loop(wr, outgoing, shared.clone(), closed.clone()));
    let in_flight = Arc::new(Semaphore::new(max_requests));
    let idle = Duration::from_millis(shared.config.idle_timeout_ms);
    let mut grants = ConnGrants::default();
    loop {
        let permit = svc::select! {
            permit = in_flight.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = raised(&mut stop) => break,
        };
        // Waiting for a request may take up to the idle timeout; once its first byte is
        // in, the whole frame must follow within the frame timeout.
        let first_byte = svc::select! {
            ready = tokio::time::timeout(idle, rd.fill_buf()) => ready.map(|r| r.map(|b| !b.is_empty())),
            _ = raised(&mut stop) => break,
        };
        match first_byte {
            Ok(Ok(true)) => {}
            // Quiet, but replies are still being prepared or sent (slow uploads): not idle.
            Err(_elapsed) if in_flight.available_permits() + 1 < max_requests => continue,
            // Idle, closed by the child, or failed: end the connection.
            _ => break,
        }
        let frame_timeout = Duration::from_millis(shared.config.frame_timeout_ms);
        let whole = tokio::time::timeout(frame_timeout, async {
            let header = match read_header(&mut rd).await {
                Ok(Some(header)) => header,
                _ => return None,
            };
            Some((header, read_body(&mut rd, header.body_len, MAX_REQUEST_BODY).await))
        });
        let (header, body) = svc::select! {
            whole = whole => match whole {
                Ok(Some(frame)) => frame,
                // Garbage, closed mid-frame, or trickled past the frame timeout.
                _ => break,
            },
            _ = raised(&mut stop) => break,
        };
        let request = match body {
            Ok(body) => frame::decode_request(header.kind, &body).map_err(|e| e.to_string()),
            Err(super::io::ReadError::Protocol(e)) => Err(e.to_string()),
            Err(super::io::ReadError::Io(_)) => break,
        };
        bump(&shared.counters.requests, 1);
        match request {
            Ok(Request::Grant(grant)) => {
                if let Some(key) = &shared.config.grant_key {
                    grants.present(key, &grant, unix_now_s());
                }
            }
            Ok(request) => {
                if let Err(reason) = authorize(&shared, &grants, &request) {
                    bump(&shared.counters.unauthorized_replies, 1);
                    let bytes = frame::encode_error(header.request_id, ErrorCode::Unauthorized, &reason);
                    let _ = replies.send(Outgoing::Frame { bytes, _request: permit }).await;
                    continue;
                }
                let ctx = RequestCtx { shared: shared.clone(), closed: closed.clone(), stop: stop.clone() };
                let replies = replies.clone();
                tokio::spawn(async move {
                    if let Some(reply) = handle(request, header.request_id, &ctx).await {
                        let _ = replies.send(reply.holding(permit)).await;
                    }
                });
            }
            Err(reason) => {
                let bytes = frame::encode_error(header.request_id, ErrorCode::BadRequest, &reason);
                let _ = replies.send(Outgoing::Frame { bytes, _request: permit }).await;
                break;
            }
        }
    }
    // Replies already queued still go out; then everything tied to this connection stops.
    drop(replies);
    closed_tx.send_replace(true);
    let _ = writer.await;
    open.fetch_sub(1, Ordering::Relaxed);
}

/// Whether the connection may have `request` answered (always without a grant key); the
/// error is the refusal's message.
fn authorize(shared: &Shared, grants: &ConnGrants, request: &Request) -> Result<(), String> {
    match (&shared.config.grant_key, request.reads_task()) {
        (Some(_), Some(task)) => grants.check(task, unix_now_s()),
        _ => Ok(()),
    }
}

async fn write_loop(
    mut wr: tokio::io::WriteHalf<Stream>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    mut closed: watch::Receiver<bool>,
) {
    loop {
        // Drain what is queued even after the reader ended, then stop.
        let next = tokio::select! {
            biased;
            next = outgoing.recv() => next,
            _ = raised(&mut closed) => outgoing.try_recv().ok(),
        };
        let Some(reply) = next else { break };
        let sent = match reply {
            Outgoing::Frame { bytes, .. } => write_frame(&mut wr, &bytes).await,
            Outgoing::Piece { head, piece, .. } => {
                let sent = write_piece(&mut wr, &head, piece.data(), &shared).await;
                shared.store.recycle_piece(piece);
                sent
            }
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn write_piece(
    wr: &mut tokio::io::WriteHalf<Stream>,
    head: &[u8],
    data: &[u8],
    shared: &Shared,
) -> std::io::Result<()> {
    wr.write_all(head).await?;
    match &shared.upload_bucket {
        // Paced in chunks, so a piece does not leave as one burst.
        Some(bucket) => {
            for chunk in data.chunks(WRITE_CHUNK_BYTES) {
                bucket.take(chunk.len() as u64).await;
                wr.write_all(chunk).await?;
            }
        }
        None => wr.write_all(data).await?,
    }
    wr.flush().await?;
    bump(&shared.counters.pieces_sent, 1);
    bump(&shared.counters.piece_bytes_sent, data.len() as u64);
    Ok(())
}

struct RequestCtx {
    shared: Arc<Shared>,
    /// Raised when the connection ends: stop waiting on its behalf.
    closed: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
}

/// A reply before it is tied to its request's permit.
enum Reply {
    Frame(Vec<u8>),
    Piece { head: Vec<u8>, piece: SharedPiece, slot: UploadSlot },
}

impl Reply {
    fn error(id: u32, (code, message): (ErrorCode, String)) -> Reply {
        Reply::Frame(frame::encode_error(id, code, &message))
    }

    fn holding(self, permit: OwnedSemaphorePermit) -> Outgoing {
        match self {
            Reply::Frame(bytes) => Outgoing::Frame { bytes, _request: permit },
            Reply::Piece { head, piece, slot } => Outgoing::Piece { head, piece, _slot: slot, _request: permit },
        }
    }
}

/// The reply to one request; `None` when the connection went away meanwhile.
async fn handle(request: Request, id: u32, ctx: &RequestCtx) -> Option<Reply> {
    match request {
        Request::GetPiece { task, piece } => {
            let mut closed = ctx.closed.clone();
            let wait = Duration::from_millis(ctx.shared.config.slot_wait_ms);
            let slot = svc::select! {
                slot = ctx.shared.gate.acquire(wait) => slot,
                _ = raised(&mut closed) => return None,
            };
            let Some(slot) = slot else {
                bump(&ctx.shared.counters.busy_replies, 1);
                let message = format!("no upload slot free within {} ms", wait.as_millis());
                return Some(Reply::error(id, (ErrorCode::Busy, message)));
            };
            let store = ctx.shared.store.clone();
            Some(match blocking(move || store.read_piece_shared(&task, piece)).await {
                Ok(Ok(data)) => {
                    let head = frame::encode_piece_head(id, piece, data.digest(), data.len());
                    Reply::Piece { head, piece: data, slot }
                }
                Ok(Err(e)) => {
                    if matches!(e, StoreError::CorruptPiece { .. }) {
                        bump(&ctx.shared.counters.corrupt_pieces, 1);
                    }
                    Reply::error(id, store_error_reply(&e))
                }
                Err(e) => Reply::error(id, (ErrorCode::Internal, e.to_string())),
            })
        }
        // Applied by the reader loop; never spawned.
        Request::Grant(_) => None,
        Request::SyncPieces { task, wait_ms, known } => {
            let wait = Duration::from_millis(wait_ms.min(ctx.shared.config.max_sync_wait_ms) as u64);
            Some(match sync_pieces(ctx, &task, known.as_ref(), wait).await? {
                Ok(reply) => Reply::Frame(frame::encode_pieces(id, &reply)),
                Err(e) => Reply::error(id, e),
            })
        }
    }
}

/// The piece map, once it differs from `known` (or at once when `known` is none, the task is
/// complete, or `wait` is zero), at the latest when `wait` ends.
async fn sync_pieces(
    ctx: &RequestCtx,
    task: &TaskId,
    known: Option<&PieceSet>,
    wait: Duration,
) -> Option<Result<PiecesReply, (ErrorCode, String)>> {
    let store = &ctx.shared.store;
    // Subscribe before reading, so a change between the two is not missed.
    let mut changes = match store.watch(task) {
        Ok(rx) => rx,
        Err(e) => return Some(Err(store_error_reply(&e))),
    };
    let (mut closed, mut stop) = (ctx.closed.clone(), ctx.stop.clone());
    let deadline = Instant::now() + wait;
    loop {
        let map = match store.pieces(task) {
            Ok(map) => map,
            Err(e) => return Some(Err(store_error_reply(&e))),
        };
        if let Some(k) = known {
            if k.len() != map.piece_count {
                let message = format!("known bitmap has {} pieces, task {task} has {}", k.len(), map.piece_count);
                return Some(Err((ErrorCode::BadRequest, message)));
            }
        }
        let unchanged = known.is_some_and(|k| *k == map.finished);
        let now = Instant::now();
        if !unchanged || map.completed || now >= deadline {
            return Some(Ok(pieces_reply(&map, known, ctx.shared.gate.active())));
        }
        svc::select! {
            changed = tokio::time::timeout(deadline - now, changes.changed()) => match changed {
                Ok(Ok(())) | Err(_) => continue,
                Ok(Err(_)) => return Some(Err((ErrorCode::TaskNotFound, format!("task {task} was removed")))),
            },
            _ = raised(&mut closed) => return None,
            _ = raised(&mut stop) => return Some(Ok(pieces_reply(&map, known, ctx.shared.gate.active()))),
        }
    }
}

fn pieces_reply(map: &PieceMap, known: Option<&PieceSet>, uploads_active: u32) -> PiecesReply {
    let empty = PieceSet::new(map.piece_count);
    let known = known.unwrap_or(&empty);
    let digests = map
        .finished
        .iter_minus(known)
        .filter_map(|p| map.digests[p as usize].map(|d| (p, d)))
        .take(MAX_DIGESTS_PER_REPLY)
        .collect();
    PiecesReply {
        content_bytes: map.content_bytes,
        piece_bytes: map.piece_bytes,
        piece_count: map.piece_count,
        completed: map.completed,
        uploads_active,
        finished: map.finished.clone(),
        digests,
    }
}

fn store_error_reply(e: &StoreError) -> (ErrorCode, String) {
    let code = match e {
        StoreError::TaskNotFound { .. } => ErrorCode::TaskNotFound,
        StoreError::PieceNotFinished { .. } | StoreError::NoSuchPiece { .. } => ErrorCode::PieceNotAvailable,
        StoreError::CorruptPiece { .. } => ErrorCode::CorruptPiece,
        _ => ErrorCode::Internal,
    };
    // Paths stay on this host; the child gets the kind and the task/piece.
    let message = match e {
        StoreError::CorruptPiece { task, piece, .. } => {
            format!("task {task}: piece {piece} failed its re-check and was dropped")
        }
        StoreError::Io { task, op, .. } => format!("storage error ({op}) for task {task:?}"),
        other => other.to_string(),
    };
    (code, message)
}
