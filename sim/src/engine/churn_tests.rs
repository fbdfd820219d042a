//! Node churn (`[[churn.event]]`) through the engine: nodes that crash or leave during a
//! rollout cost pods, not the run, and no second copy from the registry.

use crate::engine::image_bytes;
use crate::engine::world::World;
use crate::result::ModeResult;
use crate::scenario::{parse_scenario, Mode, Scenario};
use sched::core::{PeerId, PeerState};
use sched::Policy;

/// 60 nodes of 6 Gbit/s, 3 seed peers, an image of 4 layers (1.05 GB), in `modes`, with
/// `churn` appended.
fn scenario(modes: &str, churn: &str) -> Scenario {
    let text = format!(
        "name = \"churn\"\nseed = 4\nmodes = {modes}\n[cluster]\npods = 60\nseed_peers = 3\n\
         [image]\nreference = \"app\"\nlayer_bytes = [2_000_000, 150_000_000, 400_000_000, 500_000_000]\n{churn}"
    );
    parse_scenario(&text, "churn.toml").expect("valid scenario")
}

fn event(action: &str, at_s: f64, how_many: &str) -> String {
    format!("[[churn.event]]\naction = \"{action}\"\nat_s = {at_s}\n{how_many}\n")
}

fn run(sc: &Scenario, mode: Mode) -> ModeResult {
    World::new(sc, mode, Policy::Default).unwrap().run().expect("the run finishes")
}

fn copies(sc: &Scenario, m: &ModeResult) -> f64 {
    m.registry_bytes as f64 / image_bytes(sc) as f64
}

/// Every pod not lost starts; the lost ones are the pods of the nodes that went.
fn survivors_start(m: &ModeResult, gone: usize) {
    let lost = m.pods.iter().filter(|p| p.lost).count();
    assert_eq!(lost, gone, "{:?}: one pod per node that went, none started yet", m.mode);
    for p in m.pods.iter().filter(|p| !p.lost) {
        assert!(p.started_s.is_finite(), "{:?}: pod {} never started", m.mode, p.pod);
    }
    assert!(m.pods.iter().filter(|p| p.lost).all(|p| p.started_s.is_nan()));
    let c = m.churn.as_ref().expect("churn figures");
    assert_eq!(c.pods_lost as usize, lost);
}

/// A fifth of the nodes crash at 30 % of a p2p rollout: the downloads they fed see broken
/// transfers and get new parents; every other pod starts, the registry sends the image
/// about once, and no normal node reads the registry (the core sent none there).
#[test]
fn a_fifth_of_the_nodes_crashing_at_30_percent_cost_their_pods_and_no_second_copy() {
    let base = run(&scenario("[\"p2p\"]", ""), Mode::P2p);
    assert!(base.churn.is_none() && base.pods.iter().all(|p| !p.lost));
    let at = 0.3 * base.makespan_s;
    let sc = scenario("[\"p2p\"]", &event("fail", at, "fraction = 0.2"));
    let m = run(&sc, Mode::P2p);
    survivors_start(&m, 12);
    let c = m.churn.as_ref().unwrap();
    assert_eq!((c.nodes_failed, c.nodes_left), (12, 0));
    assert!(c.parent_failures > 0, "nobody downloaded from the nodes that crashed: {c:?}");
    assert!(c.reschedules > 0, "no download asked for new parents: {c:?}");
    let copies = copies(&sc, &m);
    assert!(copies <= 1.05, "the registry sent {copies:.3} copies");
    let from_registry: u64 = m.pods.iter().map(|p| p.bytes_from_registry).sum();
    assert_eq!(from_registry, 0, "normal nodes read the registry ({} orders)", m.back_to_source_orders);
    eprintln!(
        "12 of 60 nodes crash at {at:.2} s: makespan {:.2} s against {:.2} s, {copies:.3} copies, {c:?}",
        m.makespan_s, base.makespan_s
    );
}

/// The scheduler learns of a node the way the deployed one does: a node that leaves tells
/// every replica (its peers are failed or left there), a node that crashes tells nobody
/// (its peers stay as they were; only its children's reports block it for them).
#[test]
fn the_scheduler_hears_of_a_leave_and_not_of_a_crash() {
    for (action, told) in [("leave", true), ("fail", false)] {
        let sc = scenario("[\"p2p\"]", &event(action, 0.5, "count = 6"));
        let mut world = World::new(&sc, Mode::P2p, Policy::Default).unwrap();
        world.run_to_end().expect("the run finishes");
        let down: Vec<usize> = (0..60).filter(|h| world.churn.is_down(*h)).collect();
        assert_eq!(down.len(), 6, "{action}");
        for (p, peer) in world.peers.iter().enumerate() {
            if !down.contains(&peer.host) {
                continue;
            }
            let state = world.replicas[peer.replica].core.peer_state(PeerId(p as u32));
            let ended = matches!(state, Some(PeerState::Failed | PeerState::Leave));
            assert_eq!(ended, told, "{action}: peer {p} on host {} is {state:?} at its replica", peer.host);
        }
    }
}

