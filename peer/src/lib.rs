//! The peer. `core` plans one task's download on one host (sans-IO).
pub mod core;
