//! Our side of the swarm benchmark: scheduler + seed peer + N peers as real processes on
//! 127.0.0.1; the seed is warmed with one untimed dfget; then N concurrent dfgets with
//! `--digest`, timed until the last exits, outputs verified afterwards.

use super::cpu;
use super::{verify_file, RunResult, Swarm};
use crate::cluster::{self, Peer};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A peer's configuration: the suites' defaults plus the piece size and connection settings
/// under test.
fn peer_config(dir: &Path, name: &str, scheduler: &str, seed: bool, s: &Swarm) -> String {
    let store = dir.join(format!("{name}-store"));
    format!(
        "[host]\nid = \"{name}\"\nkind = \"{kind}\"\n\
         [listen]\ndata = \"127.0.0.1:0\"\nlocal_api = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nmirror = \"127.0.0.1:0\"\n\
         [scheduler]\naddresses = [\"http://{scheduler}\"]\nannounce_interval_ms = 2000\n\
         [storage]\ndir = \"{store}\"\nquota_bytes = {quota}\n\
         [peer]\npiece_sizing = {{ rule = \"fixed\", piece_bytes = {piece} }}\n\
         [origin]\nallowed_networks = [\"127.0.0.0/8\"]\n\
         [log]\nfilter = \"warn\"\n{extra}",
        kind = if seed { "seed" } else { "normal" },
        store = store.display(),
        quota = (s.size_bytes * 2).max(1 << 30),
        piece = s.piece_bytes,
        extra = s.peer_extra_toml,
    )
}

fn start_peer(dir: &Path, name: &str, scheduler: &str, seed: bool, s: &Swarm) -> Peer {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, peer_config(dir, name, scheduler, seed, s)).expect("peer config");
    cluster::start_peer_with(dir, name, config, dir.join(format!("{name}-store")))
}

fn dfget(peer: &Peer, s: &Swarm, output: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(cluster::binary("dfget"));
    cmd.args([&s.url, "-O"])
        .arg(output)
        .args(["--digest", &s.digest, "--daemon", &peer.local_api, "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("dfget log"));
    cmd
}

pub fn run(s: &Swarm, run: u32) -> Result<RunResult, String> {
    let dir = s.work.join(format!("ours-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(s, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(s: &Swarm, dir: &Path) -> Result<RunResult, String> {
    let mut scheduler = cluster::start_scheduler(dir);
    let mut seed = start_peer(dir, "seed", &scheduler.grpc, true, s);
    let mut peers: Vec<Peer> =
        (1..=s.peers).map(|i| start_peer(dir, &format!("peer{i}"), &scheduler.grpc, false, s)).collect();

    // Untimed: the seed fetches the file from the origin, so it starts as "one seeder has it".
    let warm = dir.join("warm.bin");
    let finished =
        crate::bounded_cmd::run(dfget(&seed, s, &warm, &dir.join("warm.log")), &dir.join("warm"), s.timeout)?;
    finished.ok("warming dfget through the seed")?;
    let _ = std::fs::remove_file(&warm);

    let mut daemons: Vec<u32> = vec![scheduler.proc.pid(), seed.proc.pid()];
    daemons.extend(peers.iter().map(|p| p.proc.pid()));
    let (load1, ticks0) = (cpu::load1(), cpu::machine_ticks());
    let each = |pids: &[u32]| pids.iter().map(|&p| cpu::process_seconds(p).unwrap_or(0.0)).collect::<Vec<f64>>();
    let (each0, children_cpu0) = (each(&daemons), cpu::waited_children_seconds());
    let outputs: Vec<_> = (1..=s.peers).map(|i| dir.join(format!("out{i}.bin"))).collect();
    let started = Instant::now();
    let mut clients = Vec::new();
    for (peer, out) in peers.iter().zip(&outputs) {
        let log = dir.join(format!("dfget-{}.log", peer.name));
        let child = dfget(peer, s, out, &log).spawn().map_err(|e| format!("dfget does not start: {e}"))?;
        clients.push((child, None::<(Duration, bool)>));
    }
    let deadline = started + s.timeout;
    while clients.iter().any(|c| c.1.is_none()) && Instant::now() < deadline {
        for (child, done) in clients.iter_mut().filter(|c| c.1.is_none()) {
            if let Ok(Some(status)) = child.try_wait() {
                *done = Some((started.elapsed(), status.success()));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed();
    for (child, done) in clients.iter_mut().filter(|c| c.1.is_none()) {
        let _ = child.kill();
        let _ = child.wait();
        *done = Some((wall, false));
    }
    // Per process: scheduler, seed, then the peers.
    let spent: Vec<f64> = each(&daemons).iter().zip(&each0).map(|(a, b)| a - b).collect();
    let dfget_cpu = cpu::waited_children_seconds() - children_cpu0;
    let cpu_s = spent.iter().sum::<f64>() + dfget_cpu;
    let busy = cpu::busy_percent(ticks0, cpu::machine_ticks());

    let mut failures = Vec::new();
    for (i, (_, done)) in clients.iter().enumerate() {
        if done.is_some_and(|d| !d.1) {
            let log = dir.join(format!("dfget-peer{}.log", i + 1));
            failures.push(format!(
                "peer{}: dfget failed: {}",
                i + 1,
                std::fs::read_to_string(log).unwrap_or_default().trim()
            ));
        }
    }
    let verified = outputs.iter().filter(|o| verify_file(o, &s.digest)).count();
    let from_origin: u64 = peers.iter().map(|p| p.metric("peer_download_bytes_total{source=\"origin\"}")).sum();

    let grace = Duration::from_secs(5);
    for p in peers.iter_mut() {
        p.proc.stop(grace);
    }
    seed.proc.stop(grace);
    scheduler.proc.stop(grace);

    Ok(RunResult {
        times: clients.iter().filter_map(|c| c.1.map(|d| d.0)).collect(),
        ok: clients.iter().filter(|c| c.1.is_some_and(|d| d.1)).count(),
        verified,
        cpu_s,
        busy_pct: busy,
        load1,
        note: format!(
            "cpu_scheduler_s={:.1} cpu_seed_s={:.1} cpu_peers_s={:.1} cpu_dfget_s={:.1} peers_origin_MB={:.1}",
            spent[0],
            spent[1],
            spent[2..].iter().sum::<f64>(),
            dfget_cpu,
            from_origin as f64 / 1e6
        ),
        failures,
    })
}
