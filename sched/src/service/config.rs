//! The service's configuration file (TOML), read and checked once at start.
//!
//! ```toml
//! [listen]                 # both optional
//! grpc = "0.0.0.0:8002"
//! http = "0.0.0.0:8000"    # /metrics and /healthz
//!
//! [service]                # all optional; defaults in `ServiceSection::default`
//! evict_interval_ms = 60000
//! max_hosts = 100000       # admission: live hosts, active peers per host, live tasks,
//! max_peers_per_host = 16384 # one gRPC message's bytes, messages per AnnouncePeer stream
//! max_tasks = 100000       # and second (beyond them: RESOURCE_EXHAUSTED naming the key)
//! max_message_bytes = 1048576
//! max_stream_messages_per_s = 1000
//! grant_key_file = "/etc/p2pimg/grant.key" # unset: no data-plane grants (see below)
//! grant_ttl_s = 3600
//!
//! [preheat]                # all optional (see `preheat/`)
//! platform = "linux/amd64" # for requests and Harbor events that name none
//! max_jobs = 1024
//! report_timeout_ms = 60000
//! reuse_succeeded_ms = 600000
//! auth_file = "/etc/p2pimg/preheat-auth" # unset: anyone reaching listen.http may preheat
//!
//! [log]
//! filter = "info"          # tracing filter; RUST_LOG overrides it
//! format = "text"          # or "json"
//!
//! [scheduler]
//! policy = "default"       # default | dragonfly | kraken
//! retry_limit = 3          # any field of SchedulerConfig overrides the policy's preset
//! ```
//!
//! `grant_key_file` names the cluster key (at least 32 random bytes, the same file as every
//! peer's `[dataplane] grant_key_file`): each Parents then carries a grant for the peer's
//! task that its parents check before serving it (`grants.rs`). A relative path is read
//! from the working directory. The file is read here, once; a file group or others can read
//! is accepted and logged as a warning at start.
//!
//! Every error is one line, `FILE:LINE: KEY: what is wrong`, and nothing here panics.

use super::grants::GrantIssuer;
use super::preheat::{AuthSecret, PreheatConfig};
use crate::core::{Policy, SchedulerConfig, TimeNs, NS_PER_MS};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use svc::ConfigFile;
pub use svc::{ConfigError, LogConfig, LogFormat};

/// Everything the service needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub tuning: Tuning,
    /// Seed of the core's generator; None: derived from the clock at start.
    pub rng_seed: Option<u64>,
    pub log: LogConfig,
    pub scheduler: SchedulerConfig,
    /// Data-plane grants (`[service] grant_key_file`); none: Parents carry no grant.
    pub grants: Option<GrantIssuer>,
    /// `[tls]`: the gRPC port takes only clients with a certificate of the cluster CA.
    pub tls: Option<svc::tls::Tls>,
    /// `[preheat]`'s default platform and shared secret (its limits are in `tuning`).
    pub preheat: PreheatConfig,
}

/// The service's own limits and periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// How often idle peers are evicted (`Scheduler::evict_idle`).
    pub evict_interval_ns: TimeNs,
    /// A triggered seed that has not registered its peer by then is taken as unavailable.
    pub seed_register_timeout_ns: TimeNs,
    /// An AnnouncePeer stream must send `register` within this.
    pub register_timeout: Duration,
    /// Shutdown waits this long for connections to drain.
    pub shutdown_grace: Duration,
    /// Responses queued per AnnouncePeer stream; a peer that lets it fill is disconnected.
    pub peer_stream_capacity: usize,
    /// Seed tasks queued per WatchSeedTasks stream.
    pub seed_watch_capacity: usize,
    /// Admission: hosts announced and not left.
    pub max_hosts: usize,
    /// Admission: peers of one host that have not failed or left (a completed peer stays
    /// while it serves: a seed holding thousands of cached blobs has thousands).
    pub max_peers_per_host: usize,
    /// Admission: tasks with a peer that has not failed or left.
    pub max_tasks: usize,
    /// Admission: the largest gRPC message the scheduler decodes (tonic's own default is
    /// 4 MiB; the largest valid message, a piece report of 2^20 pieces, is about 128 KiB).
    pub max_message_bytes: usize,
    /// Admission: messages one AnnouncePeer stream may send per second (a burst of twice
    /// as many is allowed); beyond it the stream is closed.
    pub max_stream_messages_per_s: u32,
    /// Preheat jobs kept (finished ones are evicted oldest first to make room).
    pub preheat_max_jobs: usize,
    /// A preheat job whose seed has not reported for this long failed.
    pub preheat_report_timeout_ns: TimeNs,
    /// A succeeded preheat job asked again within this is returned as it is.
    pub preheat_reuse_succeeded_ns: TimeNs,
}

