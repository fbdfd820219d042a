//! Piece writes, verified reads, and task completion.

use super::{
    direct, lock, persist, PieceBuf, PieceDigest, RunningHash, Sha256Digest, SharedPiece, Store, StoreError, TaskEntry,
    TaskState, VerifiedPiece,
};
use crate::task_id::TaskId;
use sha2::{Digest as _, Sha256};
use std::sync::atomic::Ordering;

/// How a piece is read from disk: through the page cache (read again soon, by the next
/// child) or around it where the task has `O_DIRECT` (read once).
#[derive(Debug, Clone, Copy)]
enum Via {
    PageCache,
    Direct,
}

/// The outcome of a piece write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceWrite {
    /// False when the piece was already finished (nothing was written).
    pub newly_finished: bool,
    pub finished_pieces: u32,
    /// Every piece is finished: time for `complete_task`.
    pub all_finished: bool,
}

/// Bytes hashed per read while checking a whole content file.
const CHECK_CHUNK_BYTES: usize = 4 << 20;

impl Store {
    /// Writes a piece whose digest the caller computed (`VerifiedPiece`). `expected`, when
    /// given, is the digest the piece must have (advertised by the parent, or recorded
    /// earlier); a digest recorded for the piece before must match too.
    pub fn write_piece(
        &self,
        id: &TaskId,
        piece: u32,
        data: &VerifiedPiece,
        expected: Option<&PieceDigest>,
    ) -> Result<PieceWrite, StoreError> {
        let pin = self.pin(id)?;
        let entry = &pin.entry;
        let (offset, len) = {
            let state = lock(&entry.state);
            let m = &state.meta;
            check_piece_index(entry.id, piece, m.piece_count())?;
            let len = m.piece_len(piece);
            if data.len() as u64 != len {
                return Err(StoreError::WrongPieceLength {
                    task: *id,
                    piece,
                    expected: len,
                    actual: data.len() as u64,
                });
            }
            let recorded = m.piece_digests[piece as usize];
            for want in [expected.copied(), recorded].into_iter().flatten() {
                if want != *data.digest() {
                    return Err(StoreError::PieceDigestMismatch {
                        task: *id,
                        piece,
                        expected: want,
                        actual: *data.digest(),
                    });
                }
            }
            if m.finished.contains(piece) {
                return Ok(write_outcome(&state, false));
            }
            (piece as u64 * m.piece_bytes, len)
        };
        self.reserve(id, len)?;
        if let Err(source) = self.bounce.write_at(entry.direct(), &entry.file, data.data(), offset) {
            self.used_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(StoreError::Io {
                task: Some(*id),
                path: entry.content_path.clone(),
                op: "write piece to",
                source,
            });
        }
        let mut state = lock(&entry.state);
        if state.removed {
            // Removed meanwhile (only a pin keeps a task): its bytes were never counted.
            self.used_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(StoreError::TaskNotFound { task: *id });
        }
        if state.meta.finished.contains(piece) {
            // A concurrent write of the same piece won.
            self.used_bytes.fetch_sub(len, Ordering::AcqRel);
            return Ok(write_outcome(&state, false));
        }
        state.meta.finished.insert(piece);
        state.meta.piece_digests[piece as usize] = Some(*data.digest());
        state.meta.last_access_unix_ms = self.clock.now_unix_ms();
        state.unsynced_pieces += 1;
        state.version += 1;
        let outcome = write_outcome(&state, true);
        let has_digest = state.meta.content_digest.is_some();
        // The piece is usable from here on, whether or not the metadata write below works
        // (if it fails, the piece stays unsynced and `flush` tries again).
        entry.changes.send_replace(state.version);
        if outcome.all_finished || state.unsynced_pieces >= self.config.meta_flush_pieces {
            persist(entry, &mut state)?;
        }
        drop(state);
        if has_digest {
            self.advance_running_hash(entry, piece, data.data());
        }
        Ok(outcome)
    }

