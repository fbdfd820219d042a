//! Default policy: per stripe, the peers of a task that could take a child in that stripe
//! right now (fed there, below `stripe_fanout`, serving, host with a free upload). With
//! this index a parent is drawn in O(1) expected instead of scanning the task's peers,
//! and a stripe with an empty index is known to have nothing to offer its waiters.
//!
//! Only the child-independent part of eligibility is indexed; blocked parents, the same
//! host and cycles are checked on the drawn candidates (`select::default_stripe`).
//! Lists are Vecs with swap-remove, so their order (and every draw from them) depends
//! only on the sequence of updates: deterministic.

use super::ids::PeerId;
use std::collections::BTreeMap;

const ABSENT: u32 = u32::MAX;

#[derive(Debug, Default, Clone)]
pub struct FedIndex {
    lists: Vec<Vec<PeerId>>,
    /// Per peer, its position in each stripe's list (`ABSENT`: not in it).
    pos: BTreeMap<PeerId, Vec<u32>>,
}

impl FedIndex {
    pub fn new(stripes: usize) -> FedIndex {
        FedIndex { lists: vec![Vec::new(); stripes], pos: BTreeMap::new() }
    }

    pub fn len(&self, stripe: usize) -> usize {
        self.lists[stripe].len()
    }

    pub fn is_empty(&self, stripe: usize) -> bool {
        self.lists[stripe].is_empty()
    }

    pub fn list(&self, stripe: usize) -> &[PeerId] {
        &self.lists[stripe]
    }

    pub fn contains(&self, peer: PeerId, stripe: usize) -> bool {
        self.pos.get(&peer).is_some_and(|p| p[stripe] != ABSENT)
    }

    /// Puts the peer in or out of the stripe's list; true when it was just put in.
    pub fn set(&mut self, peer: PeerId, stripe: usize, member: bool) -> bool {
        let stripes = self.lists.len();
        let pos = match self.pos.get_mut(&peer) {
            Some(p) => p,
            None if !member => return false,
            None => self.pos.entry(peer).or_insert_with(|| vec![ABSENT; stripes]),
        };
        let list = &mut self.lists[stripe];
        match (pos[stripe] != ABSENT, member) {
            (false, true) => {
                pos[stripe] = list.len() as u32;
                list.push(peer);
                true
            }
            (true, false) => {
                let i = pos[stripe] as usize;
                pos[stripe] = ABSENT;
                list.swap_remove(i);
                if let Some(&moved) = list.get(i) {
                    self.pos.get_mut(&moved).expect("listed peers have positions")[stripe] = i as u32;
                }
                false
            }
            _ => false,
        }
    }

    /// Every listed peer sits where its position says, and no position is dangling.
    pub fn is_consistent(&self) -> bool {
        let listed: usize = self.lists.iter().map(Vec::len).sum();
        let positioned: usize = self.pos.values().map(|p| p.iter().filter(|i| **i != ABSENT).count()).sum();
        listed == positioned
            && self
                .lists
                .iter()
                .enumerate()
                .all(|(s, l)| l.iter().enumerate().all(|(i, q)| self.pos.get(q).is_some_and(|p| p[s] == i as u32)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Random puts and takes leave the lists equal to a model set, positions exact.
        #[test]
        fn matches_a_model_set(ops in proptest::collection::vec((0u32..30, 0usize..3, any::<bool>()), 0..300)) {
            let mut f = FedIndex::new(3);
            let mut model = std::collections::BTreeSet::new();
            for (peer, stripe, member) in ops {
                let joined = f.set(PeerId(peer), stripe, member);
                let was = if member { !model.insert((stripe, peer)) } else { !model.remove(&(stripe, peer)) };
                prop_assert_eq!(joined, member && !was);
                prop_assert!(f.is_consistent());
            }
            for s in 0..3 {
                let mut listed: Vec<u32> = f.list(s).iter().map(|p| p.0).collect();
                listed.sort();
                let expected: Vec<u32> = model.iter().filter(|(x, _)| *x == s).map(|(_, p)| *p).collect();
                prop_assert_eq!(listed, expected);
            }
        }
    }
}