/// A graceful leave through `per_minute`: one node every 2 s from 0.2 s; each takes its pod
/// (none had started) and the rest of the rollout goes on from the others.
#[test]
fn nodes_leaving_at_a_rate_take_their_pods_and_nothing_else() {
    let churn = "[[churn.event]]\naction = \"leave\"\nper_minute = 30.0\nfrom_s = 0.2\nuntil_s = 1.0\n";
    let sc = scenario("[\"p2p\", \"p2p-lazy\"]", churn);
    for mode in [Mode::P2p, Mode::P2pLazy] {
        let m = run(&sc, mode);
        let c = m.churn.as_ref().unwrap();
        assert_eq!((c.nodes_failed, c.nodes_left), (0, 1), "{mode:?}: 0.2 s only, the next would be at 2.2 s");
        survivors_start(&m, 1);
        let copies = copies(&sc, &m);
        assert!(copies <= 1.05, "{mode:?}: the registry sent {copies:.3} copies");
    }
}

/// In oci a node that fails just stops pulling: the registry sends what it had sent it, no
/// more, and the other nodes' pulls go on. The same nodes go in every mode.
#[test]
fn in_oci_a_failed_node_just_stops_pulling() {
    let plain = scenario("[\"oci\"]", "");
    let base = run(&plain, Mode::Oci);
    let sc = scenario("[\"oci\", \"p2p\"]", &event("fail", 0.3 * base.makespan_s, "count = 10"));
    let m = run(&sc, Mode::Oci);
    survivors_start(&m, 10);
    let c = m.churn.as_ref().unwrap();
    assert_eq!((c.nodes_failed, c.parent_failures, c.reschedules), (10, 0, 0));
    assert!(m.registry_bytes < base.registry_bytes, "{} against {}", m.registry_bytes, base.registry_bytes);
    let image = image_bytes(&sc);
    assert!(m.registry_bytes >= 50 * image, "every surviving node pulled the whole image");
    // The registry's link is shared by fewer pulls from then on.
    for (a, b) in m.pods.iter().zip(&base.pods).filter(|(a, _)| !a.lost) {
        assert!(a.started_s <= b.started_s, "pod {}: {} s against {} s", a.pod, a.started_s, b.started_s);
    }
    let down = |mode: Mode| {
        let mut world = World::new(&sc, mode, Policy::Default).unwrap();
        world.run_to_end().expect("the run finishes");
        (0..60).filter(|h| world.churn.is_down(*h)).collect::<Vec<usize>>()
    };
    let lost: Vec<usize> = m.pods.iter().filter(|p| p.lost).map(|p| p.node as usize).collect();
    assert_eq!((down(Mode::Oci), down(Mode::P2p)), (lost.clone(), lost), "the same nodes in every mode");
}

/// A seed peer goes only when the scenario says so; when it crashes mid-fetch, its children
/// report it, the core counts the seed as lost and a peer takes its place at the origin for
/// the blob it was fetching: the run finishes, with little more than one copy.
#[test]
fn a_seed_peer_that_crashes_is_replaced_at_the_origin() {
    let sc = scenario("[\"p2p\"]", &event("fail", 0.15, "count = 1\nseed_peers = true"));
    let m = run(&sc, Mode::P2p);
    survivors_start(&m, 0);
    let c = m.churn.as_ref().unwrap();
    assert_eq!(c.nodes_failed, 1);
    let copies = copies(&sc, &m);
    eprintln!("a seed peer crashes at 0.15 s: {copies:.3} copies, {} origin orders, {c:?}", m.back_to_source_orders);
    assert!(copies <= 1.2, "the registry sent {copies:.3} copies");
    // Five blobs (config and four layers), each ordered to the origin once for a seed; one
    // more order is the peer that took the crashed seed's place.
    assert!(m.back_to_source_orders > 5, "{} orders: nobody took the seed's place", m.back_to_source_orders);
    // Without `seed_peers = true` only normal nodes go.
    let nodes = scenario("[\"p2p\"]", &event("fail", 0.15, "count = 3"));
    assert!(nodes.churn.plan(&nodes, nodes.seed, 3).iter().all(|g| !g.seed));
}

/// A rolling update whose new pods land on a node that went does not wait for them.
#[test]
fn a_rolling_update_goes_on_past_lost_pods() {
    let text = "name = \"roll\"\nseed = 2\nmodes = [\"p2p\"]\n[cluster]\nseed_peers = 1\n\
        [[workload]]\nname = \"app\"\nreplicas = 8\nstrategy = \"rolling\"\nmax_surge = 2\nmax_unavailable = 0\n\
        [workload.image]\nreference = \"app\"\nlayer_bytes = [20_000_000]\n\
        [[churn.event]]\naction = \"fail\"\nat_s = 0.05\ncount = 3\n";
    let sc = parse_scenario(text, "roll.toml").unwrap();
    let m = run(&sc, Mode::P2p);
    assert_eq!(m.churn.as_ref().unwrap().pods_lost, 3);
    for p in m.pods.iter().filter(|p| !p.lost) {
        assert!(p.started_s.is_finite(), "pod {} never started: the update waited for a lost pod", p.pod);
    }
}
