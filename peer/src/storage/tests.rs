use super::*;
use crate::test_data::content;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicU64;

struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl ManualClock {
    fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

const PIECE: u64 = 1024;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        quota_bytes: 1 << 20,
        verify_on_open: false,
        meta_flush_pieces: 1,
        piece_cache_bytes: 0,
        sync_on_complete: true,
        direct_io: true,
        prefault_buffer_bytes: 0,
    }
}

fn open(cfg: StoreConfig) -> (Store, OpenReport, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(AtomicU64::new(1_000)));
    let (store, report) = Store::open_with_clock(cfg, clock.clone()).unwrap();
    (store, report, clock)
}

fn spec(id: u8, data: &[u8], with_digest: bool) -> TaskSpec {
    TaskSpec {
        id: TaskId::from_bytes([id; 32]),
        url: format!("http://origin/{id}"),
        content_bytes: data.len() as u64,
        piece_bytes: PIECE,
        content_digest: with_digest.then(|| Sha256Digest::of(data)),
    }
}

fn piece_of(data: &[u8], piece: u32) -> VerifiedPiece {
    let start = piece as usize * PIECE as usize;
    let end = (start + PIECE as usize).min(data.len());
    VerifiedPiece::new(data[start..end].to_vec())
}

fn write_all(store: &Store, id: &TaskId, data: &[u8]) {
    let count = (data.len() as u64).div_ceil(PIECE) as u32;
    for p in 0..count {
        store.write_piece(id, p, &piece_of(data, p), None).unwrap();
    }
}

/// Flips a byte of a piece on disk behind the store's back.
fn corrupt(store: &Store, id: &TaskId, piece: u32) {
    let path = store.task(id).unwrap().content_path;
    let file = OpenOptions::new().write(true).open(path).unwrap();
    let offset = piece as u64 * PIECE + 7;
    let mut byte = [0u8];
    File::open(store.task(id).unwrap().content_path).unwrap().read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], offset).unwrap();
}

#[test]
fn pieces_round_trip_and_a_known_digest_completes_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path()));
    let data = content(3 * PIECE + 100, 1);
    let s = spec(1, &data, true);
    let id = s.id;
    let info = store.create_task(s.clone()).unwrap();
    assert_eq!((info.piece_count, info.finished_pieces, info.completed), (4, 0, false));
    assert_eq!(store.create_task(s).unwrap().id, id, "creating again returns the same task");

    // Out of order, last (short) piece included.
    for p in [3, 1, 0] {
        let w = store.write_piece(&id, p, &piece_of(&data, p), Some(piece_of(&data, p).digest())).unwrap();
        assert!(w.newly_finished && !w.all_finished);
    }
    assert!(!store.write_piece(&id, 1, &piece_of(&data, 1), None).unwrap().newly_finished);
    assert!(matches!(store.complete_task(&id), Err(StoreError::Incomplete { missing: 1, .. })));
    let w = store.write_piece(&id, 2, &piece_of(&data, 2), None).unwrap();
    assert!(w.all_finished);
    store.complete_task(&id).unwrap();

    let map = store.pieces(&id).unwrap();
    assert!(map.completed && map.finished.is_full());
    assert_eq!(map.digests[3], Some(*piece_of(&data, 3).digest()));
    for p in 0..4 {
        assert_eq!(store.read_piece(&id, p).unwrap(), piece_of(&data, p));
    }
    assert_eq!(fs::read(store.task(&id).unwrap().content_path).unwrap(), data);
    assert_eq!(store.used_bytes(), data.len() as u64);
}

