//! Plumbing shared by the scheduler service and the peer daemon (see README.md).

pub mod config_file;
pub mod logging;
pub mod probe_http;
#[cfg(not(madsim))]
pub mod signals;
pub mod toml_spans;

pub use config_file::{read_text, ConfigError, ConfigFile};
pub use logging::{init_logging, LogConfig, LogFormat};
