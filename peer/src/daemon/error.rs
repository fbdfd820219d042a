//! Why a download failed, in words for the user and as a class for exit codes and gRPC
//! statuses.

use crate::origin::OriginError;
use crate::storage::StoreError;
use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (URL, scheme, digest, header).
    InvalidInput,
    /// The origin says the content does not exist.
    NotFound,
    /// The origin refused our credentials.
    Denied,
    /// The origin (or everything else) cannot be reached or keeps failing.
    Unavailable,
    /// The disk quota cannot hold the task.
    NoSpace,
    /// The content does not match the digest asked for.
    DigestMismatch,
    /// A byte range past the end of the content.
    OutOfRange,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DownloadError {
    pub kind: ErrorKind,
    pub message: String,
}

impl DownloadError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> DownloadError {
        DownloadError { kind, message: message.into() }
    }

    pub fn to_status(&self) -> Status {
        let code = match self.kind {
            ErrorKind::InvalidInput => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Denied => Code::PermissionDenied,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::NoSpace => Code::ResourceExhausted,
            ErrorKind::DigestMismatch => Code::DataLoss,
            ErrorKind::OutOfRange => Code::OutOfRange,
            ErrorKind::Internal => Code::Internal,
        };
        Status::new(code, self.message.clone())
    }
}

impl From<OriginError> for DownloadError {
    fn from(e: OriginError) -> DownloadError {
        let kind = match &e {
            OriginError::UnsupportedScheme { .. }
            | OriginError::InvalidUrl { .. }
            | OriginError::AddressRefused { .. } => ErrorKind::InvalidInput,
            OriginError::NotFound { .. } => ErrorKind::NotFound,
            OriginError::Forbidden { .. } => ErrorKind::Denied,
            OriginError::Config(_) => ErrorKind::Internal,
            _ => ErrorKind::Unavailable,
        };
        DownloadError::new(kind, e.to_string())
    }
}

impl From<StoreError> for DownloadError {
    fn from(e: StoreError) -> DownloadError {
        let kind = match &e {
            StoreError::QuotaExceeded { .. } => ErrorKind::NoSpace,
            StoreError::ContentDigestMismatch(_) => ErrorKind::DigestMismatch,
            StoreError::Io { source, .. } if source.raw_os_error() == Some(28) => ErrorKind::NoSpace,
            _ => ErrorKind::Internal,
        };
        DownloadError::new(kind, e.to_string())
    }
}

/// A blocking task that could not run (the runtime is going away).
impl From<std::io::Error> for DownloadError {
    fn from(e: std::io::Error) -> DownloadError {
        DownloadError::new(ErrorKind::Internal, e.to_string())
    }
}
