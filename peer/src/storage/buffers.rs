//! Piece buffers: `PieceBuf`, the block-aligned memory every piece lives in, and the pool
//! that reuses them.
//!
//! Alignment: a piece buffer starts on a 4096-byte boundary and its capacity is whole
//! blocks, so the store reads a piece from disk straight into it and writes it straight
//! from it with `O_DIRECT` (`direct.rs`). An ordinary `Vec` would have to pass through an
//! aligned bounce buffer both ways: a memory copy of every byte read or written, which was
//! a third of a parent's CPU while it served a mirror pull.
//!
//! Reuse: everything that fills a piece buffer takes it from the pool, the data-plane
//! client receiving a piece and the store reading one back from disk. A piece the download
//! keeps in the piece cache takes its receive buffer with it; when the cache evicts the
//! piece (and no upload still holds it) the buffer comes back here and receives a later
//! piece. Without that round trip every received piece lands in fresh memory, and on the
//! CI's virtual machines the page faults of fresh memory cost a peer pulling through its
//! mirror about as much CPU as its socket reads (15 % of its time in a perf profile).

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Mutex;

/// Alignment of a piece buffer's start and capacity: what `O_DIRECT` needs of offsets,
/// lengths and addresses on 512- and 4096-byte devices.
pub(crate) const BLOCK: usize = 4096;

/// Bytes of one piece in block-aligned memory. Every byte up to the capacity is
/// initialised (zeroed when allocated), so a reused buffer's stale bytes can be lent out
/// for a read to overwrite.
pub struct PieceBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// The buffer owns its allocation; nothing else points into it.
unsafe impl Send for PieceBuf {}
unsafe impl Sync for PieceBuf {}

impl PieceBuf {
    pub fn new() -> PieceBuf {
        PieceBuf { ptr: NonNull::dangling(), cap: 0, len: 0 }
    }

    fn layout(cap: usize) -> Layout {
        Layout::from_size_align(cap, BLOCK).expect("piece sizes are far below isize::MAX")
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Makes the buffer `len` bytes long with room for them rounded up to whole blocks,
    /// keeping the old bytes only when no new memory was needed (callers overwrite them).
    pub fn resize_for_overwrite(&mut self, len: usize) {
        let need = len.next_multiple_of(BLOCK);
        if need > self.cap {
            *self = PieceBuf::new();
            // SAFETY: `need` is non-zero (a larger multiple of BLOCK than `cap >= 0`).
            let raw = unsafe { alloc::alloc_zeroed(PieceBuf::layout(need)) };
            self.ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(PieceBuf::layout(need)));
            self.cap = need;
        }
        self.len = len;
    }

    /// The bytes up to the end of the block holding the last one (for a direct read,
    /// which transfers whole blocks; `resize_for_overwrite` made room for them).
    pub(crate) fn blocks_mut(&mut self) -> &mut [u8] {
        let blocks = self.len.next_multiple_of(BLOCK).min(self.cap);
        // SAFETY: `ptr` is valid for `cap` initialised bytes that only `self` owns.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), blocks) }
    }
}

impl Default for PieceBuf {
    fn default() -> Self {
        PieceBuf::new()
    }
}

impl Drop for PieceBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `resize_for_overwrite` with this very layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), PieceBuf::layout(self.cap)) }
        }
    }
}

impl std::ops::Deref for PieceBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is valid (or dangling with `len` 0) for `len <= cap` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PieceBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl From<&[u8]> for PieceBuf {
    fn from(bytes: &[u8]) -> PieceBuf {
        let mut buf = PieceBuf::new();
        buf.resize_for_overwrite(bytes.len());
        buf.copy_from_slice(bytes);
        buf
    }
}

/// A copy (a piece that arrived in ordinary memory: from the origin, or a test).
impl From<Vec<u8>> for PieceBuf {
    fn from(bytes: Vec<u8>) -> PieceBuf {
        PieceBuf::from(&bytes[..])
    }
}

impl Clone for PieceBuf {
    fn clone(&self) -> PieceBuf {
        PieceBuf::from(&self[..])
    }
}

impl PartialEq for PieceBuf {
    fn eq(&self, other: &PieceBuf) -> bool {
        self[..] == other[..]
    }
}
impl Eq for PieceBuf {}

