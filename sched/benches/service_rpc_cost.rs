//! What one request costs the real scheduler service, end to end over gRPC: the figures
//! the simulator's `[scheduler] schedule_service_us` and `report_service_us` stand for.
//!
//! The `scheduler` binary runs as its own process pinned to one CPU (one core per replica,
//! as the simulator serves a replica's requests one at a time); this process plays 1,000
//! daemons pinned to another. Per round, on a fresh task of 384 pieces (the default policy's
//! piece count for a large blob): a root peer on a seed host holds every piece, then
//! 1,000 peers on 1,000 hosts register at once, as a rollout's burst does, each waiting
//! for its first parents; then every peer reports pieces in messages of 1 and of 8. The
//! service's CPU time comes from `/proc/PID/task/*/schedstat` (nanoseconds on CPU, all
//! its threads: gRPC, HTTP/2, protobuf, the lock and the core), so the figure does not
//! depend on how busy the client side is. Wall time of the burst is printed too.
//!
//! Run: `cargo bench -p sched --bench service_rpc_cost` (ROUNDS, default 5; PEERS,
//! default 1000; CONNECTIONS, default 32). Prints the median over rounds; `sim/README.md` records the figures.

use api::pb;
use api::pb::announce_peer_request::Request as Req;
use api::pb::announce_peer_response::Response as Resp;
use api::SchedulerClient;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

const PIECES: u32 = 384;
const PIECE_BYTES: u64 = 4 << 20;
/// HTTP/2 connections the simulated daemons share by default (each real daemon has its
/// own; CONNECTIONS=PEERS measures that case).
const CONNECTIONS: usize = 32;
const WAIT: Duration = Duration::from_secs(60);

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The scheduler's CPU time so far, in nanoseconds, summed over its threads.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// `sched_decision_latency_seconds` of one request kind from `/metrics`: (sum in seconds,
/// count). It times a request under the state's lock (the wait, the core, queueing its
/// decisions): with the service on one CPU there is no wait, so it is the part of a
/// request that replicas with more cores still serve one at a time.
async fn locked(http: &str, request: &str) -> (f64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("metrics asked");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("metrics read");
    let value = |name: &str| {
        let prefix = format!("{name}{{request=\"{request}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse::<f64>().ok())).unwrap_or(0.0)
    };
    (value("sched_decision_latency_seconds_sum"), value("sched_decision_latency_seconds_count"))
}

/// Two CPUs this process may run on (the server's, the clients'), from
/// `Cpus_allowed_list` (e.g. "0-1", "2,5-7"); None with fewer, or without `taskset`.
fn two_cpus() -> Option<(String, String)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        cpus.extend((a..=b).take(2 - cpus.len().min(2)));
        if cpus.len() >= 2 {
            break;
        }
    }
    (cpus.len() >= 2 && which("taskset")).then(|| (cpus[0].to_string(), cpus[1].to_string()))
}

