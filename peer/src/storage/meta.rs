//! The metadata file of one task (`meta.json`) and its atomic replacement.
//!
//! Written as temp file + fsync + rename + fsync of the directory, so a crash leaves either
//! the old or the new file, never a torn one. JSON keeps it readable by an operator; the
//! `format` field lets a later version refuse or migrate old files.

use super::digest::{hex_decode_into, hex_encode, PieceDigest, Sha256Digest};
use super::error::StoreError;
use crate::task_id::TaskId;
use sched::core::PieceSet;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// 2: piece digests are CRC32 (format 1 had sha256; such tasks are dropped and fetched
/// again, the store being a cache).
pub const META_FORMAT: u32 = 2;
pub const META_FILE: &str = "meta.json";
pub const META_TMP_FILE: &str = "meta.json.tmp";
pub const CONTENT_FILE: &str = "content";

/// A task's metadata, in memory and (through `MetaFile`) on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMeta {
    pub id: TaskId,
    pub url: String,
    pub content_bytes: u64,
    pub piece_bytes: u64,
    /// The whole content's digest when known (an OCI blob): checked before completion.
    pub content_digest: Option<Sha256Digest>,
    /// Each piece's digest once known; kept when a corrupt piece is dropped, so the re-fetch
    /// is checked against the same value.
    pub piece_digests: Vec<Option<PieceDigest>>,
    /// Pieces whose bytes are on disk and were verified when written.
    pub finished: PieceSet,
    pub completed: bool,
    pub last_access_unix_ms: u64,
    /// The content file's modification time (ns since the epoch) when the task completed.
    /// Another one means something wrote to the file since (dfget hard-links outputs to it,
    /// and a user may edit one in place): its pieces are re-checked before it is served.
    pub content_mtime_ns: Option<u64>,
}

impl TaskMeta {
    pub fn piece_count(&self) -> u32 {
        self.piece_digests.len() as u32
    }

    pub fn piece_len(&self, piece: u32) -> u64 {
        let start = piece as u64 * self.piece_bytes;
        self.piece_bytes.min(self.content_bytes.saturating_sub(start))
    }

    pub fn finished_bytes(&self) -> u64 {
        self.finished.iter().map(|p| self.piece_len(p)).sum()
    }
}

/// The on-disk form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaFile {
    format: u32,
    task_id: String,
    url: String,
    content_bytes: u64,
    piece_bytes: u64,
    piece_count: u32,
    content_digest: Option<String>,
    /// One entry per piece: its crc32 in 8 hex digits, or null while unknown.
    piece_digests: Vec<Option<PieceDigest>>,
    /// Hex of the finished bitmap: piece i is bit (i % 8) of byte i / 8.
    finished: String,
    completed: bool,
    last_access_unix_ms: u64,
    /// Absent in files of earlier versions: their content is re-checked once.
    #[serde(default)]
    content_mtime_ns: Option<u64>,
}

pub fn encode(meta: &TaskMeta) -> Vec<u8> {
    let mut bitmap = vec![0u8; (meta.piece_count() as usize).div_ceil(8)];
    for p in meta.finished.iter() {
        bitmap[p as usize / 8] |= 1 << (p % 8);
    }
    let file = MetaFile {
        format: META_FORMAT,
        task_id: meta.id.to_hex(),
        url: meta.url.clone(),
        content_bytes: meta.content_bytes,
        piece_bytes: meta.piece_bytes,
        piece_count: meta.piece_count(),
        content_digest: meta.content_digest.map(|d| d.to_oci()),
        piece_digests: meta.piece_digests.clone(),
        finished: hex_encode(&bitmap),
        completed: meta.completed,
        last_access_unix_ms: meta.last_access_unix_ms,
        content_mtime_ns: meta.content_mtime_ns,
    };
    serde_json::to_vec(&file).expect("metadata serializes: plain data only")
}

