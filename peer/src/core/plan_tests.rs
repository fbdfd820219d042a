//! Unit tests of the download plan.

use super::*;
use crate::core::availability::MAX_LEVEL;
use crate::core::config::{PeerConfig, PieceSizing};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sched::core::ids::NS_PER_S;
use sched::core::HostId;
use sched::Policy;

const MIB: u64 = 1 << 20;

fn parent(id: u32, pieces: &[u32], count: u32) -> (ParentRef, bool, PieceSet) {
    let mut has = PieceSet::new(count);
    for p in pieces {
        has.insert(*p);
    }
    (ParentRef { peer: PeerId(id), host: HostId(id), stripe: None }, false, has)
}

fn fetches(out: &[PeerAction]) -> Vec<(u32, Source)> {
    out.iter()
        .filter_map(|a| match a {
            PeerAction::Fetch { piece, from } => Some((*piece, *from)),
            _ => None,
        })
        .collect()
}

/// The default preset with 4 MiB pieces, whatever the content length (the tests count
/// pieces in 4 MiB units).
fn cfg() -> PeerConfig {
    PeerConfig { piece_sizing: PieceSizing::Fixed { piece_bytes: 4 * MIB }, ..PeerConfig::preset(Policy::Default) }
}

#[test]
fn rarest_piece_first_from_the_least_busy_parent() {
    let mut c = cfg();
    c.max_in_flight_total = 1;
    let mut d = TaskDownload::new(c, 4 * 4 * MIB, true, 0);
    // Pieces 0..3 are held by both parents, piece 3 only by parent 2.
    d.on_parents(0, vec![parent(1, &[0, 1, 2], 4), parent(2, &[0, 1, 2, 3], 4)]);
    let mut out = Vec::new();
    d.poll(0, &mut ChaCha8Rng::seed_from_u64(1), &mut out);
    assert_eq!(fetches(&out), vec![(3, Source::Parent(PeerId(2)))]);
}

#[test]
fn per_parent_and_total_in_flight_limits_hold() {
    let mut c = cfg();
    c.max_in_flight_per_parent = 2;
    c.max_in_flight_total = 3;
    let mut d = TaskDownload::new(c, 10 * 4 * MIB, true, 0);
    d.on_parents(0, vec![parent(1, &(0..10).collect::<Vec<_>>(), 10), parent(2, &(0..10).collect::<Vec<_>>(), 10)]);
    let mut out = Vec::new();
    d.poll(0, &mut ChaCha8Rng::seed_from_u64(1), &mut out);
    let f = fetches(&out);
    assert_eq!(f.len(), 3);
    for p in [1, 2] {
        assert!(f.iter().filter(|(_, s)| *s == Source::Parent(PeerId(p))).count() <= 2);
    }
    let mut pieces: Vec<u32> = f.iter().map(|x| x.0).collect();
    pieces.dedup();
    assert_eq!(pieces.len(), 3, "no piece requested twice outside endgame");
}

