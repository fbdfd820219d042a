//! The daemon's configuration file (TOML), read and checked once at start. Every section
//! and key is optional; `peer/peerd.example.toml` lists them with their defaults. Errors are
//! one line, `FILE:LINE: KEY: what is wrong` (`svc::ConfigFile`).

use crate::dataplane::{ClientConfig, ServerConfig};
use crate::origin::HttpOriginConfig;
use crate::storage::{GcPolicy, StoreConfig};
use crate::task_id::TaskIdConfig;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use svc::{ConfigError, ConfigFile, LogConfig};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub host: HostSection,
    pub listen: ListenSection,
    pub scheduler: SchedulerSection,
    pub storage: StoreConfig,
    pub gc: GcSection,
    pub dataplane: DataplaneSection,
    pub origin: HttpOriginConfig,
    pub task_id: TaskIdConfig,
    pub download: DownloadSection,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    /// Downloads for local clients and serves other peers.
    Normal,
    /// Also fetches tasks from the origin when the scheduler asks (WatchSeedTasks).
    Seed,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSection {
    /// Stable id of this machine at the scheduler; empty: the hostname plus the data port.
    pub id: String,
    /// Empty: the system's hostname.
    pub hostname: String,
    /// The address other peers dial for pieces (the data-plane port is added).
    pub advertise_ip: IpAddr,
    pub kind: HostKind,
    pub idc: String,
    /// `area|country|province|city`, as the scheduler's location filter reads it.
    pub location: String,
    pub upload_capacity_bytes_per_s: u64,
    pub download_capacity_bytes_per_s: u64,
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            id: String::new(),
            hostname: String::new(),
            advertise_ip: IpAddr::from([127, 0, 0, 1]),
            kind: HostKind::Normal,
            idc: String::new(),
            location: String::new(),
            // 10 Gbit/s.
            upload_capacity_bytes_per_s: 1_250_000_000,
            download_capacity_bytes_per_s: 1_250_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSection {
    /// The data plane (pieces to children).
    pub data: SocketAddr,
    /// The local API (`dfget`); keep it on loopback: it reads any URL for its caller.
    pub local_api: SocketAddr,
    /// `/metrics` and `/healthz`.
    pub http: SocketAddr,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            data: SocketAddr::from(([0, 0, 0, 0], 65002)),
            local_api: SocketAddr::from(([127, 0, 0, 1], 65000)),
            http: SocketAddr::from(([0, 0, 0, 0], 65003)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSection {
    /// gRPC addresses of the scheduler replicas, `http://IP:PORT`. A task always goes to
    /// the same replica (by its id), so every peer of a task meets at one scheduler. Empty:
    /// no P2P, every download goes to the origin.
    pub addresses: Vec<String>,
    /// The host is announced again this often (load, liveness).
    pub announce_interval_ms: u64,
    pub connect_timeout_ms: u64,
    /// A scheduler call (not a stream) gives up after this.
    pub request_timeout_ms: u64,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        SchedulerSection {
            addresses: vec!["http://127.0.0.1:8002".into()],
            announce_interval_ms: 30_000,
            connect_timeout_ms: 3_000,
            request_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSection {
    pub interval_ms: u64,
    /// Tasks not read or written for this long are removed; 0: never by age.
    pub max_idle_ms: u64,
    /// Then the least recently used go until the store is at most this share of its quota.
    pub target_percent: u8,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection { interval_ms: 60_000, max_idle_ms: 7 * 24 * 3_600_000, target_percent: 80 }
    }
}

impl GcSection {
    pub fn policy(&self, quota_bytes: u64) -> GcPolicy {
        GcPolicy {
            max_idle_ms: (self.max_idle_ms > 0).then_some(self.max_idle_ms),
            target_bytes: Some(quota_bytes / 100 * u64::from(self.target_percent)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    pub server: ServerConfig,
    pub client: ClientConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownloadSection {
    /// The peer core's preset (`peer::core::PeerConfig::preset`): default | dragonfly | kraken.
    /// Use the scheduler's policy.
    pub policy: String,
    /// Piece size of new tasks (the first peer of a task decides it for everyone).
    pub piece_bytes: u64,
    /// Longest wait of one piece-map long poll to a parent.
    pub sync_wait_ms: u64,
    /// A failing origin read is retried this many times (transient errors only).
    pub origin_retries: u32,
    pub origin_retry_backoff_ms: u64,
    /// A local client keeps a finished task pinned at most this long while it copies it.
    pub hold_for_client_ms: u64,
}

impl Default for DownloadSection {
    fn default() -> Self {
        DownloadSection {
            policy: "default".into(),
            piece_bytes: 4 << 20,
            sync_wait_ms: 10_000,
            origin_retries: 3,
            origin_retry_backoff_ms: 500,
            hold_for_client_ms: 600_000,
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            host: HostSection::default(),
            listen: ListenSection::default(),
            scheduler: SchedulerSection::default(),
            storage: StoreConfig::default(),
            gc: GcSection::default(),
            dataplane: DataplaneSection::default(),
            origin: HttpOriginConfig::default(),
            task_id: TaskIdConfig::default(),
            download: DownloadSection::default(),
            log: LogConfig::default(),
        }
    }
}

/// Reads and checks a configuration file; errors name `path` as given.
pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
    let text = svc::read_text(path)?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks configuration text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> Result<DaemonConfig, ConfigError> {
    let file = ConfigFile::parse(text, origin)?;
    let c: DaemonConfig = file.deserialize()?;
    check(&c).map_err(|(path, message)| file.error_at(&path, message))?;
    Ok(c)
}

type Fault = (Vec<&'static str>, String);

fn check(c: &DaemonConfig) -> Result<(), Fault> {
    let fault = |path: &[&'static str], message: String| Err((path.to_vec(), message));
    if sched::Policy::parse(&c.download.policy).is_none() {
        return fault(
            &["download", "policy"],
            format!("unknown policy {:?}; valid policies: {}", c.download.policy, sched::Policy::NAMES.join(", ")),
        );
    }
    let piece = c.download.piece_bytes;
    if !(64 << 10..=crate::storage::MAX_PIECE_BYTES).contains(&piece) {
        return fault(
            &["download", "piece_bytes"],
            format!("is {piece}; must be between 65536 and {}", crate::storage::MAX_PIECE_BYTES),
        );
    }
    for (key, value) in
        [("sync_wait_ms", c.download.sync_wait_ms), ("hold_for_client_ms", c.download.hold_for_client_ms)]
    {
        if value == 0 {
            return fault(&["download", key], "must be at least 1".into());
        }
    }
    for (i, address) in c.scheduler.addresses.iter().enumerate() {
        let ok = url::Url::parse(address).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return fault(
                &["scheduler", "addresses"],
                format!("entry {} is {address:?}; write \"http://IP:PORT\", e.g. \"http://127.0.0.1:8002\"", i + 1),
            );
        }
    }
    for (key, value) in [
        ("announce_interval_ms", c.scheduler.announce_interval_ms),
        ("connect_timeout_ms", c.scheduler.connect_timeout_ms),
        ("request_timeout_ms", c.scheduler.request_timeout_ms),
    ] {
        if value == 0 {
            return fault(&["scheduler", key], "must be at least 1".into());
        }
    }
    if c.storage.quota_bytes == 0 {
        return fault(&["storage", "quota_bytes"], "must be more than 0".into());
    }
    if c.storage.meta_flush_pieces == 0 {
        return fault(&["storage", "meta_flush_pieces"], "must be at least 1".into());
    }
    if c.storage.dir.as_os_str().is_empty() {
        return fault(&["storage", "dir"], "must name a directory".into());
    }
    if c.gc.interval_ms == 0 {
        return fault(&["gc", "interval_ms"], "must be at least 1".into());
    }
    if c.gc.target_percent > 100 {
        return fault(&["gc", "target_percent"], format!("is {}; must be at most 100", c.gc.target_percent));
    }
    if let Err(e) = c.dataplane.server.validate() {
        return fault(&["dataplane", "server"], e);
    }
    if let Err(e) = c.dataplane.client.validate() {
        return fault(&["dataplane", "client"], e);
    }
    for (key, value) in [
        ("upload_capacity_bytes_per_s", c.host.upload_capacity_bytes_per_s),
        ("download_capacity_bytes_per_s", c.host.download_capacity_bytes_per_s),
    ] {
        if value == 0 {
            return fault(&["host", key], "must be more than 0".into());
        }
    }
    if c.host.advertise_ip.is_unspecified() {
        return fault(&["host", "advertise_ip"], "must be an address other peers can dial, not 0.0.0.0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse(text, "p.toml").unwrap_err()
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = parse("", "p.toml").unwrap();
        assert_eq!(c, DaemonConfig::default());
        assert_eq!(c.listen.local_api.port(), 65000);
    }

    #[test]
    fn the_example_file_is_valid_and_states_the_defaults() {
        let c = parse(include_str!("../../peerd.example.toml"), "peerd.example.toml").unwrap();
        assert_eq!(c, DaemonConfig::default());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[host]\nkind = \"super\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("host.kind")), "{e}");
        let e = err("[storage]\ndir = \"/tmp/x\"\nquota = 5\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("storage.quota")), "{e}");
        assert!(e.message.contains("quota_bytes"), "{e}");
        let e = err("[download]\n\npolicy = \"bittorrent\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("download.policy")), "{e}");
        assert!(e.message.contains("default, dragonfly, kraken"), "{e}");
        let e = err("[scheduler]\naddresses = [\"127.0.0.1:8002\"]\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("scheduler.addresses")), "{e}");
        let e = err("[storage]\nquota_bytes = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("storage.quota_bytes")), "{e}");
        let e = err("[dataplane.server]\nupload_slots = 0\n");
        assert_eq!(e.key.as_deref(), Some("dataplane.server"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
        let e = err("[host]\nadvertise_ip = \"0.0.0.0\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("host.advertise_ip")), "{e}");
        let e = err("[listen]\ndata = \"nope\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("listen.data")), "{e}");
        let e = err("[download]\npiece_bytes = 10\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("download.piece_bytes")), "{e}");
    }
}
