//! Flow storage: a slab of flows plus, per constraint, the list of flows crossing it.
//!
//! Constraint `2n` is node n's upload, `2n + 1` its download; CPU pools, when a scenario
//! models CPU, come after every node's two. Each flow stores its position in every member
//! list it is on, so detaching is a swap-remove per list, O(1).

use super::{FlowId, NodeIx, TimeNs};

/// `done_ns` of a free slot, or of a flow with no known completion time (rate 0 since its
/// start).
pub(super) const NOT_SCHEDULED: TimeNs = TimeNs::MAX;

pub(super) fn upload_of(node: NodeIx) -> u32 {
    node.0 * 2
}

pub(super) fn download_of(node: NodeIx) -> u32 {
    node.0 * 2 + 1
}

#[derive(Clone, Debug)]
pub(super) struct Flow {
    pub live: bool,
    pub id: FlowId,
    pub tag: u64,
    pub src: NodeIx,
    pub dst: NodeIx,
    pub bytes: u64,
    pub started_ns: TimeNs,
    /// Bytes left as of `ref_ns`, the last time the rate changed; progress since then is
    /// `rate * (t - ref_ns)`.
    pub remaining_bytes: f64,
    pub ref_ns: TimeNs,
    pub rate_bytes_per_ns: f64,
    /// [src upload, dst download].
    pub cons: [u32; 2],
    /// Index in each constraint's member list, valid while `attached`.
    pub pos: [u32; 2],
    /// Zero-byte flows never attach: they take no capacity.
    pub attached: bool,
}

impl Flow {
    pub fn new(id: FlowId, tag: u64, src: NodeIx, dst: NodeIx, bytes: u64, now_ns: TimeNs) -> Self {
        Flow {
            live: true,
            id,
            tag,
            src,
            dst,
            bytes,
            started_ns: now_ns,
            remaining_bytes: bytes as f64,
            ref_ns: now_ns,
            rate_bytes_per_ns: 0.0,
            cons: [upload_of(src), download_of(dst)],
            pos: [u32::MAX; 2],
            attached: false,
        }
    }

    /// Bytes left at `t_ns` (not before `ref_ns`) at the current rate.
    pub fn remaining_bytes_at(&self, t_ns: TimeNs) -> f64 {
        self.remaining_bytes - self.rate_bytes_per_ns * (t_ns - self.ref_ns) as f64
    }
}

/// The pool entry of a `CpuCharge` that is not used.
pub(super) const NO_POOL: u32 = u32::MAX;

/// What a flow costs the CPU pools of its ends: per pool, CPU-ns per byte it moves. A flow
/// between two nodes of one pool (an emulation on one machine) has one entry with both
/// ends' costs; a node whose CPU is not modelled adds none. Kept per flow slot beside the
/// flows, so that the solver reads it without touching the `Flow` records.
#[derive(Copy, Clone, Debug)]
pub(super) struct CpuCharge {
    /// [src upload, dst download], as `Flow::cons`: a flow frozen at a pool charges both.
    pub links: [u32; 2],
    /// (pool constraint, CPU-ns per byte), `NO_POOL` when unused; entries differ.
    pub pools: [(u32, f64); 2],
    /// Index in each pool's member list, valid while attached.
    pub pos: [u32; 2],
}

impl CpuCharge {
    pub const NONE: CpuCharge = CpuCharge { links: [0; 2], pools: [(NO_POOL, 0.0); 2], pos: [u32::MAX; 2] };

    /// The charge of a flow from a node charging `src` to one charging `dst`, each
    /// (pool constraint, CPU-ns per byte) or `NO_POOL`; zero costs are left out.
    pub fn new(links: [u32; 2], src: (u32, f64), dst: (u32, f64)) -> CpuCharge {
        let mut pools = [(NO_POOL, 0.0); 2];
        let mut n = 0;
        for (pool, ns_per_byte) in [src, dst] {
            if pool == NO_POOL || ns_per_byte <= 0.0 {
                continue;
            }
            match pools[..n].iter_mut().find(|(p, _)| *p == pool) {
                Some(entry) => entry.1 += ns_per_byte,
                None => {
                    pools[n] = (pool, ns_per_byte);
                    n += 1;
                }
            }
        }
        CpuCharge { links, pools, pos: [u32::MAX; 2] }
    }
}

/// A flow as seen from one of its constraints: the solver needs nothing else, so it
/// never touches the (much larger) `Flow` records.
#[derive(Copy, Clone, Debug)]
pub(super) struct Member {
    pub slot: u32,
    /// On a link: the flow's other link. On a CPU pool: which entry of the flow's
    /// `CpuCharge::pools` this pool is.
    pub other: u32,
}

