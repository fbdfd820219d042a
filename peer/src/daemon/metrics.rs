//! Prometheus metrics of the daemon (`/metrics`, prefix `peer`). Counters move as pieces
//! arrive; upload figures and store gauges are read from the data-plane server and the
//! store at each scrape, so they cannot drift.

use crate::dataplane::ServerStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Where bytes handed to a download came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteSource {
    Origin,
    Parent,
    /// Already in the local store (a finished task, or pieces of a resumed one).
    LocalCache,
}

impl ByteSource {
    fn label(self) -> &'static str {
        match self {
            ByteSource::Origin => "origin",
            ByteSource::Parent => "parent",
            ByteSource::LocalCache => "local_cache",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabel {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type LatencyFamily = Family<SourceLabel, Histogram, fn() -> Histogram>;

/// What the scrape reads from elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub upload: ServerStats,
    pub store_used_bytes: u64,
    pub store_quota_bytes: u64,
    pub tasks_cached: u64,
    pub downloads_running: u64,
    /// `[tls]`: handshakes refused by the data plane and the local API, and reloads.
    pub tls_refused_data: u64,
    pub tls_refused_local_api: u64,
    pub tls_reloads: u64,
}

pub struct Metrics {
    registry: Registry,
    bytes: Family<SourceLabel, Counter>,
    piece_latency: LatencyFamily,
    piece_failures: Family<SourceLabel, Counter>,
    downloads: Family<ResultLabel, Counter>,
    uploaded_bytes: Counter,
    uploaded_pieces: Counter,
    upload_busy: Counter,
    upload_unauthorized: Counter,
    corrupt_pieces_refused: Counter,
    uploads_active: Gauge,
    store_used: Gauge,
    store_quota: Gauge,
    tasks_cached: Gauge,
    downloads_running: Gauge,
    mirror_requests: Family<MirrorLabel, Counter>,
    mirror_bytes: Family<SourceLabel, Counter>,
    mirror_fallbacks: Family<ReasonLabel, Counter>,
    mirror_stale_blobs: Counter,
    mirror_manifests: Family<SourceLabel, Counter>,
    tls_refused: Family<ListenerLabel, Counter>,
    tls_reloads: Counter,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(1e-3, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("peer");
        let bytes = Family::<SourceLabel, Counter>::default();
        r.register("download_bytes", "Bytes of downloads by source (origin, parent, local_cache)", bytes.clone());
        let piece_latency = LatencyFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        r.register("piece_seconds", "Time to fetch, verify and store one piece, by source", piece_latency.clone());
        let piece_failures = Family::<SourceLabel, Counter>::default();
        r.register("piece_failures", "Piece fetches that failed, by source", piece_failures.clone());
        let downloads = Family::<ResultLabel, Counter>::default();
        r.register("downloads", "Downloads ended, by result (ok, cached, failed)", downloads.clone());
        let uploaded_bytes = Counter::default();
        r.register("upload_bytes", "Piece bytes sent to children", uploaded_bytes.clone());
        let uploaded_pieces = Counter::default();
        r.register("upload_pieces", "Pieces sent to children", uploaded_pieces.clone());
        let upload_busy = Counter::default();
        r.register("upload_busy_replies", "Piece requests refused for want of an upload slot", upload_busy.clone());
        let upload_unauthorized = Counter::default();
        r.register(
            "upload_unauthorized_replies",
            "Data-plane requests refused for want of a valid grant (none, expired, or not checking out)",
            upload_unauthorized.clone(),
        );
        let corrupt_pieces_refused = Counter::default();
        r.register(
            "upload_corrupt_pieces",
            "Pieces found corrupt on disk when a child asked (dropped, never sent)",
            corrupt_pieces_refused.clone(),
        );
        let uploads_active = Gauge::default();
        r.register("uploads_active", "Piece uploads in progress", uploads_active.clone());
        let store_used = Gauge::default();
        r.register("store_used_bytes", "Bytes of finished pieces in the store", store_used.clone());
        let store_quota = Gauge::default();
        r.register("store_quota_bytes", "The store's quota", store_quota.clone());
        let tasks_cached = Gauge::default();
        r.register("store_tasks", "Tasks in the store (complete or partial)", tasks_cached.clone());
        let downloads_running = Gauge::default();
        r.register("downloads_running", "Downloads in progress", downloads_running.clone());
        let mirror_requests = Family::<MirrorLabel, Counter>::default();
        r.register(
            "mirror_requests",
            "Registry mirror requests by kind (ping, manifest, listing, blob, blob_range, invalid, tls_hello) and result (p2p, p2p_range, upstream, fallback, client_error, denied, upstream_error)",
            mirror_requests.clone(),
        );
        let mirror_bytes = Family::<SourceLabel, Counter>::default();
        r.register(
            "mirror_bytes",
            "Body bytes the mirror sent to clients, by source (p2p, upstream)",
            mirror_bytes.clone(),
        );
        let mirror_fallbacks = Family::<ReasonLabel, Counter>::default();
        r.register(
            "mirror_upstream_fallbacks",
            "Blob requests passed to the registry because P2P could not start them, by reason",
            mirror_fallbacks.clone(),
        );
        let mirror_manifests = Family::<SourceLabel, Counter>::default();
        r.register(
            "mirror_manifest_answers",
            "Manifest requests by where their answer came from: cache (held and fresh), joined (another request was asking), seed (a seed peer's resolver), registry, stale (an outage, mirror.serve_stale_on_error), passed (sent upstream as they came: TTL 0 or not cacheable)",
            mirror_manifests.clone(),
        );
        let mirror_stale_blobs = Counter::default();
        r.register(
            "mirror_stale_blobs",
            "Blob requests served during a registry outage on an earlier yes of the registry to the same credentials (mirror.serve_stale_on_error)",
            mirror_stale_blobs.clone(),
        );
        let tls_refused = Family::<ListenerLabel, Counter>::default();
        r.register(
            "tls_handshake_failures",
            "Connections refused in the TLS handshake (no certificate of the cluster CA, or none at all), by listener (data, local_api)",
            tls_refused.clone(),
        );
        for listener in ["data", "local_api"] {
            let _ = tls_refused.get_or_create(&ListenerLabel { listener });
        }
        let tls_reloads = Counter::default();
        r.register("tls_reloads", "Times the [tls] files were re-read after they changed", tls_reloads.clone());
        Metrics {
            tls_refused,
            tls_reloads,
            mirror_requests,
            mirror_bytes,
            mirror_fallbacks,
            mirror_stale_blobs,
            mirror_manifests,
            registry: r,
            bytes,
            piece_latency,
            piece_failures,
            downloads,
            uploaded_bytes,
            uploaded_pieces,
            upload_busy,
            upload_unauthorized,
            corrupt_pieces_refused,
            uploads_active,
            store_used,
            store_quota,
            tasks_cached,
            downloads_running,
        }
    }

    pub fn bytes(&self, source: ByteSource, bytes: u64) {
        self.bytes.get_or_create(&SourceLabel { source: source.label() }).inc_by(bytes);
    }

    pub fn piece(&self, source: ByteSource, took: Duration) {
        self.piece_latency.get_or_create(&SourceLabel { source: source.label() }).observe(took.as_secs_f64());
    }

    pub fn piece_failed(&self, source: ByteSource) {
        self.piece_failures.get_or_create(&SourceLabel { source: source.label() }).inc();
    }

    pub fn mirror_request(&self, kind: &'static str, result: &'static str) {
        self.mirror_requests.get_or_create(&MirrorLabel { kind, result }).inc();
    }

    pub fn mirror_bytes(&self, source: &'static str, bytes: u64) {
        self.mirror_bytes.get_or_create(&SourceLabel { source }).inc_by(bytes);
    }

    pub fn mirror_manifest(&self, source: &'static str) {
        self.mirror_manifests.get_or_create(&SourceLabel { source }).inc();
    }

    pub fn mirror_stale_blob(&self) {
        self.mirror_stale_blobs.inc();
    }

    pub fn mirror_fallback(&self, reason: &'static str) {
        self.mirror_fallbacks.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn download_ended(&self, result: &'static str) {
        self.downloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// The text exposition, with the scrape-time figures set first.
    pub fn render(&self, s: &Snapshot) -> String {
        let set = |c: &Counter, v: u64| {
            let now = c.get();
            if v > now {
                c.inc_by(v - now);
            }
        };
        set(&self.uploaded_bytes, s.upload.piece_bytes_sent);
        set(&self.uploaded_pieces, s.upload.pieces_sent);
        set(&self.upload_busy, s.upload.busy_replies);
        set(&self.upload_unauthorized, s.upload.unauthorized_replies);
        set(&self.corrupt_pieces_refused, s.upload.corrupt_pieces);
        set(&self.tls_refused.get_or_create(&ListenerLabel { listener: "data" }), s.tls_refused_data);
        set(&self.tls_refused.get_or_create(&ListenerLabel { listener: "local_api" }), s.tls_refused_local_api);
        set(&self.tls_reloads, s.tls_reloads);
        self.uploads_active.set(i64::from(s.upload.uploads_active));
        self.store_used.set(s.store_used_bytes as i64);
        self.store_quota.set(s.store_quota_bytes as i64);
        self.tasks_cached.set(s.tasks_cached as i64);
        self.downloads_running.set(s.downloads_running as i64);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
