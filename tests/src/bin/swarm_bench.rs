//! `e2e-swarm-bench`: 1 seed + N peers share one file on 127.0.0.1; ours (scheduler, peerd,
//! dfget --digest) against aria2 BitTorrent (opentracker, mktorrent, aria2c), alternating in
//! the same run. Prints one line per run and system, then medians, the ratio and CPU seconds.
//! See bench/README.md.
#![forbid(unsafe_code)]

use e2e::cluster::{random_bytes, sha256_hex};
use e2e::origin_server::Origin;
use e2e::swarm::{bittorrent, median, ours, RunResult, Swarm};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
usage: e2e-swarm-bench [options]

  --runs N             timed runs of each system, alternating (default 3)
  --peers N            downloading peers / leechers besides the seed (default 8)
  --size-mib N         file size (default 500)
  --piece-mib N        our piece size (default 4)
  --bt-piece-log2 K    BitTorrent piece size 2^K bytes (default 20: 1 MiB)
  --only ours|bt       run one system only
  --peer-toml FILE     TOML tables appended to every peer's configuration
  --work DIR           scratch directory (default /tmp/p2pimg-swarm-bench; emptied)
  --timeout-s N        bound of each wait (default 600)
";

struct Args {
    runs: u32,
    peers: u32,
    size_mib: u64,
    piece_mib: u64,
    bt_piece_log2: u32,
    ours: bool,
    bt: bool,
    peer_toml: Option<PathBuf>,
    work: PathBuf,
    timeout_s: u64,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        runs: 3,
        peers: 8,
        size_mib: 500,
        piece_mib: 4,
        bt_piece_log2: 20,
        ours: true,
        bt: true,
        peer_toml: None,
        work: PathBuf::from("/tmp/p2pimg-swarm-bench"),
        timeout_s: 600,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |min: u64, max: u64| -> Result<u64, String> {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{flag} {value:?}: expected a whole number {min}..={max}"))
        };
        match flag.as_str() {
            "--runs" => a.runs = number(1, 100)? as u32,
            "--peers" => a.peers = number(1, 64)? as u32,
            "--size-mib" => a.size_mib = number(1, 8192)?,
            "--piece-mib" => a.piece_mib = number(1, 64)?,
            "--bt-piece-log2" => a.bt_piece_log2 = number(15, 26)? as u32,
            "--timeout-s" => a.timeout_s = number(1, 3600)?,
            "--work" => a.work = PathBuf::from(&value),
            "--peer-toml" => a.peer_toml = Some(PathBuf::from(&value)),
            "--only" => match value.as_str() {
                "ours" => a.bt = false,
                "bt" => a.ours = false,
                _ => return Err(format!("--only {value:?}: expected ours or bt")),
            },
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    Ok(Some(a))
}

fn print_run(system: &str, run: u32, r: &RunResult, peers: u32) {
    let mut t: Vec<f64> = r.times.iter().map(Duration::as_secs_f64).collect();
    t.sort_by(f64::total_cmp);
    println!(
        "swarm_run system={system} run={run} peers={peers} ok={} verified={} all_done_s={:.2} \
         first_s={:.2} median_s={:.2} cpu_s={:.1} machine_busy_pct={:.0} load1={:.2} {}",
        r.ok,
        r.verified,
        r.all_done_s(),
        t.first().copied().unwrap_or(f64::NAN),
        median(&t).unwrap_or(f64::NAN),
        r.cpu_s,
        r.busy_pct,
        r.load1,
        r.note
    );
    for f in &r.failures {
        println!("swarm_failure system={system} run={run} {f}");
    }
}

/// Medians of all-done seconds and CPU seconds over the complete runs.
fn summary(system: &str, results: &[RunResult], s: &Swarm) -> Option<(f64, f64)> {
    let complete: Vec<&RunResult> = results.iter().filter(|r| r.complete(s.peers)).collect();
    let wall = median(&complete.iter().map(|r| r.all_done_s()).collect::<Vec<_>>());
    let cpu = median(&complete.iter().map(|r| r.cpu_s).collect::<Vec<_>>());
    let load = median(&results.iter().map(|r| r.load1).collect::<Vec<_>>());
    println!(
        "swarm_result system={system} runs={} complete={} median_all_done_s={:.2} median_cpu_s={:.1} \
         median_load1={:.2} size_MiB={} peers={}",
        results.len(),
        complete.len(),
        wall.unwrap_or(f64::NAN),
        cpu.unwrap_or(f64::NAN),
        load.unwrap_or(f64::NAN),
        s.size_bytes >> 20,
        s.peers
    );
    Some((wall?, cpu?))
}

fn run(a: Args) -> Result<bool, String> {
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work).map_err(|e| format!("{}: {e}", a.work.display()))?;
    if a.bt {
        bittorrent::ensure_tools(&a.work)?;
    }
    let size_bytes = a.size_mib << 20;
    eprintln!("swarm-bench: generating {} MiB of payload", a.size_mib);
    let payload = Arc::new(random_bytes(size_bytes as usize, 0x5eed));
    let digest = format!("sha256:{}", sha256_hex(&payload));
    let payload_file = a.work.join("payload.bin");
    std::fs::write(&payload_file, &*payload).map_err(|e| format!("{}: {e}", payload_file.display()))?;
    let origin = Origin::start();
    let url = origin.put("/swarm/payload.bin", payload);
    let peer_extra_toml = match &a.peer_toml {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("--peer-toml {}: {e}", p.display()))?,
        None => String::new(),
    };
    let s = Swarm {
        work: a.work.clone(),
        peers: a.peers,
        size_bytes,
        piece_bytes: a.piece_mib << 20,
        bt_piece_log2: a.bt_piece_log2,
        peer_extra_toml,
        url,
        digest,
        timeout: Duration::from_secs(a.timeout_s),
    };
    let torrent = if a.bt { Some(bittorrent::prepare(&s, &payload_file)?) } else { None };
    let (mut ours_results, mut bt_results) = (Vec::new(), Vec::new());
    for run in 1..=a.runs {
        // Alternate which system goes first, so a trend in the machine's load hits both.
        let order = if run % 2 == 1 { [true, false] } else { [false, true] };
        for ours_now in order {
            if ours_now && a.ours {
                let r = ours::run(&s, run)?;
                print_run("ours", run, &r, s.peers);
                ours_results.push(r);
            } else if !ours_now {
                if let Some(t) = &torrent {
                    let r = bittorrent::run(&s, t, run)?;
                    print_run("aria2", run, &r, s.peers);
                    bt_results.push(r);
                }
            }
        }
    }
    let o = a.ours.then(|| summary("ours", &ours_results, &s)).flatten();
    let b = a.bt.then(|| summary("aria2", &bt_results, &s)).flatten();
    if let (Some((ow, oc)), Some((bw, bc))) = (o, b) {
        println!(
            "swarm_ratio ours_over_aria2_time={:.2} (target <= 0.50) ours_s={ow:.2} aria2_s={bw:.2} \
             ours_cpu_s={oc:.1} aria2_cpu_s={bc:.1}",
            ow / bw
        );
    }
    let all_complete = ours_results.iter().chain(&bt_results).all(|r| r.complete(s.peers));
    let _ = std::fs::remove_dir_all(&a.work);
    Ok(all_complete)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("e2e-swarm-bench: {e} (--help shows the usage)");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("e2e-swarm-bench: some runs did not complete or verify (swarm_failure lines)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("e2e-swarm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
