//! One pooled connection to a parent: requests are written under a lock, one reader task
//! reads replies and hands each to the request with its id; a broken connection fails every
//! waiting request and leaves the pool.

use super::client::{ClientConfig, FetchError};
use super::frame::{
    self, ErrorCode, PiecesReply, Request, HELLO, KIND_ERROR, KIND_PIECE, KIND_PIECES, MAX_REPLY_BODY, PIECE_PREFIX_LEN,
};
use super::grants::MAX_GRANTS_PER_CONNECTION;
use super::io::{client_stream, read_body, read_header, write_frame, ReadError, Stream};
use super::ratelimit::TokenBucket;
use crate::storage::{BufferPool, PieceBuf};
use crate::task_id::TaskId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use svc::grant::Grant;
use tokio::io::{AsyncReadExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes read (and charged to the download bucket) at a time.
const READ_CHUNK_BYTES: usize = 256 << 10;
const READ_BUFFER_BYTES: usize = 64 << 10;

#[derive(Default)]
pub(super) struct Pool {
    pub(super) conns: Mutex<Vec<Arc<Conn>>>,
    /// One connect at a time per parent, so the pool never exceeds its size.
    pub(super) connecting: tokio::sync::Mutex<()>,
}

/// A pooled connection; dropping the last handle closes it.
pub(super) struct Conn {
    writer: tokio::sync::Mutex<WriteHalf<Stream>>,
    pub(super) shared: Arc<ConnShared>,
    next_id: AtomicU32,
    reader: JoinHandle<()>,
    /// Tasks whose grant this connection presented, with that grant's expiry: a grant is
    /// sent once per connection, and again when a fresher one comes (at most
    /// `MAX_GRANTS_PER_CONNECTION`, the parent's bound, then it starts over).
    presented: Mutex<HashMap<TaskId, u64>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What the reader task shares with requesters.
pub(super) struct ConnShared {
    parent: SocketAddr,
    pending: Mutex<Pending>,
    pieces: Arc<Semaphore>,
    syncs: Arc<Semaphore>,
    download_bucket: Option<Arc<TokenBucket>>,
    /// Receive buffers, shared by every connection of the client.
    buffers: Arc<BufferPool>,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u32, oneshot::Sender<Result<Reply, FetchError>>>,
    /// Set once the connection is dead, with the error every later request gets.
    closed: Option<FetchError>,
}

pub(super) enum Reply {
    Pieces(PiecesReply),
    Piece { piece: u32, data: PieceBuf },
    Error { code: ErrorCode, message: String },
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Lane {
    Piece,
    Sync,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// Connects and greets within `connect_timeout_ms` (or by `deadline`); the reader task
    /// starts at once.
    pub(super) async fn open(
        parent: SocketAddr,
        config: &ClientConfig,
        download_bucket: Option<Arc<TokenBucket>>,
        buffers: Arc<BufferPool>,
        deadline: Instant,
    ) -> Result<Arc<Conn>, FetchError> {
        let started = Instant::now();
        let connect_by = deadline.min(started + Duration::from_millis(config.connect_timeout_ms));
        let attempt = async {
            let tcp = TcpStream::connect(parent).await?;
            let _ = tcp.set_nodelay(true);
            let stream = client_stream(config.tls.as_ref(), tcp, parent).await?;
            let (rd, mut wr) = tokio::io::split(stream);
            let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
            write_frame(&mut wr, &HELLO).await?;
            let mut hello = [0u8; 8];
            rd.read_exact(&mut hello).await?;
            frame::check_hello(&hello).map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>((rd, wr))
        };
        let (rd, wr) = match time_compat::timeout_at(connect_by, attempt).await {
            Some(Ok(halves)) => halves,
            Some(Err(e)) => return Err(FetchError::Connect { parent, reason: e.to_string() }),
            None => {
                let allowed = connect_by.saturating_duration_since(started);
                let reason = format!("no answer within {} ms", allowed.as_millis());
                return Err(FetchError::Connect { parent, reason });
            }
        };
        let shared = Arc::new(ConnShared {
            parent,
            pending: Mutex::new(Pending::default()),
            pieces: Arc::new(Semaphore::new(config.max_pieces_per_connection as usize)),
            syncs: Arc::new(Semaphore::new(config.max_syncs_per_connection as usize)),
            download_bucket,
            buffers,
        });
        let reader = tokio::spawn(read_loop(rd, shared.clone()));
        Ok(Arc::new(Conn {
            writer: tokio::sync::Mutex::new(wr),
            shared,
            next_id: AtomicU32::new(0),
            reader,
            presented: Mutex::new(HashMap::new()),
        }))
    }
}

pub(super) mod time_compat {
    use super::Instant;
    /// `timeout_at` built on `timeout` (which madsim has too): `None` when the deadline passed.
    pub async fn timeout_at<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, f).await.ok()
    }
}

impl Pool {
    pub(super) fn open_count(&self) -> usize {
        let mut conns = lock(&self.conns);
        conns.retain(|c| c.is_open());
        conns.len()
    }

    pub(super) fn take_free(&self, lane: Lane) -> Option<(Arc<Conn>, OwnedSemaphorePermit)> {
        let mut conns = lock(&self.conns);
        conns.retain(|c| c.is_open());
        conns.sort_by_key(|c| std::cmp::Reverse(c.shared.lane(lane).available_permits()));
        conns.iter().find_map(|c| c.shared.lane(lane).clone().try_acquire_owned().ok().map(|p| (c.clone(), p)))
    }

    pub(super) fn least_busy(&self, lane: Lane) -> Option<Arc<Conn>> {
        let conns = lock(&self.conns);
        conns.iter().filter(|c| c.is_open()).max_by_key(|c| c.shared.lane(lane).available_permits()).cloned()
    }
}

impl Conn {
    pub(super) fn is_open(&self) -> bool {
        lock(&self.shared.pending).closed.is_none()
    }

    /// Sends a request, after `grant` when this connection has not presented it yet, and
    /// waits for its reply until `deadline`; `Err(None)` on timeout.
    pub(super) async fn call(
        &self,
        request: &Request,
        grant: Option<&Grant>,
        deadline: Instant,
    ) -> Result<Reply, Option<FetchError>> {
        let mut bytes = match grant.filter(|g| self.mark_presented(g)) {
            Some(g) => frame::encode_request(self.next_id.fetch_add(1, Ordering::Relaxed), &Request::Grant(g.clone())),
            None => Vec::new(),
        };
        let reply = self.call_with(request, &mut bytes, deadline).await;
        if let (Ok(Reply::Error { code: ErrorCode::Unauthorized, .. }), Some(task)) = (&reply, request.reads_task()) {
            // The parent dropped or refused it: present it again next time.
            lock(&self.presented).remove(task);
        }
        reply
    }

    /// Records `grant` as presented here; false when it was already.
    fn mark_presented(&self, grant: &Grant) -> bool {
        let mut presented = lock(&self.presented);
        let task = TaskId::from_bytes(grant.task);
        if presented.get(&task) == Some(&grant.expires_unix_s) {
            return false;
        }
        if presented.len() >= MAX_GRANTS_PER_CONNECTION && !presented.contains_key(&task) {
            presented.clear();
        }
        presented.insert(task, grant.expires_unix_s);
        true
    }

    /// Writes `prefix` (a Grant frame, or nothing) and the request in one write.
    async fn call_with(
        &self,
        request: &Request,
        prefix: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<Reply, Option<FetchError>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.shared.pending);
            if let Some(e) = &pending.closed {
                return Err(Some(e.clone()));
            }
            pending.waiters.insert(id, tx);
        }
        // Whatever happens next (timeout, the caller gives up), the waiter leaves the map.
        let _waiter = WaiterGuard { shared: &self.shared, id };
        prefix.extend_from_slice(&frame::encode_request(id, request));
        let bytes = std::mem::take(prefix);
        let send = async { write_frame(&mut *self.writer.lock().await, &bytes).await };
        match time_compat::timeout_at(deadline, send).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                let error = FetchError::ConnectionLost { parent: self.shared.parent, reason: e.to_string() };
                self.shared.close(error.clone());
                return Err(Some(error));
            }
            None => return Err(None),
        }
        match time_compat::timeout_at(deadline, rx).await {
            Some(Ok(result)) => result.map_err(Some),
            Some(Err(_)) => Err(Some(self.shared.closed_error())),
            None => Err(None),
        }
    }
}

