//! Unit tests of the scheduler core: seed triggering, back-to-source limits, blocked
//! parents, policy scoring, and a property test that the DAG stays acyclic.

use super::*;
use crate::core::ids::NS_PER_MS;
use crate::core::records::{HostKind, PeerState};
use proptest::prelude::*;
use rand::SeedableRng;

fn sched(policy: Policy, normal_hosts: u32, seeds: u32) -> Scheduler {
    with_hosts(SchedulerConfig::preset(policy), 7, normal_hosts, seeds)
}

/// A scheduler with `normal_hosts` normal hosts (ids 0..) and then `seeds` seed hosts.
fn with_hosts(cfg: SchedulerConfig, rng_seed: u64, normal_hosts: u32, seeds: u32) -> Scheduler {
    let mut s = Scheduler::new(cfg, ChaCha8Rng::seed_from_u64(rng_seed));
    for h in 0..normal_hosts + seeds {
        let kind = if h < normal_hosts { HostKind::Normal } else { HostKind::Seed };
        s.announce_host(
            0,
            HostInfo { id: HostId(h), kind, location: String::new(), idc: String::new(), disable_shared: false },
        );
    }
    s
}

fn reg(peer: u32, host: u32, seed: bool) -> RegisterPeer {
    RegisterPeer {
        peer: PeerId(peer),
        task: TaskId(0),
        task_key: 42,
        host: HostId(host),
        piece_count: 10,
        content_length: 10 << 20,
        need_back_to_source: seed,
        policy: Policy::Default,
        partial: false,
    }
}

/// Registrations in these tests are made by peers of the scheduler's own policy (the check
/// of a foreign policy has its own test).
trait OwnPolicy {
    fn register_peer_as_own(&mut self, now: TimeNs, r: RegisterPeer) -> Result<Vec<Decision>, SchedError>;
    fn register_completed_peer_as_own(&mut self, now: TimeNs, r: RegisterPeer) -> Result<Vec<Decision>, SchedError>;
}

impl OwnPolicy for Scheduler {
    fn register_peer_as_own(&mut self, now: TimeNs, r: RegisterPeer) -> Result<Vec<Decision>, SchedError> {
        let policy = self.config().policy;
        self.register_peer(now, RegisterPeer { policy, ..r })
    }
    fn register_completed_peer_as_own(&mut self, now: TimeNs, r: RegisterPeer) -> Result<Vec<Decision>, SchedError> {
        let policy = self.config().policy;
        self.register_completed_peer(now, RegisterPeer { policy, ..r })
    }
}

