//! Which registry a request goes to, and whether it may (the mirror is not an open relay):
//! the `upstream_header` header, else containerd's `?ns=HOST`, else `default_registry`;
//! the host must be in `mirror.registries` or match `mirror.allowed_hosts`.

use super::route::shown;
use crate::daemon::config::{is_registry_host, MirrorSection};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// As the client named it (`docker.io`, `127.0.0.1:5000`).
    pub host: String,
    /// `http(s)://host[:port]`, no trailing slash.
    pub endpoint: String,
    /// Certificates not verified (`insecure = true`).
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403: a registry this mirror does not proxy.
    NotAllowed(String),
    /// 400: the request names no registry and none is configured as the default.
    NoneNamed(String),
    /// 400: the named host is not `host[:port]`.
    BadHost(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotAllowed(_) => 403,
            Refusal::NoneNamed(_) | Refusal::BadHost(_) => 400,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotAllowed(m) | Refusal::NoneNamed(m) | Refusal::BadHost(m) => m,
        }
    }
}

/// The registry for a request; `ns` is the decoded `ns` query parameter, `header` the
/// value of `upstream_header`.
pub fn resolve(m: &MirrorSection, ns: Option<&str>, header: Option<&str>) -> Result<Upstream, Refusal> {
    let (host, how) = match (header.map(str::trim).filter(|h| !h.is_empty()), ns.map(str::trim).filter(|n| !n.is_empty())) {
        (Some(h), _) => (h, format!("header {}", m.upstream_header)),
        (None, Some(n)) => (n, "query parameter ns".to_string()),
        (None, None) if !m.default_registry.is_empty() => (m.default_registry.as_str(), "mirror.default_registry".to_string()),
        (None, None) => {
            return Err(Refusal::NoneNamed(format!(
                "this request names no registry: add ?ns=HOST, a {} header, or set mirror.default_registry in the peer's configuration",
                m.upstream_header
            )))
        }
    };
    if !is_registry_host(host) {
        return Err(Refusal::BadHost(format!("{how}: {} is not host[:port]", shown(host))));
    }
    if let Some(r) = m.registries.iter().find(|r| r.host.eq_ignore_ascii_case(host)) {
        return Ok(Upstream { host: r.host.clone(), endpoint: r.endpoint(), insecure: r.insecure });
    }
    if m.allowed_hosts.iter().any(|pattern| host_matches(pattern, host)) {
        let host = host.to_ascii_lowercase();
        return Ok(Upstream { endpoint: format!("https://{host}"), host, insecure: false });
    }
    Err(Refusal::NotAllowed(format!(
        "registry {} ({how}) is not proxied by this mirror: add it to mirror.registries (or mirror.allowed_hosts) in the peer's configuration",
        shown(host)
    )))
}

/// `pattern` is a host (case-insensitive) or `*.domain` (any subdomain, not the domain).
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            let (h, d) = (host.to_ascii_lowercase(), domain.to_ascii_lowercase());
            h.len() > d.len() + 1 && h.ends_with(&d) && h.as_bytes()[h.len() - d.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// The query string for the registry: the request's, less `ns` (the mirror's business).
pub fn upstream_query(query: Option<&str>) -> String {
    let kept: Vec<&str> =
        query.unwrap_or("").split('&').filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("ns")).collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// The decoded value of the `ns` query parameter.
pub fn ns_param(query: Option<&str>) -> Option<String> {
    let q = query?;
    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "ns").map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::RegistryEntry;

    fn cfg() -> MirrorSection {
        MirrorSection {
            registries: vec![
                RegistryEntry {
                    host: "127.0.0.1:5000".into(),
                    endpoint: "http://127.0.0.1:5000".into(),
                    insecure: false,
                },
                RegistryEntry {
                    host: "docker.io".into(),
                    endpoint: "https://registry-1.docker.io".into(),
                    insecure: false,
                },
                RegistryEntry { host: "lab.example".into(), endpoint: String::new(), insecure: true },
            ],
            allowed_hosts: vec!["*.trusted.example".into(), "quay.io".into()],
            ..MirrorSection::default()
        }
    }

    #[test]
    fn configured_registries_by_ns_header_or_default() {
        let m = cfg();
        let u = resolve(&m, Some("127.0.0.1:5000"), None).unwrap();
        assert_eq!((u.endpoint.as_str(), u.insecure), ("http://127.0.0.1:5000", false));
        let u = resolve(&m, Some("docker.io"), Some("lab.example")).unwrap();
        assert_eq!((u.endpoint.as_str(), u.insecure), ("https://lab.example", true), "the header wins");
        assert_eq!(resolve(&m, Some("DOCKER.IO"), None).unwrap().endpoint, "https://registry-1.docker.io");
        let e = resolve(&m, None, None).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().contains("mirror.default_registry"), "{e:?}");
        let m = MirrorSection { default_registry: "docker.io".into(), ..cfg() };
        assert_eq!(resolve(&m, None, Some(" ")).unwrap().host, "docker.io");
    }

    #[test]
    fn allow_list() {
        let m = cfg();
        assert_eq!(resolve(&m, Some("quay.io"), None).unwrap().endpoint, "https://quay.io");
        assert_eq!(resolve(&m, Some("r.trusted.example"), None).unwrap().endpoint, "https://r.trusted.example");
        assert_eq!(resolve(&m, Some("a.b.trusted.example:443"), None).unwrap_err().status(), 403, "port not matched");
        for host in ["trusted.example", "eviltrusted.example", "evil.com", "127.0.0.1:5001", "quay.io.evil.com"] {
            let e = resolve(&m, Some(host), None).unwrap_err();
            assert_eq!(e.status(), 403, "{host}");
            assert!(e.message().contains(host) && e.message().contains("mirror.registries"), "{e:?}");
        }
        let e = resolve(&m, Some("evil.com/x"), None).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = resolve(&m, None, Some("a b")).unwrap_err();
        assert!(e.message().contains("X-P2p-Upstream"), "{e:?}");
    }

    #[test]
    fn ns_is_read_and_left_out_upstream() {
        assert_eq!(ns_param(Some("ns=127.0.0.1%3A5000")).as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(ns_param(Some("a=1")), None);
        assert_eq!(ns_param(None), None);
        assert_eq!(upstream_query(Some("ns=x&n=10&last=a")), "?n=10&last=a");
        assert_eq!(upstream_query(Some("ns=x")), "");
        assert_eq!(upstream_query(None), "");
    }
}
