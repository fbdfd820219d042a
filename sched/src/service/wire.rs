//! Checks on what clients send and conversions between the wire messages (`api::pb`) and
//! the core's types. Every limit here protects the scheduler's memory from one bad client.

use super::error::ServiceError;
use crate::core::{BackToSourceReason, FailReason, HostKind, PeerState};
use api::pb;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Longest host or peer id accepted.
pub const MAX_ID_BYTES: usize = 256;
pub const MAX_URL_BYTES: usize = 8 << 10;
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES_TOTAL: usize = 16 << 10;
/// Largest task, in pieces (4 TiB at 4 MiB pieces): each peer holds one bit per piece.
pub const MAX_PIECE_COUNT: u32 = 1 << 20;
/// Parents a single Reschedule may block.
pub const MAX_BLOCKED_PER_RESCHEDULE: usize = 1024;

/// A host as announced, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAnnouncement {
    pub id: String,
    pub hostname: String,
    pub ip: IpAddr,
    pub data_port: u16,
    pub kind: HostKind,
    pub idc: String,
    pub location: String,
    pub disable_shared: bool,
    pub upload_capacity_bytes_per_s: u64,
    pub download_capacity_bytes_per_s: u64,
    pub load: pb::HostLoad,
    /// A seed's manifest resolver port on `ip`; 0: none.
    pub resolver_port: u16,
}

/// What the scheduler keeps of a task from its first registration (the seed needs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMeta {
    pub url: String,
    pub digest: Option<String>,
    pub piece_length_bytes: u64,
    pub content_length_bytes: u64,
    pub piece_count: u32,
    pub request_headers: BTreeMap<String, String>,
}

/// A `register` message, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub host_id: String,
    pub peer_id: String,
    /// Lowercase.
    pub task_id: String,
    pub meta: TaskMeta,
    pub need_back_to_source: bool,
    /// The peer holds the whole task already (`RegisterPeer.completed`).
    pub completed: bool,
    /// The peer core's policy (the core refuses one that is not the scheduler's).
    pub policy: crate::core::Policy,
    /// The peer fetches only part of the task until `want_all` (`RegisterPeer.partial`).
    pub partial: bool,
}

