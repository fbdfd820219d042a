//! The grants one connection presented (the parent side): which tasks the child may read.
//! Owned by the connection's reader loop, which checks each request before running it, so
//! a Grant frame always applies to the requests after it. No lock, no I/O.

use crate::task_id::TaskId;
use std::collections::HashMap;
use svc::grant::{Grant, GrantKey, GrantRefusal};

/// Grants one connection holds at once. A child reads a handful of tasks from one parent at
/// a time (`max_syncs_per_connection`, 16 by default, long polls per connection), so 256
/// leaves room for many image layers while bounding a connection's table to about 16 KiB
/// (and 16 MiB at `max_connections` 1024). When it is full the grant expiring first goes;
/// its child is refused once and presents it again.
pub const MAX_GRANTS_PER_CONNECTION: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    Valid {
        expires_unix_s: u64,
    },
    /// The last grant presented for the task did not check out.
    Refused(GrantRefusal),
}

#[derive(Debug, Default)]
pub struct ConnGrants {
    tasks: HashMap<TaskId, Presented>,
}

impl ConnGrants {
    /// Checks a presented grant and records the outcome for its task (a later grant for a
    /// task replaces the earlier one, so a fresh grant renews it).
    pub fn present(&mut self, key: &GrantKey, grant: &Grant, now_unix_s: u64) {
        let task = TaskId::from_bytes(grant.task);
        let outcome = match key.verify(grant, &grant.task, now_unix_s) {
            Ok(()) => Presented::Valid { expires_unix_s: grant.expires_unix_s },
            Err(refusal) => Presented::Refused(refusal),
        };
        if !self.tasks.contains_key(&task) && self.tasks.len() >= MAX_GRANTS_PER_CONNECTION {
            self.make_room(now_unix_s);
        }
        self.tasks.insert(task, outcome);
    }

    /// Drops what no longer opens anything; if nothing did, the grant expiring first (a
    /// refusal counts as expired).
    fn make_room(&mut self, now_unix_s: u64) {
        self.tasks.retain(|_, p| matches!(p, Presented::Valid { expires_unix_s } if *expires_unix_s > now_unix_s));
        if self.tasks.len() >= MAX_GRANTS_PER_CONNECTION {
            let first = self.tasks.iter().min_by_key(|(t, p)| (expiry(p), *t.as_bytes())).map(|(t, _)| *t);
            if let Some(task) = first {
                self.tasks.remove(&task);
            }
        }
    }

    /// Whether the connection may read `task` now; the error says why not.
    pub fn check(&self, task: &TaskId, now_unix_s: u64) -> Result<(), String> {
        match self.tasks.get(task) {
            Some(Presented::Valid { expires_unix_s }) if now_unix_s < *expires_unix_s => Ok(()),
            Some(Presented::Valid { expires_unix_s }) => Err(format!(
                "task {task}: the grant on this connection expired at unix second {expires_unix_s} (now {now_unix_s}); the scheduler sends a fresh one with the next Parents"
            )),
            Some(Presented::Refused(refusal)) => Err(format!("task {task}: the grant presented was refused: {refusal}")),
            None => Err(format!(
                "task {task}: no grant for it on this connection ({} grants for other tasks); this parent serves a task only with the scheduler's grant (both need the same grant_key_file)",
                self.tasks.len()
            )),
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

fn expiry(p: &Presented) -> u64 {
    match p {
        Presented::Valid { expires_unix_s } => *expires_unix_s,
        Presented::Refused(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key() -> GrantKey {
        GrantKey::from_bytes(&[1; 32]).unwrap()
    }

    fn task(n: u32) -> [u8; 32] {
        let mut t = [0u8; 32];
        t[..4].copy_from_slice(&n.to_be_bytes());
        t
    }

    #[test]
    fn each_task_needs_its_own_valid_grant() {
        let (k, mut g) = (key(), ConnGrants::default());
        let a = TaskId::from_bytes(task(1));
        assert!(g.check(&a, NOW).unwrap_err().contains("no grant"));
        g.present(&k, &k.mint(&task(1), "h", NOW + 10), NOW);
        assert_eq!(g.check(&a, NOW), Ok(()));
        assert!(g.check(&a, NOW + 10).unwrap_err().contains("expired"));
        // A grant for task 1 does not open task 2, even one presented with task 2's id.
        let b = TaskId::from_bytes(task(2));
        assert!(g.check(&b, NOW).unwrap_err().contains("no grant"));
        let forged = Grant { task: task(2), ..k.mint(&task(1), "h", NOW + 10) };
        g.present(&k, &forged, NOW);
        assert!(g.check(&b, NOW).unwrap_err().contains("MAC"), "{:?}", g.check(&b, NOW));
        // Another cluster's key.
        let other = GrantKey::from_bytes(&[2; 32]).unwrap();
        g.present(&k, &other.mint(&task(3), "h", NOW + 10), NOW);
        assert!(g.check(&TaskId::from_bytes(task(3)), NOW).unwrap_err().contains("MAC"));
        // A fresh grant renews the task.
        g.present(&k, &k.mint(&task(1), "h", NOW + 100), NOW + 20);
        assert_eq!(g.check(&a, NOW + 20), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_latest_grant() {
        let (k, mut g) = (key(), ConnGrants::default());
        for n in 0..MAX_GRANTS_PER_CONNECTION as u32 + 50 {
            g.present(&k, &k.mint(&task(n), "h", NOW + 1_000 + u64::from(n)), NOW);
            assert!(g.len() <= MAX_GRANTS_PER_CONNECTION);
        }
        let newest = TaskId::from_bytes(task(MAX_GRANTS_PER_CONNECTION as u32 + 49));
        assert_eq!(g.check(&newest, NOW), Ok(()));
        // The ones expiring first went.
        assert!(g.check(&TaskId::from_bytes(task(0)), NOW).is_err());
        // Expired grants go before live ones.
        let mut g = ConnGrants::default();
        g.present(&k, &k.mint(&task(0), "h", NOW + 1_000_000), NOW);
        for n in 1..MAX_GRANTS_PER_CONNECTION as u32 {
            g.present(&k, &k.mint(&task(n), "h", NOW + 5), NOW);
        }
        g.present(&k, &k.mint(&task(9_999), "h", NOW + 100), NOW + 10);
        assert_eq!(g.len(), 2);
        assert_eq!(g.check(&TaskId::from_bytes(task(0)), NOW + 10), Ok(()));
    }
}