#[test]
fn a_peer_of_another_policy_is_refused() {
    let mut s = sched(Policy::Default, 2, 1);
    let e = s.register_peer(0, RegisterPeer { policy: Policy::Kraken, ..reg(1, 0, false) }).unwrap_err();
    assert!(matches!(e, SchedError::PolicyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("\"kraken\" but this scheduler runs \"default\""), "{e}");
    // Nothing of it was kept: the same peer of the right policy registers.
    s.register_peer(0, reg(1, 0, false)).unwrap();
}

fn triggers(d: &[Decision]) -> usize {
    d.iter().filter(|d| matches!(d, Decision::TriggerSeed { .. })).count()
}

#[test]
fn seed_triggers_per_task_are_the_configured_number_at_the_first_download() {
    for policy in Policy::ALL {
        let mut s = sched(policy, 5, 3);
        let mut n = 0;
        for p in 0..5 {
            n += triggers(&s.register_peer_as_own(0, reg(p, p, false)).unwrap());
        }
        // Kraken: 2 origins per blob (hashring.max_replica as shipped); the others one seed.
        let want = if policy == Policy::Kraken { 2 } else { 1 };
        assert_eq!(n, want, "{policy:?}");
    }
}

/// Kraken's second origin for a blob: triggered with the first (the next seed host on the
/// ring), it registers like a seed but is a replica: it never reads the origin and takes
/// the blob from the swarm, the first origin included once that one holds it.
#[test]
fn a_kraken_replica_origin_takes_the_task_from_the_first_origin_not_the_registry() {
    let mut s = sched(Policy::Kraken, 3, 3);
    let d = s.register_peer_as_own(0, reg(1, 0, false)).unwrap();
    let seeds: Vec<HostId> = d
        .iter()
        .filter_map(|d| match d {
            Decision::TriggerSeed { seed_host, .. } => Some(*seed_host),
            _ => None,
        })
        .collect();
    let ring: Vec<HostId> = hashring::pick_n(42, (3..6).map(|h| (HostId(h), u64::from(h))), 2);
    assert_eq!(seeds, ring, "the first two seed hosts on the task's ring, first the one that reads");
    let first = s.register_peer_as_own(0, reg(10, seeds[0].0, true)).unwrap();
    assert!(first.iter().any(|d| matches!(d, Decision::BackToSource { peer, .. } if *peer == PeerId(10))), "{first:?}");
    let second = s.register_peer_as_own(0, reg(11, seeds[1].0, true)).unwrap();
    assert!(!second.iter().any(|d| matches!(d, Decision::BackToSource { .. })), "{second:?}");
    assert!(!s.peers[&PeerId(11)].is_seed && !s.peers[&PeerId(11)].need_back_to_source);
    assert_eq!(s.tasks[&TaskId(0)].seed_peer, Some(PeerId(10)));
}

/// Tasks whose keys all hash to one seed host: the default policy spreads them over the
/// seed hosts seeding the fewest tasks (an image's layers are pulled at once), Dragonfly
/// and Kraken keep plain consistent hashing; a seed that finished its task takes the next.
#[test]
fn default_policy_spreads_simultaneous_tasks_over_the_seed_hosts() {
    let seeds = [HostId(3), HostId(4), HostId(5)];
    let hrw = |key: u64| hashring::pick(key, seeds.iter().map(|id| (*id, u64::from(id.0)))).unwrap();
    let keys: Vec<u64> = (0..).filter(|&k| hrw(k) == HostId(3)).take(5).collect();
    let task = |i: usize| RegisterPeer { task: TaskId(i as u32), task_key: keys[i], ..reg(i as u32, 0, false) };
    let seed_of = |d: &[Decision]| match d.iter().find(|d| matches!(d, Decision::TriggerSeed { .. })) {
        Some(Decision::TriggerSeed { seed_host, .. }) => *seed_host,
        other => panic!("expected a seed trigger, got {other:?}"),
    };
    for policy in Policy::ALL {
        let mut s = sched(policy, 3, 3);
        let chosen: Vec<HostId> = (0..3).map(|i| seed_of(&s.register_peer_as_own(0, task(i)).unwrap())).collect();
        if policy != Policy::Default {
            assert_eq!(chosen, vec![HostId(3); 3], "{policy:?}: plain consistent hashing");
            continue;
        }
        let mut spread = chosen.clone();
        spread.sort();
        assert_eq!(spread, seeds.to_vec(), "default: one task per seed host, got {chosen:?}");
        // Task 1's seed registers and finishes: its host is the least loaded for task 3.
        let seed_host_1 = chosen[1];
        let seed_peer = RegisterPeer { peer: PeerId(100), host: seed_host_1, need_back_to_source: true, ..task(1) };
        s.register_peer_as_own(NS_PER_MS, seed_peer).unwrap();
        s.peer_finished(2 * NS_PER_MS, PeerId(100)).unwrap();
        assert_eq!(seed_of(&s.register_peer_as_own(3 * NS_PER_MS, task(3)).unwrap()), seed_host_1);
        // All loaded alike again: the task's own hash decides.
        assert_eq!(seed_of(&s.register_peer_as_own(4 * NS_PER_MS, task(4)).unwrap()), HostId(3));
    }
}

/// A peer that registers holding the whole task triggers no seed and gets no order;
/// the next downloader gets it as a parent instead of the seed or the origin.
#[test]
fn completed_peer_serves_without_seed_or_origin() {
    for policy in Policy::ALL {
        let mut s = sched(policy, 3, 1);
        let d = s.register_completed_peer_as_own(0, reg(0, 0, false)).unwrap();
        assert!(d.is_empty(), "{policy:?}: a completed peer gets no decision, got {d:?}");
        assert_eq!(s.peer_state(PeerId(0)), Some(PeerState::Succeeded));
        let d = s.register_peer_as_own(NS_PER_MS, reg(1, 1, false)).unwrap();
        assert_eq!(triggers(&d), 0, "{policy:?}: {d:?}");
        assert!(!d.iter().any(|d| matches!(d, Decision::BackToSource { .. })), "{policy:?}: {d:?}");
        let parents: Vec<PeerId> = d
            .iter()
            .filter_map(|d| match d {
                Decision::Parents { peer: PeerId(1), parents } => Some(parents.iter().map(|p| p.peer)),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(parents.contains(&PeerId(0)), "{policy:?}: peer 1's parents {parents:?} lack the completed peer");
        assert_eq!(s.back_to_source_count(TaskId(0)), 0, "{policy:?}");
    }
}

/// A waiting peer is woken when a completed peer joins its task.
#[test]
fn completed_peer_wakes_a_waiting_downloader() {
    let mut cfg = SchedulerConfig::preset(Policy::Default);
    cfg.back_to_source_limit = 0;
    let mut s = with_hosts(cfg, 7, 3, 0);
    // No seed and no back-to-source budget: peer 1 waits.
    let d = s.register_peer_as_own(0, reg(1, 1, false)).unwrap();
    assert!(!d.iter().any(|d| matches!(d, Decision::Parents { .. } | Decision::BackToSource { .. })), "{d:?}");
    let d = s.register_completed_peer_as_own(NS_PER_MS, reg(0, 0, false)).unwrap();
    assert!(
        d.iter().any(|d| matches!(d, Decision::Parents { peer: PeerId(1), parents } if parents.iter().any(|p| p.peer == PeerId(0)))),
        "{d:?}"
    );
}

#[test]
fn completed_registration_with_back_to_source_is_refused() {
    let mut s = sched(Policy::Default, 2, 1);
    let e = s.register_completed_peer_as_own(0, reg(0, 2, true)).unwrap_err();
    assert!(matches!(e, SchedError::CompletedWithBackToSource(PeerId(0))), "{e}");
    assert_eq!(s.peer_state(PeerId(0)), None);
}

#[test]
fn triggered_seed_goes_back_to_source_and_children_get_it_as_parent() {
    let mut s = sched(Policy::Default, 3, 1);
    let d = s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    let Decision::TriggerSeed { seed_host, .. } = d[0] else { panic!("expected a seed trigger, got {d:?}") };
    assert_eq!(seed_host, HostId(3));
    let d = s.register_peer_as_own(1, reg(9, 3, true)).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(9), .. })), "{d:?}");
    // The waiting peer 0 is woken with the seed as parent, with a stripe.
    let parents = d.iter().find_map(|d| match d {
        Decision::Parents { peer: PeerId(0), parents } => Some(parents.clone()),
        _ => None,
    });
    let parents = parents.expect("waiting peer scheduled once the seed runs");
    assert_eq!(parents[0].peer, PeerId(9));
    assert!(parents[0].stripe.is_some());
}

#[test]
fn when_the_seed_fails_mid_task_one_peer_takes_its_place_at_the_origin() {
    let mut s = sched(Policy::Default, 4, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(1, reg(9, 4, true)).unwrap();
    for p in 1..4 {
        s.register_peer_as_own(2, reg(p, p, false)).unwrap();
    }
    s.pieces_finished(3, PeerId(0), &[PieceReport { piece: 0, parent: Some(PeerId(9)), cost_ns: 1 }]).unwrap();
    s.peer_failed(4, PeerId(9)).unwrap();
    let back = |d: &[Decision]| d.iter().filter(|d| matches!(d, Decision::BackToSource { .. })).count();
    // The first peer to ask goes to the origin; the next ones do not (one copy at a time).
    assert_eq!(back(&s.reschedule(5, PeerId(2), &[]).unwrap()), 1);
    assert_eq!(s.peer_state(PeerId(2)), Some(PeerState::BackToSource));
    assert_eq!(back(&s.reschedule(6, PeerId(3), &[]).unwrap()), 0);
    assert_eq!(back(&s.reschedule(7, PeerId(0), &[]).unwrap()), 0);
    assert_eq!(s.back_to_source_count(TaskId(0)), 1);
}

#[test]
fn a_peer_that_blocked_the_seed_and_has_no_other_parent_goes_to_the_origin_after_the_wait() {
    let mut s = sched(Policy::Default, 2, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(1, reg(9, 2, true)).unwrap();
    s.peer_finished(2, PeerId(9)).unwrap();
    // The seed finished but is unreachable from peer 0 (it crashed without leaving).
    let d = s.reschedule(3, PeerId(0), &[PeerId(9)]).unwrap();
    assert!(!d.iter().any(|d| matches!(d, Decision::BackToSource { .. })), "not before the wait: {d:?}");
    let wait = s.config().wait_for_parent_timeout_ns;
    let d = s.on_timers(3 + wait);
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(0), .. })), "{d:?}");
}

