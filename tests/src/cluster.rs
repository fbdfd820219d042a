//! A local cluster of real processes on 127.0.0.1 for the end-to-end suites: the
//! `scheduler` binary, seed and normal `peerd` daemons, and `dfget` runs. Every process is
//! started here and stopped by its own pid (the guards kill what a failing test leaves).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// target/<profile>/<name>: next to the test executable's deps/ directory, or beside the
/// running executable when that is itself a binary in target/<profile> (the bench tools).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let beside = exe.parent().map(|d| d.join(name));
    if let Some(bin) = beside.filter(|b| b.exists()) {
        return bin;
    }
    let dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace binaries first (cargo build --release --workspace)",
        bin.display()
    );
    bin
}

/// A child process, killed when dropped unless stopped before.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn from_child(name: &str, child: Child, log: PathBuf) -> Proc {
        Proc { name: name.to_string(), child: Some(child), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGTERM, then wait (SIGKILL after `grace`). Returns the exit code.
    pub fn stop(&mut self, grace: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok().and_then(|s| s.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash, no goodbye to the scheduler.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `bin args`, with stderr to `log`, and waits for a stdout or stderr line
/// containing `ready`; returns the process and that line.
fn spawn_until(name: &str, mut cmd: Command, log: &Path, ready: &str, timeout: Duration) -> (Proc, String) {
    let log_file = std::fs::File::create(log).expect("log file");
    cmd.env_remove("RUST_LOG").stdout(Stdio::piped()).stderr(log_file);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name} does not start: {e}"));
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let proc = Proc { name: name.to_string(), child: Some(child), log: log.to_path_buf() };
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(ready) => return (proc, line),
            Ok(_) => {}
            Err(_) => panic!(
                "{name} did not print {ready:?} within {timeout:?}; its log {}:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
}

/// A free 127.0.0.1 port (bound and released: a tiny race other tests do not hit).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Scheduler {
    pub proc: Proc,
    pub grpc: String,
    pub http: String,
}

pub fn start_scheduler(dir: &Path) -> Scheduler {
    let (grpc, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    start_scheduler_at(dir, grpc, http)
}

/// A scheduler on given addresses (a restart keeps the ones the peers know).
pub fn start_scheduler_at(dir: &Path, grpc: String, http: String) -> Scheduler {
    start_scheduler_with(dir, grpc, http, "")
}

/// A scheduler whose `[scheduler]` table also holds `scheduler_keys` (TOML lines).
pub fn start_scheduler_with(dir: &Path, grpc: String, http: String, scheduler_keys: &str) -> Scheduler {
    start_scheduler_full(dir, grpc, http, "", scheduler_keys)
}

/// A scheduler whose `[service]` and `[scheduler]` tables also hold these TOML lines.
pub fn start_scheduler_full(
    dir: &Path,
    grpc: String,
    http: String,
    service_keys: &str,
    scheduler_keys: &str,
) -> Scheduler {
    let config = dir.join("scheduler.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\ngrpc = \"{grpc}\"\nhttp = \"{http}\"\n[service]\nrng_seed = 7\n{service_keys}\n[log]\nfilter = \"{log}\"\n[scheduler]\npolicy = \"default\"\n{scheduler_keys}\n",
            log = log_filter()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(binary("scheduler"));
    cmd.args(["--config", config.to_str().unwrap()]);
    let log = dir.join("scheduler.log");
    let log_file = std::fs::File::create(&log).unwrap();
    cmd.env_remove("RUST_LOG").stdout(Stdio::null()).stderr(log_file);
    let child = cmd.spawn().expect("scheduler starts");
    let proc = Proc { name: "scheduler".into(), child: Some(child), log };
    // Ready when /healthz answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&http, "/healthz").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(
            Instant::now() < deadline,
            "scheduler not healthy within 30 s: {}",
            std::fs::read_to_string(&proc.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Scheduler { proc, grpc, http }
}

/// Settings of one peer daemon.
#[derive(Clone)]
pub struct PeerOptions {
    pub seed: bool,
    /// Bytes/s the daemon downloads at most (token bucket); none: unlimited.
    pub download_rate: Option<u64>,
    pub quota_bytes: u64,
    pub piece_bytes: u64,
    /// Keys of the `[peer]` table besides the piece size (TOML lines).
    pub peer_toml: String,
    /// Keys of the `[storage]` table besides the directory and quota (TOML lines), e.g.
    /// `meta_flush_pieces = 1`.
    pub storage_toml: String,
    /// The store's directory; none: `DIR/<name>-store`.
    pub store_dir: Option<PathBuf>,
    /// TOML appended to the configuration (e.g. a `[mirror]` section).
    pub extra_toml: String,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            seed: false,
            download_rate: None,
            quota_bytes: 8 << 30,
            piece_bytes: 4 << 20,
            peer_toml: String::new(),
            storage_toml: String::new(),
            store_dir: None,
            extra_toml: String::new(),
        }
    }
}

pub struct Peer {
    pub proc: Proc,
    pub name: String,
    /// The data plane's address.
    pub data: String,
    pub local_api: String,
    pub http: String,
    /// The registry mirror's address (`off` when disabled).
    pub mirror: String,
    /// A seed's manifest resolver (`off` on normal hosts).
    pub resolver: String,
    pub store_dir: PathBuf,
    pub config: PathBuf,
}

pub fn write_peer_config(dir: &Path, name: &str, scheduler: Option<&str>, o: &PeerOptions) -> (PathBuf, PathBuf) {
    let store_dir = o.store_dir.clone().unwrap_or_else(|| dir.join(format!("{name}-store")));
    let config = dir.join(format!("{name}.toml"));
    // Replicas: addresses separated by commas.
    let schedulers = scheduler
        .map(|s| s.split(',').map(|a| format!("\"http://{a}\"")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let rate = o
        .download_rate
        .map(|r| format!("download_rate = {{ bytes_per_s = {r}, burst_bytes = {} }}\n", 4 << 20))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[host]\nid = \"{name}\"\nkind = \"{kind}\"\n\
             [listen]\ndata = \"127.0.0.1:0\"\nlocal_api = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nmirror = \"127.0.0.1:0\"\nresolver = \"127.0.0.1:0\"\n\
             [scheduler]\naddresses = [{schedulers}]\nannounce_interval_ms = 2000\n\
             [storage]\ndir = \"{store}\"\nquota_bytes = {quota}\n{storage_keys}\n\
             [peer]\npiece_sizing = {{ rule = \"fixed\", piece_bytes = {piece} }}\n{peer_keys}\n\
             [origin]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [dataplane.client]\nrequest_timeout_ms = 10000\n{rate}\
             [log]\nfilter = \"{log}\"\n{extra}",
            log = log_filter(),
            kind = if o.seed { "seed" } else { "normal" },
            store = store_dir.display(),
            quota = o.quota_bytes,
            piece = o.piece_bytes,
            peer_keys = o.peer_toml,
            storage_keys = o.storage_toml,
            extra = o.extra_toml,
        ),
    )
    .unwrap();
    (config, store_dir)
}

/// Starts a daemon from a config written by `write_peer_config`.
pub fn start_peer_with(dir: &Path, name: &str, config: PathBuf, store_dir: PathBuf) -> Peer {
    let mut cmd = Command::new(binary("peerd"));
    cmd.args(["--config", config.to_str().unwrap()]);
    let (proc, line) = spawn_until(name, cmd, &dir.join(format!("{name}.log")), "peerd ready", Duration::from_secs(30));
    let field = |key: &str| -> String {
        line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap_or_default().to_string()
    };
    Peer {
        proc,
        name: name.to_string(),
        data: field("data"),
        local_api: field("local_api"),
        http: field("http"),
        mirror: field("mirror"),
        resolver: field("resolver"),
        store_dir,
        config,
    }
}

/// A daemon; `scheduler`: the scheduler's gRPC address, or replicas' separated by commas.
pub fn start_peer(dir: &Path, name: &str, scheduler: Option<&str>, o: &PeerOptions) -> Peer {
    let (config, store_dir) = write_peer_config(dir, name, scheduler, o);
    start_peer_with(dir, name, config, store_dir)
}

impl Peer {
    /// Waits until the daemon's log holds `needle` at least `times` times (the log starts
    /// afresh with each start of the daemon).
    pub fn wait_for_log(&self, needle: &str, times: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let log = std::fs::read_to_string(&self.proc.log).unwrap_or_default();
            if log.matches(needle).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {needle:?} not logged {times} times within {within:?}:\n{log}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of a Prometheus sample, e.g. `peer_download_bytes_total{source="parent"}`.
    pub fn metric(&self, sample: &str) -> u64 {
        metric_at(&self.http, sample)
    }
}

/// The value of a Prometheus sample at the `/metrics` of `http` (a daemon's or a
/// scheduler's); 0 when absent.
pub fn metric_at(http: &str, sample: &str) -> u64 {
    let body = http_get(http, "/metrics").unwrap_or_default();
    body.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse::<f64>().ok())).map_or(0, |v| v as u64)
}

/// The longest any one `dfget` of the suites may take.
pub const DFGET_TIMEOUT: Duration = Duration::from_secs(180);

/// `dfget` through a daemon; returns its output (exit status, stdout, stderr). Killed, and
/// the test failed, after `DFGET_TIMEOUT`.
pub fn dfget(local_api: &str, url: &str, output: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(binary("dfget"));
    cmd.args([url, "-O", output.to_str().unwrap(), "--daemon", local_api, "--quiet"]).args(extra);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("dfget runs");
    let deadline = Instant::now() + DFGET_TIMEOUT;
    while child.try_wait().expect("dfget wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dfget {url} via {local_api} did not end within {DFGET_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("dfget output")
}

/// `dfget` of `url` through every daemon at once, each to `DIR/<name>.out`; the outputs
/// and output paths in the daemons' order.
pub fn dfget_all(peers: &[Peer], url: &str, dir: &Path) -> Vec<(Output, PathBuf)> {
    std::thread::scope(|s| dfget_each(s, peers, url, dir).into_iter().map(|h| h.join().unwrap()).collect())
}

/// `dfget_all` started on the scope `s` and not waited for, so the test can act on the
/// cluster (kill a member) while the downloads run: one handle per daemon, in order.
pub fn dfget_each<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    peers: &[Peer],
    url: &str,
    dir: &Path,
) -> Vec<std::thread::ScopedJoinHandle<'s, (Output, PathBuf)>> {
    peers
        .iter()
        .map(|p| {
            let (api, url, out) = (p.local_api.clone(), url.to_string(), dir.join(format!("{}.out", p.name)));
            s.spawn(move || (dfget(&api, &url, &out, &[]), out))
        })
        .collect()
}

/// A raw HTTP GET (one request per connection); the whole response, head included.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A fresh directory for one test's files.
/// The daemons' log filter: `info`, or `$E2E_LOG` (e.g. `peer=debug,sched=debug`) to debug a test.
fn log_filter() -> String {
    std::env::var("E2E_LOG").ok().filter(|f| !f.is_empty() && !f.contains('"')).unwrap_or_else(|| "info".into())
}

pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pimg-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic incompressible bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut out = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The task directories (`tasks/<id>/`, holding `content` and `meta.json`) of a store.
pub fn task_dirs(store_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(store_dir.join("tasks"))
        .map(|l| l.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Whether this process runs as root (mounts need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().next() == Some("0"))))
        .unwrap_or(false)
}

/// A tmpfs of a fixed size mounted at a directory, unmounted (lazily, so a process still
/// holding a file there cannot keep it) and removed when dropped, on every path out of a
/// test. Declare it before the processes that use it: they are dropped (killed) first.
pub struct TmpfsMount {
    pub dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `bytes` at `dir` (created). Needs root: Err says why it failed.
    pub fn new(dir: &Path, bytes: u64) -> Result<TmpfsMount, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0755"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs at {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(TmpfsMount { dir: dir.to_path_buf() })
    }

    /// Bytes free on the mount (`df`'s "Avail").
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.dir).output();
        out.ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0)
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
