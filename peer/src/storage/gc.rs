//! Garbage collection: by age (last access) and by space, least recently used first, never a
//! pinned task.

use super::{lock, Store, StoreError};
use crate::task_id::TaskId;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcPolicy {
    /// Evict tasks not accessed for longer than this.
    pub max_idle_ms: Option<u64>,
    /// Then evict, least recently used first, until `used_bytes` is at most this (for
    /// example 80 % of the quota, so that new downloads have room).
    pub target_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcReason {
    Idle,
    Space,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub task: TaskId,
    /// Bytes of finished pieces freed.
    pub bytes: u64,
    pub last_access_unix_ms: u64,
    pub completed: bool,
    pub reason: GcReason,
}

#[derive(Debug, Default)]
pub struct GcReport {
    /// In eviction order. The daemon tells the scheduler about each.
    pub evicted: Vec<Evicted>,
    /// Tasks that the policy would have evicted but are pinned.
    pub skipped_in_use: Vec<TaskId>,
    /// Evicted tasks whose files could not be deleted (they are out of the store anyway;
    /// the trash is emptied again on the next open).
    pub delete_errors: Vec<StoreError>,
    pub used_bytes_after: u64,
}

impl Store {
    pub fn gc(&self, policy: &GcPolicy) -> GcReport {
        let now = self.clock.now_unix_ms();
        let mut report = GcReport::default();
        let mut trash: Vec<(TaskId, PathBuf)> = Vec::new();
        {
            let mut tasks = lock(&self.tasks);
            let mut candidates: Vec<(u64, TaskId, u64, bool, u32)> = tasks
                .values()
                .map(|e| {
                    let s = lock(&e.state);
                    let pins = e.pins.load(Ordering::Acquire);
                    (s.meta.last_access_unix_ms, e.id, s.meta.finished_bytes(), s.meta.completed, pins)
                })
                .collect();
            candidates.sort();
            let mut used = self.used_bytes();
            for (last_access, id, bytes, completed, pins) in candidates {
                let idle = policy.max_idle_ms.is_some_and(|max| now.saturating_sub(last_access) > max);
                let over = policy.target_bytes.is_some_and(|target| used > target);
                let reason = match (idle, over) {
                    (true, _) => GcReason::Idle,
                    (false, true) => GcReason::Space,
                    (false, false) => continue,
                };
                if pins > 0 {
                    report.skipped_in_use.push(id);
                    continue;
                }
                let entry = tasks.remove(&id).expect("candidate listed under the same lock");
                match self.unlink_locked(&entry) {
                    Ok(path) => trash.push((id, path)),
                    Err(e) => report.delete_errors.push(e),
                }
                used = used.saturating_sub(bytes);
                report.evicted.push(Evicted { task: id, bytes, last_access_unix_ms: last_access, completed, reason });
            }
        }
        for (id, path) in trash {
            if let Err(source) = fs::remove_dir_all(&path) {
                report.delete_errors.push(StoreError::Io { task: Some(id), path, op: "delete evicted task", source });
            }
        }
        report.used_bytes_after = self.used_bytes();
        report
    }
}
