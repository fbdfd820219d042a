//! The `[origin]` section of the daemon's configuration. It is read in both builds; under
//! `--cfg madsim` no HTTP origin uses it (a simulated origin stands in).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpOriginConfig {
    /// Accept any certificate. Only for a registry you trust on a network you trust.
    pub insecure_skip_verify: bool,
    /// Extra CA certificates (PEM files) trusted besides the webpki and system roots.
    pub ca_cert_files: Vec<PathBuf>,
    pub connect_timeout_ms: u64,
    /// Longest silence while reading a response.
    pub read_timeout_ms: u64,
    pub user_agent: String,
    /// Internal networks the origin may reach (`addr/prefix`, or one address): loopback,
    /// link-local, private and the like are refused otherwise (`origin::address_policy`).
    pub allowed_networks: Vec<String>,
    /// Hosts reached wherever they point: the daemon fills it with its
    /// `[[mirror.registries]]` endpoints. Not a key of the file.
    #[serde(skip)]
    pub trusted_hosts: Vec<String>,
}

impl Default for HttpOriginConfig {
    fn default() -> Self {
        HttpOriginConfig {
            insecure_skip_verify: false,
            ca_cert_files: Vec::new(),
            connect_timeout_ms: 10_000,
            read_timeout_ms: 60_000,
            user_agent: concat!("p2pimg-peer/", env!("CARGO_PKG_VERSION")).into(),
            allowed_networks: Vec::new(),
            trusted_hosts: Vec::new(),
        }
    }
}
