//! The peer. `core` plans one task's download on one host (sans-IO). The rest are the
//! daemon's I/O building blocks: `task_id` (which downloads are one task), `storage` (the
//! piece store on disk), `dataplane` (piece metadata and bytes between peers over framed TCP)
//! and `origin` (back-to-source reads behind a trait).
//!
//! Only `core` is built without the "daemon" feature (on by default): the simulator uses the
//! crate that way, with no tokio, tonic, hyper or reqwest in its build.
#![deny(unsafe_code)]
pub mod core;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod dataplane;
#[cfg(feature = "daemon")]
pub mod origin;
#[cfg(feature = "daemon")]
pub mod storage;
#[cfg(feature = "daemon")]
pub mod task_id;
#[cfg(all(test, feature = "daemon"))]
mod test_data;