/// Parses and checks a metadata file; the error names what is inconsistent.
pub fn decode(bytes: &[u8]) -> Result<TaskMeta, String> {
    let file: MetaFile = serde_json::from_slice(bytes).map_err(|e| format!("not valid metadata JSON: {e}"))?;
    if file.format != META_FORMAT {
        return Err(format!("format {} is not the supported format {META_FORMAT}", file.format));
    }
    let id = TaskId::from_hex(&file.task_id).map_err(|e| e.to_string())?;
    if file.piece_bytes == 0 {
        return Err("piece_bytes is 0".into());
    }
    let expected_count = file.content_bytes.div_ceil(file.piece_bytes);
    if expected_count != file.piece_count as u64 || file.piece_digests.len() != file.piece_count as usize {
        return Err(format!(
            "piece_count {} and {} digests do not match content_bytes {} / piece_bytes {}",
            file.piece_count,
            file.piece_digests.len(),
            file.content_bytes,
            file.piece_bytes
        ));
    }
    let content_digest = match &file.content_digest {
        Some(text) => Some(Sha256Digest::from_oci(text).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut bitmap = vec![0u8; (file.piece_count as usize).div_ceil(8)];
    hex_decode_into(&file.finished, &mut bitmap)
        .map_err(|_| format!("finished bitmap is not {} hex digits", bitmap.len() * 2))?;
    let mut finished = PieceSet::new(file.piece_count);
    for piece in 0..file.piece_count {
        if bitmap[piece as usize / 8] & (1 << (piece % 8)) != 0 {
            if file.piece_digests[piece as usize].is_none() {
                return Err(format!("piece {piece} is marked finished but has no digest"));
            }
            finished.insert(piece);
        }
    }
    if file.completed && !finished.is_full() {
        return Err("marked completed but not every piece is finished".into());
    }
    Ok(TaskMeta {
        id,
        url: file.url,
        content_bytes: file.content_bytes,
        piece_bytes: file.piece_bytes,
        content_digest,
        piece_digests: file.piece_digests,
        finished,
        completed: file.completed,
        last_access_unix_ms: file.last_access_unix_ms,
        content_mtime_ns: file.content_mtime_ns,
    })
}

/// Replaces `dir/meta.json` atomically.
pub fn write_atomic(dir: &Path, meta: &TaskMeta) -> Result<(), StoreError> {
    let tmp = dir.join(META_TMP_FILE);
    let dest = dir.join(META_FILE);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { task: Some(meta.id), path, op, source }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("create metadata temp file", &tmp))?;
    file.write_all(&encode(meta)).map_err(io("write metadata temp file", &tmp))?;
    file.sync_all().map_err(io("fsync metadata temp file", &tmp))?;
    drop(file);
    fs::rename(&tmp, &dest).map_err(io("rename metadata temp file into place", &dest))?;
    sync_dir(dir).map_err(io("fsync task directory", dir))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskMeta {
        let mut finished = PieceSet::new(3);
        finished.insert(0);
        finished.insert(2);
        TaskMeta {
            id: TaskId::from_bytes([7; 32]),
            url: "http://h/x".into(),
            content_bytes: 10,
            piece_bytes: 4,
            content_digest: Some(Sha256Digest::of(b"all")),
            piece_digests: vec![Some(PieceDigest::of(b"a")), None, Some(PieceDigest::of(b"c"))],
            finished,
            completed: false,
            last_access_unix_ms: 42,
            content_mtime_ns: Some(1_700_000_000_123_456_789),
        }
    }

    #[test]
    fn round_trip_and_piece_lengths() {
        let meta = sample();
        assert_eq!(decode(&encode(&meta)).unwrap(), meta);
        assert_eq!((meta.piece_len(0), meta.piece_len(2), meta.piece_len(3)), (4, 2, 0));
        assert_eq!(meta.finished_bytes(), 6);
    }

    #[test]
    fn inconsistent_files_are_refused_with_a_reason() {
        let text = String::from_utf8(encode(&sample())).unwrap();
        let bad = |from: &str, to: &str| decode(text.replacen(from, to, 1).as_bytes()).unwrap_err();
        assert!(bad("\"format\":2", "\"format\":9").contains("format 9"));
        assert!(bad("\"content_bytes\":10", "\"content_bytes\":100").contains("piece_count"));
        assert!(bad("\"finished\":\"05\"", "\"finished\":\"07\"").contains("piece 1"));
        assert!(bad("\"finished\":\"05\"", "\"finished\":\"zz\"").contains("hex"));
        assert!(bad("\"completed\":false", "\"completed\":true").contains("completed"));
        assert!(decode(b"{").unwrap_err().contains("JSON"));
    }
}
