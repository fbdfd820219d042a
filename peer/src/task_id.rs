//! Task identity: which downloads are the same task, so that peers share their pieces.
//!
//! The rule (also in `peer/README.md`):
//!
//! 1. With a digest (`sha256:<64 lowercase hex>`), the digest is the content's identity: the
//!    URL is not used, so one blob pulled through different registries or mirrors is one task.
//! 2. Otherwise the identity is the canonical URL: parsed as a WHATWG URL (scheme and host
//!    lowercased, default port and dot segments removed), the fragment and any
//!    `user:password@` removed, query parameters named in the filter list removed (names
//!    compared case-insensitively after percent-decoding; empty parameters dropped too), the
//!    remaining parameters sorted by (name, value) as written, and `?` dropped when none remain.
//! 3. Tag and application, when given and not empty, partition tasks (two tenants sharing a
//!    blob can still keep separate tasks).
//! 4. The task id is the sha256, in lowercase hex, of the concatenation of
//!    `p2pimg-task-v1\n`, then `digest <len>:sha256:<hex>\n` or `url <len>:<canonical url>\n`,
//!    then `tag <len>:<tag>\n` (if any), then `application <len>:<application>\n` (if any),
//!    where `<len>` is the value's length in bytes, in decimal. The lengths keep
//!    (tag "ab", application "c") apart from (tag "a", application "bc").

use crate::storage::{hex_decode_into, hex_encode, Sha256Digest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// The signing and expiry query parameters removed by default: AWS S3 (SigV4 and V2),
/// Google Cloud Storage, Alibaba OSS, Huawei OBS and Tencent COS presigned URLs.
pub const DEFAULT_FILTERED_QUERY_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-User-Agent",
    "AWSAccessKeyId",
    "Expires",
    "Signature",
    "X-Goog-Algorithm",
    "X-Goog-Credential",
    "X-Goog-Date",
    "X-Goog-Expires",
    "X-Goog-SignedHeaders",
    "X-Goog-Signature",
    "GoogleAccessId",
    "OSSAccessKeyId",
    "AccessKeyId",
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
    "x-cos-security-token",
];

/// A task id: the sha256 of the task's identity (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId([u8; 32]);

impl TaskId {
    pub fn from_bytes(bytes: [u8; 32]) -> TaskId {
        TaskId(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }
    /// 64 lowercase hex digits, as `Display` writes them.
    pub fn from_hex(text: &str) -> Result<TaskId, TaskIdError> {
        let bad = || TaskIdError::NotATaskId { text: text.chars().take(80).collect() };
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex_decode_into(text, &mut out).map_err(|_| bad())?;
        Ok(TaskId(out))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.to_hex())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskIdError {
    /// The URL is shown without its query and user info: they may hold secrets.
    #[error("cannot derive a task id from URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot derive a task id from digest {digest:?}: {reason} (expected sha256:<64 lowercase hex digits>)")]
    InvalidDigest { digest: String, reason: String },
    #[error("{text:?} is not a task id (expected 64 lowercase hex digits)")]
    NotATaskId { text: String },
}

/// What a download names: the inputs of its task id.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskRequest<'a> {
    pub url: &'a str,
    pub tag: Option<&'a str>,
    pub application: Option<&'a str>,
    /// `sha256:<hex>`; when given it replaces the URL as the content's identity.
    pub digest: Option<&'a str>,
}

/// The task-id settings of a peer (serde: `{ "extra_filtered_query_params": [...] }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskIdConfig {
    /// Query parameters removed in addition to `DEFAULT_FILTERED_QUERY_PARAMS`.
    pub extra_filtered_query_params: Vec<String>,
}

/// Computes task ids under one filter list.
#[derive(Debug, Clone)]
pub struct TaskIdRules {
    /// Lowercased names.
    filtered: Vec<String>,
}

impl Default for TaskIdRules {
    fn default() -> Self {
        TaskIdRules::new(&TaskIdConfig::default())
    }
}

const ID_PREFIX: &str = "p2pimg-task-v1\n";

