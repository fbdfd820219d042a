//! Manifests, by tag and by digest, resolved upstream as rarely as the rule allows
//! (`crate::core::resolve`): one request per tag per `mirror.tag_ttl_ms` and per digest per
//! `mirror.auth_check_ttl_ms`, for each registry, repository, Accept and set of credentials.
//!
//! - A request another one is already asking waits for that answer.
//! - The upstream request is a GET even for a client's HEAD, so the body is at hand: its
//!   sha256 is checked (against the digest asked for, or the registry's
//!   `Docker-Content-Digest`), the by-digest answer is learned from a tag's, and the blobs
//!   it lists are vouched for the same credentials (their length from the descriptor), so
//!   the client's next requests (GET by digest, blob HEADs) cost the registry nothing.
//! - On a normal host with `mirror.resolve_via_seeds`, upstream is first a seed peer's
//!   resolver (`listen.resolver`, chosen by rendezvous hashing of the key over the seeds
//!   the scheduler named), which runs this same code and asks the registry once for the
//!   cluster; any failure there goes to the registry.
//! - A 2xx is kept; the registry's refusals (401, 404...) are relayed and never kept, so
//!   the registry still decides who may read.

use super::auth::{self, BlobInfo};
use super::upstream::Upstream;
use super::{forward, headers, json_error, Body, Mirror, Outcome};
use crate::core::resolve::{Addressing, Failed, Lookup, ResolveCache, ResolveRule};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The registry spec's limit on a manifest: larger answers are relayed, never kept.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Error bodies relayed from upstream are read up to this.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// One answer's identity: the same registry, repository, reference, Accept and
/// credentials get the same answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    endpoint: String,
    repository: String,
    reference: String,
    /// The client's Accept lines, as sent; empty for a digest (the bytes are fixed).
    accept: String,
    /// sha256 of the client's Authorization lines.
    credentials: [u8; 32],
}

/// A 2xx answer as the client gets it.
#[derive(Debug)]
pub struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// What a request that waited for another one's upstream request gets.
#[derive(Debug, Clone)]
enum Shared {
    Answer(Arc<Answer>),
    Stale(Arc<Answer>),
    /// Nothing kept: ask yourself.
    Retry,
}

struct State {
    cache: ResolveCache<Key, Arc<Answer>>,
    /// Keys being asked upstream, and who waits for them (looked up by key only).
    asking: HashMap<Key, watch::Sender<Option<Shared>>>,
}

pub struct Manifests {
    state: Mutex<State>,
    rule: ResolveRule,
    started: Instant,
}

impl Manifests {
    pub fn new(rule: ResolveRule) -> Manifests {
        Manifests {
            state: Mutex::new(State { cache: ResolveCache::new(rule), asking: HashMap::new() }),
            rule,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the request does, decided under the lock.
enum Plan {
    Serve(Arc<Answer>),
    Wait(watch::Receiver<Option<Shared>>),
    Ask(AskGuard),
}

/// The asker's duty: whatever happens to its request (an error, the client going away),
/// the key is released and its waiters told.
struct AskGuard {
    mirror: Arc<Mirror>,
    key: Key,
    done: bool,
}

impl AskGuard {
    fn finish(mut self, addressing: Addressing, result: &Result<Arc<Answer>, bool>) -> Option<Arc<Answer>> {
        self.done = true;
        let m = &self.mirror.manifests;
        let now = m.now_ms();
        let mut st = m.lock();
        let (shared, stale) = match result {
            Ok(answer) => {
                st.cache.complete(&self.key, addressing, answer.clone(), now);
                (Shared::Answer(answer.clone()), None)
            }
            Err(outage) => match st.cache.fail(&self.key, *outage, now) {
                Failed::Stale(a) => (Shared::Stale(a.clone()), Some(a)),
                Failed::Retry => (Shared::Retry, None),
            },
        };
        if let Some(tx) = st.asking.remove(&self.key) {
            let _ = tx.send(Some(shared));
        }
        stale
    }
}

impl Drop for AskGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.mirror.manifests.lock();
        st.cache.abandon(&self.key);
        if let Some(tx) = st.asking.remove(&self.key) {
            let _ = tx.send(Some(Shared::Retry));
        }
    }
}

pub struct ManifestRequest<'a> {
    pub parts: &'a Parts,
    pub upstream: Upstream,
    pub name: &'a str,
    pub reference: &'a str,
    /// Path and query for the registry.
    pub path: &'a str,
}

