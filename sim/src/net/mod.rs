//! Flow-level bandwidth model.
//!
//! A transfer is (src, dst, length): it crosses src's upload and dst's download, and
//! every flow gets its max-min fair share of those two constraints (see `solver`). Where
//! a scenario models CPU, a node also charges a CPU pool (its own cores, or a machine's
//! that several nodes share) so many CPU-ns per byte it sends or receives, and the pool
//! is a third, weighted, constraint of its flows.
//!
//! Time is virtual nanoseconds. Re-solving on every start and completion is exact but
//! costs a full solve per event, so the model is *lazily quantised*: a change to the flow
//! set or to a capacity only schedules a re-solve at the next multiple of `quantum_ns`
//! (at `now` itself when `now` is a multiple, or always with `quantum_ns == 0`). Between
//! solves rates are frozen: a new flow sends nothing until the next solve and a finished
//! flow's capacity stays unused until then. Completion times are exact for the frozen
//! rates, rounded up to a whole ns so no flow ever finishes early.
//!
//! Determinism: flows live in a slab, constraints in Vecs, ties break by index or
//! `FlowId`; the only hash map is an id-to-slot lookup that is never iterated.

#[cfg(test)]
mod cpu_tests;
mod flows;
mod series;
mod solver;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod workload_tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use flows::{upload_of, CpuCharge, Flow, FlowTable, NOT_SCHEDULED, NO_POOL};
use series::EgressSeries;
use solver::{Solved, Solver};

pub type TimeNs = u64;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIx(pub u32);

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId(pub u64);

/// A CPU pool: cores that the nodes charged to it share.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CpuPool(u32);

/// What a node costs its CPU pool per byte it sends and per byte it receives.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct NodeCpu {
    pub pool: CpuPool,
    pub send_ns_per_byte: f64,
    pub receive_ns_per_byte: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub flow: FlowId,
    pub tag: u64,
    pub src: NodeIx,
    pub dst: NodeIx,
    pub bytes: u64,
    pub started_ns: TimeNs,
    pub done_ns: TimeNs,
}

/// `done_heap` holds the completions due within this many quanta; flows change so often
/// that a solve nearly always comes sooner and refills it anyway.
const DONE_HORIZON_QUANTA: u64 = 4;

/// Float residue below which a flow counts as finished at a solve.
const DONE_EPS_BYTES: f64 = 1e-6;

/// max(1, ceil(x)) for a duration in ns, without `f64::ceil`: on the baseline x86-64
/// target that is a software routine, and it ran once per flow per re-solve (about 9% of a
/// tensorflow-500 run). Below 2^52 through i64 (one conversion instruction each way, where
/// u64 takes a dozen); above it every f64 is a whole number, and `as u64` saturates.
fn ceil_ns(x: f64) -> u64 {
    const WHOLE_ABOVE: f64 = 4_503_599_627_370_496.0; // 2^52
    if x > 0.0 && x < WHOLE_ABOVE {
        let t = x as i64;
        let t = t + i64::from((t as f64) < x);
        (t as u64).max(1)
    } else if x >= WHOLE_ABOVE {
        x as u64
    } else {
        1 // zero, negative or NaN
    }
}

/// Refills `heap` with the live flows due by `horizon_ns` and returns the earliest time
/// of the others. After a solve at `now_ns`, each flow whose rate it changed first takes
/// its progress to `now_ns` at its old rate, then its new rate and completion time (a flow
/// left with a float residue only is due at once). A flow whose rate did not change keeps
/// its completion time and its progress reference, so it costs one look at its time.
fn file_due(
    table: &mut FlowTable,
    solved: Option<&Solved>,
    now_ns: TimeNs,
    horizon_ns: TimeNs,
    heap: &mut BinaryHeap<Reverse<(TimeNs, FlowId, u32)>>,
) -> Option<TimeNs> {
    if let Some(solved) = solved {
        for &slot in solved.changed {
            let f = &mut table.slots[slot as usize];
            debug_assert!(f.live && f.attached);
            f.remaining_bytes -= f.rate_bytes_per_ns * (now_ns - f.ref_ns) as f64;
            f.ref_ns = now_ns;
            let rate = solved.rate_bytes_per_ns(slot);
            f.rate_bytes_per_ns = rate;
            table.done_ns[slot as usize] = if f.remaining_bytes <= DONE_EPS_BYTES {
                now_ns
            } else {
                now_ns.saturating_add(ceil_ns(f.remaining_bytes / rate))
            };
        }
    }
    let mut entries = std::mem::take(heap).into_vec();
    entries.clear();
    let mut later = NOT_SCHEDULED;
    for (slot, &done_ns) in table.done_ns.iter().enumerate() {
        if done_ns <= horizon_ns && done_ns != NOT_SCHEDULED {
            entries.push(Reverse((done_ns, table.slots[slot].id, slot as u32)));
        } else {
            later = later.min(done_ns);
        }
    }
    *heap = BinaryHeap::from(entries);
    (later != NOT_SCHEDULED).then_some(later)
}

