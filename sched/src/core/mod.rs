//! Sans-IO scheduler core.
pub mod policy;
