//! The lean data plane between peers: piece maps and piece bytes over framed TCP, not gRPC.
//!
//! - `Server` (the parent side) answers two requests from the store: SyncPieces (the task's
//!   lengths, finished bitmap and the digests the child does not know yet; a long poll that
//!   returns as soon as a piece finishes, like Dragonfly's SyncPieces stream) and GetPiece
//!   (header with length and sha256, then the bytes, re-verified on the way out of the store).
//!   Uploads are admitted through `core::UploadSlots` and paced by a token bucket.
//! - `PeerClient` (the child side) pools up to a few connections per parent, pipelines a few
//!   requests on each (replies carry the request id and may come in any order), paces
//!   downloads with its own token bucket, and checks every piece against the digest the
//!   parent advertised; a mismatch is `FetchError::BadDigest` naming the parent.
//! - Grants (`grants`, `svc::grant`): with a cluster key, a parent serves a task only on a
//!   connection that presented the scheduler's grant for it; the client presents the grant
//!   it was given (`PeerClient::set_grant`) before its first request for the task.
//!
//! Wire format: `frame`. Sockets and time come from `tokio` (madsim-tokio), so the same code
//! runs on madsim's simulated network and virtual time when built with `--cfg madsim`.

pub mod client;
mod conn;
pub mod frame;
pub mod grants;
pub(crate) mod io;
pub mod ratelimit;
pub mod server;
pub mod slots;
#[cfg(test)]
mod tests;

pub use client::{BadDigest, ClientConfig, FetchError, ParentPieces, PeerClient, PieceUpdate};
pub use frame::{ErrorCode, ProtocolError};
pub use ratelimit::{RateLimit, TokenBucket};
pub use server::{Server, ServerConfig, ServerError, ServerStats};
pub use slots::{UploadGate, UploadSlot};
