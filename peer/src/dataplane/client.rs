//! The child side: a small pool of connections per parent, a few requests pipelined on each,
//! every piece checked against the digest the parent advertised.

use super::conn::{lock, time_compat, Conn, Lane, Pool, Reply};
use super::frame::{ErrorCode, PiecesReply, Request};
use super::io::blocking;
use super::ratelimit::{RateLimit, TokenBucket};
use crate::storage::{BufferPool, PieceDigest, VerifiedPiece};
use crate::task_id::TaskId;
use sched::core::PieceSet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use svc::grant::Grant;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    pub connect_timeout_ms: u64,
    /// A request's whole life: waiting for a pipeline slot, the parent's upload slot, and the
    /// transfer (a long poll gets its wait on top).
    pub request_timeout_ms: u64,
    /// Connections to one parent for pieces, and as many again for piece-map long polls.
    pub max_connections_per_parent: u32,
    /// Piece requests pipelined on one connection.
    pub max_pieces_per_connection: u32,
    /// Long polls outstanding on one connection (one per task synced from that parent).
    pub max_syncs_per_connection: u32,
    /// Download bandwidth of this host, across parents; none: unlimited.
    pub download_rate: Option<RateLimit>,
    /// `[tls]`: connect with TLS, showing this host's certificate and checking the
    /// parent's against the cluster CA. None: plain TCP.
    #[serde(skip)]
    pub tls: Option<svc::tls::Tls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout_ms: 3_000,
            request_timeout_ms: 60_000,
            max_connections_per_parent: 2,
            max_pieces_per_connection: 4,
            max_syncs_per_connection: 16,
            download_rate: None,
            tls: None,
        }
    }
}

impl ClientConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections_per_parent == 0
            || self.max_pieces_per_connection == 0
            || self.max_syncs_per_connection == 0
        {
            return Err(
                "max_connections_per_parent, max_pieces_per_connection and max_syncs_per_connection must be at least 1"
                    .into(),
            );
        }
        if let Some(rate) = &self.download_rate {
            rate.validate("download_rate")?;
        }
        Ok(())
    }
}

/// Why a request to a parent failed. Every variant names the parent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("parent {parent}: cannot connect: {reason}")]
    Connect { parent: SocketAddr, reason: String },
    #[error("parent {parent}: connection lost: {reason}")]
    ConnectionLost { parent: SocketAddr, reason: String },
    #[error("parent {parent}: no answer about task {task}{} within {after_ms} ms", piece_suffix(*piece))]
    Timeout { parent: SocketAddr, task: TaskId, piece: Option<u32>, after_ms: u64 },
    /// The parent broke the protocol: report it.
    #[error("parent {parent}: {reason}")]
    Protocol { parent: SocketAddr, reason: String },
    /// The parent sent bytes that do not match the digest it advertised: report it.
    #[error("{0}")]
    BadDigest(Box<BadDigest>),
    /// The parent refused (`Busy`: try another parent).
    #[error("parent {parent} refused task {task}{}: {code:?}: {message}", piece_suffix(*piece))]
    Refused { parent: SocketAddr, task: TaskId, piece: Option<u32>, code: ErrorCode, message: String },
    #[error("invalid data-plane client configuration: {0}")]
    Config(String),
}

/// A piece whose bytes do not match the digest its parent advertised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parent {parent} sent task {task} piece {piece} with digest {actual}, but advertised {expected}")]
pub struct BadDigest {
    pub parent: SocketAddr,
    pub task: TaskId,
    pub piece: u32,
    pub expected: PieceDigest,
    pub actual: PieceDigest,
}

fn piece_suffix(piece: Option<u32>) -> String {
    piece.map(|p| format!(" piece {p}")).unwrap_or_default()
}

impl FetchError {
    pub fn parent(&self) -> Option<SocketAddr> {
        match self {
            FetchError::Connect { parent, .. }
            | FetchError::ConnectionLost { parent, .. }
            | FetchError::Timeout { parent, .. }
            | FetchError::Protocol { parent, .. }
            | FetchError::Refused { parent, .. } => Some(*parent),
            FetchError::BadDigest(bad) => Some(bad.parent),
            FetchError::Config(_) => None,
        }
    }

