//! The scheduler. `core` decides (sans-IO: no I/O, no clock, no OS randomness); the gRPC
//! service that drives it in production comes in `service` (a later issue).

pub mod core;

pub use crate::core::policy::Policy;
