//! Semantic checks of a deserialized scenario: the one place a scenario is validated.
//!
//! Each rule names the dotted key at fault and says what value would be accepted, so the
//! loader can point at the line. The first failing rule is reported.

use super::model::{Image, Mode, Scenario};

/// A rule a scenario breaks: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub key: String,
    pub message: String,
}

/// Longest accepted latency, delay or service time. Far above anything real; it only
/// keeps nanosecond sums of many such times well inside u64 (about 584 years).
const DURATION_MAX_S: f64 = 86_400.0;
/// Longest accepted run: 30 virtual days.
const TIME_LIMIT_MAX_S: f64 = 30.0 * 86_400.0;

pub(crate) fn validate(s: &Scenario) -> Result<(), Invalid> {
    name(s)?;
    policy(s)?;
    modes(s)?;
    cluster(s)?;
    registry(s)?;
    network(s)?;
    scheduler(s)?;
    mirror(s)?;
    image(s)?;
    super::workloads::validate(s)?;
    pod(s)?;
    lazy(s)?;
    faults(s)?;
    super::churn::validate(s)?;
    s.cpu.validate()?;
    if let Err((key, message)) = s.preheat.check() {
        fail(&format!("preheat.{key}"), message)?;
    }
    sim(s)
}

fn faults(s: &Scenario) -> Result<(), Invalid> {
    let Some(o) = &s.faults.replica_outage else { return Ok(()) };
    let replicas = s.cluster.scheduler_replicas;
    if o.replica >= replicas {
        return fail(
            "faults.replica_outage.replica",
            format!("is {} but the cluster has {replicas} scheduler replicas (numbered from 0)", o.replica),
        );
    }
    if replicas < 2 {
        return fail(
            "faults.replica_outage",
            "needs cluster.scheduler_replicas of at least 2: with one, nothing takes its tasks".to_string(),
        );
    }
    duration("faults.replica_outage.down_at_s", o.down_at_s)?;
    duration("faults.replica_outage.notice_ms", o.notice_ms)?;
    if let Some(back) = o.back_at_s {
        duration("faults.replica_outage.back_at_s", back)?;
        if back <= o.down_at_s {
            return fail(
                "faults.replica_outage.back_at_s",
                format!("({back}) must be after down_at_s ({})", o.down_at_s),
            );
        }
    }
    Ok(())
}

pub(super) fn fail(key: &str, message: String) -> Result<(), Invalid> {
    Err(Invalid { key: key.to_string(), message })
}

/// Rates and sizes: a finite number above zero.
pub(super) fn positive(key: &str, value: f64) -> Result<(), Invalid> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    fail(key, format!("must be a finite number greater than 0 (got {value})"))
}

/// Latencies, delays and service times, in the unit the key's name ends with.
fn duration(key: &str, value: f64) -> Result<(), Invalid> {
    let (unit, per_s) = unit_of(key);
    let max = DURATION_MAX_S * per_s;
    if value.is_finite() && (0.0..=max).contains(&value) {
        return Ok(());
    }
    fail(key, format!("must be a finite number from 0 to {max} {unit} (got {value})"))
}

fn unit_of(key: &str) -> (&'static str, f64) {
    if key.ends_with("_us") {
        ("us", 1e6)
    } else if key.ends_with("_ms") {
        ("ms", 1e3)
    } else {
        ("s", 1.0)
    }
}

fn at_least_one(key: &str, value: u64) -> Result<(), Invalid> {
    if value >= 1 {
        return Ok(());
    }
    fail(key, format!("must be at least 1 (got {value})"))
}

fn name(s: &Scenario) -> Result<(), Invalid> {
    // The name becomes a report directory, so it must be one plain path component.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !s.name.is_empty() && !s.name.starts_with('.') && s.name.chars().all(plain) {
        return Ok(());
    }
    fail(
        "name",
        format!(
            "must be a non-empty directory name of letters, digits, '-', '_' or '.', \
             not starting with '.' (got {:?})",
            s.name
        ),
    )
}

fn policy(s: &Scenario) -> Result<(), Invalid> {
    if sched::Policy::parse(&s.policy).is_some() {
        return Ok(());
    }
    let valid = sched::Policy::NAMES.join(", ");
    fail("policy", format!("unknown policy {:?}; valid policies: {valid}", s.policy))
}

