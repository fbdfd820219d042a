//! Kumar & Ross minimum distribution time for the p2p setting:
//! max(F/u_s, F/d_min, N*F/(u_s + sum u_i)), with the registry as the server, every node
//! and seed peer as an uploader, and d_min the slowest node's effective download rate
//! (NIC or disk write, whichever is lower).

use crate::scenario::Scenario;

pub fn image_bytes(sc: &Scenario) -> u64 {
    sc.image.layer_bytes.iter().sum::<u64>() + sc.image.config_bytes
}

pub fn node_count(sc: &Scenario) -> u32 {
    sc.cluster.pods.div_ceil(sc.cluster.pods_per_node)
}

/// Effective download rate of a node in bits/s: the NIC, or the disk if slower.
pub fn node_down_bps(sc: &Scenario) -> f64 {
    sc.payload_bps(sc.cluster.node_bandwidth_gbps).min(sc.cluster.node_disk_write_mbps * 8e6)
}

pub fn seed_down_bps(sc: &Scenario) -> f64 {
    sc.payload_bps(sc.cluster.seed_peer_bandwidth_gbps).min(sc.cluster.seed_peer_disk_write_mbps * 8e6)
}

pub fn lower_bound_s(sc: &Scenario) -> f64 {
    let f_bits = image_bytes(sc) as f64 * 8.0;
    let n = f64::from(node_count(sc));
    let u_s = sc.payload_bps(sc.registry.egress_gbps);
    let uploads = n * sc.payload_bps(sc.cluster.node_bandwidth_gbps)
        + f64::from(sc.cluster.seed_peers) * sc.payload_bps(sc.cluster.seed_peer_bandwidth_gbps);
    let d_min = node_down_bps(sc);
    (f_bits / u_s).max(f_bits / d_min).max(n * f_bits / (u_s + uploads))
}

/// What the request path alone costs every p2p rollout, whatever the scheduler does: a node
/// learns the layer digests only from its manifest (HEAD by tag, then GET by digest, both
/// upstream), the registry admits at most `qps_limit` requests a second, and the last node
/// to learn them must then receive the whole image at its own download rate. So the last
/// node holds the image no sooner than
///   schedule_delay + max(2 * latency, (2N - 1) / qps_limit + latency) + F / d_min.
/// The Kumar & Ross bound leaves this out (all nodes present and informed at t = 0); with
/// Nginx at 500 nodes it is 1.29x that bound.
pub fn request_floor_s(sc: &Scenario) -> f64 {
    let latency_s = sc.registry.request_latency_ms / 1e3;
    let manifest_requests = 2.0 * f64::from(node_count(sc));
    let informed_s = sc.pod.schedule_delay_ms / 1e3
        + (2.0 * latency_s).max((manifest_requests - 1.0) / sc.registry.qps_limit + latency_s);
    informed_s + image_bytes(sc) as f64 * 8.0 / node_down_bps(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_file(text: &str, name: &str) -> Scenario {
        crate::scenario::parse_scenario(text, name).unwrap()
    }

    #[test]
    fn request_floor_is_the_manifest_queue_then_the_image_at_the_link() {
        let sc = seed_file(include_str!("../../../scenarios/nginx-500.toml"), "nginx-500.toml");
        let image_s = image_bytes(&sc) as f64 * 8.0 / (6e9 * sc.network.wire_efficiency());
        // 1000 manifest requests at 5000/s: the last is admitted 0.1998 s after the first
        // (no sooner than the 10 ms schedule delay) and answered 5 ms later.
        assert!((request_floor_s(&sc) - (0.010 + 0.1998 + 0.005 + image_s)).abs() < 1e-9);
        assert!(request_floor_s(&sc) > 1.25 * lower_bound_s(&sc));
        // Few nodes: the two round trips dominate the queue.
        let sc = seed_file(include_str!("../../../scenarios/nginx-50.toml"), "nginx-50.toml");
        assert!((request_floor_s(&sc) - (0.010 + 0.0198 + 0.005 + image_s)).abs() < 1e-9);
    }

    #[test]
    fn bound_is_download_limited_for_the_seed_benchmark() {
        let text = include_str!("../../../scenarios/tensorflow-500.toml");
        let sc = crate::scenario::parse_scenario(text, "tensorflow-500.toml").unwrap();
        let f = image_bytes(&sc) as f64 * 8.0;
        // Payload at 1448 of every 1538 bytes on the wire.
        assert!((sc.network.wire_efficiency() - 1448.0 / 1538.0).abs() < 1e-12);
        assert!((lower_bound_s(&sc) - f / (6e9 * 1448.0 / 1538.0)).abs() < 1e-9);
    }
}