    /// Feeds the running whole-content hash every finished piece from where it stands:
    /// `piece` from the bytes just written, others from the piece cache, else from disk
    /// (read, not re-checked: a wrong byte there only makes `complete_task` fall back to
    /// hashing the file). Every writer calls this after marking its piece finished. It
    /// never waits for the hash: when another writer holds it, that one goes on; a holder
    /// that stops, after letting go, looks once more whether the piece at its cursor has
    /// been finished meanwhile (by a writer that found the hash taken) and, if so, takes
    /// the hash again. So no finished piece is left out, and no writer's thread (and its
    /// report to the download) waits behind a long catch-up.
    fn advance_running_hash(&self, entry: &TaskEntry, piece: u32, bytes: &[u8]) {
        let mut own = Some((piece, bytes));
        loop {
            let mut run = match entry.running.try_lock() {
                Ok(run) => run,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            let read_failed = !self.feed_running_hash(entry, &mut run, own.take());
            let next = run.next;
            drop(run);
            if read_failed || !lock(&entry.state).meta.finished.contains(next) {
                return;
            }
        }
    }

    /// Hashes finished pieces from the cursor on; false when a disk read failed (the cursor
    /// stays there; completion hashes the rest from disk and reports the error).
    fn feed_running_hash(&self, entry: &TaskEntry, run: &mut RunningHash, own: Option<(u32, &[u8])>) -> bool {
        loop {
            let next = run.next;
            let (offset, len, digest) = {
                let state = lock(&entry.state);
                let m = &state.meta;
                match m.piece_digests.get(next as usize) {
                    Some(Some(d)) if m.finished.contains(next) => (next as u64 * m.piece_bytes, m.piece_len(next), *d),
                    _ => break,
                }
            };
            if let Some((_, bytes)) = own.filter(|&(p, _)| p == next) {
                run.hasher.update(bytes);
            } else if let Some(hit) = self.cache.get(&entry.id, next, &digest) {
                run.hasher.update(hit.data());
            } else {
                let hasher = &mut run.hasher;
                let read = self
                    .bounce
                    .read_at(entry.direct(), &entry.file, offset, len as usize, |bytes| hasher.update(bytes));
                if read.is_err() {
                    return false;
                }
            }
            run.next += 1;
        }
        true
    }

    /// Pieces the running hash covers (tests: completion then reads nothing back).
    #[cfg(test)]
    pub(super) fn running_hash_pieces(&self, id: &TaskId) -> u32 {
        self.pin(id).map(|pin| lock(&pin.entry.running).next).unwrap_or(0)
    }

    /// The content's sha256: the running hash when it covers every piece, else that hash
    /// continued over the rest of the file.
    fn content_digest_now(&self, entry: &TaskEntry) -> Result<Sha256Digest, StoreError> {
        let (piece_count, piece_bytes) = {
            let state = lock(&entry.state);
            (state.meta.piece_count(), state.meta.piece_bytes)
        };
        let (next, hasher) = {
            let run = lock(&entry.running);
            (run.next.min(piece_count), run.hasher.clone())
        };
        if next == piece_count {
            return Ok(Sha256Digest::from_bytes(hasher.finalize().into()));
        }
        self.hash_content(entry, next as u64 * piece_bytes, hasher)
    }

    fn reserve(&self, id: &TaskId, len: u64) -> Result<(), StoreError> {
        let quota = self.config.quota_bytes;
        self.used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(len).filter(|&u| u <= quota))
            .map(|_| ())
            .map_err(|used| StoreError::QuotaExceeded {
                task: *id,
                needed_bytes: len,
                used_bytes: used,
                quota_bytes: quota,
            })
    }

    /// Reads a finished piece and re-hashes it. A piece that no longer matches its digest is
    /// dropped from the finished pieces and reported as `CorruptPiece`; its bytes are not
    /// returned. A one-off read (a check): around the page cache.
    pub fn read_piece(&self, id: &TaskId, piece: u32) -> Result<VerifiedPiece, StoreError> {
        self.read_piece_into(id, piece, PieceBuf::new(), Via::Direct)
    }

    /// A finished piece for uploading to children: from the cache of verified pieces when
    /// it holds the piece with the digest recorded now, else read and re-hashed like
    /// `read_piece` (and then cached), through the page cache: a parent is asked for the
    /// same piece by child after child, and a seed's content is far larger than the piece
    /// cache, so the kernel's copy is the one read next. Give it back with `recycle_piece`
    /// once sent.
    pub fn read_piece_shared(&self, id: &TaskId, piece: u32) -> Result<SharedPiece, StoreError> {
        let recorded = self.recorded_digest(id, piece)?;
        if let Some(hit) = self.cache.get(id, piece, &recorded) {
            return Ok(hit);
        }
        let read = SharedPiece::from(self.read_piece_into(id, piece, self.cache.take_buffer(), Via::PageCache)?);
        self.cache.insert(id, piece, read.clone());
        Ok(read)
    }

