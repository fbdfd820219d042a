//! Scenario files: model, loading, validation.
mod churn;
mod cores;
mod cpu;
mod edit;
mod groups;
mod limits;
mod load;
mod locate;
mod model;
mod validate;
mod workloads;

pub use churn::{Churn, ChurnAction, ChurnEvent, NodeGoes};
pub use cores::core_configs;
pub use cpu::Cpu;
pub use edit::{Num, ScenarioFile};
pub use groups::{GroupLayout, NodeGroup, IMPLICIT_GROUP};
pub use limits::{machine_available_bytes, mode_bytes, without_machine_memory_check};
pub use limits::{LAYERS_MAX, PIECES_PER_BLOB_MAX, PODS_MAX};
pub use load::{load_scenario, parse_scenario, ErrorKind, ScenarioError};
pub use model::*;
pub use workloads::{PodCount, Rolling, Rollout, Strategy, Workload, WorkloadLayout, IMPLICIT_WORKLOAD};

#[cfg(test)]
mod test_errors;
#[cfg(test)]
mod tests;
