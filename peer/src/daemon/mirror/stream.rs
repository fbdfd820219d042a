//! Bytes of a P2P task for one mirror response, in order, as its pieces arrive: each
//! piece comes from the store's cache of pieces this process verified (those it just
//! received, for a task with a digest), else is read back from disk (around the page
//! cache: `Store::read_piece_once`) and re-hashed against its digest (bytes that fail are
//! never sent); it is cut to the requested range and sent
//! without a copy. The pieces near the read cursor are asked of the download first
//! (`core::ReadAhead`). A response covering the whole blob holds its last piece back until
//! the download has checked the whole content against the blob's digest (the store hashes
//! the pieces in order as they are written, so that check costs no second pass over the
//! bytes): on a mismatch the body ends with an error, never cleanly. What is sent is what
//! was checked: each piece matches the digest recorded when it was written and hashed.
//!
//! The download is shared (`tasks.rs`): a client that goes away stops only its own reads.

use super::BodyError;
use crate::core::ReadAhead;
use crate::daemon::download::{Job, State, Want};
use crate::daemon::tasks::Handle;
use crate::daemon::Ctx;
use crate::storage::{SharedPiece, Store, StoreError};
use crate::task_id::TaskId;
use bytes::Bytes;
use hyper::body::Frame;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub type Frames = ReceiverStream<Result<Frame<Bytes>, BodyError>>;

/// Bytes `start..end` of the task; `verify_whole`: the response is the whole content.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    pub start: u64,
    pub end: u64,
    pub verify_whole: bool,
}

/// Why P2P could not give the first byte (the request then goes to the registry).
#[derive(Debug, Clone)]
pub struct NoStart {
    /// For the fallback metric.
    pub label: &'static str,
    pub message: String,
}

/// Piece reads (from the verified-piece cache, else re-hashed from disk) started ahead of the send.
const READS_AHEAD: usize = 4;
type PieceRead = tokio::task::JoinHandle<Result<SharedPiece, StoreError>>;

/// A verified piece as a body frame's owner: sent without a copy, and its buffer given
/// back to the store once sent (it receives a later piece instead of fresh memory).
struct PieceBytes {
    piece: Option<SharedPiece>,
    store: Arc<Store>,
}

impl AsRef<[u8]> for PieceBytes {
    fn as_ref(&self) -> &[u8] {
        self.piece.as_ref().map_or(&[], |p| p.data())
    }
}

impl Drop for PieceBytes {
    fn drop(&mut self) {
        if let Some(piece) = self.piece.take() {
            self.store.recycle_piece(piece);
        }
    }
}

/// Not an error: the client (or the fallback) no longer reads this response.
const CLIENT_GONE: &str = "client_gone";
/// A lazy download that went idle is started again at most this often per response.
const MAX_RESTARTS: u32 = 3;
/// Pieces are looked for at least this often even without a store notice.
const RECHECK: Duration = Duration::from_millis(500);

/// Starts (or joins) the download and waits for the first bytes: the first frame and the
/// rest, or why there is none.
pub async fn open(ctx: Arc<Ctx>, job: Job, read: Read) -> Result<(Frame<Bytes>, Frames), NoStart> {
    let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, BodyError>>(4);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<NoStart>();
    let wait = Duration::from_millis(ctx.cfg.mirror.upstream_timeout_ms);
    tokio::spawn(produce(ctx, job, read, tx, first_tx));
    let first = tokio::time::timeout(wait, async {
        tokio::select! {
            item = rx.recv() => match item {
                Some(Ok(frame)) => Ok(frame),
                Some(Err(e)) => Err(NoStart { label: "p2p_failed", message: e.to_string() }),
                None => Err(NoStart { label: "p2p_failed", message: "the P2P reader stopped".into() }),
            },
            Ok(why) = first_rx => Err(why),
        }
    })
    .await;
    match first {
        Ok(Ok(frame)) => Ok((frame, ReceiverStream::new(rx))),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(NoStart {
            label: "p2p_slow",
            message: format!("no byte from P2P within {} ms (the download goes on)", wait.as_millis()),
        }),
    }
}

