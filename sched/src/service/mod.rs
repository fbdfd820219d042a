//! The production scheduler: a tonic gRPC service (`api::pb::scheduler_server::Scheduler`)
//! driving `crate::core::Scheduler` unchanged, plus `/metrics` and `/healthz`.
//!
//! The core sits behind one mutex in `State`, with what it does not know: wire ids
//! (`ids.rs`), host addresses, task metadata for seeds, and the open streams. Time is
//! nanoseconds since the service started (`timers::Clock`). Files:
//!
//! - `config.rs`: the TOML configuration (error lines come from the `svc` crate)
//! - `server.rs`: start, serve, shut down
//! - `grpc.rs`, `peer_stream.rs`: the RPCs and the AnnouncePeer stream driver
//! - `wire.rs`, `error.rs`: input checks, conversions, refusals as gRPC statuses
//! - `grants.rs`: the data-plane grant each Parents carries (`[service] grant_key_file`)
//! - `state.rs` (decision delivery), `peers.rs`, `seeds.rs`, `stats.rs`, `timers.rs`
//! - `metrics.rs`, `http.rs`: Prometheus metrics and the routes of `/metrics` and `/healthz`
//! - `preheat/`: preheat jobs (`POST /api/v1/preheat`, the Harbor webhook, `ReportPreheat`)
//!
//! Everything compiles under madsim (`RUSTFLAGS="--cfg madsim"`), where the gRPC server
//! binds madsim-tonic's simulated endpoint instead of a TCP listener.

pub mod config;
pub mod error;
pub mod grants;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod listing;
pub mod metrics;
mod peer_stream;
mod peers;
pub mod preheat;
mod seeds;
pub mod server;
pub mod shared;
pub mod state;
#[cfg(test)]
mod state_tests;
mod stats;
pub mod timers;
pub mod wire;

pub use config::{load, parse, ConfigError, LogConfig, LogFormat, ServiceConfig, Tuning};
pub use error::ServiceError;
pub use server::{start, Running, ServeError, StartError};
