//! One parent serving one child on loopback: verified piece throughput.
//!
//! The parent's store (on disk under /tmp) holds one task of `PIECES` x 4 MiB pieces. Each
//! iteration the child fetches every piece over the data plane: the parent re-hashes each
//! piece as it reads it from its store, the child hashes what it received and compares with
//! the advertised digest. `..._into_store` also writes every piece into the child's own
//! store (a second store under /tmp). `crc32_4mib` is one core computing piece digests, and
//! `sha256_4mib` one core hashing as the whole-content check does, for reference.
//!
//! `..._tls` runs the same transfer over mutual TLS (`[tls]`: rustls, ring, a throwaway CA)
//! against a second server over the same store.
//!
//! Run: `cargo bench -p peer --bench dataplane` (criterion prints its estimates; the bench
//! also prints the median, min and max of the per-transfer throughput at the end).

use criterion::{Criterion, Throughput};
use peer::dataplane::{ClientConfig, PeerClient, RateLimit, Server, ServerConfig};
use peer::storage::{PieceDigest, Sha256Digest, Store, StoreConfig, TaskSpec, VerifiedPiece};
use peer::task_id::TaskId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PIECE_BYTES: u64 = 4 << 20;
const PIECES: u32 = 128; // 512 MiB per transfer

struct Setup {
    rt: tokio::runtime::Runtime,
    _parent_store: Arc<Store>,
    child_store: Arc<Store>,
    server: Server,
    tls_server: Server,
    tls: svc::tls::Tls,
    task: TaskId,
    digests: Vec<PieceDigest>,
    _dirs: (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir),
}