#[test]
fn bad_writes_are_refused_and_name_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path()));
    let data = content(2 * PIECE, 2);
    let id = store.create_task(spec(2, &data, false)).unwrap().id;
    let other = *piece_of(&data, 1).digest();
    let err = store.write_piece(&id, 0, &piece_of(&data, 0), Some(&other)).unwrap_err();
    assert!(matches!(err, StoreError::PieceDigestMismatch { piece: 0, .. }), "{err}");
    assert!(err.to_string().contains(&id.to_string()));
    let err = store.write_piece(&id, 0, &VerifiedPiece::new(vec![0; 10]), None).unwrap_err();
    assert!(matches!(err, StoreError::WrongPieceLength { expected: PIECE, actual: 10, .. }), "{err}");
    let err = store.write_piece(&id, 2, &piece_of(&data, 0), None).unwrap_err();
    assert!(matches!(err, StoreError::NoSuchPiece { piece: 2, piece_count: 2, .. }), "{err}");
    let missing = TaskId::from_bytes([9; 32]);
    assert!(matches!(store.read_piece(&missing, 0), Err(StoreError::TaskNotFound { .. })));
    assert!(matches!(store.read_piece(&id, 1), Err(StoreError::PieceNotFinished { piece: 1, .. })));
    let bad_spec = TaskSpec { piece_bytes: 0, ..spec(3, &data, false) };
    assert!(matches!(store.create_task(bad_spec), Err(StoreError::InvalidTask { .. })));
    let changed = TaskSpec { piece_bytes: 2 * PIECE, ..spec(2, &data, false) };
    assert!(matches!(store.create_task(changed), Err(StoreError::TaskMismatch(_))));
    assert_eq!(store.used_bytes(), 0, "nothing was written");
}

#[test]
fn a_corrupt_piece_is_detected_dropped_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path()));
    let data = content(3 * PIECE, 3);
    let id = store.create_task(spec(3, &data, true)).unwrap().id;
    write_all(&store, &id, &data);
    store.complete_task(&id).unwrap();
    let mut changes = store.watch(&id).unwrap();
    let version = *changes.borrow_and_update();

    corrupt(&store, &id, 1);
    let err = store.read_piece(&id, 1).unwrap_err();
    assert!(matches!(err, StoreError::CorruptPiece { piece: 1, .. }), "{err}");
    assert!(err.to_string().contains("content"), "names the file: {err}");
    // Dropped: not finished, not completed, not counted, and watchers hear of it.
    let map = store.pieces(&id).unwrap();
    assert!(!map.finished.contains(1) && !map.completed);
    assert_eq!(map.digests[1], Some(*piece_of(&data, 1).digest()), "the digest is kept for the re-fetch");
    assert!(changes.has_changed().unwrap() && *changes.borrow_and_update() > version);
    assert_eq!(store.used_bytes(), 2 * PIECE);
    assert!(matches!(store.read_piece(&id, 1), Err(StoreError::PieceNotFinished { .. })));
    // The dropped state is on disk too.
    drop(store);
    let (store, _, _) = open(config(dir.path()));
    assert!(!store.pieces(&id).unwrap().finished.contains(1));
    // Re-fetching must match the recorded digest.
    let wrong = VerifiedPiece::new(piece_of(&data, 0).into_data());
    assert!(matches!(store.write_piece(&id, 1, &wrong, None), Err(StoreError::PieceDigestMismatch { .. })));
    store.write_piece(&id, 1, &piece_of(&data, 1), None).unwrap();
    store.complete_task(&id).unwrap();
    assert_eq!(store.read_piece(&id, 1).unwrap(), piece_of(&data, 1));
}

#[test]
fn a_reset_task_takes_pieces_that_disagree_with_its_old_digests() {
    // The metadata recorded a wrong digest for piece 1 (altered behind the store's back):
    // its right bytes are refused until the task is reset, and then accepted.
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 * PIECE, 8);
    let (store, _, _) = open(config(dir.path()));
    let id = store.create_task(spec(8, &data, false)).unwrap().id;
    store.write_piece(&id, 0, &piece_of(&data, 0), None).unwrap();
    let other = VerifiedPiece::new(piece_of(&data, 2).into_data());
    store.write_piece(&id, 1, &other, None).unwrap();
    corrupt(&store, &id, 1);
    assert!(matches!(store.read_piece(&id, 1), Err(StoreError::CorruptPiece { .. })));
    let refused = store.write_piece(&id, 1, &piece_of(&data, 1), None).unwrap_err();
    assert!(matches!(refused, StoreError::PieceDigestMismatch { piece: 1, .. }), "{refused}");
    assert_eq!(store.reset_task(&id).unwrap(), vec![0], "the pieces still finished are dropped");
    let map = store.pieces(&id).unwrap();
    assert!(map.finished.is_empty() && map.digests.iter().all(Option::is_none));
    assert_eq!(store.used_bytes(), 0);
    write_all(&store, &id, &data);
    store.complete_task(&id).unwrap();
    assert_eq!(store.read_piece(&id, 1).unwrap(), piece_of(&data, 1));
    assert!(matches!(store.reset_task(&TaskId::from_bytes([9; 32])), Err(StoreError::TaskNotFound { .. })));
}

