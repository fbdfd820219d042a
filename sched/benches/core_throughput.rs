//! Throughput of the scheduler core alone (no gRPC, no lock), default policy, one task
//! with 1,000 normal peers on 1,000 hosts plus its seed peer:
//!
//! - `piece_report`: `pieces_finished` with one piece per call (the worst case: daemons
//!   batch pieces), and with 16 pieces per call;
//! - `reschedule`: a peer gives up on one of its parents and gets a new one (one
//!   selection round); and `reschedule` with nothing blocked (the default policy then
//!   keeps the parents it has, so this is the round's fixed cost);
//! - `register`: a new peer joins the 1,000 (bookkeeping plus its first selection round).
//!
//! Targets (one core): >= 20,000 piece reports/s and >= 5,000 selections/s.
//! Run: `cargo bench -p sched --no-default-features --bench core_throughput` (the core
//! alone builds much faster than with the service).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sched::core::hashring::key_of;
use sched::core::{
    Decision, HostId, HostInfo, HostKind, PeerId, PieceReport, Policy, RegisterPeer, Scheduler, SchedulerConfig,
    TaskId, TimeNs, NS_PER_MS,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const PEERS: u32 = 1_000;
/// A 4 GiB layer in 4 MiB pieces.
const PIECES: u32 = 1_024;
const SEED_HOST: HostId = HostId(0);
const SEED_PEER: PeerId = PeerId(0);
const TASK: TaskId = TaskId(0);

fn registration(peer: u32, host: u32, need_back_to_source: bool) -> RegisterPeer {
    RegisterPeer {
        peer: PeerId(peer),
        task: TASK,
        task_key: key_of(b"bench-task"),
        host: HostId(host),
        piece_count: PIECES,
        content_length: u64::from(PIECES) * (4 << 20),
        need_back_to_source,
        policy: sched::Policy::Default,
        partial: false,
    }
}

/// A seed host plus `hosts` normal hosts (ids 1..=hosts) across 4 IDCs.
fn announce(s: &mut Scheduler, hosts: u32) {
    s.announce_host(
        0,
        HostInfo {
            id: SEED_HOST,
            kind: HostKind::Seed,
            location: "a|b".into(),
            idc: "idc-0".into(),
            disable_shared: false,
        },
    );
    for h in 1..=hosts {
        let info = HostInfo {
            id: HostId(h),
            kind: HostKind::Normal,
            location: format!("a|b|rack-{}", h % 32),
            idc: format!("idc-{}", h % 4),
            disable_shared: false,
        };
        s.announce_host(0, info);
    }
}

/// The seed fetching, 1,000 peers registered (peer i on host i), each with some pieces.
/// Returns the scheduler, the normal peers and the current time.
fn cluster(extra_hosts: u32) -> (Scheduler, Vec<PeerId>, TimeNs) {
    let mut s = Scheduler::new(SchedulerConfig::preset(Policy::Default), ChaCha8Rng::seed_from_u64(1));
    announce(&mut s, PEERS + extra_hosts);
    let mut now = 0;
    let first = s.register_peer(now, registration(1, 1, false)).expect("register");
    assert!(matches!(first[..], [Decision::TriggerSeed { .. }]), "{first:?}");
    s.register_peer(now, registration(SEED_PEER.0, SEED_HOST.0, true)).expect("seed registers");
    let from_origin: Vec<PieceReport> =
        (0..PIECES / 2).map(|piece| PieceReport { piece, parent: None, cost_ns: 5 * NS_PER_MS }).collect();
    s.pieces_finished(now, SEED_PEER, &from_origin).expect("seed reports");
    for p in 2..=PEERS {
        now += NS_PER_MS;
        s.register_peer(now, registration(p, p, false)).expect("register");
    }
    let peers: Vec<PeerId> = (1..=PEERS).map(PeerId).collect();
    for (i, p) in peers.iter().enumerate() {
        now += 10_000;
        let parent = s.parents_of(*p).first().copied();
        let got: Vec<PieceReport> =
            (0..(i as u32 % 64)).map(|piece| PieceReport { piece, parent, cost_ns: 5 * NS_PER_MS }).collect();
        s.pieces_finished(now, *p, &got).expect("report");
    }
    (s, peers, now)
}

fn piece_reports(c: &mut Criterion) {
    let mut g = c.benchmark_group("piece_report");
    for batch in [1u32, 16] {
        let (mut s, peers, mut now) = cluster(0);
        let parents: Vec<Option<PeerId>> = peers.iter().map(|p| s.parents_of(*p).first().copied()).collect();
        let mut i = 0usize;
        g.throughput(Throughput::Elements(u64::from(batch)));
        g.bench_function(format!("pieces_per_call_{batch}"), |b| {
            b.iter(|| {
                let k = i % peers.len();
                let first = (i / peers.len()) as u32 * batch % PIECES;
                let reports: Vec<PieceReport> = (first..first + batch)
                    .map(|piece| PieceReport { piece: piece % PIECES, parent: parents[k], cost_ns: 5 * NS_PER_MS })
                    .collect();
                now += 1_000;
                i += 1;
                black_box(s.pieces_finished(now, peers[k], &reports).expect("report"))
            })
        });
    }
    g.finish();
}

fn reschedules(c: &mut Criterion) {
    let mut g = c.benchmark_group("selection");
    g.sample_size(20);
    let (mut s, peers, mut now) = cluster(0);
    let mut i = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("reschedule_one_parent_blocked", |b| {
        b.iter(|| {
            let peer = peers[i % peers.len()];
            i += 1;
            now += 1_000;
            let blocked: Vec<PeerId> = s.parents_of(peer).into_iter().filter(|p| *p != SEED_PEER).take(1).collect();
            black_box(s.reschedule(now, peer, &blocked).expect("reschedule"))
        })
    });
    let (mut s, peers, mut now) = cluster(0);
    g.bench_function("reschedule_nothing_blocked", |b| {
        b.iter(|| {
            let peer = peers[i % peers.len()];
            i += 1;
            now += 1_000;
            black_box(s.reschedule(now, peer, &[]).expect("reschedule"))
        })
    });

    // Registrations grow the task, so each batch starts again from 1,000 peers; only the
    // registrations are timed.
    const BATCH: u32 = 100;
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function("register_into_1000_peers", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let (mut s, _, now) = cluster(BATCH);
                let n = (iters - done).min(u64::from(BATCH)) as u32;
                let started = Instant::now();
                for k in 0..n {
                    let id = PEERS + 1 + k;
                    black_box(s.register_peer(now + u64::from(k), registration(id, id, false)).expect("register"));
                }
                timed += started.elapsed();
                done += u64::from(n);
            }
            timed
        })
    });
    g.finish();
}

criterion_group!(benches, piece_reports, reschedules);
criterion_main!(benches);