fn bytes_per_ns(bps: f64) -> f64 {
    bps / 8e9
}

pub struct FlowNet {
    quantum_ns: u64,
    /// Per constraint (`2n` upload, `2n + 1` download of node n).
    caps_bytes_per_ns: Vec<f64>,
    table: FlowTable,
    slot_of: HashMap<FlowId, u32>,
    next_flow_id: u64,
    solver: Solver,
    /// (done_ns, flow, slot) of the flows due by `horizon_ns`, exact between solves; its
    /// top is always a live entry. A solve changes every flow's completion, but only the
    /// few due before the next solve are ever popped, so only they are ordered.
    done_heap: BinaryHeap<Reverse<(TimeNs, FlowId, u32)>>,
    horizon_ns: TimeNs,
    /// Earliest completion of a flow left out of `done_heap` (a lower bound: such a
    /// flow may have been cancelled since); reaching it refills the heap.
    later_ns: Option<TimeNs>,
    now_ns: TimeNs,
    solve_at_ns: Option<TimeNs>,
    sent_bytes: Vec<u64>,
    received_bytes: Vec<u64>,
    series_of: Vec<Option<u32>>,
    series: Vec<(NodeIx, EgressSeries)>,
    /// Per node, its CPU pool and costs; None: its CPU is not modelled.
    node_cpu: Vec<Option<NodeCpu>>,
    /// Completions found while catching up inside `start`/`cancel`/`set_capacity`,
    /// handed out by the next `advance`.
    pending_out: Vec<Completion>,
}

impl FlowNet {
    pub fn new(quantum_ns: u64) -> Self {
        FlowNet {
            quantum_ns,
            caps_bytes_per_ns: Vec::new(),
            table: FlowTable::default(),
            slot_of: HashMap::new(),
            next_flow_id: 0,
            solver: Solver::default(),
            done_heap: BinaryHeap::new(),
            horizon_ns: 0,
            later_ns: None,
            now_ns: 0,
            solve_at_ns: None,
            sent_bytes: Vec::new(),
            received_bytes: Vec::new(),
            series_of: Vec::new(),
            series: Vec::new(),
            node_cpu: Vec::new(),
            pending_out: Vec::new(),
        }
    }

    /// A CPU pool of `cores` (> 0, finite), after every node was added.
    pub fn add_cpu_pool(&mut self, cores: f64) -> CpuPool {
        debug_assert!(cores > 0.0 && cores.is_finite());
        let c = self.table.add_pool();
        debug_assert_eq!(c as usize, self.caps_bytes_per_ns.len());
        // CPU-ns per ns: the weights are CPU-ns per byte, so the pool's shares are bytes per ns.
        self.caps_bytes_per_ns.push(cores);
        CpuPool(c)
    }

    /// From now on, flows that `node` starts sending or receiving charge `cpu.pool` (flows
    /// already running keep what they had). Costs >= 0 and finite.
    pub fn set_node_cpu(&mut self, node: NodeIx, cpu: NodeCpu) {
        debug_assert!(cpu.send_ns_per_byte >= 0.0 && cpu.receive_ns_per_byte >= 0.0);
        self.node_cpu[node.0 as usize] = Some(cpu);
    }