    /// The parent misbehaved (wrong bytes, broken protocol): tell the scheduler.
    pub fn is_parent_fault(&self) -> bool {
        matches!(self, FetchError::BadDigest(_) | FetchError::Protocol { .. })
    }
}

/// What the child knows of one parent's copy of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentPieces {
    pub content_bytes: u64,
    pub piece_bytes: u64,
    pub piece_count: u32,
    pub completed: bool,
    pub finished: PieceSet,
    digests: Vec<Option<PieceDigest>>,
}

impl ParentPieces {
    /// The advertised digest of a piece the parent has.
    pub fn digest(&self, piece: u32) -> Option<PieceDigest> {
        if self.finished.contains(piece) {
            self.digests[piece as usize]
        } else {
            None
        }
    }

    /// Pieces the child can fetch: finished at the parent and with a known digest.
    pub fn usable(&self) -> PieceSet {
        let mut set = self.finished.clone();
        for p in self.finished.iter() {
            if self.digests[p as usize].is_none() {
                set.remove(p);
            }
        }
        set
    }
}

/// One sync's outcome: the parent's new state and what changed for the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceUpdate {
    pub pieces: ParentPieces,
    /// Newly usable pieces (give them to the plan: `TaskDownload::on_parent_has`).
    pub added: Vec<u32>,
    /// Pieces the parent no longer has (it dropped them as corrupt).
    pub removed: Vec<u32>,
    /// Piece uploads the parent's host was running (`TaskDownload::on_parent_uploads`).
    pub uploads_active: u32,
}

/// Data-plane client of one host; share it (`Arc`) across tasks.
pub struct PeerClient {
    config: ClientConfig,
    /// Per parent, piece connections and piece-map connections apart: a piece-map reply
    /// that queued behind piece bytes on a shared connection reached the child 0.3-2.5 s
    /// after the parent stored the piece (12 pods at 100 Mbit/s, 512 KiB pieces), and the
    /// child asked for fewer pieces than it could have.
    pools: Mutex<HashMap<(SocketAddr, Lane), Arc<Pool>>>,
    download_bucket: Option<Arc<TokenBucket>>,
    /// Receive buffers; `recycle` gives them back.
    buffers: Arc<BufferPool>,
    /// The scheduler's grant per task being downloaded (`set_grant`), presented to parents.
    grants: Mutex<HashMap<TaskId, Grant>>,
}

impl PeerClient {
    pub fn new(config: ClientConfig) -> Result<PeerClient, FetchError> {
        PeerClient::with_buffers(config, Arc::new(BufferPool::default()))
    }

    /// A client receiving pieces into `buffers` (the store's: `Store::buffers`), so that the
    /// buffers of pieces the piece cache let go receive the next ones.
    pub fn with_buffers(config: ClientConfig, buffers: Arc<BufferPool>) -> Result<PeerClient, FetchError> {
        config.validate().map_err(FetchError::Config)?;
        let download_bucket = match config.download_rate {
            Some(rate) => Some(Arc::new(TokenBucket::new(rate, "download_rate").map_err(FetchError::Config)?)),
            None => None,
        };
        Ok(PeerClient { config, pools: Mutex::new(HashMap::new()), download_bucket, buffers, grants: Mutex::default() })
    }

    /// Presents `grant` to every parent asked for its task from now on (replacing an
    /// earlier grant for it). Expired grants of other tasks are dropped on the way.
    pub fn set_grant(&self, grant: Grant) {
        let now = svc::grant::unix_now_s();
        let mut grants = lock(&self.grants);
        grants.retain(|_, g| g.expires_unix_s > now);
        grants.insert(TaskId::from_bytes(grant.task), grant);
    }

    /// The download of `task` ended: its grant is no longer presented.
    pub fn forget_grant(&self, task: &TaskId) {
        lock(&self.grants).remove(task);
    }

    fn grant(&self, task: &TaskId) -> Option<Grant> {
        lock(&self.grants).get(task).cloned()
    }

