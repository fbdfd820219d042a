//! The piece store on disk.
//!
//! Layout under `StoreConfig::dir`:
//!
//! ```text
//! tasks/<task id>/content     the content, each piece written at its offset (sparse until done)
//! tasks/<task id>/meta.json   task id, url, lengths, per-piece crc32, finished bitmap,
//!                             completed flag, last access; replaced atomically
//! trash/                      task directories being deleted (emptied on open)
//! ```
//!
//! Integrity rules:
//! - A piece is finished only once its bytes are written and its sha256 recorded; a write
//!   whose digest differs from the one expected for the piece is refused.
//! - Every read for serving re-hashes the piece. A mismatch drops the piece from the finished
//!   bitmap and returns `StoreError::CorruptPiece`: corrupt bytes are never handed out.
//!   `read_piece_shared` first looks in a memory cache of pieces this process verified
//!   (`piece_cache.rs`, `piece_cache_bytes`): bytes hashed once are sent to many children
//!   without being read and hashed again for each.
//! - A task counts as complete (`complete_task`) only when every piece is finished, every
//!   piece recorded before the store was opened has been re-checked, and the whole content
//!   matches the task's digest when one is known. The content is fsynced only with
//!   `sync_on_complete`; pieces are recorded in metadata every `meta_flush_pieces` pieces
//!   without fsyncing the content, and the read re-check catches the rare piece lost in a
//!   crash.
//! - Pieces go to the disk with `O_DIRECT` where the filesystem has it, and come back that
//!   way when read once (`direct.rs`, `direct_io`): the page cache would hold a second copy
//!   of bytes served from memory. Uploads read through the page cache.
//! - Space: `used_bytes` counts the bytes of finished pieces. A write that would take it past
//!   `quota_bytes` fails with `QuotaExceeded`; `gc` frees space, least recently used first,
//!   never touching a task that is pinned (in use).
//!
//! The store is synchronous (positional reads and writes on one open file per task); async
//! callers run piece reads and writes on a blocking thread.

// The one module with unsafe code: block-aligned piece memory (each block has a SAFETY note).
#[allow(unsafe_code)]
mod buffers;
mod digest;
mod direct;
mod error;
mod gc;
mod meta;
/// The metadata file's parser, for the fuzz targets (`fuzz/`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use super::meta::{decode as decode_meta, encode as encode_meta, TaskMeta};
}
mod open;
mod piece_cache;
mod pieces;
#[cfg(test)]
mod tests;

pub use buffers::{BufferPool, PieceBuf};
pub(crate) use digest::{hex_decode_into, hex_encode};
pub use digest::{DigestParseError, PieceDigest, Sha256Digest, VerifiedPiece};
pub use error::{ContentDigestMismatch, StoreError, TaskMismatch};
pub use gc::{Evicted, GcPolicy, GcReason, GcReport};
pub use open::OpenReport;
pub use piece_cache::SharedPiece;
pub use pieces::PieceWrite;

use crate::task_id::TaskId;
use meta::TaskMeta;
use sched::core::PieceSet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use svc::watch;

