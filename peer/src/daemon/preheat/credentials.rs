//! Registry credentials from a file in Docker's config.json format (`[preheat]
//! docker_config`): `auths` maps a registry to `auth` (base64 of `user:password`) or to
//! `username` and `password`. A key may be written as Docker writes it (`host[:port]`,
//! `https://host/v1/`); Docker Hub's names (`docker.io`, `index.docker.io`,
//! `registry-1.docker.io`) are one registry. Entries with nothing usable (credentials kept
//! by a `credsStore` helper) are skipped; `identitytoken` (an OAuth refresh token) is not
//! supported and says so. Credentials are never printed.

use base64::Engine;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The user, never the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// `Authorization: Basic ...`'s value.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// (registry as `host[:port]`, lowercase; its credentials).
    auths: Vec<(String, Credentials)>,
}

/// A config.json is a few KiB; a pull secret is bounded by Kubernetes at 1 MiB.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// `load`, but a file that does not exist is no credentials (None): the Kubernetes manifests
/// mount the pull secret as an optional Secret, absent until an operator creates it.
pub fn load_optional(path: &Path) -> Result<Option<DockerConfig>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => load(path).map(Some),
    }
}

pub fn load(path: &Path) -> Result<DockerConfig, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes; a Docker config.json is at most {MAX_FILE_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse(text: &[u8]) -> Result<DockerConfig, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not JSON in Docker's config.json format: {e}"))?;
    let auths = match doc.get("auths") {
        Some(serde_json::Value::Object(a)) => a,
        Some(_) => return Err("auths: is not an object".into()),
        None => return Err("auths: is missing (Docker's config.json format: {\"auths\": {\"REGISTRY\": {\"auth\": \"BASE64(user:password)\"}}})".into()),
    };
    let mut out = DockerConfig::default();
    for (key, entry) in auths {
        let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        let credentials = match (field("auth"), field("username"), field("password")) {
            (Some(auth), _, _) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| format!("auths.{key}.auth: is not base64"))?;
                let decoded = String::from_utf8(decoded).map_err(|_| format!("auths.{key}.auth: is not UTF-8 once decoded"))?;
                let (username, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key}.auth: is not base64 of user:password"))?;
                Credentials { username: username.into(), password: password.into() }
            }
            (None, Some(username), Some(password)) => Credentials { username: username.into(), password: password.into() },
            (None, Some(_), None) => return Err(format!("auths.{key}: has a username and no password")),
            _ if field("identitytoken").is_some() => {
                return Err(format!("auths.{key}.identitytoken: OAuth refresh tokens are not supported; give auth, or username and password"))
            }
            // Kept by a credentials helper (`credsStore`): nothing here to use.
            _ => continue,
        };
        out.auths.push((registry_of(key), credentials));
    }
    Ok(out)
}

impl DockerConfig {
    /// The credentials for `registry` (`host[:port]`), if the file has them.
    pub fn for_registry(&self, registry: &str) -> Option<&Credentials> {
        let lower = registry.to_ascii_lowercase();
        let wanted = alias(&lower);
        self.auths.iter().find(|(r, _)| alias(r) == wanted).map(|(_, c)| c)
    }
}

/// `https://host:port/v1/` -> `host:port`, lowercase.
fn registry_of(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
}

/// Docker Hub's several names as one.
fn alias(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_no_credentials_but_a_bad_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("preheat-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load_optional(&dir.join("absent.json")), Ok(None));
        let bad = dir.join("bad.json");
        std::fs::write(&bad, b"{}").unwrap();
        assert!(load_optional(&bad).unwrap_err().contains("auths"), "a file that exists must parse");
        std::fs::write(&bad, br#"{"auths": {}}"#).unwrap();
        assert_eq!(load_optional(&bad), Ok(Some(DockerConfig::default())));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn auths_by_registry_in_either_spelling() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "127.0.0.1:5000": {{"username": "bob", "password": "pw"}}, "helper.example": {{}}}}, "credsStore": "desktop"}}"#
        );
        let c = parse(text.as_bytes()).unwrap();
        let hub = c.for_registry("docker.io").unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("alice", "s3:cret"));
        assert_eq!(c.for_registry("127.0.0.1:5000").unwrap().basic(), "Basic Ym9iOnB3");
        assert!(c.for_registry("helper.example").is_none() && c.for_registry("quay.io").is_none());
        assert!(!format!("{hub:?}").contains("s3:cret"), "never printed");
    }

    #[test]
    fn bad_files_name_the_entry() {
        for (text, says) in [
            ("nope", "not JSON"),
            ("{}", "auths: is missing"),
            (r#"{"auths": []}"#, "auths: is not an object"),
            (r#"{"auths": {"r": {"auth": "***"}}}"#, "auths.r.auth: is not base64"),
            (r#"{"auths": {"r": {"auth": "YWxpY2U="}}}"#, "auths.r.auth: is not base64 of user:password"),
            (r#"{"auths": {"r": {"username": "u"}}}"#, "auths.r: has a username and no password"),
            (r#"{"auths": {"r": {"identitytoken": "t"}}}"#, "auths.r.identitytoken"),
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
