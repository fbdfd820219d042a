//! Max-min fair rates by progressive filling, with a heap of constraint fair shares.
//!
//! Raising every unfrozen flow together until a constraint saturates is the same as
//! repeatedly taking the constraint with the smallest share `remaining / unfrozen`,
//! freezing its unfrozen flows at that share, and charging each frozen flow to its other
//! constraint: about O((F + R) log R) per solve instead of O(levels * (F + R)).
//!
//! Charging a flow frozen at the minimum share can only raise the other constraint's
//! share, so heap keys are lower bounds: a popped constraint whose share has grown is
//! re-keyed in place and tried again. This touches the heap about once per constraint
//! instead of once per flow: 1.5x faster than an indexed heap re-keyed on every charge,
//! 3x faster than pushing a fresh entry per charge (500 nodes / 4000 flows).
//!
//! CPU pools are constraints whose members are weighted: a flow at rate r uses w r of its
//! pool (w = the CPU-ns per byte it costs there), so a pool's share is its remaining
//! capacity over the weights of its unfrozen flows, and a flow frozen anywhere charges
//! every constraint it is on. Links weigh 1, which keeps every figure of a scenario
//! without pools bit for bit what it was. The keys stay lower bounds: a flow frozen at
//! the minimum share t charges a constraint of share s >= t w t of its remaining R and w
//! of its weight W, and (R - w t) / (W - w) >= t because R >= t W.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;

use super::flows::{CpuCharge, Member, NO_POOL};

/// Heap key of a constraint's share: the share's bits above the constraint index.
/// Non-negative f64 bit patterns sort like the values, which gives a total order; the
/// index breaks ties so the result is deterministic. One u128 compares in two
/// instructions where a (u64, u32) tuple branches on its first field (the heap's sifting
/// was a fifth of a solve).
fn share_key(share_bytes_per_ns: f64, c: u32) -> u128 {
    debug_assert!(share_bytes_per_ns >= 0.0);
    (u128::from(share_bytes_per_ns.to_bits()) << 32) | u128::from(c)
}

fn key_cons(key: u128) -> u32 {
    key as u32
}

/// Working state of one constraint. A CPU pool's capacity and use are in CPU-ns per ns,
/// its weights in CPU-ns per byte, so that its share is in bytes per ns like a link's.
/// A link's weight is its count of unfrozen flows, exact in an f64: it is 0 exactly when
/// they are all frozen. A pool's sum of costs is not, so pools count their flows apart
/// (`Solver::pool_unfrozen`), which keeps this at 16 bytes for the link-only solves.
#[derive(Copy, Clone, Default)]
struct ConsState {
    remaining_bytes_per_ns: f64,
    /// Sum of the unfrozen flows' weights.
    unfrozen_weight: f64,
}

impl ConsState {
    fn share(&self) -> f64 {
        self.remaining_bytes_per_ns.max(0.0) / self.unfrozen_weight
    }

    fn charge(&mut self, rate_bytes_per_ns: f64, weight: f64) {
        self.remaining_bytes_per_ns -= rate_bytes_per_ns * weight;
        self.unfrozen_weight -= weight;
    }
}

/// The flows' capacity users: per constraint its members, per slot its CPU charge, and
/// where the pools begin (constraints `first_pool..` are pools).
pub(super) struct Users<'a> {
    pub members: &'a [Vec<Member>],
    pub cpu: &'a [CpuCharge],
    pub first_pool: u32,
}

/// A flow slot's rate as of the last solve that froze it: NaN for a slot no solve has
/// frozen since its flow began.
const FRESH: f64 = f64::NAN;

/// Result of a solve: the slots whose rate it changed, and every slot's rate.
pub(super) struct Solved<'a> {
    pub changed: &'a [u32],
    slots: &'a [f64],
}

impl Solved<'_> {
    pub fn rate_bytes_per_ns(&self, slot: u32) -> f64 {
        self.slots[slot as usize]
    }
}

