//! Piece writes, and reads of pieces read once, that bypass the page cache (`O_DIRECT`,
//! `StoreConfig::direct_io`).
//!
//! A downloaded piece is hashed from memory, kept in the piece cache for the children that
//! want it next, and streamed to a mirror client from memory; the copy the kernel would
//! keep in its page cache is read by nobody while the piece is hot. Filling the page cache
//! is not free: on the CI's virtual machines every fresh page is a host fault (free page
//! reporting gives freed memory back to the host). Writing 2 GB costs 5.4 s of system time
//! through it against 0.19 s with `O_DIRECT`, and reading 512 MB that the page cache does
//! not hold 0.97 s against 0.02 s (0.25 s wall; `dd`, `bench/README.md`). So writes go to
//! the disk directly, and so do reads that happen once: the store's scans (the running
//! whole-content hash catching up, the whole-file check, re-checks) and a local mirror
//! client reading behind the download (`Store::read_piece_once`). Pieces read to be
//! uploaded go through the page cache (`Store::read_piece_shared`): a parent is asked for
//! the same piece by child after child, and a seed's content outgrows the piece cache.
//!
//! `O_DIRECT` needs the file offset, the length and the buffer's address aligned to the
//! device's logical block; 4096 covers 512- and 4096-byte devices. Pieces live in
//! block-aligned buffers (`PieceBuf`), which go to and from the disk as they are; other
//! bytes (a slice at any address, the store's scans) pass through a reused aligned bounce
//! buffer. A write's tail shorter than a block, and every piece of a task whose piece size
//! is not a multiple of 4096, goes through the page cache (a direct read of the last block
//! sees it: the kernel writes dirty cached pages of a range back before reading that range
//! directly). Filesystems without `O_DIRECT` (tmpfs) refuse the open; the task then uses the
//! page cache only.

use super::buffers::{BufferPool, PieceBuf, BLOCK};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment of offsets, lengths and buffers for `O_DIRECT`.
pub(super) const DIRECT_ALIGN: usize = BLOCK;
/// Aligned buffers kept for reuse (one per concurrent writer; more are made and freed),
/// holding at most `POOL_BYTES` in all (pieces may be up to 64 MiB).
const POOL_BUFFERS: usize = 8;
const POOL_BYTES: usize = 32 << 20;

/// Opens `path` for direct reads and writes, or `None` when the filesystem (or the platform) has no
/// `O_DIRECT`: the caller then writes through the page cache.
pub(super) fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(path).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Aligned copy buffers shared by the store's writers and scans (for bytes that are not in
/// a `PieceBuf`).
pub(super) struct BouncePool {
    free: BufferPool,
}

impl Default for BouncePool {
    fn default() -> Self {
        BouncePool { free: BufferPool::new(POOL_BUFFERS, POOL_BYTES) }
    }
}

impl BouncePool {
    fn take(&self, len: usize) -> PieceBuf {
        self.free.take_for(len)
    }

    fn give_back(&self, buf: PieceBuf) {
        self.free.give(buf)
    }

