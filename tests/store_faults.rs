//! Faults on real processes (issue 25, item 6), each checked by the sha256 of what `dfget`
//! wrote against the origin's content:
//! - the store's disk fills mid-download (a tmpfs mount): a clear error, no output, and
//!   the next download resumes once space is freed;
//! - store files altered behind the daemon's back (content edited in place, truncated,
//!   metadata garbage or lying about a piece's digest): detected, refetched, never served;
//! - `kill -9` of a peer daemon mid-download, then a restart: it resumes from its pieces;
//! - a parent that serves wrong bytes, or claims pieces it lacks: blocked, the download
//!   still right (a fake data-plane server takes over a real parent's port);
//! - the scheduler killed mid-rollout: every download finishes with the right bytes.

use e2e::cluster::{
    self, dfget, start_peer, start_peer_with, start_scheduler, write_peer_config, PeerOptions, TmpfsMount,
};
use e2e::origin_server::Origin;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn ok_output(out: &std::process::Output, path: &Path, want: &str, who: &str) {
    assert!(out.status.success(), "{who}: dfget failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cluster::sha256_hex(&std::fs::read(path).unwrap()), want, "{who}: output differs from the origin's");
}

fn log_of(p: &cluster::Peer) -> String {
    std::fs::read_to_string(&p.proc.log).unwrap_or_default()
}

/// Bytes a daemon got from parents and the origin (counted once per piece stored).
fn fetched(p: &cluster::Peer) -> u64 {
    p.metric("peer_download_bytes_total{source=\"parent\"}") + p.metric("peer_download_bytes_total{source=\"origin\"}")
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `within`.
fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// The disk fills up.

#[test]
fn a_full_disk_mid_download_fails_clearly_leaves_no_output_and_recovers_once_freed() {
    let dir = cluster::test_dir("disk-full");
    if !cluster::is_root() {
        eprintln!("disk-full: skipped: mounting a tmpfs for the store needs root");
        return;
    }
    // Declared first: dropped last, after the daemon using it.
    let mount = TmpfsMount::new(&dir.join("small"), 40 << 20).expect("tmpfs mount");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(32 * MIB, 11));
    let want = cluster::sha256_hex(&data);
    let path = "/files/full.bin";
    let url = origin.put(path, data.clone());
    // 24 MiB of other files on the 40 MiB disk: the 32 MiB download runs out midway. The
    // quota (8 GiB) is far above the disk: the filesystem, not the quota, says no.
    let filler = mount.dir.join("filler");
    std::fs::write(&filler, vec![0x5a; 24 * MIB]).unwrap();
    let store = mount.dir.join("store");
    let on_tmpfs = PeerOptions { store_dir: Some(store.clone()), ..Default::default() };
    let mut a = start_peer(&dir, "a", None, &on_tmpfs);

    // An earlier output stays as it was: never replaced by part of the content.
    let out = dir.join("a.out");
    std::fs::write(&out, b"the previous version").unwrap();
    let failed = dfget(&a.local_api, &url, &out, &[]);
    let stderr = String::from_utf8_lossy(&failed.stderr).to_string();
    eprintln!("disk-full: dfget said: {}", stderr.trim());
    assert_eq!(failed.status.code(), Some(6), "dfget exits 6 (no space): {stderr}");
    assert!(stderr.contains("No space left on device"), "the error says the disk is full: {stderr}");
    assert!(stderr.contains(&store.display().to_string()), "the error names where: {stderr}");
    assert!(stderr.contains("free space"), "the error says what to do: {stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous version", "a partial output was handed out");
    let kept = a.metric("peer_download_bytes_total{source=\"origin\"}");
    assert!(kept >= 4 * MIB as u64 && kept < data.len() as u64, "stored {kept} bytes before the disk filled");

    // Still full: the same clear failure, never a partial file.
    let again = dfget(&a.local_api, &url, &out, &[]);
    assert_eq!(again.status.code(), Some(6), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous version");

    // Space freed: the same daemon, without a restart, finishes from the pieces it kept.
    std::fs::remove_file(&filler).unwrap();
    let served_before = origin.bytes_served(path);
    ok_output(&dfget(&a.local_api, &url, &out, &[]), &out, &want, "a after space was freed");
    let refetched = origin.bytes_served(path) - served_before;
    // Less than a whole copy: the kept pieces did not come again. The origin counts what
    // it wrote into the socket, so a range abandoned mid-stream (a piece timing out under
    // load reopens the range) adds what sat in the socket buffers: a clean-clone CI run
    // measured 26.2 MiB for the 20 MiB left, which a bound of "the rest + 4 MiB" failed.
    // The reuse itself is the local_cache figure below.
    assert!(
        refetched < data.len() as u64,
        "the origin served {refetched} bytes after the disk was freed, a whole copy or more; {kept} were kept"
    );
    assert!(a.metric("peer_download_bytes_total{source=\"local_cache\"}") >= kept, "the kept pieces were not reused");
    eprintln!("disk-full: {kept} bytes kept through the failure, {refetched} fetched after");
    assert_eq!(a.proc.stop(Duration::from_secs(10)), Some(0));
    drop(mount);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Store files altered behind the daemon's back.

/// Writes `bytes` at `offset` of `file` in place (no truncation, no rename).
fn write_in_place(file: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn store_files_altered_behind_the_daemon_are_detected_and_refetched_never_served() {
    let dir = cluster::test_dir("altered");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(24 * MIB, 12));
    let want = cluster::sha256_hex(&data);
    let url = origin.put("/files/altered.bin", data.clone());
    let piece = 4 * MIB as u64;
    let sched = start_scheduler(&dir);
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let (config, store) = write_peer_config(&dir, "a", Some(&sched.grpc), &PeerOptions::default());
    let mut a = start_peer_with(&dir, "a", config.clone(), store.clone());
    let mut n = 0;
    let mut fetch = |a: &cluster::Peer, who: &str| {
        n += 1;
        let out = dir.join(format!("a-{n}.out"));
        // --copy: each output a file of its own, not a link to the store's content.
        ok_output(&dfget(&a.local_api, &url, &out, &["--copy"]), &out, &want, who);
    };
    fetch(&a, "a");
    let task = cluster::task_dirs(&store).pop().expect("a task directory");
    let (content, meta) = (task.join("content"), task.join("meta.json"));

    // 1. Bytes of piece 1 overwritten in place while the daemon runs: the next request
    //    re-checks the completed task (its file changed) and fetches that one piece again.
    let before = fetched(&a);
    write_in_place(&content, piece + 100, b"not the origin's bytes");
    fetch(&a, "a after an in-place edit");
    assert_eq!(fetched(&a) - before, piece, "a fetched other than the one damaged piece");
    assert!(log_of(&a).contains("content file changed since it completed"));

    // 2. The content file cut short while the daemon is down: the pieces past the cut are
    //    dropped when the store opens, and fetched again.
    assert_eq!(a.proc.stop(Duration::from_secs(10)), Some(0));
    std::fs::OpenOptions::new().write(true).open(&content).unwrap().set_len(2 * piece + 5).unwrap();
    let mut a = start_peer_with(&dir, "a", config.clone(), store.clone());
    fetch(&a, "a after truncation");
    assert_eq!(a.metric("peer_download_bytes_total{source=\"local_cache\"}"), 2 * piece, "pieces 0 and 1 kept");
    assert_eq!(fetched(&a), data.len() as u64 - 2 * piece, "a fetched other than the pieces cut off");

    // 3. Metadata replaced by garbage while the daemon is down: it starts, removes the task
    //    it cannot trust (saying why) and fetches the content again.
    assert_eq!(a.proc.stop(Duration::from_secs(10)), Some(0));
    std::fs::write(&meta, b"{ garbage").unwrap();
    let mut a = start_peer_with(&dir, "a", config.clone(), store.clone());
    assert!(log_of(&a).contains("not valid metadata JSON"), "the open report names the bad file");
    fetch(&a, "a after its metadata was garbage");
    assert_eq!(fetched(&a), data.len() as u64);

    // 4. Metadata that records a wrong digest for piece 2 (the content is right): the first
    //    read of the piece finds the mismatch and drops it; the piece is then fetched again
    //    and the task completes. The wrong digest must not make the piece unfetchable.
    assert_eq!(a.proc.stop(Duration::from_secs(10)), Some(0));
    let text = std::fs::read_to_string(&meta).unwrap();
    let digests_at = text.find("\"piece_digests\":[").unwrap() + "\"piece_digests\":[".len();
    let third = digests_at + 2 * "\"00000000\",".len() + 1;
    let wrong = if &text[third..third + 8] == "00000000" { "11111111" } else { "00000000" };
    let text = format!("{}{wrong}{}", &text[..third], &text[third + 8..]);
    std::fs::write(&meta, text).unwrap();
    let mut a = start_peer_with(&dir, "a", config.clone(), store.clone());
    // A child asks a for every piece (the seed is stopped): piece 2 must never be sent.
    seed.proc.kill();
    a.wait_for_log("completed tasks announced to the scheduler", 1, Duration::from_secs(20));
    let b = start_peer(&dir, "b", Some(&sched.grpc), &PeerOptions::default());
    let out_b = dir.join("b.out");
    ok_output(&dfget(&b.local_api, &url, &out_b, &[]), &out_b, &want, "b, a child of a");
    wait_until("a counts the piece it refused to send", Duration::from_secs(5), || {
        a.metric("peer_upload_corrupt_pieces_total") >= 1
    });
    // a's own next download finds every source disagreeing with its record of piece 2:
    // it ends with an error that says so (no output) and resets the task, and the download
    // after it fetches the content afresh. (Before, it asked for the piece again and again,
    // forever: dfget hung.)
    let started = Instant::now();
    let out = dir.join("a-lied.out");
    let failed = dfget(&a.local_api, &url, &out, &[]);
    let stderr = String::from_utf8_lossy(&failed.stderr).to_string();
    eprintln!("altered: after the lying metadata, dfget said in {:?}: {}", started.elapsed(), stderr.trim());
    assert_eq!(failed.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("metadata was altered") && stderr.contains("download again"), "{stderr}");
    assert!(!out.exists(), "an output was written");
    let before = fetched(&a);
    fetch(&a, "a after its task was reset");
    assert_eq!(fetched(&a) - before, data.len() as u64);
    a.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// kill -9 mid-download, restart.

#[test]
fn a_daemon_killed_mid_download_resumes_from_its_pieces_after_a_restart() {
    let dir = cluster::test_dir("kill9");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(32 * MIB, 13));
    let want = cluster::sha256_hex(&data);
    let path = "/files/kill9.bin";
    let url = origin.put(path, data.clone());
    let sched = start_scheduler(&dir);
    let small = PeerOptions { piece_bytes: MIB as u64, ..Default::default() };
    let _seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..small.clone() });
    // A first peer warms the seed: a's bytes then come from parents, not the origin.
    let w = start_peer(&dir, "w", Some(&sched.grpc), &small);
    let out_w = dir.join("w.out");
    ok_output(&dfget(&w.local_api, &url, &out_w, &[]), &out_w, &want, "w");
    // a reads at 8 MB/s and records its pieces in its metadata every 4 pieces.
    let slow =
        PeerOptions { download_rate: Some(8_000_000), storage_toml: "meta_flush_pieces = 4".into(), ..small.clone() };
    let (config, store) = write_peer_config(&dir, "a", Some(&sched.grpc), &slow);
    let mut a = start_peer_with(&dir, "a", config.clone(), store.clone());
    let out = dir.join("a.out");
    let had = std::thread::scope(|s| {
        let (api, url, out) = (a.local_api.clone(), url.clone(), out.clone());
        let run = s.spawn(move || dfget(&api, &url, &out, &[]));
        wait_until("a reaches 12 MiB", Duration::from_secs(30), || fetched(&a) >= 12 * MIB as u64);
        let had = fetched(&a);
        a.proc.kill();
        let killed = run.join().unwrap();
        assert!(!killed.status.success(), "dfget succeeded through a daemon killed midway");
        had
    });
    assert!(!out.exists(), "a partial output was left behind");
    assert!(had < data.len() as u64, "a finished before it was killed");

    // Restarted on the same store: the pieces recorded before the kill count as done (at
    // most 3 unrecorded ones are fetched again), the rest comes from the seed.
    let mut a = start_peer_with(&dir, "a", config, store);
    ok_output(&dfget(&a.local_api, &url, &out, &[]), &out, &want, "a after the restart");
    let kept = a.metric("peer_download_bytes_total{source=\"local_cache\"}");
    assert!(kept + 3 * MIB as u64 >= had, "a held {had} bytes when killed, kept {kept}");
    assert_eq!(fetched(&a), data.len() as u64 - kept, "a fetched pieces it held");
    assert_eq!(origin.bytes_served(path), data.len() as u64, "the origin served more than the seed's copy");
    eprintln!("kill9: {had} bytes fetched before the kill, {kept} kept after the restart");
    a.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// A parent that lies.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Lie {
    /// Advertises every piece with its true CRC32, sends other bytes.
    WrongBytes,
    /// Advertises every piece, answers every request for one "not available".
    LacksPieces,
}

/// A fake parent on the data-plane port of a real one that was killed: it speaks the frame
/// protocol (`peer::dataplane::frame`), advertises the whole task and lies as told. Stops
/// listening when dropped.
struct FakeParent {
    stop: Arc<AtomicBool>,
    piece_requests: Arc<AtomicU64>,
}

impl FakeParent {
    fn start(addr: &str, data: Arc<Vec<u8>>, piece_bytes: usize, lie: Lie) -> FakeParent {
        // The real parent's port was just freed by its kill; bind it again (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot take over {addr}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        listener.set_nonblocking(true).unwrap();
        let (stop, piece_requests) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, r) = (stop.clone(), piece_requests.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, r, data) = (s.clone(), r.clone(), data.clone());
                        std::thread::spawn(move || {
                            let _ = serve_lies(conn, &data, piece_bytes, lie, &s, &r);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeParent { stop, piece_requests }
    }

    fn piece_requests(&self) -> u64 {
        self.piece_requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeParent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_lies(
    mut conn: TcpStream,
    data: &[u8],
    piece_bytes: usize,
    lie: Lie,
    stop: &AtomicBool,
    piece_requests: &AtomicU64,
) -> std::io::Result<()> {
    use peer::dataplane::frame::{self, ErrorCode, PiecesReply, Request};
    use peer::storage::PieceDigest;
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut hello = [0u8; 8];
    conn.read_exact(&mut hello)?;
    conn.write_all(&frame::HELLO)?;
    let count = data.len().div_ceil(piece_bytes) as u32;
    let piece = |i: u32| &data[i as usize * piece_bytes..((i as usize + 1) * piece_bytes).min(data.len())];
    let mut all = sched::core::PieceSet::new(count);
    (0..count).for_each(|i| {
        all.insert(i);
    });
    while !stop.load(Ordering::Relaxed) {
        let mut head = [0u8; frame::HEADER_LEN];
        conn.read_exact(&mut head)?;
        let h = frame::decode_header(&head).map_err(std::io::Error::other)?;
        let mut body = vec![0u8; h.body_len.min(frame::MAX_REQUEST_BODY)];
        conn.read_exact(&mut body)?;
        match frame::decode_request(h.kind, &body).map_err(std::io::Error::other)? {
            Request::SyncPieces { known, .. } => {
                let reply = PiecesReply {
                    content_bytes: data.len() as u64,
                    piece_bytes: piece_bytes as u64,
                    piece_count: count,
                    completed: true,
                    uploads_active: 0,
                    finished: all.clone(),
                    digests: (0..count)
                        .filter(|&i| known.as_ref().is_none_or(|k| !k.contains(i)))
                        .map(|i| (i, PieceDigest::of(piece(i))))
                        .collect(),
                };
                conn.write_all(&frame::encode_pieces(h.request_id, &reply))?;
            }
            Request::GetPiece { piece: i, .. } => {
                piece_requests.fetch_add(1, Ordering::SeqCst);
                match lie {
                    Lie::WrongBytes => {
                        let mut bytes = piece(i).to_vec();
                        bytes.iter_mut().step_by(4096).for_each(|b| *b ^= 0xff);
                        let head = frame::encode_piece_head(h.request_id, i, &PieceDigest::of(piece(i)), bytes.len());
                        conn.write_all(&head)?;
                        conn.write_all(&bytes)?;
                    }
                    Lie::LacksPieces => {
                        let message = format!("piece {i} is not available");
                        conn.write_all(&frame::encode_error(h.request_id, ErrorCode::PieceNotAvailable, &message))?;
                    }
                }
            }
            Request::Grant(_) => {}
        }
    }
    Ok(())
}

/// A real parent `m` completes the task and registers as its parent; then it and the seed
/// are killed without a word to the scheduler, and a fake parent telling `lie` takes over
/// m's data port. A new peer's download must block it and still end with the right bytes.
fn a_lying_parent_is_blocked(lie: Lie) {
    let dir = cluster::test_dir(&format!("liar-{lie:?}"));
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(24 * MIB, 14));
    let want = cluster::sha256_hex(&data);
    let url = origin.put("/files/liar.bin", data.clone());
    let sched = start_scheduler(&dir);
    let mut seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..Default::default() });
    let mut m = start_peer(&dir, "m", Some(&sched.grpc), &PeerOptions::default());
    let out_m = dir.join("m.out");
    ok_output(&dfget(&m.local_api, &url, &out_m, &[]), &out_m, &want, "m");
    seed.proc.kill();
    m.proc.kill();
    let fake = FakeParent::start(&m.data, data.clone(), 4 * MIB, lie);

    let c = start_peer(&dir, "c", Some(&sched.grpc), &PeerOptions::default());
    let out_c = dir.join("c.out");
    let started = Instant::now();
    let result = dfget(&c.local_api, &url, &out_c, &[]);
    let took = started.elapsed();
    let log = log_of(&c);
    assert!(result.status.success(), "c: dfget failed: {}\n{log}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(cluster::sha256_hex(&std::fs::read(&out_c).unwrap()), want, "c: output differs from the origin's");
    let asked = fake.piece_requests();
    eprintln!("liar {lie:?}: c asked the fake parent for {asked} pieces, finished in {took:?}");
    assert!(asked >= 1, "the scheduler never made the fake a parent of c:\n{log}");
    assert_eq!(c.metric("peer_download_bytes_total{source=\"parent\"}"), 0, "c took bytes from the liar");
    // Blocked: a handful of requests (those in flight when the first lie came back), not
    // one per piece or a loop.
    assert!(asked <= 8, "c asked the fake parent {asked} times for 6 pieces:\n{log}");
    assert!(took < Duration::from_secs(30), "c took {took:?}");
    drop(fake);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_parent_serving_wrong_bytes_is_blocked_and_the_download_is_right() {
    a_lying_parent_is_blocked(Lie::WrongBytes);
}

#[test]
fn a_parent_claiming_pieces_it_lacks_is_blocked_and_the_download_is_right() {
    a_lying_parent_is_blocked(Lie::LacksPieces);
}

// ---------------------------------------------------------------------------------------
// The scheduler dies mid-rollout.

#[test]
fn downloads_finish_with_the_right_bytes_when_the_scheduler_is_killed_mid_rollout() {
    let dir = cluster::test_dir("sched-kill");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(32 * MIB, 15));
    let want = cluster::sha256_hex(&data);
    let path = "/files/rollout.bin";
    let url = origin.put_throttled(path, data.clone(), 16_000_000);
    let mut sched = start_scheduler(&dir);
    let options = PeerOptions { piece_bytes: MIB as u64, ..Default::default() };
    let _seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..options.clone() });
    let slow = PeerOptions { download_rate: Some(6_000_000), ..options };
    let peers: Vec<_> = (0..3).map(|i| start_peer(&dir, &format!("p{i}"), Some(&sched.grpc), &slow)).collect();
    let started = Instant::now();
    let results = std::thread::scope(|s| {
        let run = s.spawn(|| cluster::dfget_all(&peers, &url, &dir));
        // Killed once the rollout is under way: pieces are moving between peers.
        wait_until("pieces move between peers", Duration::from_secs(30), || {
            peers.iter().map(|p| p.metric("peer_download_bytes_total{source=\"parent\"}")).sum::<u64>()
                >= 8 * MIB as u64
        });
        sched.proc.kill();
        let so_far: u64 = peers.iter().map(fetched).sum();
        assert!(so_far < 3 * data.len() as u64, "the rollout was over before the scheduler was killed");
        eprintln!(
            "sched-kill: scheduler killed after {:?}, {so_far} of {} bytes in",
            started.elapsed(),
            3 * data.len()
        );
        run.join().unwrap()
    });
    for (i, (out, path)) in results.iter().enumerate() {
        ok_output(out, path, &want, &format!("p{i}"));
    }
    let took = started.elapsed();
    let served = origin.bytes_served(path);
    eprintln!(
        "sched-kill: 3 peers done in {took:?}; the origin served {:.2} copies",
        served as f64 / data.len() as f64
    );
    assert!(took < Duration::from_secs(45), "the rollout took {took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