/// The largest piece the store (and the data plane) accepts.
pub const MAX_PIECE_BYTES: u64 = crate::core::config::MAX_PIECE_BYTES;
/// The most pieces one task may have.
pub const MAX_PIECE_COUNT: u32 = 1 << 24;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Root directory; created if missing.
    pub dir: PathBuf,
    /// Bytes of finished pieces the store may hold.
    pub quota_bytes: u64,
    /// Re-hash every finished piece of partial tasks when opening (slow for a big cache;
    /// reads re-check pieces anyway).
    pub verify_on_open: bool,
    /// A partial task's metadata is persisted after this many newly finished pieces (at
    /// least 1). A crash loses at most this many pieces, which are fetched again.
    pub meta_flush_pieces: u32,
    /// Memory for recently verified pieces served from RAM instead of disk (0: off).
    pub piece_cache_bytes: u64,
    /// fsync a task's content before marking it complete. Off by default: the store is a
    /// cache whose every disk read is re-hashed (a piece torn by a power loss is dropped and
    /// fetched again, never served), so the fsync buys only keeping the bytes over a power
    /// loss, and costs the disk's whole write time on the download's critical path (about
    /// 2 s per 500 MB on the 254 MB/s disks of the CI machines). Metadata is always written
    /// atomically and synced.
    pub sync_on_complete: bool,
    /// Write pieces, and read those read once (scans, a local mirror client behind the
    /// download), directly (`O_DIRECT`), not through the page cache: every piece is hashed,
    /// cached and served from memory while it is hot, so a page-cache copy is one nobody
    /// reads; filling it cost 2.7 s of CPU per GB written and 1.9 s per GB read on the CI's
    /// machines (`direct.rs`). Uploads read through the page cache. Filesystems without
    /// `O_DIRECT` (tmpfs) use the page cache. (Formerly `direct_writes`, still accepted.)
    #[serde(alias = "direct_writes")]
    pub direct_io: bool,
    /// Bytes of piece buffers the daemon makes and touches when it starts, before it
    /// serves, and keeps for reuse (0: none; they are then made on demand). A peer's
    /// first pull otherwise receives every piece into fresh memory until the piece cache
    /// and the buffers in flight are filled: on the CI's virtual machines touching fresh
    /// memory cost 2.3 s per GB (the host backs it on first touch), 40 % of a new peer's
    /// CPU while it fed a pull through its mirror. The default covers the default piece
    /// cache (128 MiB) and 16 pieces of 4 MiB in flight; the pool of idle buffers may
    /// hold this much (at least 128 MiB).
    pub prefault_buffer_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: PathBuf::from("/var/lib/p2pimg/peer"),
            quota_bytes: 100 << 30,
            verify_on_open: false,
            meta_flush_pieces: 32,
            piece_cache_bytes: 128 << 20,
            sync_on_complete: false,
            direct_io: true,
            prefault_buffer_bytes: 192 << 20,
        }
    }
}

/// Wall-clock source for last-access times (a test or a simulation injects its own).
pub trait Clock: Send + Sync {
    fn now_unix_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// What a new task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub id: TaskId,
    /// Recorded for operators. Pass a redacted URL (`task_id::redact_url`) if it holds secrets.
    pub url: String,
    pub content_bytes: u64,
    pub piece_bytes: u64,
    /// The whole content's sha256, when known (OCI blobs are named by it).
    pub content_digest: Option<Sha256Digest>,
}

/// A snapshot of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: TaskId,
    pub url: String,
    pub content_bytes: u64,
    pub piece_bytes: u64,
    pub piece_count: u32,
    /// The whole content's sha256, when known.
    pub content_digest: Option<Sha256Digest>,
    pub finished_pieces: u32,
    pub finished_bytes: u64,
    pub completed: bool,
    pub last_access_unix_ms: u64,
    pub pins: u32,
    pub content_path: PathBuf,
}

/// What a parent advertises about a task: lengths, finished pieces and their digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceMap {
    pub content_bytes: u64,
    pub piece_bytes: u64,
    pub piece_count: u32,
    pub completed: bool,
    pub finished: PieceSet,
    /// Indexed by piece; `Some` for every finished piece.
    pub digests: Vec<Option<PieceDigest>>,
    /// Bumped on every change of `finished`; `Store::watch` reports it.
    pub version: u64,
}

pub struct Store {
    config: StoreConfig,
    tasks_dir: PathBuf,
    trash_dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// Lock order: `tasks` before any task's `state`.
    tasks: Mutex<HashMap<TaskId, Arc<TaskEntry>>>,
    used_bytes: AtomicU64,
    trash_seq: AtomicU64,
    cache: piece_cache::PieceCache,
    bounce: direct::BouncePool,
}

struct TaskEntry {
    id: TaskId,
    dir: PathBuf,
    content_path: PathBuf,
    file: File,
    /// The content file opened with `O_DIRECT` (`direct.rs`), on the first piece write or
    /// scan, when the configuration asks for it, the piece size is block-aligned and the
    /// filesystem has it (a completed task loaded at start never opens it: one descriptor).
    direct: std::sync::OnceLock<Option<File>>,
    direct_wanted: bool,
    state: Mutex<TaskState>,
    pins: AtomicU32,
    changes: watch::Sender<u64>,
    /// The whole content's sha256, fed in piece order as pieces are written (tasks with a
    /// content digest): `complete_task` then has the digest without reading the content
    /// back. Lock order: after `tasks`, never while holding `state`.
    running: Mutex<RunningHash>,
}

