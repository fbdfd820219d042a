//! Recently verified pieces kept in memory, so that a piece sent to many children (a seed
//! fanning out, or a peer passing on what it just received) is not read and re-hashed from
//! disk for each of them.
//!
//! What goes in: pieces read back from disk and re-hashed (`Store::read_piece_shared`), and
//! pieces this process has just received, verified and written (`Store::keep_piece`), the
//! latter only for tasks with a content digest, whose whole content `complete_task` checks
//! (over the bytes as written). A piece damaged on disk is found when it is next read from
//! disk (the upload re-check), and an entry is only handed out for the digest the store
//! records for that piece now: serving from here never sends bytes other than verified
//! ones. Disk corruption that happens while a piece is cached goes
//! unnoticed until the piece leaves the cache and is read (and re-hashed) again, which is
//! when disk bytes would be sent.

use super::{BufferPool, PieceBuf, PieceDigest, VerifiedPiece};
use crate::task_id::TaskId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Verified piece bytes, shared between the cache and the uploads sending them.
#[derive(Clone)]
pub struct SharedPiece {
    data: Arc<PieceBuf>,
    digest: PieceDigest,
}

impl SharedPiece {
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn digest(&self) -> &PieceDigest {
        &self.digest
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The buffer back, when nothing else holds it.
    fn into_buffer(self) -> Option<PieceBuf> {
        Arc::try_unwrap(self.data).ok()
    }
}

impl From<VerifiedPiece> for SharedPiece {
    fn from(piece: VerifiedPiece) -> SharedPiece {
        let digest = *piece.digest();
        SharedPiece { data: Arc::new(piece.into_data()), digest }
    }
}

impl std::fmt::Debug for SharedPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPiece").field("len", &self.data.len()).field("digest", &self.digest).finish()
    }
}

type Key = (TaskId, u32);

/// Least recently used pieces up to `max_bytes` (0: nothing is kept).
pub(super) struct PieceCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    /// Where the buffers of evicted pieces go (once no upload holds them).
    spares: Arc<BufferPool>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, (SharedPiece, u64)>,
    /// Use stamp -> key; the smallest stamp is the least recently used.
    order: BTreeMap<u64, Key>,
    next_stamp: u64,
    bytes: u64,
}

impl Inner {
    fn remove(&mut self, key: &Key) -> Option<SharedPiece> {
        let (piece, stamp) = self.entries.remove(key)?;
        self.order.remove(&stamp);
        self.bytes -= piece.len() as u64;
        Some(piece)
    }
}

impl PieceCache {
    pub(super) fn new(max_bytes: u64, spares: Arc<BufferPool>) -> PieceCache {
        PieceCache { max_bytes, inner: Mutex::new(Inner::default()), spares }
    }

    pub(super) fn spares(&self) -> &Arc<BufferPool> {
        &self.spares
    }