    /// Hands a piece's buffer back once its bytes are stored (optional: it saves an
    /// allocation and page faults on a later piece).
    pub fn recycle(&self, piece: VerifiedPiece) {
        self.buffers.give(piece.into_data());
    }

    /// Fetches a piece and checks it against `expected`, the digest the parent advertised.
    pub async fn fetch_piece(
        &self,
        parent: SocketAddr,
        task: &TaskId,
        piece: u32,
        expected: &PieceDigest,
    ) -> Result<VerifiedPiece, FetchError> {
        self.fetch_piece_then(parent, task, piece, expected, || {}).await
    }

    /// `fetch_piece`, calling `on_received` once the piece's bytes are in, before they are
    /// hashed (the caller may ask the parent for the next piece meanwhile).
    pub async fn fetch_piece_then(
        &self,
        parent: SocketAddr,
        task: &TaskId,
        piece: u32,
        expected: &PieceDigest,
        on_received: impl FnOnce(),
    ) -> Result<VerifiedPiece, FetchError> {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let deadline = Instant::now() + timeout;
        let timed_out =
            || FetchError::Timeout { parent, task: *task, piece: Some(piece), after_ms: timeout.as_millis() as u64 };
        let reply = {
            // The pipeline slot is free again once the bytes are in, before the hashing.
            let (conn, _lane) =
                self.connection(parent, Lane::Piece, deadline).await.map_err(|e| e.unwrap_or_else(timed_out))?;
            conn.call(&Request::GetPiece { task: *task, piece }, self.grant(task).as_ref(), deadline)
                .await
                .map_err(|e| e.unwrap_or_else(timed_out))?
        };
        match reply {
            Reply::Piece { piece: got, data } if got == piece => {
                on_received();
                let want = *expected;
                let checked = blocking(move || VerifiedPiece::check(data, &want))
                    .await
                    .map_err(|e| FetchError::ConnectionLost { parent, reason: e.to_string() })?;
                checked.map_err(|actual| {
                    FetchError::BadDigest(Box::new(BadDigest {
                        parent,
                        task: *task,
                        piece,
                        expected: *expected,
                        actual,
                    }))
                })
            }
            Reply::Piece { piece: got, .. } => {
                Err(FetchError::Protocol { parent, reason: format!("sent piece {got} for a request of piece {piece}") })
            }
            Reply::Error { code, message } => {
                Err(FetchError::Refused { parent, task: *task, piece: Some(piece), code, message })
            }
            Reply::Pieces(_) => {
                Err(FetchError::Protocol { parent, reason: "answered a piece request with a piece map".into() })
            }
        }
    }

    /// The parent's piece map. With `known` (the previous update's `pieces`) and a `wait`,
    /// the parent answers once it has something new, or when the wait ends (long poll).
    pub async fn sync_pieces(
        &self,
        parent: SocketAddr,
        task: &TaskId,
        known: Option<&ParentPieces>,
        wait: Duration,
    ) -> Result<PieceUpdate, FetchError> {
        let timeout = wait + Duration::from_millis(self.config.request_timeout_ms);
        let deadline = Instant::now() + timeout;
        let timed_out =
            || FetchError::Timeout { parent, task: *task, piece: None, after_ms: timeout.as_millis() as u64 };
        let (conn, _lane) =
            self.connection(parent, Lane::Sync, deadline).await.map_err(|e| e.unwrap_or_else(timed_out))?;
        let request = Request::SyncPieces {
            task: *task,
            wait_ms: wait.as_millis().min(u32::MAX as u128) as u32,
            known: known.map(ParentPieces::usable),
        };
        let reply =
            conn.call(&request, self.grant(task).as_ref(), deadline).await.map_err(|e| e.unwrap_or_else(timed_out))?;
        match reply {
            Reply::Pieces(reply) => merge(parent, known, reply),
            Reply::Error { code, message } => {
                Err(FetchError::Refused { parent, task: *task, piece: None, code, message })
            }
            Reply::Piece { .. } => {
                Err(FetchError::Protocol { parent, reason: "answered a piece-map request with a piece".into() })
            }
        }
    }

