//! The daemon's configuration file (TOML), read and checked once at start. Every section
//! and key is optional; `peer/peerd.example.toml` lists them with their defaults. Errors are
//! one line, `FILE:LINE: KEY: what is wrong` (`svc::ConfigFile`).

use crate::core::{PeerConfig, ResolveRule};
use crate::dataplane::{ClientConfig, ServerConfig};
use crate::origin::HttpOriginConfig;
use crate::storage::{GcPolicy, StoreConfig};
use crate::task_id::TaskIdConfig;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
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
    pub mirror: MirrorSection,
    /// `[preheat]`: a seed's registry credentials and limits for preheat jobs.
    pub preheat: super::preheat::config::PreheatSection,
    pub log: LogConfig,
    /// `[tls]`: mutual TLS on the data plane (both ways), towards the scheduler, and on the
    /// local API when it does not listen on loopback. Loaded into `tls` by `parse`.
    #[serde(rename = "tls")]
    pub tls_files: Option<svc::tls::TlsSection>,
    #[serde(skip)]
    pub tls: Option<svc::tls::Tls>,
    /// `[peer]`: the peer core's policy and tuning (`PeerConfig::from_table`, as a
    /// scenario's `[peer]` is read by the simulator). Resolved into `core` by `parse`.
    pub peer: toml::Table,
    /// The resolved `[peer]` table: what the download plans and the upload slots run.
    #[serde(skip)]
    pub core: PeerConfig,
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
    /// The registry mirror (containerd's hosts.toml, skopeo's registries.conf point here).
    pub mirror: SocketAddr,
    /// A seed host's manifest resolver: other peers' mirrors ask it instead of the
    /// registry, so the cluster resolves a tag upstream once per `mirror.tag_ttl_ms`.
    /// Served by seed hosts only (with the mirror enabled); port 0 takes a free one. It
    /// answers manifest requests only, for the registries the mirror proxies, with the
    /// registry's answer to the asker's own credentials.
    pub resolver: SocketAddr,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            data: SocketAddr::from(([0, 0, 0, 0], 65002)),
            local_api: SocketAddr::from(([127, 0, 0, 1], 65000)),
            http: SocketAddr::from(([0, 0, 0, 0], 65003)),
            mirror: SocketAddr::from(([127, 0, 0, 1], 65001)),
            resolver: SocketAddr::from(([0, 0, 0, 0], 65004)),
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
    /// The cluster key (at least 32 random bytes; the same file as the scheduler's
    /// `[service] grant_key_file`): the data port then serves a task only to a connection
    /// that presents the scheduler's grant for it. Read once at load into
    /// `server.grant_key`; relative to the working directory. Unset: the data port serves
    /// every task in the store to anyone who reaches it (logged at start).
    pub grant_key_file: Option<PathBuf>,
    pub server: ServerConfig,
    pub client: ClientConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownloadSection {
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
            sync_wait_ms: 10_000,
            origin_retries: 3,
            origin_retry_backoff_ms: 500,
            hold_for_client_ms: 600_000,
        }
    }
}

/// The registry mirror (`daemon/mirror/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorSection {
    /// Serve the mirror on `listen.mirror`.
    pub enabled: bool,
    /// Registries the mirror proxies; a request names one by containerd's `?ns=HOST`, by
    /// the `upstream_header` header, or gets `default_registry`.
    pub registries: Vec<RegistryEntry>,
    /// `host[:port]` of the registry for requests that name none (skopeo sends no `ns`);
    /// empty: such requests get 400.
    pub default_registry: String,
    /// Hosts a request may name without an entry in `registries` (HTTPS, verified);
    /// `*.example.com` matches every subdomain. Anything else gets 403.
    pub allowed_hosts: Vec<String>,
    /// The request header naming the upstream registry (`host[:port]`).
    pub upstream_header: String,
    /// Largest request head (request line and headers); larger ones get 431.
    pub max_header_bytes: usize,
    /// Client connections open at once, idle or not; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Requests handled at once. A slot is taken once a request head is whole, so sockets
    /// that send nothing or half a head hold none (they are closed after
    /// `request_head_timeout_ms`).
    pub max_requests: usize,
    /// A request head must be whole within this of its connection opening or of the
    /// previous response (then the connection is closed).
    pub request_head_timeout_ms: u64,
    /// A blob streamed in order keeps this many bytes ahead of the client wanted first.
    pub readahead_bytes: u64,
    /// After a range read, fetch the rest of the blob in the background.
    pub range_prefetch: bool,
    /// A range-read (lazy) download nobody reads from for this long ends; its pieces stay.
    pub lazy_idle_ms: u64,
    /// A blob is served from P2P or the cache only after the registry accepted the
    /// client's credentials for it (HEAD); the answer is remembered this long per
    /// (registry, repository, blob, credentials).
    pub auth_check_ttl_ms: u64,
    /// Longest wait for the registry's response head (then 504).
    pub upstream_timeout_ms: u64,
    /// A tag resolved upstream (`manifests/<tag>`) is reused this long, per registry,
    /// repository, Accept and credentials; concurrent resolutions of one tag are one
    /// upstream request. 0: every resolution goes upstream. A tag pushed again is seen by
    /// the next resolution at most this long after the push.
    pub tag_ttl_ms: u64,
    /// During a registry outage (5xx, no answer) serve the last answer for a manifest
    /// however old, with a `Warning: 110` header, and count it
    /// (`peer_mirror_manifest_answers_total{source="stale"}`). Blobs in the store are served as
    /// always once their credentials were checked.
    pub serve_stale_on_error: bool,
    /// A normal host's mirror asks a seed peer's resolver (`listen.resolver`, named by
    /// the scheduler) for manifests before the registry; it goes to the registry itself
    /// when no seed answers.
    pub resolve_via_seeds: bool,
}