#[test]
fn restart_keeps_completed_tasks_and_resumes_partial_ones() {
    let dir = tempfile::tempdir().unwrap();
    let done = content(2 * PIECE, 4);
    let partial = content(4 * PIECE, 5);
    let (done_id, partial_id) = {
        let (store, _, _) = open(config(dir.path()));
        let done_id = store.create_task(spec(4, &done, true)).unwrap().id;
        write_all(&store, &done_id, &done);
        store.complete_task(&done_id).unwrap();
        let partial_id = store.create_task(spec(5, &partial, false)).unwrap().id;
        for p in [0, 2] {
            store.write_piece(&partial_id, p, &piece_of(&partial, p), None).unwrap();
        }
        (done_id, partial_id)
    };
    let (store, report, _) = open(config(dir.path()));
    assert_eq!(report.loaded.len(), 2);
    assert!(report.removed.is_empty() && report.dropped_pieces.is_empty());
    assert!(store.task(&done_id).unwrap().completed);
    assert_eq!(store.read_piece(&done_id, 1).unwrap(), piece_of(&done, 1));
    let map = store.pieces(&partial_id).unwrap();
    assert_eq!(map.finished.iter().collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(store.used_bytes(), 4 * PIECE);
    for p in [1, 3] {
        store.write_piece(&partial_id, p, &piece_of(&partial, p), None).unwrap();
    }
    store.complete_task(&partial_id).unwrap();
    assert_eq!(fs::read(store.task(&partial_id).unwrap().content_path).unwrap(), partial);
}

#[test]
fn completion_rechecks_pieces_recorded_before_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 * PIECE, 6);
    let id = {
        let (store, _, _) = open(config(dir.path()));
        let id = store.create_task(spec(6, &data, false)).unwrap().id;
        store.write_piece(&id, 0, &piece_of(&data, 0), None).unwrap();
        store.write_piece(&id, 1, &piece_of(&data, 1), None).unwrap();
        corrupt(&store, &id, 0); // as if the crash lost the bytes after the metadata was written
        id
    };
    let (store, _, _) = open(config(dir.path()));
    store.write_piece(&id, 2, &piece_of(&data, 2), None).unwrap();
    let err = store.complete_task(&id).unwrap_err();
    assert!(matches!(err, StoreError::CorruptPiece { piece: 0, .. }), "{err}");
    store.write_piece(&id, 0, &piece_of(&data, 0), None).unwrap();
    store.complete_task(&id).unwrap();
}

#[test]
fn verify_on_open_drops_bad_pieces_and_bad_directories_are_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * PIECE, 7);
    let id = {
        let (store, _, _) = open(config(dir.path()));
        let id = store.create_task(spec(7, &data, false)).unwrap().id;
        write_all(&store, &id, &data);
        corrupt(&store, &id, 1);
        id
    };
    let broken = dir.path().join("tasks").join(TaskId::from_bytes([8; 32]).to_hex());
    fs::create_dir_all(&broken).unwrap();
    fs::write(broken.join("meta.json"), b"{ not json").unwrap();
    fs::write(dir.path().join("tasks").join("README"), b"not a task").unwrap();

    let (store, report, _) = open(StoreConfig { verify_on_open: true, ..config(dir.path()) });
    assert_eq!(report.loaded, vec![id]);
    assert_eq!(report.dropped_pieces, vec![(id, 1)]);
    assert_eq!(report.removed.len(), 1);
    assert!(report.removed[0].1.contains("JSON"), "{:?}", report.removed);
    assert!(!broken.exists());
    assert_eq!(report.ignored.len(), 1);
    assert_eq!(store.pieces(&id).unwrap().finished.iter().collect::<Vec<_>>(), vec![0]);
    assert_eq!(store.used_bytes(), PIECE);
}

