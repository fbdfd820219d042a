//! The real Debian `docker-registry` (CNCF distribution) as an origin: started on a free
//! 127.0.0.1 port with filesystem storage in the test's directory, blobs pushed through
//! the registry API, and bytes served counted from its access log.

use crate::cluster::{free_port, Proc};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub proc: Proc,
    pub addr: String,
    pub log: PathBuf,
    /// The `Authorization` the pushes send (a registry started with `start_with_users`).
    pub auth: Option<String>,
}

pub fn binary() -> Option<PathBuf> {
    ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"].iter().map(PathBuf::from).find(|p| p.exists())
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, "", None)
    }

    /// A registry that takes only the users of `htpasswd` (bcrypt lines, `user:$2b$...`),
    /// by Basic authentication; the pushes authenticate as `user`/`password`.
    pub fn start_with_users(dir: &Path, htpasswd: &str, user: &str, password: &str) -> Registry {
        let file = dir.join("htpasswd");
        std::fs::write(&file, htpasswd).unwrap();
        let auth = format!("auth:\n  htpasswd:\n    realm: e2e\n    path: {}\n", file.display());
        let basic = format!("Basic {}", base64_of(&format!("{user}:{password}")));
        Registry::start_with(dir, &auth, Some(basic))
    }

    fn start_with(dir: &Path, auth_yaml: &str, auth: Option<String>) -> Registry {
        let bin =
            binary().expect("docker-registry is not installed; run tests/setup.sh (apt-get install docker-registry)");
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\nhealth:\n  storagedriver:\n    enabled: false\n{auth_yaml}",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(["serve", config.to_str().unwrap()])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let proc = Proc::from_child("registry", child, log.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        let ping: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        while request(&addr, "GET", "/v2/", &ping, &[]).map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "registry not up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry { proc, addr, log, auth }
    }

    fn auth_header(&self) -> Vec<(&str, &str)> {
        self.auth.iter().map(|a| ("Authorization", a.as_str())).collect()
    }

    /// Pushes `data` as a blob of `repo` (monolithic upload); returns its URL.
    pub fn push_blob(&self, repo: &str, data: &[u8], digest: &str) -> String {
        let (status, headers, _) =
            request(&self.addr, "POST", &format!("/v2/{repo}/blobs/uploads/"), &self.auth_header(), &[])
                .expect("upload starts");
        assert_eq!(status, 202, "upload start refused");
        let location = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.clone())
            .expect("upload location");
        let path =
            location.split_once("://").map_or(location.as_str(), |(_, rest)| &rest[rest.find('/').unwrap_or(0)..]);
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{sep}digest={digest}");
        let mut headers = self.auth_header();
        headers.push(("Content-Type", "application/octet-stream"));
        let (status, _, body) = request(&self.addr, "PUT", &put, &headers, data).expect("upload completes");
        assert_eq!(status, 201, "blob upload refused: {}", String::from_utf8_lossy(&body));
        format!("http://{}/v2/{repo}/blobs/{digest}", self.addr)
    }

    /// Requests with `method` of paths containing `needle` in the access log.
    pub fn requests(&self, method: &str, needle: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains(&format!("\"{method} /v2/")) && l.contains(needle)).count()
    }

    /// Pushes a manifest under `reference` (a tag); returns the registry's status.
    pub fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> u16 {
        let mut headers = self.auth_header();
        headers.push(("Content-Type", media_type));
        request(&self.addr, "PUT", &format!("/v2/{repo}/manifests/{reference}"), &headers, body).map_or(0, |r| r.0)
    }

    /// Body bytes the registry logged for GETs of paths containing `needle`.
    pub fn bytes_served(&self, needle: &str) -> u64 {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&format!("\"GET {}", "")) && l.contains(needle))
            .filter_map(|l| {
                // ... "GET /v2/... HTTP/1.1" 206 1048576 "referer" "agent"
                let after = l.split("HTTP/1.1\" ").nth(1)?;
                let mut it = after.split_whitespace();
                let _status = it.next()?;
                it.next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// How many GETs of paths containing `needle` the registry logged (any status).
    pub fn gets(&self, needle: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains("\"GET ") && l.contains(needle)).count()
    }
}

/// Standard base64 (RFC 4648, padded), for a Basic `Authorization`.
pub fn base64_of(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An HTTP answer: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 request (Connection: close).
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Answer> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&out[..end]).to_string();
    let mut lines = text.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Some((status, headers, out[end + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_the_standard_alphabet_padded() {
        assert_eq!(super::base64_of("bob:pw"), "Ym9iOnB3");
        assert_eq!(super::base64_of("alice:s3"), "YWxpY2U6czM=");
        assert_eq!(super::base64_of("a:"), "YTo=");
    }
}