pub async fn serve(m: &Arc<Mirror>, r: ManifestRequest<'_>) -> (Response<Body>, Outcome) {
    let addressing = if r.reference.starts_with("sha256:") { Addressing::Digest } else { Addressing::Tag };
    let ttl_ms = match addressing {
        Addressing::Tag => m.manifests.rule.tag_ttl_ms,
        Addressing::Digest => m.manifests.rule.digest_ttl_ms,
    };
    // Not kept: passed upstream as it came (a digest other than sha256 cannot be checked).
    if ttl_ms == 0 || (addressing == Addressing::Tag && r.reference.contains(':')) {
        m.ctx.metrics.mirror_manifest("passed");
        return m.forward(&r.parts.method, &r.parts.headers, &r.upstream, r.path).await;
    }
    let credentials = headers::credentials(&r.parts.headers);
    let key = key(&r, addressing, &credentials);
    let plan = {
        let now = m.manifests.now_ms();
        let mut st = m.manifests.lock();
        match st.cache.lookup(&key, addressing, now) {
            Lookup::Fresh(a) => Plan::Serve(a),
            Lookup::Join => match st.asking.get(&key) {
                Some(tx) => Plan::Wait(tx.subscribe()),
                None => Plan::Wait(watch::channel(Some(Shared::Retry)).1),
            },
            Lookup::Fetch => {
                st.asking.insert(key.clone(), watch::channel(None).0);
                Plan::Ask(AskGuard { mirror: m.clone(), key: key.clone(), done: false })
            }
        }
    };
    match plan {
        Plan::Serve(a) => {
            m.ctx.metrics.mirror_manifest("cache");
            (respond(&a, &r.parts.method, false), Outcome::Upstream)
        }
        Plan::Wait(mut rx) => {
            let wait = Duration::from_millis(m.ctx.cfg.mirror.upstream_timeout_ms.saturating_mul(2));
            let shared = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
            match shared.ok().and_then(|r| r.ok().and_then(|s| s.clone())) {
                Some(Shared::Answer(a)) => {
                    m.ctx.metrics.mirror_manifest("joined");
                    (respond(&a, &r.parts.method, false), Outcome::Upstream)
                }
                Some(Shared::Stale(a)) => {
                    m.ctx.metrics.mirror_manifest("stale");
                    (respond(&a, &r.parts.method, true), Outcome::Upstream)
                }
                _ => {
                    m.ctx.metrics.mirror_manifest("passed");
                    m.forward(&r.parts.method, &r.parts.headers, &r.upstream, r.path).await
                }
            }
        }
        Plan::Ask(guard) => ask(m, &r, addressing, &credentials, guard).await,
    }
}

