//! The per-task peer DAG: edges go parent -> child, and an edge that would close a cycle is
//! refused, so pieces can never circulate back to a peer that is their source.

use super::ids::PeerId;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
struct Vertex {
    parents: Vec<PeerId>,
    children: Vec<PeerId>,
}

#[derive(Debug, Default, Clone)]
pub struct Dag {
    vertices: BTreeMap<PeerId, Vertex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeRefusal {
    SelfLoop,
    UnknownVertex,
    Exists,
    Cycle,
}

impl Dag {
    pub fn add_vertex(&mut self, peer: PeerId) {
        self.vertices.entry(peer).or_default();
    }
    pub fn contains(&self, peer: PeerId) -> bool {
        self.vertices.contains_key(&peer)
    }
    pub fn len(&self) -> usize {
        self.vertices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }
    pub fn parents(&self, peer: PeerId) -> &[PeerId] {
        self.vertices.get(&peer).map(|v| v.parents.as_slice()).unwrap_or(&[])
    }
    pub fn children(&self, peer: PeerId) -> &[PeerId] {
        self.vertices.get(&peer).map(|v| v.children.as_slice()).unwrap_or(&[])
    }
    pub fn in_degree(&self, peer: PeerId) -> usize {
        self.parents(peer).len()
    }

    /// Why `parent -> child` may not be added, if it may not. The cycle test walks the
    /// parent's ancestors: in the default policy's stripe trees that is the path to the
    /// root, O(depth), where the child's descendants may be a whole subtree.
    pub fn check_edge(&self, parent: PeerId, child: PeerId) -> Result<(), EdgeRefusal> {
        if parent == child {
            return Err(EdgeRefusal::SelfLoop);
        }
        let (Some(_), Some(c)) = (self.vertices.get(&parent), self.vertices.get(&child)) else {
            return Err(EdgeRefusal::UnknownVertex);
        };
        if c.parents.contains(&parent) {
            return Err(EdgeRefusal::Exists);
        }
        if self.is_ancestor(child, parent) {
            return Err(EdgeRefusal::Cycle);
        }
        Ok(())
    }

    /// `ancestor` is `peer` or reachable from it along parent edges: an edge from `peer`
    /// into `ancestor` would close a cycle.
    pub fn is_ancestor(&self, ancestor: PeerId, peer: PeerId) -> bool {
        if peer == ancestor {
            return true;
        }
        // A peer without children is nobody's ancestor (a newly registered one, say).
        if self.children(ancestor).is_empty() {
            return false;
        }
        // A single-parent chain (every stripe tree) needs no bookkeeping.
        let mut v = peer;
        loop {
            match self.parents(v) {
                [] => return false,
                [p] if *p == ancestor => return true,
                [p] => v = *p,
                _ => break,
            }
        }
        let mut stack = vec![v];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(v) = stack.pop() {
            for &p in self.parents(v) {
                if p == ancestor {
                    return true;
                }
                // Several parents only in Dragonfly's DAG: there paths may meet again.
                if seen.insert(p) {
                    stack.push(p);
                }
            }
        }
        false
    }

    /// `peer` and every peer reachable from it along child edges: the peers that may not
    /// become its parents. One walk serves a whole selection round.
    pub fn descendants(&self, peer: PeerId) -> std::collections::BTreeSet<PeerId> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![peer];
        while let Some(v) = stack.pop() {
            if seen.insert(v) {
                stack.extend(self.children(v).iter().copied());
            }
        }
        seen
    }

    pub fn add_edge(&mut self, parent: PeerId, child: PeerId) -> Result<(), EdgeRefusal> {
        self.check_edge(parent, child)?;
        self.vertices.get_mut(&parent).expect("checked").children.push(child);
        self.vertices.get_mut(&child).expect("checked").parents.push(parent);
        Ok(())
    }

