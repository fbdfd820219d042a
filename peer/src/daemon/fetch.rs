//! Piece transfers of one download, each a spawned task that fetches, verifies, stores and
//! reports back: from a parent over the data plane, or from the origin through one
//! streamed ranged read per download.

use super::error::DownloadError;
use super::Ctx;
use crate::dataplane::io::blocking;
use crate::dataplane::{ErrorCode, FetchError};
use crate::origin::{OriginBody, OriginRequest};
use crate::storage::{Sha256Digest, StoreError, VerifiedPiece};
use crate::task_id::TaskId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How a transfer ended.
#[derive(Debug)]
pub enum PieceOutcome {
    Stored { bytes: u64, took: Duration },
    /// Not the parent's fault and not ours (busy, piece gone): try elsewhere.
    Dropped { reason: String },
    /// The parent failed us; `report` when it misbehaved (bad bytes, protocol).
    ParentFailed { error: FetchError },
    /// The download cannot go on (quota, disk, origin refusing).
    Fatal(DownloadError),
}

/// Fetches one piece from a parent and stores it.
pub async fn from_parent(
    ctx: Arc<Ctx>,
    task: TaskId,
    piece: u32,
    parent: SocketAddr,
    digest: Sha256Digest,
) -> PieceOutcome {
    let started = Instant::now();
    let verified = match ctx.client.fetch_piece(parent, &task, piece, &digest).await {
        Ok(v) => v,
        Err(FetchError::Refused { code: ErrorCode::Busy | ErrorCode::PieceNotAvailable, message, .. }) => {
            return PieceOutcome::Dropped { reason: message }
        }
        Err(error) => return PieceOutcome::ParentFailed { error },
    };
    store(ctx, task, piece, verified, Some(digest), started).await
}

async fn store(
    ctx: Arc<Ctx>,
    task: TaskId,
    piece: u32,
    verified: VerifiedPiece,
    expected: Option<Sha256Digest>,
    started: Instant,
) -> PieceOutcome {
    let bytes = verified.len() as u64;
    let store = ctx.store.clone();
    let client = ctx.client.clone();
    let written = blocking(move || {
        let r = store.write_piece(&task, piece, &verified, expected.as_ref());
        client.recycle(verified);
        r
    })
    .await;
    match written {
        Ok(Ok(_)) => PieceOutcome::Stored { bytes, took: started.elapsed() },
        Ok(Err(e @ StoreError::PieceDigestMismatch { .. })) => PieceOutcome::Dropped { reason: e.to_string() },
        Ok(Err(e)) => PieceOutcome::Fatal(e.into()),
        Err(e) => PieceOutcome::Fatal(DownloadError::new(super::error::ErrorKind::Internal, e.to_string())),
    }
}

/// One ranged GET per download, read in piece order; a request for another offset (or a
/// broken body) opens a new range from there to the end. Transient origin errors are
/// retried with a backoff, then they end the download.
pub struct OriginCursor {
    request: OriginRequest,
    content_bytes: u64,
    piece_bytes: u64,
    body: Mutex<Option<(u64, OriginBody)>>,
}

impl OriginCursor {
    pub fn new(request: OriginRequest, content_bytes: u64, piece_bytes: u64) -> OriginCursor {
        OriginCursor { request, content_bytes, piece_bytes, body: Mutex::new(None) }
    }

    pub async fn fetch(self: Arc<Self>, ctx: Arc<Ctx>, task: TaskId, piece: u32) -> PieceOutcome {
        let started = Instant::now();
        let offset = u64::from(piece) * self.piece_bytes;
        let len = self.piece_bytes.min(self.content_bytes - offset) as usize;
        let retries = ctx.cfg.download.origin_retries;
        let backoff = Duration::from_millis(ctx.cfg.download.origin_retry_backoff_ms);
        let mut attempt = 0;
        let data = loop {
            match self.read(&ctx, offset, len).await {
                Ok(data) => break data,
                Err(e) if e.is_transient() && attempt < retries => {
                    attempt += 1;
                    tracing::warn!(task = %task, piece, attempt, error = %e, "origin read failed; retrying");
                    tokio::time::sleep(backoff * attempt).await;
                }
                Err(e) => return PieceOutcome::Fatal(e.into()),
            }
        };
        let verified = match blocking(move || VerifiedPiece::new(data)).await {
            Ok(v) => v,
            Err(e) => return PieceOutcome::Fatal(DownloadError::new(super::error::ErrorKind::Internal, e.to_string())),
        };
        store(ctx, task, piece, verified, None, started).await
    }

    async fn read(&self, ctx: &Ctx, offset: u64, len: usize) -> Result<Vec<u8>, crate::origin::OriginError> {
        let mut slot = self.body.lock().await;
        // Taken out while reading: if this task is aborted mid-read, the half-read body is
        // dropped rather than left at an unknown offset.
        let (at, mut body) = match slot.take() {
            Some((at, body)) if at == offset => (at, body),
            _ => (offset, ctx.origin.open_range(&self.request, offset..self.content_bytes).await?),
        };
        let data = body.read_exact(len).await?;
        if body.remaining() > 0 {
            *slot = Some((at + len as u64, body));
        }
        Ok(data)
    }
}