#[test]
fn a_seed_that_two_children_cannot_reach_is_replaced_by_one_peer_at_the_origin_at_once() {
    let mut s = sched(Policy::Default, 4, 1);
    s.register_peer_as_own(0, reg(9, 4, true)).unwrap();
    for p in 0..4 {
        s.register_peer_as_own(1, reg(p, p, false)).unwrap();
    }
    let back = |d: &[Decision]| d.iter().filter(|d| matches!(d, Decision::BackToSource { .. })).count();
    // The seed crashed without leaving (still Running here). One child blocking it is not
    // enough: that child may only have a broken link to it.
    s.piece_failed(2, PeerId(0), PeerId(9)).unwrap();
    assert_eq!(back(&s.reschedule(3, PeerId(0), &[PeerId(9)]).unwrap()), 0);
    // A second child: the seed is lost; the next peer asking goes to the origin, now
    // (not after wait_for_parent_timeout_ns), and only that one.
    assert_eq!(back(&s.reschedule(4, PeerId(1), &[PeerId(9)]).unwrap()), 1);
    assert_eq!(back(&s.reschedule(5, PeerId(2), &[PeerId(9)]).unwrap()), 0);
    assert_eq!(back(&s.reschedule(6, PeerId(3), &[]).unwrap()), 0);
    assert_eq!(s.back_to_source_count(TaskId(0)), 1);
}

#[test]
fn a_finished_seed_that_children_cannot_reach_is_no_whole_copy() {
    let mut s = sched(Policy::Default, 3, 1);
    s.register_peer_as_own(0, reg(9, 3, true)).unwrap();
    s.peer_finished(1, PeerId(9)).unwrap();
    for p in 0..3 {
        s.register_peer_as_own(2, reg(p, p, false)).unwrap();
    }
    s.piece_failed(3, PeerId(0), PeerId(9)).unwrap();
    s.piece_failed(3, PeerId(1), PeerId(9)).unwrap();
    let d = s.reschedule(4, PeerId(2), &[PeerId(9)]).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(2), .. })), "{d:?}");
}

#[test]
fn no_self_parent_and_no_same_host_parent() {
    let mut s = sched(Policy::Dragonfly, 4, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(0, reg(9, 4, true)).unwrap();
    let d = s.register_peer_as_own(0, reg(1, 0, false)).unwrap(); // same host as peer 0
    for d in d {
        if let Decision::Parents { peer, parents } = d {
            assert!(parents.iter().all(|p| p.peer != peer && p.host != HostId(0)));
        }
    }
}

#[test]
fn dragonfly_goes_back_to_source_after_four_empty_rounds_within_its_limit() {
    let mut cfg = SchedulerConfig::preset(Policy::Dragonfly);
    cfg.back_to_source_limit = 1;
    let mut s = with_hosts(cfg, 1, 4, 0);
    // No seed peers: the first peer is told to go back to source at once.
    let d = s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    assert!(matches!(d[0], Decision::BackToSource { .. }), "{d:?}");
    // Peer 1 finds peer 0 (back-to-source) as parent.
    let d = s.register_peer_as_own(0, reg(1, 1, false)).unwrap();
    assert!(matches!(&d[0], Decision::Parents { parents, .. } if parents[0].peer == PeerId(0)), "{d:?}");
    // Peer 2 blocks both possible parents: 4 empty rounds at 500 ms, then back to source
    // (2 peers in the set <= limit 1 is false, so it fails instead).
    s.register_peer_as_own(0, reg(2, 2, false)).unwrap();
    let d = s.reschedule(1, PeerId(2), &[PeerId(0), PeerId(1)]).unwrap();
    assert!(d.is_empty());
    let mut all = Vec::new();
    for round in 1..=5 {
        all.extend(s.on_timers(round * 500 * NS_PER_MS + 1));
    }
    assert!(all.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(2), .. })), "{all:?}");
    assert_eq!(s.back_to_source_count(TaskId(0)), 2);
    // A fourth peer, with everything blocked, exceeds the limit and fails after 5 rounds.
    s.register_peer_as_own(3, reg(3, 3, false)).unwrap();
    s.reschedule(3, PeerId(3), &[PeerId(0), PeerId(1), PeerId(2)]).unwrap();
    let mut all = Vec::new();
    for round in 1..=6 {
        all.extend(s.on_timers(3 + round * 500 * NS_PER_MS));
    }
    assert!(all.iter().any(|d| matches!(d, Decision::Failed { peer: PeerId(3), .. })), "{all:?}");
}