    fn cpu_charge(&self, flow: &Flow) -> CpuCharge {
        let end = |node: NodeIx, f: fn(&NodeCpu) -> f64| match &self.node_cpu[node.0 as usize] {
            Some(cpu) => (cpu.pool.0, f(cpu)),
            None => (NO_POOL, 0.0),
        };
        let src = end(flow.src, |c| c.send_ns_per_byte);
        let dst = end(flow.dst, |c| c.receive_ns_per_byte);
        CpuCharge::new(flow.cons, src, dst)
    }

    /// Capacities in bits per second; must be > 0 and finite (debug_assert; the scenario loader validates).
    pub fn add_node(&mut self, up_bps: f64, down_bps: f64) -> NodeIx {
        debug_assert!(up_bps > 0.0 && up_bps.is_finite() && down_bps > 0.0 && down_bps.is_finite());
        let node = NodeIx(self.sent_bytes.len() as u32);
        self.caps_bytes_per_ns.push(bytes_per_ns(up_bps));
        self.caps_bytes_per_ns.push(bytes_per_ns(down_bps));
        self.table.add_node();
        self.sent_bytes.push(0);
        self.received_bytes.push(0);
        self.series_of.push(None);
        self.node_cpu.push(None);
        node
    }

    /// Change a node's capacities from `now` on (a degraded NIC); triggers a re-solve
    /// (at the next quantum boundary, like any other change).
    pub fn set_capacity(&mut self, now: TimeNs, node: NodeIx, up_bps: f64, down_bps: f64) {
        debug_assert!(up_bps > 0.0 && up_bps.is_finite() && down_bps > 0.0 && down_bps.is_finite());
        self.catch_up(now);
        let up = upload_of(node) as usize;
        self.caps_bytes_per_ns[up] = bytes_per_ns(up_bps);
        self.caps_bytes_per_ns[up + 1] = bytes_per_ns(down_bps);
        if !self.table.members[up].is_empty() || !self.table.members[up + 1].is_empty() {
            self.schedule_solve(self.now_ns);
        }
    }

    /// Keep a series of bytes sent by `node` per bucket of `bucket_ns` (bucket i covers
    /// [i*b, (i+1)*b)). Meant to be called before the node sends; if called later, all
    /// bytes sent so far land in the current bucket.
    pub fn record_egress(&mut self, node: NodeIx, bucket_ns: u64) {
        let up = upload_of(node) as usize;
        let mut inflight_bytes = 0.0;
        let mut rate = 0.0;
        for m in &self.table.members[up] {
            let f = &self.table.slots[m.slot as usize];
            inflight_bytes += f.bytes as f64 - f.remaining_bytes_at(self.now_ns);
            rate += f.rate_bytes_per_ns;
        }
        let s = EgressSeries::new(bucket_ns, self.now_ns, self.sent_bytes[node.0 as usize], inflight_bytes, rate);
        match self.series_of[node.0 as usize] {
            Some(i) => self.series[i as usize].1 = s,
            None => {
                self.series_of[node.0 as usize] = Some(self.series.len() as u32);
                self.series.push((node, s));
            }
        }
    }

    /// That series (empty if not recorded), with buckets up to the one holding the last
    /// time passed to the model (so every recorded node's series has the same length).
    /// Its sum equals `bytes_sent(node)` exactly when none of the node's flows is in
    /// flight; while some are, it also holds the whole bytes they have put on the wire.
    pub fn egress_series(&self, node: NodeIx) -> Vec<u64> {
        match self.series_of[node.0 as usize] {
            Some(i) => {
                let mut s = self.series[i as usize].1.clone();
                s.advance_to(self.now_ns);
                s.snapshot()
            }
            None => Vec::new(),
        }
    }

    /// Bytes of completed flows (plus delivered part of cancelled ones) sent by node.
    pub fn bytes_sent(&self, node: NodeIx) -> u64 {
        self.sent_bytes[node.0 as usize]
    }

    /// Bytes of completed flows (plus delivered part of cancelled ones) received by node.
    pub fn bytes_received(&self, node: NodeIx) -> u64 {
        self.received_bytes[node.0 as usize]
    }

