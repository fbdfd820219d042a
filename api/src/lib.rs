//! The scheduler's gRPC contract: `proto/scheduler.proto` (and the peer daemon's local API,
//! `proto/daemon.proto`) and the tonic code generated from
//! it. Clients (peer and seed daemons) use `pb::scheduler_client::SchedulerClient`; the
//! scheduler implements `pb::scheduler_server::Scheduler`.
//!
//! Compiles unchanged under madsim (`RUSTFLAGS="--cfg madsim"`): `include_proto!` then
//! picks the simulated code that madsim-tonic-build writes next to the real one.
#![forbid(unsafe_code)]

pub mod pb {
    tonic::include_proto!("p2pimg.scheduler.v1");
}

/// The peer daemon's local API (`proto/daemon.proto`), for `dfget` and other local clients.
pub mod daemon_pb {
    tonic::include_proto!("p2pimg.daemon.v1");
}

pub use pb::scheduler_client::SchedulerClient;
pub use pb::scheduler_server::{Scheduler, SchedulerServer};