#[test]
fn blocked_parents_are_never_given_again() {
    let mut s = sched(Policy::Default, 6, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(0, reg(9, 6, true)).unwrap();
    for p in 1..5 {
        s.register_peer_as_own(0, reg(p, p, false)).unwrap();
    }
    let d = s.reschedule(1, PeerId(4), &[PeerId(9), PeerId(0)]).unwrap();
    for d in d {
        if let Decision::Parents { peer: PeerId(4), parents } = d {
            assert!(parents.iter().all(|p| p.peer != PeerId(9) && p.peer != PeerId(0)), "{parents:?}");
        }
    }
}

#[test]
fn kraken_hands_out_completed_peers_first_and_waits_for_the_origin() {
    let mut s = sched(Policy::Kraken, 4, 1);
    let d = s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    assert_eq!(triggers(&d), 1);
    assert!(s.next_timer().is_some(), "agent polls while the origin fetches");
    s.register_peer_as_own(0, reg(9, 4, true)).unwrap();
    s.register_peer_as_own(0, reg(1, 1, false)).unwrap();
    s.register_peer_as_own(0, reg(2, 2, false)).unwrap();
    s.peer_finished(1, PeerId(9)).unwrap();
    s.peer_finished(1, PeerId(1)).unwrap();
    let d = s.reschedule(2, PeerId(2), &[]).unwrap();
    let Decision::Parents { parents, .. } = &d[0] else { panic!("{d:?}") };
    assert_eq!(parents[0].peer, PeerId(1), "completed agent first");
    assert_eq!(parents[1].peer, PeerId(9), "then the origin");
}

#[test]
fn kraken_reannounce_hands_out_a_fresh_random_sample_with_peers_that_joined_since() {
    let mut s = sched(Policy::Kraken, 80, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(0, reg(99, 80, true)).unwrap();
    s.peer_finished(1, PeerId(99)).unwrap();
    for p in 1..=60 {
        s.register_peer_as_own(1, reg(p, p, false)).unwrap();
    }
    let handout = |s: &mut Scheduler, t| -> Vec<PeerId> {
        let d = s.reschedule(t, PeerId(0), &[]).unwrap();
        let Decision::Parents { parents, .. } = &d[0] else { panic!("{d:?}") };
        parents.iter().map(|p| p.peer).collect()
    };
    let first = handout(&mut s, 2);
    assert_eq!(first.len(), 51, "50 random agents (announce_limit) and the origin");
    assert!(first.contains(&PeerId(99)));
    let second = handout(&mut s, 5);
    assert_ne!(first, second, "each announce draws a new sample");
    for p in 61..=75 {
        s.register_peer_as_own(6, reg(p, p, false)).unwrap();
    }
    let third = handout(&mut s, 8);
    assert!(third.iter().any(|p| p.0 > 60), "peers that joined since are handed out: {third:?}");
    assert!(!third.contains(&PeerId(0)), "never the announcer itself");
}

/// Seed plus eight peers on their own hosts, all registered before the seed runs.
fn striped_cluster() -> Scheduler {
    let mut s = sched(Policy::Default, 8, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(0, reg(9, 8, true)).unwrap();
    for p in 1..8 {
        s.register_peer_as_own(0, reg(p, p, false)).unwrap();
    }
    s
}

#[test]
fn default_gives_every_peer_a_parent_in_every_stripe_and_the_first_peers_feed_each_other() {
    let s = striped_cluster();
    let t = &s.tasks[&TaskId(0)];
    let stripes = s.config().stripes as usize;
    assert_eq!(t.stripe_dags.len(), stripes);
    for p in 0..8 {
        for (si, d) in t.stripe_dags.iter().enumerate() {
            assert_eq!(d.parents(PeerId(p)).len(), 1, "peer {p} stripe {si}");
        }
    }
    // The seed feeds one root per stripe, so each piece leaves it about once.
    for d in &t.stripe_dags {
        assert!(d.children(PeerId(9)).len() <= s.config().seed_children_per_stripe as usize);
    }
    // Across stripes two peers feed each other (impossible in one DAG per task)...
    let feeds = |a: u32, b: u32| t.stripe_dags.iter().any(|d| d.parents(PeerId(b)).contains(&PeerId(a)));
    assert!((0..8).any(|a| (0..8).any(|b| a != b && feeds(a, b) && feeds(b, a))), "no mutual exchange");
    // ...while each stripe's DAG stays acyclic.
    assert!(s.task_is_acyclic(TaskId(0)));
    assert_eq!(s.cyclic_tasks(), Vec::<TaskId>::new());
}

#[test]
fn cyclic_tasks_names_a_task_whose_dag_has_a_cycle() {
    let mut s = striped_cluster();
    assert!(s.cyclic_tasks().is_empty());
    // Break the rule behind Dag's back: a two-peer cycle in stripe 0's DAG.
    let d = &mut s.tasks.get_mut(&TaskId(0)).unwrap().stripe_dags[0];
    let (a, b) = (PeerId(0), d.parents(PeerId(0))[0]);
    assert!(d.is_ancestor(b, a));
    d.force_edge_for_tests(a, b);
    assert_eq!(s.cyclic_tasks(), vec![TaskId(0)]);
}

#[test]
fn default_spreads_children_over_hosts() {
    let s = striped_cluster();
    let loads: Vec<u32> = (0..8).map(|h| s.host(HostId(h)).unwrap().concurrent_uploads).collect();
    assert!(loads.iter().all(|l| *l <= s.config().stripe_fanout), "fan-out cap holds: {loads:?}");
    let max = *loads.iter().max().unwrap();
    let min = *loads.iter().min().unwrap();
    assert!(max - min <= 6, "children spread over hosts: {loads:?}");
}

#[test]
fn default_replaces_only_the_stripes_of_a_blocked_parent() {
    let mut s = striped_cluster();
    let stripe_parents = |s: &Scheduler, p: u32| -> Vec<PeerId> {
        s.tasks[&TaskId(0)].stripe_dags.iter().map(|d| d.parents(PeerId(p))[0]).collect()
    };
    let before = stripe_parents(&s, 3);
    let blocked = before.iter().copied().find(|q| *q != PeerId(9)).expect("a normal parent");
    let d = s.reschedule(1, PeerId(3), &[blocked]).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::Parents { peer: PeerId(3), .. })), "answered: {d:?}");
    let after = stripe_parents(&s, 3);
    for (b, a) in before.iter().zip(&after) {
        if *b == blocked {
            assert_ne!(a, b);
        } else {
            assert_eq!(a, b, "a stripe with a healthy parent keeps it");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random registrations, reschedules, finishes and failures never make a cycle, never
    /// give a peer itself, and keep back-to-source within the limit.
    #[test]
    fn dag_stays_acyclic(seed in 0u64..1000, ops in proptest::collection::vec((0u8..4, 0u32..20, 0u32..20), 1..120), policy_ix in 0usize..2) {
        let policy = [Policy::Default, Policy::Dragonfly][policy_ix];
        let mut s = Scheduler::new(SchedulerConfig::preset(policy), ChaCha8Rng::seed_from_u64(seed));
        for h in 0..12 {
            let kind = if h < 10 { HostKind::Normal } else { HostKind::Seed };
            s.announce_host(0, HostInfo { id: HostId(h), kind, location: String::new(), idc: String::new(), disable_shared: false });
        }
        let mut registered = Vec::new();
        let mut now = 0;
        for (op, a, b) in ops {
            now += 100 * NS_PER_MS;
            let out = match op {
                0 if !registered.contains(&a) => {
                    registered.push(a);
                    s.register_peer_as_own(now, RegisterPeer { peer: PeerId(a), task: TaskId(0), task_key: 1, host: HostId(a % 12), piece_count: 8, content_length: 8 << 20, need_back_to_source: a % 12 >= 10 , policy: Policy::Default, partial: false}).unwrap()
                }
                1 if registered.contains(&a) => s.reschedule(now, PeerId(a), &[PeerId(b)]).unwrap(),
                2 if registered.contains(&a) => s.peer_finished(now, PeerId(a)).unwrap(),
                3 if registered.contains(&a) => { s.peer_failed(now, PeerId(a)).unwrap(); Vec::new() }
                _ => s.on_timers(now),
            };
            for d in out {
                if let Decision::Parents { peer, parents } = d {
                    prop_assert!(parents.iter().all(|p| p.peer != peer));
                }
            }
            prop_assert!(s.task_is_acyclic(TaskId(0)));
            prop_assert!(s.back_to_source_count(TaskId(0)) as u32 <= s.config().back_to_source_limit + 1);
            if let Err(e) = indexes_hold(&s) {
                prop_assert!(false, "{}", e);
            }
        }
    }

    /// The default policy's fed index, waiting sets and serving counts stay equal to what
    /// they summarise under random operations on several tasks and hosts that fill up.
    #[test]
    fn fed_index_stays_consistent(seed in 0u64..1000, ops in proptest::collection::vec((0u8..9, 0u32..40, 0u32..40), 1..200)) {
        let mut cfg = SchedulerConfig::preset(Policy::Default);
        // Few uploads per host, so hosts fill and free up and peers leave and rejoin the index.
        cfg.normal_upload_limit = 4;
        cfg.stripes = 4;
        cfg.stripe_fanout = 5;
        let mut s = Scheduler::new(cfg, ChaCha8Rng::seed_from_u64(seed));
        for h in 0..14 {
            let kind = if h < 12 { HostKind::Normal } else { HostKind::Seed };
            s.announce_host(0, HostInfo { id: HostId(h), kind, location: String::new(), idc: String::new(), disable_shared: h == 5 });
        }
        let mut registered = Vec::new();
        let mut now = 0;
        for (op, a, b) in ops {
            now += 100 * NS_PER_MS;
            // Peer a is on host a % 14, in task a % 2; seed hosts' peers go back to source.
            let out = match op {
                0 | 1 if !registered.contains(&a) => {
                    registered.push(a);
                    let host = a % 14;
                    // Every third normal peer is a lazy reader (partial) until op 7.
                    let partial = host < 12 && b % 3 == 0;
                    s.register_peer_as_own(now, RegisterPeer { peer: PeerId(a), task: TaskId(a % 2), task_key: u64::from(a % 2), host: HostId(host), piece_count: 8, content_length: 8 << 20, need_back_to_source: host >= 12 , policy: Policy::Default, partial}).unwrap()
                }
                7 if registered.contains(&a) => s.peer_wants_all(now, PeerId(a)).unwrap(),
                8 if registered.contains(&a) => s.ask_back_to_source(now, PeerId(a)).unwrap(),
                1 if registered.contains(&a) => s.reschedule(now, PeerId(a), &[PeerId(b)]).unwrap(),
                2 if registered.contains(&a) => s.peer_finished(now, PeerId(a)).unwrap(),
                3 if registered.contains(&a) => { s.peer_failed(now, PeerId(a)).unwrap(); Vec::new() }
                4 if registered.contains(&a) => {
                    // A slow piece makes the peer an outlier (out of the index) until the next.
                    let cost = if b % 2 == 0 { 1_000 * NS_PER_MS } else { NS_PER_MS };
                    s.pieces_finished(now, PeerId(a), &[PieceReport { piece: b % 8, parent: None, cost_ns: cost }]).unwrap()
                }
                5 => {
                    s.announce_host(now, HostInfo { id: HostId(a % 12), kind: HostKind::Normal, location: String::new(), idc: String::new(), disable_shared: b % 3 == 0 });
                    Vec::new()
                }
                6 if !registered.contains(&a) && a % 14 < 12 => {
                    registered.push(a);
                    s.register_completed_peer_as_own(now, RegisterPeer { peer: PeerId(a), task: TaskId(a % 2), task_key: u64::from(a % 2), host: HostId(a % 14), piece_count: 8, content_length: 8 << 20, need_back_to_source: false , policy: Policy::Default, partial: false}).unwrap()
                }
                _ => s.on_timers(now),
            };
            for d in out {
                if let Decision::Parents { peer, parents } = d {
                    prop_assert!(parents.iter().all(|p| p.peer != peer));
                }
            }
            for t in 0..2 {
                prop_assert!(s.task_is_acyclic(TaskId(t)));
            }
            if let Err(e) = indexes_hold(&s) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

/// Recomputes what the scheduler keeps incrementally and compares.
fn indexes_hold(s: &Scheduler) -> Result<(), String> {
    for (tid, t) in &s.tasks {
        if !t.fed.is_consistent() {
            return Err(format!("task {tid:?}: fed index positions broken"));
        }
        if !t.tree.is_consistent() {
            return Err(format!("task {tid:?}: tree index keys broken"));
        }
        let serving = t
            .peers
            .iter()
            .filter(|p| matches!(s.peers[p].state, PeerState::Running | PeerState::BackToSource | PeerState::Succeeded))
            .count() as u32;
        if serving != t.serving {
            return Err(format!("task {tid:?}: serving {} counted, {serving} real", t.serving));
        }
        for p in &t.peers {
            let q = &s.peers[p];
            let children: usize = t.stripe_dags.iter().map(|d| d.children(*p).len()).sum();
            if children != q.stripe_children as usize {
                return Err(format!("{p:?}: stripe_children {} kept, {children} real", q.stripe_children));
            }
            for (si, d) in t.stripe_dags.iter().enumerate() {
                let offers = select::offers_stripe(&s.cfg, &s.hosts[&q.host], q, si);
                if offers != t.fed.contains(*p, si) {
                    return Err(format!("{p:?} stripe {si}: offers {offers}, indexed {}", t.fed.contains(*p, si)));
                }
                let waits = t.waiting.contains(p) && d.in_degree(*p) == 0;
                if waits != t.waiting_in[si].contains(p) {
                    return Err(format!("{p:?} stripe {si}: waits {waits}, listed {}", t.waiting_in[si].contains(p)));
                }
            }
            let want = select::tree_entry(&s.cfg, &s.hosts[&q.host], q, &t.stripe_dags, &s.peers)
                .filter(|e| e.open.is_some() || e.pushable.is_some());
            if want != t.tree.entry(*p) {
                return Err(format!("{p:?}: tree entry {:?} kept, {want:?} real", t.tree.entry(*p)));
            }
        }
    }
    let mut uploads: BTreeMap<HostId, u32> = BTreeMap::new();
    for t in s.tasks.values() {
        for p in &t.peers {
            let n = t.dag.children(*p).len() + t.stripe_dags.iter().map(|d| d.children(*p).len()).sum::<usize>();
            *uploads.entry(s.peers[p].host).or_default() += n as u32;
        }
    }
    for (h, host) in &s.hosts {
        let real = uploads.get(h).copied().unwrap_or(0);
        if real != host.concurrent_uploads {
            return Err(format!("host {h:?}: {} uploads kept, {real} real", host.concurrent_uploads));
        }
    }
    Ok(())
}

#[test]
fn presets_validate_and_nonsense_is_named() {
    for policy in Policy::ALL {
        assert_eq!(SchedulerConfig::preset(policy).validate(), Ok(()), "{policy:?}");
    }
    let mut c = SchedulerConfig::preset(Policy::Default);
    c.stripes = 0;
    assert!(c.validate().unwrap_err().starts_with("stripes = 0"));
    c.stripes = 8;
    c.stripe_fanout = 4;
    assert!(c.validate().unwrap_err().starts_with("stripe_fanout = 4"));
}

/// 50 peers registering one after the other (the seed second, as when the first
/// registration triggers it): every stripe is a shallow tree of its inner nodes, with the
/// leaves below them, whatever the arrival order (push-down and stray adoption).
#[test]
fn default_stripe_trees_keep_inner_nodes_on_top_and_stay_shallow() {
    let n = 50u32;
    let mut s = sched(Policy::Default, n, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(0, reg(1000, n, true)).unwrap();
    for p in 1..n {
        s.register_peer_as_own(0, reg(p, p, false)).unwrap();
    }
    let cfg = s.config().clone();
    let t = &s.tasks[&TaskId(0)];
    for (si, d) in t.stripe_dags.iter().enumerate() {
        let home = |p: u32| s.peers[&PeerId(p)].home_stripe == Some(si as u32);
        // The seed's one root here is an inner node of this stripe.
        let roots = d.children(PeerId(1000));
        assert_eq!(roots.len(), 1, "stripe {si}: one root");
        assert!(home(roots[0].0), "stripe {si}: the root {:?} is an inner node", roots[0]);
        for p in 0..n {
            assert_eq!(d.in_degree(PeerId(p)), 1, "peer {p} has a parent in stripe {si}");
            // 50 peers, 8 stripes: root, 8 inner nodes below it, leaves below those;
            // one overflow hop at most.
            let depth = s.peers[&PeerId(p)].stripe_depth[si];
            assert!((1..=4).contains(&depth), "peer {p} stripe {si}: depth {depth}");
            let kids = d.children(PeerId(p)).len() as u32;
            assert!(kids <= cfg.stripe_fanout, "peer {p} stripe {si}: {kids} children");
        }
        let leaf_parents = (0..n).filter(|p| !home(*p) && !d.children(PeerId(*p)).is_empty()).count();
        assert!(leaf_parents <= 1, "stripe {si}: {leaf_parents} leaves feed others");
        let inner_depths: Vec<u16> =
            (0..n).filter(|p| home(*p)).map(|p| s.peers[&PeerId(p)].stripe_depth[si]).collect();
        assert!(inner_depths.iter().all(|d| *d <= 2), "stripe {si}: inner nodes at depths {inner_depths:?}");
    }
    assert!(t.tree.is_consistent());
}

#[test]
fn a_peer_asking_for_the_origin_is_admitted_only_under_the_tasks_limit() {
    let mut cfg = SchedulerConfig::preset(Policy::Dragonfly);
    cfg.back_to_source_limit = 1;
    // No seed host: the first peer is ordered to the origin and takes the task's one place.
    let mut s = with_hosts(cfg, 7, 4, 0);
    let d = s.register_peer_as_own(0, reg(1, 0, false)).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(1), .. })), "{d:?}");
    s.register_peer_as_own(0, reg(2, 1, false)).unwrap();
    let d = s.ask_back_to_source(1, PeerId(2)).unwrap();
    assert!(!d.iter().any(|d| matches!(d, Decision::BackToSource { .. })), "at the limit: {d:?}");
    assert_eq!(s.stats.back_to_source_refusals, 1);
    assert_eq!(s.back_to_source_count(TaskId(0)), 1);
    // The first one finishes: its place is free and the next ask is admitted.
    s.peer_finished(2, PeerId(1)).unwrap();
    let d = s.ask_back_to_source(3, PeerId(2)).unwrap();
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::BackToSource { peer: PeerId(2), reason: BackToSourceReason::PeerAsked })),
        "{d:?}"
    );
    // A peer that is not downloading gets no answer.
    assert!(s.ask_back_to_source(4, PeerId(1)).unwrap().is_empty());
}