impl Default for MirrorSection {
    fn default() -> Self {
        MirrorSection {
            enabled: true,
            registries: Vec::new(),
            default_registry: String::new(),
            allowed_hosts: Vec::new(),
            upstream_header: "X-P2p-Upstream".into(),
            max_header_bytes: 16 << 10,
            max_connections: 4096,
            max_requests: 512,
            request_head_timeout_ms: 5_000,
            readahead_bytes: 32 << 20,
            range_prefetch: false,
            lazy_idle_ms: 60_000,
            auth_check_ttl_ms: 60_000,
            upstream_timeout_ms: 30_000,
            tag_ttl_ms: ResolveRule::default().tag_ttl_ms,
            serve_stale_on_error: false,
            resolve_via_seeds: true,
        }
    }
}

impl MirrorSection {
    /// The core's rule for registry answers (`peer::core::resolve`), as the simulator reads
    /// the same keys.
    pub fn resolve_rule(&self) -> ResolveRule {
        ResolveRule {
            tag_ttl_ms: self.tag_ttl_ms,
            digest_ttl_ms: self.auth_check_ttl_ms,
            serve_stale_on_error: self.serve_stale_on_error,
            ..ResolveRule::default()
        }
    }
}

/// One registry the mirror proxies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// How clients name it: `host[:port]`, e.g. `docker.io` or `127.0.0.1:5000`.
    pub host: String,
    /// Where it is reached, `http(s)://host[:port]`; empty: `https://<host>`.
    #[serde(default)]
    pub endpoint: String,
    /// Accept any certificate from it. Only for a registry you trust on a network you trust.
    #[serde(default)]
    pub insecure: bool,
}

impl RegistryEntry {
    /// The endpoint with no trailing slash.
    pub fn endpoint(&self) -> String {
        if self.endpoint.is_empty() {
            format!("https://{}", self.host)
        } else {
            self.endpoint.trim_end_matches('/').to_string()
        }
    }
}

/// `host[:port]` as a registry name: letters, digits, `.-_:[]`, not empty.
pub fn is_registry_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
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
            mirror: MirrorSection::default(),
            preheat: Default::default(),
            log: LogConfig::default(),
            tls_files: None,
            tls: None,
            peer: toml::Table::new(),
            core: PeerConfig::preset(sched::Policy::Default),
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
    moved_keys(&file)?;
    let mut c: DaemonConfig = file.deserialize()?;
    let order = file.keys_in_order("peer");
    c.core = PeerConfig::from_table(&c.peer, &order, sched::Policy::Default)
        .map_err(|e| file.error_at(&["peer", &e.key], svc::config_file::schema_message(&e.message)))?;
    // The registries the operator configured are reached wherever they are.
    c.origin.trusted_hosts = c
        .mirror
        .registries
        .iter()
        .filter_map(|r| url::Url::parse(&r.endpoint()).ok()?.host_str().map(str::to_string))
        .collect();
    // The data plane's upload slots are the core's (the simulator models the same ones).
    c.dataplane.server.upload_slots = c.core.upload_slots;
    c.dataplane.server.slot_wait_ms = (c.core.upload_slot_wait_ns / 1_000_000).max(1);
    // The core's rate limits of a normal host (the simulator caps the host's link with the
    // same ones) when `[dataplane]` sets none; a burst of one second's bytes.
    if c.host.kind == HostKind::Normal {
        let rate = |bytes_per_s: u64| crate::dataplane::RateLimit { bytes_per_s, burst_bytes: bytes_per_s };
        if c.dataplane.server.upload_rate.is_none() {
            c.dataplane.server.upload_rate = c.core.egress_limit_bytes_per_s.map(rate);
        }
        if c.dataplane.client.download_rate.is_none() {
            c.dataplane.client.download_rate = c.core.ingress_limit_bytes_per_s.map(rate);
        }
    }
    if let Some(path) = &c.dataplane.grant_key_file {
        let key = svc::grant::GrantKey::load(path)
            .map_err(|e| file.error_at(&["dataplane", "grant_key_file"], e.to_string()))?;
        c.dataplane.server.grant_key = Some(key);
    }
    if let Some(section) = &c.tls_files {
        let tls = svc::tls::Tls::load(section).map_err(|e| file.error_at(&["tls", e.key], e.message))?;
        c.dataplane.server.tls = Some(tls.clone());
        c.dataplane.client.tls = Some(tls.clone());
        c.tls = Some(tls);
    }
    check(&c).map_err(|(path, message)| file.error_at(&path, message))?;
    Ok(c)
}

