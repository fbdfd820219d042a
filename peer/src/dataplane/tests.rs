//! Server and client on 127.0.0.1 with real sockets.

use super::frame::{self, ErrorCode};
use super::*;
use crate::storage::{PieceDigest, Store, StoreConfig, TaskSpec, VerifiedPiece};
use crate::task_id::TaskId;
use crate::test_data::content;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Parent {
    store: Arc<Store>,
    server: Server,
    task: TaskId,
    data: Vec<u8>,
    piece_bytes: u64,
    _dir: tempfile::TempDir,
}

impl Parent {
    /// A parent holding `have` of `pieces` pieces of `piece_bytes` each.
    async fn start(pieces: u32, piece_bytes: u64, have: impl IntoIterator<Item = u32>, config: ServerConfig) -> Parent {
        let dir = tempfile::tempdir().unwrap();
        let store_config = StoreConfig { dir: dir.path().into(), quota_bytes: 1 << 30, ..Default::default() };
        let store = Arc::new(Store::open(store_config).unwrap().0);
        let data = content(pieces as u64 * piece_bytes, pieces as u64);
        let task = TaskId::from_bytes([pieces as u8; 32]);
        store
            .create_task(TaskSpec {
                id: task,
                url: "http://origin/blob".into(),
                content_bytes: data.len() as u64,
                piece_bytes,
                content_digest: None,
            })
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(addr, store.clone(), config).await.unwrap();
        let parent = Parent { store, server, task, data, piece_bytes, _dir: dir };
        for p in have {
            parent.add(p);
        }
        parent
    }

    fn piece(&self, p: u32) -> VerifiedPiece {
        let start = (p as u64 * self.piece_bytes) as usize;
        VerifiedPiece::new(self.data[start..start + self.piece_bytes as usize].to_vec())
    }

