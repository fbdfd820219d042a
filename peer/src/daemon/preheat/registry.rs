//! The seed's registry client for preheat: GETs with the registry's authentication. A 401
//! is answered once per request: `Basic` with the credentials of `[preheat]
//! docker_config`; `Bearer` by the token flow (GET the challenge's realm with its service
//! and scope, Basic credentials when there are some, then `token` or `access_token` from
//! its JSON). The `Authorization` that worked is kept for the next requests and handed to
//! the blob downloads. Nothing here logs a credential or a token.

use super::challenge::{self, Challenge};
use super::credentials::Credentials;
use crate::daemon::mirror::forward::{self, Clients};
use crate::daemon::mirror::upstream::Upstream;
use http::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// A token answer is a small JSON document.
const MAX_TOKEN_BODY_BYTES: usize = 64 << 10;
/// Error bodies are read this far for the message.
const MAX_ERROR_BODY_BYTES: usize = 16 << 10;

pub struct Registry<'a> {
    clients: &'a Clients,
    pub upstream: Upstream,
    repository: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

impl<'a> Registry<'a> {
    pub fn new(
        clients: &'a Clients,
        upstream: Upstream,
        repository: &str,
        credentials: Option<Credentials>,
    ) -> Registry<'a> {
        Registry { clients, upstream, repository: repository.to_string(), credentials, authorization: None }
    }

    /// The `Authorization` value the registry last accepted (None: anonymous).
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// GET `path` (`/v2/...`); a 401 is answered as the module doc says, once. The
    /// response is the registry's, whatever its status.
    pub async fn get(&mut self, path: &str, accept: &str) -> Result<reqwest::Response, String> {
        let response = self.send(path, accept).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge =
            response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(challenge::parse);
        let host = &self.upstream.host;
        self.authorization = match (challenge, &self.credentials) {
            (Some(Challenge::Basic), Some(c)) => Some(c.basic()),
            (Some(Challenge::Basic), None) => {
                return Err(format!(
                    "registry {host} answered 401 for GET {path} and asks for a user and password: give them for {host} in the file [preheat] docker_config names"
                ))
            }
            (Some(Challenge::Bearer { realm, service, scope }), _) => {
                Some(format!("Bearer {}", self.token(&realm, service.as_deref(), scope.as_deref()).await?))
            }
            (None, _) => return Ok(response),
        };
        self.send(path, accept).await
    }

    async fn send(&self, path: &str, accept: &str) -> Result<reqwest::Response, String> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            headers.insert(ACCEPT, v);
        }
        if let Some(a) = &self.authorization {
            let mut v =
                HeaderValue::from_str(a).map_err(|_| "the registry's token is not a header value".to_string())?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        self.clients.send(&self.upstream, Method::GET, path, headers).await.map_err(|e| e.message().to_string())
    }

    /// The token flow's GET of the realm; the token.
    async fn token(&self, realm: &str, service: Option<&str>, scope: Option<&str>) -> Result<String, String> {
        let mut url = url::Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                format!("registry {}: its token realm {realm:?} is not an http(s) URL", self.upstream.host)
            })?;
        let pull = format!("repository:{}:pull", self.repository);
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope.unwrap_or(&pull));
        }
        let origin = url.origin().ascii_serialization();
        let host = url.host_str().unwrap_or_default().to_string();
        let realm_server = Upstream {
            host: host.clone(),
            // The registry's own certificate rule holds for a realm on the registry's host.
            insecure: self.upstream.insecure && self.upstream.endpoint.contains(&host),
            endpoint: origin,
        };
        let path = &url[url::Position::BeforePath..];
        let mut headers = HeaderMap::new();
        if let Some(c) = &self.credentials {
            let mut v =
                HeaderValue::from_str(&c.basic()).map_err(|_| "the credentials are not a header value".to_string())?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let response = self
            .clients
            .send(&realm_server, Method::GET, path, headers)
            .await
            .map_err(|e| format!("token service of {}: {}", self.upstream.host, e.message()))?;
        let status = response.status();
        if !status.is_success() {
            let body = forward::read_limited(response, MAX_ERROR_BODY_BYTES).await.unwrap_or_default();
            return Err(format!(
                "token service {} answered {status} for the {} scope{}: {}",
                realm_server.endpoint,
                scope.unwrap_or(&pull),
                if self.credentials.is_some() {
                    " with the credentials of [preheat] docker_config"
                } else {
                    " (anonymous: no credentials for this registry in [preheat] docker_config)"
                },
                registry_message(&body)
            ));
        }
        let body = forward::read_limited(response, MAX_TOKEN_BODY_BYTES).await?;
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("token service {}: its answer is not JSON: {e}", realm_server.endpoint))?;
        doc.get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("token service {}: its answer has no token", realm_server.endpoint))
    }
}

