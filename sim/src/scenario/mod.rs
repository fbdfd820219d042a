//! Scenario files: model, loading, validation.
mod model;
pub use model::*;
