//! Plumbing shared by the scheduler service and the peer daemon (see README.md).
#![forbid(unsafe_code)]

pub mod config_file;
pub mod grant;
pub mod image_ref;
pub mod logging;
pub mod probe_http;
pub mod redact;
#[cfg(not(madsim))]
pub mod signals;
pub mod tls;
pub mod toml_spans;
pub mod watch;

pub use config_file::{read_text, ConfigError, ConfigFile};
pub use logging::{init_logging, LogConfig, LogFormat};

/// After the default report, a panic ends the process with exit code 101: a panicked task
/// may have left shared state half-updated, so stop and let the supervisor restart us.
pub fn exit_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
}

/// `tokio::select!`, except that under `--cfg madsim` the branches are polled in the
/// order written (`biased;`). Tokio seeds its random branch order from a process-wide
/// counter that madsim's seeded generator does not cover, so the same seed polled branches
/// in another order when replayed alone than inside a batch, and the determinism check's
/// second run diverged from its first. The real build keeps tokio's random order.
#[cfg(not(madsim))]
#[macro_export]
macro_rules! select {
    ($($t:tt)*) => { ::tokio::select! { $($t)* } };
}

/// See the real build's `select!`.
#[cfg(madsim)]
#[macro_export]
macro_rules! select {
    ($($t:tt)*) => { ::tokio::select! { biased; $($t)* } };
}
