//! The registry's yes to a client's credentials for one blob. A blob is served from P2P or
//! the local cache only after the registry answered 2xx to a HEAD of it with the client's
//! own headers (so a client the registry would refuse never gets cached bytes); the answer
//! (length and the blob's headers) is remembered for `mirror.auth_check_ttl_ms` per
//! (registry, repository, blob, credentials), so 100 range reads cost one HEAD.

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the registry said about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub content_bytes: u64,
    /// `headers::BLOB_HEADERS` as the registry sent them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    endpoint: String,
    repository: String,
    digest: String,
    /// sha256 of the client's Authorization lines: credentials are not kept in memory.
    credentials: [u8; 32],
}

impl Key {
    pub fn new(endpoint: &str, repository: &str, digest: &str, authorization: &[(String, String)]) -> Key {
        let mut h = Sha256::new();
        for (_, v) in authorization {
            h.update(v.as_bytes());
            h.update(b"\n");
        }
        Key {
            endpoint: endpoint.to_string(),
            repository: repository.to_string(),
            digest: digest.to_string(),
            credentials: h.finalize().into(),
        }
    }
}

/// At most this many answers are kept; past it, expired ones go, then all.
const MAX_ENTRIES: usize = 4096;

pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Instant, BlobInfo)>>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> AuthCache {
        AuthCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, key: &Key, now: Instant) -> Option<BlobInfo> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(until, _)| *until > now).map(|(_, info)| info.clone())
    }

    /// The last answer for `key` however old: what `mirror.serve_stale_on_error` serves on
    /// while the registry is failing (expired answers stay until the table is full).
    pub fn get_stale(&self, key: &Key) -> Option<BlobInfo> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).map(|(_, info)| info.clone())
    }

    pub fn put(&self, key: Key, info: BlobInfo, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (until, _)| *until > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now + self.ttl, info));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: u64) -> BlobInfo {
        BlobInfo { content_bytes: n, headers: vec![] }
    }

    #[test]
    fn answers_are_per_credentials_and_expire() {
        let c = AuthCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let alice = vec![("Authorization".to_string(), "Bearer alice".to_string())];
        let k = Key::new("http://r", "a/b", "sha256:1", &alice);
        c.put(k.clone(), info(5), t0);
        assert_eq!(c.get(&k, t0 + Duration::from_secs(59)), Some(info(5)));
        assert_eq!(c.get(&k, t0 + Duration::from_secs(60)), None, "expired");
        assert_eq!(c.get_stale(&k), Some(info(5)), "kept for an outage");
        let anonymous = Key::new("http://r", "a/b", "sha256:1", &[]);
        assert_eq!(c.get(&anonymous, t0), None, "other credentials are asked again");
        let other_repo = Key::new("http://r", "a/c", "sha256:1", &alice);
        assert_eq!(c.get(&other_repo, t0), None, "another repository is asked again");
    }

    #[test]
    fn zero_ttl_remembers_nothing_and_the_size_is_bounded() {
        let c = AuthCache::new(Duration::ZERO);
        let k = Key::new("e", "r", "d", &[]);
        c.put(k.clone(), info(1), Instant::now());
        assert_eq!(c.get(&k, Instant::now()), None);
        let c = AuthCache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES + 10) {
            c.put(Key::new("e", "r", &i.to_string(), &[]), info(1), t0);
        }
        assert!(c.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
