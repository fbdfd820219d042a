//! Preheat (issue 24 item 3): an image's blobs fetched by the seed peers before a rollout
//! asks for them, so the rollout reads nothing from the registry. The scheduler owns the
//! jobs; a seed peer does the registry work (`peer/src/daemon/preheat/`).
//!
//! | file | what |
//! |---|---|
//! | `jobs.rs` | the job table: ids from (image, platform), states, reports, timeouts, bound |
//! | `orders.rs` | jobs in the service state: ordering a seed, its `ReportPreheat` calls |
//! | `api.rs` | `POST /api/v1/preheat`, `GET /api/v1/jobs[/ID]`, the Harbor webhook |
//! | `harbor.rs` | Harbor's push events |
//! | `auth.rs` | `[preheat] auth_file`: the POSTs' shared secret |

pub mod api;
pub mod auth;
pub mod harbor;
pub mod jobs;
mod orders;

pub use auth::AuthSecret;
pub use jobs::{Job, JobLimits, JobState, Jobs};
pub use orders::unix_now_ms;

use svc::image_ref::Platform;

/// What the HTTP side of preheat needs from `[preheat]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreheatConfig {
    /// For requests that name none, and for Harbor's events.
    pub platform: Platform,
    /// None: anyone who reaches the HTTP port may start preheats.
    pub auth: Option<AuthSecret>,
}
