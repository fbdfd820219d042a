//! A private containerd (Debian 1.6, with runc) for the end-to-end suites: its own root, state,
//! socket and config under a test directory, the CRI plugin off, stopped by its pid on drop.
//! `ctr` drives it: `images pull --hosts-dir` (direct or through a registry mirror declared
//! in a hosts.toml), `run --rm` of the pulled image, and checks of the stored content.

use crate::bounded_cmd::{self, Finished};
use crate::cluster::Proc;
use crate::oci_image::{hex, Image};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containerd {
    pub proc: Proc,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// containerd namespace used by every `ctr` call (unique per instance).
    pub namespace: String,
}

pub fn binaries_present() -> Result<(), String> {
    for bin in ["containerd", "ctr", "runc", "containerd-shim-runc-v2"] {
        if !on_path(bin) {
            return Err(format!("{bin} is not installed; run tests/setup.sh (apt-get install containerd runc)"));
        }
    }
    Ok(())
}

fn on_path(bin: &str) -> bool {
    path_env().split(':').any(|d| Path::new(d).join(bin).is_file())
}

/// PATH with the sbin directories (runc lives in /usr/sbin on Debian).
fn path_env() -> String {
    let p = std::env::var("PATH").unwrap_or_default();
    format!("{p}:/usr/local/sbin:/usr/sbin:/sbin")
}