    fn add(&self, p: u32) {
        self.store.write_piece(&self.task, p, &self.piece(p), None).unwrap();
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

fn client(config: ClientConfig) -> PeerClient {
    PeerClient::new(config).unwrap()
}

const WAIT_NONE: Duration = Duration::ZERO;

#[tokio::test]
async fn sync_reports_pieces_and_long_polls_for_new_ones() {
    let parent = Parent::start(4, 4096, [0, 2], ServerConfig::default()).await;
    let child = client(ClientConfig::default());
    let first = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap();
    assert_eq!(first.added, vec![0, 2]);
    assert_eq!((first.pieces.piece_count, first.pieces.piece_bytes, first.pieces.completed), (4, 4096, false));
    assert_eq!(first.pieces.digest(2), Some(*parent.piece(2).digest()));
    assert_eq!(first.pieces.digest(1), None);

    // Nothing new: the poll ends when its wait does.
    let started = Instant::now();
    let same =
        child.sync_pieces(parent.addr(), &parent.task, Some(&first.pieces), Duration::from_millis(150)).await.unwrap();
    assert!(same.added.is_empty() && same.removed.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(140), "{:?}", started.elapsed());

    // A piece finishing mid-poll ends it early.
    let poll = child.sync_pieces(parent.addr(), &parent.task, Some(&first.pieces), Duration::from_secs(10));
    let finish = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        parent.add(1);
    };
    let started = Instant::now();
    let (update, ()) = tokio::join!(poll, finish);
    let update = update.unwrap();
    assert_eq!(update.added, vec![1]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(update.pieces.digest(0), Some(*parent.piece(0).digest()), "earlier digests are kept");
    assert_eq!(child.connections(parent.addr()), 1);
}

#[tokio::test]
async fn pieces_are_fetched_and_verified() {
    let parent = Parent::start(3, 64 << 10, [0, 1], ServerConfig::default()).await;
    let child = client(ClientConfig::default());
    let map = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap().pieces;
    for p in [0, 1] {
        let got = child.fetch_piece(parent.addr(), &parent.task, p, &map.digest(p).unwrap()).await.unwrap();
        assert_eq!(got, parent.piece(p));
    }
    let any = PieceDigest::of(b"");
    let err = child.fetch_piece(parent.addr(), &parent.task, 2, &any).await.unwrap_err();
    assert!(matches!(err, FetchError::Refused { code: ErrorCode::PieceNotAvailable, piece: Some(2), .. }), "{err}");
    let err = child.fetch_piece(parent.addr(), &TaskId::from_bytes([0xee; 32]), 0, &any).await.unwrap_err();
    assert!(matches!(err, FetchError::Refused { code: ErrorCode::TaskNotFound, .. }), "{err}");
    let err = child.sync_pieces(parent.addr(), &TaskId::from_bytes([0xee; 32]), None, WAIT_NONE).await.unwrap_err();
    assert!(matches!(err, FetchError::Refused { code: ErrorCode::TaskNotFound, piece: None, .. }), "{err}");
    assert_eq!(parent.server.stats().pieces_sent, 2);
}

#[tokio::test]
async fn a_wrong_digest_is_detected_and_names_the_parent() {
    let parent = Parent::start(2, 4096, [0, 1], ServerConfig::default()).await;
    let child = client(ClientConfig::default());
    let wrong = *parent.piece(1).digest();
    let err = child.fetch_piece(parent.addr(), &parent.task, 0, &wrong).await.unwrap_err();
    match &err {
        FetchError::BadDigest(bad) => {
            assert_eq!((bad.parent, bad.task, bad.piece), (parent.addr(), parent.task, 0));
            assert_eq!((bad.expected, bad.actual), (wrong, *parent.piece(0).digest()));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.is_parent_fault() && err.to_string().contains(&parent.addr().to_string()));
}

/// A parent that advertises one digest and sends other bytes.
#[tokio::test]
async fn a_lying_parent_is_caught() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = TaskId::from_bytes([5; 32]);
    let honest = b"the real piece".to_vec();
    let liar = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(&frame::HELLO).await.unwrap();
        s.flush().await.unwrap(); // under madsim, bytes leave on flush
        let mut hello = [0u8; 8];
        s.read_exact(&mut hello).await.unwrap();
        let mut header = [0u8; frame::HEADER_LEN];
        s.read_exact(&mut header).await.unwrap();
        let h = frame::decode_header(&header).unwrap();
        let mut body = vec![0u8; h.body_len];
        s.read_exact(&mut body).await.unwrap();
        let forged = b"a forged piece";
        let claim = PieceDigest::of(b"the real piece");
        s.write_all(&frame::encode_piece_head(h.request_id, 0, &claim, forged.len())).await.unwrap();
        s.write_all(forged).await.unwrap();
        s.flush().await.unwrap();
        // Keep the socket open until the child has read the reply.
        let _ = s.read(&mut [0u8; 1]).await;
    });
    let child = client(ClientConfig::default());
    let err = child.fetch_piece(addr, &task, 0, &PieceDigest::of(&honest)).await.unwrap_err();
    assert!(matches!(&err, FetchError::BadDigest(bad) if bad.parent == addr && bad.piece == 0), "{err}");
    drop(child);
    liar.await.unwrap();
}

#[tokio::test]
async fn a_piece_corrupted_on_the_parent_is_never_sent() {
    use std::os::unix::fs::FileExt;
    let parent = Parent::start(2, 4096, [0, 1], ServerConfig::default()).await;
    let child = client(ClientConfig::default());
    let map = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap().pieces;
    let path = parent.store.task(&parent.task).unwrap().content_path;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(b"rot", 4096 + 10).unwrap();
    let err = child.fetch_piece(parent.addr(), &parent.task, 1, &map.digest(1).unwrap()).await.unwrap_err();
    assert!(matches!(err, FetchError::Refused { code: ErrorCode::CorruptPiece, piece: Some(1), .. }), "{err}");
    assert!(!err.to_string().contains("/tmp"), "no local paths on the wire: {err}");
    let stats = parent.server.stats();
    assert_eq!((stats.corrupt_pieces, stats.pieces_sent), (1, 0));
    let update = child.sync_pieces(parent.addr(), &parent.task, Some(&map), WAIT_NONE).await.unwrap();
    assert_eq!(update.removed, vec![1]);
}

