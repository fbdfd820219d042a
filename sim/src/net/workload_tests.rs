//! Random workloads: quantum against exact mode, byte conservation, determinism, and a
//! property test of max-min fairness.

use super::tests::{GBPS, MS_NS};
use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Workload {
    caps_bps: Vec<(f64, f64)>,
    /// (start, src, dst, bytes), sorted by start.
    flows: Vec<(TimeNs, u32, u32, u64)>,
    /// (time, index into flows), sorted by time.
    cancels: Vec<(TimeNs, usize)>,
}

fn random_workload(seed: u64, nodes: u32, flows: usize, window_ns: u64, cancels: usize) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let speeds = [1.0, 2.5, 5.0, 10.0];
    let caps_bps =
        (0..nodes).map(|_| (speeds[rng.random_range(0..4)] * GBPS, speeds[rng.random_range(0..4)] * GBPS)).collect();
    let mut fl: Vec<_> = (0..flows)
        .map(|_| {
            let src = rng.random_range(0..nodes);
            let dst = (src + rng.random_range(1..nodes)) % nodes;
            (rng.random_range(0..window_ns), src, dst, rng.random_range(1u64 << 20..8 << 20))
        })
        .collect();
    fl.sort();
    let mut cs: Vec<_> = (0..cancels)
        .map(|_| {
            let k = rng.random_range(0..flows);
            (fl[k].0 + rng.random_range(0..5 * MS_NS), k)
        })
        .collect();
    cs.sort();
    Workload { caps_bps, flows: fl, cancels: cs }
}

struct Run {
    net: FlowNet,
    ids: Vec<FlowId>,
    completions: Vec<Completion>,
    /// (flow index, delivered) of successful cancels.
    cancelled: Vec<(usize, u64)>,
}

fn run(w: &Workload, quantum_ns: u64, bucket_ns: Option<u64>) -> Run {
    let mut net = FlowNet::new(quantum_ns);
    for &(up, down) in &w.caps_bps {
        let n = net.add_node(up, down);
        if let Some(b) = bucket_ns {
            net.record_egress(n, b);
        }
    }
    let (mut next_start, mut next_cancel) = (0, 0);
    let mut ids = Vec::new();
    let mut completions = Vec::new();
    let mut cancelled = Vec::new();
    loop {
        let candidates =
            [w.flows.get(next_start).map(|f| f.0), w.cancels.get(next_cancel).map(|c| c.0), net.next_event_ns()];
        let Some(t) = candidates.into_iter().flatten().min() else {
            break;
        };
        net.advance(t, &mut completions);
        while next_start < w.flows.len() && w.flows[next_start].0 == t {
            let (_, s, d, bytes) = w.flows[next_start];
            ids.push(net.start(t, NodeIx(s), NodeIx(d), bytes, next_start as u64));
            next_start += 1;
        }
        while next_cancel < w.cancels.len() && w.cancels[next_cancel].0 == t {
            let k = w.cancels[next_cancel].1;
            if let Some(delivered) = net.cancel(t, ids[k]) {
                cancelled.push((k, delivered));
            }
            next_cancel += 1;
        }
    }
    Run { net, ids, completions, cancelled }
}

/// Per flow (indexed by tag), its completion time relative to `exact`: |lazy - exact| / exact.
fn relative_errors(exact: &Run, lazy: &Run) -> Vec<f64> {
    let mut done = vec![0u64; exact.completions.len()];
    for c in &exact.completions {
        done[c.tag as usize] = c.done_ns;
    }
    assert_eq!(lazy.completions.len(), done.len());
    lazy.completions
        .iter()
        .map(|c| (c.done_ns as f64 - done[c.tag as usize] as f64).abs() / done[c.tag as usize] as f64)
        .collect()
}

fn makespan_ns(r: &Run) -> f64 {
    r.completions.iter().map(|c| c.done_ns).max().unwrap() as f64
}

#[test]
fn quantum_mode_tracks_exact_mode() {
    // Open-loop arrivals over 1 s; 1-8 MiB pieces on 1-10 Gbit/s NICs, some nodes overloaded.
    let w = random_workload(42, 50, 2000, 1000 * MS_NS, 0);
    let exact = run(&w, 0, None);
    assert_eq!(exact.completions.len(), 2000);
    // simulation.md's rule: a quantum of at most 1/20 of the shortest piece time at line
    // rate (1 MiB at 10 Gbit/s = 839 us).
    let fine = run(&w, 40_000, None);
    for (k, e) in relative_errors(&exact, &fine).into_iter().enumerate() {
        assert!(e <= 0.005, "completion {k} off by {:.3}%", e * 100.0);
    }
    let (me, mf) = (makespan_ns(&exact), makespan_ns(&fine));
    assert!((mf - me).abs() / me <= 0.001, "makespan exact {me} lazy {mf}");
    assert!(fine.net.solves() < exact.net.solves());
    // 0.25 ms is coarse next to 1 MiB pieces: a flow starting early can end a few % late,
    // but on average and for the makespan the error stays small.
    let coarse = run(&w, 250_000, None);
    let errs = relative_errors(&exact, &coarse);
    let mean = errs.iter().sum::<f64>() / errs.len() as f64;
    assert!(mean <= 0.002, "mean error {:.3}%", mean * 100.0);
    assert!(errs.iter().any(|&e| e > 0.0), "the modes should differ a little");
    let mc = makespan_ns(&coarse);
    assert!((mc - me).abs() / me <= 0.001, "makespan exact {me} lazy {mc}");
    assert!(coarse.net.solves() < fine.net.solves());
}