impl std::fmt::Debug for PieceBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceBuf").field("len", &self.len).field("cap", &self.cap).finish()
    }
}

/// At most this many idle buffers are kept...
const MAX_BUFFERS: usize = 16;
/// ...holding at most this many bytes in all (pieces may be up to 64 MiB).
const MAX_BYTES: usize = 128 << 20;

pub struct BufferPool {
    buffers: Mutex<Vec<PieceBuf>>,
    max_buffers: usize,
    max_bytes: usize,
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(MAX_BUFFERS, MAX_BYTES)
    }
}

impl BufferPool {
    pub fn new(max_buffers: usize, max_bytes: usize) -> BufferPool {
        BufferPool { buffers: Mutex::new(Vec::new()), max_buffers, max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PieceBuf>> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer with stale contents, or a new empty one (callers overwrite it: zeroing it
    /// here would cost what the pool saves).
    pub fn take(&self) -> PieceBuf {
        self.lock().pop().unwrap_or_default()
    }

    /// A buffer of `len` bytes (stale contents): the first idle one with room for them, else
    /// a new one.
    pub fn take_for(&self, len: usize) -> PieceBuf {
        let mut buffers = self.lock();
        let mut buf = match buffers.iter().position(|b| b.capacity() >= len) {
            Some(i) => buffers.swap_remove(i),
            None => PieceBuf::new(),
        };
        drop(buffers);
        buf.resize_for_overwrite(len);
        buf
    }

    /// Keeps `buf` for a later `take`, unless the pool is full.
    pub fn give(&self, buf: PieceBuf) {
        if buf.capacity() == 0 || buf.capacity() > self.max_bytes {
            return;
        }
        let mut buffers = self.lock();
        let held: usize = buffers.iter().map(PieceBuf::capacity).sum();
        if buffers.len() < self.max_buffers && held + buf.capacity() <= self.max_bytes {
            buffers.push(buf);
        }
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn idle_bytes(&self) -> usize {
        self.lock().iter().map(PieceBuf::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_buffers_up_to_its_count_and_byte_limits() {
        let sized = |len| {
            let mut b = PieceBuf::new();
            b.resize_for_overwrite(len);
            b
        };
        let pool = BufferPool::new(2, 3 * BLOCK);
        assert!(pool.take().capacity() == 0);
        pool.give(sized(10)); // one block
        pool.give(PieceBuf::new()); // nothing to keep
        pool.give(sized(2 * BLOCK + 1)); // three blocks: would pass the byte limit
        pool.give(sized(2 * BLOCK));
        pool.give(sized(1)); // a third buffer
        assert_eq!(pool.idle(), 2);
        let (a, b) = (pool.take(), pool.take());
        assert_eq!(a.capacity() + b.capacity(), 3 * BLOCK);
        assert_eq!(pool.take().capacity(), 0);
        // `take_for` picks an idle buffer with room, else makes one.
        pool.give(sized(1));
        pool.give(sized(2 * BLOCK));
        let roomy = pool.take_for(BLOCK + 1);
        assert_eq!((roomy.len(), roomy.capacity(), pool.idle()), (BLOCK + 1, 2 * BLOCK, 1));
        assert_eq!(pool.take_for(3 * BLOCK).capacity(), 3 * BLOCK);
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn piece_buffers_are_block_aligned_and_reuse_their_memory() {
        let mut b = PieceBuf::from(&[7u8; 10][..]);
        assert_eq!(&b[..], &[7u8; 10]);
        assert_eq!((b.as_ptr() as usize % BLOCK, b.capacity()), (0, BLOCK));
        assert_eq!(b.blocks_mut().len(), BLOCK);
        let at = b.as_ptr();
        b.resize_for_overwrite(BLOCK); // fits: same memory, stale bytes kept
        assert_eq!((b.as_ptr(), b.len(), b[0]), (at, BLOCK, 7));
        b.resize_for_overwrite(BLOCK + 1); // grows to two blocks
        assert_eq!((b.as_ptr() as usize % BLOCK, b.capacity(), b.blocks_mut().len()), (0, 2 * BLOCK, 2 * BLOCK));
        assert_eq!(b.clone(), b);
        assert_eq!(&PieceBuf::new()[..], &[] as &[u8]);
    }
}
