//! Registry metadata answers (a manifest by tag or by digest, a blob's length) shared by the
//! requests of one mirror: what a request does, given what the mirror already holds or is
//! already asking. The mirror on every node and the seed peers' resolver run it, and so does
//! the simulator, which counts the registry requests a rollout costs with it.
//!
//! - A fresh answer is served (`Lookup::Fresh`). A tag's answer is fresh for
//!   `tag_ttl_ms`; one by digest (content-addressed, only the reader's credentials are
//!   re-checked) for `digest_ttl_ms`.
//! - A key already asked upstream is joined, not asked again (`Lookup::Join`): concurrent
//!   resolutions of one tag are one request, and every waiter gets its answer.
//! - Otherwise this request asks (`Lookup::Fetch`) and completes the key for everyone.
//! - `ttl = 0` keeps nothing and joins nothing: every resolution goes upstream.
//! - An upstream outage (5xx, no answer) with `serve_stale_on_error` serves the last answer
//!   however old, once per request, and keeps it.
//!
//! Keys and values are the driver's; no I/O, no clock (times are the caller's `now_ms`).
//! Entries are kept in a `BTreeMap`, so eviction is the same on every run.

use std::collections::BTreeMap;

/// The rule's settings: the daemon's `[mirror]` keys of the same names and the scenario's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveRule {
    /// A tag resolved upstream is reused this long; 0: every resolution goes upstream.
    pub tag_ttl_ms: u64,
    /// An answer by digest (a manifest, a blob's length) for one set of credentials is
    /// reused this long.
    pub digest_ttl_ms: u64,
    /// During an upstream outage serve the last answer, however old.
    pub serve_stale_on_error: bool,
    /// At most this many keys are held; past it the expired go, then the oldest.
    pub max_entries: usize,
}

impl Default for ResolveRule {
    fn default() -> Self {
        ResolveRule { tag_ttl_ms: 5_000, digest_ttl_ms: 60_000, serve_stale_on_error: false, max_entries: 4096 }
    }
}

/// Whether a key names content by its digest or by a mutable name (a tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Tag,
    Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<V> {
    /// Serve this answer; nothing goes upstream.
    Fresh(V),
    /// The key is being asked upstream: wait for `complete` or `fail`.
    Join,
    /// Ask upstream, then call `complete` or `fail` (or `abandon`) for the key.
    Fetch,
}