#[tokio::test]
async fn upload_slots_limit_concurrent_uploads_and_busy_parents_say_so() {
    // 128 KiB pieces at 1 MiB/s: each upload takes about 125 ms.
    let rate = RateLimit { bytes_per_s: 1 << 20, burst_bytes: 16 << 10 };
    let config = ServerConfig { upload_slots: 1, upload_rate: Some(rate), slot_wait_ms: 5_000, ..Default::default() };
    let parent = Parent::start(3, 128 << 10, [0, 1, 2], config).await;
    let child = client(ClientConfig::default());
    let map = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap().pieces;
    let digests: Vec<PieceDigest> = (0..3).map(|p| map.digest(p).unwrap()).collect();
    let fetch = |p: u32| child.fetch_piece(parent.addr(), &parent.task, p, &digests[p as usize]);
    let started = Instant::now();
    let (a, b, c) = tokio::join!(fetch(0), fetch(1), fetch(2));
    let elapsed = started.elapsed();
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    let stats = parent.server.stats();
    assert_eq!(stats.uploads_peak, 1, "one slot: uploads never overlapped");
    assert!(elapsed >= Duration::from_millis(300), "three uploads one after another: {elapsed:?}");

    // With a short wait for a slot, a second concurrent request is refused as Busy.
    let config = ServerConfig { upload_slots: 1, upload_rate: Some(rate), slot_wait_ms: 20, ..Default::default() };
    let parent = Parent::start(2, 128 << 10, [0, 1], config).await;
    let map = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap().pieces;
    let (d0, d1) = (map.digest(0).unwrap(), map.digest(1).unwrap());
    let (a, b) = tokio::join!(
        child.fetch_piece(parent.addr(), &parent.task, 0, &d0),
        child.fetch_piece(parent.addr(), &parent.task, 1, &d1)
    );
    let busy = [&a, &b].iter().filter(|r| matches!(r, Err(FetchError::Refused { code: ErrorCode::Busy, .. }))).count();
    assert_eq!((busy, a.is_ok() || b.is_ok()), (1, true), "{a:?} {b:?}");
    assert_eq!(parent.server.stats().busy_replies, 1);
}

#[tokio::test]
async fn piece_maps_report_the_uploads_in_progress() {
    // A 128 KiB piece at 1 MiB/s takes about 125 ms: a sync 40 ms in sees it running.
    let rate = RateLimit { bytes_per_s: 1 << 20, burst_bytes: 16 << 10 };
    let config = ServerConfig { upload_slots: 4, upload_rate: Some(rate), ..Default::default() };
    let parent = Parent::start(1, 128 << 10, [0], config).await;
    let child = client(ClientConfig::default());
    let idle = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap();
    assert_eq!(idle.uploads_active, 0);
    let digest = idle.pieces.digest(0).unwrap();
    let during = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap()
    };
    let (fetched, during) = tokio::join!(child.fetch_piece(parent.addr(), &parent.task, 0, &digest), during);
    fetched.unwrap();
    assert_eq!(during.uploads_active, 1, "one upload was running");
    let after = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap();
    assert_eq!(after.uploads_active, 0);
}

/// Moves 16 pieces of 64 KiB through `limit` and returns the measured rate over the part past
/// the initial burst. The limit is low (2 MiB/s) so that even an unoptimised build hashes
/// fast enough for the limiter, not the CPU, to set the pace.
async fn measured_rate(server: ServerConfig, client_config: ClientConfig, limit: RateLimit) -> f64 {
    let pieces = 16u32;
    let piece_bytes = 64u64 << 10;
    let parent = Parent::start(pieces, piece_bytes, 0..pieces, server).await;
    let child = client(client_config);
    let map = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap().pieces;
    let started = Instant::now();
    let fetches = (0..pieces).map(|p| {
        let digest = map.digest(p).unwrap();
        let child = &child;
        let task = parent.task;
        let addr = parent.addr();
        async move { child.fetch_piece(addr, &task, p, &digest).await.unwrap().len() as u64 }
    });
    let mut total = 0;
    for n in futures_join_all(fetches).await {
        total += n;
    }
    let secs = started.elapsed().as_secs_f64();
    (total - limit.burst_bytes) as f64 / secs
}