    /// A finished piece for a local reader going through the content once (a mirror
    /// client): from the cache of verified pieces when it is there, else read and re-hashed
    /// around the page cache and not cached. Such a reader is behind the download (else the
    /// piece would still be cached): a page-cache copy would be read by nobody, and making
    /// it cost 40 times the CPU of the direct read on the CI's machines (`direct.rs`), while
    /// caching the piece would evict one the reader wants next. Give it back with
    /// `recycle_piece` once sent.
    pub fn read_piece_once(&self, id: &TaskId, piece: u32) -> Result<SharedPiece, StoreError> {
        let recorded = self.recorded_digest(id, piece)?;
        if let Some(hit) = self.cache.get(id, piece, &recorded) {
            return Ok(hit);
        }
        Ok(SharedPiece::from(self.read_piece_into(id, piece, self.cache.take_buffer(), Via::Direct)?))
    }

    fn recorded_digest(&self, id: &TaskId, piece: u32) -> Result<PieceDigest, StoreError> {
        let pin = self.pin(id)?;
        let state = lock(&pin.entry.state);
        let m = &state.meta;
        check_piece_index(pin.entry.id, piece, m.piece_count())?;
        match m.piece_digests[piece as usize] {
            Some(d) if m.finished.contains(piece) => Ok(d),
            _ => Err(StoreError::PieceNotFinished { task: *id, piece }),
        }
    }

    /// Keeps a piece this process has just verified and written (`write_piece`) in the
    /// cache of verified pieces, so children asking for it soon get these bytes without a
    /// disk read and another hash. Only for tasks with a known content digest, where
    /// `complete_task` checks the whole content (a piece damaged on disk after it was
    /// written is found when it is read from disk again, and dropped); pieces of other
    /// tasks enter the cache only through `read_piece_shared`, checked from disk. Returns the
    /// piece when it was not kept (the caller may reuse its buffer).
    pub fn keep_piece(&self, id: &TaskId, piece: u32, data: VerifiedPiece) -> Option<VerifiedPiece> {
        if self.config.piece_cache_bytes == 0 {
            return Some(data);
        }
        let Ok(pin) = self.pin(id) else {
            return Some(data);
        };
        let keep = {
            let state = lock(&pin.entry.state);
            let m = &state.meta;
            m.content_digest.is_some()
                && piece < m.piece_count()
                && m.finished.contains(piece)
                && m.piece_digests[piece as usize] == Some(*data.digest())
        };
        if !keep {
            return Some(data);
        }
        self.cache.insert(id, piece, SharedPiece::from(data));
        None
    }

    /// A piece from `read_piece_shared` that has been sent: its buffer is reused for later
    /// reads when nothing else holds it.
    pub fn recycle_piece(&self, piece: SharedPiece) {
        self.cache.recycle(piece);
    }

