//! Deterministic flow-level cluster simulator. It holds no scheduling or piece-selection
//! rule of its own: every decision comes from `sched::core` and `peer::core`.
#![forbid(unsafe_code)]

pub mod engine;
pub mod fidelity;
pub mod net;
pub mod report;
pub mod result;
pub mod scenario;
pub mod sweep;