/// A tiny join_all (the crate does not depend on `futures`).
async fn futures_join_all<F: std::future::Future<Output = u64>>(futures: impl Iterator<Item = F>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        let mut i = 0;
        while i < set.len() {
            if let std::task::Poll::Ready(v) = set[i].as_mut().poll(cx) {
                out.push(v);
                drop(set.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out
}

#[tokio::test]
async fn upload_and_download_rates_are_held() {
    let limit = RateLimit { bytes_per_s: 2 << 20, burst_bytes: 64 << 10 };
    let upload =
        measured_rate(ServerConfig { upload_rate: Some(limit), ..Default::default() }, ClientConfig::default(), limit)
            .await;
    let download = measured_rate(
        ServerConfig::default(),
        ClientConfig { download_rate: Some(limit), ..Default::default() },
        limit,
    )
    .await;
    for (name, rate) in [("upload", upload), ("download", download)] {
        let ratio = rate / limit.bytes_per_s as f64;
        // Measured 0.91-0.99 in a debug build beside the other tests, 0.97-0.98 under madsim
        // (its 1-10 ms link latency adds to the transfer); the slack is for a machine shared
        // with builds. Never more than 10 % over.
        assert!((0.85..=1.1).contains(&ratio), "{name} ran at {:.3} of the limit", ratio);
    }
}

#[tokio::test]
async fn connections_are_pooled_and_requests_pipelined() {
    let parent = Parent::start(24, 32 << 10, 0..24, ServerConfig::default()).await;
    let config = ClientConfig { max_connections_per_parent: 2, max_pieces_per_connection: 4, ..Default::default() };
    let child = client(config);
    let map = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap().pieces;
    let fetches = (0..24u32).map(|p| {
        let digest = map.digest(p).unwrap();
        let (child, task, addr) = (&child, parent.task, parent.addr());
        async move { child.fetch_piece(addr, &task, p, &digest).await.unwrap().len() as u64 }
    });
    let sizes = futures_join_all(fetches).await;
    assert_eq!(sizes.len(), 24);
    let stats = parent.server.stats();
    assert_eq!(
        stats.connections_total, 3,
        "the piece pool grew to its limit and no further, beside one for piece maps"
    );
    assert_eq!(child.connections(parent.addr()), 3);
    child.forget_parent(parent.addr());
    assert_eq!(child.connections(parent.addr()), 0);
}

/// A piece-map long poll does not wait behind piece bytes: it has its own connection, so
/// news of a piece reaches the child while a slow parent is still sending other pieces.
#[tokio::test]
async fn piece_map_news_does_not_queue_behind_pieces() {
    let rate = RateLimit { bytes_per_s: 1 << 20, burst_bytes: 16 << 10 };
    let config = ServerConfig { upload_rate: Some(rate), ..Default::default() };
    let parent = Parent::start(4, 512 << 10, 0..2, config).await;
    let child = client(ClientConfig { max_connections_per_parent: 1, ..Default::default() });
    let known = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap().pieces;
    // Two pieces asked on the one piece connection: half a second of bytes each at 1 MiB/s.
    let fetched = std::sync::atomic::AtomicU32::new(0);
    let fetches = (0..2u32).map(|p| {
        let digest = known.digest(p).unwrap();
        let (child, task, addr, fetched) = (&child, parent.task, parent.addr(), &fetched);
        async move {
            child.fetch_piece(addr, &task, p, &digest).await.unwrap();
            fetched.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            p as u64
        }
    });
    let fetching = async {
        futures_join_all(fetches).await;
    };
    let news = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        parent.add(3);
        let update =
            child.sync_pieces(parent.addr(), &parent.task, Some(&known), Duration::from_secs(5)).await.unwrap();
        (update.added, fetched.load(std::sync::atomic::Ordering::SeqCst))
    };
    let ((added, pieces_done), ()) = tokio::join!(news, fetching);
    assert_eq!(added, vec![3]);
    assert_eq!(pieces_done, 0, "the news waited for a piece's bytes");
}

#[tokio::test]
async fn garbage_and_dead_parents_get_clear_errors() {
    let parent = Parent::start(1, 4096, [0], ServerConfig::default()).await;
    // Not our protocol: the server hangs up and keeps serving others.
    let mut raw = tokio::net::TcpStream::connect(parent.addr()).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    raw.flush().await.unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server closed the connection");
    // A request frame that does not parse gets BadRequest and a closed connection.
    let mut raw = tokio::net::TcpStream::connect(parent.addr()).await.unwrap();
    raw.write_all(&frame::HELLO).await.unwrap();
    raw.write_all(&frame::encode_header(0x33, 9, 0)).await.unwrap();
    raw.flush().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut reply)).await.unwrap().unwrap();
    let h = frame::decode_header(reply[8..8 + frame::HEADER_LEN].try_into().unwrap()).unwrap();
    let (code, message) = frame::decode_error(&reply[8 + frame::HEADER_LEN..]).unwrap();
    assert_eq!((h.request_id, code), (9, ErrorCode::BadRequest));
    assert!(message.contains("unknown request kind"), "{message}");

    let child = client(ClientConfig::default());
    let update = child.sync_pieces(parent.addr(), &parent.task, None, WAIT_NONE).await.unwrap();
    assert_eq!(update.added, vec![0]);

    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = child.fetch_piece(dead, &parent.task, 0, &PieceDigest::of(b"")).await.unwrap_err();
    assert!(matches!(err, FetchError::Connect { parent, .. } if parent == dead), "{err}");
    assert!(PeerClient::new(ClientConfig { max_pieces_per_connection: 0, ..Default::default() }).is_err());
    let bad = ServerConfig { upload_rate: Some(RateLimit { bytes_per_s: 0, burst_bytes: 1 }), ..Default::default() };
    let err = Server::bind("127.0.0.1:0".parse().unwrap(), parent.store.clone(), bad).await.err().unwrap();
    assert!(err.to_string().contains("upload_rate"), "{err}");
}