impl TaskIdRules {
    pub fn new(config: &TaskIdConfig) -> TaskIdRules {
        let mut filtered: Vec<String> = DEFAULT_FILTERED_QUERY_PARAMS
            .iter()
            .map(|s| s.to_string())
            .chain(config.extra_filtered_query_params.iter().cloned())
            .map(|s| s.to_ascii_lowercase())
            .collect();
        filtered.sort();
        filtered.dedup();
        TaskIdRules { filtered }
    }

    pub fn task_id(&self, request: &TaskRequest<'_>) -> Result<TaskId, TaskIdError> {
        let mut identity = String::from(ID_PREFIX);
        match request.digest {
            Some(digest) => {
                let parsed = Sha256Digest::from_oci(digest).map_err(|e| TaskIdError::InvalidDigest {
                    digest: e.input.clone(),
                    reason: e.reason.to_string(),
                })?;
                push_field(&mut identity, "digest", &parsed.to_oci());
            }
            None => push_field(&mut identity, "url", &self.canonical_url(request.url)?),
        }
        for (name, value) in [("tag", request.tag), ("application", request.application)] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                push_field(&mut identity, name, value);
            }
        }
        Ok(TaskId(Sha256::digest(identity.as_bytes()).into()))
    }

    /// The URL as it enters the task id (rule 2 of the module doc).
    pub fn canonical_url(&self, url: &str) -> Result<String, TaskIdError> {
        let invalid = |reason: String| TaskIdError::InvalidUrl { url: redact_url(url), reason };
        let mut parsed = url::Url::parse(url.trim()).map_err(|e| invalid(e.to_string()))?;
        if parsed.cannot_be_a_base() {
            return Err(invalid("not a hierarchical URL (expected scheme://host/path)".into()));
        }
        parsed.set_fragment(None);
        // Both fail only for URLs without a host, which carry no credentials.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let query = parsed.query().map(|q| self.canonical_query(q));
        parsed.set_query(query.as_deref().filter(|q| !q.is_empty()));
        Ok(parsed.into())
    }

    fn canonical_query(&self, query: &str) -> String {
        let mut kept: Vec<(&str, &str)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(|(name, _)| !self.is_filtered(name))
            .collect();
        kept.sort();
        let mut out = String::with_capacity(query.len());
        for (i, (name, value)) in kept.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(name);
            // `a` and `a=` are kept apart: a server may treat them differently.
            if query_pair_has_equals(query, name, value) {
                out.push('=');
                out.push_str(value);
            }
        }
        out
    }

    fn is_filtered(&self, raw_name: &str) -> bool {
        let decoded: String = url::form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map(|(name, _)| name.into_owned())
            .unwrap_or_default();
        self.filtered.binary_search(&decoded.to_ascii_lowercase()).is_ok()
    }
}

/// `name` and `value` are sub-slices of `query`: the pair had a `=` if the byte after the name
/// is one.
fn query_pair_has_equals(query: &str, name: &str, value: &str) -> bool {
    let name_end = name.as_ptr() as usize - query.as_ptr() as usize + name.len();
    !value.is_empty() || query.as_bytes().get(name_end) == Some(&b'=')
}

fn push_field(identity: &mut String, name: &str, value: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(identity, "{name} {}:{value}", value.len());
}

