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
}

pub fn binary() -> Option<PathBuf> {
    ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"].iter().map(PathBuf::from).find(|p| p.exists())
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        let bin =
            binary().expect("docker-registry is not installed; run tests/setup.sh (apt-get install docker-registry)");
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\nhealth:\n  storagedriver:\n    enabled: false\n",
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
        while request(&addr, "GET", "/v2/", &[], &[]).map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "registry not up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry { proc, addr, log }
    }

    /// Pushes `data` as a blob of `repo` (monolithic upload); returns its URL.
    pub fn push_blob(&self, repo: &str, data: &[u8], digest: &str) -> String {
        let (status, headers, _) =
            request(&self.addr, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[]).expect("upload starts");
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
        let (status, _, body) = request(&self.addr, "PUT", &put, &[("Content-Type", "application/octet-stream")], data)
            .expect("upload completes");
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
        request(&self.addr, "PUT", &format!("/v2/{repo}/manifests/{reference}"), &[("Content-Type", media_type)], body)
            .map_or(0, |r| r.0)
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

/// One HTTP/1.1 request (Connection: close); (status, headers, body).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<(String, String)>, Vec<u8>)> {
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