/// A registry error body as one line: `CODE: message` of its first error, else its text.
pub fn registry_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if let Some(first) = parsed.as_ref().and_then(|v| v.get("errors")).and_then(|e| e.get(0)) {
        let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
        let message = first.get("message").and_then(|c| c.as_str()).unwrap_or("");
        return format!("{code}: {message}");
    }
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "(no body)".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::HttpOriginConfig;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A registry on 127.0.0.1 that wants `Bearer good-token` for manifests and hands it
    /// out at /token to alice only; it records the requests' first lines and Authorization.
    async fn token_registry() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let line = head.lines().next().unwrap_or("").to_string();
                    let auth = head
                        .lines()
                        .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                        .unwrap_or("-")
                        .to_string();
                    log.lock().unwrap().push(format!("{line} | {auth}"));
                    let alice = format!(
                        "Basic {}",
                        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:pw")
                    );
                    let (status, extra, body) = if line.starts_with("GET /token?") {
                        if auth == alice
                            && line.contains("scope=repository%3Aa%2Fb%3Apull")
                            && line.contains("service=reg")
                        {
                            ("200 OK", String::new(), r#"{"access_token":"good-token"}"#.to_string())
                        } else {
                            (
                                "401 Unauthorized",
                                String::new(),
                                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad user"}]}"#.to_string(),
                            )
                        }
                    } else if auth == "Bearer good-token" {
                        ("200 OK", String::new(), "{}".to_string())
                    } else {
                        let challenge =
                            format!("WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"reg\"\r\n");
                        ("401 Unauthorized", challenge, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string())
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn the_token_flow_gets_a_token_with_the_credentials_and_keeps_it() {
        let (addr, seen) = token_registry().await;
        let clients = Clients::new(&HttpOriginConfig::default(), 5_000).unwrap();
        let upstream = Upstream { host: addr.to_string(), endpoint: format!("http://{addr}"), insecure: false };
        let alice = Credentials { username: "alice".into(), password: "pw".into() };
        let mut r = Registry::new(&clients, upstream.clone(), "a/b", Some(alice));
        let response = r.get("/v2/a/b/manifests/v1", "application/json").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(r.authorization(), Some("Bearer good-token"));
        let response = r.get("/v2/a/b/manifests/v2", "application/json").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let log = seen.lock().unwrap().clone();
        assert_eq!(log.len(), 4, "401, token, retry, then the kept token at once: {log:?}");

        let mallory = Credentials { username: "mallory".into(), password: "x".into() };
        let mut r = Registry::new(&clients, upstream, "a/b", Some(mallory));
        let e = r.get("/v2/a/b/manifests/v1", "application/json").await.unwrap_err();
        assert!(e.contains("answered 401 Unauthorized") && e.contains("UNAUTHORIZED: bad user"), "{e}");
        assert!(!e.contains("x\"") && !e.contains("mallory:x"), "no secret in the message: {e}");
    }

    #[test]
    fn registry_messages_are_one_line() {
        assert_eq!(
            registry_message(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(registry_message(b"  not\nfound "), "not found");
        assert_eq!(registry_message(b""), "(no body)");
    }
}