#[test]
fn unflushed_pieces_are_lost_on_a_crash_and_kept_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(8 * PIECE, 9);
    let cfg = StoreConfig { meta_flush_pieces: 4, ..config(dir.path()) };
    let id = {
        let (store, _, _) = open(cfg.clone());
        let id = store.create_task(spec(9, &data, false)).unwrap().id;
        for p in 0..6 {
            store.write_piece(&id, p, &piece_of(&data, p), None).unwrap();
        }
        id // dropped without flush: pieces 4 and 5 were not recorded
    };
    let (store, _, _) = open(cfg.clone());
    assert_eq!(store.pieces(&id).unwrap().finished.count(), 4);
    store.write_piece(&id, 4, &piece_of(&data, 4), None).unwrap();
    store.flush().unwrap();
    drop(store);
    let (store, _, _) = open(cfg);
    assert_eq!(store.pieces(&id).unwrap().finished.count(), 5);
}

#[test]
fn a_wrong_content_digest_prevents_completion_and_resets_the_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path()));
    let data = content(2 * PIECE, 10);
    let s = TaskSpec { content_digest: Some(Sha256Digest::of(b"something else")), ..spec(10, &data, false) };
    let id = store.create_task(s).unwrap().id;
    write_all(&store, &id, &data);
    let err = store.complete_task(&id).unwrap_err();
    match &err {
        StoreError::ContentDigestMismatch(m) => {
            assert_eq!(m.dropped_pieces, vec![0, 1]);
            assert!(m.path.ends_with("content"));
        }
        other => panic!("unexpected {other}"),
    }
    let map = store.pieces(&id).unwrap();
    assert!(map.finished.is_empty() && map.digests.iter().all(Option::is_none) && !map.completed);
}

#[test]
fn quota_is_enforced_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(StoreConfig { quota_bytes: 3 * PIECE, ..config(dir.path()) });
    let big = content(4 * PIECE, 11);
    let err = store.create_task(spec(11, &big, false)).unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err}");
    let a = content(2 * PIECE, 12);
    let b = content(2 * PIECE, 13);
    let a_id = store.create_task(spec(12, &a, false)).unwrap().id;
    let b_id = store.create_task(spec(13, &b, false)).unwrap().id;
    write_all(&store, &a_id, &a);
    store.write_piece(&b_id, 0, &piece_of(&b, 0), None).unwrap();
    let err = store.write_piece(&b_id, 1, &piece_of(&b, 1), None).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::QuotaExceeded { used_bytes: 3072, quota_bytes: 3072, .. }), "{text}");
    assert!(text.contains(&b_id.to_string()) && text.contains("quota"), "{text}");
    assert_eq!(store.used_bytes(), 3 * PIECE);
    // Freeing space lets the write through.
    store.remove_task(&a_id).unwrap();
    store.write_piece(&b_id, 1, &piece_of(&b, 1), None).unwrap();
}