    /// Closes the pooled connections to a parent (once their requests finish).
    pub fn forget_parent(&self, parent: SocketAddr) {
        lock(&self.pools).retain(|(addr, _), _| *addr != parent);
    }

    /// Live pooled connections to a parent.
    pub fn connections(&self, parent: SocketAddr) -> usize {
        let pools: Vec<_> =
            lock(&self.pools).iter().filter(|((addr, _), _)| *addr == parent).map(|(_, p)| p.clone()).collect();
        pools.iter().map(|p| lock(&p.conns).iter().filter(|c| c.is_open()).count()).sum()
    }

    /// A connection with a free slot in `lane` (piece and piece-map requests never share
    /// one): a pooled one, a new one while the pool is
    /// not full, else the least busy one once a slot frees up. `Err(None)` means the
    /// deadline passed.
    async fn connection(
        &self,
        parent: SocketAddr,
        lane: Lane,
        deadline: Instant,
    ) -> Result<(Arc<Conn>, OwnedSemaphorePermit), Option<FetchError>> {
        let pool = lock(&self.pools).entry((parent, lane)).or_default().clone();
        let max = self.config.max_connections_per_parent as usize;
        if let Some(found) = pool.take_free(lane) {
            return Ok(found);
        }
        // Below the pool size, or every pooled connection just died: connect.
        let least_busy = match pool.least_busy(lane) {
            Some(conn) if pool.open_count() >= max => conn,
            _ => {
                let _connecting = time_compat::timeout_at(deadline, pool.connecting.lock()).await.ok_or(None)?;
                if let Some(found) = pool.take_free(lane) {
                    return Ok(found);
                }
                match pool.least_busy(lane) {
                    Some(conn) if pool.open_count() >= max => conn,
                    _ => {
                        let (bucket, buffers) = (self.download_bucket.clone(), self.buffers.clone());
                        let conn = Conn::open(parent, &self.config, bucket, buffers, deadline).await.map_err(Some)?;
                        lock(&pool.conns).push(conn.clone());
                        let permit = conn.shared.lane(lane).clone().try_acquire_owned();
                        return permit.map(|p| (conn.clone(), p)).map_err(|_| Some(conn.shared.closed_error()));
                    }
                }
            }
        };
        let sem = least_busy.shared.lane(lane).clone();
        match time_compat::timeout_at(deadline, sem.acquire_owned()).await {
            Some(Ok(permit)) => Ok((least_busy, permit)),
            Some(Err(_)) => Err(Some(least_busy.shared.closed_error())),
            None => Err(None),
        }
    }
}

/// Applies a Pieces reply to what the child knew of this parent.
fn merge(parent: SocketAddr, known: Option<&ParentPieces>, reply: PiecesReply) -> Result<PieceUpdate, FetchError> {
    let uploads_active = reply.uploads_active;
    let mut digests = match known {
        Some(k) => {
            if (k.content_bytes, k.piece_bytes) != (reply.content_bytes, reply.piece_bytes) {
                return Err(FetchError::Protocol {
                    parent,
                    reason: format!(
                        "task lengths changed from {}/{} to {}/{} bytes",
                        k.content_bytes, k.piece_bytes, reply.content_bytes, reply.piece_bytes
                    ),
                });
            }
            k.digests.clone()
        }
        None => vec![None; reply.piece_count as usize],
    };
    for (piece, digest) in reply.digests {
        digests[piece as usize] = Some(digest);
    }
    let pieces = ParentPieces {
        content_bytes: reply.content_bytes,
        piece_bytes: reply.piece_bytes,
        piece_count: reply.piece_count,
        completed: reply.completed,
        finished: reply.finished,
        digests,
    };
    let before = known.map(ParentPieces::usable).unwrap_or_else(|| PieceSet::new(pieces.piece_count));
    let after = pieces.usable();
    let added = after.iter_minus(&before).collect();
    let removed = before.iter_minus(&after).collect();
    Ok(PieceUpdate { pieces, added, removed, uploads_active })
}