impl Containerd {
    /// Starts containerd with everything under `dir` (created); waits until `ctr version` answers.
    pub fn start(dir: &Path) -> Result<Containerd, String> {
        binaries_present()?;
        for sub in ["root", "state", "opt"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}/{sub}: {e}", dir.display()))?;
        }
        let socket = dir.join("state/containerd.sock");
        if socket.as_os_str().len() > 100 {
            return Err(format!(
                "{}: unix socket path too long (> 100 bytes); use a shorter test dir",
                socket.display()
            ));
        }
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
                opt = dir.join("opt").display(),
            ),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let log = dir.join("containerd.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("containerd")
            .args(["--config", config.to_str().unwrap(), "--log-level", "warn"])
            .env("PATH", path_env())
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("containerd does not start: {e}"))?;
        let namespace = format!("e2e{}", child.id());
        let c = Containerd {
            proc: Proc::from_child("containerd", child, log.clone()),
            dir: dir.to_path_buf(),
            socket,
            namespace,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.ctr(&["version"], "version", Duration::from_secs(10)) {
                Ok(f) if f.success => return Ok(c),
                _ if Instant::now() > deadline => {
                    return Err(format!(
                        "containerd did not answer `ctr version` within 30 s; {}:\n{}",
                        log.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `ctr -a SOCKET -n NAMESPACE ARGS…`, bounded by `timeout`; `label` names the scratch files.
    pub fn ctr(&self, args: &[&str], label: &str, timeout: Duration) -> Result<Finished, String> {
        let mut cmd = Command::new("ctr");
        cmd.env("PATH", path_env()).args(["-a", self.socket.to_str().unwrap(), "-n", &self.namespace]).args(args);
        bounded_cmd::run(cmd, &self.dir.join(format!("ctr-{label}")), timeout)
    }

    /// `ctr images pull --hosts-dir HOSTS_DIR REFERENCE` (fetch + unpack); returns its wall time.
    pub fn pull(&self, reference: &str, hosts_dir: &Path, timeout: Duration) -> Result<Duration, String> {
        let f = self
            .ctr(&["images", "pull", "--hosts-dir", hosts_dir.to_str().unwrap(), reference], "pull", timeout)?
            .ok(&format!("ctr images pull {reference}"))?;
        Ok(f.elapsed)
    }

    /// `ctr content fetch --hosts-dir HOSTS_DIR REFERENCE` (manifest, config and layers into the
    /// content store, no unpack); returns its wall time.
    pub fn fetch(&self, reference: &str, hosts_dir: &Path, timeout: Duration) -> Result<Duration, String> {
        let f = self
            .ctr(&["content", "fetch", "--hosts-dir", hosts_dir.to_str().unwrap(), reference], "fetch", timeout)?
            .ok(&format!("ctr content fetch {reference}"))?;
        Ok(f.elapsed)
    }

    /// `ctr run --rm REFERENCE ID /bin/busybox echo LINE`; returns the container's stdout.
    pub fn run_echo(&self, reference: &str, id: &str, line: &str, timeout: Duration) -> Result<String, String> {
        let f = self
            .ctr(&["run", "--rm", reference, id, "/bin/busybox", "echo", line], "run", timeout)?
            .ok(&format!("ctr run {reference}"))?;
        Ok(f.stdout)
    }

    /// (digest, size) of every blob in the content store (`ctr content ls`).
    pub fn content(&self) -> Result<Vec<(String, u64)>, String> {
        let f = self.ctr(&["content", "ls"], "content-ls", Duration::from_secs(60))?.ok("ctr content ls")?;
        Ok(parse_content_ls(&f.stdout))
    }

    /// Checks that the store holds the image's manifest, config and every layer with the right
    /// size, and that each blob's bytes (`ctr content get`) hash to its digest.
    pub fn verify_image(&self, image: &Image) -> Result<(), String> {
        let stored = self.content()?;
        for blob in image.blobs().chain(std::iter::once(&image.manifest)) {
            match stored.iter().find(|(d, _)| d == &blob.digest) {
                None => return Err(format!("content store lacks {} ({} bytes)", blob.digest, blob.data.len())),
                // `ctr content ls` prints sizes rounded to 4 digits; the exact bytes are checked below.
                Some((_, size)) if size.abs_diff(blob.data.len() as u64) > blob.data.len() as u64 / 500 + 1 => {
                    return Err(format!(
                        "content store has {} with {size} bytes, expected {}",
                        blob.digest,
                        blob.data.len()
                    ))
                }
                Some(_) => {}
            }
            let path = self.dir.join("content-get.bin");
            let mut cmd = Command::new("ctr");
            cmd.env("PATH", path_env()).args([
                "-a",
                self.socket.to_str().unwrap(),
                "-n",
                &self.namespace,
                "content",
                "get",
                &blob.digest,
            ]);
            let out = std::fs::File::create(&path).map_err(|e| e.to_string())?;
            let status = cmd.stdout(out).stderr(Stdio::null()).status().map_err(|e| format!("ctr content get: {e}"))?;
            let data = std::fs::read(&path).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(&path);
            let got = format!("sha256:{}", hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)));
            if !status.success() || got != blob.digest {
                return Err(format!(
                    "ctr content get {}: exit {status}, {} bytes hashing to {got}",
                    blob.digest,
                    data.len()
                ));
            }
        }
        Ok(())
    }

    /// Drops every image and blob, so that the next pull is cold.
    pub fn clean(&self) -> Result<(), String> {
        let images = self.ctr(&["images", "ls", "-q"], "images-ls", Duration::from_secs(60))?.ok("ctr images ls")?;
        for r in images.stdout.lines().filter(|l| !l.trim().is_empty()) {
            self.ctr(&["images", "rm", "--sync", r.trim()], "images-rm", Duration::from_secs(60))?
                .ok("ctr images rm")?;
        }
        for (digest, _) in self.content()? {
            // Blobs still referenced go with their image (garbage collection); the rest here.
            let _ = self.ctr(&["content", "rm", &digest], "content-rm", Duration::from_secs(60))?;
        }
        let left = self.content()?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} blobs left in the content store after clean: {left:?}", left.len()))
        }
    }
}