struct WaiterGuard<'a> {
    shared: &'a ConnShared,
    id: u32,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).waiters.remove(&self.id);
    }
}

impl ConnShared {
    pub(super) fn lane(&self, lane: Lane) -> &Arc<Semaphore> {
        match lane {
            Lane::Piece => &self.pieces,
            Lane::Sync => &self.syncs,
        }
    }

    pub(super) fn closed_error(&self) -> FetchError {
        lock(&self.pending)
            .closed
            .clone()
            .unwrap_or_else(|| FetchError::ConnectionLost { parent: self.parent, reason: "connection closed".into() })
    }

    /// Marks the connection dead and fails every waiting request with `error`.
    fn close(&self, error: FetchError) {
        let waiters = {
            let mut pending = lock(&self.pending);
            pending.closed.get_or_insert(error.clone());
            std::mem::take(&mut pending.waiters)
        };
        self.pieces.close();
        self.syncs.close();
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }

    fn deliver(&self, id: u32, reply: Reply) {
        // No waiter: that request timed out or was abandoned; drop the reply.
        if let Some(waiter) = lock(&self.pending).waiters.remove(&id) {
            let _ = waiter.send(Ok(reply));
        }
    }
}

async fn read_loop(mut rd: BufReader<ReadHalf<Stream>>, shared: Arc<ConnShared>) {
    let parent = shared.parent;
    let lost = |reason: String| FetchError::ConnectionLost { parent, reason };
    let protocol = |reason: String| FetchError::Protocol { parent, reason };
    let error = loop {
        let header = match read_header(&mut rd).await {
            Ok(Some(h)) => h,
            Ok(None) => break lost("the parent closed the connection".into()),
            Err(ReadError::Io(e)) => break lost(e.to_string()),
            Err(ReadError::Protocol(e)) => break protocol(e.to_string()),
        };
        let reply = match header.kind {
            KIND_PIECE => {
                if header.body_len < PIECE_PREFIX_LEN || header.body_len > MAX_REPLY_BODY {
                    break protocol(format!("piece frame of {} bytes", header.body_len));
                }
                let mut prefix = [0u8; PIECE_PREFIX_LEN];
                if let Err(e) = rd.read_exact(&mut prefix).await {
                    break lost(e.to_string());
                }
                let (piece, _claimed) = frame::decode_piece_prefix(&prefix);
                match read_data(&mut rd, header.body_len - PIECE_PREFIX_LEN, &shared).await {
                    Ok(data) => Reply::Piece { piece, data },
                    Err(e) => break lost(e.to_string()),
                }
            }
            KIND_PIECES | KIND_ERROR => {
                let body = match read_body(&mut rd, header.body_len, MAX_REPLY_BODY).await {
                    Ok(body) => body,
                    Err(ReadError::Io(e)) => break lost(e.to_string()),
                    Err(ReadError::Protocol(e)) => break protocol(e.to_string()),
                };
                let decoded = if header.kind == KIND_PIECES {
                    frame::decode_pieces(&body).map(Reply::Pieces)
                } else {
                    frame::decode_error(&body).map(|(code, message)| Reply::Error { code, message })
                };
                match decoded {
                    Ok(reply) => reply,
                    Err(e) => break protocol(e.to_string()),
                }
            }
            other => break protocol(format!("unknown reply kind 0x{other:02x}")),
        };
        shared.deliver(header.request_id, reply);
    };
    shared.close(error);
}

/// Reads `len` bytes into a recycled buffer (its stale bytes overwritten, not zeroed
/// first), charging the download bucket.
async fn read_data(rd: &mut BufReader<ReadHalf<Stream>>, len: usize, shared: &ConnShared) -> std::io::Result<PieceBuf> {
    let bucket = shared.download_bucket.as_deref();
    let mut data = shared.buffers.take();
    data.resize_for_overwrite(len);
    let mut got = 0;
    while got < len {
        let want = (len - got).min(READ_CHUNK_BYTES);
        let n = rd.read(&mut data[got..got + want]).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-piece"));
        }
        got += n;
        if let Some(bucket) = bucket {
            bucket.take(n as u64).await;
        }
    }
    Ok(data)
}