#[test]
fn failed_piece_is_refetched_elsewhere_and_parent_reported() {
    let mut c = cfg();
    c.max_in_flight_total = 1;
    let mut d = TaskDownload::new(c, 2 * 4 * MIB, true, 0);
    d.on_parents(0, vec![parent(1, &[0, 1], 2)]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut out = Vec::new();
    d.poll(0, &mut rng, &mut out);
    let (piece, from) = fetches(&out)[0];
    d.on_piece_failed(10, piece, from);
    d.on_parents(20, vec![parent(1, &[0, 1], 2), parent(2, &[0, 1], 2)]);
    // Parent 1 stays in the plan only if the scheduler sends it again; here it did, but
    // the blocked list sent with the next reschedule names it.
    out.clear();
    d.poll(20, &mut rng, &mut out);
    assert_eq!(fetches(&out).len(), 1);
    assert!(d.in_flight_count() == 1);
}

#[test]
fn asks_for_parents_when_none_is_useful_and_names_failed_ones() {
    let mut d = TaskDownload::new(cfg(), 3 * 4 * MIB, true, 0);
    // Two parents that can still give pieces: no reason to ask yet.
    d.on_parents(0, vec![parent(1, &[0], 3), parent(2, &[1], 3)]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.poll(0, &mut rng, &mut out);
    assert!(!out.iter().any(|a| matches!(a, PeerAction::Reschedule { .. })), "{out:?}");
    let (piece, from) = *fetches(&out).iter().find(|f| f.1 == Source::Parent(PeerId(1))).unwrap();
    d.on_piece_failed(5, piece, from);
    out.clear();
    d.poll(5, &mut rng, &mut out);
    let blocked = out.iter().find_map(|a| match a {
        PeerAction::Reschedule { blocked } => Some(blocked.clone()),
        _ => None,
    });
    assert_eq!(blocked, Some(vec![PeerId(1)]));
}

#[test]
fn back_to_source_reads_in_order_and_finishes_with_a_report() {
    let mut d = TaskDownload::new(cfg(), 3 * 4 * MIB + 1, true, 0);
    assert_eq!(d.piece_count(), 4);
    assert_eq!(d.piece_len(3), 1);
    d.on_back_to_source(0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut t = 0;
    let mut order = Vec::new();
    loop {
        let mut out = Vec::new();
        d.poll(t, &mut rng, &mut out);
        if out.contains(&PeerAction::Finished) {
            assert!(out.iter().any(|a| matches!(a, PeerAction::Report(r) if !r.is_empty())));
            break;
        }
        let f = fetches(&out);
        assert!(!f.is_empty(), "back-to-source made no progress");
        for (piece, from) in f {
            assert_eq!(from, Source::Origin);
            order.push(piece);
            t += 1;
            d.on_piece_done(t, piece, from, 1);
        }
    }
    assert_eq!(order, vec![0, 1, 2, 3]);
}

#[test]
fn a_stuck_piece_times_out_and_is_cancelled() {
    let c = cfg();
    let timeout = c.piece_timeout_ns(4 * MIB);
    let mut d = TaskDownload::new(c, 4 * MIB, true, 0);
    d.on_parents(0, vec![parent(1, &[0], 1), parent(2, &[0], 1)]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.poll(0, &mut rng, &mut out);
    assert_eq!(d.next_deadline(), Some(timeout));
    out.clear();
    d.poll(timeout, &mut rng, &mut out);
    assert!(out.iter().any(|a| matches!(a, PeerAction::Cancel { piece: 0, .. })), "{out:?}");
    assert!(out.iter().any(|a| matches!(a, PeerAction::ParentFailed { .. })));
}

#[test]
fn lazy_reader_fetches_only_what_it_wants_urgent_first() {
    let mut d = TaskDownload::new(cfg(), 8 * 4 * MIB, false, 0);
    d.on_parents(0, vec![parent(1, &(0..8).collect::<Vec<_>>(), 8)]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.poll(0, &mut rng, &mut out);
    assert!(fetches(&out).is_empty(), "nothing wanted yet");
    d.want(d.pieces_covering(5 * 4 * MIB + 10, 100));
    d.poll(1, &mut rng, &mut out);
    assert_eq!(fetches(&out), vec![(5, Source::Parent(PeerId(1)))]);
}

#[test]
fn stripes_keep_seed_children_on_their_share_while_other_work_exists() {
    let mut c = cfg();
    c.max_in_flight_total = 1;
    let mut d = TaskDownload::new(c, 8 * 4 * MIB, true, 0);
    let mut seed = parent(9, &(0..8).collect::<Vec<_>>(), 8);
    seed.0.stripe = Some(Stripe { index: 1, count: 4 });
    seed.1 = true;
    d.on_parents(0, vec![seed]);
    let mut out = Vec::new();
    d.poll(0, &mut ChaCha8Rng::seed_from_u64(1), &mut out);
    let (piece, _) = fetches(&out)[0];
    assert_eq!(piece % 4, 1, "first piece comes from the child's stripe");
}

#[test]
fn a_striped_parent_with_upload_to_spare_gives_other_stripes_too() {
    // The child holds stripe 1 of the parent (a downloading peer, pieces 0..6 of 8) and
    // wants only pieces outside it: strict stripes give nothing until the parent's host
    // says it runs fewer uploads than `off_stripe_below_uploads`.
    let mut c = cfg();
    c.max_in_flight_total = 1;
    let limit = c.off_stripe_below_uploads;
    assert!(c.strict_stripes && limit > 0, "the default policy's peer is strict and borrows");
    let mut d = TaskDownload::new(c, 8 * 4 * MIB, true, 0);
    for piece in [1, 5] {
        d.on_piece_done(0, piece, Source::Origin, 1);
    }
    let mut p = parent(7, &(0..6).collect::<Vec<_>>(), 8);
    p.0.stripe = Some(Stripe { index: 1, count: 4 });
    d.on_parents(0, vec![p]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.poll(1, &mut rng, &mut out);
    assert!(fetches(&out).is_empty(), "no report yet: the parent counts as busy");
    d.on_parent_uploads(PeerId(7), limit);
    d.poll(2, &mut rng, &mut out);
    assert!(fetches(&out).is_empty(), "at the limit: still busy");
    d.on_parent_uploads(PeerId(7), limit - 1);
    d.poll(3, &mut rng, &mut out);
    let got = fetches(&out);
    assert_eq!(got.len(), 1);
    assert!(got[0].0 < 6 && got[0].0 % 4 != 1, "an off-stripe piece the parent holds: {got:?}");
}

#[test]
fn a_stalled_range_reader_takes_pieces_of_stripes_no_parent_serves() {
    // A lazy reader wants pieces 0..4; its one parent (downloading, busy) serves it stripe
    // 1 of 4 and holds all four. Strict stripes alone gave piece 1 and then nothing, ever:
    // the reader asked for new parents while this one held what it waited on.
    let mut c = cfg();
    c.max_in_flight_total = 1;
    let mut d = TaskDownload::new(c, 8 * 4 * MIB, false, 0);
    d.want(0..4);
    let mut p = parent(7, &[0, 1, 2, 3], 8);
    p.0.stripe = Some(Stripe { index: 1, count: 4 });
    d.on_parents(0, vec![p]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.poll(1, &mut rng, &mut out);
    assert_eq!(fetches(&out), vec![(1, Source::Parent(PeerId(7)))], "its own stripe first");
    out.clear();
    d.on_piece_done(2, 1, Source::Parent(PeerId(7)), 1);
    let mut got = Vec::new();
    for t in 3..6 {
        d.poll(t, &mut rng, &mut out);
        for (piece, from) in fetches(&out) {
            assert_eq!(from, Source::Parent(PeerId(7)));
            d.on_piece_done(t, piece, from, 1);
            got.push(piece);
        }
        out.clear();
    }
    got.sort();
    assert_eq!(got, vec![0, 2, 3], "then, stalled, the pieces no parent's stripe covers");
}

#[test]
fn one_parent_may_serve_several_stripes() {
    let mut c = cfg();
    c.max_in_flight_total = 8;
    c.max_in_flight_per_parent = 8;
    let mut d = TaskDownload::new(c, 8 * 4 * MIB, true, 0);
    let all: Vec<u32> = (0..8).collect();
    let mut a = parent(1, &all, 8);
    a.0.stripe = Some(Stripe { index: 0, count: 4 });
    let mut b = parent(1, &all, 8);
    b.0.stripe = Some(Stripe { index: 2, count: 4 });
    d.on_parents(0, vec![a, b]);
    let mut out = Vec::new();
    d.poll(0, &mut ChaCha8Rng::seed_from_u64(1), &mut out);
    let mut first: Vec<u32> = fetches(&out).iter().map(|(p, _)| *p).take(4).collect();
    first.sort();
    assert_eq!(first, vec![0, 2, 4, 6], "stripes 0 and 2 first, from the one parent");
}

#[test]
fn a_stall_inside_the_reschedule_backoff_does_not_spin() {
    // One empty parent: too few useful parents, so the plan asks for more at 0 and again
    // at 150 ms; the stall (200 ms without a piece) then falls inside the backoff after
    // the second ask, and the next deadline must wait for the backoff, not sit in the past.
    let c = cfg();
    let mut d = TaskDownload::new(c.clone(), 4 * 4 * MIB, true, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    let asked = |out: &[PeerAction]| out.iter().any(|a| matches!(a, PeerAction::Reschedule { .. }));
    d.on_parents(0, vec![parent(1, &[], 4)]);
    d.poll(0, &mut rng, &mut out);
    assert!(asked(&out), "{out:?}");
    d.on_parents(0, vec![parent(1, &[], 4)]);
    out.clear();
    let t = 150 * sched::core::NS_PER_MS;
    d.poll(t, &mut rng, &mut out);
    assert!(asked(&out), "{out:?}");
    d.on_parents(t, vec![parent(1, &[], 4)]);
    let next = d.next_deadline().expect("still waiting for pieces");
    assert!(next >= t + c.reschedule_backoff_ns, "deadline {next} lies inside the backoff");
}

#[test]
fn a_parent_failing_outside_a_transfer_is_dropped_and_named_in_the_reschedule() {
    let mut c = cfg();
    c.min_useful_parents = 2;
    let mut d = TaskDownload::new(c, 8 * 4 * MIB, true, 0);
    d.on_parents(0, vec![parent(1, &[0, 1], 8), parent(2, &[2, 3], 8)]);
    let mut out = Vec::new();
    d.poll(0, &mut ChaCha8Rng::seed_from_u64(1), &mut out);
    d.on_parent_failed(PeerId(2));
    d.on_parent_failed(PeerId(9)); // not a parent: ignored
    assert!(!d.has_parent(PeerId(2)) && d.has_parent(PeerId(1)));
    let mut out = Vec::new();
    d.poll(NS_PER_S, &mut ChaCha8Rng::seed_from_u64(1), &mut out);
    let blocked: Vec<Vec<PeerId>> = out
        .iter()
        .filter_map(|a| match a {
            PeerAction::Reschedule { blocked } => Some(blocked.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(blocked, vec![vec![PeerId(2)]]);
}

/// The lazy-reader case: both parents hold only the two pieces they wanted (a range) and
/// stop there. This download wants all 8: each stall asks the scheduler again, and once
/// the parents have been idle and useless for `IDLE_STALLS_TO_BLOCK` stall checks in a row
/// (the first check only records what they hold) the Reschedule names them, so the
/// scheduler places it elsewhere instead of handing back the same parents until the
/// download gives up on P2P.
#[test]
fn parents_that_stay_idle_with_nothing_needed_are_blocked() {
    let c = cfg();
    let stall = c.stall_timeout_ns.max(c.reschedule_backoff_ns);
    let mut d = TaskDownload::new(c, 8 * 4 * MIB, true, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let lazy = || vec![parent(1, &[0, 1], 8), parent(2, &[0, 1], 8)];
    d.on_parents(0, lazy());
    let mut out = Vec::new();
    d.poll(0, &mut rng, &mut out);
    let ms = sched::core::NS_PER_MS;
    for (piece, from) in fetches(&out) {
        d.on_piece_done(ms, piece, from, ms);
    }
    let mut t = ms;
    let mut asks = Vec::new();
    for _ in 0..8 {
        t += stall + 1;
        out.clear();
        d.poll(t, &mut rng, &mut out);
        let blocked = out.iter().find_map(|a| match a {
            PeerAction::Reschedule { blocked } => Some(blocked.clone()),
            _ => None,
        });
        let blocked = blocked.expect("a stalled download asks again");
        let done = !blocked.is_empty();
        asks.push(blocked);
        if done {
            break;
        }
        d.on_parents(t, lazy());
    }
    assert_eq!(asks.len(), 1 + IDLE_STALLS_TO_BLOCK as usize, "{asks:?}");
    assert_eq!(asks.last().unwrap(), &vec![PeerId(1), PeerId(2)]);
}

// ---- Kraken's connection lifecycle (conn_lifecycle) ----

const S: TimeNs = sched::core::NS_PER_S;

fn kraken(pieces: u32) -> TaskDownload {
    TaskDownload::new(PeerConfig::preset(Policy::Kraken), u64::from(pieces) * 4_000_000, true, 0)
}

fn closed(d: &mut TaskDownload) -> Vec<PeerId> {
    d.take_parent_changes().into_iter().filter(|(_, added)| !added).map(|(p, _)| p).collect()
}

#[test]
fn kraken_closes_a_connection_idle_for_longer_than_conn_tti_at_the_preemption_tick() {
    let mut d = kraken(4);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    // Peer 1 has nothing to give; peer 2 never gives anything but keeps taking pieces.
    d.on_parents(5 * S, vec![parent(1, &[], 4), parent(2, &[], 4)]);
    d.take_parent_changes();
    d.poll(5 * S, &mut rng, &mut out);
    assert_eq!(d.next_deadline(), Some(30 * S), "ticks on the 30 s grid");
    d.on_piece_sent(20 * S, PeerId(2));
    d.poll(30 * S, &mut rng, &mut out);
    assert!(closed(&mut d).is_empty(), "25 s idle is within conn_tti");
    d.on_piece_sent(50 * S, PeerId(2));
    d.poll(60 * S, &mut rng, &mut out);
    assert_eq!(closed(&mut d), vec![PeerId(1)], "55 s idle: closed; 10 s since a piece was sent: kept");
    assert!(d.has_parent(PeerId(2)));
    assert!(d.is_blacklisted(PeerId(1), 60 * S));
}

#[test]
fn kraken_closes_a_connection_older_than_conn_ttl_even_if_busy() {
    let mut d = kraken(4);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.on_parents(0, vec![parent(1, &[], 4)]);
    d.take_parent_changes();
    let mut t = 0;
    while t <= 3600 * S {
        d.on_piece_sent(t, PeerId(1));
        d.poll(t, &mut rng, &mut out);
        assert!(closed(&mut d).is_empty(), "closed at {t} ns, before conn_ttl");
        t += 30 * S;
    }
    d.on_piece_sent(t, PeerId(1));
    d.poll(t, &mut rng, &mut out);
    assert_eq!(closed(&mut d), vec![PeerId(1)], "older than 1 h");
}

#[test]
fn kraken_does_not_redial_a_blacklisted_peer_within_its_window() {
    let mut d = kraken(4);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.on_parents(0, vec![parent(1, &[0], 4)]);
    d.poll(0, &mut rng, &mut out);
    let fetched = fetches(&out);
    assert!(!fetched.is_empty());
    // The other end closes: transfers on it are cancelled, the peer blacklisted for 30 s.
    d.on_conn_closed(10 * S, PeerId(1));
    assert!(!d.has_parent(PeerId(1)));
    out.clear();
    d.poll(10 * S, &mut rng, &mut out);
    for (piece, from) in fetched {
        assert!(out.contains(&PeerAction::Cancel { piece, from }), "{out:?}");
    }
    assert_eq!(d.in_flight_count(), 0);
    d.on_parents(39 * S, vec![parent(1, &[0], 4)]);
    assert!(!d.has_parent(PeerId(1)), "blacklisted until 40 s");
    d.on_parents(40 * S, vec![parent(1, &[0], 4)]);
    assert!(d.has_parent(PeerId(1)), "the window is over");
    // A refused dial blacklists too (Kraken's failed outgoing handshake).
    d.on_dial_refused(41 * S, PeerId(1));
    d.on_parents(42 * S, vec![parent(1, &[0], 4)]);
    assert!(!d.has_parent(PeerId(1)));
}

#[test]
fn kraken_reannounces_after_a_close_and_connects_to_the_new_peers() {
    let mut d = kraken(4);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    let ten: Vec<_> = (1..=10).map(|p| parent(p, &[], 4)).collect();
    d.on_parents(0, ten.clone());
    d.poll(0, &mut rng, &mut out);
    let announced = |out: &[PeerAction]| out.iter().any(|a| matches!(a, PeerAction::Reschedule { .. }));
    out.clear();
    d.poll(10 * S, &mut rng, &mut out);
    assert!(!announced(&out), "saturated: no announce");
    // Nothing moves: the tick at 60 s closes every connection (idle 60 s > 30 s).
    d.poll(60 * S, &mut rng, &mut out);
    assert_eq!(closed(&mut d).len(), 10);
    assert!(announced(&out), "below capacity: announce again, {out:?}");
    // The handout repeats the old peers (blacklisted) and names new ones.
    let mut handout = ten;
    handout.extend((11..=13).map(|p| parent(p, &[0, 1], 4)));
    d.on_parents(60 * S, handout);
    let now: Vec<PeerId> = d.parent_ids().collect();
    assert_eq!(now, vec![PeerId(11), PeerId(12), PeerId(13)]);
}

#[test]
fn kraken_caps_connections_both_ways_and_a_finished_download_still_seeds() {
    let mut d = kraken(2);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    d.on_parents(0, (1..=9).map(|p| parent(p, &[0, 1], 2)).collect());
    let me = |id: u32| ParentRef { peer: PeerId(id), host: HostId(id), stripe: None };
    assert!(d.on_incoming(0, me(20), PieceSet::new(2)), "tenth connection accepted");
    assert!(!d.on_incoming(0, me(21), PieceSet::new(2)), "at max_open_conn: refused");
    d.poll(0, &mut rng, &mut out);
    for (piece, from) in fetches(&out) {
        d.on_piece_done(S, piece, from, 1);
    }
    d.take_parent_changes();
    out.clear();
    d.poll(S, &mut rng, &mut out);
    assert!(out.contains(&PeerAction::Finished));
    // Complete: connections to complete peers close, the incomplete one stays; the
    // freed slots take incoming connections, and handouts open none.
    assert_eq!(closed(&mut d).len(), 9);
    assert_eq!(d.parent_ids().collect::<Vec<_>>(), vec![PeerId(20)]);
    assert!(d.on_incoming(S, me(21), PieceSet::new(2)));
    d.on_parents(S, vec![parent(30, &[], 2)]);
    assert!(!d.has_parent(PeerId(30)));
}

/// The scan `pick_rarest` replaced, kept as its specification: every availability level,
/// every parent, every word, stripes tested piece by piece.
fn pick_rarest_by_full_scan(d: &TaskDownload, rng: &mut impl Rng) -> Option<(u32, PeerId)> {
    let mut order: Vec<usize> = (0..d.parents.len()).filter(|i| d.parent_has_room(&d.parents[*i])).collect();
    if order.is_empty() {
        return None;
    }
    order.sort_by(|a, b| {
        let (pa, pb) = (&d.parents[*a], &d.parents[*b]);
        pa.in_flight.cmp(&pb.in_flight).then(pa.cost_ewma_ns.total_cmp(&pb.cost_ewma_ns)).then(a.cmp(b))
    });
    let words = d.needed.words().len();
    let offset = if words > 0 { rng.random_range(0..words) } else { 0 };
    // A stalled range reader takes urgent pieces of stripes no parent serves from anyone.
    let stalled_reader = !d.wanted.is_full() && d.in_flight_total == 0;
    let orphan = |piece: u32| {
        stalled_reader
            && d.urgent.contains(piece)
            && !d.parents.iter().any(|q| q.stripes.is_none_or(|s| s.contains(piece)))
    };
    for only_urgent in [true, false] {
        if only_urgent && d.urgent.is_empty() {
            continue;
        }
        for honour_stripes in [true, false] {
            for level in 1..=MAX_LEVEL {
                for &pi in &order {
                    let p = &d.parents[pi];
                    let spare = d.wanted.is_full() && p.uploads_active < d.cfg.off_stripe_below_uploads;
                    let strict = d.cfg.strict_stripes && !p.has.is_full() && !spare;
                    let stripe = if honour_stripes || strict { p.stripes } else { None };
                    for k in 0..words {
                        let wi = (offset + k) % words;
                        let mut w = p.has.words()[wi] & d.needed.words()[wi];
                        if only_urgent {
                            w &= d.urgent.words()[wi];
                        }
                        while w != 0 {
                            let piece = wi as u32 * 64 + w.trailing_zeros();
                            w &= w - 1;
                            if d.availability.count(piece).min(MAX_LEVEL) != level {
                                continue;
                            }
                            if stripe.is_none_or(|s| s.contains(piece)) || (!honour_stripes && strict && orphan(piece))
                            {
                                return Some((piece, p.peer));
                            }
                        }
                    }
                }
            }
        }
    }
    None
}

proptest::proptest! {
    /// `pick_rarest` picks what the full scan picks, and draws the same random numbers,
    /// over random parents (striped or not, stripe counts that do and do not divide 64),
    /// pieces held, pieces in flight and urgent ranges.
    #[test]
    fn pick_rarest_equals_the_full_scan(seed in 0u64..10_000, pieces in 1u32..300, stripe_count in 1u32..12, lazy in proptest::bool::ANY) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut c = cfg();
        c.max_in_flight_total = 1_000;
        c.max_in_flight_per_parent = 3;
        c.strict_stripes = seed % 2 == 0;
        let mut d = TaskDownload::new(c, u64::from(pieces) * 4 * MIB, !lazy, 0);
        let parents: Vec<(ParentRef, bool, PieceSet)> = (0..rng.random_range(0..10u32))
            .map(|i| {
                let held: Vec<u32> = (0..pieces).filter(|_| rng.random_bool(0.3)).collect();
                let mut p = parent(i + 1, &held, pieces);
                if rng.random_bool(0.7) {
                    p.0.stripe = Some(Stripe { index: rng.random_range(0..stripe_count), count: stripe_count });
                }
                p.1 = rng.random_bool(0.2);
                p
            })
            .collect();
        let ids: Vec<PeerId> = parents.iter().map(|p| p.0.peer).collect();
        d.on_parents(0, parents);
        for id in ids {
            if rng.random_bool(0.5) {
                d.on_parent_uploads(id, rng.random_range(0..8));
            }
        }
        if lazy {
            let a = rng.random_range(0..pieces);
            d.want(a..pieces.min(a + 20));
        }
        for piece in 0..pieces {
            if rng.random_bool(0.2) {
                d.on_piece_done(1, piece, Source::Origin, 1);
            }
        }
        for round in 0..40 {
            let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(round), ChaCha8Rng::seed_from_u64(round));
            let got = d.pick_rarest(&mut r1);
            proptest::prop_assert_eq!(got, pick_rarest_by_full_scan(&d, &mut r2));
            proptest::prop_assert_eq!(r1.random::<u64>(), r2.random::<u64>(), "same draws");
            let Some((piece, parent)) = got else { break };
            let mut out = Vec::new();
            d.start(2, piece, Source::Parent(parent), &mut out);
        }
    }
}

#[test]
fn want_rest_keeps_a_range_reader_first() {
    let mut c = cfg();
    c.max_in_flight_total = 1;
    let mut d = TaskDownload::new(c, 8 * 4 * MIB, false, 0);
    d.on_parents(0, vec![parent(1, &(0..8).collect::<Vec<_>>(), 8)]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut out = Vec::new();
    assert!(d.wants_nothing_more(), "a lazy download wants nothing before a read");
    d.want(6..7);
    d.want_rest();
    assert!(!d.wants_nothing_more());
    d.poll(0, &mut rng, &mut out);
    assert_eq!(fetches(&out), vec![(6, Source::Parent(PeerId(1)))], "the urgent piece first");
    d.on_piece_done(1, 6, Source::Parent(PeerId(1)), 1);
    out.clear();
    let mut got = vec![6];
    for t in 2..20 {
        d.poll(t, &mut rng, &mut out);
        for (p, from) in fetches(&out) {
            d.on_piece_done(t, p, from, 1);
            got.push(p);
        }
        out.clear();
    }
    got.sort();
    assert_eq!(got, (0..8).collect::<Vec<_>>(), "then every other piece");
    assert!(d.wants_nothing_more() && d.is_complete());
}

proptest::proptest! {
    /// The shifted pattern gives, for every word, exactly the pieces of the stripes.
    #[test]
    fn word_mask_matches_piece_by_piece(count in 1u32..=64, mask_bits in proptest::num::u64::ANY, wi in 0usize..5000) {
        let mask = if count == 64 { mask_bits } else { mask_bits & ((1u64 << count) - 1) };
        let s = Stripes::new(mask, count);
        let expected = (0..64u32).filter(|b| s.contains(wi as u32 * 64 + b)).fold(0u64, |m, b| m | 1 << b);
        proptest::prop_assert_eq!(s.word_mask(wi), expected);
    }
}

#[test]
fn a_received_piece_frees_its_parent_slot_but_is_neither_refetched_nor_timed_out() {
    let c = cfg(); // one piece per parent
    let timeout = c.piece_timeout_ns(4 * MIB);
    let mut d = TaskDownload::new(c, 4 * 4 * MIB, true, 0);
    d.on_parents(0, vec![parent(1, &[0, 1, 2, 3], 4)]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut out = Vec::new();
    d.poll(0, &mut rng, &mut out);
    let first = fetches(&out);
    assert_eq!(first.len(), 1, "one piece per parent: {first:?}");
    let (piece, from) = first[0];

    // Bytes in, being verified and written: the parent gets the next request now.
    d.on_piece_received(piece, from);
    d.on_piece_received(piece, from); // twice is once
    out.clear();
    d.poll(1, &mut rng, &mut out);
    let second = fetches(&out);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0].0, piece, "the received piece was asked for again");

    // Far past the piece timeout: the received piece is not expired (only the other is).
    out.clear();
    d.poll(timeout + 10, &mut rng, &mut out);
    assert!(
        !out.iter().any(|a| matches!(a, PeerAction::Cancel { piece: p, .. } if *p == piece)),
        "a piece being stored timed out: {out:?}"
    );
    d.on_piece_done(timeout + 11, piece, from, 1);
    assert!(d.have().contains(piece));
    assert_eq!(d.redundant_transfers(piece), Vec::new(), "the stored piece left nothing in flight");
}

/// Polls at `t` and returns what the plan did.
fn poll_at(d: &mut TaskDownload, t: TimeNs) -> Vec<PeerAction> {
    let mut out = Vec::new();
    d.poll(t, &mut ChaCha8Rng::seed_from_u64(7), &mut out);
    out
}

/// A plan with no useful parent, stalled through `max_reschedules` rounds.
fn stalled_until_it_asks(max_reschedules: u32) -> (TaskDownload, TimeNs) {
    let mut c = cfg();
    c.max_reschedules = max_reschedules;
    let mut d = TaskDownload::new(c.clone(), 3 * 4 * MIB, true, 0);
    // Registered; the scheduler's first answer named no parent.
    d.on_parents(0, Vec::new());
    let mut t = 0;
    for round in 0..=max_reschedules {
        t += c.stall_timeout_ns + c.reschedule_backoff_ns;
        let out = poll_at(&mut d, t);
        if round < max_reschedules {
            assert!(out.iter().any(|a| matches!(a, PeerAction::Reschedule { .. })), "round {round}: {out:?}");
            d.on_parents(t, Vec::new());
        } else {
            assert!(out.contains(&PeerAction::AskBackToSource), "{out:?}");
        }
    }
    (d, t)
}

#[test]
fn giving_up_on_p2p_asks_the_scheduler_and_waits_for_its_answer() {
    let (mut d, t) = stalled_until_it_asks(3);
    // Nothing from the origin on the plan's own: only the scheduler's yes sends it there.
    for later in [t + 1, t + 10 * NS_PER_S] {
        let out = poll_at(&mut d, later);
        assert!(fetches(&out).is_empty() && !out.contains(&PeerAction::AskBackToSource), "{out:?}");
        assert!(!d.is_back_to_source());
    }
    d.on_back_to_source(t + 10 * NS_PER_S);
    let out = poll_at(&mut d, t + 10 * NS_PER_S);
    assert!(fetches(&out).iter().all(|f| f.1 == Source::Origin) && !fetches(&out).is_empty(), "{out:?}");
}

#[test]
fn a_refused_ask_gives_p2p_a_whole_new_set_of_rounds() {
    let (mut d, t) = stalled_until_it_asks(2);
    // The scheduler says no by sending parents (here, still none useful).
    d.on_parents(t, Vec::new());
    let stall = cfg().stall_timeout_ns + cfg().reschedule_backoff_ns;
    let out = poll_at(&mut d, t + stall);
    assert!(out.iter().any(|a| matches!(a, PeerAction::Reschedule { .. })), "asks for parents first: {out:?}");
}

#[test]
fn a_download_the_scheduler_gave_up_on_fetches_nothing_more() {
    let mut d = TaskDownload::new(cfg(), 3 * 4 * MIB, true, 0);
    d.on_parents(0, vec![parent(1, &[0, 1, 2], 3)]);
    let started = fetches(&poll_at(&mut d, 0));
    assert!(!started.is_empty());
    d.on_scheduling_failed(1);
    assert!(d.is_refused());
    let out = poll_at(&mut d, 2);
    let cancels: Vec<(u32, Source)> = out
        .iter()
        .filter_map(|a| match a {
            PeerAction::Cancel { piece, from } => Some((*piece, *from)),
            _ => None,
        })
        .collect();
    assert_eq!(cancels, started, "what was running is stopped");
    assert!(fetches(&out).is_empty());
    assert_eq!(d.next_deadline(), None);
    assert!(poll_at(&mut d, 100 * NS_PER_S).is_empty());
}

#[test]
fn a_lazy_reader_is_partial_until_it_wants_all_and_says_so_once() {
    let mut d = TaskDownload::new(cfg(), 8 * 4 * MIB, false, 0);
    assert!(d.is_partial());
    assert!(!poll_at(&mut d, 0).contains(&PeerAction::WantsAll), "a reader that wants nothing more says nothing");
    d.want_all();
    assert!(!d.is_partial());
    let first = poll_at(&mut d, 1);
    assert_eq!(first.iter().filter(|a| **a == PeerAction::WantsAll).count(), 1, "{first:?}");
    d.want_all();
    assert!(!poll_at(&mut d, 2).contains(&PeerAction::WantsAll), "told once");
    // A download that wanted everything from the start is never partial and never says it.
    let mut whole = TaskDownload::new(cfg(), 8 * 4 * MIB, true, 0);
    assert!(!whole.is_partial());
    whole.want_all();
    assert!(!poll_at(&mut whole, 1).contains(&PeerAction::WantsAll));
}

#[test]
fn a_lazy_reader_at_the_origin_fetches_the_rest_through_p2p() {
    let mut d = TaskDownload::new(cfg(), 8 * 4 * MIB, false, 0);
    d.want(0..2);
    d.on_parents(0, Vec::new());
    d.on_back_to_source(1);
    let out = poll_at(&mut d, 1);
    let origin = fetches(&out).iter().filter(|(_, s)| *s == Source::Origin).count();
    assert!(origin > 0, "its ranges come from the origin: {out:?}");
    // The prefetch wants everything: the scheduler is told, and the rest waits for parents.
    d.want_all();
    assert!(!d.is_back_to_source());
    let out = poll_at(&mut d, 2);
    assert!(out.contains(&PeerAction::WantsAll), "{out:?}");
    assert!(fetches(&out).iter().all(|(_, s)| *s != Source::Origin), "more from the origin: {out:?}");
    // Parents come: the other pieces are fetched from them.
    d.on_parents(3, vec![parent(1, &(0..8).collect::<Vec<_>>(), 8)]);
    let out = poll_at(&mut d, 3);
    assert!(fetches(&out).iter().any(|(p, s)| *p >= 2 && *s == Source::Parent(PeerId(1))), "{out:?}");
}

#[test]
fn a_lazy_reader_without_a_scheduler_stays_at_the_origin_for_the_rest() {
    let mut d = TaskDownload::new(cfg(), 8 * 4 * MIB, false, 0);
    d.want(0..2);
    d.on_scheduler_lost(0);
    d.want_rest();
    assert!(d.is_back_to_source(), "nobody would answer a WantsAll");
    let out = poll_at(&mut d, 1);
    assert!(fetches(&out).iter().all(|(_, s)| *s == Source::Origin) && !fetches(&out).is_empty(), "{out:?}");
}

/// Dragonfly's Rust client sends a file of at most 4 MiB straight to the source; ours and
/// Kraken's always go through the scheduler.
#[test]
fn only_small_dragonfly_downloads_skip_the_scheduler() {
    let d = PeerConfig::preset(Policy::Dragonfly);
    assert!(TaskDownload::new(d.clone(), 4 * MIB, true, 0).skips_scheduler());
    assert!(!TaskDownload::new(d, 4 * MIB + 1, true, 0).skips_scheduler());
    for policy in [Policy::Default, Policy::Kraken] {
        assert!(!TaskDownload::new(PeerConfig::preset(policy), 1024, true, 0).skips_scheduler());
    }
}

/// Kraken's agent announces one torrent per 3 s tick, round robin: with 4 downloads below
/// `max_parents` on the host, each asks every 12 s instead of every 3 s.
#[test]
fn kraken_shares_one_announce_tick_among_the_hosts_downloads() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut announces = |host_downloads: u32| {
        let mut d = kraken(4);
        let mut out = Vec::new();
        d.on_parents(0, vec![parent(1, &[], 4)]);
        d.on_host_announcing(host_downloads);
        assert!(d.wants_announce(), "one parent of 10: below capacity");
        let mut at = Vec::new();
        for s in 1..=24 {
            out.clear();
            d.poll(s * S, &mut rng, &mut out);
            if out.iter().any(|a| matches!(a, PeerAction::Reschedule { .. })) {
                at.push(s);
                d.on_parents(s * S, vec![parent(1, &[], 4)]);
            }
        }
        at
    };
    // The first poll below capacity announces at once, then the interval holds.
    assert_eq!(announces(1), vec![1, 4, 7, 10, 13, 16, 19, 22]);
    assert_eq!(announces(4), vec![1, 13]);
}
