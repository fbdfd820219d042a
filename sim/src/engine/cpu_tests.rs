//! `[cpu]` through the whole engine: nodes short of cores are slower, by what their cores
//! allow, and a scenario without cores is untouched.

use super::*;
use crate::scenario::parse_scenario;

fn scenario(cpu: &str) -> Scenario {
    // 8 nodes on 10 Gbit/s links, one 200 MB layer: the links alone move it in ~0.2 s.
    let text = format!(
        "name = \"cpu\"\nmodes = [\"oci\", \"p2p\"]\n[cluster]\npods = 8\nnode_bandwidth_gbps = 10.0\nseed_peers = 1\n\
         seed_peer_bandwidth_gbps = 10.0\n[registry]\negress_gbps = 100.0\n[image]\nreference = \"t\"\n\
         layer_bytes = [200_000_000]\n{cpu}"
    );
    parse_scenario(&text, "cpu.toml").expect("valid scenario")
}

fn makespan_s(run: &RunResult, mode: Mode) -> f64 {
    run.modes.iter().find(|m| m.mode == mode).unwrap().makespan_s
}

#[test]
fn nodes_short_of_cores_take_what_their_cores_allow() {
    let free = run_scenario(&scenario(""), &RunOptions::default()).unwrap();
    let cpu = run_scenario(&scenario("[cpu]\nnode_cores = 1.0\n"), &RunOptions::default()).unwrap();
    let c = crate::scenario::Cpu::default();
    let bytes = 200_000_000.0;
    // oci: a node's runtime receives every byte at client_receive_ns_per_byte on its core.
    let oci_floor_s = bytes * c.client_receive_ns_per_byte * 1e-9;
    // p2p: each byte a node receives costs its daemon a receive and a send (to the
    // runtime) and the runtime its receive; uploads to other nodes cost more still.
    let p2p_floor_s =
        bytes * (c.daemon_receive_ns_per_byte + c.daemon_send_ns_per_byte + c.client_receive_ns_per_byte) * 1e-9;
    for (mode, floor_s) in [(Mode::Oci, oci_floor_s), (Mode::P2p, p2p_floor_s)] {
        let (was, now) = (makespan_s(&free, mode), makespan_s(&cpu, mode));
        assert!(was < 0.5 * floor_s, "{mode:?}: the links alone take {was} s, well under the CPU's {floor_s} s");
        assert!(now >= floor_s, "{mode:?}: {now} s is faster than one core allows ({floor_s} s)");
        assert!(now <= 1.5 * floor_s, "{mode:?}: {now} s, far above the CPU floor of {floor_s} s");
    }
}

#[test]
fn a_shared_host_is_slower_than_cores_of_their_own() {
    let own =
        run_scenario(&scenario("[cpu]\nnode_cores = 2.0\nseed_peer_cores = 2.0\n"), &RunOptions::default()).unwrap();
    let shared = run_scenario(&scenario("[cpu]\nshared_host_cores = 2.0\n"), &RunOptions::default()).unwrap();
    for mode in [Mode::Oci, Mode::P2p] {
        let (own, shared) = (makespan_s(&own, mode), makespan_s(&shared, mode));
        assert!(shared > 3.0 * own, "{mode:?}: 8 nodes on 2 shared cores ({shared} s) vs 2 cores each ({own} s)");
    }
}

#[test]
fn cheap_bytes_leave_the_run_as_it_was() {
    // Cores but zero costs: the pools exist and charge nothing; every figure is the same.
    let costs0 = "daemon_receive_ns_per_byte = 0.0\ndaemon_send_ns_per_byte = 0.0\n\
                  client_receive_ns_per_byte = 0.0\nregistry_send_ns_per_byte = 0.0\n";
    let free = run_scenario(&scenario(""), &RunOptions::default()).unwrap();
    let zero = run_scenario(
        &scenario(&format!("[cpu]\nnode_cores = 1.0\nregistry_cores = 1.0\n{costs0}")),
        &RunOptions::default(),
    )
    .unwrap();
    for (a, b) in free.modes.iter().zip(&zero.modes) {
        assert_eq!(a.makespan_s, b.makespan_s, "{:?}", a.mode);
        assert_eq!(a.registry_bytes, b.registry_bytes, "{:?}", a.mode);
    }
}