fn modes(s: &Scenario) -> Result<(), Invalid> {
    if s.modes.is_empty() {
        let valid: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
        return fail(
            "modes",
            format!("must name at least one mode (valid: {}), or be left out for all", valid.join(", ")),
        );
    }
    for (i, mode) in s.modes.iter().enumerate() {
        if s.modes[..i].contains(mode) {
            return fail(
                &format!("modes[{i}]"),
                format!("mode {:?} is listed twice; list each mode once", mode.name()),
            );
        }
    }
    Ok(())
}

fn cluster(s: &Scenario) -> Result<(), Invalid> {
    let c = &s.cluster;
    super::groups::validate(s)?;
    if !c.has_groups() {
        if !s.has_workloads() {
            at_least_one("cluster.pods", c.pods().into())?;
        }
        at_least_one("cluster.pods_per_node", c.pods_per_node().into())?;
        positive("cluster.node_bandwidth_gbps", c.node_bandwidth_gbps())?;
        positive("cluster.node_disk_write_mbps", c.node_disk_write_mbps())?;
    }
    let p2p = s.modes.iter().any(|m| matches!(m, Mode::P2p | Mode::P2pLazy));
    if p2p && c.seed_peers == 0 {
        // Seed peers are the only peers that go back to the registry in p2p modes.
        return fail(
            "cluster.seed_peers",
            "must be at least 1 when modes include p2p or p2p-lazy (got 0); \
             set seed_peers or use modes = [\"oci\"]"
                .to_string(),
        );
    }
    positive("cluster.seed_peer_bandwidth_gbps", c.seed_peer_bandwidth_gbps)?;
    positive("cluster.seed_peer_disk_write_mbps", c.seed_peer_disk_write_mbps)?;
    at_least_one("cluster.scheduler_replicas", c.scheduler_replicas.into())
}

fn registry(s: &Scenario) -> Result<(), Invalid> {
    let r = &s.registry;
    positive("registry.egress_gbps", r.egress_gbps)?;
    duration("registry.request_latency_ms", r.request_latency_ms)?;
    positive("registry.qps_limit", r.qps_limit)
}

fn network(s: &Scenario) -> Result<(), Invalid> {
    let n = &s.network;
    if !(576..=65_535).contains(&n.mtu_bytes) {
        return fail(
            "network.mtu_bytes",
            format!("must be from 576 to 65535 (1500 on most networks, 9000 with jumbo frames; got {})", n.mtu_bytes),
        );
    }
    if n.ip_tcp_header_bytes < 40 || n.ip_tcp_header_bytes + 64 > n.mtu_bytes {
        return fail(
            "network.ip_tcp_header_bytes",
            format!(
                "must be at least 40 (IPv4 + TCP) and leave 64 bytes of payload in network.mtu_bytes (got {})",
                n.ip_tcp_header_bytes
            ),
        );
    }
    if n.link_overhead_bytes > 1000 {
        return fail(
            "network.link_overhead_bytes",
            format!(
                "must be from 0 to 1000 (38 on an Ethernet wire, 14 under tbf on a veth; got {})",
                n.link_overhead_bytes
            ),
        );
    }
    if !(0.0..=1000.0).contains(&n.queue_delay_ms) {
        return fail(
            "network.queue_delay_ms",
            format!(
                "must be from 0 to 1000 ms (0 for short queues; a tbf shaper with latency 20ms holds up to 20; got {})",
                n.queue_delay_ms
            ),
        );
    }
    Ok(())
}

fn scheduler(s: &Scenario) -> Result<(), Invalid> {
    let c = &s.scheduler.cost;
    duration("scheduler.schedule_service_us", c.schedule_service_us)?;
    duration("scheduler.report_service_us", c.report_service_us)?;
    duration("scheduler.rpc_latency_ms", c.rpc_latency_ms)
}

fn mirror(s: &Scenario) -> Result<(), Invalid> {
    ttl_ms("mirror.tag_ttl_ms", s.mirror.tag_ttl_ms)?;
    ttl_ms("mirror.auth_check_ttl_ms", s.mirror.auth_check_ttl_ms)
}