pub use svc::redact::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(url: &str) -> TaskId {
        TaskIdRules::default().task_id(&TaskRequest { url, ..Default::default() }).unwrap()
    }

    fn canon(url: &str) -> String {
        TaskIdRules::default().canonical_url(url).unwrap()
    }

    #[test]
    fn signing_params_are_removed_and_the_rest_sorted() {
        assert_eq!(
            canon("HTTPS://Bucket.S3.amazonaws.com:443/blobs/x?b=2&X-Amz-Signature=abc&a=1&X-Amz-Date=20240101&x-amz-credential=k#frag"),
            "https://bucket.s3.amazonaws.com/blobs/x?a=1&b=2"
        );
        assert_eq!(canon("http://h/p?X-Amz-Signature=1&Expires=2"), "http://h/p");
        assert_eq!(canon("http://h/p?"), "http://h/p");
        assert_eq!(canon("http://user:pw@h/p"), "http://h/p");
        // A percent-encoded name is still recognised.
        assert_eq!(canon("http://h/p?X%2DAmz%2DSignature=1&k=v"), "http://h/p?k=v");
        // Empty pairs go, a bare name and a name with an empty value stay distinct.
        assert_eq!(canon("http://h/p?&&b&a="), "http://h/p?a=&b");
    }

    #[test]
    fn the_same_blob_under_different_signatures_is_one_task() {
        let a = id("https://s3.example.com/b/k?X-Amz-Signature=aaa&X-Amz-Expires=300&versionId=7");
        let b = id("https://s3.example.com/b/k?versionId=7&X-Amz-Signature=bbb&X-Amz-Expires=600");
        assert_eq!(a, b);
        assert_ne!(a, id("https://s3.example.com/b/k?versionId=8"));
        assert_ne!(a, id("https://s3.example.com/b/other?versionId=7"));
    }

    #[test]
    fn extra_filtered_params_are_configurable() {
        let rules = TaskIdRules::new(&TaskIdConfig { extra_filtered_query_params: vec!["token".into()] });
        let url = |u| TaskRequest { url: u, ..Default::default() };
        assert_eq!(rules.task_id(&url("http://h/p?token=1")).unwrap(), rules.task_id(&url("http://h/p")).unwrap());
        assert_ne!(id("http://h/p?token=1"), id("http://h/p"));
    }

    #[test]
    fn digest_is_the_identity_and_tag_and_application_partition() {
        let rules = TaskIdRules::default();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let req = |url, tag, application| TaskRequest { url, tag, application, digest: Some(&digest) };
        let via_a = rules.task_id(&req("https://registry-a/v2/x/blobs/d", None, None)).unwrap();
        let via_b = rules.task_id(&req("https://mirror-b/v2/y/blobs/d", None, None)).unwrap();
        assert_eq!(via_a, via_b);
        assert_ne!(via_a, id("https://registry-a/v2/x/blobs/d"));
        let ab_c = rules.task_id(&req("u:", Some("ab"), Some("c"))).unwrap();
        let a_bc = rules.task_id(&req("u:", Some("a"), Some("bc"))).unwrap();
        assert_ne!(ab_c, a_bc, "field lengths keep concatenations apart");
        assert_eq!(rules.task_id(&req("u:", Some(""), None)).unwrap(), via_a, "empty tag is no tag");
        let tag_x = rules.task_id(&req("u:", Some("x"), None)).unwrap();
        let app_x = rules.task_id(&req("u:", None, Some("x"))).unwrap();
        assert_ne!(tag_x, app_x);
    }

    #[test]
    fn the_id_is_the_documented_hash() {
        let expected = Sha256::digest(b"p2pimg-task-v1\nurl 14:http://h/p?a=1\ntag 1:t\n");
        let got = TaskIdRules::default()
            .task_id(&TaskRequest { url: "http://h/p?a=1", tag: Some("t"), ..Default::default() })
            .unwrap();
        assert_eq!(got.as_bytes()[..], expected[..]);
        assert_eq!(TaskId::from_hex(&got.to_string()).unwrap(), got);
    }

    #[test]
    fn bad_input_gets_a_clear_error_without_secrets() {
        let rules = TaskIdRules::default();
        let err = rules.canonical_url("not a url?X-Amz-Signature=secret").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a url") && !text.contains("secret"), "{text}");
        assert!(rules.canonical_url("mailto:someone@example.com").is_err());
        let err = rules
            .task_id(&TaskRequest { url: "http://h/", digest: Some("sha256:xyz"), ..Default::default() })
            .unwrap_err();
        assert!(matches!(err, TaskIdError::InvalidDigest { .. }), "{err}");
        assert!(TaskId::from_hex("AB").is_err());
        assert!(TaskId::from_hex(&"AB".repeat(32)).is_err());
    }
}
