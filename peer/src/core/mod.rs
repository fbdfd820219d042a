//! Sans-IO peer core: the download plan of one task (`plan`), what an in-order reader
//! wants next (`readahead`), registry answers shared by a mirror's requests (`resolve`), upload admission (`upload`), and the per-policy settings (`config`). No I/O, no clock, no OS randomness.
mod availability;
pub mod config;
pub mod plan;
pub mod preheat;
pub mod readahead;
pub mod resolve;
pub mod upload;

pub use config::{ConnLifecycle, PeerConfig, PieceSelection, PieceSizing};
pub use plan::{PeerAction, Source, TaskDownload};
pub use preheat::PreheatLimits;
pub use readahead::ReadAhead;
pub use resolve::{Addressing, ResolveCache, ResolveRule};
pub use upload::UploadSlots;