#[derive(Default)]
pub(super) struct FlowTable {
    pub slots: Vec<Flow>,
    /// Per slot, the flow's completion time (`NOT_SCHEDULED` for a free slot). Apart from
    /// the records so that filing the flows due soon scans 8 bytes per flow, not a `Flow`.
    pub done_ns: Vec<TimeNs>,
    /// Per constraint, the slots of the attached flows crossing it (unordered).
    pub members: Vec<Vec<Member>>,
    /// Per slot, what its flow costs the CPU pools (`CpuCharge::NONE` without pools).
    pub cpu: Vec<CpuCharge>,
    /// The first CPU pool's constraint (= the number of link constraints).
    pub first_pool: u32,
    free: Vec<u32>,
    live: usize,
}

impl FlowTable {
    pub fn add_node(&mut self) {
        assert!(self.pools() == 0, "nodes come before CPU pools");
        self.members.push(Vec::new());
        self.members.push(Vec::new());
        self.first_pool = self.members.len() as u32;
    }

    /// A new CPU pool's constraint.
    pub fn add_pool(&mut self) -> u32 {
        self.members.push(Vec::new());
        (self.members.len() - 1) as u32
    }

    /// What the solver reads.
    pub fn users(&self) -> super::solver::Users<'_> {
        super::solver::Users { members: &self.members, cpu: &self.cpu, first_pool: self.first_pool }
    }

    pub fn pools(&self) -> usize {
        self.members.len() - self.first_pool as usize
    }

    pub fn live(&self) -> usize {
        self.live
    }

    pub fn insert(&mut self, flow: Flow, done_ns: TimeNs) -> u32 {
        self.insert_charged(flow, done_ns, CpuCharge::NONE)
    }

    pub fn insert_charged(&mut self, flow: Flow, done_ns: TimeNs, cpu: CpuCharge) -> u32 {
        self.live += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = flow;
                self.done_ns[slot as usize] = done_ns;
                self.cpu[slot as usize] = cpu;
                slot
            }
            None => {
                self.slots.push(flow);
                self.done_ns.push(done_ns);
                self.cpu.push(cpu);
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub fn attach(&mut self, slot: u32) {
        let flow = &mut self.slots[slot as usize];
        debug_assert!(!flow.attached);
        for k in 0..2 {
            let list = &mut self.members[flow.cons[k] as usize];
            flow.pos[k] = list.len() as u32;
            list.push(Member { slot, other: flow.cons[1 - k] });
        }
        flow.attached = true;
        let charge = &mut self.cpu[slot as usize];
        for k in 0..2 {
            let pool = charge.pools[k].0;
            if pool != NO_POOL {
                let list = &mut self.members[pool as usize];
                charge.pos[k] = list.len() as u32;
                list.push(Member { slot, other: k as u32 });
            }
        }
    }

    /// Detaches (if attached) and frees the slot.
    pub fn remove(&mut self, slot: u32) {
        if self.slots[slot as usize].attached {
            self.detach(slot);
        }
        let flow = &mut self.slots[slot as usize];
        debug_assert!(flow.live);
        flow.live = false;
        self.done_ns[slot as usize] = NOT_SCHEDULED;
        self.live -= 1;
        self.free.push(slot);
    }

    fn detach(&mut self, slot: u32) {
        let (cons, pos) = {
            let f = &self.slots[slot as usize];
            (f.cons, f.pos)
        };
        for k in 0..2 {
            let list = &mut self.members[cons[k] as usize];
            let p = pos[k] as usize;
            list.swap_remove(p);
            if p < list.len() {
                let moved = &mut self.slots[list[p].slot as usize];
                // A flow's two constraints always differ (upload vs download), so this is unambiguous.
                let km = if moved.cons[0] == cons[k] { 0 } else { 1 };
                moved.pos[km] = p as u32;
            }
        }
        let charge = self.cpu[slot as usize];
        for k in 0..2 {
            let pool = charge.pools[k].0;
            if pool == NO_POOL {
                continue;
            }
            let list = &mut self.members[pool as usize];
            let p = charge.pos[k] as usize;
            list.swap_remove(p);
            if p < list.len() {
                let m = list[p];
                self.cpu[m.slot as usize].pos[m.other as usize] = p as u32;
            }
        }
        self.slots[slot as usize].attached = false;
    }
}