#[tokio::test]
async fn a_slow_upload_is_not_cut_off_as_idle_but_an_idle_connection_is_closed() {
    // Two 64 KiB pieces through one upload slot at 256 KiB/s: the second waits ~250 ms for
    // the slot with no new request coming in, over twice the idle timeout.
    let rate = RateLimit { bytes_per_s: 256 << 10, burst_bytes: 16 << 10 };
    let config = ServerConfig { idle_timeout_ms: 100, upload_slots: 1, upload_rate: Some(rate), ..Default::default() };
    let parent = Parent::start(2, 64 << 10, [0, 1], config).await;
    let child = client(ClientConfig::default());
    let (d0, d1) = (*parent.piece(0).digest(), *parent.piece(1).digest());
    let (a, b) = tokio::join!(
        child.fetch_piece(parent.addr(), &parent.task, 0, &d0),
        child.fetch_piece(parent.addr(), &parent.task, 1, &d1)
    );
    assert_eq!((a.unwrap(), b.unwrap()), (parent.piece(0), parent.piece(1)));
    assert_eq!(parent.server.stats().connections_total, 1);
    let digest = d0;
    // Nothing in flight now: the parent closes the connection, and the pool notices.
    for _ in 0..100 {
        if child.connections(parent.addr()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(child.connections(parent.addr()), 0);
    assert_eq!(parent.server.stats().connections_open, 0);
    // The next request opens a new connection.
    assert!(child.fetch_piece(parent.addr(), &parent.task, 0, &digest).await.is_ok());
    assert_eq!(parent.server.stats().connections_total, 2);
}

/// One connection that greets, announces the largest request body and sends 1 KiB of it,
/// then nothing (the slow-frame attack of issue 25). Kept open by the caller.
async fn trickling_connection(to: SocketAddr) -> Option<tokio::net::TcpStream> {
    let mut raw = tokio::net::TcpStream::connect(to).await.ok()?;
    raw.write_all(&frame::HELLO).await.ok()?;
    raw.write_all(&frame::encode_header(frame::KIND_SYNC_PIECES, 1, frame::MAX_REQUEST_BODY)).await.ok()?;
    raw.write_all(&[0u8; 1024]).await.ok()?;
    raw.flush().await.ok()?;
    Some(raw)
}

/// A genuine request from another source address (127.0.0.2: every 127/8 address is
/// loopback on Linux), on a raw socket: the piece map of `task`, answered within `within`.
async fn genuine_sync(to: SocketAddr, task: &TaskId, within: Duration) -> Result<(), String> {
    let work = async {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket.bind("127.0.0.2:0".parse().unwrap()).map_err(|e| e.to_string())?;
        let mut raw = socket.connect(to).await.map_err(|e| e.to_string())?;
        raw.write_all(&frame::HELLO).await.map_err(|e| e.to_string())?;
        let request = frame::Request::SyncPieces { task: *task, wait_ms: 0, known: None };
        raw.write_all(&frame::encode_request(7, &request)).await.map_err(|e| e.to_string())?;
        raw.flush().await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 8 + frame::HEADER_LEN];
        raw.read_exact(&mut head).await.map_err(|e| e.to_string())?;
        let h = frame::decode_header(head[8..].try_into().unwrap()).map_err(|e| e.to_string())?;
        match (h.request_id, h.kind) {
            (7, frame::KIND_PIECES) => Ok(()),
            other => Err(format!("unexpected reply {other:?}")),
        }
    };
    tokio::time::timeout(within, work).await.map_err(|_| format!("no answer within {within:?}"))?
}

#[tokio::test]
async fn slow_frames_from_one_source_neither_take_every_slot_nor_stay() {
    let config = ServerConfig {
        max_connections: 64,
        max_connections_per_source: 8,
        frame_timeout_ms: 300,
        ..Default::default()
    };
    let parent = Parent::start(4, 4096, [0, 1], config).await;
    // Bounded: 80 attacking connections, each 1 KiB, all from 127.0.0.1.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Some(c) = trickling_connection(parent.addr()).await {
            held.push(c);
        }
    }
    // Only 8 are served at once; the rest are closed at accept.
    for _ in 0..100 {
        if parent.server.stats().connections_refused >= 72 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = parent.server.stats();
    assert!(stats.connections_refused >= 72, "{stats:?}");
    assert!(stats.connections_open <= 8, "{stats:?}");
    // A genuine peer elsewhere is answered at once, while the attack holds its sockets.
    genuine_sync(parent.addr(), &parent.task, Duration::from_secs(1)).await.unwrap();
    // The trickled frames time out: their connections are closed by the server.
    let deadline = Instant::now() + Duration::from_secs(5);
    while parent.server.stats().connections_open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(parent.server.stats().connections_open, 0, "slow frames still open after the frame timeout");
    drop(held);
}