/// sha256 over pieces `0..next`, as written (`pieces.rs`).
struct RunningHash {
    next: u32,
    hasher: sha2::Sha256,
}

impl RunningHash {
    fn new() -> RunningHash {
        RunningHash { next: 0, hasher: sha2::Digest::new() }
    }
}

struct TaskState {
    meta: TaskMeta,
    /// Finished pieces recorded before this process opened the store and not re-hashed since.
    unverified: PieceSet,
    /// Newly finished pieces not yet in the metadata file.
    unsynced_pieces: u32,
    /// Something (last access) changed that `flush` should persist.
    dirty: bool,
    version: u64,
    removed: bool,
}

/// Keeps a task from being garbage-collected or removed while held.
pub struct TaskPin {
    entry: Arc<TaskEntry>,
}

impl TaskPin {
    pub fn task(&self) -> TaskId {
        self.entry.id
    }
}

impl Drop for TaskPin {
    fn drop(&mut self) {
        self.entry.pins.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for TaskPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskPin({})", self.entry.id)
    }
}

/// A poisoned lock only means another thread panicked mid-update; the state it guards is
/// still consistent at every await-free step, so keep serving rather than cascade panics.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (or creates) the store at `config.dir`, keeping completed tasks and resuming
    /// partial ones.
    pub fn open(config: StoreConfig) -> Result<(Store, OpenReport), StoreError> {
        Store::open_with_clock(config, Arc::new(SystemClock))
    }

    /// The piece buffers the store reuses (those of pieces evicted from its cache); a
    /// data-plane client receiving into them saves fresh memory per piece.
    pub fn buffers(&self) -> Arc<BufferPool> {
        self.cache.spares().clone()
    }

    pub fn open_with_clock(config: StoreConfig, clock: Arc<dyn Clock>) -> Result<(Store, OpenReport), StoreError> {
        if config.meta_flush_pieces == 0 {
            return Err(StoreError::Config { reason: "meta_flush_pieces must be at least 1".into() });
        }
        if config.quota_bytes == 0 {
            return Err(StoreError::Config { reason: "quota_bytes must be more than 0".into() });
        }
        let store = Store {
            cache: piece_cache::PieceCache::new(
                config.piece_cache_bytes,
                Arc::new(BufferPool::holding(config.prefault_buffer_bytes as usize)),
            ),
            bounce: direct::BouncePool::default(),
            tasks_dir: config.dir.join("tasks"),
            trash_dir: config.dir.join("trash"),
            config,
            clock,
            tasks: Mutex::new(HashMap::new()),
            used_bytes: AtomicU64::new(0),
            trash_seq: AtomicU64::new(0),
        };
        let report = store.load()?;
        Ok((store, report))
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
    pub fn quota_bytes(&self) -> u64 {
        self.config.quota_bytes
    }
    /// Bytes of finished pieces held.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Acquire)
    }

    /// Creates a task, or returns the existing one if it has the same lengths and digest.
    pub fn create_task(&self, spec: TaskSpec) -> Result<TaskInfo, StoreError> {
        let piece_count = self.check_spec(&spec)?;
        let mut tasks = lock(&self.tasks);
        if let Some(entry) = tasks.get(&spec.id) {
            let mut state = lock(&entry.state);
            let m = &state.meta;
            if (m.content_bytes, m.piece_bytes, m.content_digest)
                != (spec.content_bytes, spec.piece_bytes, spec.content_digest)
            {
                return Err(StoreError::TaskMismatch(Box::new(error::TaskMismatch {
                    task: spec.id,
                    have_content_bytes: m.content_bytes,
                    have_piece_bytes: m.piece_bytes,
                    have_digest: m.content_digest,
                    content_bytes: spec.content_bytes,
                    piece_bytes: spec.piece_bytes,
                    digest: spec.content_digest,
                })));
            }
            state.meta.last_access_unix_ms = self.clock.now_unix_ms();
            state.dirty = true;
            return Ok(info(entry, &state));
        }
        let dir = self.tasks_dir.join(spec.id.to_hex());
        let meta = TaskMeta {
            id: spec.id,
            url: spec.url,
            content_bytes: spec.content_bytes,
            piece_bytes: spec.piece_bytes,
            content_digest: spec.content_digest,
            piece_digests: vec![None; piece_count as usize],
            finished: PieceSet::new(piece_count),
            completed: false,
            last_access_unix_ms: self.clock.now_unix_ms(),
            content_mtime_ns: None,
        };
        let entry = match create_task_files(&dir, &meta) {
            Ok(file) => Arc::new(TaskEntry::new(dir, file, meta, PieceSet::new(piece_count), self.config.direct_io)),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let info = info(&entry, &lock(&entry.state));
        tasks.insert(spec.id, entry);
        Ok(info)
    }

    fn check_spec(&self, spec: &TaskSpec) -> Result<u32, StoreError> {
        let invalid = |reason: String| StoreError::InvalidTask { task: spec.id, reason };
        if spec.piece_bytes == 0 || spec.piece_bytes > MAX_PIECE_BYTES {
            return Err(invalid(format!("piece_bytes {} is not in 1..={MAX_PIECE_BYTES}", spec.piece_bytes)));
        }
        let count = spec.content_bytes.div_ceil(spec.piece_bytes);
        if count > MAX_PIECE_COUNT as u64 {
            return Err(invalid(format!(
                "{count} pieces of {} bytes exceed the limit of {MAX_PIECE_COUNT} pieces; use larger pieces",
                spec.piece_bytes
            )));
        }
        if spec.content_bytes > self.config.quota_bytes {
            return Err(StoreError::QuotaExceeded {
                task: spec.id,
                needed_bytes: spec.content_bytes,
                used_bytes: self.used_bytes(),
                quota_bytes: self.config.quota_bytes,
            });
        }
        Ok(count as u32)
    }

    pub fn task(&self, id: &TaskId) -> Option<TaskInfo> {
        let tasks = lock(&self.tasks);
        tasks.get(id).map(|e| info(e, &lock(&e.state)))
    }

    /// All tasks, least recently used first.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let tasks = lock(&self.tasks);
        let mut all: Vec<TaskInfo> = tasks.values().map(|e| info(e, &lock(&e.state))).collect();
        all.sort_by_key(|t| (t.last_access_unix_ms, t.id));
        all
    }

    /// Keeps the task from garbage collection and removal until the pin is dropped.
    pub fn pin(&self, id: &TaskId) -> Result<TaskPin, StoreError> {
        let tasks = lock(&self.tasks);
        let entry = tasks.get(id).ok_or(StoreError::TaskNotFound { task: *id })?;
        entry.pins.fetch_add(1, Ordering::AcqRel);
        Ok(TaskPin { entry: entry.clone() })
    }

    /// The task's lengths, finished pieces and digests, now.
    pub fn pieces(&self, id: &TaskId) -> Result<PieceMap, StoreError> {
        let pin = self.pin(id)?;
        let state = lock(&pin.entry.state);
        let m = &state.meta;
        Ok(PieceMap {
            content_bytes: m.content_bytes,
            piece_bytes: m.piece_bytes,
            piece_count: m.piece_count(),
            completed: m.completed,
            finished: m.finished.clone(),
            digests: m.piece_digests.clone(),
            version: state.version,
        })
    }

    /// A receiver that sees the task's piece-map version change whenever a piece finishes or
    /// is dropped. It closes (`changed()` errs) when the task is removed.
    pub fn watch(&self, id: &TaskId) -> Result<watch::Receiver<u64>, StoreError> {
        let tasks = lock(&self.tasks);
        let entry = tasks.get(id).ok_or(StoreError::TaskNotFound { task: *id })?;
        Ok(entry.changes.subscribe())
    }

    /// Removes a task and its files. Fails with `InUse` while it is pinned.
    pub fn remove_task(&self, id: &TaskId) -> Result<(), StoreError> {
        let trash = {
            let mut tasks = lock(&self.tasks);
            let entry = tasks.get(id).ok_or(StoreError::TaskNotFound { task: *id })?;
            let pins = entry.pins.load(Ordering::Acquire);
            if pins > 0 {
                return Err(StoreError::InUse { task: *id, pins });
            }
            let entry = tasks.remove(id).expect("present: looked up under the same lock");
            self.unlink_locked(&entry)?
        };
        fs::remove_dir_all(&trash).map_err(|source| StoreError::Io {
            task: Some(*id),
            path: trash,
            op: "delete removed task directory",
            source,
        })
    }

    /// Marks a task removed and moves its directory to the trash. Called with `tasks` held and
    /// the entry already out of the map, so a new task with the same id can be created at
    /// once; the slow delete happens after the lock is released.
    fn unlink_locked(&self, entry: &Arc<TaskEntry>) -> Result<PathBuf, StoreError> {
        self.cache.remove_task(&entry.id);
        let mut state = lock(&entry.state);
        state.removed = true;
        self.used_bytes.fetch_sub(state.meta.finished_bytes(), Ordering::AcqRel);
        drop(state);
        let seq = self.trash_seq.fetch_add(1, Ordering::Relaxed);
        let trash = self.trash_dir.join(format!("{}.{seq}", entry.id));
        fs::rename(&entry.dir, &trash).map_err(|source| StoreError::Io {
            task: Some(entry.id),
            path: entry.dir.clone(),
            op: "move task directory to trash",
            source,
        })?;
        Ok(trash)
    }

    /// Persists metadata of every task with unrecorded pieces or access times (call it
    /// periodically and at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let entries: Vec<Arc<TaskEntry>> = lock(&self.tasks).values().cloned().collect();
        let mut first_error = None;
        for entry in entries {
            let mut state = lock(&entry.state);
            if !state.removed && (state.dirty || state.unsynced_pieces > 0) {
                if let Err(e) = persist(&entry, &mut state) {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl TaskEntry {
    fn new(dir: PathBuf, file: File, meta: TaskMeta, unverified: PieceSet, direct_io: bool) -> TaskEntry {
        let content_path = dir.join(meta::CONTENT_FILE);
        let aligned = meta.piece_bytes.is_multiple_of(direct::DIRECT_ALIGN as u64);
        TaskEntry {
            id: meta.id,
            direct: std::sync::OnceLock::new(),
            direct_wanted: direct_io && aligned,
            content_path,
            dir,
            file,
            state: Mutex::new(TaskState {
                meta,
                unverified,
                unsynced_pieces: 0,
                dirty: false,
                version: 0,
                removed: false,
            }),
            pins: AtomicU32::new(0),
            changes: watch::channel(0).0,
            running: Mutex::new(RunningHash::new()),
        }
    }

    /// The `O_DIRECT` descriptor, opened on first use; None: write and read buffered.
    fn direct(&self) -> Option<&File> {
        if !self.direct_wanted {
            return None;
        }
        self.direct.get_or_init(|| direct::open_direct(&self.content_path)).as_ref()
    }
}

fn info(entry: &TaskEntry, state: &TaskState) -> TaskInfo {
    let m = &state.meta;
    TaskInfo {
        id: entry.id,
        url: m.url.clone(),
        content_bytes: m.content_bytes,
        piece_bytes: m.piece_bytes,
        piece_count: m.piece_count(),
        content_digest: m.content_digest,
        finished_pieces: m.finished.count(),
        finished_bytes: m.finished_bytes(),
        completed: m.completed,
        last_access_unix_ms: m.last_access_unix_ms,
        pins: entry.pins.load(Ordering::Acquire),
        content_path: entry.content_path.clone(),
    }
}

fn persist(entry: &TaskEntry, state: &mut TaskState) -> Result<(), StoreError> {
    meta::write_atomic(&entry.dir, &state.meta)?;
    state.unsynced_pieces = 0;
    state.dirty = false;
    Ok(())
}

/// The directory, a sparse content file of the full length, and the first metadata file.
fn create_task_files(dir: &Path, meta: &TaskMeta) -> Result<File, StoreError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { task: Some(meta.id), path, op, source }
    };
    fs::create_dir_all(dir).map_err(io("create task directory", dir))?;
    let content = dir.join(meta::CONTENT_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&content)
        .map_err(io("create content file", &content))?;
    file.set_len(meta.content_bytes).map_err(io("size content file", &content))?;
    meta::write_atomic(dir, meta)?;
    if let Some(parent) = dir.parent() {
        meta::sync_dir(parent).map_err(io("fsync tasks directory", parent))?;
    }
    Ok(file)
}