fn key(r: &ManifestRequest<'_>, addressing: Addressing, credentials: &[(String, String)]) -> Key {
    let accept = match addressing {
        Addressing::Digest => String::new(),
        Addressing::Tag => r
            .parts
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    Key {
        endpoint: r.upstream.endpoint.clone(),
        repository: r.name.to_string(),
        reference: r.reference.to_string(),
        accept,
        credentials: credentials_hash(credentials),
    }
}

fn credentials_hash(credentials: &[(String, String)]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (_, v) in credentials {
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.finalize().into()
}

/// Asks upstream (a seed's resolver, then the registry) and shares the answer.
async fn ask(
    m: &Arc<Mirror>,
    r: &ManifestRequest<'_>,
    addressing: Addressing,
    credentials: &[(String, String)],
    guard: AskGuard,
) -> (Response<Body>, Outcome) {
    let via_seed = match via_seed(m, r, &guard.key).await {
        Some(Ok(answer)) => Some(answer),
        _ => None,
    };
    let (fetched, source) = match via_seed {
        Some(a) => (Fetched::Kept(a), "seed"),
        None => (from_registry(m, r).await, "registry"),
    };
    match fetched {
        Fetched::Kept(answer) => {
            let answer = Arc::new(answer);
            learn(m, r, addressing, credentials, &answer);
            guard.finish(addressing, &Ok(answer.clone()));
            m.ctx.metrics.mirror_manifest(source);
            (respond(&answer, &r.parts.method, false), Outcome::Upstream)
        }
        Fetched::Refused { response, outage } => {
            if let Some(stale) = guard.finish(addressing, &Err(outage)) {
                tracing::warn!(
                    registry = r.upstream.host,
                    repository = r.name,
                    reference = r.reference,
                    status = response.status().as_u16(),
                    "registry failing: serving the last answer for the manifest (mirror.serve_stale_on_error)"
                );
                m.ctx.metrics.mirror_manifest("stale");
                return (respond(&stale, &r.parts.method, true), Outcome::Upstream);
            }
            m.ctx.metrics.mirror_manifest("registry");
            let outcome = if outage { Outcome::UpstreamError } else { Outcome::Upstream };
            (head_only(response, &r.parts.method), outcome)
        }
    }
}

enum Fetched {
    /// A 2xx whose bytes were checked.
    Kept(Answer),
    /// Anything else, relayed to the asker; `outage`: 5xx or no answer.
    Refused { response: Response<Body>, outage: bool },
}

/// Whether a request may go to a seed's resolver, which listens in plain HTTP: with `[tls]`
/// (a cluster whose traffic is authenticated and private) a client's credentials do not
/// cross the network in clear, so a request with an `Authorization` goes to the registry
/// (over its own TLS) from this node; anonymous requests (public images) still go through
/// the seeds.
fn seed_may_carry(cluster_tls: bool, client: &HeaderMap) -> bool {
    !cluster_tls || !client.contains_key(http::header::AUTHORIZATION)
}

/// A seed peer's resolver, when this is a normal host that asks them and one is known.
async fn via_seed(m: &Arc<Mirror>, r: &ManifestRequest<'_>, key: &Key) -> Option<Result<Answer, String>> {
    let cfg = &m.ctx.cfg;
    if !cfg.mirror.resolve_via_seeds || cfg.host.kind != crate::daemon::config::HostKind::Normal {
        return None;
    }
    if !seed_may_carry(cfg.tls.is_some(), &r.parts.headers) {
        return None;
    }
    let resolvers = m.ctx.sched.resolvers();
    let ring_key = sched::core::hashring::key_of(
        format!("{}\n{}\n{}\n{}", key.endpoint, key.repository, key.reference, key.accept).as_bytes(),
    );
    let members =
        resolvers.iter().enumerate().map(|(i, a)| (i, sched::core::hashring::key_of(a.to_string().as_bytes())));
    let chosen = resolvers[sched::core::hashring::pick(ring_key, members)?];
    let seed = Upstream { host: chosen.to_string(), endpoint: format!("http://{chosen}"), insecure: false };
    let mut h = headers::to_upstream(&r.parts.headers, &cfg.mirror.upstream_header);
    if let (Ok(name), Ok(value)) =
        (HeaderName::try_from(cfg.mirror.upstream_header.as_str()), HeaderValue::from_str(&r.upstream.host))
    {
        h.insert(name, value);
    }
    let path = format!("/v2/{}/manifests/{}", r.name, r.reference);
    let result = match m.clients.send(&seed, Method::GET, &path, h).await {
        Ok(response) if response.status().is_success() => match read_checked(response, r).await {
            Ok(a) => Ok(a),
            Err(why) => Err(why),
        },
        Ok(response) => Err(format!("answered {}", response.status())),
        Err(e) => Err(e.message().to_string()),
    };
    if let Err(why) = &result {
        tracing::info!(seed = %chosen, reference = r.reference, reason = why.as_str(), "seed resolver failed; asking the registry");
    }
    Some(result)
}

async fn from_registry(m: &Arc<Mirror>, r: &ManifestRequest<'_>) -> Fetched {
    let h = headers::to_upstream(&r.parts.headers, &m.ctx.cfg.mirror.upstream_header);
    let response = match m.clients.send(&r.upstream, Method::GET, r.path, h).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(registry = r.upstream.host, error = e.message(), "registry unreachable");
            return Fetched::Refused { response: json_error(e.status(), e.message()), outage: true };
        }
    };
    let status = response.status();
    if !status.is_success() {
        let headers = headers::to_client(response.headers());
        let body = forward::read_limited(response, MAX_ERROR_BODY_BYTES).await.unwrap_or_default();
        let answer = Answer { status, headers, body };
        return Fetched::Refused { response: respond(&answer, &Method::GET, false), outage: status.is_server_error() };
    }
    match read_checked(response, r).await {
        Ok(a) => Fetched::Kept(a),
        Err(why) => {
            tracing::warn!(
                registry = r.upstream.host,
                reference = r.reference,
                reason = why.as_str(),
                "manifest not kept"
            );
            Fetched::Refused { response: json_error(StatusCode::BAD_GATEWAY, &why), outage: true }
        }
    }
}

/// The body of a 2xx, with its sha256 checked against what names it.
async fn read_checked(response: reqwest::Response, r: &ManifestRequest<'_>) -> Result<Answer, String> {
    let status = response.status();
    let mut headers = headers::to_client(response.headers());
    let body = forward::read_limited(response, MAX_MANIFEST_BYTES).await?;
    let digest = format!("sha256:{:x}", Sha256::digest(&body));
    let named = if r.reference.starts_with("sha256:") {
        Some(r.reference.to_string())
    } else {
        headers.get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string)
    };
    match named {
        Some(n) if n.starts_with("sha256:") && n != digest => {
            return Err(format!("{}: the registry sent a manifest whose sha256 is {digest}, not {n}", r.reference))
        }
        Some(_) => {}
        None => {
            if let Ok(v) = HeaderValue::from_str(&digest) {
                headers.insert("docker-content-digest", v);
            }
        }
    }
    headers.remove(CONTENT_LENGTH);
    Ok(Answer { status, headers, body })
}