/// The longest one pull of the test image may take (fetch + unpack, about 2 s per 100 MB here).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// One cold pull of `image` from `registry` (HOST:PORT) by `ctrd`, through `mirror` when given
/// (a hosts.toml in `hosts_root` declares it), then the content check. Returns the pull time.
/// This is the flow the mirror suites reuse with a peer daemon's mirror address.
pub fn pull_and_verify(
    ctrd: &Containerd,
    image: &Image,
    registry: &str,
    mirror: Option<&str>,
    hosts_root: &Path,
) -> Result<Duration, String> {
    ctrd.clean()?;
    let hosts = write_hosts_dir(hosts_root, registry, mirror)?;
    let took = ctrd.pull(&image.reference(registry), &hosts, PULL_TIMEOUT)?;
    ctrd.verify_image(image)?;
    Ok(took)
}

/// `ctr content ls` rows: DIGEST SIZE AGE LABELS; the size is human-readable and rounded
/// ("48.02MB"), so it parses back to bytes only approximately.
fn parse_content_ls(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split('\t').map(str::trim).filter(|s| !s.is_empty());
            let digest = it.next()?.to_string();
            let size = parse_human_size(it.next()?)?;
            digest.starts_with("sha256:").then_some((digest, size))
        })
        .collect()
}

fn parse_human_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1048576.0,
        "GB" => 1e9,
        "GiB" => 1073741824.0,
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

/// Writes `DIR/REGISTRY/hosts.toml` for `ctr --hosts-dir DIR` (and the CRI plugin's
/// config_path): the registry over plain http, and, given a mirror address, that mirror first
/// with pull and resolve rights. The file always has a `[host]` table: containerd up to 1.7
/// refuses a hosts.toml without one ("invalid host tree") and then silently ignores it.
pub fn write_hosts_dir(dir: &Path, registry: &str, mirror: Option<&str>) -> Result<PathBuf, String> {
    if registry.is_empty() || registry.contains(['/', ' ', '"']) {
        return Err(format!("hosts dir: registry {registry:?} is not a HOST[:PORT]"));
    }
    // containerd looks the directory up by the reference's host, "HOST:PORT" verbatim.
    let host_dir = dir.join(registry);
    std::fs::create_dir_all(&host_dir).map_err(|e| format!("{}: {e}", host_dir.display()))?;
    let table = match mirror {
        Some(m) => format!("[host.\"http://{m}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
        None => "[host]\n".to_string(),
    };
    let file = host_dir.join("hosts.toml");
    std::fs::write(&file, format!("server = \"http://{registry}\"\n\n{table}"))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ls_sizes_parse() {
        // ctr prints go-units HumanSize: 4 significant digits, decimal units, no space.
        let out = "DIGEST\tSIZE\tAGE\tLABELS\n\
                   sha256:aa\t52.33MB\t2 seconds\tcontainerd.io/gc.ref=x\n\
                   sha256:bb\t626B\t2 seconds\t\n\
                   junk\n";
        assert_eq!(parse_content_ls(out), vec![("sha256:aa".into(), 52_330_000), ("sha256:bb".into(), 626)]);
        assert_eq!(parse_human_size("1.5 MiB"), Some(1_572_864));
        assert_eq!(parse_human_size("12 parsecs"), None);
    }

    #[test]
    fn hosts_toml_has_a_host_table_with_or_without_mirror() {
        let dir = std::env::temp_dir().join(format!("e2e-hosts-{}", std::process::id()));
        write_hosts_dir(&dir, "127.0.0.1:5000", None).unwrap();
        let direct = std::fs::read_to_string(dir.join("127.0.0.1:5000/hosts.toml")).unwrap();
        assert_eq!(direct, "server = \"http://127.0.0.1:5000\"\n\n[host]\n");
        write_hosts_dir(&dir, "127.0.0.1:5000", Some("127.0.0.1:65001")).unwrap();
        let mirror = std::fs::read_to_string(dir.join("127.0.0.1:5000/hosts.toml")).unwrap();
        assert!(
            mirror.contains("[host.\"http://127.0.0.1:65001\"]\n  capabilities = [\"pull\", \"resolve\"]"),
            "{mirror}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
