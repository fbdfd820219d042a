//! The BitTorrent baseline of the swarm benchmark: opentracker (Debian's build only tracks
//! whitelisted info-hashes), a private torrent of 2^k-byte pieces made by mktorrent, one
//! aria2c seeder that hash-checks the file first (`-V`), then N aria2c leechers at once. A
//! leecher's completion time comes from its `--on-bt-download-complete` hook; leechers keep
//! seeding to the others after they complete (`--seed-ratio=0.0`), as our peers keep serving.

use super::cpu;
use super::{verify_file, RunResult, Swarm};
use crate::cluster::{http_get, Proc};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The payload name inside the torrent (and the file every leecher writes).
const NAME: &str = "payload.bin";

/// Made once per benchmark: the seeder's directory (holding the payload), the torrent, and
/// the tracker's port that the torrent announces to.
pub struct Torrent {
    seed_dir: PathBuf,
    file: PathBuf,
    info_hash: String,
    tracker_port: u16,
}

fn run_tool(mut cmd: Command, scratch: &Path, what: &str) -> Result<String, String> {
    cmd.stdin(Stdio::null());
    let done = crate::bounded_cmd::run(cmd, scratch, Duration::from_secs(300))?.ok(what)?;
    Ok(done.stdout)
}

/// Installs aria2, opentracker and mktorrent with apt when one is missing.
pub fn ensure_tools(work: &Path) -> Result<(), String> {
    let missing: Vec<&str> = [("aria2c", "aria2"), ("opentracker", "opentracker"), ("mktorrent", "mktorrent")]
        .iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("swarm-bench: installing {missing:?} with apt-get");
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y"]).args(&missing);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    run_tool(cmd, &work.join("apt"), "apt-get install").map(|_| ())
}

/// Links (or copies) the payload into the seeder's directory and makes the torrent.
pub fn prepare(s: &Swarm, payload: &Path) -> Result<Torrent, String> {
    let seed_dir = s.work.join("bt-seed");
    let _ = std::fs::remove_dir_all(&seed_dir);
    std::fs::create_dir_all(&seed_dir).map_err(|e| format!("{}: {e}", seed_dir.display()))?;
    let file = seed_dir.join(NAME);
    if std::fs::hard_link(payload, &file).is_err() {
        std::fs::copy(payload, &file).map_err(|e| format!("copy to {}: {e}", file.display()))?;
    }
    let tracker_port = listen_port()?;
    let torrent = s.work.join("payload.torrent");
    let _ = std::fs::remove_file(&torrent);
    let mut mk = Command::new("mktorrent");
    mk.args(["-p", "-l", &s.bt_piece_log2.to_string(), "-a"])
        .arg(format!("http://127.0.0.1:{tracker_port}/announce"))
        .arg("-o")
        .arg(&torrent)
        .arg(&file);
    run_tool(mk, &s.work.join("mktorrent"), "mktorrent")?;
    let mut show = Command::new("aria2c");
    show.arg("-S").arg(&torrent);
    let shown = run_tool(show, &s.work.join("aria2-show"), "aria2c -S")?;
    let info_hash = shown
        .lines()
        .find_map(|l| l.strip_prefix("Info Hash: "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| format!("aria2c -S printed no info hash:\n{shown}"))?;
    Ok(Torrent { seed_dir, file: torrent, info_hash, tracker_port })
}

/// A port for a listener that stays free until the listener binds it: ports handed out by the
/// kernel (port 0) come from the ephemeral range, where the peers' own outgoing connections
/// may take them first, so pick below that range (bound and released here: only another
/// listener could race for it).
fn listen_port() -> Result<u16, String> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (20000u16, ephemeral_low.clamp(20100, 32768));
    let start = (std::process::id() % u32::from(high - low)) as u16;
    for _ in 0..(high - low) {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % (high - low);
        let port = low + offset;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(format!("no free listening port in {low}..{high}"))
}

fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child =
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().map_err(|e| format!("{name} does not start: {e}"))?;
    Ok(Proc::from_child(name, child, log.to_path_buf()))
}

/// Complete peers (seeders) the tracker knows for the torrent, from its /scrape.
fn seeders(t: &Torrent) -> u32 {
    let hash: String =
        t.info_hash.as_bytes().chunks(2).map(|pair| format!("%{}", String::from_utf8_lossy(pair))).collect();
    let addr = format!("127.0.0.1:{}", t.tracker_port);
    let Some(reply) = get_bytes(&addr, &format!("/scrape?info_hash={hash}")) else {
        return 0;
    };
    // Bencoded, with the raw info-hash as a key: not UTF-8.
    String::from_utf8_lossy(&reply)
        .split_once("8:completei")
        .and_then(|(_, rest)| rest.split('e').next()?.parse().ok())
        .unwrap_or(0)
}

/// A raw HTTP GET whose reply may hold any bytes (`http_get` wants UTF-8).
fn get_bytes(addr: &str, path: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    Some(out)
}

fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while !ready() {
        if Instant::now() > deadline {
            return Err(format!("{what} within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn aria2c(dir: &Path, log: &Path) -> Result<Command, String> {
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        "--seed-ratio=0.0",
        "--file-allocation=none",
        "--max-overall-upload-limit=0",
        "--max-upload-limit=0",
        "--max-overall-download-limit=0",
        "--bt-max-peers=0",
        "--bt-request-peer-speed-limit=1000M",
        "--bt-tracker-interval=5",
        "--bt-tracker-connect-timeout=5",
        "--bt-tracker-timeout=5",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--log-level=notice",
        "--interface=127.0.0.1",
    ])
    .arg(format!("--stop-with-process={}", std::process::id()))
    .arg(format!("--listen-port={}", listen_port()?))
    .arg(format!("--dir={}", dir.display()))
    .arg(format!("--log={}", log.display()));
    Ok(cmd)
}

pub fn run(s: &Swarm, t: &Torrent, run: u32) -> Result<RunResult, String> {
    let dir = s.work.join(format!("bt-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut procs = Vec::new();
    let result = run_in(s, t, &dir, &mut procs);
    for p in procs.iter_mut() {
        p.stop(Duration::from_secs(5));
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(s: &Swarm, t: &Torrent, dir: &Path, procs: &mut Vec<Proc>) -> Result<RunResult, String> {
    // The tracker chroots into its directory and reads the whitelist there.
    let tracker_dir = dir.join("tracker");
    std::fs::create_dir_all(&tracker_dir).map_err(|e| e.to_string())?;
    std::fs::write(tracker_dir.join("whitelist.txt"), format!("{}\n", t.info_hash)).map_err(|e| e.to_string())?;
    let port = t.tracker_port.to_string();
    let mut tracker = Command::new("opentracker");
    tracker.args(["-i", "127.0.0.1", "-p", &port, "-P", &port, "-d"]).arg(&tracker_dir).args([
        "-u",
        "nobody",
        "-w",
        "whitelist.txt",
    ]);
    procs.push(spawn("opentracker", tracker, &dir.join("tracker.log"))?);
    let (stats, tracker_pid) = (format!("127.0.0.1:{port}"), procs[0].pid());
    wait_until("opentracker did not answer", Duration::from_secs(10), || {
        http_get(&stats, "/stats").is_some() || !cpu::alive(tracker_pid)
    })?;
    if !cpu::alive(tracker_pid) {
        let log = std::fs::read_to_string(dir.join("tracker.log")).unwrap_or_default();
        return Err(format!("opentracker exited: {}", log.trim()));
    }

    // The seeder: hash-checks the payload (-V), then announces itself complete.
    let _ = std::fs::remove_file(t.seed_dir.join(format!("{NAME}.aria2")));
    let mut seeder = aria2c(&t.seed_dir, &dir.join("seeder.log"))?;
    seeder.arg("-V").arg(&t.file);
    procs.push(spawn("aria2c-seeder", seeder, &dir.join("seeder.out"))?);
    let (seeder_pid, seeder_out) = (procs[1].pid(), dir.join("seeder.out"));
    wait_until("the aria2c seeder was not announced as complete", s.timeout, || {
        seeders(t) >= 1 || !cpu::alive(seeder_pid)
    })?;
    if !cpu::alive(seeder_pid) {
        let out = std::fs::read_to_string(&seeder_out).unwrap_or_default();
        return Err(format!("the aria2c seeder exited: {}", out.trim()));
    }

    let hook = dir.join("done-hook.sh");
    let done_log = dir.join("done.log");
    std::fs::write(&hook, format!("#!/bin/sh\necho \"$(date +%s.%N) $3\" >>'{}'\n", done_log.display()))
        .map_err(|e| e.to_string())?;
    let mut perms = std::fs::metadata(&hook).map_err(|e| e.to_string())?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).map_err(|e| e.to_string())?;

    let mut pids: Vec<u32> = procs.iter().map(|p| p.pid()).collect();
    let (load1, ticks0, cpu0) = (cpu::load1(), cpu::machine_ticks(), cpu::sum_seconds(&pids));
    let epoch0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let started = Instant::now();
    let mut outputs = Vec::new();
    for i in 1..=s.peers {
        let peer_dir = dir.join(format!("leecher{i}"));
        std::fs::create_dir_all(&peer_dir).map_err(|e| e.to_string())?;
        let mut leecher = aria2c(&peer_dir, &dir.join(format!("leecher{i}.log")))?;
        leecher.arg(format!("--on-bt-download-complete={}", hook.display())).arg(&t.file);
        let name = format!("aria2c-leecher{i}");
        procs.push(spawn(&name, leecher, &dir.join(format!("leecher{i}.out")))?);
        outputs.push(peer_dir.join(NAME));
    }
    pids.extend(procs.iter().skip(2).map(|p| p.pid()));
    let done_times = || -> Vec<f64> {
        std::fs::read_to_string(&done_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .map(|t| (t - epoch0).max(0.0))
            .collect()
    };
    let deadline = started + s.timeout;
    let leechers: Vec<u32> = procs.iter().skip(2).map(|p| p.pid()).collect();
    while done_times().len() < s.peers as usize && Instant::now() < deadline {
        // A leecher that exited without completing (a bad option, a port taken) never will.
        let exited = leechers.iter().filter(|&&p| !cpu::alive(p)).count();
        if done_times().len() + exited >= s.peers as usize {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed();
    let cpu_s = cpu::sum_seconds(&pids) - cpu0;
    let busy = cpu::busy_percent(ticks0, cpu::machine_ticks());
    let times: Vec<Duration> = done_times().into_iter().map(Duration::from_secs_f64).collect();
    let ok = times.len();
    let mut failures = Vec::new();
    if ok < s.peers as usize {
        failures.push(format!("{} of {} leechers completed within {:.0} s", ok, s.peers, wall.as_secs_f64()));
    }
    for p in procs.iter_mut() {
        p.stop(Duration::from_secs(5));
    }
    let verified = outputs.iter().filter(|o| verify_file(o, &s.digest)).count();
    Ok(RunResult {
        times,
        ok,
        verified,
        cpu_s,
        busy_pct: busy,
        load1,
        note: format!("piece=2^{}", s.bt_piece_log2),
        failures,
    })
}