#[test]
fn bytes_are_conserved_and_egress_series_respects_capacity() {
    let w = random_workload(7, 30, 1500, 100 * MS_NS, 200);
    let bucket_ns = MS_NS;
    for quantum_ns in [0, 250_000] {
        let r = run(&w, quantum_ns, Some(bucket_ns));
        assert!(r.cancelled.len() > 50, "workload should cancel flows mid-transfer");
        assert_eq!(r.completions.len() + r.cancelled.len(), w.flows.len());
        let n = w.caps_bps.len();
        let (mut sent, mut received) = (vec![0u64; n], vec![0u64; n]);
        for c in &r.completions {
            sent[c.src.0 as usize] += c.bytes;
            received[c.dst.0 as usize] += c.bytes;
        }
        for &(k, delivered) in &r.cancelled {
            let (_, s, d, bytes) = w.flows[k];
            assert!(delivered < bytes);
            sent[s as usize] += delivered;
            received[d as usize] += delivered;
        }
        for (i, &(up_bps, _)) in w.caps_bps.iter().enumerate() {
            let node = NodeIx(i as u32);
            assert_eq!(r.net.bytes_sent(node), sent[i], "sent by {i}");
            assert_eq!(r.net.bytes_received(node), received[i], "received by {i}");
            let series = r.net.egress_series(node);
            assert_eq!(series.iter().sum::<u64>(), sent[i], "series of {i}");
            let cap_bytes = up_bps / 8e9 * bucket_ns as f64;
            for (b, &v) in series.iter().enumerate() {
                assert!(v as f64 <= cap_bytes * (1.0 + 1e-9) + 1.0, "node {i} bucket {b}: {v} > {cap_bytes}");
            }
        }
        let mut ordered = r.completions.clone();
        ordered.sort_by_key(|c| (c.done_ns, c.flow));
        assert_eq!(ordered, r.completions, "completions come ordered by (done_ns, flow)");
        assert!(r.ids.len() == w.flows.len());
    }
}

#[test]
fn same_workload_gives_identical_results() {
    let w = random_workload(3, 40, 1000, 100 * MS_NS, 50);
    let a = run(&w, 250_000, Some(MS_NS));
    let b = run(&w, 250_000, Some(MS_NS));
    assert_eq!(a.completions, b.completions);
    assert_eq!(a.cancelled, b.cancelled);
    for i in 0..w.caps_bps.len() as u32 {
        assert_eq!(a.net.egress_series(NodeIx(i)), b.net.egress_series(NodeIx(i)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Max-min fairness: no constraint over capacity, and every flow crosses a saturated
    /// constraint on which no other flow is faster.
    #[test]
    fn solve_is_max_min_fair(
        caps in prop::collection::vec((1u32..20, 1u32..20), 2..8),
        flows in prop::collection::vec((0u32..8, 0u32..8, 1u64..4_000_000, any::<bool>()), 1..40),
    ) {
        let n = caps.len() as u32;
        let mut net = FlowNet::new(0);
        for &(up, down) in &caps {
            net.add_node(up as f64 * GBPS, down as f64 * GBPS);
        }
        let mut live = Vec::new();
        let mut cancel = Vec::new();
        for &(s, d, bytes, c) in &flows {
            let (s, d) = (s % n, d % n);
            let id = net.start(0, NodeIx(s), NodeIx(d), bytes, 0);
            live.push((id, s, d));
            if c { cancel.push(id); }
        }
        let mut out = Vec::new();
        net.advance(0, &mut out);
        check_max_min(&net, &caps, &live)?;
        // Again after some flows left mid-way and the survivors were re-solved.
        for &id in &cancel {
            net.cancel(1_000, id);
        }
        let t = net.next_event_ns().unwrap_or(1_000);
        net.advance(t, &mut out);
        net.advance(net.next_event_ns().unwrap_or(t).max(t), &mut out);
        live.retain(|(id, _, _)| net.rate_bps(*id).is_some());
        check_max_min(&net, &caps, &live)?;
    }
}

fn check_max_min(net: &FlowNet, caps: &[(u32, u32)], live: &[(FlowId, u32, u32)]) -> Result<(), TestCaseError> {
    if net.next_event_ns() == Some(net.now_ns) {
        return Ok(()); // a solve is still due: rates are not settled
    }
    let cap_of = |c: usize| [caps[c / 2].0, caps[c / 2].1][c % 2] as f64 * GBPS;
    let mut sum = vec![0.0; caps.len() * 2];
    let mut max = vec![0.0f64; caps.len() * 2];
    let rates: Vec<f64> = live.iter().map(|(id, _, _)| net.rate_bps(*id).unwrap()).collect();
    for (&(_, s, d), &r) in live.iter().zip(&rates) {
        for c in [2 * s as usize, 2 * d as usize + 1] {
            sum[c] += r;
            max[c] = max[c].max(r);
        }
    }
    for (c, &total) in sum.iter().enumerate() {
        prop_assert!(total <= cap_of(c) * (1.0 + 1e-9), "constraint {} over: {} > {}", c, total, cap_of(c));
    }
    for (&(id, s, d), &r) in live.iter().zip(&rates) {
        prop_assert!(r > 0.0, "{:?} has no rate", id);
        let bottlenecked = [2 * s as usize, 2 * d as usize + 1]
            .into_iter()
            .any(|c| sum[c] >= cap_of(c) * (1.0 - 1e-9) && r >= max[c] * (1.0 - 1e-9));
        prop_assert!(bottlenecked, "{:?} at {} is not bottlenecked", id, r);
    }
    Ok(())
}
