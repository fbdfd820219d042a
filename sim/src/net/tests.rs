//! Hand-computed scenarios: each expected rate and time is worked out in its comments.

use super::*;

pub(super) const GBPS: f64 = 1e9;
pub(super) const MS_NS: u64 = 1_000_000;

fn drain(net: &mut FlowNet) -> Vec<Completion> {
    let mut out = Vec::new();
    while let Some(t) = net.next_event_ns() {
        net.advance(t, &mut out);
    }
    out
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!((actual - expected).abs() <= expected.abs() * 1e-12, "{what}: {actual} != {expected}");
}

#[test]
fn lone_flow_gets_the_smaller_of_upload_and_download() {
    for quantum_ns in [0, 250_000] {
        let mut net = FlowNet::new(quantum_ns);
        let a = net.add_node(10.0 * GBPS, 10.0 * GBPS);
        let b = net.add_node(10.0 * GBPS, 6.0 * GBPS);
        let f = net.start(1_000, a, b, 4 << 20, 7);
        let solve_ns = if quantum_ns == 0 { 1_000 } else { quantum_ns };
        assert_eq!(net.next_event_ns(), Some(solve_ns));
        assert_eq!(net.rate_bps(f), Some(0.0), "no rate before the first solve");
        let out = drain(&mut net);
        // 4 MiB * 8 / 6 Gbit/s = 5_592_405.33 ns, rounded up.
        let expected = Completion {
            flow: f,
            tag: 7,
            src: a,
            dst: b,
            bytes: 4 << 20,
            started_ns: 1_000,
            done_ns: solve_ns + 5_592_406,
        };
        assert_eq!(out, vec![expected]);
        assert_eq!(net.active_flows(), 0);
        assert_eq!(net.bytes_sent(a), 4 << 20);
        assert_eq!(net.bytes_received(b), 4 << 20);
        assert_eq!(net.solves(), 1);
    }
}

#[test]
fn two_flows_split_an_upload_and_the_survivor_speeds_up() {
    let mut net = FlowNet::new(0);
    let a = net.add_node(8.0 * GBPS, 100.0 * GBPS);
    let b = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    let c = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    let short = net.start(0, a, b, 1_000_000, 0);
    let long = net.start(0, a, c, 3_000_000, 0);
    let mut out = Vec::new();
    net.advance(0, &mut out);
    assert_close(net.rate_bps(short).unwrap(), 4.0 * GBPS, "short");
    assert_close(net.rate_bps(long).unwrap(), 4.0 * GBPS, "long");
    // 1 MB at 0.5 byte/ns = 2 ms; then the long one has 2 MB left at 1 byte/ns.
    assert_eq!(net.next_event_ns(), Some(2 * MS_NS));
    net.advance(2 * MS_NS, &mut out);
    assert_close(net.rate_bps(long).unwrap(), 8.0 * GBPS, "long after");
    out.extend(drain(&mut net));
    let done: Vec<(FlowId, TimeNs)> = out.iter().map(|c| (c.flow, c.done_ns)).collect();
    assert_eq!(done, vec![(short, 2 * MS_NS), (long, 4 * MS_NS)]);
}

#[test]
fn egress_series_follows_the_rates() {
    // Same two flows as above: node A sends at 1 byte/ns for 4 ms, then stops.
    let mut net = FlowNet::new(0);
    let a = net.add_node(8.0 * GBPS, 100.0 * GBPS);
    let b = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    net.record_egress(a, MS_NS);
    net.record_egress(b, MS_NS);
    net.start(0, a, b, 1_500_000, 0);
    net.start(0, a, b, 2_500_000, 0);
    drain(&mut net);
    // Both capped by A at 0.5 byte/ns; the first ends at 3 ms, the second then gets 1 byte/ns.
    assert_eq!(net.egress_series(a), vec![1_000_000, 1_000_000, 1_000_000, 1_000_000, 0]);
    assert_eq!(net.egress_series(b), vec![0; 5]);
    assert_eq!(net.bytes_sent(a), 4_000_000);
}

#[test]
fn flows_with_different_bottlenecks_get_max_min_shares() {
    let mut net = FlowNet::new(0);
    let a = net.add_node(10.0 * GBPS, 10.0 * GBPS);
    let b = net.add_node(10.0 * GBPS, 2.0 * GBPS);
    let c = net.add_node(10.0 * GBPS, 100.0 * GBPS);
    let ab = net.start(0, a, b, 1 << 30, 0);
    let ac = net.start(0, a, c, 1 << 30, 0);
    net.advance(0, &mut Vec::new());
    assert_close(net.rate_bps(ab).unwrap(), 2.0 * GBPS, "A->B");
    assert_close(net.rate_bps(ac).unwrap(), 8.0 * GBPS, "A->C");
}