    /// Start a flow at `now` (now must be >= the last time passed to advance). `tag` is
    /// opaque to the model. A 0-byte flow completes at now (reported by the next advance).
    pub fn start(&mut self, now: TimeNs, src: NodeIx, dst: NodeIx, bytes: u64, tag: u64) -> FlowId {
        self.catch_up(now);
        let id = FlowId(self.next_flow_id);
        self.next_flow_id += 1;
        let flow = Flow::new(id, tag, src, dst, bytes, self.now_ns);
        if bytes == 0 {
            let slot = self.table.insert(flow, self.now_ns);
            self.done_heap.push(Reverse((self.now_ns, id, slot)));
            self.slot_of.insert(id, slot);
        } else {
            let charge = self.cpu_charge(&flow);
            let slot = self.table.insert_charged(flow, NOT_SCHEDULED, charge);
            self.table.attach(slot);
            self.solver.forget(slot);
            self.slot_of.insert(id, slot);
            self.schedule_solve(self.now_ns);
        }
        id
    }

    /// Stop a flow; returns the bytes it had delivered (floor), or None if unknown/already
    /// completed (including completed at or before `now` but not yet reported).
    pub fn cancel(&mut self, now: TimeNs, flow: FlowId) -> Option<u64> {
        self.catch_up(now);
        let slot = self.slot_of.remove(&flow)?;
        let f = &self.table.slots[slot as usize];
        let remaining_bytes = f.remaining_bytes_at(self.now_ns);
        let delivered_f = (f.bytes as f64 - remaining_bytes).clamp(0.0, f.bytes as f64);
        let delivered = (delivered_f.floor() as u64).min(f.bytes);
        self.finish(slot, delivered_f, delivered);
        self.drop_stale_heap_top();
        Some(delivered)
    }

    /// The earliest time something happens inside the model (a scheduled re-solve or a
    /// flow completion); None when idle. It may equal the current time (a change in exact
    /// mode, or on a quantum boundary), never less.
    pub fn next_event_ns(&self) -> Option<TimeNs> {
        let done = self.done_heap.peek().map(|r| r.0 .0);
        [done, self.later_ns, self.solve_at_ns].into_iter().flatten().min()
    }

    /// Move the model to `now` (callers pass next_event_ns() or any earlier time >= last
    /// now): integrate progress, run the re-solve if due, and push every flow that
    /// completed at or before `now` onto `out`, ordered by (done_ns, flow id).
    pub fn advance(&mut self, now: TimeNs, out: &mut Vec<Completion>) {
        out.append(&mut self.pending_out);
        self.run_until(now, out);
    }

    pub fn active_flows(&self) -> usize {
        self.table.live()
    }

    /// Number of re-solves run so far (reported as a speed figure).
    pub fn solves(&self) -> u64 {
        self.solver.solves()
    }

    /// Current rate of a flow in bits per second (for tests and debugging).
    pub fn rate_bps(&self, flow: FlowId) -> Option<f64> {
        let slot = *self.slot_of.get(&flow)?;
        Some(self.table.slots[slot as usize].rate_bytes_per_ns * 8e9)
    }

    fn catch_up(&mut self, now: TimeNs) {
        let mut buf = std::mem::take(&mut self.pending_out);
        self.run_until(now, &mut buf);
        self.pending_out = buf;
    }

    fn schedule_solve(&mut self, now: TimeNs) {
        let at = if self.quantum_ns == 0 { now } else { now.div_ceil(self.quantum_ns).saturating_mul(self.quantum_ns) };
        self.solve_at_ns = Some(self.solve_at_ns.map_or(at, |s| s.min(at)));
    }

    /// Cancelled flows leave their heap entries behind; keeping the top live lets
    /// `next_event_ns` take `&self` and stay exact.
    fn drop_stale_heap_top(&mut self) {
        while let Some(&Reverse((done_ns, id, slot))) = self.done_heap.peek() {
            if self.table.done_ns[slot as usize] == done_ns && self.table.slots[slot as usize].id == id {
                break;
            }
            self.done_heap.pop();
        }
    }

