//! Opening the store: keep completed tasks, resume partial ones, clear what cannot be trusted.

use super::meta::{self, TaskMeta};
use super::pieces::drop_piece_locked;
use super::{lock, persist, Store, StoreError, TaskEntry};
use crate::task_id::TaskId;
use sched::core::PieceSet;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What `Store::open` found.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Tasks kept, completed or partial.
    pub loaded: Vec<TaskId>,
    /// Task directories deleted, with the reason (unreadable metadata, missing content...).
    pub removed: Vec<(PathBuf, String)>,
    /// Entries under `tasks/` that are not task directories; left alone.
    pub ignored: Vec<PathBuf>,
    /// Pieces dropped because the content file was short or (with `verify_on_open`) because
    /// they no longer matched their digest.
    pub dropped_pieces: Vec<(TaskId, u32)>,
}

impl Store {
    pub(super) fn load(&self) -> Result<OpenReport, StoreError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { task: None, path, op, source }
        };
        fs::create_dir_all(&self.tasks_dir).map_err(io("create tasks directory", &self.tasks_dir))?;
        if self.trash_dir.exists() {
            fs::remove_dir_all(&self.trash_dir).map_err(io("empty trash directory", &self.trash_dir))?;
        }
        fs::create_dir_all(&self.trash_dir).map_err(io("create trash directory", &self.trash_dir))?;

        let mut report = OpenReport::default();
        let listing = fs::read_dir(&self.tasks_dir).map_err(io("list tasks directory", &self.tasks_dir))?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for item in listing {
            dirs.push(item.map_err(io("list tasks directory", &self.tasks_dir))?.path());
        }
        dirs.sort();
        for dir in dirs {
            let id = match dir.file_name().and_then(|n| n.to_str()).map(TaskId::from_hex) {
                Some(Ok(id)) if dir.is_dir() => id,
                _ => {
                    report.ignored.push(dir);
                    continue;
                }
            };
            match self.load_task(id, &dir, &mut report) {
                Ok(entry) => {
                    report.loaded.push(id);
                    lock(&self.tasks).insert(id, entry);
                }
                Err(reason) => {
                    fs::remove_dir_all(&dir).map_err(io("delete unusable task directory", &dir))?;
                    report.removed.push((dir, reason));
                }
            }
        }
        Ok(report)
    }

    /// Loads one task directory; `Err` gives the reason to delete it.
    fn load_task(&self, id: TaskId, dir: &Path, report: &mut OpenReport) -> Result<Arc<TaskEntry>, String> {
        let _ = fs::remove_file(dir.join(meta::META_TMP_FILE));
        let meta_path = dir.join(meta::META_FILE);
        let bytes = fs::read(&meta_path).map_err(|e| format!("cannot read {}: {e}", meta_path.display()))?;
        let meta: TaskMeta = meta::decode(&bytes).map_err(|e| format!("{}: {e}", meta_path.display()))?;
        if meta.id != id {
            return Err(format!("{} names task {}, not its directory's", meta_path.display(), meta.id));
        }
        let content_path = dir.join(meta::CONTENT_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&content_path)
            .map_err(|e| format!("cannot open {}: {e}", content_path.display()))?;
        let on_disk = file.metadata().map_err(|e| format!("cannot stat {}: {e}", content_path.display()))?.len();
        if on_disk != meta.content_bytes {
            file.set_len(meta.content_bytes).map_err(|e| format!("cannot size {}: {e}", content_path.display()))?;
        }
        // Completed tasks were fsynced before being marked; partial ones may hold pieces
        // recorded before their bytes reached the disk.
        let unverified = if meta.completed { PieceSet::new(meta.piece_count()) } else { meta.finished.clone() };
        let finished_bytes = meta.finished_bytes();
        let entry = Arc::new(TaskEntry::new(dir.to_path_buf(), file, meta, unverified, self.config.direct_io));
        self.used_bytes.fetch_add(finished_bytes, Ordering::AcqRel);

        let mut state = lock(&entry.state);
        let short: Vec<u32> = state
            .meta
            .finished
            .iter()
            .filter(|&p| (p as u64 * state.meta.piece_bytes) + state.meta.piece_len(p) > on_disk)
            .collect();
        for &piece in &short {
            drop_piece_locked(self, &entry, &mut state, piece);
            report.dropped_pieces.push((id, piece));
        }
        let to_verify = if self.config.verify_on_open { state.unverified.clone() } else { PieceSet::new(0) };
        if !short.is_empty() {
            persist(&entry, &mut state).map_err(|e| e.to_string())?;
        }
        drop(state);
        for piece in to_verify.iter() {
            // `read_piece` needs the task in the map; check directly on the entry instead.
            if !self.verify_loaded_piece(&entry, piece) {
                report.dropped_pieces.push((id, piece));
            }
        }
        Ok(entry)
    }

    /// Re-hashes one piece of a task being loaded; drops it if it does not match.
    fn verify_loaded_piece(&self, entry: &Arc<TaskEntry>, piece: u32) -> bool {
        use std::os::unix::fs::FileExt;
        let (offset, len, digest) = {
            let state = lock(&entry.state);
            let m = &state.meta;
            match m.piece_digests[piece as usize] {
                Some(d) => (piece as u64 * m.piece_bytes, m.piece_len(piece), d),
                None => return true,
            }
        };
        let mut data = vec![0u8; len as usize];
        let ok = entry.file.read_exact_at(&mut data, offset).is_ok() && super::PieceDigest::of(&data) == digest;
        let mut state = lock(&entry.state);
        state.unverified.remove(piece);
        if !ok {
            drop_piece_locked(self, entry, &mut state, piece);
            let _ = persist(entry, &mut state);
        }
        ok
    }
}