#[tokio::test]
async fn a_body_buffer_grows_with_what_arrives_not_with_what_is_announced() {
    let (mut tx, mut rx) = tokio::io::duplex(64 << 10);
    let reading = tokio::spawn(async move {
        let r = super::io::read_body(&mut rx, 2 << 20, 4 << 20).await;
        r.map(|b| b.len()).map_err(|e| e.to_string())
    });
    tx.write_all(&[1u8; 1024]).await.unwrap();
    drop(tx);
    // 1 KiB of an announced 2 MiB, then the end: an error, and only what came was held.
    let e = reading.await.unwrap().unwrap_err();
    assert!(e.contains("closed mid-frame"), "{e}");
    let (mut tx, mut rx) = tokio::io::duplex(64 << 10);
    let reading = tokio::spawn(async move { super::io::read_body(&mut rx, 100_000, 4 << 20).await.map(|b| b.len()) });
    tx.write_all(&[2u8; 100_000]).await.unwrap();
    assert_eq!(reading.await.unwrap().unwrap(), 100_000);
}

mod grants {
    use super::*;
    use svc::grant::{unix_now_s, GrantKey};

    fn keyed(key: &GrantKey) -> ServerConfig {
        ServerConfig { grant_key: Some(key.clone()), ..ServerConfig::default() }
    }