    /// Adds an edge without the cycle check, so tests can build a broken DAG.
    #[cfg(test)]
    pub(crate) fn force_edge_for_tests(&mut self, parent: PeerId, child: PeerId) {
        self.vertices.get_mut(&parent).expect("known parent").children.push(child);
        self.vertices.get_mut(&child).expect("known child").parents.push(parent);
    }

    /// Removes every edge into `child`; returns the former parents.
    pub fn remove_in_edges(&mut self, child: PeerId) -> Vec<PeerId> {
        let parents = match self.vertices.get_mut(&child) {
            Some(v) => std::mem::take(&mut v.parents),
            None => return Vec::new(),
        };
        for p in &parents {
            if let Some(v) = self.vertices.get_mut(p) {
                v.children.retain(|c| *c != child);
            }
        }
        parents
    }

    /// Removes one edge; false when it did not exist.
    pub fn remove_edge(&mut self, parent: PeerId, child: PeerId) -> bool {
        let Some(c) = self.vertices.get_mut(&child) else {
            return false;
        };
        let before = c.parents.len();
        c.parents.retain(|p| *p != parent);
        if c.parents.len() == before {
            return false;
        }
        if let Some(v) = self.vertices.get_mut(&parent) {
            v.children.retain(|x| *x != child);
        }
        true
    }

    /// Removes the vertex and all its edges; returns its former children.
    pub fn remove_vertex(&mut self, peer: PeerId) -> Vec<PeerId> {
        self.remove_in_edges(peer);
        let Some(v) = self.vertices.remove(&peer) else {
            return Vec::new();
        };
        for c in &v.children {
            if let Some(cv) = self.vertices.get_mut(c) {
                cv.parents.retain(|p| *p != peer);
            }
        }
        v.children
    }

    /// True when no cycle exists (for assertions and property tests).
    pub fn is_acyclic(&self) -> bool {
        // Kahn's algorithm over in-degrees.
        let mut indeg: BTreeMap<PeerId, usize> = self.vertices.iter().map(|(k, v)| (*k, v.parents.len())).collect();
        let mut ready: Vec<PeerId> = indeg.iter().filter(|(_, d)| **d == 0).map(|(k, _)| *k).collect();
        let mut seen = 0;
        while let Some(v) = ready.pop() {
            seen += 1;
            for c in self.children(v) {
                let d = indeg.get_mut(c).expect("edge to known vertex");
                *d -= 1;
                if *d == 0 {
                    ready.push(*c);
                }
            }
        }
        seen == self.vertices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: u32) -> PeerId {
        PeerId(i)
    }

    #[test]
    fn refuses_self_loop_duplicate_and_cycle() {
        let mut d = Dag::default();
        for i in 0..4 {
            d.add_vertex(p(i));
        }
        assert_eq!(d.add_edge(p(0), p(0)), Err(EdgeRefusal::SelfLoop));
        d.add_edge(p(0), p(1)).unwrap();
        d.add_edge(p(1), p(2)).unwrap();
        d.add_edge(p(2), p(3)).unwrap();
        assert_eq!(d.add_edge(p(0), p(1)), Err(EdgeRefusal::Exists));
        assert_eq!(d.add_edge(p(3), p(0)), Err(EdgeRefusal::Cycle));
        assert_eq!(d.add_edge(p(2), p(1)), Err(EdgeRefusal::Cycle));
        assert_eq!(d.add_edge(p(0), p(9)), Err(EdgeRefusal::UnknownVertex));
        assert!(d.is_acyclic());
        // After removing 1's in-edges, 3 -> 1 would still close 1->2->3->1.
        d.remove_in_edges(p(1));
        assert_eq!(d.add_edge(p(3), p(1)), Err(EdgeRefusal::Cycle));
        assert_eq!(d.remove_vertex(p(2)), vec![p(3)]);
        d.add_edge(p(3), p(1)).unwrap();
        assert!(d.is_acyclic());
    }
}