#[test]
fn quantum_delays_the_solve_to_the_next_boundary() {
    let mut net = FlowNet::new(MS_NS);
    let a = net.add_node(8.0 * GBPS, 8.0 * GBPS);
    let b = net.add_node(8.0 * GBPS, 8.0 * GBPS);
    let f = net.start(1_500_000, a, b, 1_000_000, 0);
    assert_eq!(net.next_event_ns(), Some(2 * MS_NS));
    let mut out = Vec::new();
    net.advance(1_900_000, &mut out);
    assert_eq!(net.rate_bps(f), Some(0.0));
    net.advance(2 * MS_NS, &mut out);
    assert_eq!(net.next_event_ns(), Some(3 * MS_NS));
    net.advance(3 * MS_NS, &mut out);
    assert_eq!(out.iter().map(|c| c.flow).collect::<Vec<_>>(), vec![f]);
    // A change exactly on a boundary is solved at that instant.
    let g = net.start(3 * MS_NS, b, a, 1_000_000, 0);
    assert_eq!(net.next_event_ns(), Some(3 * MS_NS), "the new flow's solve is due now");
    net.advance(3 * MS_NS, &mut out);
    assert_close(net.rate_bps(g).unwrap(), 8.0 * GBPS, "g");
    assert_eq!(net.solves(), 2);
}

#[test]
fn zero_byte_flow_completes_at_its_start() {
    let mut net = FlowNet::new(MS_NS);
    let a = net.add_node(GBPS, GBPS);
    let f = net.start(123, a, a, 0, 9);
    assert_eq!(net.next_event_ns(), Some(123));
    let out = drain(&mut net);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].flow, out[0].done_ns, out[0].tag), (f, 123, 9));
    assert_eq!(net.solves(), 0, "a zero-byte flow takes no capacity");
}

#[test]
fn cancel_returns_delivered_bytes_and_frees_capacity() {
    let mut net = FlowNet::new(0);
    let a = net.add_node(8.0 * GBPS, 100.0 * GBPS);
    let b = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    let c = net.add_node(100.0 * GBPS, 100.0 * GBPS);
    let x = net.start(0, a, b, 10_000_000, 0);
    let y = net.start(0, a, c, 10_000_000, 0);
    let mut out = Vec::new();
    net.advance(0, &mut out);
    // 0.5 byte/ns each for 1 ms.
    assert_eq!(net.cancel(MS_NS, x), Some(500_000));
    assert_eq!(net.active_flows(), 1);
    assert_eq!(net.next_event_ns(), Some(MS_NS), "freed capacity is re-shared now");
    assert_eq!(net.cancel(MS_NS, x), None);
    net.advance(MS_NS, &mut out);
    assert_close(net.rate_bps(y).unwrap(), 8.0 * GBPS, "y");
    out.extend(drain(&mut net));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].done_ns, MS_NS + 9_500_000);
    assert_eq!(net.cancel(20 * MS_NS, y), None, "already completed");
    assert_eq!(net.bytes_sent(a), 10_500_000);
    assert_eq!(net.bytes_received(b), 500_000);
    assert_eq!(net.cancel(20 * MS_NS, FlowId(99)), None);
}

#[test]
fn set_capacity_changes_rates_from_then_on() {
    let mut net = FlowNet::new(0);
    let a = net.add_node(8.0 * GBPS, 8.0 * GBPS);
    let b = net.add_node(8.0 * GBPS, 8.0 * GBPS);
    let f = net.start(0, a, b, 10_000_000, 0);
    let mut out = Vec::new();
    net.advance(0, &mut out);
    net.set_capacity(MS_NS, a, 4.0 * GBPS, 8.0 * GBPS);
    net.advance(MS_NS, &mut out);
    assert_close(net.rate_bps(f).unwrap(), 4.0 * GBPS, "after");
    out.extend(drain(&mut net));
    // 1 MB sent in the first ms, 9 MB left at 0.5 byte/ns.
    assert_eq!(out[0].done_ns, MS_NS + 18_000_000);
}

#[test]
fn completion_reported_by_next_advance_when_caught_up_inside_start() {
    let mut net = FlowNet::new(0);
    let a = net.add_node(8.0 * GBPS, 8.0 * GBPS);
    let b = net.add_node(8.0 * GBPS, 8.0 * GBPS);
    let f = net.start(0, a, b, 1_000, 0);
    net.advance(0, &mut Vec::new());
    // Done at 1000 ns, but the caller jumps past it before advancing.
    let g = net.start(5_000, b, a, 1_000, 0);
    assert_eq!(net.cancel(5_000, f), None);
    let out = drain(&mut net);
    assert_eq!(out.iter().map(|c| (c.flow, c.done_ns)).collect::<Vec<_>>(), vec![(f, 1_000), (g, 6_000)]);
}

#[test]
fn ceil_ns_is_ceil_at_least_one() {
    for x in [0.0, 0.2, 1.0, 1.5, 2.0, 12345.000001, 9.007199254740993e15, 1e300, f64::INFINITY] {
        let expected = if x >= u64::MAX as f64 { u64::MAX } else { (x.ceil() as u64).max(1) };
        assert_eq!(super::ceil_ns(x), expected, "{x}");
    }
    assert_eq!(super::ceil_ns(f64::NAN), 1);
}
