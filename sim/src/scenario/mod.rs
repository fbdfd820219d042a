//! Scenario files: model, loading, validation.
mod load;
mod locate;
mod model;
mod validate;

pub use load::{load_scenario, parse_scenario, ErrorKind, ScenarioError};
pub use model::*;

#[cfg(test)]
mod tests;