    fn refusal(result: Result<impl std::fmt::Debug, FetchError>) -> String {
        match result {
            Err(FetchError::Refused { code: ErrorCode::Unauthorized, message, .. }) => message,
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_keyed_parent_serves_a_task_only_with_a_valid_grant_for_it() {
        let key = GrantKey::from_bytes(&[42; 32]).unwrap();
        let parent = Parent::start(4, 4096, 0..4, keyed(&key)).await;
        let (task, digest) = (parent.task, *parent.piece(1).digest());
        let in_an_hour = unix_now_s() + 3600;

        // No grant: refused, no bytes, for both requests.
        let stranger = client(ClientConfig::default());
        let m = refusal(stranger.fetch_piece(parent.addr(), &task, 1, &digest).await);
        assert!(m.contains(&task.to_string()) && m.contains("no grant"), "{m}");
        let m = refusal(stranger.sync_pieces(parent.addr(), &task, None, WAIT_NONE).await);
        assert!(m.contains("no grant"), "{m}");

        // A valid grant for another task does not open this one.
        let other_task = [0xee; 32];
        let elsewhere = client(ClientConfig::default());
        elsewhere.set_grant(key.mint(&other_task, "node-b", in_an_hour));
        // Its grant is presented and accepted (the parent just does not hold that task).
        let other = TaskId::from_bytes(other_task);
        match elsewhere.sync_pieces(parent.addr(), &other, None, WAIT_NONE).await {
            Err(FetchError::Refused { code: ErrorCode::TaskNotFound, .. }) => {}
            got => panic!("expected TaskNotFound for the granted task, got {got:?}"),
        }
        // On the connection that presented it (piece maps have their own connection)...
        let m = refusal(elsewhere.sync_pieces(parent.addr(), &task, None, WAIT_NONE).await);
        assert!(m.contains("no grant") && m.contains("1 grants for other tasks"), "{m}");
        // ...and on the piece connection, which presented none.
        let m = refusal(elsewhere.fetch_piece(parent.addr(), &task, 1, &digest).await);
        assert!(m.contains("no grant"), "{m}");

        // Another cluster's key, an expired grant, one for another host presented as ours.
        let forger = client(ClientConfig::default());
        forger.set_grant(GrantKey::from_bytes(&[43; 32]).unwrap().mint(task.as_bytes(), "node-c", in_an_hour));
        assert!(refusal(forger.fetch_piece(parent.addr(), &task, 1, &digest).await).contains("MAC"));
        let late = client(ClientConfig::default());
        late.set_grant(key.mint(task.as_bytes(), "node-d", unix_now_s() - 1));
        assert!(refusal(late.fetch_piece(parent.addr(), &task, 1, &digest).await).contains("expired"));
        let borrowed = client(ClientConfig::default());
        let mut g = key.mint(task.as_bytes(), "node-e", in_an_hour);
        g.host_id = "node-f".into();
        borrowed.set_grant(g);
        assert!(refusal(borrowed.fetch_piece(parent.addr(), &task, 1, &digest).await).contains("MAC"));

        // The genuine child, while the stranger keeps trying (bounded).
        let genuine = client(ClientConfig::default());
        genuine.set_grant(key.mint(task.as_bytes(), "node-a", in_an_hour));
        let before = parent.server.stats().unauthorized_replies;
        let attempts = 200;
        let (served, refused) = tokio::join!(
            async {
                let mut served = Vec::new();
                for round in 0..10u32 {
                    let p = round % 4;
                    let piece = genuine.fetch_piece(parent.addr(), &task, p, parent.piece(p).digest()).await;
                    served.push(piece.expect("the genuine child is served").data().to_vec() == parent.piece(p).data());
                }
                served
            },
            async {
                let mut refused = 0;
                for _ in 0..attempts {
                    if let Err(FetchError::Refused { code: ErrorCode::Unauthorized, .. }) =
                        stranger.fetch_piece(parent.addr(), &task, 2, &digest).await
                    {
                        refused += 1;
                    }
                }
                refused
            }
        );
        assert!(served.iter().all(|&same| same), "{served:?}");
        assert_eq!(refused, attempts, "every request without a grant is refused");
        let update = genuine.sync_pieces(parent.addr(), &task, None, WAIT_NONE).await.unwrap();
        assert_eq!(update.added, vec![0, 1, 2, 3]);
        let stats = parent.server.stats();
        assert_eq!(stats.unauthorized_replies - before, attempts as u64);
        assert_eq!(stats.pieces_sent, 10, "only the genuine child's pieces left the parent");
    }

    #[tokio::test]
    async fn a_parent_without_a_key_serves_with_or_without_grants() {
        let parent = Parent::start(2, 4096, 0..2, ServerConfig::default()).await;
        let with_grant = client(ClientConfig::default());
        let key = GrantKey::from_bytes(&[1; 32]).unwrap();
        with_grant.set_grant(key.mint(parent.task.as_bytes(), "node-a", unix_now_s() + 60));
        for c in [&with_grant, &client(ClientConfig::default())] {
            let piece = c.fetch_piece(parent.addr(), &parent.task, 1, parent.piece(1).digest()).await.unwrap();
            assert_eq!(piece.data(), parent.piece(1).data());
        }
        assert_eq!(parent.server.stats().unauthorized_replies, 0);
    }

    #[tokio::test]
    async fn a_raw_request_without_a_grant_gets_only_an_unauthorized_error_frame() {
        let key = GrantKey::from_bytes(&[42; 32]).unwrap();
        let parent = Parent::start(1, 4096, [0], keyed(&key)).await;
        let mut s = tokio::net::TcpStream::connect(parent.addr()).await.unwrap();
        s.write_all(&frame::HELLO).await.unwrap();
        s.write_all(&frame::encode_request(5, &frame::Request::GetPiece { task: parent.task, piece: 0 }))
            .await
            .unwrap();
        let mut hello = [0u8; 8];
        s.read_exact(&mut hello).await.unwrap();
        let mut head = [0u8; frame::HEADER_LEN];
        s.read_exact(&mut head).await.unwrap();
        let h = frame::decode_header(&head).unwrap();
        assert_eq!((h.kind, h.request_id), (frame::KIND_ERROR, 5));
        let mut body = vec![0u8; h.body_len];
        s.read_exact(&mut body).await.unwrap();
        let (code, message) = frame::decode_error(&body).unwrap();
        assert_eq!(code, ErrorCode::Unauthorized, "{message}");
        assert!(!body.windows(64).any(|w| w == &parent.data[..64]), "no piece bytes in the refusal");
        // Nothing else follows; the connection stays open for a grant.
        let mut more = [0u8; 1];
        let next = tokio::time::timeout(Duration::from_millis(200), s.read(&mut more)).await;
        assert!(next.is_err(), "nothing more was sent: {next:?}");
        let grant = key.mint(parent.task.as_bytes(), "node-a", svc::grant::unix_now_s() + 60);
        s.write_all(&frame::encode_request(6, &frame::Request::Grant(grant))).await.unwrap();
        s.write_all(&frame::encode_request(7, &frame::Request::GetPiece { task: parent.task, piece: 0 }))
            .await
            .unwrap();
        s.read_exact(&mut head).await.unwrap();
        let h = frame::decode_header(&head).unwrap();
        assert_eq!((h.kind, h.request_id), (frame::KIND_PIECE, 7), "served once granted; a Grant has no reply");
    }
}
