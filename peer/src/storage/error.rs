//! Errors of the piece store. Each names the task and, for file trouble, the file.

use super::digest::{PieceDigest, Sha256Digest};
use crate::task_id::TaskId;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// On a full disk (ENOSPC, EDQUOT) the message says so and what to do.
    #[error("{op} {path}{}: {source}{}", task_suffix(task), full_disk_hint(source))]
    Io { task: Option<TaskId>, path: PathBuf, op: &'static str, source: std::io::Error },

    #[error("store configuration: {reason}")]
    Config { reason: String },

    #[error("task {task} is not in the store")]
    TaskNotFound { task: TaskId },

    #[error("{0}")]
    TaskMismatch(Box<TaskMismatch>),

    #[error("task {task}: {reason}")]
    InvalidTask { task: TaskId, reason: String },

    #[error("task {task}: piece {piece} does not exist (the task has {piece_count} pieces)")]
    NoSuchPiece { task: TaskId, piece: u32, piece_count: u32 },

    #[error("task {task}: piece {piece} must be {expected} bytes, got {actual}")]
    WrongPieceLength { task: TaskId, piece: u32, expected: u64, actual: u64 },

    /// The bytes offered for a piece do not match the digest expected for it; nothing was
    /// written.
    #[error("task {task}: piece {piece} has {actual}, expected {expected}; not written")]
    PieceDigestMismatch { task: TaskId, piece: u32, expected: PieceDigest, actual: PieceDigest },

    #[error("task {task}: piece {piece} is not finished in this store")]
    PieceNotFinished { task: TaskId, piece: u32 },

    /// A finished piece no longer matches its digest on disk. It has been dropped from the
    /// finished bitmap and must be fetched again; its bytes were not returned.
    #[error("task {task}: piece {piece} in {path} is corrupt ({reason}); dropped from the finished pieces")]
    CorruptPiece { task: TaskId, piece: u32, path: PathBuf, reason: String },

    #[error(
        "task {task}: writing {needed_bytes} bytes would exceed the store quota \
         ({used_bytes} of {quota_bytes} bytes used); run garbage collection or raise quota_bytes"
    )]
    QuotaExceeded { task: TaskId, needed_bytes: u64, used_bytes: u64, quota_bytes: u64 },

    #[error("task {task}: {missing} of {piece_count} pieces are not finished")]
    Incomplete { task: TaskId, missing: u32, piece_count: u32 },

    /// The whole content does not match the task's digest (rare: boxed to keep results small).
    #[error("{0}")]
    ContentDigestMismatch(Box<ContentDigestMismatch>),

    #[error("task {task} is in use ({pins} pins) and cannot be removed now")]
    InUse { task: TaskId, pins: u32 },
}

/// `create_task` found the task with other lengths or digest.
#[derive(Debug, thiserror::Error)]
#[error(
    "task {task} already exists with content_bytes {have_content_bytes} / piece_bytes {have_piece_bytes} / digest {have_digest:?}, \
     not {content_bytes} / {piece_bytes} / {digest:?}: remove it first"
)]
pub struct TaskMismatch {
    pub task: TaskId,
    pub have_content_bytes: u64,
    pub have_piece_bytes: u64,
    pub have_digest: Option<Sha256Digest>,
    pub content_bytes: u64,
    pub piece_bytes: u64,
    pub digest: Option<Sha256Digest>,
}

/// The whole content does not match the task's digest. Pieces found corrupt on the re-check
/// were dropped; if none were, the recorded piece digests themselves were wrong, and every
/// piece was dropped.
#[derive(Debug, thiserror::Error)]
#[error("task {task}: content {path} has sha256 {actual}, expected {expected}; dropped pieces {dropped_pieces:?}")]
pub struct ContentDigestMismatch {
    pub task: TaskId,
    pub path: PathBuf,
    pub expected: Sha256Digest,
    pub actual: Sha256Digest,
    pub dropped_pieces: Vec<u32>,
}

/// ENOSPC and EDQUOT: what the operator can do about them.
fn full_disk_hint(source: &std::io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(28 | 122) => {
            "; the filesystem holding the store (storage.dir) is full: free space there, or set storage.quota_bytes \
             below its free space, then download again (the pieces already stored are kept)"
        }
        _ => "",
    }
}

fn task_suffix(task: &Option<TaskId>) -> String {
    task.map(|t| format!(" (task {t})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_names_the_file_and_says_what_to_do() {
        let full = StoreError::Io {
            task: None,
            path: PathBuf::from("/var/lib/p2pimg/peer/tasks/ab/content"),
            op: "write piece to",
            source: std::io::Error::from_raw_os_error(28),
        };
        let text = full.to_string();
        assert!(text.starts_with("write piece to /var/lib/p2pimg/peer/tasks/ab/content: "), "{text}");
        assert!(text.contains("No space left on device"), "{text}");
        assert!(text.contains("storage.dir) is full: free space there"), "{text}");
        let other = StoreError::Io {
            task: None,
            path: PathBuf::from("/x"),
            op: "read piece from",
            source: std::io::Error::from_raw_os_error(5),
        };
        assert!(!other.to_string().contains("full"), "{other}");
    }
}