/// A `[mirror]` TTL, in the scenario or in the `peerd.toml` it names: whole milliseconds up
/// to the longest duration a scenario takes (a day; far longer than any rollout).
pub(crate) fn ttl_ms(key: &str, value: u64) -> Result<(), Invalid> {
    let max = (DURATION_MAX_S * 1e3) as u64;
    if value <= max {
        return Ok(());
    }
    fail(key, format!("must be from 0 (keep nothing) to {max} ms, a day (got {value})"))
}

fn image(s: &Scenario) -> Result<(), Invalid> {
    match &s.image {
        Some(i) => image_at("image", i),
        None => Ok(()),
    }
}

/// An image table (`[image]`, `[workload.image]`) whose keys are under `at`.
pub(super) fn image_at(at: &str, i: &Image) -> Result<(), Invalid> {
    if i.reference.trim().is_empty() {
        return fail(&format!("{at}.reference"), "must not be empty; e.g. \"library/nginx:1.25\"".to_string());
    }
    if i.layer_bytes.is_empty() {
        return fail(
            &format!("{at}.layer_bytes"),
            "must list at least one layer size in bytes, e.g. [1986743, 67118423]".to_string(),
        );
    }
    if let Some(zero) = i.layer_bytes.iter().position(|&b| b == 0) {
        return fail(&format!("{at}.layer_bytes[{zero}]"), "a layer must be at least 1 byte (got 0)".to_string());
    }
    // Totals are summed in u64 bytes downstream; refuse what cannot be summed.
    let blobs = [i.manifest_bytes, i.config_bytes];
    if i.layer_bytes.iter().chain(&blobs).try_fold(0u64, |sum, &b| sum.checked_add(b)).is_none() {
        return fail(&format!("{at}.layer_bytes"), "the image's total size overflows 64-bit bytes".to_string());
    }
    if !i.layer_digests.is_empty() && i.layer_digests.len() != i.layer_bytes.len() {
        return fail(
            &format!("{at}.layer_digests"),
            format!(
                "lists {} digests for {} layers; give one per layer of layer_bytes, in the same order, or leave it out",
                i.layer_digests.len(),
                i.layer_bytes.len()
            ),
        );
    }
    if let Some(k) = i.layer_digests.iter().position(|d| d.trim().is_empty()) {
        return fail(&format!("{at}.layer_digests[{k}]"), "must not be empty; e.g. \"sha256:3f4a...\"".to_string());
    }
    at_least_one(&format!("{at}.manifest_bytes"), i.manifest_bytes)?;
    at_least_one(&format!("{at}.config_bytes"), i.config_bytes)
}

fn pod(s: &Scenario) -> Result<(), Invalid> {
    let p = &s.pod;
    duration("pod.schedule_delay_ms", p.schedule_delay_ms)?;
    duration("pod.schedule_jitter_ms", p.schedule_jitter_ms)?;
    at_least_one("pod.max_concurrent_downloads", p.max_concurrent_downloads.into())?;
    positive("pod.unpack_mbps_per_core", p.unpack_mbps_per_core)?;
    positive("pod.unpack_cores", p.unpack_cores)?;
    duration("pod.container_start_ms", p.container_start_ms)
}

fn lazy(s: &Scenario) -> Result<(), Invalid> {
    let l = &s.lazy;
    let f = l.startup_working_set_fraction;
    if !(f > 0.0 && f <= 1.0) {
        // Written so NaN fails too.
        return fail(
            "lazy.startup_working_set_fraction",
            format!("must be in (0, 1], a share of the image's bytes, e.g. 0.06 (got {f})"),
        );
    }
    at_least_one("lazy.range_read_bytes", l.range_read_bytes)?;
    at_least_one("lazy.range_reads_in_flight", l.range_reads_in_flight.into())?;
    duration("lazy.mount_ms", l.mount_ms)
}

fn sim(s: &Scenario) -> Result<(), Invalid> {
    let q = s.sim.quantum_us;
    if !(q.is_finite() && (0.0..=1e6).contains(&q)) {
        return fail("sim.quantum_us", format!("must be a finite number from 0 (exact) to 1000000 us (got {q})"));
    }
    let t = s.sim.time_limit_s;
    if !(t.is_finite() && t > 0.0 && t <= TIME_LIMIT_MAX_S) {
        return fail(
            "sim.time_limit_s",
            format!("must be a finite number above 0 and at most {TIME_LIMIT_MAX_S} s (got {t})"),
        );
    }
    Ok(())
}
