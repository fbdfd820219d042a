//! Data-plane grants sent with each Parents (`svc::grant`): the peer presents its grant to
//! every parent before reading the task, and a parent holding the same cluster key serves
//! the task only then. Minted here, in the service: the core stays free of keys and clocks.

use api::pb;
use svc::grant::GrantKey;

/// The cluster key and how long each grant lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantIssuer {
    key: GrantKey,
    ttl_s: u64,
}

impl GrantIssuer {
    pub fn new(key: GrantKey, ttl_s: u64) -> GrantIssuer {
        GrantIssuer { key, ttl_s }
    }

    pub fn key(&self) -> &GrantKey {
        &self.key
    }

    /// The grant for `host_id` to read `task_hex` (64 hex digits, as `wire::task_id` keeps
    /// them) until `ttl_s` after `now_unix_s`; None for a task id that is not 64 hex digits.
    pub fn grant(&self, task_hex: &str, host_id: &str, now_unix_s: u64) -> Option<pb::DataGrant> {
        let task = task_bytes(task_hex)?;
        let expires_unix_s = now_unix_s.saturating_add(self.ttl_s);
        let grant = self.key.mint(&task, host_id, expires_unix_s);
        Some(pb::DataGrant { expires_unix_s, mac: grant.mac.to_vec() })
    }
}

fn task_bytes(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use svc::grant::{Grant, GrantRefusal};

    #[test]
    fn grants_check_out_with_the_same_key_for_that_task_and_host_only() {
        let key = GrantKey::from_bytes(&[9; 32]).unwrap();
        let issuer = GrantIssuer::new(key.clone(), 3600);
        let task_hex = "0a".repeat(32);
        let g = issuer.grant(&task_hex, "node-1", 1_000).unwrap();
        assert_eq!(g.expires_unix_s, 4_600);
        let as_presented = |host: &str| Grant {
            task: [0x0a; 32],
            host_id: host.into(),
            expires_unix_s: g.expires_unix_s,
            mac: g.mac.clone().try_into().unwrap(),
        };
        assert_eq!(key.verify(&as_presented("node-1"), &[0x0a; 32], 4_599), Ok(()));
        assert_eq!(key.verify(&as_presented("node-2"), &[0x0a; 32], 1_000), Err(GrantRefusal::BadMac));
        assert!(matches!(key.verify(&as_presented("node-1"), &[0x0a; 32], 4_600), Err(GrantRefusal::Expired { .. })));
        assert_eq!(issuer.grant("zz", "node-1", 0), None);
        assert_eq!(issuer.grant(&"g".repeat(64), "node-1", 0), None);
    }
}