#[test]
fn gc_evicts_idle_then_least_recently_used_and_spares_pinned_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, clock) = open(config(dir.path()));
    let mut ids = Vec::new();
    for (i, t) in [(20u8, 100u64), (21, 200), (22, 300), (23, 400)] {
        clock.set(t);
        let data = content(2 * PIECE, u64::from(i));
        let id = store.create_task(spec(i, &data, false)).unwrap().id;
        write_all(&store, &id, &data);
        ids.push(id);
    }
    // Reading task 20 makes it the most recently used; task 21 is in use.
    clock.set(500);
    store.read_piece(&ids[0], 0).unwrap();
    let pin = store.pin(&ids[1]).unwrap();
    assert!(matches!(store.remove_task(&ids[1]), Err(StoreError::InUse { pins: 1, .. })));

    clock.set(10_000);
    let report = store.gc(&GcPolicy { max_idle_ms: Some(9_650), target_bytes: Some(4 * PIECE) });
    let order: Vec<(TaskId, GcReason)> = report.evicted.iter().map(|e| (e.task, e.reason)).collect();
    // Idle: 21 (pinned, skipped) and 22 (access 300); then space: 23, LRU before 20.
    assert_eq!(order, vec![(ids[2], GcReason::Idle), (ids[3], GcReason::Space)]);
    assert_eq!(report.skipped_in_use, vec![ids[1]]);
    assert!(report.delete_errors.is_empty());
    assert_eq!(report.used_bytes_after, 4 * PIECE);
    assert!(store.task(&ids[2]).is_none() && store.task(&ids[0]).is_some());
    assert!(!dir.path().join("tasks").join(ids[2].to_hex()).exists());
    drop(pin);
    let report = store.gc(&GcPolicy { max_idle_ms: None, target_bytes: Some(0) });
    assert_eq!(report.evicted.iter().map(|e| e.task).collect::<Vec<_>>(), vec![ids[1], ids[0]]);
    assert_eq!(store.used_bytes(), 0);
    assert!(fs::read_dir(dir.path().join("trash")).unwrap().next().is_none());
}

#[test]
fn an_empty_task_completes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path()));
    let id = store.create_task(spec(30, &[], true)).unwrap().id;
    store.complete_task(&id).unwrap();
    assert!(store.task(&id).unwrap().completed);
}

#[test]
fn bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(StoreConfig { meta_flush_pieces: 0, ..config(dir.path()) }).err().unwrap();
    assert!(err.to_string().contains("meta_flush_pieces"));
}

#[test]
fn verified_pieces_are_served_from_memory_and_disk_damage_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(StoreConfig { piece_cache_bytes: 8 * PIECE, ..config(dir.path()) });
    let data = content(3 * PIECE, 9);

    // No content digest: nothing is kept at write time; the first read comes from disk and
    // finds damage there.
    let plain = spec(1, &data, false);
    store.create_task(plain.clone()).unwrap();
    let p0 = piece_of(&data, 0);
    store.write_piece(&plain.id, 0, &p0, None).unwrap();
    assert!(store.keep_piece(&plain.id, 0, p0).is_some(), "kept without a digest");
    corrupt(&store, &plain.id, 0);
    assert!(matches!(store.read_piece_shared(&plain.id, 0), Err(StoreError::CorruptPiece { .. })));
    // A piece read (and checked) once is served from memory afterwards.
    let p1 = piece_of(&data, 1);
    store.write_piece(&plain.id, 1, &p1, None).unwrap();
    let first = store.read_piece_shared(&plain.id, 1).unwrap();
    assert_eq!(first.data(), p1.data());
    corrupt(&store, &plain.id, 1);
    let cached = store.read_piece_shared(&plain.id, 1).unwrap();
    assert_eq!(cached.data(), p1.data(), "verified bytes, not the damaged disk copy");
    store.recycle_piece(first);
    store.recycle_piece(cached);

    // With a content digest, a piece just written is kept, and completion checks the bytes
    // as they were written (hashed in order on the way in), not the disk: damage there is
    // found when the piece is next read from disk, which drops it (and its cache entry).
    let with_digest = spec(2, &data, true);
    store.create_task(with_digest.clone()).unwrap();
    for p in 0..3 {
        let piece = piece_of(&data, p);
        store.write_piece(&with_digest.id, p, &piece, None).unwrap();
        assert!(store.keep_piece(&with_digest.id, p, piece).is_none());
    }
    corrupt(&store, &with_digest.id, 2);
    let served = store.read_piece_shared(&with_digest.id, 2).unwrap();
    assert_eq!(served.data(), piece_of(&data, 2).data());
    store.complete_task(&with_digest.id).unwrap();
    assert!(matches!(store.read_piece(&with_digest.id, 2), Err(StoreError::CorruptPiece { .. })));
    assert!(!store.task(&with_digest.id).unwrap().completed);
    assert!(matches!(store.read_piece_shared(&with_digest.id, 2), Err(StoreError::PieceNotFinished { .. })));
}