/// A host or peer id: non-empty, bounded, printable.
pub fn id<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ServiceError> {
    if value.is_empty() {
        return Err(ServiceError::field(field, "is empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(ServiceError::field(field, format!("is {} bytes; at most {MAX_ID_BYTES}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::field(field, "contains control characters"));
    }
    Ok(value)
}

/// A task id: 64 hex digits (sha256), returned in lowercase so one task has one spelling.
pub fn task_id(field: &'static str, value: &str) -> Result<String, ServiceError> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let shown: String = value.chars().take(80).collect();
        return Err(ServiceError::field(
            field,
            format!("{shown:?} is not a task id; expected 64 hex digits (sha256 of the task identity)"),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

pub fn host(host: Option<pb::Host>) -> Result<HostAnnouncement, ServiceError> {
    let h = host.ok_or_else(|| ServiceError::field("host", "is missing"))?;
    id("host.id", &h.id)?;
    let ip: IpAddr =
        h.ip.parse()
            .map_err(|_| ServiceError::field("host.ip", format!("{:?} is not an IPv4 or IPv6 address", h.ip)))?;
    let data_port = u16::try_from(h.data_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ServiceError::field("host.data_port", format!("{} is not a port (1..=65535)", h.data_port)))?;
    let kind = match pb::HostKind::try_from(h.kind) {
        Ok(pb::HostKind::Normal) => HostKind::Normal,
        Ok(pb::HostKind::Seed) => HostKind::Seed,
        Ok(pb::HostKind::Unspecified) => {
            return Err(ServiceError::field("host.kind", "is unset; send HOST_KIND_NORMAL or HOST_KIND_SEED"))
        }
        Err(_) => return Err(ServiceError::field("host.kind", format!("{} is not a HostKind", h.kind))),
    };
    let resolver_port = u16::try_from(h.resolver_port).map_err(|_| {
        ServiceError::field("host.resolver_port", format!("{} is not a port (0: none, 1..=65535)", h.resolver_port))
    })?;
    bounded("host.hostname", &h.hostname, MAX_ID_BYTES)?;
    bounded("host.idc", &h.idc, MAX_ID_BYTES)?;
    bounded("host.location", &h.location, 1024)?;
    let load = h.load.unwrap_or_default();
    for (field, v) in [("host.load.cpu_percent", load.cpu_percent), ("host.load.memory_percent", load.memory_percent)] {
        if !(0.0..=100.0).contains(&v) {
            return Err(ServiceError::field(field, format!("{v} is not a percentage (0..=100)")));
        }
    }
    Ok(HostAnnouncement {
        id: h.id,
        hostname: h.hostname,
        ip,
        data_port,
        kind,
        idc: h.idc,
        location: h.location,
        disable_shared: h.disable_shared,
        upload_capacity_bytes_per_s: h.upload_capacity_bytes_per_s,
        download_capacity_bytes_per_s: h.download_capacity_bytes_per_s,
        load,
        resolver_port,
    })
}

pub fn registration(r: pb::RegisterPeer) -> Result<Registration, ServiceError> {
    id("register.host_id", &r.host_id)?;
    let policy = crate::core::Policy::parse(&r.policy).ok_or_else(|| {
        ServiceError::field(
            "register.policy",
            format!(
                "is {:?}; name the peer core's policy ([peer] policy): {}",
                r.policy,
                crate::core::Policy::NAMES.join(", ")
            ),
        )
    })?;
    id("register.peer_id", &r.peer_id)?;
    let task_id = task_id("register.task_id", &r.task_id)?;
    if r.url.is_empty() {
        return Err(ServiceError::field("register.url", "is empty; the seed peer needs it to fetch the task"));
    }
    bounded("register.url", &r.url, MAX_URL_BYTES)?;
    if let Some(d) = &r.digest {
        let ok = d.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok || d.len() > MAX_ID_BYTES {
            return Err(ServiceError::field("register.digest", format!("{d:?} is not of the form \"sha256:<hex>\"")));
        }
    }
    if r.completed && r.need_back_to_source {
        return Err(ServiceError::field(
            "register.completed",
            "is set with need_back_to_source; a peer holding the whole task has nothing to fetch",
        ));
    }
    if r.piece_length_bytes == 0 {
        return Err(ServiceError::field("register.piece_length_bytes", "is 0"));
    }
    let expected = r.content_length_bytes.div_ceil(r.piece_length_bytes);
    if u64::from(r.piece_count) != expected {
        return Err(ServiceError::field(
            "register.piece_count",
            format!(
                "is {} but content_length_bytes {} / piece_length_bytes {} makes {expected} pieces",
                r.piece_count, r.content_length_bytes, r.piece_length_bytes
            ),
        ));
    }
    if r.piece_count > MAX_PIECE_COUNT {
        return Err(ServiceError::field(
            "register.piece_count",
            format!("is {}; at most {MAX_PIECE_COUNT} (use larger pieces)", r.piece_count),
        ));
    }
    if r.request_headers.len() > MAX_HEADERS {
        return Err(ServiceError::field(
            "register.request_headers",
            format!("has {} entries; at most {MAX_HEADERS}", r.request_headers.len()),
        ));
    }
    let header_bytes: usize = r.request_headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if header_bytes > MAX_HEADER_BYTES_TOTAL {
        return Err(ServiceError::field(
            "register.request_headers",
            format!("hold {header_bytes} bytes; at most {MAX_HEADER_BYTES_TOTAL}"),
        ));
    }
    Ok(Registration {
        host_id: r.host_id,
        peer_id: r.peer_id,
        task_id,
        meta: TaskMeta {
            url: r.url,
            digest: r.digest,
            piece_length_bytes: r.piece_length_bytes,
            content_length_bytes: r.content_length_bytes,
            piece_count: r.piece_count,
            request_headers: r.request_headers.into_iter().collect(),
        },
        need_back_to_source: r.need_back_to_source,
        completed: r.completed,
        policy,
        partial: r.partial && !r.completed,
    })
}

fn bounded(field: &'static str, value: &str, max_bytes: usize) -> Result<(), ServiceError> {
    if value.len() > max_bytes {
        return Err(ServiceError::field(field, format!("is {} bytes; at most {max_bytes}", value.len())));
    }
    Ok(())
}

/// The name of a request variant, for messages and metrics.
pub fn request_name(r: &pb::announce_peer_request::Request) -> &'static str {
    use pb::announce_peer_request::Request as R;
    match r {
        R::Register(_) => "register",
        R::PiecesFinished(_) => "pieces_finished",
        R::PieceFailed(_) => "piece_failed",
        R::Reschedule(_) => "reschedule",
        R::DownloadFinished(_) => "download_finished",
        R::DownloadFailed(_) => "download_failed",
        R::AskBackToSource(_) => "ask_back_to_source",
        R::WantAll(_) => "want_all",
    }
}

pub fn peer_state(s: PeerState) -> pb::PeerState {
    match s {
        PeerState::Received => pb::PeerState::Received,
        PeerState::Running => pb::PeerState::Running,
        PeerState::BackToSource => pb::PeerState::BackToSource,
        PeerState::Succeeded => pb::PeerState::Succeeded,
        PeerState::Failed => pb::PeerState::Failed,
        PeerState::Leave => pb::PeerState::Left,
    }
}

pub fn back_to_source(reason: BackToSourceReason) -> pb::BackToSource {
    let (reason, description) = match reason {
        BackToSourceReason::Ordered => (pb::BackToSourceReason::Ordered, "ordered: fetch the task from the origin"),
        BackToSourceReason::PeerAsked => {
            (pb::BackToSourceReason::PeerAsked, "P2P made no progress and the task is under its back-to-source limit")
        }
        BackToSourceReason::NoParents => {
            (pb::BackToSourceReason::NoParents, "no parent became available in time; fetch from the origin")
        }
    };
    pb::BackToSource { reason: reason.into(), description: description.to_string() }
}

pub fn failed(reason: FailReason) -> pb::SchedulingFailed {
    let (reason, description) = match reason {
        FailReason::RetryLimit => (pb::FailReason::RetryLimit, "no parent found within the retry limit"),
        FailReason::NoSource => (pb::FailReason::NoSource, "no parent and going back to source is not allowed"),
    };
    pb::SchedulingFailed { reason: reason.into(), description: description.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn valid_register() -> pb::RegisterPeer {
        pb::RegisterPeer {
            host_id: "h1".into(),
            peer_id: "p1".into(),
            task_id: "AB".repeat(32),
            url: "https://registry.example/v2/x/blobs/sha256:00".into(),
            digest: Some("sha256:00ff".into()),
            piece_length_bytes: 4 << 20,
            content_length_bytes: (10 << 20) + 1,
            piece_count: 3,
            need_back_to_source: false,
            request_headers: Default::default(),
            completed: false,
            policy: "default".into(),
            partial: false,
        }
    }

    #[test]
    fn registration_normalises_task_id_and_checks_piece_arithmetic() {
        let r = registration(valid_register()).unwrap();
        assert_eq!(r.task_id, "ab".repeat(32));
        let mut bad = valid_register();
        bad.piece_count = 2;
        let e = registration(bad).unwrap_err().to_string();
        assert!(e.starts_with("register.piece_count: is 2 but"), "{e}");
        let mut bad = valid_register();
        bad.task_id = "not-a-hash".into();
        assert!(registration(bad).unwrap_err().to_string().starts_with("register.task_id:"));
        let mut bad = valid_register();
        bad.digest = Some("sha256".into());
        assert!(registration(bad).unwrap_err().to_string().starts_with("register.digest:"));
        let mut bad = valid_register();
        bad.piece_length_bytes = 0;
        assert!(registration(bad).is_err());
        let mut bad = valid_register();
        bad.peer_id = String::new();
        assert_eq!(registration(bad).unwrap_err().to_string(), "register.peer_id: is empty");
        let mut bad = valid_register();
        bad.completed = true;
        bad.need_back_to_source = true;
        assert!(registration(bad).unwrap_err().to_string().starts_with("register.completed:"));
        // The peer says its policy; the core compares it with the scheduler's.
        assert_eq!(registration(valid_register()).unwrap().policy, crate::core::Policy::Default);
        let mut bad = valid_register();
        bad.policy = String::new();
        let e = registration(bad).unwrap_err().to_string();
        assert!(e.starts_with("register.policy: is \"\"; name the peer core's policy"), "{e}");
    }

    #[test]
    fn host_checks_address_port_kind_and_load() {
        let good = pb::Host {
            id: "h".into(),
            ip: "10.0.0.1".into(),
            data_port: 65002,
            kind: pb::HostKind::Seed.into(),
            ..Default::default()
        };
        assert_eq!(host(Some(good.clone())).unwrap().kind, HostKind::Seed);
        let e = |h: pb::Host| host(Some(h)).unwrap_err().to_string();
        assert!(e(pb::Host { ip: "10.0.0".into(), ..good.clone() }).starts_with("host.ip:"));
        assert!(e(pb::Host { data_port: 70000, ..good.clone() }).starts_with("host.data_port:"));
        assert!(e(pb::Host { data_port: 0, ..good.clone() }).starts_with("host.data_port:"));
        assert!(e(pb::Host { kind: 0, ..good.clone() }).starts_with("host.kind: is unset"));
        assert!(e(pb::Host { resolver_port: 65536, ..good.clone() }).starts_with("host.resolver_port:"));
        assert_eq!(host(Some(pb::Host { resolver_port: 65004, ..good.clone() })).unwrap().resolver_port, 65004);
        assert!(e(pb::Host { kind: 9, ..good.clone() }).starts_with("host.kind:"));
        let load = pb::HostLoad { cpu_percent: 120.0, ..Default::default() };
        assert!(e(pb::Host { load: Some(load), ..good.clone() }).starts_with("host.load.cpu_percent:"));
        assert_eq!(host(None).unwrap_err().to_string(), "host: is missing");
    }
}
