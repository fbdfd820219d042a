//! Identifiers and time. The core uses dense numeric handles chosen by its driver; the
//! service maps wire ids (task sha256, peer UUID) to them, the simulator allocates them.

use serde::{Deserialize, Serialize};

/// Virtual or real time, in nanoseconds since an epoch the driver picks.
pub type TimeNs = u64;

pub const NS_PER_MS: u64 = 1_000_000;
pub const NS_PER_S: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId(pub u32);
