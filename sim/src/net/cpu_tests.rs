//! CPU pools: hand-computed rates of flows whose nodes charge CPU per byte.

use super::tests::{GBPS, MS_NS};
use super::*;

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!((actual - expected).abs() <= expected.abs() * 1e-9, "{what}: {actual} != {expected}");
}

fn cpu(pool: CpuPool, send_ns_per_byte: f64, receive_ns_per_byte: f64) -> NodeCpu {
    NodeCpu { pool, send_ns_per_byte, receive_ns_per_byte }
}

#[test]
fn a_node_short_of_cores_is_slower_than_its_link() {
    // 10 Gbit/s = 1.25 bytes/ns of link; 1 core at 2 ns per received byte = 0.5 bytes/ns.
    let mut net = FlowNet::new(0);
    let a = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let b = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let pool = net.add_cpu_pool(1.0);
    net.set_node_cpu(b, cpu(pool, 0.0, 2.0));
    let f = net.start(0, a, b, 1_000_000, 0);
    net.advance(0, &mut Vec::new());
    assert_close(net.rate_bps(f).unwrap(), 4.0 * GBPS, "CPU-bound rate");
    let out: Vec<_> = std::iter::from_fn(|| {
        let t = net.next_event_ns()?;
        let mut out = Vec::new();
        net.advance(t, &mut out);
        Some(out)
    })
    .flatten()
    .collect();
    assert_eq!(out[0].done_ns, 2 * MS_NS, "1 MB at 0.5 bytes/ns");
}

#[test]
fn nodes_sharing_a_machine_split_its_cores_by_weight() {
    // One pool of 2 cores for everyone (an emulation on one machine). a sends to b and c;
    // a costs 1 ns per byte sent, b and c 3 ns per byte received: each flow weighs 4 in
    // the pool, so 2 / (4 + 4) = 0.25 bytes/ns each (2 Gbit/s), under every link's 10.
    let mut net = FlowNet::new(0);
    let a = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let b = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let c = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let pool = net.add_cpu_pool(2.0);
    net.set_node_cpu(a, cpu(pool, 1.0, 0.0));
    net.set_node_cpu(b, cpu(pool, 0.0, 3.0));
    net.set_node_cpu(c, cpu(pool, 0.0, 3.0));
    let fb = net.start(0, a, b, 1_000_000, 0);
    let fc = net.start(0, a, c, 3_000_000, 0);
    net.advance(0, &mut Vec::new());
    assert_close(net.rate_bps(fb).unwrap(), 2.0 * GBPS, "to b");
    assert_close(net.rate_bps(fc).unwrap(), 2.0 * GBPS, "to c");
    // b's flow ends at 4 ms; c's then has the pool alone: 2 / 4 = 0.5 bytes/ns.
    let mut out = Vec::new();
    net.advance(4 * MS_NS, &mut out);
    assert_eq!(out.len(), 1);
    assert_close(net.rate_bps(fc).unwrap(), 4.0 * GBPS, "to c alone");
}

#[test]
fn a_flow_capped_by_its_link_leaves_the_pool_to_the_others() {
    // Pool of 1 core; a's flows cost 1 ns per byte received at b and at c. b's link takes
    // 0.1 bytes/ns (0.8 Gbit/s), so b's flow uses 0.1 of the core and c's gets the 0.9 left
    // (7.2 Gbit/s, under its 10): max-min, not an even split of the pool.
    let mut net = FlowNet::new(0);
    let a = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    let b = net.add_node(10.0 * GBPS, 0.8 * GBPS);
    let c = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let pool = net.add_cpu_pool(1.0);
    net.set_node_cpu(b, cpu(pool, 0.0, 1.0));
    net.set_node_cpu(c, cpu(pool, 0.0, 1.0));
    let fb = net.start(0, a, b, 1_000_000, 0);
    let fc = net.start(0, a, c, 1_000_000, 0);
    net.advance(0, &mut Vec::new());
    assert_close(net.rate_bps(fb).unwrap(), 0.8 * GBPS, "link-bound");
    assert_close(net.rate_bps(fc).unwrap(), 7.2 * GBPS, "the rest of the core");
}

#[test]
fn a_pool_frozen_flow_charges_both_links() {
    // a -> b is held by b's 1-core pool at 0.25 bytes/ns (4 ns per byte), below half of
    // a's 6 Gbit/s (0.75 bytes/ns) upload; frozen there, it is charged to a's upload, and
    // a -> c gets the 0.75 - 0.25 = 0.5 bytes/ns left.
    let mut net = FlowNet::new(0);
    let a = net.add_node(6.0 * GBPS, 100.0 * GBPS);
    let b = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    let c = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    let pool = net.add_cpu_pool(1.0);
    net.set_node_cpu(b, cpu(pool, 0.0, 4.0));
    let fb = net.start(0, a, b, 1_000_000, 0);
    let fc = net.start(0, a, c, 1_000_000, 0);
    net.advance(0, &mut Vec::new());
    assert_close(net.rate_bps(fb).unwrap(), 2.0 * GBPS, "CPU-bound at b");
    assert_close(net.rate_bps(fc).unwrap(), 4.0 * GBPS, "the rest of a's upload");
}

#[test]
fn without_pools_nothing_changes_and_nodes_without_cpu_are_free() {
    // A node with no pool charges nothing: the same flow as in the first test, receiver
    // without CPU, gets its full link.
    let mut net = FlowNet::new(0);
    let a = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let b = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let pool = net.add_cpu_pool(1.0);
    net.set_node_cpu(a, cpu(pool, 0.0, 100.0)); // a only receives at a cost; it sends here
    let f = net.start(0, a, b, 1_000_000, 0);
    net.advance(0, &mut Vec::new());
    assert_close(net.rate_bps(f).unwrap(), 10.0 * GBPS, "no CPU charged");
}