#[test]
fn an_unavailable_seed_lets_the_waiting_peers_go_on_without_it() {
    let mut s = sched(Policy::Default, 2, 1);
    let d = s.register_peer_as_own(0, reg(1, 0, false)).unwrap();
    let seed_host = d
        .iter()
        .find_map(|d| match d {
            Decision::TriggerSeed { seed_host, .. } => Some(*seed_host),
            _ => None,
        })
        .expect("a seed is triggered");
    // A report about another host changes nothing.
    assert!(s.seed_unavailable(1, TaskId(0), HostId(1)).is_empty());
    assert_eq!(s.stats.seeds_unavailable, 0);
    s.seed_unavailable(1, TaskId(0), seed_host);
    assert_eq!(s.stats.seeds_unavailable, 1);
    // Twice is once.
    s.seed_unavailable(2, TaskId(0), seed_host);
    assert_eq!(s.stats.seeds_unavailable, 1);
    // The waiting peer goes to the origin when its wait ends, as after a seed peer failed.
    let wait = s.config().wait_for_parent_timeout_ns;
    let d = s.on_timers(wait + 1);
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(1), .. })), "{d:?}");
}

#[test]
fn a_lazy_reader_sent_to_the_origin_comes_back_to_p2p_when_it_wants_the_whole_task() {
    let mut s = sched(Policy::Default, 4, 1);
    s.register_peer_as_own(0, reg(9, 4, true)).unwrap();
    for p in 1..4 {
        s.register_peer_as_own(0, reg(p, p, false)).unwrap();
    }
    // Reader 0 stalled on its ranges and asked for the origin: granted, under the limit.
    s.register_peer_as_own(0, RegisterPeer { partial: true, ..reg(0, 0, false) }).unwrap();
    let d = s.ask_back_to_source(NS_PER_MS, PeerId(0)).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(0), .. })), "{d:?}");
    assert!(s.tasks[&TaskId(0)].back_to_source.contains(&PeerId(0)));
    // Its prefetch wants the whole blob: that comes through P2P, not from the origin.
    let d = s.peer_wants_all(2 * NS_PER_MS, PeerId(0)).unwrap();
    assert!(!s.tasks[&TaskId(0)].back_to_source.contains(&PeerId(0)), "still counted at the origin");
    assert_eq!(s.peers[&PeerId(0)].state, PeerState::Running);
    assert!(d.iter().any(|d| matches!(d, Decision::Parents { peer: PeerId(0), .. })), "no parents: {d:?}");
    assert!(!d.iter().any(|d| matches!(d, Decision::BackToSource { .. })), "{d:?}");
    // Once is enough; an unknown peer is an error naming it.
    assert!(s.peer_wants_all(3 * NS_PER_MS, PeerId(0)).unwrap().is_empty());
    assert!(matches!(s.peer_wants_all(3 * NS_PER_MS, PeerId(77)), Err(SchedError::UnknownPeer(PeerId(77)))));
    // A whole-task download at the origin stays there when it says it wants everything.
    let d = s.ask_back_to_source(4 * NS_PER_MS, PeerId(1)).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(1), .. })), "{d:?}");
    assert!(s.peer_wants_all(5 * NS_PER_MS, PeerId(1)).unwrap().is_empty());
    assert_eq!(s.peers[&PeerId(1)].state, PeerState::BackToSource);
    assert!(indexes_hold(&s).is_ok());
}

