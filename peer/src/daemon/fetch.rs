//! Piece transfers of one download, each a spawned task that fetches, verifies, stores and
//! reports back: from a parent over the data plane, or from the origin through one
//! streamed ranged read per download.

use super::error::{DownloadError, ErrorKind};
use super::Ctx;
use crate::dataplane::io::blocking;
use crate::dataplane::{ErrorCode, FetchError};
use crate::origin::{OriginBody, OriginError, OriginRequest};
use crate::storage::{PieceDigest, StoreError, VerifiedPiece};
use crate::task_id::TaskId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How a transfer ended.
#[derive(Debug)]
pub enum PieceOutcome {
    Stored {
        bytes: u64,
        took: Duration,
    },
    /// Not the parent's fault and not ours (busy, piece gone): try elsewhere.
    Dropped {
        reason: String,
    },
    /// The parent failed us (unreachable, refused, bad bytes): report and block it.
    ParentFailed {
        error: FetchError,
    },
    /// The download cannot go on (quota, disk, origin refusing).
    Fatal(DownloadError),
}

/// Fetches one piece from a parent and stores it; `on_received` runs once the bytes are in
/// (before they are hashed and written).
pub async fn from_parent(
    ctx: Arc<Ctx>,
    task: TaskId,
    piece: u32,
    parent: SocketAddr,
    digest: PieceDigest,
    on_received: impl FnOnce(),
) -> PieceOutcome {
    let started = Instant::now();
    let verified = match ctx.client.fetch_piece_then(parent, &task, piece, &digest, on_received).await {
        Ok(v) => v,
        Err(FetchError::Refused { code, message, .. }) if !refusal_blames_parent(code) => {
            return PieceOutcome::Dropped { reason: message }
        }
        Err(error) => return PieceOutcome::ParentFailed { error },
    };
    store(ctx, task, piece, verified, Some((parent, digest)), started).await
}

/// Whether a parent's refusal of a piece is its fault. Only `Busy` is not (no upload slot:
/// try another parent). A parent is asked only for pieces it advertised, so answering
/// `PieceNotAvailable` is claiming a piece it lacks: counted as a failure, the parent is
/// blocked and reported. (As a drop, the plan asked it again at once: a download spun on
/// such a parent at 45,000 requests per second until it went to the origin.)
fn refusal_blames_parent(code: ErrorCode) -> bool {
    code != ErrorCode::Busy
}

/// Writes a verified piece; `parent` is where it came from and the digest it advertised
/// (none: the origin).
async fn store(
    ctx: Arc<Ctx>,
    task: TaskId,
    piece: u32,
    verified: VerifiedPiece,
    parent: Option<(SocketAddr, PieceDigest)>,
    started: Instant,
) -> PieceOutcome {
    let expected = parent.map(|(_, digest)| digest);
    let bytes = verified.len() as u64;
    let store = ctx.store.clone();
    let client = ctx.client.clone();
    let written = blocking(move || {
        let r = store.write_piece(&task, piece, &verified, expected.as_ref());
        let unkept = match r {
            Ok(_) => store.keep_piece(&task, piece, verified),
            Err(_) => Some(verified),
        };
        if let Some(buffer) = unkept {
            client.recycle(buffer);
        }
        r
    })
    .await;
    match written {
        Ok(Ok(_)) => PieceOutcome::Stored { bytes, took: started.elapsed() },
        // The bytes match their source's digest but not the one this store recorded for the
        // piece earlier (as a drop, the plan asked for it again at once, forever).
        Ok(Err(e @ StoreError::PieceDigestMismatch { .. })) => match parent {
            // A parent with other bytes than the record: blocked.
            Some((parent, _)) => {
                let reason = format!("its piece differs from the one recorded here: {e}");
                PieceOutcome::ParentFailed { error: FetchError::Protocol { parent, reason } }
            }
            // The origin disagrees with the record: its content changed since the piece was
            // first stored, or the metadata was altered. The record cannot be kept: the task
            // starts over on the next download, and this one ends saying so.
            None => {
                let dropped = ctx.store.reset_task(&task).map(|d| d.len()).unwrap_or(0);
                tracing::warn!(task = %task, piece, dropped, error = %e, "the origin's piece disagrees with the store's record; task reset");
                PieceOutcome::Fatal(DownloadError::new(
                    ErrorKind::DigestMismatch,
                    format!(
                        "{e} (the digest recorded when it was first stored): the content at the origin changed since, \
                         or the store's metadata was altered; the task's {dropped} stored pieces were dropped: \
                         download again to fetch it afresh"
                    ),
                ))
            }
        },
        Ok(Err(e)) => PieceOutcome::Fatal(e.into()),
        Err(e) => PieceOutcome::Fatal(e.into()),
    }
}

/// One ranged GET per download, read in piece order by one worker: requests are served in
/// the order the plan made them (the plan asks for the next missing pieces), so the body
/// stays sequential. A request for another offset (or a broken body) opens a new range from
/// there to the end; for a lazy download only to the end of the run of consecutive pieces
/// queued, so the origin sends no byte nobody asked for. Transient origin errors are retried
/// with a backoff, then they end the download.
/// A piece asked of the origin reader, and where its bytes go.
type PieceRequest = (u32, oneshot::Sender<Result<Vec<u8>, OriginError>>);

pub struct OriginCursor {
    queue: mpsc::UnboundedSender<PieceRequest>,
    /// Ranges end after the queued run (a lazy download) or at the end of the content.
    lazy: Arc<std::sync::atomic::AtomicBool>,
}