struct Reader {
    ctx: Arc<Ctx>,
    job: Job,
    task: TaskId,
    handle: Handle,
    restarts: u32,
    tx: mpsc::Sender<Result<Frame<Bytes>, BodyError>>,
    /// Pieces wanted ahead of the cursor.
    window: u32,
}

async fn produce(
    ctx: Arc<Ctx>,
    job: Job,
    read: Read,
    tx: mpsc::Sender<Result<Frame<Bytes>, BodyError>>,
    first: tokio::sync::oneshot::Sender<NoStart>,
) {
    let task = job.task;
    let handle = ctx.running.start(&ctx, job.clone());
    let mut r = Reader { ctx, job, task, handle, restarts: 0, tx: tx.clone(), window: 1 };
    let mut first = Some(first);
    let result = r.run(read, &tx, &mut first).await;
    if let Err(e) = result {
        if e.label == CLIENT_GONE {
            return;
        }
        match first.take() {
            Some(f) => {
                let _ = f.send(e);
            }
            None => {
                tracing::warn!(task = %task, error = e.message, "mirror response aborted after bytes were sent");
                let _ = tx.send(Err(e.message.into())).await;
            }
        }
    }
}

impl Reader {
    async fn run(
        &mut self,
        read: Read,
        tx: &mpsc::Sender<Result<Frame<Bytes>, BodyError>>,
        first: &mut Option<tokio::sync::oneshot::Sender<NoStart>>,
    ) -> Result<(), NoStart> {
        let info = self.wait_created().await?;
        let expected = self.job.content_bytes_hint.unwrap_or(info.0);
        if info.0 != expected {
            return Err(NoStart {
                label: "length_mismatch",
                message: format!("the task holds {} bytes, the registry says {expected}", info.0),
            });
        }
        let piece_bytes = info.1;
        let _pin = self.ctx.store.pin(&self.task).map_err(|e| store_failed(&e))?;
        let first_piece = (read.start / piece_bytes) as u32;
        let last_piece = ((read.end - 1) / piece_bytes) as u32;
        self.window = ReadAhead::window_pieces(self.ctx.cfg.mirror.readahead_bytes, piece_bytes);
        let mut ahead = ReadAhead::new(first_piece..last_piece + 1, self.window);
        // Reads of the pieces after the cursor that are here already run ahead of the send.
        let mut reads: VecDeque<(u32, PieceRead)> = VecDeque::new();
        let mut next = first_piece;
        for piece in first_piece..=last_piece {
            if reads.is_empty() {
                self.wait_piece(next, &mut ahead).await?;
                reads.push_back((next, self.spawn_read(next)));
                next += 1;
            } else {
                let wanted = ahead.advance(piece);
                if !wanted.is_empty() {
                    self.handle.want(Want::Pieces(wanted));
                }
            }
            if next <= last_piece && reads.len() < READS_AHEAD {
                let have = self.ctx.store.pieces(&self.task).map_err(|e| store_failed(&e))?;
                while next <= last_piece && reads.len() < READS_AHEAD && have.finished.contains(next) {
                    reads.push_back((next, self.spawn_read(next)));
                    next += 1;
                }
            }
            let Some((read_piece, handle)) = reads.pop_front() else { break };
            debug_assert_eq!(read_piece, piece);
            let verified = handle
                .await
                .map_err(|e| NoStart { label: "p2p_failed", message: format!("piece read stopped: {e}") })?
                .map_err(|e| store_failed(&e))?;
            let piece_start = u64::from(piece) * piece_bytes;
            let from = (read.start.max(piece_start) - piece_start) as usize;
            let to = ((read.end - piece_start) as usize).min(verified.len());
            let owner = PieceBytes { piece: Some(verified), store: self.ctx.store.clone() };
            let data = Bytes::from_owner(owner).slice(from..to);
            if read.verify_whole && piece == last_piece {
                self.wait_verified().await?;
            }
            first.take();
            if tx.send(Ok(Frame::data(data))).await.is_err() {
                return Ok(()); // the client went away; the download goes on for the others
            }
        }
        Ok(())
    }