/// Issue 23's storm, at its cause: a lazy reader the origin serves fetches its ranges only.
/// It used to count as holding the whole task one hop from the seed, so whole downloads
/// were placed under it, starved, and went to the origin themselves. Now it is no parent
/// of a whole download; another reader may still take its ranges from it.
#[test]
fn a_reader_served_by_the_origin_is_no_parent_of_a_whole_download() {
    let mut s = sched(Policy::Default, 3, 0);
    let reader = RegisterPeer { partial: true, ..reg(1, 0, false) };
    let d = s.register_peer_as_own(0, reader).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(1), .. })), "{d:?}");
    assert!(s.peers[&PeerId(1)].partial);
    assert_eq!(select::depth_of(&s.peers[&PeerId(1)], 0), UNFED, "its ranges are not the task");
    let named = |d: &[Decision], parent: PeerId| {
        d.iter().any(|d| matches!(d, Decision::Parents { parents, .. } if parents.iter().any(|p| p.peer == parent)))
    };
    let whole = s.register_peer_as_own(0, reg(2, 1, false)).unwrap();
    assert!(!named(&whole, PeerId(1)), "a whole download under a reader: {whole:?}");
    // Once it wants the whole task it fetches it all and may be a parent like any other.
    s.peer_wants_all(0, PeerId(1)).unwrap();
    assert!(!s.peers[&PeerId(1)].partial);
}