struct OriginReader {
    request: OriginRequest,
    insecure: bool,
    lazy: Arc<std::sync::atomic::AtomicBool>,
    content_bytes: u64,
    piece_bytes: u64,
    body: Option<(u64, OriginBody)>,
}

impl OriginCursor {
    pub fn new(
        ctx: Arc<Ctx>,
        request: OriginRequest,
        content_bytes: u64,
        piece_bytes: u64,
        insecure: bool,
        lazy: bool,
    ) -> OriginCursor {
        let (queue, mut requests) = mpsc::unbounded_channel::<(u32, oneshot::Sender<_>)>();
        let lazy = Arc::new(std::sync::atomic::AtomicBool::new(lazy));
        let mut reader = OriginReader { request, insecure, lazy: lazy.clone(), content_bytes, piece_bytes, body: None };
        tokio::spawn(async move {
            let mut pending = std::collections::VecDeque::new();
            loop {
                let (piece, reply) = match pending.pop_front() {
                    Some(next) => next,
                    None => match requests.recv().await {
                        Some(next) => next,
                        None => return,
                    },
                };
                while let Ok(next) = requests.try_recv() {
                    pending.push_back(next);
                }
                if reply.is_closed() {
                    continue; // cancelled before its turn
                }
                // The queued pieces right after this one: a lazy range stops after them.
                let run =
                    pending.iter().enumerate().take_while(|(i, (p, _))| *p == piece + 1 + *i as u32).count() as u32;
                let data = reader.read_piece(&ctx, piece, piece + 1 + run).await;
                let _ = reply.send(data);
            }
        });
        OriginCursor { queue, lazy }
    }

    /// The download wants the whole content now: ranges run to its end.
    pub fn want_all(&self) {
        self.lazy.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Queues a piece now, in the caller's order (a spawned task would race the others);
    /// the returned future reads, verifies and stores it.
    pub fn fetch(
        &self,
        ctx: Arc<Ctx>,
        task: TaskId,
        piece: u32,
    ) -> impl std::future::Future<Output = PieceOutcome> + Send + 'static {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let queued = self.queue.send((piece, tx)).is_ok();
        async move {
            if !queued {
                return PieceOutcome::Dropped { reason: "origin reader stopped".into() };
            }
            origin_piece(ctx, task, piece, rx, started).await
        }
    }
}

async fn origin_piece(
    ctx: Arc<Ctx>,
    task: TaskId,
    piece: u32,
    rx: oneshot::Receiver<Result<Vec<u8>, OriginError>>,
    started: Instant,
) -> PieceOutcome {
    let data = match rx.await {
        Ok(Ok(data)) => data,
        Ok(Err(e)) => return PieceOutcome::Fatal(e.into()),
        Err(_) => return PieceOutcome::Dropped { reason: "origin reader stopped".into() },
    };
    let verified = match blocking(move || VerifiedPiece::new(data)).await {
        Ok(v) => v,
        Err(e) => return PieceOutcome::Fatal(e.into()),
    };
    store(ctx, task, piece, verified, None, started).await
}

impl OriginReader {
    /// Piece `piece`; `run_end`: one past the last piece of the run queued from it.
    async fn read_piece(&mut self, ctx: &Ctx, piece: u32, run_end: u32) -> Result<Vec<u8>, OriginError> {
        let offset = u64::from(piece) * self.piece_bytes;
        let range_end = if self.lazy.load(std::sync::atomic::Ordering::Relaxed) {
            (u64::from(run_end) * self.piece_bytes).min(self.content_bytes)
        } else {
            self.content_bytes
        };
        let len = self.piece_bytes.min(self.content_bytes - offset) as usize;
        let retries = ctx.cfg.download.origin_retries;
        let backoff = Duration::from_millis(ctx.cfg.download.origin_retry_backoff_ms);
        let mut attempt = 0;
        loop {
            match self.read(ctx, offset, len, range_end).await {
                Ok(data) => return Ok(data),
                Err(e) if e.is_transient() && attempt < retries => {
                    attempt += 1;
                    tracing::warn!(piece, attempt, error = %e, "origin read failed; retrying");
                    tokio::time::sleep(backoff * attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn read(&mut self, ctx: &Ctx, offset: u64, len: usize, range_end: u64) -> Result<Vec<u8>, OriginError> {
        // Taken out while reading: a failed read leaves no body at an unknown offset.
        let (at, mut body) = match self.body.take() {
            Some((at, body)) if at == offset => (at, body),
            other => {
                tracing::debug!(offset, had = ?other.as_ref().map(|b| b.0), "origin range opened");
                (offset, ctx.origin_for(self.insecure).open_range(&self.request, offset..range_end).await?)
            }
        };
        let data = body.read_exact(len).await?;
        if body.remaining() > 0 {
            self.body = Some((at + len as u64, body));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_busy_parent_is_not_blamed_for_refusing_a_piece() {
        assert!(!refusal_blames_parent(ErrorCode::Busy));
        for code in [
            ErrorCode::PieceNotAvailable,
            ErrorCode::TaskNotFound,
            ErrorCode::CorruptPiece,
            ErrorCode::BadRequest,
            ErrorCode::Internal,
            ErrorCode::Unauthorized,
        ] {
            assert!(refusal_blames_parent(code), "{code:?}");
        }
    }
}
