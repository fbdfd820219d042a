//! Cost of the flow-level bandwidth model: one re-solve at the sizes of the main job and
//! of the 10,000-node scenario, and a whole random workload through the start/advance loop.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::net::{FlowNet, NodeIx, TimeNs};
use std::hint::black_box;

const GBPS: f64 = 1e9;

/// A net with `flows` long random flows, already solved once at t = 0.
fn loaded_net(nodes: u32, flows: usize, seed: u64) -> FlowNet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = FlowNet::new(0);
    net.add_node(10.0 * GBPS, 10.0 * GBPS); // registry
    for _ in 1..nodes {
        net.add_node(6.0 * GBPS, 6.0 * GBPS);
    }
    for _ in 0..flows {
        let src = if rng.random_range(0..10) == 0 { 0 } else { rng.random_range(0..nodes) };
        let dst = (src + rng.random_range(1..nodes)) % nodes;
        net.start(0, NodeIx(src), NodeIx(dst), 1 << 40, 0);
    }
    net.advance(0, &mut Vec::new());
    net
}

fn bench_solve(c: &mut Criterion) {
    for (nodes, flows) in [(500u32, 4000usize), (10_000, 40_000)] {
        let mut net = loaded_net(nodes, flows, 1);
        let mut now: TimeNs = 0;
        c.bench_function(&format!("solve {nodes} nodes / {flows} flows"), |b| {
            b.iter(|| {
                // Re-setting a capacity marks the net dirty; exact mode solves at once.
                now += 1;
                net.set_capacity(now, NodeIx(0), 10.0 * GBPS, 10.0 * GBPS);
                net.advance(now, &mut Vec::new());
                black_box(net.solves())
            })
        });
    }
}

/// 500 nodes, 20,000 pieces of 1-8 MiB requested over 1 s, lazy quantum 0.25 ms.
fn workload(seed: u64) -> Vec<(TimeNs, u32, u32, u64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes = 500;
    let mut v: Vec<_> = (0..20_000)
        .map(|_| {
            let src = rng.random_range(0..nodes);
            let dst = (src + rng.random_range(1..nodes)) % nodes;
            (rng.random_range(0..1_000_000_000u64), src, dst, rng.random_range(1u64 << 20..8 << 20))
        })
        .collect();
    v.sort();
    v
}

fn run_workload(w: &[(TimeNs, u32, u32, u64)], quantum_ns: u64) -> usize {
    let mut net = FlowNet::new(quantum_ns);
    net.add_node(10.0 * GBPS, 10.0 * GBPS);
    for _ in 1..500 {
        net.add_node(6.0 * GBPS, 6.0 * GBPS);
    }
    net.record_egress(NodeIx(0), 10_000_000);
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let t = match (w.get(next).map(|f| f.0), net.next_event_ns()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => break,
            },
        };
        net.advance(t, &mut out);
        while next < w.len() && w[next].0 == t {
            let (_, s, d, bytes) = w[next];
            net.start(t, NodeIx(s), NodeIx(d), bytes, next as u64);
            next += 1;
        }
    }
    out.len()
}

fn bench_workload(c: &mut Criterion) {
    let w = workload(2);
    let mut g = c.benchmark_group("workload 500 nodes / 20k flows");
    g.sample_size(10);
    g.bench_function("quantum 0.25 ms", |b| b.iter(|| black_box(run_workload(&w, 250_000))));
    g.finish();
}

criterion_group!(benches, bench_solve, bench_workload);
criterion_main!(benches);
