//! Default policy: where a stripe tree has room, shallowest first.
//!
//! Every normal peer is an inner node of exactly one stripe of a task, its home stripe
//! (`Peer::home_stripe`); in the other stripes it is a leaf. Per stripe this index holds
//! the inner nodes that are fed there and
//! - `open`: still below `stripes` children in that stripe (a full upload's worth), keyed
//!   (depth, children, peer), so the first entry is the shallowest, least loaded slot;
//! - `pushable`: holding at least one leaf child there, keyed (depth, peer): a newly
//!   arrived inner node may take that leaf's place and adopt the leaf (SplitStream's
//!   push-down), which keeps the inner nodes at the top of the tree whatever the order
//!   in which peers register.
//!
//! BTreeSets of plain keys: iteration order depends only on the keys, so every choice
//! made from them is deterministic.

use super::ids::PeerId;
use std::collections::{BTreeMap, BTreeSet};

/// A peer's place in the index (its home stripe and the keys it is filed under).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeEntry {
    pub stripe: u32,
    /// (depth, children in the home stripe) while below the fan-out.
    pub open: Option<(u16, u32)>,
    /// Depth, while it has a leaf child.
    pub pushable: Option<u16>,
}

#[derive(Debug, Default, Clone)]
pub struct TreeIndex {
    open: Vec<BTreeSet<(u16, u32, PeerId)>>,
    pushable: Vec<BTreeSet<(u16, PeerId)>>,
    entries: BTreeMap<PeerId, TreeEntry>,
}

impl TreeIndex {
    pub fn new(stripes: usize) -> TreeIndex {
        TreeIndex {
            open: vec![BTreeSet::new(); stripes],
            pushable: vec![BTreeSet::new(); stripes],
            entries: BTreeMap::new(),
        }
    }

    /// Files the peer under `entry` (None: out of the index), replacing what it had.
    pub fn set(&mut self, peer: PeerId, entry: Option<TreeEntry>) {
        let entry = entry.filter(|e| e.open.is_some() || e.pushable.is_some());
        if self.entries.get(&peer) == entry.as_ref() {
            return;
        }
        if let Some(old) = self.entries.remove(&peer) {
            let s = old.stripe as usize;
            if let Some((d, c)) = old.open {
                self.open[s].remove(&(d, c, peer));
            }
            if let Some(d) = old.pushable {
                self.pushable[s].remove(&(d, peer));
            }
        }
        if let Some(e) = entry {
            let s = e.stripe as usize;
            if let Some((d, c)) = e.open {
                self.open[s].insert((d, c, peer));
            }
            if let Some(d) = e.pushable {
                self.pushable[s].insert((d, peer));
            }
            self.entries.insert(peer, e);
        }
    }

    /// Inner nodes of the stripe with room, shallowest and least loaded first.
    pub fn open(&self, stripe: usize) -> impl Iterator<Item = (u16, PeerId)> + '_ {
        self.open[stripe].iter().map(|&(d, _, p)| (d, p))
    }

    /// Inner nodes of the stripe with a leaf child, shallowest first.
    pub fn pushable(&self, stripe: usize) -> impl Iterator<Item = (u16, PeerId)> + '_ {
        self.pushable[stripe].iter().copied()
    }

    pub fn entry(&self, peer: PeerId) -> Option<TreeEntry> {
        self.entries.get(&peer).copied()
    }

    /// Every entry is filed exactly under its keys, and nothing else is filed.
    pub fn is_consistent(&self) -> bool {
        let filed: usize =
            self.open.iter().map(BTreeSet::len).sum::<usize>() + self.pushable.iter().map(BTreeSet::len).sum::<usize>();
        let keyed: usize =
            self.entries.values().map(|e| usize::from(e.open.is_some()) + usize::from(e.pushable.is_some())).sum();
        filed == keyed
            && self.entries.iter().all(|(p, e)| {
                let s = e.stripe as usize;
                e.open.is_none_or(|(d, c)| self.open[s].contains(&(d, c, *p)))
                    && e.pushable.is_none_or(|d| self.pushable[s].contains(&(d, *p)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallowest_least_loaded_first_and_updates_replace() {
        let mut t = TreeIndex::new(2);
        let e = |open, pushable| Some(TreeEntry { stripe: 1, open, pushable });
        t.set(PeerId(1), e(Some((2, 0)), None));
        t.set(PeerId(2), e(Some((1, 5)), Some(1)));
        t.set(PeerId(3), e(Some((1, 3)), None));
        assert_eq!(t.open(1).map(|x| x.1).collect::<Vec<_>>(), [PeerId(3), PeerId(2), PeerId(1)]);
        assert_eq!(t.pushable(1).collect::<Vec<_>>(), [(1, PeerId(2))]);
        t.set(PeerId(3), e(None, Some(1)));
        assert_eq!(t.open(1).map(|x| x.1).collect::<Vec<_>>(), [PeerId(2), PeerId(1)]);
        assert_eq!(t.pushable(1).count(), 2);
        t.set(PeerId(2), None);
        assert_eq!(t.entry(PeerId(2)), None);
        assert_eq!(t.open(0).count(), 0);
        assert!(t.is_consistent());
    }
}