/// The e2e mirror test's hang, at its cause: three range readers; the seed's one root per
/// stripe goes to each reader's home stripe, the other stripes hang from the other readers,
/// which hold only their own ranges and never fetch the pieces this one wants. It blocks
/// them and used to wait for ever (the seed "serves the task"). The seed holds the task
/// whole: after `wait_for_parent_timeout_ns` it takes that reader beyond its roots.
#[test]
fn a_reader_that_blocked_the_other_readers_is_taken_by_the_seed_after_the_wait() {
    let mut s = sched(Policy::Default, 3, 1);
    s.register_peer_as_own(0, reg(9, 3, true)).unwrap();
    s.peer_finished(1, PeerId(9)).unwrap();
    for p in 0..3 {
        s.register_peer_as_own(2, RegisterPeer { partial: true, ..reg(p, p, false) }).unwrap();
    }
    let mut parents: Vec<PeerId> = s.stripe_parents(PeerId(2)).0.iter().map(|r| r.peer).collect();
    parents.sort();
    parents.dedup();
    let blocked: Vec<PeerId> = parents.into_iter().filter(|q| *q != PeerId(9)).collect();
    assert_eq!(blocked, [PeerId(0), PeerId(1)], "the case is not built");
    let given_to = |d: &[Decision]| {
        d.iter().find_map(|d| match d {
            Decision::Parents { peer: PeerId(2), parents } => Some(parents.clone()),
            _ => None,
        })
    };
    let d = s.reschedule(3, PeerId(2), &blocked).unwrap();
    let now = given_to(&d).unwrap_or_else(|| panic!("no answer: {d:?}"));
    assert!(now.iter().all(|p| p.peer == PeerId(9)) && now.len() == 1, "only the seed's root edge: {now:?}");
    assert_eq!(s.stats.seed_fallbacks, 0);
    // Its home-stripe edge is to the whole seed, which gives any piece: it is not stuck. A
    // reader whose every parent it blocked waits for the timer, then gets the seed.
    let mut s = sched(Policy::Default, 3, 1);
    s.register_peer_as_own(0, reg(9, 3, true)).unwrap();
    s.peer_finished(1, PeerId(9)).unwrap();
    for p in 0..3 {
        s.register_peer_as_own(2, RegisterPeer { partial: true, ..reg(p, p, false) }).unwrap();
    }
    let d = s.reschedule(3, PeerId(2), &[PeerId(0), PeerId(1), PeerId(9)]).unwrap();
    assert!(given_to(&d).is_none_or(|g| g.is_empty()), "{d:?}");
    assert_eq!(s.stats.seed_fallbacks, 0, "the seed it blocked is no fallback");
    assert!(indexes_hold(&s).is_ok());
}

