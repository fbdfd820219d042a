//! Wire ids (strings chosen by clients) to the core's dense `u32` handles and back.
//!
//! Handles are never reused: the core keeps a record for every handle it was given, so a
//! wire id that comes back after its peer ended gets a fresh handle (`rebind`), and the old
//! handle still names the old wire id for anyone who holds it.

use std::collections::HashMap;

/// One kind of id (hosts, tasks or peers).
#[derive(Debug, Default)]
pub struct WireIds {
    by_wire: HashMap<Box<str>, u32>,
    /// Handle -> wire id; "" for handles the service made for itself (never valid on the
    /// wire, where empty ids are refused).
    wires: Vec<Box<str>>,
}

/// All 2^32 handles of a kind were handed out; the process must restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ran out of {0} handles (2^32 used); restart the scheduler")]
pub struct Exhausted(pub &'static str);

impl WireIds {
    /// The handle currently bound to `wire`.
    pub fn get(&self, wire: &str) -> Option<u32> {
        self.by_wire.get(wire).copied()
    }

    /// The wire id of a handle ("" for service-made handles and unknown handles).
    pub fn wire(&self, handle: u32) -> &str {
        self.wires.get(handle as usize).map_or("", |w| w)
    }

    /// The handle bound to `wire`, binding a new one when there is none.
    pub fn intern(&mut self, wire: &str, kind: &'static str) -> Result<u32, Exhausted> {
        match self.get(wire) {
            Some(h) => Ok(h),
            None => self.rebind(wire, kind),
        }
    }

    /// A new handle for `wire`, replacing any earlier binding.
    pub fn rebind(&mut self, wire: &str, kind: &'static str) -> Result<u32, Exhausted> {
        let handle = self.next(kind)?;
        self.wires.push(wire.into());
        self.by_wire.insert(wire.into(), handle);
        Ok(handle)
    }

    /// A handle with no wire id (for the service's own bookkeeping).
    pub fn anonymous(&mut self, kind: &'static str) -> Result<u32, Exhausted> {
        let handle = self.next(kind)?;
        self.wires.push("".into());
        Ok(handle)
    }

    fn next(&self, kind: &'static str) -> Result<u32, Exhausted> {
        u32::try_from(self.wires.len()).map_err(|_| Exhausted(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_stable_and_rebind_moves_the_wire_id() {
        let mut ids = WireIds::default();
        let a = ids.intern("peer-a", "peer").unwrap();
        assert_eq!(ids.intern("peer-a", "peer").unwrap(), a);
        let b = ids.intern("peer-b", "peer").unwrap();
        assert_ne!(a, b);
        let a2 = ids.rebind("peer-a", "peer").unwrap();
        assert_ne!(a2, a);
        assert_eq!(ids.get("peer-a"), Some(a2));
        // The old handle still names its wire id.
        assert_eq!(ids.wire(a), "peer-a");
        let anon = ids.anonymous("peer").unwrap();
        assert_eq!(ids.wire(anon), "");
        assert_eq!(ids.get(""), None);
        assert_eq!(ids.wire(999), "");
    }
}
