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
    (sc.cluster.node_bandwidth_gbps * 1e9).min(sc.cluster.node_disk_write_mbps * 8e6)
}

pub fn seed_down_bps(sc: &Scenario) -> f64 {
    (sc.cluster.seed_peer_bandwidth_gbps * 1e9).min(sc.cluster.seed_peer_disk_write_mbps * 8e6)
}

pub fn lower_bound_s(sc: &Scenario) -> f64 {
    let f_bits = image_bytes(sc) as f64 * 8.0;
    let n = f64::from(node_count(sc));
    let u_s = sc.registry.egress_gbps * 1e9;
    let uploads = n * sc.cluster.node_bandwidth_gbps * 1e9
        + f64::from(sc.cluster.seed_peers) * sc.cluster.seed_peer_bandwidth_gbps * 1e9;
    let d_min = node_down_bps(sc);
    (f_bits / u_s).max(f_bits / d_min).max(n * f_bits / (u_s + uploads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_is_download_limited_for_the_seed_benchmark() {
        let text = include_str!("../../../scenarios/tensorflow-500.toml");
        let sc = crate::scenario::parse_scenario(text, "tensorflow-500.toml").unwrap();
        let f = image_bytes(&sc) as f64 * 8.0;
        assert!((lower_bound_s(&sc) - f / 6e9).abs() < 1e-9);
    }
}