    fn spawn_read(&self, piece: u32) -> PieceRead {
        let (store, task) = (self.ctx.store.clone(), self.task);
        tokio::task::spawn_blocking(move || store.read_piece_once(&task, piece))
    }

    /// The task's (content, piece) bytes once the download created it in the store.
    async fn wait_created(&mut self) -> Result<(u64, u64), NoStart> {
        loop {
            if let Some(t) = self.ctx.store.task(&self.task) {
                return Ok((t.content_bytes, t.piece_bytes));
            }
            self.settle().await?;
        }
    }

    /// Waits for a piece to be in the store, asking for the pieces ahead first.
    async fn wait_piece(&mut self, piece: u32, ahead: &mut ReadAhead) -> Result<(), NoStart> {
        let wanted = ahead.advance(piece);
        if !wanted.is_empty() {
            self.handle.want(Want::Pieces(wanted));
        }
        let mut changes = self.ctx.store.watch(&self.task).map_err(|e| store_failed(&e))?;
        loop {
            let have = self.ctx.store.pieces(&self.task).map_err(|e| store_failed(&e))?;
            if have.finished.contains(piece) {
                return Ok(());
            }
            let state = self.handle.progress.borrow().state.clone();
            match state {
                State::Running => {}
                State::Failed(e) => return Err(NoStart { label: "p2p_failed", message: e.message }),
                State::Done(_) | State::Idle => {
                    // Ended without this piece: a lazy download that went idle just as
                    // this reader asked. Start it again, asking for the pieces from here.
                    self.restart()?;
                    *ahead = ReadAhead::new(piece..ahead.end().max(piece + 1), self.window);
                    let wanted = ahead.advance(piece);
                    self.handle.want(Want::Pieces(wanted));
                    continue;
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(NoStart { label: "p2p_failed", message: format!("task {} left the store", self.task) });
                    }
                }
                _ = self.handle.progress.changed() => {}
                _ = tokio::time::sleep(RECHECK) => {}
                _ = self.tx.closed() => return Err(NoStart { label: CLIENT_GONE, message: String::new() }),
            }
        }
    }

    /// The whole content matched the blob's digest (the download completed).
    async fn wait_verified(&mut self) -> Result<(), NoStart> {
        loop {
            if self.ctx.store.task(&self.task).is_some_and(|t| t.completed) {
                return Ok(());
            }
            let state = self.handle.progress.borrow().state.clone();
            match state {
                State::Failed(e) => {
                    return Err(NoStart {
                        label: "digest_mismatch",
                        message: format!("blob not verified: {}", e.message),
                    })
                }
                State::Done(_) | State::Idle => {
                    if !self.ctx.store.task(&self.task).is_some_and(|t| t.completed) {
                        self.restart()?;
                        self.handle.want(Want::Rest);
                    }
                    continue;
                }
                State::Running => {}
            }
            tokio::select! {
                _ = self.handle.progress.changed() => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// Waits for news of the download; an ended download without the task is restarted.
    async fn settle(&mut self) -> Result<(), NoStart> {
        let state = self.handle.progress.borrow().state.clone();
        match state {
            State::Failed(e) => Err(NoStart { label: "p2p_failed", message: e.message }),
            State::Done(_) | State::Idle => self.restart(),
            State::Running => {
                tokio::select! {
                    _ = self.handle.progress.changed() => {}
                    _ = tokio::time::sleep(RECHECK) => {}
                }
                Ok(())
            }
        }
    }

    fn restart(&mut self) -> Result<(), NoStart> {
        if self.restarts >= MAX_RESTARTS {
            return Err(NoStart {
                label: "p2p_failed",
                message: format!("the download of task {} kept stopping", self.task),
            });
        }
        self.restarts += 1;
        self.handle = self.ctx.running.start(&self.ctx, self.job.clone());
        Ok(())
    }
}

fn store_failed(e: &StoreError) -> NoStart {
    let label = match e {
        StoreError::CorruptPiece { .. } => "corrupt_piece",
        _ => "p2p_failed",
    };
    NoStart { label, message: e.to_string() }
}
