//! The scenario's `[cpu]` as the flow model's CPU pools: who charges which cores, and how
//! many CPU-ns per byte.

use crate::net::{FlowNet, NodeCpu, NodeIx};
use crate::scenario::{Mode, Scenario};

/// (send, receive) CPU-ns per byte of a node's role in `mode`.
fn costs(sc: &Scenario, mode: Mode) -> [(f64, f64); 3] {
    let c = &sc.cpu;
    let registry = (c.registry_send_ns_per_byte, 0.0);
    let seed = (c.daemon_send_ns_per_byte, c.daemon_receive_ns_per_byte);
    let node = match mode {
        // The runtime pulls straight from the registry; the node uploads nothing.
        Mode::Oci => (0.0, c.client_receive_ns_per_byte),
        // Every byte a node's daemon receives, it also hands its runtime through the
        // mirror (a second daemon send), and the runtime receives it.
        Mode::P2p | Mode::P2pLazy => (
            c.daemon_send_ns_per_byte,
            c.daemon_receive_ns_per_byte + c.daemon_send_ns_per_byte + c.client_receive_ns_per_byte,
        ),
    };
    [registry, node, seed]
}

/// Gives the registry, the normal nodes and the seed peers their CPU pools: one shared
/// pool (`shared_host_cores`), or one per host that has cores; a host without cores is
/// not charged. Nothing when the scenario models no CPU.
pub(super) fn add_pools(
    net: &mut FlowNet,
    sc: &Scenario,
    mode: Mode,
    registry: NodeIx,
    nodes: &[NodeIx],
    seeds: &[NodeIx],
) {
    let c = &sc.cpu;
    if !c.is_modelled() {
        return;
    }
    let [registry_cost, node_cost, seed_cost] = costs(sc, mode);
    let shared = c.shared_host_cores.map(|cores| net.add_cpu_pool(cores));
    let charge = |net: &mut FlowNet, node: NodeIx, cores: Option<f64>, (send, receive): (f64, f64)| {
        let pool = match (shared, cores) {
            (Some(pool), _) => pool,
            (None, Some(cores)) => net.add_cpu_pool(cores),
            (None, None) => return,
        };
        net.set_node_cpu(node, NodeCpu { pool, send_ns_per_byte: send, receive_ns_per_byte: receive });
    };
    charge(net, registry, c.registry_cores, registry_cost);
    for &node in nodes {
        charge(net, node, c.node_cores, node_cost);
    }
    for &seed in seeds {
        charge(net, seed, c.seed_cores(), seed_cost);
    }
}