fn content(piece: u32) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ piece as u64;
    (0..PIECE_BYTES / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn spec(task: TaskId) -> TaskSpec {
    TaskSpec {
        id: task,
        url: "http://origin/bench".into(),
        content_bytes: PIECES as u64 * PIECE_BYTES,
        piece_bytes: PIECE_BYTES,
        content_digest: None,
    }
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dirs = (tempfile::tempdir_in("/tmp").unwrap(), tempfile::tempdir_in("/tmp").unwrap());
    let open = |dir: &tempfile::TempDir| {
        let config = StoreConfig { dir: dir.path().into(), quota_bytes: 4 << 30, ..Default::default() };
        Arc::new(Store::open(config).unwrap().0)
    };
    let (parent_store, child_store) = (open(&dirs.0), open(&dirs.1));
    let task = TaskId::from_bytes([0xbe; 32]);
    parent_store.create_task(spec(task)).unwrap();
    let mut digests = Vec::new();
    for p in 0..PIECES {
        let piece = VerifiedPiece::new(content(p));
        digests.push(*piece.digest());
        parent_store.write_piece(&task, p, &piece, None).unwrap();
    }
    parent_store.complete_task(&task).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = rt.block_on(Server::bind(addr, parent_store.clone(), ServerConfig::default())).unwrap();
    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let mut ca = svc::tls::test_certs::TestCa::new("bench CA");
    let tls = svc::tls::Tls::load(&ca.write(certs.path(), "peer", &["bench.test"], Some("bench.test"))).unwrap();
    let tls_config = ServerConfig { tls: Some(tls.clone()), ..ServerConfig::default() };
    let tls_server = rt.block_on(Server::bind(addr, parent_store.clone(), tls_config)).unwrap();
    let dirs = (dirs.0, dirs.1, certs);
    Setup { rt, _parent_store: parent_store, child_store, server, tls_server, tls, task, digests, _dirs: dirs }
}

/// Fetches every piece with `in_flight` concurrent requests; returns the bytes received.
async fn transfer(setup: &Setup, client: &Arc<PeerClient>, in_flight: u32, into_store: bool, tls: bool) -> u64 {
    let next = Arc::new(AtomicU32::new(0));
    let digests = Arc::new(setup.digests.clone());
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (client, next, digests) = (client.clone(), next.clone(), digests.clone());
        let server = if tls { &setup.tls_server } else { &setup.server };
        let (addr, task) = (server.local_addr(), setup.task);
        let sink = into_store.then(|| setup.child_store.clone());
        workers.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            loop {
                let p = next.fetch_add(1, Ordering::Relaxed);
                if p >= PIECES {
                    return bytes;
                }
                let piece = client.fetch_piece(addr, &task, p, &digests[p as usize]).await.expect("fetch");
                bytes += piece.len() as u64;
                let piece = match &sink {
                    Some(store) => {
                        let store = store.clone();
                        let write = move || store.write_piece(&task, p, &piece, None).map(|_| piece);
                        tokio::task::spawn_blocking(write).await.unwrap().expect("store write")
                    }
                    None => piece,
                };
                client.recycle(piece);
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    total
}

/// CPU time (user + system) of this process, or of this thread, from /proc.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// sha256 of 4 MiB buffers on one thread for about two seconds: GB/s of wall time and of CPU
/// time (the machine may be shared, so the second is the hash's real speed).
fn sha256_calibration() -> (f64, f64) {
    let piece = content(1);
    let (wall0, cpu0) = (Instant::now(), cpu_seconds("/proc/thread-self/stat"));
    let mut hashed = 0u64;
    while wall0.elapsed() < Duration::from_secs(2) {
        std::hint::black_box(Sha256Digest::of(std::hint::black_box(&piece)));
        hashed += piece.len() as u64;
    }
    let cpu = cpu_seconds("/proc/thread-self/stat") - cpu0;
    (hashed as f64 / wall0.elapsed().as_secs_f64() / 1e9, hashed as f64 / cpu.max(0.01) / 1e9)
}

fn bench(c: &mut Criterion) {
    let (sha_wall, sha_cpu) = sha256_calibration();
    let setup = setup();
    let total_bytes = PIECES as u64 * PIECE_BYTES;
    // (case, wall-clock GB/s, CPU seconds of the whole process per GB)
    let rates: Arc<Mutex<Vec<(String, f64, f64)>>> = Arc::default();

    let mut group = c.benchmark_group("dataplane");
    group.sample_size(10).measurement_time(Duration::from_secs(15)).warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(total_bytes));
    // (name, connections, requests per connection, into the child's store, TLS, the child's
    // download rate in bytes/s: a link slower than what the CPU can do)
    let cases = [
        ("loopback_4mib_verified_8_in_flight", 2u32, 4u32, false, false, None),
        ("loopback_4mib_verified_8_in_flight_tls", 2, 4, false, true, None),
        ("at_4gbps_4mib_verified_8_in_flight", 2, 4, false, false, Some(500_000_000u64)),
        ("at_4gbps_4mib_verified_8_in_flight_tls", 2, 4, false, true, Some(500_000_000)),
        ("loopback_4mib_verified_3_in_flight", 1, 3, false, false, None),
        ("loopback_4mib_verified_8_in_flight_into_store", 2, 4, true, false, None),
    ];
    for (name, connections, per_connection, into_store, tls, rate) in cases {
        let config = ClientConfig {
            max_connections_per_parent: connections,
            max_pieces_per_connection: per_connection,
            tls: tls.then(|| setup.tls.clone()),
            download_rate: rate.map(|bytes_per_s| RateLimit { bytes_per_s, burst_bytes: 8 << 20 }),
            ..Default::default()
        };
        let client = Arc::new(PeerClient::new(config).unwrap());
        let in_flight = connections * per_connection;
        let rates = rates.clone();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    if into_store {
                        let _ = setup.child_store.remove_task(&setup.task);
                        setup.child_store.create_task(spec(setup.task)).unwrap();
                    }
                    let (started, cpu0) = (Instant::now(), cpu_seconds("/proc/self/stat"));
                    let got = setup.rt.block_on(transfer(&setup, &client, in_flight, into_store, tls));
                    let took = started.elapsed();
                    let cpu = cpu_seconds("/proc/self/stat") - cpu0;
                    assert_eq!(got, total_bytes);
                    let gb = got as f64 / 1e9;
                    rates.lock().unwrap().push((name.to_string(), gb / took.as_secs_f64(), cpu / gb));
                    spent += took;
                }
                spent
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("digests");
    let piece = content(0);
    group.throughput(Throughput::Bytes(piece.len() as u64));
    group.bench_function("crc32_4mib", |b| b.iter(|| PieceDigest::of(std::hint::black_box(&piece))));
    group.bench_function("sha256_4mib", |b| b.iter(|| Sha256Digest::of(std::hint::black_box(&piece))));
    group.finish();

    assert_eq!(setup.server.stats().corrupt_pieces + setup.tls_server.stats().corrupt_pieces, 0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!("\nsha256 of 4 MiB on one thread: {sha_wall:.2} GB/s of wall time, {sha_cpu:.2} GB/s per CPU second");
    println!("per transfer of {} MiB (every transfer criterion ran, warm-up included):", total_bytes >> 20);
    let rates = rates.lock().unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    for (name, ..) in cases {
        let runs: Vec<&(String, f64, f64)> = rates.iter().filter(|r| r.0 == name).collect();
        if runs.is_empty() {
            continue;
        }
        let (rate, low, high) = median(runs.iter().map(|r| r.1).collect());
        let (cpu_per_gb, _, _) = median(runs.iter().map(|r| r.2).collect());
        println!(
            "  {name}: median {rate:.2} GB/s (min {low:.2}, max {high:.2}, {} transfers); \
             {cpu_per_gb:.2} CPU s per GB, so at most {:.2} GB/s on {cores} idle cores",
            runs.len(),
            cores / cpu_per_gb
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