    fn run_until(&mut self, now: TimeNs, out: &mut Vec<Completion>) {
        debug_assert!(now >= self.now_ns, "time went backwards: {now} < {}", self.now_ns);
        let now = now.max(self.now_ns);
        while let Some(t) = self.next_event_ns().filter(|&t| t <= now) {
            self.now_ns = t;
            if self.later_ns.is_some_and(|l| l <= t) {
                self.refill_done_heap();
            }
            let first = out.len();
            while let Some(&Reverse((done_ns, _, slot))) = self.done_heap.peek() {
                if done_ns != t {
                    break;
                }
                self.done_heap.pop();
                self.complete(slot, out);
                self.drop_stale_heap_top();
            }
            // Completions above may have scheduled a solve at t (exact mode).
            if self.solve_at_ns == Some(t) {
                self.solve();
            }
            out[first..].sort_by_key(|c| c.flow);
        }
        self.now_ns = now;
    }

    fn complete(&mut self, slot: u32, out: &mut Vec<Completion>) {
        let f = &self.table.slots[slot as usize];
        let remaining_bytes = f.remaining_bytes_at(self.now_ns);
        let done = Completion {
            flow: f.id,
            tag: f.tag,
            src: f.src,
            dst: f.dst,
            bytes: f.bytes,
            started_ns: f.started_ns,
            done_ns: self.now_ns,
        };
        self.slot_of.remove(&done.flow);
        self.finish(slot, done.bytes as f64 - remaining_bytes, done.bytes);
        out.push(done);
    }

    /// Credits a flow that ends now (completed or cancelled) and frees its capacity.
    fn finish(&mut self, slot: u32, delivered_bytes_f: f64, credited_bytes: u64) {
        let f = &self.table.slots[slot as usize];
        let (src, dst, rate, attached) = (f.src, f.dst, f.rate_bytes_per_ns, f.attached);
        self.sent_bytes[src.0 as usize] += credited_bytes;
        self.received_bytes[dst.0 as usize] += credited_bytes;
        self.table.remove(slot);
        if let Some(i) = self.series_of[src.0 as usize] {
            let idle = self.table.members[upload_of(src) as usize].is_empty();
            let s = &mut self.series[i as usize].1;
            s.advance_to(self.now_ns);
            s.flow_ended(rate, delivered_bytes_f, credited_bytes, idle);
        }
        // Freed capacity matters only to flows sharing a constraint with this one.
        let [up, down] = self.table.slots[slot as usize].cons;
        let charge = &self.table.cpu[slot as usize];
        let pools_used = charge.pools.iter().any(|&(p, _)| p != NO_POOL && !self.table.members[p as usize].is_empty());
        if attached
            && (pools_used
                || !(self.table.members[up as usize].is_empty() && self.table.members[down as usize].is_empty()))
        {
            self.schedule_solve(self.now_ns);
        }
    }

    /// Rebuilds `done_heap` from the flows due within `DONE_HORIZON_QUANTA` quanta of now
    /// and notes the earliest of the others.
    fn refill_done_heap(&mut self) {
        self.horizon_ns = self.now_ns.saturating_add(self.quantum_ns.saturating_mul(DONE_HORIZON_QUANTA));
        self.later_ns = file_due(&mut self.table, None, self.now_ns, self.horizon_ns, &mut self.done_heap);
    }

    fn solve(&mut self) {
        let t = self.now_ns;
        for (_, s) in &mut self.series {
            s.advance_to(t);
        }
        let solved = self.solver.solve(&self.caps_bytes_per_ns, self.table.users(), self.table.slots.len());
        self.solve_at_ns = None;

        // New rates and completion times of the flows whose rate changed, and the done heap.
        self.horizon_ns = t.saturating_add(self.quantum_ns.saturating_mul(DONE_HORIZON_QUANTA));
        self.later_ns = file_due(&mut self.table, Some(&solved), t, self.horizon_ns, &mut self.done_heap);

        for (node, s) in &mut self.series {
            s.rate_bytes_per_ns = self.table.members[upload_of(*node) as usize]
                .iter()
                .map(|m| self.table.slots[m.slot as usize].rate_bytes_per_ns)
                .sum();
        }
    }
}