/// The other half of the e2e mirror test's hang: the seed's last piece from the registry
/// was an outlier by Dragonfly's cost test (39 ms against a 9 ms mean), which marks a peer
/// bad; for a finished seed the mark stayed for good and it was nobody's parent again.
/// Under the default policy a peer holding the whole task is not judged by its last piece.
#[test]
fn a_finished_seed_whose_last_piece_was_slow_still_serves() {
    let mut s = sched(Policy::Default, 3, 1);
    s.register_peer_as_own(0, reg(0, 0, false)).unwrap();
    s.register_peer_as_own(1, reg(9, 3, true)).unwrap();
    let piece = |n: u32, cost_ns: u64| PieceReport { piece: n, parent: None, cost_ns };
    let reports: Vec<PieceReport> = (0..9).map(|n| piece(n, NS_PER_MS)).chain([piece(9, 40 * NS_PER_MS)]).collect();
    s.pieces_finished(2, PeerId(9), &reports).unwrap();
    assert!(s.peers[&PeerId(9)].costs.last_is_outlier, "the case is not built");
    assert!(select::is_bad_parent(&s.peers[&PeerId(9)]), "a running peer is judged by its last piece");
    s.peer_finished(3, PeerId(9)).unwrap();
    assert!(!select::is_bad_parent(&s.peers[&PeerId(9)]));
    assert!(select::is_bad_node(&s.peers[&PeerId(9)]), "Dragonfly's rule is kept for its preset");
    let d = s.register_peer_as_own(4, RegisterPeer { partial: true, ..reg(1, 1, false) }).unwrap();
    let named = d.iter().any(
        |d| matches!(d, Decision::Parents { peer: PeerId(1), parents } if parents.iter().any(|p| p.peer == PeerId(9))),
    );
    assert!(named, "the finished seed is no parent: {d:?}");
}

/// `LeaveHost`: the host's download fails, its complete copy leaves, and from then on it is
/// nobody's parent and no task's seed; leaving twice is once.
#[test]
fn a_host_that_leaves_ends_its_peers_and_serves_nobody_after() {
    for policy in Policy::ALL {
        let mut s = sched(policy, 4, 1);
        let own = |r: RegisterPeer| RegisterPeer { policy, ..r };
        s.register_peer(0, own(reg(0, 0, false))).unwrap();
        s.register_peer(1, own(reg(9, 4, true))).unwrap();
        s.peer_finished(2, PeerId(9)).unwrap();
        s.register_peer(3, own(reg(1, 1, false))).unwrap();
        s.peer_finished(4, PeerId(1)).unwrap();
        // Host 1 also has a download of another task running.
        let other = RegisterPeer { task: TaskId(1), task_key: 7, ..own(reg(2, 1, false)) };
        s.register_peer(5, other).unwrap();
        let left = s.host_left(6, HostId(1)).unwrap();
        assert_eq!(left.peers, vec![PeerId(1), PeerId(2)], "{policy:?}");
        assert_eq!(s.peer_state(PeerId(1)), Some(PeerState::Leave), "{policy:?}: the complete copy left");
        assert_eq!(s.peer_state(PeerId(2)), Some(PeerState::Failed), "{policy:?}: the download failed");
        assert_eq!(s.host_left(7, HostId(1)).unwrap(), HostLeft::default(), "{policy:?}: twice is once");
        // New downloads get the seed or host 0's peer, never host 1.
        for (p, h) in [(3, 2), (4, 3)] {
            let d = s.register_peer(8, own(reg(p, h, false))).unwrap();
            let mut parents = s.parents_of(PeerId(p));
            for d in &d {
                if let Decision::Parents { parents: given, .. } = d {
                    parents.extend(given.iter().map(|g| g.peer));
                }
            }
            assert!(!parents.is_empty(), "{policy:?}: peer {p} has parents");
            assert!(!parents.contains(&PeerId(1)), "{policy:?}: peer {p} got the host that left: {parents:?}");
        }
        assert!(matches!(s.host_left(8, HostId(99)), Err(SchedError::UnknownHost(HostId(99)))));
    }
}

/// A seed host that leaves before its seed peer registers: the task no longer waits for it
/// (as after `seed_unavailable`), and the next task's seed is another host.
#[test]
fn a_triggered_seed_host_that_leaves_is_unavailable_to_its_task_and_seeds_nothing_after() {
    let mut s = sched(Policy::Default, 2, 2);
    let seed_of = |d: &[Decision]| {
        d.iter()
            .find_map(|d| match d {
                Decision::TriggerSeed { seed_host, .. } => Some(*seed_host),
                _ => None,
            })
            .expect("a seed is triggered")
    };
    let first = seed_of(&s.register_peer_as_own(0, reg(1, 0, false)).unwrap());
    s.host_left(1, first).unwrap();
    assert_eq!(s.stats.seeds_unavailable, 1);
    let wait = s.config().wait_for_parent_timeout_ns;
    let d = s.on_timers(wait + 2);
    assert!(d.iter().any(|d| matches!(d, Decision::BackToSource { peer: PeerId(1), .. })), "{d:?}");
    for t in 1..6 {
        let r = RegisterPeer { task: TaskId(t), task_key: u64::from(t) * 7919, ..reg(10 + t, 1, false) };
        assert_ne!(seed_of(&s.register_peer_as_own(wait + 3, r).unwrap()), first, "task {t}");
    }
}
