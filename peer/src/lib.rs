//! The peer. `core` plans one task's download on one host (sans-IO). The rest are the
//! daemon's I/O building blocks: `task_id` (which downloads are one task), `storage` (the
//! piece store on disk), `dataplane` (piece metadata and bytes between peers over framed TCP)
//! and `origin` (back-to-source reads behind a trait).
pub mod core;
pub mod daemon;
pub mod dataplane;
pub mod origin;
pub mod storage;
pub mod task_id;
#[cfg(test)]
mod test_data;