// ---- the file's schema ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Listen,
    #[serde(default)]
    service: ServiceSection,
    #[serde(default)]
    log: LogConfig,
    /// Checked key by key against `SchedulerConfig` in `scheduler_config`.
    #[serde(default)]
    scheduler: toml::Table,
    tls: Option<svc::tls::TlsSection>,
    #[serde(default)]
    preheat: PreheatSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PreheatSection {
    platform: String,
    max_jobs: u32,
    report_timeout_ms: u64,
    reuse_succeeded_ms: u64,
    auth_file: Option<PathBuf>,
}

impl Default for PreheatSection {
    fn default() -> Self {
        PreheatSection {
            platform: "linux/amd64".into(),
            max_jobs: 1024,
            // Seeds report every 2 s (peer/src/daemon/preheat/): a minute is 30 reports
            // missed, not a slow registry.
            report_timeout_ms: 60_000,
            // A tag moved within ten minutes is rare enough; asking again after that
            // re-reads the manifest (the blobs are on the seeds already).
            reuse_succeeded_ms: 600_000,
            auth_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Listen {
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Listen { grpc: SocketAddr::from(([0, 0, 0, 0], 8002)), http: SocketAddr::from(([0, 0, 0, 0], 8000)) }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServiceSection {
    rng_seed: Option<u64>,
    evict_interval_ms: u64,
    seed_register_timeout_ms: u64,
    register_timeout_ms: u64,
    shutdown_grace_ms: u64,
    peer_stream_capacity: u32,
    seed_watch_capacity: u32,
    max_hosts: u32,
    max_peers_per_host: u32,
    max_tasks: u32,
    max_message_bytes: u32,
    max_stream_messages_per_s: u32,
    grant_key_file: Option<PathBuf>,
    grant_ttl_s: u64,
}

impl Default for ServiceSection {
    fn default() -> Self {
        ServiceSection {
            rng_seed: None,
            evict_interval_ms: 60_000,
            seed_register_timeout_ms: 30_000,
            register_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            peer_stream_capacity: 256,
            seed_watch_capacity: 1024,
            max_hosts: 100_000,
            max_peers_per_host: 16_384,
            max_tasks: 100_000,
            max_message_bytes: 1 << 20,
            max_stream_messages_per_s: 1000,
            grant_key_file: None,
            // A grant must outlast the download it opens: a layer of tens of GiB over a
            // slow link takes tens of minutes, and a fresh grant comes only with the next
            // Parents (a change of parents, a Reschedule). An hour covers that and bounds
            // what a leaked grant opens (one task) to an hour.
            grant_ttl_s: 3600,
        }
    }
}

/// Reads and checks a configuration file; errors name `path` as given.
pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
    let text = svc::read_text(path)?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks configuration text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> Result<ServiceConfig, ConfigError> {
    let config = ConfigFile::parse(text, origin)?;
    let file: File = config.deserialize()?;
    // A key of the file that breaks a rule: its line, or where it would go.
    let at = |path: &[&str], message: String| config.error_at(path, message);
    // Keys in the order they are written, so the first bad one is reported.
    let order = config.keys_in_order("scheduler");
    let scheduler =
        scheduler_config(&file.scheduler, &order).map_err(|(key, message)| at(&["scheduler", &key], message))?;
    let s = &file.service;
    for (key, value) in [
        ("evict_interval_ms", s.evict_interval_ms),
        ("seed_register_timeout_ms", s.seed_register_timeout_ms),
        ("register_timeout_ms", s.register_timeout_ms),
    ] {
        if value == 0 {
            return Err(at(&["service", key], "must be at least 1".into()));
        }
    }
    for (key, value) in
        [("peer_stream_capacity", s.peer_stream_capacity), ("seed_watch_capacity", s.seed_watch_capacity)]
    {
        if !(1..=65_536).contains(&value) {
            return Err(at(&["service", key], format!("is {value}; must be between 1 and 65536")));
        }
    }
    for (key, value, max) in [
        ("max_hosts", s.max_hosts, 10_000_000),
        ("max_peers_per_host", s.max_peers_per_host, 1_000_000),
        ("max_tasks", s.max_tasks, 10_000_000),
        ("max_stream_messages_per_s", s.max_stream_messages_per_s, 1_000_000),
    ] {
        if !(1..=max).contains(&value) {
            return Err(at(&["service", key], format!("is {value}; must be between 1 and {max}")));
        }
    }
    if !(64 << 10..=64 << 20).contains(&s.max_message_bytes) {
        return Err(at(
            &["service", "max_message_bytes"],
            format!(
                "is {}; must be between 65536 and 67108864 (a piece report of 2^20 pieces needs about 131072)",
                s.max_message_bytes
            ),
        ));
    }
    if !(MIN_GRANT_TTL_S..=MAX_GRANT_TTL_S).contains(&s.grant_ttl_s) {
        return Err(at(
            &["service", "grant_ttl_s"],
            format!(
                "is {}; must be between {MIN_GRANT_TTL_S} (a grant must outlive a download's first requests, across clock skew) and {MAX_GRANT_TTL_S} (a week; longer grants are near-permanent permissions)",
                s.grant_ttl_s
            ),
        ));
    }
    let grants = match &s.grant_key_file {
        Some(path) => {
            let key =
                svc::grant::GrantKey::load(path).map_err(|e| at(&["service", "grant_key_file"], e.to_string()))?;
            Some(GrantIssuer::new(key, s.grant_ttl_s))
        }
        None => None,
    };
    let p = &file.preheat;
    let platform = svc::image_ref::parse_platform(&p.platform).map_err(|e| at(&["preheat", "platform"], e))?;
    if !(1..=1_000_000).contains(&p.max_jobs) {
        return Err(at(&["preheat", "max_jobs"], format!("is {}; must be between 1 and 1000000", p.max_jobs)));
    }
    if p.report_timeout_ms < MIN_PREHEAT_REPORT_TIMEOUT_MS {
        return Err(at(
            &["preheat", "report_timeout_ms"],
            format!(
                "is {}; must be at least {MIN_PREHEAT_REPORT_TIMEOUT_MS} (seeds report every 2 s; a shorter wait fails jobs that run)",
                p.report_timeout_ms
            ),
        ));
    }
    let auth = match &p.auth_file {
        Some(path) => Some(AuthSecret::load(path).map_err(|e| at(&["preheat", "auth_file"], e))?),
        None => None,
    };
    let tls = match &file.tls {
        Some(section) => Some(svc::tls::Tls::load(section).map_err(|e| at(&["tls", e.key], e.message))?),
        None => None,
    };
    Ok(ServiceConfig {
        grpc_addr: file.listen.grpc,
        http_addr: file.listen.http,
        tuning: Tuning {
            evict_interval_ns: s.evict_interval_ms.saturating_mul(NS_PER_MS),
            seed_register_timeout_ns: s.seed_register_timeout_ms.saturating_mul(NS_PER_MS),
            register_timeout: Duration::from_millis(s.register_timeout_ms),
            shutdown_grace: Duration::from_millis(s.shutdown_grace_ms),
            peer_stream_capacity: s.peer_stream_capacity as usize,
            seed_watch_capacity: s.seed_watch_capacity as usize,
            max_hosts: s.max_hosts as usize,
            max_peers_per_host: s.max_peers_per_host as usize,
            max_tasks: s.max_tasks as usize,
            max_message_bytes: s.max_message_bytes as usize,
            max_stream_messages_per_s: s.max_stream_messages_per_s,
            preheat_max_jobs: p.max_jobs as usize,
            preheat_report_timeout_ns: p.report_timeout_ms.saturating_mul(NS_PER_MS),
            preheat_reuse_succeeded_ns: p.reuse_succeeded_ms.saturating_mul(NS_PER_MS),
        },
        rng_seed: s.rng_seed,
        log: file.log,
        scheduler,
        grants,
        tls,
        preheat: PreheatConfig { platform, auth },
    })
}

const MIN_PREHEAT_REPORT_TIMEOUT_MS: u64 = 10_000;

const MIN_GRANT_TTL_S: u64 = 60;
const MAX_GRANT_TTL_S: u64 = 7 * 24 * 3600;

/// `SchedulerConfig::from_table`, the core's reading of a `[scheduler]` table (the
/// simulator reads a scenario's with it too), with serde's messages given a hint.
fn scheduler_config(table: &toml::Table, order: &[String]) -> Result<SchedulerConfig, (String, String)> {
    SchedulerConfig::from_table(table, order, Policy::Default)
        .map_err(|e| (e.key, svc::config_file::schema_message(&e.message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse(text, "s.toml").unwrap_err()
    }

    #[test]
    fn empty_file_gives_defaults_and_the_default_preset() {
        let c = parse("", "s.toml").unwrap();
        assert_eq!(c.scheduler, SchedulerConfig::preset(Policy::Default));
        assert_eq!(c.grpc_addr.port(), 8002);
        assert_eq!(c.tuning.evict_interval_ns, 60 * 1_000 * NS_PER_MS);
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn overrides_apply_on_the_named_preset() {
        let c = parse("[scheduler]\npolicy = \"dragonfly\"\ncandidate_parent_limit = 7\n", "s.toml").unwrap();
        let mut want = SchedulerConfig::preset(Policy::Dragonfly);
        want.candidate_parent_limit = 7;
        assert_eq!(c.scheduler, want);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[listen]\ngrpc = \"127.0.0.1:1\"\n\n[scheduler]\npolicy = \"default\"\ncandidate_parents = 4\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(6), Some("scheduler.candidate_parents")), "{e}");
        assert!(
            e.message.contains("valid keys of [scheduler]:") && e.message.contains("candidate_parent_limit"),
            "{e}"
        );
        assert!(e.to_string().starts_with("s.toml:6: scheduler.candidate_parents: unknown key"), "{e}");

        let e = err("[scheduler]\ncandidate_parent_limit = \"six\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("scheduler.candidate_parent_limit")), "{e}");
        assert!(e.message.contains("whole number"), "{e}");

        // The first bad key in file order, not in alphabetical order.
        let e = err("[scheduler]\nretry_limit = \"five\"\nfoo = 1\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("scheduler.retry_limit")), "{e}");

        let e = err("[scheduler]\npolicy = \"bittorrent\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("scheduler.policy")), "{e}");
        assert!(e.message.contains("valid policies: default, dragonfly, kraken"), "{e}");

        let e = err("[service]\nmax_hosts = 10\nmax_message_bytes = 1000\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("service.max_message_bytes")), "{e}");
        assert!(e.message.contains("between 65536 and 67108864"), "{e}");
        let e = err("[service]\nmax_peers_per_host = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("service.max_peers_per_host")), "{e}");
        let c = parse("[service]\nmax_hosts = 10\n", "s.toml").unwrap();
        assert_eq!((c.tuning.max_hosts, c.tuning.max_tasks, c.tuning.max_peers_per_host), (10, 100_000, 16_384));

        let e = err("[service]\n\nevict_interval = 5\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("service.evict_interval")), "{e}");

        let e = err("[listen]\ngrpc = \"localhost\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("listen.grpc")), "{e}");

        let e = err("[log]\nformat = \"xml\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("log.format")), "{e}");

        let e = err("[scheduler]\nretry_interval_ns = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("scheduler.retry_interval_ns")), "{e}");

        // A rule of the core (`SchedulerConfig::validate`) is placed on its key too.
        let e = err("[scheduler]\npolicy = \"default\"\n\ncandidate_parent_limit = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("scheduler.candidate_parent_limit")), "{e}");

        let e = err("[service]\npeer_stream_capacity = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("service.peer_stream_capacity")), "{e}");

        let e = err("[scheduler\npolicy = 1\n");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.starts_with("invalid TOML"), "{e}");
    }

    #[test]
    fn grant_key_file_is_read_and_checked_at_load() {
        assert_eq!(parse("", "s.toml").unwrap().grants, None);
        let dir = std::env::temp_dir().join(format!("sched-grant-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("grant.key");
        std::fs::write(&key, [5u8; 16]).unwrap();
        let e = err(&format!("[service]\nmax_hosts = 10\ngrant_key_file = \"{}\"\n", key.display()));
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("service.grant_key_file")), "{e}");
        assert!(e.message.contains("grant.key") && e.message.contains("at least 32"), "{e}");
        let e = err(&format!("[service]\ngrant_key_file = \"{}\"\n", dir.join("none.key").display()));
        assert!(e.message.contains("none.key") && e.message.contains("cannot read"), "{e}");
        std::fs::write(&key, [5u8; 32]).unwrap();
        let c = parse(&format!("[service]\ngrant_key_file = \"{}\"\n", key.display()), "s.toml").unwrap();
        let want = GrantIssuer::new(svc::grant::GrantKey::load(&key).unwrap(), 3600);
        assert_eq!(c.grants, Some(want));
        let e = err("[service]\ngrant_ttl_s = 5\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("service.grant_ttl_s")), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn preheat_keys_are_checked() {
        let c = parse("", "s.toml").unwrap();
        assert_eq!((c.preheat.platform.to_string(), c.preheat.auth.is_none()), ("linux/amd64".into(), true));
        assert_eq!(c.tuning.preheat_max_jobs, 1024);
        let e = err("[preheat]\nplatform = \"amd64\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("preheat.platform")), "{e}");
        let e = err("[preheat]\nmax_jobs = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("preheat.max_jobs")), "{e}");
        let e = err("[preheat]\nreport_timeout_ms = 10\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("preheat.report_timeout_ms")), "{e}");
        let e = err("[preheat]\nauth_file = \"/nonexistent/auth\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("preheat.auth_file")), "{e}");
        let e = err("[preheat]\nwebhook_auth = \"x\"\n");
        assert_eq!(e.key.as_deref(), Some("preheat.webhook_auth"), "{e}");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let e = load(Path::new("/nonexistent/sched.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/sched.toml: cannot read"), "{e}");
    }
}
