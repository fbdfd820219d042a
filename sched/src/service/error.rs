//! What the service refuses, and the gRPC status each refusal becomes. Every message names
//! the id or field at fault and, where there is one, what would fix it.

use super::ids::Exhausted;
use crate::core::SchedError;
use tonic::Status;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A request field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidField { field: &'static str, problem: String },
    #[error("host {0:?} is not announced; call AnnounceHost first")]
    UnknownHost(String),
    #[error("task {0:?} is not known to this scheduler")]
    UnknownTask(String),
    #[error("peer {0:?} is not known to this scheduler")]
    UnknownPeer(String),
    #[error("peer {0:?} is already registered (downloading or serving); use a new peer id per download, or LeavePeer it first")]
    PeerExists(String),
    #[error("task {task:?} was registered with {field} = {known}, this registration says {got}")]
    TaskMismatch { task: String, field: &'static str, known: u64, got: u64 },
    #[error("host {0:?} is announced as a normal host; only seed hosts can watch seed tasks")]
    NotSeedHost(String),
    #[error("the first AnnouncePeer message must be `register`, got `{0}`")]
    NotRegistered(&'static str),
    #[error("this AnnouncePeer stream already registered peer {0:?}; open a new stream per download")]
    AlreadyRegistered(String),
    #[error("AnnouncePeer message has no request set")]
    EmptyRequest,
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    /// An admission limit of `[service]` would be passed.
    #[error("{what}: the scheduler's limit is {limit} (service.{key}); retry later, or raise service.{key}")]
    Admission { key: &'static str, limit: usize, what: String },
    #[error(transparent)]
    PreheatFull(#[from] super::preheat::jobs::Full),
    /// The core refused a request the service let through (a service bug, or a race the
    /// service does not screen for).
    #[error("scheduler core: {0}")]
    Core(#[from] SchedError),
}

impl ServiceError {
    pub fn field(field: &'static str, problem: impl Into<String>) -> ServiceError {
        ServiceError::InvalidField { field, problem: problem.into() }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let message = e.to_string();
        match e {
            ServiceError::InvalidField { .. }
            | ServiceError::TaskMismatch { .. }
            | ServiceError::NotRegistered(_)
            | ServiceError::AlreadyRegistered(_)
            | ServiceError::EmptyRequest => Status::invalid_argument(message),
            ServiceError::UnknownHost(_) | ServiceError::UnknownTask(_) | ServiceError::UnknownPeer(_) => {
                Status::not_found(message)
            }
            ServiceError::PeerExists(_) => Status::already_exists(message),
            ServiceError::NotSeedHost(_) => Status::failed_precondition(message),
            ServiceError::Exhausted(_) | ServiceError::Admission { .. } | ServiceError::PreheatFull(_) => {
                Status::resource_exhausted(message)
            }
            ServiceError::Core(
                SchedError::PieceOutOfRange { .. }
                | SchedError::PieceCountMismatch { .. }
                | SchedError::CompletedWithBackToSource(_),
            ) => Status::invalid_argument(message),
            ServiceError::Core(_) => Status::internal(message),
        }
    }
}