#[test]
fn a_piece_read_once_comes_from_memory_if_there_else_from_disk_checked_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(StoreConfig { piece_cache_bytes: 8 * PIECE, ..config(dir.path()) });
    let data = content(3 * PIECE, 5);
    let s = spec(3, &data, true);
    store.create_task(s.clone()).unwrap();
    for p in 0..3 {
        store.write_piece(&s.id, p, &piece_of(&data, p), None).unwrap();
    }
    // Piece 0 kept at write time: served from memory even with the disk copy damaged.
    assert!(store.keep_piece(&s.id, 0, piece_of(&data, 0)).is_none());
    corrupt(&store, &s.id, 0);
    assert_eq!(store.read_piece_once(&s.id, 0).unwrap().data(), piece_of(&data, 0).data());
    // Piece 1 from disk, twice: the first read did not cache it, so damage made since is found.
    let once = store.read_piece_once(&s.id, 1).unwrap();
    assert_eq!(once.data(), piece_of(&data, 1).data());
    store.recycle_piece(once);
    corrupt(&store, &s.id, 1);
    assert!(matches!(store.read_piece_once(&s.id, 1), Err(StoreError::CorruptPiece { piece: 1, .. })));
    assert!(matches!(store.read_piece_once(&s.id, 1), Err(StoreError::PieceNotFinished { piece: 1, .. })));
}

#[test]
fn a_completed_task_written_to_since_is_rechecked_before_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path()));
    let data = content(5 * PIECE + 9, 41);
    let id = store.create_task(spec(1, &data, true)).unwrap().id;
    write_all(&store, &id, &data);
    store.complete_task(&id).unwrap();
    assert_eq!(store.recheck_if_modified(&id).unwrap(), Vec::<u32>::new(), "unchanged: nothing to do");

    // An in-place edit (of an output hard-linked to the content, say) moves the mtime on.
    std::thread::sleep(std::time::Duration::from_millis(20));
    corrupt(&store, &id, 3);
    assert_eq!(store.recheck_if_modified(&id).unwrap(), vec![3]);
    let info = store.task(&id).unwrap();
    assert!(!info.completed, "a task missing a piece is not complete");
    store.write_piece(&id, 3, &piece_of(&data, 3), None).unwrap();
    store.complete_task(&id).unwrap();

    // Touched but the bytes are right: kept, and the new time recorded (no second check).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let path = store.task(&id).unwrap().content_path;
    OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&data[..4], 0).unwrap();
    assert_eq!(store.recheck_if_modified(&id).unwrap(), Vec::<u32>::new());
    assert!(store.task(&id).unwrap().completed);
    drop(store);
    let (store, _, _) = open(config(dir.path()));
    assert_eq!(store.recheck_if_modified(&id).unwrap(), Vec::<u32>::new());
    assert!(store.task(&id).unwrap().completed, "the recorded time survives a restart");
}

#[test]
fn completion_uses_the_hash_taken_as_pieces_were_written_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(StoreConfig { piece_cache_bytes: 2 * PIECE, ..config(dir.path()) });
    let data = content(7 * PIECE + 5, 17);
    let s = spec(1, &data, true);
    store.create_task(s.clone()).unwrap();
    // Out of order, more pieces ahead of the cursor than the cache holds: the cursor piece
    // catches up from the cache or the disk.
    for p in [3, 1, 6, 5, 0, 2, 7, 4] {
        let piece = piece_of(&data, p);
        store.write_piece(&s.id, p, &piece, None).unwrap();
        store.keep_piece(&s.id, p, piece);
    }
    store.complete_task(&s.id).unwrap();
    assert!(store.task(&s.id).unwrap().completed);

    // Pieces that match their own digests but not the content's: refused, every piece dropped.
    let wrong = spec(2, &data, false);
    let wrong = TaskSpec { content_digest: Some(Sha256Digest::of(b"other bytes")), ..wrong };
    store.create_task(wrong.clone()).unwrap();
    write_all(&store, &wrong.id, &data);
    assert!(matches!(store.complete_task(&wrong.id), Err(StoreError::ContentDigestMismatch(_))));
    assert_eq!(store.pieces(&wrong.id).unwrap().finished.count(), 0);

    // A piece dropped after it went into the running hash and fetched again (same digest):
    // completion still works.
    let again = spec(3, &data, true);
    store.create_task(again.clone()).unwrap();
    write_all(&store, &again.id, &data[..]);
    corrupt(&store, &again.id, 1);
    assert!(matches!(store.read_piece(&again.id, 1), Err(StoreError::CorruptPiece { .. })));
    store.write_piece(&again.id, 1, &piece_of(&data, 1), None).unwrap();
    store.complete_task(&again.id).unwrap();
}

