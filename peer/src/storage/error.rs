//! Errors of the piece store. Each names the task and, for file trouble, the file.

use super::digest::{PieceDigest, Sha256Digest};
use crate::task_id::TaskId;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}{}: {source}", task_suffix(task))]
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

fn task_suffix(task: &Option<TaskId>) -> String {
    task.map(|t| format!(" (task {t})")).unwrap_or_default()
}
