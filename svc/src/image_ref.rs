//! Image references (`registry/repository:tag`, `...@sha256:<hex>`) and platforms
//! (`os/architecture[/variant]`) as preheat names them: parsed once, by `p2pctl`, the
//! scheduler's preheat API and the seed peer alike, so a reference one accepts the others
//! accept, and one image has one spelling (its job id is derived from it).
//!
//! Docker's normalisation applies: a first component without `.` or `:` that is not
//! `localhost` is not a registry (`nginx` is `docker.io/library/nginx:latest`), and with
//! neither tag nor digest the tag is `latest`. Only sha256 digests are accepted: the seed
//! checks what it fetched against them.

use std::fmt;

/// The registry spec's limit on a repository name (and the mirror's, `route.rs`).
pub const MAX_REPOSITORY_BYTES: usize = 255;
const MAX_REGISTRY_BYTES: usize = 255;
pub const MAX_TAG_BYTES: usize = 128;
/// An OCI platform's fields are short words (`linux`, `amd64`, `v8`).
const MAX_PLATFORM_FIELD_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]`, lowercase, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// e.g. `library/nginx`.
    pub repository: String,
    /// None when the reference has a digest (the digest names the content; a tag beside
    /// it is dropped).
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// What the registry's `manifests/<reference>` path takes: the digest, else the tag.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

/// `registry/repository:tag` or `registry/repository@sha256:<hex>`: the one spelling.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.digest, &self.tag) {
            (Some(d), _) => write!(f, "@{d}"),
            (None, Some(t)) => write!(f, ":{t}"),
            (None, None) => Ok(()),
        }
    }
}

/// Parses and normalises an image reference; the error says what is wrong with it.
pub fn parse(text: &str) -> Result<ImageRef, String> {
    let shown = shown(text);
    if text.is_empty() {
        return Err(
            "the image reference is empty; write REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:HEX".into()
        );
    }
    if text.len() > MAX_REGISTRY_BYTES + MAX_REPOSITORY_BYTES + MAX_TAG_BYTES + 80 {
        return Err(format!("image reference {shown} is {} bytes long; too long to be one", text.len()));
    }
    if text.contains("://") {
        return Err(format!("image reference {shown}: no scheme; write REGISTRY/REPOSITORY:TAG"));
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => {
            (rest, Some(check_digest(digest).map_err(|e| format!("image reference {shown}: {e}"))?))
        }
        None => (text, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag).map_err(|e| format!("image reference {shown}: {e}"))?;
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_string(), rest.to_string())
        }
        _ if name.contains('/') => ("docker.io".to_string(), name.to_string()),
        _ => ("docker.io".to_string(), format!("library/{name}")),
    };
    let registry = match registry.to_ascii_lowercase() {
        r if r == "index.docker.io" || r == "registry-1.docker.io" => "docker.io".to_string(),
        r => r,
    };
    // Docker Hub's official images live under library/, however the registry is written.
    let repository = match registry == "docker.io" && !repository.contains('/') {
        true => format!("library/{repository}"),
        false => repository,
    };
    check_registry(&registry).map_err(|e| format!("image reference {shown}: {e}"))?;
    check_repository(&repository).map_err(|e| format!("image reference {shown}: {e}"))?;
    let tag = match (&digest, tag) {
        (Some(_), _) => None,
        (None, Some(t)) => Some(t.to_string()),
        (None, None) => Some("latest".to_string()),
    };
    Ok(ImageRef { registry, repository, tag, digest })
}

fn check_registry(registry: &str) -> Result<(), String> {
    let ok = !registry.is_empty()
        && registry.len() <= MAX_REGISTRY_BYTES
        && registry.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(format!("registry {} is not host[:port]", shown(registry)))
    }
}

/// Repository names: lowercase components `[a-z0-9]+([._]|__|-+)[a-z0-9]+...`, joined by `/`
/// (the distribution spec's grammar, as the mirror checks it).
fn check_repository(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_REPOSITORY_BYTES {
        return Err(format!("repository name of {} bytes; must be 1 to {MAX_REPOSITORY_BYTES}", name.len()));
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(format!(
                "repository {}: component {} is not lowercase letters and digits joined by '.', '_', '__' or '-'",
                shown(name),
                shown(component)
            ));
        }
    }
    Ok(())
}

/// One component of a repository name in the distribution spec's grammar: lowercase letters
/// and digits joined by `.`, `_`, `__` or runs of `-`. Shared with the mirror's routes.
pub fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A tag in the distribution spec's grammar: 1 to `MAX_TAG_BYTES` of `[A-Za-z0-9_.-]`, not
/// starting with `.` or `-`. Shared with the mirror's routes.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty() && b.len() <= MAX_TAG_BYTES && word(b[0]) && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

fn check_tag(tag: &str) -> Result<(), String> {
    if valid_tag(tag) {
        Ok(())
    } else {
        Err(format!("tag {}: must be 1 to {MAX_TAG_BYTES} of [A-Za-z0-9_.-], not starting with '.' or '-'", shown(tag)))
    }
}

/// `sha256:<64 lowercase hex>`, the only digest preheat accepts (the seed checks the bytes
/// it fetched against it).
pub fn check_digest(digest: &str) -> Result<String, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {}: expected sha256:<64 lowercase hex digits>", shown(digest)))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("digest {}: expected sha256:<64 lowercase hex digits>", shown(digest)));
    }
    Ok(digest.to_string())
}

/// An OCI platform: `os/architecture` and an optional `/variant`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Whether an index entry's platform (`os`, `architecture`, `variant`) is this one. A
    /// platform asked without a variant takes any variant (`linux/arm64` takes
    /// `linux/arm64/v8`), as containerd's default matcher does for the host's own.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `os/architecture[/variant]`, lowercase words, e.g. `linux/amd64`, `linux/arm64/v8`.
pub fn parse_platform(text: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= MAX_PLATFORM_FIELD_BYTES
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
    };
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| word(p)) {
        return Err(format!(
            "platform {}: expected OS/ARCHITECTURE[/VARIANT] in lowercase, e.g. linux/amd64 or linux/arm64/v8",
            shown(text)
        ));
    }
    Ok(Platform {
        os: parts[0].to_string(),
        architecture: parts[1].to_string(),
        variant: parts.get(2).map(|v| v.to_string()),
    })
}

/// A caller's string for a message: at most 120 characters, control bytes escaped.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(120).collect();
    let mut out = format!("{cut:?}");
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ok(text: &str) -> String {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).to_string()
    }

    #[test]
    fn references_are_normalised_as_docker_does() {
        assert_eq!(ok("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(ok("bitnami/nginx:1.25"), "docker.io/bitnami/nginx:1.25");
        assert_eq!(ok("index.docker.io/library/nginx:v1"), "docker.io/library/nginx:v1");
        assert_eq!(ok("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(ok("127.0.0.1:5000/e2e/app"), "127.0.0.1:5000/e2e/app:latest");
        assert_eq!(ok("127.0.0.1:5000/e2e/app:v1"), "127.0.0.1:5000/e2e/app:v1");
        assert_eq!(ok("localhost/a/b:t_1.x-y"), "localhost/a/b:t_1.x-y");
        assert_eq!(ok("Harbor.Example.com/library/nginx:V1"), "harbor.example.com/library/nginx:V1");
        let by_digest = parse(&format!("r.example/a/b:v1@{D}")).unwrap();
        assert_eq!((by_digest.tag.as_deref(), by_digest.reference()), (None, D), "the digest names the content");
        assert_eq!(by_digest.to_string(), format!("r.example/a/b@{D}"));
        assert_eq!(parse("r.example:443/a:b").unwrap().reference(), "b");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("https://r.example/a:b", "no scheme"),
            ("r.example/UPPER:v1", "component \"UPPER\""),
            ("r.example/a//b", "component \"\""),
            ("r.example/a:", "tag \"\""),
            ("r.example/a:-x", "tag \"-x\""),
            ("r.example/a@sha256:abc", "64 lowercase hex"),
            ("r.example/a@md5:abc", "expected sha256"),
            ("r e.x/a:b", "not host[:port]"),
            ("r.example/", "repository name of 0 bytes"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        assert!(parse(&"a".repeat(1000)).unwrap_err().contains("too long"));
    }

    #[test]
    fn platforms() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches("linux", "arm64", Some("v8")) && !p.matches("linux", "arm64", Some("v7")));
        let any_variant = parse_platform("linux/arm64").unwrap();
        assert!(any_variant.matches("linux", "arm64", Some("v8")) && any_variant.matches("linux", "arm64", None));
        assert!(!any_variant.matches("linux", "amd64", None));
        for bad in ["linux", "linux/", "Linux/amd64", "a/b/c/d", "linux/amd 64", ""] {
            assert!(parse_platform(bad).unwrap_err().contains("OS/ARCHITECTURE"), "{bad:?}");
        }
    }
}
