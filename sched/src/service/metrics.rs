//! Prometheus metrics of the service, rendered in the text exposition format at /metrics.
//! Counters and the latency histogram are updated as requests run; the gauges (hosts,
//! tasks, peers, streams) are set from the state at each scrape, so they cannot drift.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    request: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

type LatencyFamily = Family<RequestLabel, Histogram, fn() -> Histogram>;

/// Counts the state holds at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    pub hosts: i64,
    pub tasks: i64,
    /// (state name, peers in it), one entry per core peer state.
    pub peers: Vec<(&'static str, i64)>,
    pub peer_streams: i64,
    pub seed_watchers: i64,
    /// The core's count of peers the seed took beyond its roots (a counter, kept there).
    pub seed_fallbacks: u64,
}

pub struct Metrics {
    registry: Registry,
    decisions: Family<KindLabel, Counter>,
    back_to_source: Family<ReasonLabel, Counter>,
    latency: LatencyFamily,
    requests_refused: Family<RequestLabel, Counter>,
    evictions: Counter,
    seed_unavailable: Counter,
    seed_fallbacks: Counter,
    hosts: Gauge,
    tasks: Gauge,
    peers: Family<StateLabel, Gauge>,
    peer_streams: Gauge,
    seed_watchers: Gauge,
    preheat_events: Family<EventLabel, Counter>,
    tls_refused: Family<ListenerLabel, Counter>,
    tls_reloads: Counter,
    /// `[tls]` of the service, whose counts the TLS counters follow at each scrape.
    tls: std::sync::OnceLock<svc::tls::Tls>,
}