/// Keys that moved into `[peer]` (one table for the daemon and the simulator): say where.
fn moved_keys(file: &ConfigFile) -> Result<(), ConfigError> {
    let raw: toml::Table = file.deserialize()?;
    let moved: [(&str, &str, &str); 5] = [
        ("download", "policy", "[peer] policy"),
        ("download", "piece_bytes", "[peer] piece_sizing = { rule = \"fixed\", piece_bytes = N }"),
        ("download", "off_stripe_below_uploads", "[peer] off_stripe_below_uploads"),
        ("dataplane.server", "upload_slots", "[peer] upload_slots"),
        ("dataplane.server", "slot_wait_ms", "[peer] upload_slot_wait_ns (nanoseconds)"),
    ];
    for (table, key, now) in moved {
        let mut t = Some(&raw);
        for part in table.split('.') {
            t = t.and_then(|t| t.get(part)).and_then(|v| v.as_table());
        }
        if t.is_some_and(|t| t.contains_key(key)) {
            let path: Vec<&str> = table.split('.').chain([key]).collect();
            return Err(file.error_at(&path, format!("moved: write {now}, read by the daemon and the simulator alike")));
        }
    }
    Ok(())
}

type Fault = (Vec<&'static str>, String);

/// The most piece-buffer memory `storage.prefault_buffer_bytes` may ask for at start.
const MAX_PREFAULT_BYTES: u64 = 16 << 30;

fn check(c: &DaemonConfig) -> Result<(), Fault> {
    let fault = |path: &[&'static str], message: String| Err((path.to_vec(), message));
    // Kraken's two-way connections and their lifecycle are modelled by the simulator's
    // baseline only: this data plane carries pieces from parent to child. A daemon that
    // accepted them would run something else than what a scenario predicts.
    if c.core.policy == sched::Policy::Kraken {
        return fault(
            &["peer", "policy"],
            "is \"kraken\": Kraken's two-way connections and their lifecycle exist in the simulator's baseline alone (this data plane carries pieces parent to child): run policy \"default\" or \"dragonfly\"".into(),
        );
    }
    if c.core.symmetric_connections {
        return fault(
            &["peer", "symmetric_connections"],
            "is true (the kraken preset's); the daemon's data plane carries pieces parent to child only, so Kraken's two-way connections exist in the simulator's baseline alone: run policy \"default\" or \"dragonfly\"".into(),
        );
    }
    if c.core.conn_lifecycle.is_some() {
        return fault(
            &["peer", "conn_lifecycle"],
            "is set; the daemon does not close or blacklist connections on Kraken's timers (simulator baseline only): leave it unset".into(),
        );
    }
    if c.core.reannounce_round_robin {
        return fault(
            &["peer", "reannounce_round_robin"],
            "is true; the daemon does not share one announce timer among its downloads (Kraken's agent rule, simulator baseline only): leave it false".into(),
        );
    }
    let prefault = c.storage.prefault_buffer_bytes;
    if prefault > MAX_PREFAULT_BYTES {
        return fault(
            &["storage", "prefault_buffer_bytes"],
            format!("is {prefault}; must be at most {MAX_PREFAULT_BYTES} (16 GiB) of piece buffers made at start, 0 for none"),
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
        if address.starts_with("https://") && c.tls.is_none() {
            return fault(
                &["scheduler", "addresses"],
                format!("entry {} is {address:?}, but there is no [tls] table: add one (cert_file, key_file, ca_file) or write http://", i + 1),
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
    check_mirror(&c.mirror)?;
    if let Err((key, message)) = super::preheat::config::check(&c.preheat) {
        return fault(&["preheat", key], message);
    }
    if let Err(e) = crate::origin::address_policy::AddressPolicy::new(&c.origin.allowed_networks, Vec::new()) {
        return fault(&["origin", "allowed_networks"], e);
    }
    if c.host.advertise_ip.is_unspecified() {
        return fault(&["host", "advertise_ip"], "must be an address other peers can dial, not 0.0.0.0".into());
    }
    Ok(())
}

fn check_mirror(m: &MirrorSection) -> Result<(), Fault> {
    let fault = |key: &'static str, message: String| Err((vec!["mirror", key], message));
    for (i, r) in m.registries.iter().enumerate() {
        if !is_registry_host(&r.host) {
            return fault(
                "registries",
                format!("entry {}: host {:?} is not host[:port] (no scheme, no path)", i + 1, r.host),
            );
        }
        let endpoint = r.endpoint();
        let ok = url::Url::parse(&endpoint).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/" && u.query().is_none()
        });
        if !ok {
            return fault(
                "registries",
                format!("entry {}: endpoint {endpoint:?} is not \"http(s)://host[:port]\"", i + 1),
            );
        }
        if m.registries[..i].iter().any(|o| o.host.eq_ignore_ascii_case(&r.host)) {
            return fault("registries", format!("entry {}: host {:?} is listed twice", i + 1, r.host));
        }
    }
    for h in &m.allowed_hosts {
        if !is_registry_host(h.strip_prefix("*.").unwrap_or(h)) {
            return fault("allowed_hosts", format!("{h:?} is not host[:port] or *.domain"));
        }
    }
    if !m.default_registry.is_empty() && !is_registry_host(&m.default_registry) {
        return fault("default_registry", format!("{:?} is not host[:port]", m.default_registry));
    }
    let header_ok = !m.upstream_header.is_empty()
        && m.upstream_header.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !header_ok {
        return fault("upstream_header", format!("{:?} is not a header name", m.upstream_header));
    }
    if !(8192..=1 << 20).contains(&m.max_header_bytes) {
        return fault("max_header_bytes", format!("is {}; must be between 8192 and 1048576", m.max_header_bytes));
    }
    for (key, value) in [
        ("max_connections", m.max_connections as u64),
        ("max_requests", m.max_requests as u64),
        ("request_head_timeout_ms", m.request_head_timeout_ms),
        ("readahead_bytes", m.readahead_bytes),
        ("lazy_idle_ms", m.lazy_idle_ms),
        ("upstream_timeout_ms", m.upstream_timeout_ms),
    ] {
        if value == 0 {
            return fault(key, "must be at least 1".into());
        }
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
        let text = include_str!("../../peerd.example.toml");
        let c = parse(text, "peerd.example.toml").unwrap();
        assert_eq!(c.peer.get("policy").and_then(|p| p.as_str()), Some("default"));
        assert_eq!(DaemonConfig { peer: toml::Table::new(), ..c }, DaemonConfig::default());
        // Every key of the core's configuration is listed, with the default preset's value
        // where it has one.
        let preset = toml::Table::try_from(PeerConfig::preset(sched::Policy::Default)).unwrap();
        for (key, value) in preset {
            let listed = text.lines().find(|l| l.trim_start_matches("# ").starts_with(&format!("{key} =")));
            let Some(line) = listed else { panic!("[peer] {key} is not in peerd.example.toml") };
            if !value.is_table() {
                let written = line.trim_start_matches("# ").split('=').nth(1).unwrap().split('#').next().unwrap();
                let written: toml::Value =
                    format!("v = {}", written.trim()).parse::<toml::Table>().unwrap()["v"].clone();
                assert_eq!(written, value, "[peer] {key}: peerd.example.toml says {written}, the preset {value}");
            }
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[host]\nkind = \"super\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("host.kind")), "{e}");
        let e = err("[storage]\ndir = \"/tmp/x\"\nquota = 5\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("storage.quota")), "{e}");
        assert!(e.message.contains("quota_bytes"), "{e}");
        let e = err("[peer]\n\npolicy = \"bittorrent\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("peer.policy")), "{e}");
        assert!(e.message.contains("default, dragonfly, kraken"), "{e}");
        let e = err("[download]\npolicy = \"kraken\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("download.policy")), "{e}");
        assert!(e.message.contains("moved: write [peer] policy"), "{e}");
        let e = err("[scheduler]\naddresses = [\"127.0.0.1:8002\"]\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("scheduler.addresses")), "{e}");
        let e = err("[storage]\nquota_bytes = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("storage.quota_bytes")), "{e}");
        let e = err("[peer]\nupload_slots = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("peer.upload_slots")), "{e}");
        let e = err("[dataplane.server]\nupload_slots = 8\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("dataplane.server.upload_slots")), "{e}");
        assert!(e.message.contains("[peer] upload_slots"), "{e}");
        let e = err("[host]\nadvertise_ip = \"0.0.0.0\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("host.advertise_ip")), "{e}");
        let e = err("[listen]\ndata = \"nope\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("listen.data")), "{e}");
        let e = err("[peer]\npiece_sizing = { rule = \"fixed\", piece_bytes = 10 }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("peer.piece_sizing")), "{e}");
        let e = err("[peer]\nmax_parent = 3\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("peer.max_parent")), "{e}");
        assert!(e.message.contains("valid keys of [peer]") && e.message.contains("max_parents"), "{e}");
        let c = parse("[peer]\npolicy = \"dragonfly\"\nmax_parents = 5\n", "p.toml").unwrap();
        let mut want = PeerConfig::preset(sched::Policy::Dragonfly);
        want.max_parents = 5;
        assert_eq!(c.core, want);
        assert_eq!(c.dataplane.server.upload_slots, 128);
        let e = err("[peer]\npolicy = \"kraken\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("peer.policy")), "{e}");
        assert!(e.message.contains("simulator's baseline alone"), "{e}");
        let e = err("[peer]\nsymmetric_connections = true\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("peer.symmetric_connections")), "{e}");
        let e = err("[storage]\nprefault_buffer_bytes = 1099511627776\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("storage.prefault_buffer_bytes")), "{e}");
        assert!(e.message.contains("at most"), "{e}");
    }

    #[test]
    fn grant_key_file_is_read_at_load() {
        assert_eq!(parse("", "p.toml").unwrap().dataplane.server.grant_key, None);
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("grant.key");
        std::fs::write(&key, [6u8; 20]).unwrap();
        let text = format!("[dataplane]\n\ngrant_key_file = \"{}\"\n", key.display());
        let e = err(&text);
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("dataplane.grant_key_file")), "{e}");
        assert!(e.message.contains("grant.key") && e.message.contains("holds 20 bytes"), "{e}");
        std::fs::write(&key, [6u8; 32]).unwrap();
        let c = parse(&text, "p.toml").unwrap();
        assert_eq!(c.dataplane.server.grant_key, Some(svc::grant::GrantKey::load(&key).unwrap()));
        let e = err("[dataplane]\ngrant_key_file = \"/nonexistent/grant.key\"\n");
        assert!(
            e.to_string().starts_with(
                "p.toml:2: dataplane.grant_key_file: cannot read the grant key file /nonexistent/grant.key"
            ),
            "{e}"
        );
    }

    #[test]
    fn mirror_registries_are_checked() {
        let ok = parse(
            "[mirror]\ndefault_registry = \"docker.io\"\n[[mirror.registries]]\nhost = \"docker.io\"\nendpoint = \"https://registry-1.docker.io\"\n[[mirror.registries]]\nhost = \"127.0.0.1:5000\"\nendpoint = \"http://127.0.0.1:5000/\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(ok.mirror.registries[0].endpoint(), "https://registry-1.docker.io");
        assert_eq!(ok.mirror.registries[1].endpoint(), "http://127.0.0.1:5000");
        let e = err("[[mirror.registries]]\nhost = \"https://docker.io\"\n");
        assert_eq!(e.key.as_deref(), Some("mirror.registries"), "{e}");
        assert!(e.message.contains("host[:port]"), "{e}");
        let e = err("[[mirror.registries]]\nhost = \"a\"\nendpoint = \"ftp://a\"\n");
        assert!(e.message.contains("endpoint"), "{e}");
        let e = err("[[mirror.registries]]\nhost = \"a\"\n[[mirror.registries]]\nhost = \"A\"\n");
        assert!(e.message.contains("twice"), "{e}");
        let e = err("[mirror]\nmax_header_bytes = 10\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("mirror.max_header_bytes")), "{e}");
        let e = err("[mirror]\nallowed_hosts = [\"a/b\"]\n");
        assert_eq!(e.key.as_deref(), Some("mirror.allowed_hosts"), "{e}");
        let e = err("[listen]\nmirror = \"x\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("listen.mirror")), "{e}");
    }
}