#[test]
fn concurrent_writers_in_any_order_leave_no_piece_out_of_the_running_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(StoreConfig { piece_cache_bytes: 4 * PIECE, ..config(dir.path()) });
    let store = Arc::new(store);
    let data = Arc::new(content(96 * PIECE + 11, 23));
    for round in 0..4u8 {
        let s = spec(10 + round, &data, true);
        store.create_task(s.clone()).unwrap();
        let count = (data.len() as u64).div_ceil(PIECE) as u32;
        // Four writers, each a shuffled share of the pieces, all at once.
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let (store, data, id) = (store.clone(), data.clone(), s.id);
                std::thread::spawn(move || {
                    let mut mine: Vec<u32> = (0..count).filter(|p| p % 4 == t).collect();
                    let mut x = u64::from(t) * 7919 + u64::from(round) + 1;
                    for i in (1..mine.len()).rev() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        mine.swap(i, (x % (i as u64 + 1)) as usize);
                    }
                    for p in mine {
                        let piece = piece_of(&data, p);
                        store.write_piece(&id, p, &piece, None).unwrap();
                        store.keep_piece(&id, p, piece);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.running_hash_pieces(&s.id), count, "round {round}: a finished piece was left out");
        store.complete_task(&s.id).unwrap();
        store.remove_task(&s.id).unwrap();
    }
}

#[test]
fn direct_io_of_aligned_pieces_reads_back_verifies_and_survives_a_restart() {
    // Pieces of 16 KiB, a multiple of the O_DIRECT block, so aligned spans bypass the page
    // cache (where the filesystem has O_DIRECT; elsewhere the same test covers the fallback).
    const BIG: u64 = 16 << 10;
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig { quota_bytes: 1 << 24, ..config(dir.path()) };
    let (store, _, _) = open(cfg.clone());
    let data = content(5 * BIG + 1234, 9);
    let s = TaskSpec { piece_bytes: BIG, ..spec(9, &data, true) };
    let id = store.create_task(s).unwrap().id;
    let piece = |p: u32| {
        let start = (p as u64 * BIG) as usize;
        VerifiedPiece::new(data[start..(start + BIG as usize).min(data.len())].to_vec())
    };
    for p in [5, 2, 0, 4, 1, 3] {
        store.write_piece(&id, p, &piece(p), None).unwrap();
    }
    store.complete_task(&id).unwrap();
    assert!(fs::read(store.task(&id).unwrap().content_path).unwrap() == data, "content differs");
    // A byte flipped on disk behind the store (through the page cache) is seen by the next read.
    let path = store.task(&id).unwrap().content_path;
    let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, 2 * BIG + 5).unwrap();
    file.write_all_at(&[byte[0] ^ 1], 2 * BIG + 5).unwrap();
    assert!(matches!(store.read_piece(&id, 2), Err(StoreError::CorruptPiece { piece: 2, .. })));
    store.write_piece(&id, 2, &piece(2), None).unwrap();
    drop(store);
    let (store, _, _) = open(cfg);
    for p in 0..6 {
        assert_eq!(store.read_piece(&id, p).unwrap(), piece(p));
    }
}
