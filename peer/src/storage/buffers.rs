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
//!
//! Fresh memory: a new process still fills its piece cache and pool from fresh memory
//! (128 MiB and more of a first pull). A buffer of 2 MiB or more is therefore mapped on its
//! own, on a 2 MiB boundary, and marked for transparent huge pages (`MADV_HUGEPAGE`, for
//! kernels in `madvise` mode, Debian's default): one fault per 2 MiB instead of 512, no zeroing
//! pass of ours (mapped memory arrives zeroed). Measured on the 2-core CI machine type,
//! touching fresh memory and copying into it: 0.15 s per GB this way, against 0.55 to 0.72
//! s per GB for a zeroed heap allocation and 0.44 for plain 4 KiB-page mappings. Where the
//! kernel has no huge pages to give, the mapping still saves the zeroing pass. Memory the
//! host has not backed yet costs about 2.3 s per GB on first touch either way, so peerd
//! makes and touches `storage.prefault_buffer_bytes` of buffers before it serves
//! (`BufferPool::prefault`).

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

// SAFETY: the buffer owns its allocation and nothing else points into it, so moving it to
// another thread or sharing `&PieceBuf` (read-only bytes) is as safe as for a `Vec<u8>`.
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
            // The old memory goes first, so the two are never held at once.
            *self = PieceBuf::new();
            *self = PieceBuf::try_sized(len).unwrap_or_else(|| alloc::handle_alloc_error(PieceBuf::layout(need)));
        }
        self.len = len;
    }

    /// A new buffer of `len` bytes (zeroed), or None where the memory cannot be had.
    fn try_sized(len: usize) -> Option<PieceBuf> {
        let need = len.next_multiple_of(BLOCK);
        let ptr = if need >= HUGE_PAGE {
            huge::map(need)?
        } else if need == 0 {
            return Some(PieceBuf::new());
        } else {
            // SAFETY: `need` is non-zero.
            NonNull::new(unsafe { alloc::alloc_zeroed(PieceBuf::layout(need)) })?
        };
        Some(PieceBuf { ptr, cap: need, len })
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
        if self.cap >= HUGE_PAGE {
            // SAFETY: mapped by `huge::map` with this very length, and only `self` points into it.
            unsafe { huge::unmap(self.ptr, self.cap) }
        } else if self.cap > 0 {
            // SAFETY: allocated in `resize_for_overwrite` with this very layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), PieceBuf::layout(self.cap)) }
        }
    }
}

/// Buffers at least this large are mapped on their own, aligned for huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// Anonymous mappings on a huge-page boundary (Linux: with `MADV_HUGEPAGE`).
#[cfg(unix)]
mod huge {
    use super::HUGE_PAGE;
    use std::ptr::NonNull;

    /// `len` zeroed bytes starting on a `HUGE_PAGE` boundary; None when the kernel refuses.
    pub(super) fn map(len: usize) -> Option<NonNull<u8>> {
        let span = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base as usize;
        let start = base.next_multiple_of(HUGE_PAGE);
        // SAFETY: both ranges lie inside the mapping just made and outside `start..start + len`.
        unsafe {
            if start > base {
                libc::munmap(base as *mut libc::c_void, start - base);
            }
            let tail = base + span - (start + len);
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
        }
        // Advice only: without huge pages the mapping works with small ones.
        #[cfg(target_os = "linux")]
        // SAFETY: `start..start + len` is the mapping this buffer owns.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        NonNull::new(start as *mut u8)
    }

    /// # Safety
    /// `ptr..ptr + len` is a mapping from `map(len)` that nothing uses any more.
    pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
        libc::munmap(ptr.as_ptr() as *mut libc::c_void, len);
    }
}