struct Server {
    child: Child,
    grpc: String,
    http: String,
    _dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(peers: usize) -> Server {
    let dir = std::env::temp_dir().join(format!("sched-rpc-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let grpc = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[listen]\ngrpc = \"{grpc}\"\nhttp = \"{http}\"\n[service]\nrng_seed = 1\n\
         max_stream_messages_per_s = 100000\nmax_peers_per_host = {}\n[log]\nfilter = \"warn\"\n\
         [scheduler]\npolicy = \"default\"\n",
        peers + 16
    );
    let path = dir.join("scheduler.toml");
    std::fs::write(&path, config).expect("config written");
    let bin = env!("CARGO_BIN_EXE_scheduler");
    let mut cmd = if let Some((server_cpu, _)) = two_cpus() {
        let mut c = Command::new("taskset");
        c.args(["-c", &server_cpu, bin]);
        c
    } else {
        Command::new(bin)
    };
    let child = cmd
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the scheduler binary starts");
    Server { child, grpc, http, _dir: dir }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn host(id: &str, n: usize, kind: pb::HostKind) -> pb::AnnounceHostRequest {
    pb::AnnounceHostRequest {
        host: Some(pb::Host {
            id: id.into(),
            hostname: format!("{id}.bench"),
            ip: format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
            data_port: 65000,
            upload_capacity_bytes_per_s: 1 << 30,
            download_capacity_bytes_per_s: 1 << 30,
            kind: kind.into(),
            idc: "idc-a".into(),
            location: "eu|de|fra".into(),
            disable_shared: false,
            load: Some(pb::HostLoad { uploads_in_flight: 0, cpu_percent: 5.0, ..Default::default() }),
            resolver_port: 0,
        }),
    }
}

fn register(task: &str, peer: &str, host: &str, root: bool) -> pb::AnnouncePeerRequest {
    pb::AnnouncePeerRequest {
        request: Some(Req::Register(pb::RegisterPeer {
            host_id: host.into(),
            peer_id: peer.into(),
            task_id: task.into(),
            url: format!("https://registry.bench/v2/app/blobs/sha256:{task}"),
            digest: Some(format!("sha256:{task}")),
            piece_length_bytes: PIECE_BYTES,
            content_length_bytes: u64::from(PIECES) * PIECE_BYTES,
            piece_count: PIECES,
            need_back_to_source: root,
            request_headers: Default::default(),
            completed: false,
            policy: "default".into(),
            partial: false,
        })),
    }
}

fn pieces(numbers: impl Iterator<Item = u32>, parent: Option<&str>) -> pb::AnnouncePeerRequest {
    let pieces = numbers
        .map(|number| pb::FinishedPiece { number, parent_peer_id: parent.map(str::to_string), cost_ns: 2_000_000 })
        .collect();
    pb::AnnouncePeerRequest { request: Some(Req::PiecesFinished(pb::PiecesFinished { pieces })) }
}

struct Stream {
    out: mpsc::Sender<pb::AnnouncePeerRequest>,
    inbound: Streaming<pb::AnnouncePeerResponse>,
}

async fn open(mut client: SchedulerClient<Channel>, first: pb::AnnouncePeerRequest) -> Stream {
    let (out, rx) = mpsc::channel(64);
    out.send(first).await.expect("channel open");
    let inbound = client.announce_peer(ReceiverStream::new(rx)).await.expect("AnnouncePeer opened").into_inner();
    Stream { out, inbound }
}

/// Responses until the first one that is not `Registered` (parents, or an order).
async fn first_answer(s: &mut Stream) -> Resp {
    loop {
        let m = tokio::time::timeout(WAIT, s.inbound.message())
            .await
            .expect("an answer within 60 s")
            .expect("the stream stays open")
            .expect("the stream stays open");
        match m.response {
            Some(Resp::Registered(_)) | None => continue,
            Some(other) => return other,
        }
    }
}

async fn reported(client: &mut SchedulerClient<Channel>, task: &str) -> u64 {
    let req = pb::StatTaskRequest { task_id: task.into(), ..Default::default() };
    client.stat_task(req).await.map(|r| r.into_inner().finished_pieces_reported).unwrap_or(0)
}

/// Waits until the task's reported pieces reach `want` (reports carry no answer).
async fn until_reported(client: &mut SchedulerClient<Channel>, task: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    while reported(client, task).await < want {
        assert!(Instant::now() < deadline, "reports not all counted within 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Round {
    register_locked_us: f64,
    report1_locked_us: f64,
    register_cpu_us: f64,
    register_wall_ms: f64,
    report1_cpu_us: f64,
    report8_cpu_us: f64,
}

async fn round(n: u32, server: &Server, clients: &[SchedulerClient<Channel>], peers: usize) -> Round {
    let pid = server.child.id();
    let task = format!("{n:064x}");
    let mut control = clients[0].clone();
    // The root: holds every piece before the burst.
    let mut root = open(clients[0].clone(), register(&task, &format!("r{n}-root"), "seed", true)).await;
    let _ = first_answer(&mut root).await;
    root.out.send(pieces(0..PIECES, None)).await.expect("root reports");
    until_reported(&mut control, &task, u64::from(PIECES)).await;

    // The burst: every peer's stream opened and its registration sent at once.
    let lock0 = locked(&server.http, "register").await;
    let cpu0 = cpu_ns(pid);
    let t0 = Instant::now();
    let mut joins = Vec::with_capacity(peers);
    for i in 0..peers {
        let client = clients[i % clients.len()].clone();
        let (task, peer, host) = (task.clone(), format!("r{n}-p{i}"), format!("h{i}"));
        joins.push(tokio::spawn(async move {
            let mut s = open(client, register(&task, &peer, &host, false)).await;
            let answer = first_answer(&mut s).await;
            assert!(matches!(answer, Resp::Parents(_)), "{peer}: expected parents, got {answer:?}");
            s
        }));
    }
    let mut streams = Vec::with_capacity(peers);
    for j in joins {
        streams.push(j.await.expect("a peer task"));
    }
    let register_wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    let register_cpu_us = (cpu_ns(pid) - cpu0) as f64 / 1e3 / peers as f64;
    let lock1 = locked(&server.http, "register").await;
    let register_locked_us = (lock1.0 - lock0.0) * 1e6 / (lock1.1 - lock0.1).max(1.0);

    // Reports of one piece each: every peer, 4 messages.
    let parent = format!("r{n}-root");
    let mut want = u64::from(PIECES);
    let rlock0 = locked(&server.http, "pieces_finished").await;
    let cpu1 = cpu_ns(pid);
    for k in 0..4u32 {
        for s in &streams {
            s.out.send(pieces(std::iter::once(k), Some(&parent))).await.expect("report sent");
        }
    }
    want += 4 * peers as u64;
    until_reported(&mut control, &task, want).await;
    let report1_cpu_us = (cpu_ns(pid) - cpu1) as f64 / 1e3 / (4 * peers) as f64;
    let rlock1 = locked(&server.http, "pieces_finished").await;
    let report1_locked_us = (rlock1.0 - rlock0.0) * 1e6 / (rlock1.1 - rlock0.1).max(1.0);

    // Reports of eight pieces each: every peer, 4 messages.
    let cpu2 = cpu_ns(pid);
    for k in 0..4u32 {
        for s in &streams {
            s.out.send(pieces(8 + 8 * k..16 + 8 * k, Some(&parent))).await.expect("report sent");
        }
    }
    want += 32 * peers as u64;
    until_reported(&mut control, &task, want).await;
    let report8_cpu_us = (cpu_ns(pid) - cpu2) as f64 / 1e3 / (4 * peers) as f64;

    // The round's peers leave (streams closed), so the next round starts alike.
    drop(streams);
    drop(root);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Round { register_locked_us, report1_locked_us, register_cpu_us, register_wall_ms, report1_cpu_us, report8_cpu_us }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let rounds = env_usize("ROUNDS", 5).max(1);
    let peers = env_usize("PEERS", 1000).max(1);
    if let Some((_, client_cpu)) = two_cpus() {
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", &client_cpu, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    let server = start_server(peers);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        let endpoint = format!("http://{}", server.grpc);
        let connections = env_usize("CONNECTIONS", CONNECTIONS).clamp(1, peers);
        let mut clients = Vec::with_capacity(connections);
        let deadline = Instant::now() + Duration::from_secs(20);
        while clients.is_empty() {
            match SchedulerClient::connect(endpoint.clone()).await {
                Ok(c) => clients.push(c),
                Err(e) => {
                    assert!(Instant::now() < deadline, "the scheduler at {endpoint} did not answer in 20 s: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        for _ in 1..connections {
            clients.push(SchedulerClient::connect(endpoint.clone()).await.expect("connect"));
        }
        let mut c = clients[0].clone();
        c.announce_host(host("seed", 0, pb::HostKind::Seed)).await.expect("seed host announced");
        for i in 0..peers {
            c.announce_host(host(&format!("h{i}"), i + 1, pb::HostKind::Normal)).await.expect("host announced");
        }
        println!(
            "scheduler service over gRPC, default policy, {peers} peers on {connections} connections registering at once \
             on a task of {PIECES} pieces; server pinned to one CPU (when two are allowed and taskset is there); {rounds} rounds"
        );
        println!(
            "round  register_cpu_us  register_locked_us  register_burst_wall_ms  report_1_piece_cpu_us  report_1_piece_locked_us  report_8_pieces_cpu_us"
        );
        let mut all = Vec::new();
        // A warm-up round (allocator, connection windows) is run and not counted.
        let _ = round(0, &server, &clients, peers).await;
        for n in 1..=rounds as u32 {
            let r = round(n, &server, &clients, peers).await;
            println!(
                "{n:>5}  {:>15.1}  {:>18.1}  {:>22.1}  {:>21.1}  {:>24.1}  {:>22.1}",
                r.register_cpu_us,
                r.register_locked_us,
                r.register_wall_ms,
                r.report1_cpu_us,
                r.report1_locked_us,
                r.report8_cpu_us
            );
            all.push(r);
        }
        let m = |f: fn(&Round) -> f64| median(all.iter().map(f).collect());
        let (register, report1, report8) = (m(|r| r.register_cpu_us), m(|r| r.report1_cpu_us), m(|r| r.report8_cpu_us));
        println!(
            "median {register:>14.1}  {:>18.1}  {:>22.1}  {report1:>21.1}  {:>24.1}  {report8:>22.1}",
            m(|r| r.register_locked_us),
            m(|r| r.register_wall_ms),
            m(|r| r.report1_locked_us),
        );
        // One line for scripts (bench/sched_cost_gate.sh).
        println!("medians: register_cpu_us={register:.1} report_1_piece_cpu_us={report1:.1} report_8_pieces_cpu_us={report8:.1}");
    });
}