#[derive(Default)]
pub(super) struct Solver {
    cons: Vec<ConsState>,
    /// Per flow slot, kept across solves so that a solve can say which rates it changed
    /// (most flows keep theirs: 73 % at tensorflow-500), and the caller files only those.
    slots: Vec<f64>,
    /// Per flow slot, a bit: frozen in the current solve. Apart from the rates because
    /// every flow is met twice (once per constraint) and the second meeting needs only
    /// this bit: 32 KB for 250,000 flows stays in cache where the rates do not.
    frozen: Vec<u64>,
    changed: Vec<u32>,
    /// Solves run so far.
    solves: u64,
    heap: BinaryHeap<Reverse<u128>>,
    /// Per CPU pool, its unfrozen flows.
    pool_unfrozen: Vec<u32>,
}

impl Solver {
    pub fn solves(&self) -> u64 {
        self.solves
    }

    /// A new flow took `slot`: its first solve counts its rate as changed, whatever the
    /// slot's previous flow had.
    pub fn forget(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = FRESH;
        }
    }

    /// Max-min fair rate of every flow in `members` (per constraint), over `n_slots` flow
    /// slots. Slots of no member keep whatever they had; their rates mean nothing.
    pub fn solve(&mut self, caps_bytes_per_ns: &[f64], users: Users, n_slots: usize) -> Solved<'_> {
        let Users { members, cpu, first_pool } = users;
        self.cons.clear();
        self.cons.extend(
            caps_bytes_per_ns
                .iter()
                .zip(members)
                .map(|(&cap, m)| ConsState { remaining_bytes_per_ns: cap, unfrozen_weight: m.len() as f64 }),
        );
        // Costs are > 0 (`CpuCharge::new` leaves zeros out), so a pool's weight is > 0
        // exactly when it has members, as a link's.
        self.pool_unfrozen.clear();
        for (c, k) in self.cons.iter_mut().enumerate().skip(first_pool as usize) {
            k.unfrozen_weight = members[c].iter().map(|m| cpu[m.slot as usize].pools[m.other as usize].1).sum();
            self.pool_unfrozen.push(members[c].len() as u32);
        }
        let pool_unfrozen = &mut self.pool_unfrozen;
        let has_pools = (first_pool as usize) < members.len();
        self.slots.resize(n_slots, FRESH);
        self.frozen.clear();
        self.frozen.resize(n_slots.div_ceil(64), 0);
        let frozen = &mut self.frozen;
        self.changed.clear();
        self.solves += 1;

        let cons = &mut self.cons;
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.clear();
        entries.extend(
            cons.iter()
                .enumerate()
                .filter(|(_, k)| k.unfrozen_weight > 0.0)
                .map(|(c, k)| Reverse(share_key(k.share(), c as u32))),
        );
        let mut heap = BinaryHeap::from(entries);

        while let Some(mut top) = heap.peek_mut() {
            let Reverse(key) = *top;
            let c = key_cons(key);
            let k = cons[c as usize];
            let all_frozen =
                if c < first_pool { k.unfrozen_weight == 0.0 } else { pool_unfrozen[(c - first_pool) as usize] == 0 };
            if all_frozen {
                PeekMut::pop(top); // all its flows were frozen through their other constraint
                continue;
            }
            let share = k.share();
            let current = share_key(share, c);
            if current > key {
                *top = Reverse(current); // sifts down when `top` drops
                continue;
            }
            PeekMut::pop(top);
            for m in &members[c as usize] {
                let (word, bit) = ((m.slot / 64) as usize, 1u64 << (m.slot % 64));
                if frozen[word] & bit != 0 {
                    continue;
                }
                frozen[word] |= bit;
                let s = &mut self.slots[m.slot as usize];
                // NaN (a fresh slot) differs from every share.
                if *s != share {
                    *s = share;
                    self.changed.push(m.slot);
                }
                if c < first_pool {
                    cons[m.other as usize].charge(share, 1.0);
                    if has_pools {
                        for &(pool, w) in &cpu[m.slot as usize].pools {
                            if pool != NO_POOL {
                                cons[pool as usize].charge(share, w);
                                pool_unfrozen[(pool - first_pool) as usize] -= 1;
                            }
                        }
                    }
                } else {
                    let charge = &cpu[m.slot as usize];
                    for link in charge.links {
                        cons[link as usize].charge(share, 1.0);
                    }
                    for &(pool, w) in &charge.pools {
                        if pool != NO_POOL && pool != c {
                            cons[pool as usize].charge(share, w);
                            pool_unfrozen[(pool - first_pool) as usize] -= 1;
                        }
                    }
                }
            }
            cons[c as usize].unfrozen_weight = 0.0;
            if c >= first_pool {
                pool_unfrozen[(c - first_pool) as usize] = 0;
            }
        }
        self.heap = heap;
        Solved { changed: &self.changed, slots: &self.slots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::flows::{Flow, FlowTable};
    use crate::net::{FlowId, NodeIx};

    fn table(nodes: u32, flows: &[(u32, u32)]) -> FlowTable {
        let mut t = FlowTable::default();
        for _ in 0..nodes {
            t.add_node();
        }
        for (i, &(s, d)) in flows.iter().enumerate() {
            let slot = t.insert(Flow::new(FlowId(i as u64), 0, NodeIx(s), NodeIx(d), 1, 0), 0);
            t.attach(slot);
        }
        t
    }

    fn rates(solved: &Solved, n: u32) -> Vec<f64> {
        (0..n).map(|slot| solved.rate_bytes_per_ns(slot)).collect()
    }

    #[test]
    fn chain_of_bottlenecks_gets_successive_levels() {
        // Node 0 uploads 12 to nodes 1..=3; downloads 1, 4, 100.
        // Level 1: node 1 freezes at 1. Level 2: node 0 has 11 for 2 flows = 5.5 but node 2
        // caps at 4. Level 3: node 3's flow gets the rest of node 0, 7.
        let t = table(4, &[(0, 1), (0, 2), (0, 3)]);
        let caps = [12.0, 1e9, 1e9, 1.0, 1e9, 4.0, 1e9, 100.0];
        let mut solver = Solver::default();
        let solved = solver.solve(&caps, t.users(), t.slots.len());
        assert_eq!(rates(&solved, 3), [1.0, 4.0, 7.0]);
        let mut changed = solved.changed.to_vec();
        changed.sort();
        assert_eq!(changed, [0, 1, 2], "a first solve changes every rate");
    }

    #[test]
    fn solver_is_reusable_across_changing_tables() {
        let mut solver = Solver::default();
        let caps = [10.0, 10.0, 10.0, 10.0];
        let mut t = table(2, &[(0, 1), (0, 1)]);
        assert_eq!(rates(&solver.solve(&caps, t.users(), t.slots.len()), 2), [5.0, 5.0]);
        t.remove(0);
        let solved = solver.solve(&caps, t.users(), t.slots.len());
        assert_eq!(solved.rate_bytes_per_ns(1), 10.0);
        assert_eq!(solved.changed, [1]);
    }

    #[test]
    fn only_changed_rates_are_listed_and_a_reused_slot_counts_as_changed() {
        // Node 0 -> 1 and node 2 -> 3 share nothing: changing one pair leaves the other.
        let caps = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0];
        let mut t = table(4, &[(0, 1), (2, 3), (2, 3)]);
        let mut solver = Solver::default();
        assert_eq!(solver.solve(&caps, t.users(), t.slots.len()).changed.len(), 3);
        assert!(solver.solve(&caps, t.users(), t.slots.len()).changed.is_empty(), "nothing moved");
        t.remove(2);
        assert_eq!(solver.solve(&caps, t.users(), t.slots.len()).changed, [1]);
        // A new flow in the freed slot at the rate its predecessor had is still listed.
        let slot = t.insert(Flow::new(FlowId(9), 0, NodeIx(0), NodeIx(3), 1, 0), 0);
        t.attach(slot);
        solver.forget(slot);
        let solved = solver.solve(&caps, t.users(), t.slots.len());
        assert_eq!(rates(&solved, 3), [5.0, 5.0, 5.0]);
        let mut changed = solved.changed.to_vec();
        changed.sort();
        assert_eq!(changed, [0, 1, 2]);
    }
}