    /// Writes `data` at `offset`: its block-aligned span through `direct` (when given and
    /// `offset` is aligned; from `data` itself when it starts on a block, as a `PieceBuf`
    /// does, else through a bounce buffer), the rest through `buffered`. A direct write the
    /// filesystem refuses is done again through `buffered`, so a caller only sees errors
    /// both paths give (no space, I/O error).
    pub(super) fn write_at(&self, direct: Option<&File>, buffered: &File, data: &[u8], offset: u64) -> io::Result<()> {
        let aligned_len = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        let Some(direct) = direct.filter(|_| offset.is_multiple_of(DIRECT_ALIGN as u64) && aligned_len > 0) else {
            return buffered.write_all_at(data, offset);
        };
        let (head, tail) = data.split_at(aligned_len);
        let wrote = if (head.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN) {
            direct.write_all_at(head, offset)
        } else {
            let mut buf = self.take(aligned_len);
            buf.copy_from_slice(head);
            let wrote = direct.write_all_at(&buf, offset);
            self.give_back(buf);
            wrote
        };
        match wrote {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc_einval()) => buffered.write_all_at(head, offset)?,
            Err(e) => return Err(e),
        }
        if !tail.is_empty() {
            buffered.write_all_at(tail, offset + aligned_len as u64)?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` and hands them to `f`: through `direct` when given and
    /// `offset` is aligned (no page-cache copy is made; the last block may run past the end
    /// of the file, and the read stops there), else, or when the filesystem refuses, through
    /// `buffered`. Fewer than `len` bytes in the file is `UnexpectedEof`.
    pub(super) fn read_at<R>(
        &self,
        direct: Option<&File>,
        buffered: &File,
        offset: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<R> {
        let mut buf = self.take(len);
        let out = read_into(direct, buffered, offset, &mut buf).map(|()| f(&buf));
        self.give_back(buf);
        out
    }
}

/// Fills `buf` (its whole length) from `offset`: through `direct` when given and `offset`
/// is aligned (straight into `buf`, which is block-aligned; the last block may run past
/// the end of the file, and the read stops there), else, or when the filesystem refuses,
/// through `buffered`. Fewer bytes in the file is `UnexpectedEof`.
pub(super) fn read_into(direct: Option<&File>, buffered: &File, offset: u64, buf: &mut PieceBuf) -> io::Result<()> {
    let len = buf.len();
    match direct.filter(|_| offset.is_multiple_of(DIRECT_ALIGN as u64) && len > 0) {
        Some(direct) => match read_direct(direct, buf.blocks_mut(), offset, len) {
            Err(e) if e.raw_os_error() == Some(libc_einval()) => buffered.read_exact_at(buf, offset),
            other => other,
        },
        None => buffered.read_exact_at(buf, offset),
    }
}

/// Fills `space[..len]` from `offset` with aligned direct reads (`space` is whole blocks).
fn read_direct(direct: &File, space: &mut [u8], offset: u64, len: usize) -> io::Result<()> {
    let mut got = 0;
    while got < len {
        match direct.read_at(&mut space[got..], offset + got as u64) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "content file ends inside the piece")),
            // A direct read returns whole blocks except at the end of the file.
            Ok(n) if n % DIRECT_ALIGN != 0 && got + n < len => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "content file ends inside the piece"))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn libc_einval() -> i32 {
    libc::EINVAL
}
#[cfg(not(target_os = "linux"))]
fn libc_einval() -> i32 {
    22
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
    }

    #[test]
    fn aligned_and_unaligned_spans_land_where_they_belong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("content");
        let buffered = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let total = 3 * 65536 + 1000;
        buffered.set_len(total as u64).unwrap();
        let direct = open_direct(&path);
        let pool = BouncePool::default();
        let want = pattern(total, 7);
        // Out of order, a tail piece shorter than a block, a piece at an unaligned offset,
        // and a source slice at an odd address.
        let spans = [(65536usize, 65536usize), (3 * 65536, 1000), (0, 100), (100, 65436), (2 * 65536, 65536)];
        for (off, len) in spans {
            let src = [&[0u8][..], &want[off..off + len]].concat();
            pool.write_at(direct.as_ref(), &buffered, &src[1..], off as u64).unwrap();
        }
        let mut got = vec![0u8; total];
        buffered.read_exact_at(&mut got, 0).unwrap();
        assert!(got == want, "content differs from what was written");
        // Direct reads: aligned, unaligned, the tail past the last block, and past the end.
        for (off, len) in [(0usize, 65536usize), (100, 5000), (3 * 65536, 1000), (2 * 65536, 65536 + 1000)] {
            let read = pool.read_at(direct.as_ref(), &buffered, off as u64, len, |b| b.to_vec()).unwrap();
            assert!(read == want[off..off + len], "read of {len} bytes at {off} differs");
        }
        let past = pool.read_at(direct.as_ref(), &buffered, 3 * 65536, 1001, |_| ()).unwrap_err();
        assert_eq!(past.kind(), io::ErrorKind::UnexpectedEof);
        assert!(pool.free.idle() <= POOL_BUFFERS && pool.free.idle_bytes() <= POOL_BYTES);
    }

    #[test]
    fn without_direct_io_everything_goes_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("content");
        let buffered = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let want = pattern(10_000, 3);
        BouncePool::default().write_at(None, &buffered, &want, 0).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
