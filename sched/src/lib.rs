//! The scheduler. `core` decides (sans-IO: no I/O, no clock, no OS randomness); `service`
//! (feature "service", on by default) is the gRPC service that drives it in production.
//! The simulator depends on this crate without that feature.
#![forbid(unsafe_code)]

pub mod core;
#[cfg(feature = "service")]
pub mod service;

pub use crate::core::policy::Policy;