/// What an upstream failure leaves the waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed<V> {
    /// The last answer, served stale (`serve_stale_on_error` and an outage).
    Stale(V),
    /// Nothing to serve: each waiter asks upstream itself (its own credentials' answer).
    Retry,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    /// The last answer and when it stops being fresh.
    answer: Option<(V, u64)>,
    /// Asked upstream since this time.
    asking_since_ms: Option<u64>,
    touched_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ResolveCache<K: Ord + Clone, V: Clone> {
    rule: ResolveRule,
    entries: BTreeMap<K, Entry<V>>,
    /// Requests served fresh, joined, sent upstream, served stale: for metrics and tests.
    pub counts: ResolveCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveCounts {
    pub fresh: u64,
    pub joined: u64,
    pub fetched: u64,
    pub stale: u64,
}

impl<K: Ord + Clone, V: Clone> ResolveCache<K, V> {
    pub fn new(rule: ResolveRule) -> Self {
        ResolveCache { rule, entries: BTreeMap::new(), counts: ResolveCounts::default() }
    }

    pub fn rule(&self) -> &ResolveRule {
        &self.rule
    }

    fn ttl_ms(&self, addressing: Addressing) -> u64 {
        match addressing {
            Addressing::Tag => self.rule.tag_ttl_ms,
            Addressing::Digest => self.rule.digest_ttl_ms,
        }
    }

    /// What a request for `key` does now.
    pub fn lookup(&mut self, key: &K, addressing: Addressing, now_ms: u64) -> Lookup<V> {
        if self.ttl_ms(addressing) == 0 {
            self.counts.fetched += 1;
            return Lookup::Fetch;
        }
        if let Some(e) = self.entries.get_mut(key) {
            e.touched_ms = now_ms;
            if let Some((v, fresh_until)) = &e.answer {
                if now_ms < *fresh_until {
                    self.counts.fresh += 1;
                    return Lookup::Fresh(v.clone());
                }
            }
            if e.asking_since_ms.is_some() {
                self.counts.joined += 1;
                return Lookup::Join;
            }
            e.asking_since_ms = Some(now_ms);
            self.counts.fetched += 1;
            return Lookup::Fetch;
        }
        self.make_room(now_ms);
        self.entries.insert(key.clone(), Entry { answer: None, asking_since_ms: Some(now_ms), touched_ms: now_ms });
        self.counts.fetched += 1;
        Lookup::Fetch
    }

    /// Upstream answered `key` (a 2xx the driver checked): it is fresh from now.
    pub fn complete(&mut self, key: &K, addressing: Addressing, answer: V, now_ms: u64) {
        let ttl = self.ttl_ms(addressing);
        if ttl == 0 {
            return;
        }
        self.insert(key, answer, now_ms.saturating_add(ttl), now_ms);
    }

    /// An answer learned another way (a manifest by digest verified inside a tag's answer, a
    /// blob's length read from a manifest the same credentials were given): fresh for the
    /// key's TTL unless already asked.
    pub fn learn(&mut self, key: &K, addressing: Addressing, answer: V, now_ms: u64) {
        let ttl = self.ttl_ms(addressing);
        if ttl == 0 {
            return;
        }
        let asking = self.entries.get(key).and_then(|e| e.asking_since_ms);
        self.insert(key, answer, now_ms.saturating_add(ttl), now_ms);
        if let Some(e) = self.entries.get_mut(key) {
            e.asking_since_ms = asking;
        }
    }

    fn insert(&mut self, key: &K, answer: V, fresh_until_ms: u64, now_ms: u64) {
        if !self.entries.contains_key(key) {
            self.make_room(now_ms);
        }
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            answer: None,
            asking_since_ms: None,
            touched_ms: now_ms,
        });
        e.answer = Some((answer, fresh_until_ms));
        e.asking_since_ms = None;
        e.touched_ms = now_ms;
    }

    /// Upstream failed for `key`. `outage`: a 5xx or no answer (not a refusal such as 401
    /// or 404, which is the registry's answer and is never replaced by an old one).
    pub fn fail(&mut self, key: &K, outage: bool, now_ms: u64) -> Failed<V> {
        let Some(e) = self.entries.get_mut(key) else { return Failed::Retry };
        e.asking_since_ms = None;
        e.touched_ms = now_ms;
        match (&e.answer, outage && self.rule.serve_stale_on_error) {
            (Some((v, _)), true) => {
                self.counts.stale += 1;
                Failed::Stale(v.clone())
            }
            _ => Failed::Retry,
        }
    }

    /// The asker went away without an answer: the next request asks again.
    pub fn abandon(&mut self, key: &K) {
        if let Some(e) = self.entries.get_mut(key) {
            e.asking_since_ms = None;
        }
    }

    /// Whether `key` is being asked upstream now.
    pub fn asking(&self, key: &K) -> bool {
        self.entries.get(key).is_some_and(|e| e.asking_since_ms.is_some())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the map under `max_entries`: expired answers nobody is asking go first (kept
    /// when stale answers may be served), then the least recently touched.
    fn make_room(&mut self, now_ms: u64) {
        if self.entries.len() < self.rule.max_entries.max(1) {
            return;
        }
        if !self.rule.serve_stale_on_error {
            self.entries
                .retain(|_, e| e.asking_since_ms.is_some() || e.answer.as_ref().is_some_and(|(_, u)| *u > now_ms));
        }
        while self.entries.len() >= self.rule.max_entries.max(1) {
            let oldest = self
                .entries
                .iter()
                .filter(|(_, e)| e.asking_since_ms.is_none())
                .min_by_key(|(_, e)| e.touched_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                // Everything is being asked: hold one more rather than drop an asker.
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(tag_ttl_ms: u64, stale: bool) -> ResolveCache<&'static str, u32> {
        ResolveCache::new(ResolveRule { tag_ttl_ms, serve_stale_on_error: stale, ..ResolveRule::default() })
    }

    #[test]
    fn concurrent_resolutions_of_a_tag_are_one_upstream_request() {
        let mut c = cache(5_000, false);
        assert_eq!(c.lookup(&"app:v1", Addressing::Tag, 0), Lookup::Fetch);
        for t in 1..100 {
            assert_eq!(c.lookup(&"app:v1", Addressing::Tag, t), Lookup::Join);
        }
        c.complete(&"app:v1", Addressing::Tag, 7, 120);
        assert_eq!(c.lookup(&"app:v1", Addressing::Tag, 5_119), Lookup::Fresh(7));
        assert_eq!(c.lookup(&"app:v1", Addressing::Tag, 5_120), Lookup::Fetch, "a TTL later it goes upstream again");
        assert_eq!(c.counts, ResolveCounts { fresh: 1, joined: 99, fetched: 2, stale: 0 });
        assert_eq!(c.lookup(&"app:v2", Addressing::Tag, 5_121), Lookup::Fetch, "another tag is its own key");
    }

    #[test]
    fn zero_ttl_sends_every_resolution_upstream() {
        let mut c = cache(0, true);
        for t in 0..3 {
            assert_eq!(c.lookup(&"app:v1", Addressing::Tag, t), Lookup::Fetch);
            c.complete(&"app:v1", Addressing::Tag, 1, t);
        }
        assert!(c.is_empty());
        // Digests keep their own TTL.
        assert_eq!(c.lookup(&"sha256:a", Addressing::Digest, 0), Lookup::Fetch);
        c.complete(&"sha256:a", Addressing::Digest, 2, 0);
        assert_eq!(c.lookup(&"sha256:a", Addressing::Digest, 59_999), Lookup::Fresh(2));
    }

    #[test]
    fn a_failure_lets_each_waiter_ask_unless_stale_answers_are_allowed() {
        let mut c = cache(1_000, false);
        assert_eq!(c.lookup(&"t", Addressing::Tag, 0), Lookup::Fetch);
        c.complete(&"t", Addressing::Tag, 1, 0);
        assert_eq!(c.lookup(&"t", Addressing::Tag, 2_000), Lookup::Fetch);
        assert_eq!(c.fail(&"t", true, 2_010), Failed::Retry, "stale answers are opt-in");
        assert!(!c.asking(&"t"));

        let mut c = cache(1_000, true);
        assert_eq!(c.lookup(&"t", Addressing::Tag, 0), Lookup::Fetch);
        c.complete(&"t", Addressing::Tag, 1, 0);
        assert_eq!(c.lookup(&"t", Addressing::Tag, 2_000), Lookup::Fetch);
        assert_eq!(c.fail(&"t", false, 2_010), Failed::Retry, "a refusal is the registry's answer, never replaced");
        assert_eq!(c.lookup(&"t", Addressing::Tag, 2_020), Lookup::Fetch);
        assert_eq!(c.fail(&"t", true, 2_030), Failed::Stale(1), "an outage serves the last answer");
        assert_eq!(c.counts.stale, 1);
        assert_eq!(c.lookup(&"t", Addressing::Tag, 2_040), Lookup::Fetch, "and the next request asks again");
        assert_eq!(c.fail(&"never", true, 0), Failed::Retry);
    }

    #[test]
    fn learned_answers_serve_without_asking_and_abandon_frees_the_key() {
        let mut c = cache(1_000, false);
        c.learn(&"sha256:m", Addressing::Digest, 3, 10);
        assert_eq!(c.lookup(&"sha256:m", Addressing::Digest, 20), Lookup::Fresh(3));
        assert_eq!(c.lookup(&"t", Addressing::Tag, 0), Lookup::Fetch);
        c.abandon(&"t");
        assert_eq!(c.lookup(&"t", Addressing::Tag, 1), Lookup::Fetch, "nobody is asking any more");
        assert_eq!(c.lookup(&"t", Addressing::Tag, 2), Lookup::Join);
        c.learn(&"t", Addressing::Tag, 4, 3);
        assert!(c.asking(&"t"), "learning does not end somebody else's request");
        assert_eq!(c.lookup(&"t", Addressing::Tag, 4), Lookup::Fresh(4));
    }

    #[test]
    fn the_map_is_bounded_and_never_drops_a_key_being_asked() {
        let rule = ResolveRule { max_entries: 4, ..ResolveRule::default() };
        let mut c: ResolveCache<u32, u32> = ResolveCache::new(rule);
        for k in 0..4 {
            assert_eq!(c.lookup(&k, Addressing::Tag, u64::from(k)), Lookup::Fetch);
        }
        assert_eq!(c.lookup(&9, Addressing::Tag, 10), Lookup::Fetch);
        assert_eq!(c.len(), 5, "all five are being asked: none is dropped");
        for k in [0, 1, 2, 3, 9] {
            c.complete(&k, Addressing::Tag, k, 20);
        }
        assert_eq!(c.lookup(&10, Addressing::Tag, 30), Lookup::Fetch);
        assert_eq!(c.len(), 4, "the least recently touched answers went");
        assert_eq!(c.lookup(&10, Addressing::Tag, 31), Lookup::Join, "the new key is kept");
    }
}