    fn keep_spare(&self, piece: SharedPiece) {
        if let Some(buf) = piece.into_buffer() {
            self.spares.give(buf);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached piece if it has digest `digest` (marking it used).
    pub(super) fn get(&self, task: &TaskId, piece: u32, digest: &PieceDigest) -> Option<SharedPiece> {
        if self.max_bytes == 0 {
            return None;
        }
        let mut inner = self.lock();
        let key = (*task, piece);
        let stamp = inner.next_stamp;
        let (cached, old_stamp) = inner.entries.get_mut(&key)?;
        if cached.digest != *digest {
            inner.remove(&key);
            return None;
        }
        let (hit, old) = (cached.clone(), std::mem::replace(old_stamp, stamp));
        inner.order.remove(&old);
        inner.order.insert(stamp, key);
        inner.next_stamp += 1;
        Some(hit)
    }

    /// Keeps `piece`, evicting the least recently used pieces to stay within the budget.
    pub(super) fn insert(&self, task: &TaskId, index: u32, piece: SharedPiece) {
        let len = piece.len() as u64;
        if len > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        let key = (*task, index);
        if let Some(old) = inner.remove(&key) {
            self.keep_spare(old);
        }
        while inner.bytes + len > self.max_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= evicted.len() as u64;
                self.keep_spare(evicted);
            }
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.order.insert(stamp, key);
        inner.entries.insert(key, (piece, stamp));
        inner.bytes += len;
    }

    pub(super) fn remove(&self, task: &TaskId, piece: u32) {
        if self.max_bytes > 0 {
            self.lock().remove(&(*task, piece));
        }
    }

    pub(super) fn remove_task(&self, task: &TaskId) {
        if self.max_bytes == 0 {
            return;
        }
        let mut inner = self.lock();
        let keys: Vec<Key> = inner.entries.keys().filter(|k| k.0 == *task).copied().collect();
        for key in keys {
            inner.remove(&key);
        }
    }

    /// A buffer for a disk read: a spare one (stale contents) or a new empty one.
    pub(super) fn take_buffer(&self) -> PieceBuf {
        self.spares.take()
    }

    /// A piece an upload has finished with: its buffer becomes a spare if nothing else
    /// (the cache, another upload) holds it.
    pub(super) fn recycle(&self, piece: SharedPiece) {
        if Arc::strong_count(&piece.data) == 1 {
            self.keep_spare(piece);
        }
    }

    #[cfg(test)]
    pub(super) fn cached_bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(byte: u8, len: usize) -> SharedPiece {
        SharedPiece::from(VerifiedPiece::new(vec![byte; len]))
    }

    #[test]
    fn least_recently_used_goes_first_and_the_budget_holds() {
        let cache = PieceCache::new(300, Default::default());
        let task = TaskId::from_bytes([1; 32]);
        let (a, b, c) = (piece(1, 100), piece(2, 100), piece(3, 100));
        cache.insert(&task, 0, a.clone());
        cache.insert(&task, 1, b.clone());
        cache.insert(&task, 2, c.clone());
        assert!(cache.get(&task, 0, a.digest()).is_some()); // 0 is now the most recent
        cache.insert(&task, 3, piece(4, 100));
        assert_eq!(cache.cached_bytes(), 300);
        assert!(cache.get(&task, 1, b.digest()).is_none(), "1 was least recently used");
        assert!(cache.get(&task, 0, a.digest()).is_some());
        assert!(cache.get(&task, 2, c.digest()).is_some());
        // Bigger than the whole budget: not kept.
        cache.insert(&task, 9, piece(9, 301));
        assert!(cache.get(&task, 9, piece(9, 301).digest()).is_none());
    }

    #[test]
    fn a_piece_is_only_handed_out_for_its_own_digest() {
        let cache = PieceCache::new(1000, Default::default());
        let task = TaskId::from_bytes([2; 32]);
        let a = piece(1, 10);
        cache.insert(&task, 0, a.clone());
        let other = piece(2, 10);
        assert!(cache.get(&task, 0, other.digest()).is_none());
        // The mismatching entry is gone, even for its own digest now.
        assert!(cache.get(&task, 0, a.digest()).is_none());
        assert_eq!(cache.cached_bytes(), 0);
        let hit = {
            cache.insert(&task, 0, a.clone());
            cache.get(&task, 0, a.digest()).unwrap()
        };
        assert_eq!(hit.data(), a.data());
        assert!(cache.get(&TaskId::from_bytes([3; 32]), 0, a.digest()).is_none());
    }

    #[test]
    fn removal_disabled_cache_and_spare_buffers() {
        let off = PieceCache::new(0, Default::default());
        let task = TaskId::from_bytes([4; 32]);
        let a = piece(1, 10);
        off.insert(&task, 0, a.clone());
        assert!(off.get(&task, 0, a.digest()).is_none());

        let cache = PieceCache::new(20, Default::default());
        cache.insert(&task, 0, piece(1, 10));
        cache.insert(&task, 1, piece(2, 10));
        cache.remove_task(&task);
        assert_eq!(cache.cached_bytes(), 0);
        // Removed entries nobody else held are not spares (only evictions and recycling
        // keep buffers), so this comes back empty.
        assert!(cache.take_buffer().is_empty());
        cache.insert(&task, 0, piece(1, 10));
        cache.insert(&task, 1, piece(2, 10));
        cache.insert(&task, 2, piece(3, 10)); // evicts piece 0, whose buffer is free
        assert_eq!(cache.take_buffer().len(), 10);
        let held = piece(5, 10);
        cache.recycle(held.clone()); // still held here: not a spare
        assert!(cache.take_buffer().is_empty());
        cache.recycle(held);
        assert_eq!(cache.take_buffer().len(), 10);
        cache.remove(&task, 1);
        assert_eq!(cache.cached_bytes(), 10);
    }
}
