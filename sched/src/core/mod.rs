//! Sans-IO scheduler core: no I/O, no clock (time is an argument), no OS randomness (a
//! seeded `ChaCha8Rng` is injected). The gRPC service and the simulator both drive it.
pub mod bitset;
pub mod config;
pub mod dag;
pub mod decision;
pub mod fed;
pub mod hashring;
pub mod ids;
pub mod overlay;
pub mod policy;
pub mod records;
pub mod scheduler;
pub mod select;
pub mod tree;

pub use bitset::PieceSet;
pub use config::SchedulerConfig;
pub use decision::{BackToSourceReason, Decision, FailReason, ParentRef, Stripe};
pub use ids::{HostId, PeerId, TaskId, TimeNs, NS_PER_MS, NS_PER_S};
pub use policy::Policy;
pub use records::{HostInfo, HostKind, PeerState};
pub use scheduler::{HostLeft, PieceReport, RegisterPeer, SchedError, SchedStats, Scheduler};