/// What a checked answer tells beyond itself: the same manifest by digest, and the blobs it
/// lists for these credentials.
fn learn(
    m: &Arc<Mirror>,
    r: &ManifestRequest<'_>,
    addressing: Addressing,
    credentials: &[(String, String)],
    a: &Arc<Answer>,
) {
    let now = Instant::now();
    for (digest, size) in descriptors(&a.body) {
        let key = auth::Key::new(&r.upstream.endpoint, r.name, &digest, credentials);
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))];
        if let Ok(v) = HeaderValue::from_str(&digest) {
            headers.push((HeaderName::from_static("docker-content-digest"), v));
        }
        m.auth.put(key, BlobInfo { content_bytes: size, headers }, now);
    }
    if addressing == Addressing::Tag {
        let Some(digest) = a.headers.get("docker-content-digest").and_then(|v| v.to_str().ok()) else { return };
        let by_digest = Key {
            endpoint: r.upstream.endpoint.clone(),
            repository: r.name.to_string(),
            reference: digest.to_string(),
            accept: String::new(),
            credentials: credentials_hash(credentials),
        };
        let now_ms = m.manifests.now_ms();
        m.manifests.lock().cache.learn(&by_digest, Addressing::Digest, a.clone(), now_ms);
    }
}

/// The config and layer descriptors (sha256 digest, size) of an image manifest; none for
/// an index or anything else.
fn descriptors(body: &[u8]) -> Vec<(String, u64)> {
    #[derive(serde::Deserialize)]
    struct Descriptor {
        digest: String,
        size: u64,
    }
    #[derive(serde::Deserialize)]
    struct ImageManifest {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    let Ok(manifest) = serde_json::from_slice::<ImageManifest>(body) else { return Vec::new() };
    manifest
        .config
        .into_iter()
        .chain(manifest.layers)
        .filter(|d| {
            d.digest.len() == 71
                && d.digest.starts_with("sha256:")
                && d.digest[7..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .map(|d| (d.digest, d.size))
        .collect()
}

fn respond(a: &Answer, method: &Method, stale: bool) -> Response<Body> {
    let mut resp = Response::new(match *method == Method::HEAD {
        true => Empty::new().map_err(|never| match never {}).boxed(),
        false => Full::new(a.body.clone()).map_err(|never| match never {}).boxed(),
    });
    *resp.status_mut() = a.status;
    *resp.headers_mut() = a.headers.clone();
    resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(a.body.len()));
    if stale {
        resp.headers_mut().insert(http::header::WARNING, HeaderValue::from_static("110 - \"Response is Stale\""));
    }
    resp
}

/// A client's HEAD gets the head of what the GET answered.
fn head_only(mut resp: Response<Body>, method: &Method) -> Response<Body> {
    if *method == Method::HEAD {
        *resp.body_mut() = Empty::new().map_err(|never| match never {}).boxed();
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_cross_to_a_seed_only_without_cluster_tls() {
        let mut h = HeaderMap::new();
        assert!(seed_may_carry(true, &h) && seed_may_carry(false, &h), "anonymous: through the seeds");
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(seed_may_carry(false, &h), "no [tls]: as documented, in clear");
        assert!(!seed_may_carry(true, &h), "[tls]: the token stays off the plain resolver port");
    }

    #[test]
    fn descriptors_are_an_image_manifests_config_and_layers() {
        let d1 = format!("sha256:{}", "a".repeat(64));
        let d2 = format!("sha256:{}", "b".repeat(64));
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{d1}","size":830}},"layers":[{{"digest":"{d2}","size":1986743}},{{"digest":"sha256:short","size":1}}]}}"#
        );
        assert_eq!(descriptors(body.as_bytes()), vec![(d1, 830), (d2, 1_986_743)]);
        let index = r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:x","size":1}]}"#;
        assert!(descriptors(index.as_bytes()).is_empty());
        assert!(descriptors(b"not json").is_empty());
    }

    #[test]
    fn stale_answers_say_so_and_heads_carry_no_body() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"));
        let a = Answer { status: StatusCode::OK, headers, body: Bytes::from_static(b"{}") };
        let r = respond(&a, &Method::HEAD, true);
        assert_eq!(r.headers()[CONTENT_LENGTH], "2");
        assert!(r.headers()[http::header::WARNING].to_str().unwrap().starts_with("110"));
        assert!(respond(&a, &Method::GET, false).headers().get(http::header::WARNING).is_none());
    }
}