/// Elsewhere: the allocator, zeroed, aligned to the huge-page size.
#[cfg(not(unix))]
mod huge {
    use super::HUGE_PAGE;
    use std::alloc::{self, Layout};
    use std::ptr::NonNull;

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, HUGE_PAGE).expect("piece sizes are far below isize::MAX")
    }

    pub(super) fn map(len: usize) -> Option<NonNull<u8>> {
        // SAFETY: `len` is at least HUGE_PAGE, so non-zero.
        NonNull::new(unsafe { alloc::alloc_zeroed(layout(len)) })
    }

    /// # Safety
    /// `ptr` came from `map(len)` and nothing uses it any more.
    pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
        alloc::dealloc(ptr.as_ptr(), layout(len))
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

    /// The default pool, raised to hold `bytes` (what `prefault` is to be given) in
    /// buffers of 1 MiB or more.
    pub fn holding(bytes: usize) -> BufferPool {
        BufferPool::new(MAX_BUFFERS.max(bytes >> 20), MAX_BYTES.max(bytes))
    }

    /// Makes idle buffers of `piece_bytes` until they hold `bytes` (or the pool is full),
    /// writing to every page of each so that the memory is there before the first piece
    /// needs it; returns how many it made.
    pub fn prefault(&self, piece_bytes: usize, bytes: usize) -> usize {
        let size = piece_bytes.next_multiple_of(BLOCK);
        if size == 0 || size > self.max_bytes {
            return 0;
        }
        let mut made = 0;
        while (made + 1) * size <= bytes && self.fits(&self.lock(), size) {
            // Stops, rather than aborting, where the kernel refuses the memory.
            let Some(mut buf) = PieceBuf::try_sized(piece_bytes) else { break };
            for page in buf.blocks_mut().chunks_mut(BLOCK) {
                // Volatile: a plain store of the zero already there could be dropped.
                // SAFETY: `page` is a non-empty slice of the buffer's own memory.
                unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
            }
            let mut buffers = self.lock();
            if !self.fits(&buffers, size) {
                break;
            }
            buffers.push(buf);
            made += 1;
        }
        made
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
        if self.fits(&buffers, buf.capacity()) {
            buffers.push(buf);
        }
    }

    /// Whether `idle` (the pool's buffers, locked) has room for one more of `capacity` bytes.
    fn fits(&self, idle: &[PieceBuf], capacity: usize) -> bool {
        let held: usize = idle.iter().map(PieceBuf::capacity).sum();
        idle.len() < self.max_buffers && held + capacity <= self.max_bytes
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

    #[test]
    fn prefault_fills_the_pool_up_to_the_bytes_asked_and_its_limits() {
        let pool = BufferPool::holding(10 << 20);
        assert_eq!((pool.max_buffers, pool.max_bytes), (MAX_BUFFERS, MAX_BYTES));
        assert_eq!(pool.prefault((4 << 20) - 100, 10 << 20), 2);
        assert_eq!((pool.idle(), pool.idle_bytes()), (2, 8 << 20));
        let b = pool.take_for(4 << 20);
        assert!(b.iter().all(|&x| x == 0), "prefaulted memory reads as zeros");
        // A pool raised for 192 MiB holds 48 buffers of 4 MiB; it stops at its limits.
        let big = BufferPool::holding(192 << 20);
        assert_eq!((big.max_buffers, big.max_bytes), (192, 192 << 20));
        let small = BufferPool::new(3, 64 << 20);
        assert_eq!(small.prefault(4 << 20, 100 << 20), 3);
        assert_eq!(small.prefault(4 << 20, 100 << 20), 0, "full");
        assert_eq!(BufferPool::new(4, 1 << 20).prefault(4 << 20, 8 << 20), 0, "larger than the pool");
        assert_eq!(pool.prefault(0, 8 << 20), 0);
    }

    #[test]
    fn large_buffers_are_mapped_zeroed_on_a_huge_page_boundary() {
        for len in [HUGE_PAGE, 4 << 20, (4 << 20) + 1, (5 << 20) + 123] {
            let mut b = PieceBuf::new();
            b.resize_for_overwrite(len);
            assert_eq!((b.len(), b.capacity()), (len, len.next_multiple_of(BLOCK)));
            assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0, "{len} bytes");
            assert!(b.blocks_mut().iter().all(|&x| x == 0), "{len} bytes: fresh memory reads as zeros");
            b.blocks_mut().fill(0xa5);
            let at = b.as_ptr();
            b.resize_for_overwrite(len - 1); // fits: same mapping, stale bytes kept
            assert_eq!((b.as_ptr(), b[len - 2]), (at, 0xa5));
            let copy = b.clone();
            assert_eq!(copy, b);
            // Shrinking below the huge-page size keeps the mapping (and so unmaps it on drop).
            b.resize_for_overwrite(10);
            assert_eq!((b.as_ptr(), b.capacity()), (at, len.next_multiple_of(BLOCK)));
        }
        // Growing from a small allocation to a mapped one, and back in the pool.
        let pool = BufferPool::default();
        let mut b = pool.take_for(BLOCK);
        b.resize_for_overwrite(HUGE_PAGE + 1);
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
        pool.give(b);
        assert_eq!(pool.take_for(HUGE_PAGE).capacity(), HUGE_PAGE + BLOCK);
    }
}