    /// `read_piece` into a reused buffer (a server recycles its send buffers: no allocation,
    /// page faults or zeroing per piece).
    fn read_piece_into(
        &self,
        id: &TaskId,
        piece: u32,
        mut buf: PieceBuf,
        via: Via,
    ) -> Result<VerifiedPiece, StoreError> {
        let pin = self.pin(id)?;
        let entry = &pin.entry;
        let (offset, len, digest) = {
            let mut state = lock(&entry.state);
            let m = &state.meta;
            check_piece_index(entry.id, piece, m.piece_count())?;
            let digest = match m.piece_digests[piece as usize] {
                Some(d) if m.finished.contains(piece) => d,
                _ => return Err(StoreError::PieceNotFinished { task: *id, piece }),
            };
            let at = (piece as u64 * m.piece_bytes, m.piece_len(piece), digest);
            state.meta.last_access_unix_ms = self.clock.now_unix_ms();
            state.dirty = true;
            at
        };
        // Straight into the buffer (block-aligned, so a direct read needs no bounce copy).
        buf.resize_for_overwrite(len as usize);
        let around_page_cache = match via {
            Via::Direct => entry.direct(),
            Via::PageCache => None,
        };
        let read = direct::read_into(around_page_cache, &entry.file, offset, &mut buf);
        let problem = match read {
            Ok(()) => match VerifiedPiece::check(buf, &digest) {
                Ok(verified) => return Ok(verified),
                Err(actual) => format!("digest {actual}, expected {digest}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => "content file is shorter than the piece".into(),
            Err(source) => {
                return Err(StoreError::Io {
                    task: Some(*id),
                    path: entry.content_path.clone(),
                    op: "read piece from",
                    source,
                })
            }
        };
        self.drop_piece(entry, piece, &digest);
        Err(StoreError::CorruptPiece { task: *id, piece, path: entry.content_path.clone(), reason: problem })
    }

    /// Removes a piece found corrupt from the finished pieces, if it is still the piece that
    /// was checked (same digest), and records that at once.
    fn drop_piece(&self, entry: &TaskEntry, piece: u32, checked: &PieceDigest) {
        let mut state = lock(&entry.state);
        if state.removed
            || !state.meta.finished.contains(piece)
            || state.meta.piece_digests[piece as usize] != Some(*checked)
        {
            return;
        }
        drop_piece_locked(self, entry, &mut state, piece);
        // Best effort: if this write fails, `flush` retries (the piece stays unsynced).
        let _ = persist(entry, &mut state);
    }

    /// Marks the task complete once every piece is finished, every piece not re-hashed since
    /// the store was opened checks out, and the content matches the task's digest (if known):
    /// the hash taken as pieces were written, continued from disk over any pieces it has not
    /// covered (those from before a restart), and the whole file hashed again before a
    /// mismatch is believed. Run it on a blocking thread.
    pub fn complete_task(&self, id: &TaskId) -> Result<(), StoreError> {
        let pin = self.pin(id)?;
        let entry = &pin.entry;
        let (version, content_digest, to_check) = {
            let state = lock(&entry.state);
            let m = &state.meta;
            if m.completed {
                return Ok(());
            }
            if !m.finished.is_full() {
                let piece_count = m.piece_count();
                return Err(StoreError::Incomplete {
                    task: *id,
                    missing: piece_count - m.finished.count(),
                    piece_count,
                });
            }
            (state.version, m.content_digest, state.unverified.clone())
        };
        if self.config.sync_on_complete {
            entry.file.sync_data().map_err(|source| StoreError::Io {
                task: Some(*id),
                path: entry.content_path.clone(),
                op: "fsync content file",
                source,
            })?;
        }
        match content_digest {
            Some(expected) => {
                let mut actual = self.content_digest_now(entry)?;
                if actual != expected {
                    // The running hash may hold bytes since dropped and fetched again, or
                    // a disk read that failed: only the file itself decides.
                    *lock(&entry.running) = RunningHash::new();
                    actual = self.hash_content(entry, 0, Sha256::new())?;
                }
                if actual != expected {
                    let all = sched::core::PieceSet::full(to_check.len());
                    let mut dropped_pieces = self.recheck_pieces(entry, &all)?;
                    if dropped_pieces.is_empty() {
                        // Every piece matches its recorded digest, so the recorded digests
                        // are wrong (a parent advertised digests of other bytes): start over.
                        dropped_pieces = self.reset_pieces(entry);
                    }
                    return Err(StoreError::ContentDigestMismatch(Box::new(super::ContentDigestMismatch {
                        task: *id,
                        path: entry.content_path.clone(),
                        expected,
                        actual,
                        dropped_pieces,
                    })));
                }
            }
            None => {
                let dropped = self.recheck_pieces(entry, &to_check)?;
                if let Some(&piece) = dropped.first() {
                    return Err(StoreError::CorruptPiece {
                        task: *id,
                        piece,
                        path: entry.content_path.clone(),
                        reason: format!("found on the completion check, with pieces {dropped:?}"),
                    });
                }
            }
        }
        let mut state = lock(&entry.state);
        if state.removed {
            return Err(StoreError::TaskNotFound { task: *id });
        }
        if state.version != version && !state.meta.finished.is_full() {
            let piece_count = state.meta.piece_count();
            let missing = piece_count - state.meta.finished.count();
            return Err(StoreError::Incomplete { task: *id, missing, piece_count });
        }
        state.meta.completed = true;
        state.meta.content_mtime_ns = mtime_ns(&entry.file);
        state.unverified = sched::core::PieceSet::new(state.meta.piece_count());
        state.version += 1;
        persist(entry, &mut state)?;
        entry.changes.send_replace(state.version);
        Ok(())
    }

    /// For a completed task whose content file was written to since it completed (its
    /// modification time differs from the one recorded then: an output dfget hard-linked to
    /// it and a user edited, say): re-hashes every piece and drops those that fail, so the
    /// task is no longer complete and a download fetches them again. Returns the dropped
    /// pieces (none when the file is unchanged, or changed and still right, whose new time
    /// is then recorded). Reads the whole content when the time changed: a blocking thread.
    pub fn recheck_if_modified(&self, id: &TaskId) -> Result<Vec<u32>, StoreError> {
        let pin = self.pin(id)?;
        let entry = &pin.entry;
        let all = {
            let state = lock(&entry.state);
            if !state.meta.completed {
                return Ok(Vec::new());
            }
            let now = mtime_ns(&entry.file);
            if now.is_some() && now == state.meta.content_mtime_ns {
                return Ok(Vec::new());
            }
            sched::core::PieceSet::full(state.meta.piece_count())
        };
        let dropped = self.recheck_pieces(entry, &all)?;
        if dropped.is_empty() {
            let mut state = lock(&entry.state);
            state.meta.content_mtime_ns = mtime_ns(&entry.file);
            persist(entry, &mut state)?;
        }
        Ok(dropped)
    }

    /// `hasher` continued over the content file from `offset` to its end.
    fn hash_content(&self, entry: &TaskEntry, mut offset: u64, mut hasher: Sha256) -> Result<Sha256Digest, StoreError> {
        let content_bytes = lock(&entry.state).meta.content_bytes;
        while offset < content_bytes {
            let n = (content_bytes - offset).min(CHECK_CHUNK_BYTES as u64) as usize;
            self.bounce.read_at(entry.direct(), &entry.file, offset, n, |bytes| hasher.update(bytes)).map_err(
                |source| StoreError::Io {
                    task: Some(entry.id),
                    path: entry.content_path.clone(),
                    op: "read content for the digest check of",
                    source,
                },
            )?;
            offset += n as u64;
        }
        Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
    }

    /// Drops every piece of the task and forgets every recorded piece digest, so the next
    /// download fetches it afresh: for when a source's bytes for a piece disagree with the
    /// digest recorded here (the origin's content changed since, or the metadata file was
    /// altered), which otherwise refuses that piece from everywhere forever. Returns the
    /// pieces dropped.
    pub fn reset_task(&self, id: &TaskId) -> Result<Vec<u32>, StoreError> {
        let pin = self.pin(id)?;
        Ok(self.reset_pieces(&pin.entry))
    }

    /// Drops every piece and forgets every recorded piece digest; returns the dropped pieces.
    fn reset_pieces(&self, entry: &TaskEntry) -> Vec<u32> {
        let mut state = lock(&entry.state);
        let dropped: Vec<u32> = state.meta.finished.iter().collect();
        for &piece in &dropped {
            drop_piece_locked(self, entry, &mut state, piece);
        }
        state.meta.piece_digests.iter_mut().for_each(|d| *d = None);
        let _ = persist(entry, &mut state);
        drop(state);
        *lock(&entry.running) = RunningHash::new();
        dropped
    }

    /// Re-hashes the given finished pieces; drops and returns those that fail.
    fn recheck_pieces(&self, entry: &TaskEntry, pieces: &sched::core::PieceSet) -> Result<Vec<u32>, StoreError> {
        let mut dropped = Vec::new();
        for piece in pieces.iter() {
            match self.read_piece(&entry.id, piece) {
                Ok(_) => {}
                Err(StoreError::CorruptPiece { .. }) => dropped.push(piece),
                Err(StoreError::PieceNotFinished { .. }) => {}
                Err(e) => return Err(e),
            }
            lock(&entry.state).unverified.remove(piece);
        }
        Ok(dropped)
    }
}

pub(super) fn drop_piece_locked(store: &Store, entry: &TaskEntry, state: &mut TaskState, piece: u32) {
    let len = state.meta.piece_len(piece);
    store.cache.remove(&entry.id, piece);
    state.meta.finished.remove(piece);
    state.meta.completed = false;
    state.unverified.remove(piece);
    state.version += 1;
    state.unsynced_pieces += 1;
    store.used_bytes.fetch_sub(len, Ordering::AcqRel);
    entry.changes.send_replace(state.version);
}

fn check_piece_index(task: TaskId, piece: u32, piece_count: u32) -> Result<(), StoreError> {
    if piece >= piece_count {
        return Err(StoreError::NoSuchPiece { task, piece, piece_count });
    }
    Ok(())
}

fn write_outcome(state: &TaskState, newly_finished: bool) -> PieceWrite {
    PieceWrite {
        newly_finished,
        finished_pieces: state.meta.finished.count(),
        all_finished: state.meta.finished.is_full(),
    }
}

/// A file's modification time in ns since the epoch (None where the filesystem has none).
fn mtime_ns(file: &std::fs::File) -> Option<u64> {
    let modified = file.metadata().ok()?.modified().ok()?;
    Some(modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64)
}
