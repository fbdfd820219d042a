//! Mutual TLS for cluster traffic: the scheduler's gRPC, the peers' data plane and a local
//! API that is not on loopback.
//!
//! Every component reads the same three PEM files from its `[tls]` table: its own
//! certificate chain and key, and the cluster CA. A server then accepts only clients whose
//! certificate chains to that CA, and a client accepts only servers whose certificate
//! chains to it and names `server_name` (or, without it, the host it dialed). Dropping
//! certificates from a component's files, or a certificate from another CA, gets its
//! connections refused: the refusing side logs one line naming the address and rustls'
//! reason, and counts it (`Tls::refused`, exported as `tls_handshake_failures_total`).
//!
//! The files are re-read when they change (checked at most once a second, on the next
//! connection), so cert-manager's renewals take effect without a restart; a renewal that
//! does not load (a key that does not match its certificate, a half-written file) is
//! logged and the previous certificates stay in use.
//!
//! Under `--cfg madsim` there is no TLS: `Tls::load` refuses with a message saying so.

use serde::Deserialize;
use std::path::PathBuf;

/// `[tls]` of scheduler.toml and peerd.toml. All three files are required together.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// This component's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The cluster CA (PEM, one or more certificates): peers and clients must chain to it.
    pub ca_file: PathBuf,
    /// The DNS name every server certificate of the cluster carries (e.g.
    /// `p2pimg.cluster.local`); checked instead of the dialed host, which for peers is an
    /// address that changes with every pod. Unset: the dialed host (name or IP) is checked.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Why `[tls]` does not load: the key of the table at fault and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub key: &'static str,
    pub message: String,
}

impl LoadError {
    pub fn new(key: &'static str, message: String) -> LoadError {
        LoadError { key, message }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tls.{}: {}", self.key, self.message)
    }
}

impl std::error::Error for LoadError {}

/// Which listener refused a handshake (the metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Grpc,
    Data,
    LocalApi,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::Grpc, Listener::Data, Listener::LocalApi];

    pub fn name(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::Data => "data",
            Listener::LocalApi => "local_api",
        }
    }
}

#[cfg(not(madsim))]
mod real;
#[cfg(all(not(madsim), any(test, feature = "test-certs")))]
pub mod test_certs;
#[cfg(all(test, not(madsim)))]
mod tests;
#[cfg(not(madsim))]
pub use real::*;

#[cfg(madsim)]
mod sim {
    use super::{Listener, LoadError, TlsSection};

    /// Stand-in under madsim: never loads.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Tls(());

    impl Tls {
        pub fn load(_section: &TlsSection) -> Result<Tls, LoadError> {
            let why = "TLS is not available in the madsim build (its network is simulated); remove [tls]";
            Err(LoadError::new("cert_file", why.into()))
        }

        pub fn refused(&self, _listener: Listener) -> u64 {
            0
        }

        pub fn reloads(&self) -> u64 {
            0
        }
    }
}
#[cfg(madsim)]
pub use sim::*;
