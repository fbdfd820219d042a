//! `[cpu]`: what moving a byte costs the daemons', the clients' and the registry's CPU,
//! against the cores they have. Without cores (the default) CPU is not modelled and every
//! figure is what it was before the table existed.
//!
//! The per-byte costs are measured once, on the real processes, by `bench/cpu_cost.sh`
//! (sim/README.md, "Modelled costs"), and are the same for every bundled scenario: a file
//! sets cores, the machine it describes, not costs.

use serde::{Deserialize, Serialize};

use super::validate::{fail, positive, Invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cpu {
    /// Cores each normal node gives its peer daemon and its container runtime's pull. None:
    /// their CPU is not modelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_cores: Option<f64>,
    /// Cores of each seed peer; none: `node_cores`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_peer_cores: Option<f64>,
    /// Cores of the registry; none: its CPU is not modelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_cores: Option<f64>,
    /// Every node, seed peer and the registry on one machine of this many cores (the
    /// fidelity harness's network namespaces): one pool they all share. Excludes the three
    /// keys above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_host_cores: Option<f64>,
    /// CPU-ns a peer daemon spends per byte it receives from a parent or the registry
    /// (socket read, piece digest, store write).
    pub daemon_receive_ns_per_byte: f64,
    /// CPU-ns a peer daemon spends per byte it sends: to a child, or to its own node's
    /// container runtime through the registry mirror (store read, socket write).
    pub daemon_send_ns_per_byte: f64,
    /// CPU-ns the pulling client spends per byte it receives (socket read, sha256, write).
    pub client_receive_ns_per_byte: f64,
    /// CPU-ns the registry spends per blob byte it sends.
    pub registry_send_ns_per_byte: f64,
}

/// Measured by `bench/cpu_cost.sh` on the 2-core VM, 2026-12-07 (medians of 3 runs; the
/// processes' user and system CPU per byte moved, the kernel's socket work included;
/// sim/README.md, "Modelled costs"): peerd 1.98 per byte received or sent (split evenly),
/// skopeo 5.93 per byte pulled, docker-registry 0.74 per blob byte served.
pub const DAEMON_RECEIVE_NS_PER_BYTE: f64 = 1.98;
pub const DAEMON_SEND_NS_PER_BYTE: f64 = 1.98;
pub const CLIENT_RECEIVE_NS_PER_BYTE: f64 = 5.93;
pub const REGISTRY_SEND_NS_PER_BYTE: f64 = 0.74;

/// Largest accepted core count and per-byte cost: far above any machine; keeps the
/// solver's sums finite.
const CORES_MAX: f64 = 1e6;
const NS_PER_BYTE_MAX: f64 = 1e6;

impl Default for Cpu {
    fn default() -> Self {
        Cpu {
            node_cores: None,
            seed_peer_cores: None,
            registry_cores: None,
            shared_host_cores: None,
            daemon_receive_ns_per_byte: DAEMON_RECEIVE_NS_PER_BYTE,
            daemon_send_ns_per_byte: DAEMON_SEND_NS_PER_BYTE,
            client_receive_ns_per_byte: CLIENT_RECEIVE_NS_PER_BYTE,
            registry_send_ns_per_byte: REGISTRY_SEND_NS_PER_BYTE,
        }
    }
}

impl Cpu {
    /// Written as the default: left out of the resolved scenario, as `[faults]` is.
    pub fn is_default(&self) -> bool {
        *self == Cpu::default()
    }

    /// Whether any CPU is modelled.
    pub fn is_modelled(&self) -> bool {
        self.node_cores.is_some()
            || self.seed_peer_cores.is_some()
            || self.registry_cores.is_some()
            || self.shared_host_cores.is_some()
    }

    /// Cores of a seed peer, if modelled.
    pub fn seed_cores(&self) -> Option<f64> {
        self.seed_peer_cores.or(self.node_cores)
    }

    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let cores = [
            ("cpu.node_cores", self.node_cores),
            ("cpu.seed_peer_cores", self.seed_peer_cores),
            ("cpu.registry_cores", self.registry_cores),
            ("cpu.shared_host_cores", self.shared_host_cores),
        ];
        for (key, value) in cores {
            if let Some(v) = value {
                positive(key, v)?;
                if v > CORES_MAX {
                    fail(key, format!("must be at most {CORES_MAX} cores (got {v})"))?;
                }
            }
        }
        if self.shared_host_cores.is_some() {
            if let Some((key, _)) = cores[..3].iter().find(|(_, v)| v.is_some()) {
                fail(
                    "cpu.shared_host_cores",
                    format!(
                        "puts every node on one machine's cores; {key} gives them cores of their own: set one or the other"
                    ),
                )?;
            }
        }
        let costs = [
            ("cpu.daemon_receive_ns_per_byte", self.daemon_receive_ns_per_byte),
            ("cpu.daemon_send_ns_per_byte", self.daemon_send_ns_per_byte),
            ("cpu.client_receive_ns_per_byte", self.client_receive_ns_per_byte),
            ("cpu.registry_send_ns_per_byte", self.registry_send_ns_per_byte),
        ];
        for (key, v) in costs {
            if !(v.is_finite() && (0.0..=NS_PER_BYTE_MAX).contains(&v)) {
                fail(key, format!("must be a finite number from 0 to {NS_PER_BYTE_MAX} CPU-ns per byte (got {v})"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_models_nothing_and_is_left_out() {
        let c = Cpu::default();
        assert!(!c.is_modelled() && c.is_default());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn shared_host_excludes_cores_of_their_own() {
        let c = Cpu { shared_host_cores: Some(2.0), node_cores: Some(2.0), ..Cpu::default() };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "cpu.shared_host_cores");
        assert!(e.message.contains("cpu.node_cores"), "{}", e.message);
    }

    #[test]
    fn cores_and_costs_are_checked() {
        let e = Cpu { node_cores: Some(0.0), ..Cpu::default() }.validate().unwrap_err();
        assert_eq!(e.key, "cpu.node_cores");
        let e = Cpu { registry_send_ns_per_byte: -1.0, ..Cpu::default() }.validate().unwrap_err();
        assert_eq!(e.key, "cpu.registry_send_ns_per_byte");
        assert!(e.message.contains("got -1"), "{}", e.message);
        let e = Cpu { seed_peer_cores: Some(f64::NAN), ..Cpu::default() }.validate().unwrap_err();
        assert_eq!(e.key, "cpu.seed_peer_cores");
    }
}