fn latency_histogram() -> Histogram {
    // 1 us .. ~0.5 s.
    Histogram::new(exponential_buckets(1e-6, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sched");
        let decisions = Family::<KindLabel, Counter>::default();
        registry.register(
            "decisions",
            "Scheduling decisions delivered, by kind (parents, back_to_source, failed, trigger_seed)",
            decisions.clone(),
        );
        let back_to_source = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "back_to_source_orders",
            "Back-to-source orders, by reason (ordered, no_parents)",
            back_to_source.clone(),
        );
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "decision_latency_seconds",
            "Time a request spends in the scheduler (lock wait, core, delivery of its decisions), by request",
            latency.clone(),
        );
        let requests_refused = Family::<RequestLabel, Counter>::default();
        registry.register(
            "requests_refused",
            "Requests refused with an error status, by request",
            requests_refused.clone(),
        );
        let evictions = Counter::default();
        registry.register("evictions", "Peers evicted for making no progress", evictions.clone());
        let seed_unavailable = Counter::default();
        registry.register(
            "seed_unavailable",
            "Seed triggers that could not be served (no watcher, seed gone or silent); the task's peers may then go back to source",
            seed_unavailable.clone(),
        );
        let seed_fallbacks = Counter::default();
        registry.register(
            "seed_fallbacks",
            "Peers the seed took beyond its roots in a stripe where no other parent fit (a range reader at once, a whole download after the wait)",
            seed_fallbacks.clone(),
        );
        let hosts = Gauge::default();
        registry.register("hosts", "Announced hosts that have not left", hosts.clone());
        let tasks = Gauge::default();
        registry.register("tasks", "Tasks known to the scheduler", tasks.clone());
        let peers = Family::<StateLabel, Gauge>::default();
        registry.register("peers", "Peers known to the scheduler, by state", peers.clone());
        let peer_streams = Gauge::default();
        registry.register("peer_streams", "Open AnnouncePeer streams", peer_streams.clone());
        let seed_watchers = Gauge::default();
        registry.register("seed_watchers", "Open WatchSeedTasks streams", seed_watchers.clone());
        let preheat_events = Family::<EventLabel, Counter>::default();
        registry.register(
            "preheat_jobs",
            "Preheat requests and outcomes: started (a new run ordered), reused (an existing job returned), succeeded, failed",
            preheat_events.clone(),
        );
        for event in ["started", "reused", "succeeded", "failed"] {
            let _ = preheat_events.get_or_create(&EventLabel { event });
        }
        let tls_refused = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "Connections refused in the TLS handshake (no certificate of the cluster CA, or none at all), by listener",
            tls_refused.clone(),
        );
        let _ = tls_refused.get_or_create(&ListenerLabel { listener: svc::tls::Listener::Grpc.name() });
        let tls_reloads = Counter::default();
        registry.register("tls_reloads", "Times the [tls] files were re-read after they changed", tls_reloads.clone());
        // Known label values start at 0, so dashboards see the series before the first event.
        for kind in ["parents", "back_to_source", "failed", "trigger_seed"] {
            let _ = decisions.get_or_create(&KindLabel { kind });
        }
        for reason in ["ordered", "no_parents"] {
            let _ = back_to_source.get_or_create(&ReasonLabel { reason });
        }
        Metrics {
            registry,
            decisions,
            back_to_source,
            latency,
            requests_refused,
            evictions,
            seed_unavailable,
            seed_fallbacks,
            hosts,
            tasks,
            peers,
            peer_streams,
            seed_watchers,
            preheat_events,
            tls_refused,
            tls_reloads,
            tls: std::sync::OnceLock::new(),
        }
    }

    /// Exports `tls`'s refusals and reloads from now on.
    pub fn watch_tls(&self, tls: svc::tls::Tls) {
        let _ = self.tls.set(tls);
    }

    pub fn decision(&self, kind: &'static str) {
        self.decisions.get_or_create(&KindLabel { kind }).inc();
    }
    pub fn back_to_source(&self, reason: &'static str) {
        self.back_to_source.get_or_create(&ReasonLabel { reason }).inc();
    }
    pub fn latency(&self, request: &'static str, took: Duration) {
        self.latency.get_or_create(&RequestLabel { request }).observe(took.as_secs_f64());
    }
    pub fn refused(&self, request: &'static str) {
        self.requests_refused.get_or_create(&RequestLabel { request }).inc();
    }
    pub fn eviction(&self) {
        self.evictions.inc();
    }
    pub fn seed_unavailable(&self) {
        self.seed_unavailable.inc();
    }
    pub fn preheat(&self, event: &'static str) {
        self.preheat_events.get_or_create(&EventLabel { event }).inc();
    }

    /// The text exposition (OpenMetrics text, which Prometheus scrapes) with the gauges
    /// set to `g`.
    pub fn render(&self, g: &Gauges) -> String {
        self.hosts.set(g.hosts);
        self.tasks.set(g.tasks);
        for (state, n) in &g.peers {
            self.peers.get_or_create(&StateLabel { state }).set(*n);
        }
        self.peer_streams.set(g.peer_streams);
        self.seed_watchers.set(g.seed_watchers);
        catch_up(&self.seed_fallbacks, g.seed_fallbacks);
        if let Some(tls) = self.tls.get() {
            let listener = svc::tls::Listener::Grpc;
            catch_up(
                &self.tls_refused.get_or_create(&ListenerLabel { listener: listener.name() }),
                tls.refused(listener),
            );
            catch_up(&self.tls_reloads, tls.reloads());
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Raises `counter` to `total`, a count kept elsewhere that only grows.
fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let m = Metrics::new();
        m.decision("parents");
        m.decision("parents");
        m.back_to_source("ordered");
        m.latency("register", Duration::from_micros(30));
        let text = m.render(&Gauges {
            hosts: 4,
            tasks: 1,
            peers: vec![("running", 3)],
            seed_fallbacks: 2,
            ..Default::default()
        });
        assert!(text.contains("sched_seed_fallbacks_total 2"), "{text}");
        assert!(text.contains("sched_decisions_total{kind=\"parents\"} 2"), "{text}");
        assert!(text.contains("sched_back_to_source_orders_total{reason=\"ordered\"} 1"), "{text}");
        assert!(text.contains("sched_hosts 4"), "{text}");
        assert!(text.contains("sched_peers{state=\"running\"} 3"), "{text}");
        assert!(text.contains("sched_decision_latency_seconds_count{request=\"register\"} 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
