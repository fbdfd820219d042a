//! The scheduler service over real gRPC on 127.0.0.1: a seed host and three normal hosts,
//! peers on AnnouncePeer streams, the seed triggered through WatchSeedTasks, progress
//! reports, StatTask/StatPeer, /metrics and /healthz, refusals, and shutdown.

use api::pb;
use api::pb::announce_peer_request::Request as Req;
use api::pb::announce_peer_response::Response as Resp;
use api::SchedulerClient;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const TASK: &str = "5f3c2a7e9b1d4c6a8e0f2b4d6c8a0e1f3b5d7c9a1e3f5b7d9c1a3e5f7b9d1c3a";
const PIECES: u32 = 8;
const WAIT: Duration = Duration::from_secs(10);

fn host(id: &str, ip: &str, port: u32, kind: pb::HostKind) -> pb::AnnounceHostRequest {
    pb::AnnounceHostRequest {
        host: Some(pb::Host {
            id: id.into(),
            hostname: format!("{id}.test"),
            ip: ip.into(),
            data_port: port,
            upload_capacity_bytes_per_s: 1 << 30,
            download_capacity_bytes_per_s: 1 << 30,
            kind: kind.into(),
            idc: "idc-a".into(),
            location: "asia|cn|sh".into(),
            disable_shared: false,
            load: Some(pb::HostLoad { uploads_in_flight: 0, cpu_percent: 5.0, ..Default::default() }),
            resolver_port: 0,
        }),
    }
}

fn register(peer: &str, host: &str, need_back_to_source: bool) -> pb::AnnouncePeerRequest {
    pb::AnnouncePeerRequest {
        request: Some(Req::Register(pb::RegisterPeer {
            host_id: host.into(),
            peer_id: peer.into(),
            task_id: TASK.into(),
            url: "https://registry.test/v2/app/blobs/sha256:5f3c".into(),
            digest: Some("sha256:5f3c".into()),
            piece_length_bytes: 4 << 20,
            content_length_bytes: u64::from(PIECES) * (4 << 20),
            piece_count: PIECES,
            need_back_to_source,
            request_headers: [("authorization".to_string(), "Bearer t".to_string())].into_iter().collect(),
            completed: false,
            policy: "default".into(),
            partial: false,
        })),
    }
}

fn pieces(numbers: &[u32], parent: Option<&str>) -> pb::AnnouncePeerRequest {
    let pieces = numbers
        .iter()
        .map(|n| pb::FinishedPiece { number: *n, parent_peer_id: parent.map(str::to_string), cost_ns: 2_000_000 })
        .collect();
    pb::AnnouncePeerRequest { request: Some(Req::PiecesFinished(pb::PiecesFinished { pieces })) }
}

fn finished() -> pb::AnnouncePeerRequest {
    pb::AnnouncePeerRequest { request: Some(Req::DownloadFinished(pb::DownloadFinished {})) }
}

/// One peer's AnnouncePeer stream, as a daemon would hold it.
struct PeerConn {
    out: mpsc::Sender<pb::AnnouncePeerRequest>,
    inbound: Streaming<pb::AnnouncePeerResponse>,
}

impl PeerConn {
    async fn open(client: &mut SchedulerClient<Channel>, first: pb::AnnouncePeerRequest) -> PeerConn {
        let (out, rx) = mpsc::channel(16);
        out.send(first).await.unwrap();
        let inbound = client.announce_peer(ReceiverStream::new(rx)).await.expect("stream opened").into_inner();
        PeerConn { out, inbound }
    }

    async fn send(&self, m: pb::AnnouncePeerRequest) {
        self.out.send(m).await.expect("stream open");
    }

    async fn next(&mut self) -> Result<Resp, tonic::Status> {
        match tokio::time::timeout(WAIT, self.inbound.message()).await.expect("a response in time") {
            Ok(Some(m)) => Ok(m.response.expect("response set")),
            Ok(None) => Err(tonic::Status::ok("stream ended")),
            Err(status) => Err(status),
        }
    }

    async fn expect_registered(&mut self) {
        assert!(matches!(self.next().await, Ok(Resp::Registered(_))));
    }

    async fn expect_parents(&mut self) -> Vec<pb::Parent> {
        match self.next().await {
            Ok(Resp::Parents(p)) => p.parents,
            other => panic!("expected parents, got {other:?}"),
        }
    }

    /// Parents updates until one satisfies `ok` (the scheduler may send several: a peer
    /// gets a parent per stripe as parents become available).
    async fn parents_until(&mut self, ok: impl Fn(&[pb::Parent]) -> bool) -> Vec<pb::Parent> {
        loop {
            let parents = self.expect_parents().await;
            if ok(&parents) {
                return parents;
            }
        }
    }

    /// The status that ends the stream, skipping responses still queued before it.
    async fn expect_end(&mut self) -> tonic::Status {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(status) => return status,
            }
        }
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{body}"))
}

async fn start() -> sched::service::Running {
    let text = "[listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n[service]\nrng_seed = 1\n[scheduler]\npolicy = \"default\"\n";
    let cfg = sched::service::parse(text, "e2e.toml").expect("valid config");
    sched::service::start(cfg).await.expect("service starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_and_three_peers_over_grpc() {
    let running = start().await;
    let mut client = SchedulerClient::connect(format!("http://{}", running.grpc_addr)).await.unwrap();
    let hosts = [
        ("seed", "127.0.0.10", 40010, pb::HostKind::Seed),
        ("n1", "127.0.0.11", 40011, pb::HostKind::Normal),
        ("n2", "127.0.0.12", 40012, pb::HostKind::Normal),
        ("n3", "127.0.0.13", 40013, pb::HostKind::Normal),
    ];
    for (id, ip, port, kind) in hosts {
        client.announce_host(host(id, ip, port, kind)).await.unwrap();
    }
    let address_of = |host_id: &str| hosts.iter().find(|h| h.0 == host_id).map(|h| (h.1.to_string(), h.2)).unwrap();
    let mut seed_tasks =
        client.watch_seed_tasks(pb::WatchSeedTasksRequest { host_id: "seed".into() }).await.unwrap().into_inner();

    // The first normal peer: registered, then it waits while the seed is asked for the task.
    let mut p1 = PeerConn::open(&mut client, register("p1", "n1", false)).await;
    p1.expect_registered().await;
    let task = tokio::time::timeout(WAIT, seed_tasks.message()).await.unwrap().unwrap().expect("a seed task");
    assert_eq!(task.task_id, TASK);
    assert_eq!((task.piece_count, task.piece_length_bytes), (PIECES, 4 << 20));
    assert_eq!(task.url, "https://registry.test/v2/app/blobs/sha256:5f3c");
    assert_eq!(task.digest.as_deref(), Some("sha256:5f3c"));
    assert_eq!(task.request_headers.get("authorization").map(String::as_str), Some("Bearer t"));

    // The seed registers its peer and is ordered back to source.
    let mut seed = PeerConn::open(&mut client, register("seed-p", "seed", true)).await;
    seed.expect_registered().await;
    match seed.next().await {
        Ok(Resp::BackToSource(b)) => assert_eq!(b.reason(), pb::BackToSourceReason::Ordered),
        other => panic!("seed peer should be ordered back to source, got {other:?}"),
    }

    // The waiting peer now gets the seed as its parent, with the seed host's address.
    // (The seed is the only peer with data yet; the default policy hands it out per stripe.)
    let parents = p1.expect_parents().await;
    assert!(!parents.is_empty());
    for p in &parents {
        assert_eq!(p.peer_id, "seed-p", "{parents:?}");
        assert_eq!(
            (p.host_id.as_str(), p.ip.clone(), p.data_port),
            ("seed", address_of("seed").0, address_of("seed").1)
        );
        assert!(p.is_seed);
        assert!(p.stripe.is_some_and(|s| s.index < s.count), "{p:?}");
    }

    // Reports flow: the seed fetches from the origin, p1 from the seed.
    seed.send(pieces(&[0, 1, 2, 3], None)).await;
    p1.send(pieces(&[0, 1], Some("seed-p"))).await;

    // Two more peers: each gets parents on other hosts, with those hosts' addresses.
    let mut p2 = PeerConn::open(&mut client, register("p2", "n2", false)).await;
    p2.expect_registered().await;
    let parents2 = p2.expect_parents().await;
    let mut p3 = PeerConn::open(&mut client, register("p3", "n3", false)).await;
    p3.expect_registered().await;
    let parents3 = p3.expect_parents().await;
    for (parents, own_host) in [(&parents2, "n2"), (&parents3, "n3")] {
        assert!(!parents.is_empty());
        for p in parents.iter() {
            assert_ne!(p.host_id, own_host);
            assert_eq!((p.ip.clone(), p.data_port), address_of(&p.host_id), "{p:?}");
        }
    }
    p2.send(pieces(&[2], Some("seed-p"))).await;
    p3.send(pieces(&[3], Some("seed-p"))).await;

    // p2 gives up on the seed: a failed piece, then a reschedule blocking it.
    let failed = pb::PieceFailed { number: 4, parent_peer_id: "seed-p".into() };
    p2.send(pb::AnnouncePeerRequest { request: Some(Req::PieceFailed(failed)) }).await;
    let reschedule = pb::Reschedule { blocked_parent_peer_ids: vec!["seed-p".into()], description: "slow".into() };
    p2.send(pb::AnnouncePeerRequest { request: Some(Req::Reschedule(reschedule)) }).await;
    let rescheduled = p2.parents_until(|ps| ps.iter().all(|p| p.peer_id != "seed-p")).await;
    assert!(!rescheduled.is_empty(), "p1 and p3 can serve p2");
    for p in &rescheduled {
        assert_ne!(p.peer_id, "seed-p", "a blocked parent is never offered again: {rescheduled:?}");
        assert_eq!((p.ip.clone(), p.data_port), address_of(&p.host_id), "{p:?}");
    }
    seed.send(pieces(&[4, 5, 6, 7], None)).await;
    seed.send(finished()).await;

    // StatTask reflects the reports (messages on different streams race: poll).
    let want_reported = u64::from(PIECES) + 2 + 1 + 1;
    let mut stat = pb::TaskStat::default();
    for _ in 0..200 {
        stat = client
            .stat_task(pb::StatTaskRequest { task_id: TASK.into(), include_peers: true, max_peers: 0 })
            .await
            .unwrap()
            .into_inner();
        if stat.finished_pieces_reported == want_reported && stat.peer_counts.unwrap().succeeded == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stat.finished_pieces_reported, want_reported, "{stat:?}");
    let counts = stat.peer_counts.unwrap();
    assert_eq!((counts.succeeded, counts.running, counts.failed), (1, 3, 0), "{stat:?}");
    assert_eq!(stat.seed_host_id.as_deref(), Some("seed"));
    assert_eq!(stat.back_to_source_peers, 0);
    assert_eq!(stat.peers.len(), 4);
    let seed_stat = stat.peers.iter().find(|p| p.peer_id == "seed-p").unwrap();
    assert!(seed_stat.is_seed && seed_stat.connected);
    assert_eq!(seed_stat.finished_piece_count, PIECES);
    let p1_stat = client.stat_peer(pb::StatPeerRequest { peer_id: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(p1_stat.state(), pb::PeerState::Running);
    assert_eq!(p1_stat.finished_piece_count, 2);
    assert!(p1_stat.parent_peer_ids.contains(&"seed-p".to_string()), "{p1_stat:?}");

    // Metrics and health.
    let (code, body) = http_get(running.http_addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(metric(&body, "sched_hosts"), 4.0);
    assert_eq!(metric(&body, "sched_tasks"), 1.0);
    assert_eq!(metric(&body, "sched_peers{state=\"running\"}"), 3.0);
    assert_eq!(metric(&body, "sched_decisions_total{kind=\"trigger_seed\"}"), 1.0);
    assert!(metric(&body, "sched_decisions_total{kind=\"parents\"}") >= 3.0);
    assert_eq!(metric(&body, "sched_back_to_source_orders_total{reason=\"ordered\"}"), 1.0);
    assert!(metric(&body, "sched_decision_latency_seconds_count{request=\"register\"}") >= 4.0);
    assert_eq!(http_get(running.http_addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(http_get(running.http_addr, "/nope").await.0, 404);

    // Leaving: p3's host leaves; its stream ends with CANCELLED and StatTask shows it failed.
    let left = client.leave_host(pb::LeaveHostRequest { host_id: "n3".into() }).await.unwrap().into_inner();
    assert_eq!(left.peers_left, 1);
    let end = p3.expect_end().await;
    assert_eq!(end.code(), Code::Cancelled, "{end:?}");

    // Shutdown: open streams end with UNAVAILABLE, the server stops.
    running.shutdown();
    let end = p1.expect_end().await;
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    tokio::time::timeout(WAIT, running.wait()).await.expect("stops within the grace period").unwrap();
    drop((p2, seed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_reason() {
    let running = start().await;
    let mut client = SchedulerClient::connect(format!("http://{}", running.grpc_addr)).await.unwrap();

    let e = client.announce_host(host("h", "not-an-ip", 1, pb::HostKind::Normal)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("host.ip:"), "{e:?}");

    let e = client.stat_peer(pb::StatPeerRequest { peer_id: "ghost".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("\"ghost\""), "{e:?}");
    let e = client.stat_task(pb::StatTaskRequest { task_id: "abc".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("task_id:"), "{e:?}");
    let e = client.stat_task(pb::StatTaskRequest { task_id: TASK.into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client.watch_seed_tasks(pb::WatchSeedTasksRequest { host_id: "nobody".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("AnnounceHost"), "{e:?}");

    // A stream that does not start with `register`.
    let mut conn = PeerConn::open(&mut client, pieces(&[0], None)).await;
    let e = conn.next().await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("must be `register`"), "{e:?}");

    // Registration on a host nobody announced.
    let mut conn = PeerConn::open(&mut client, register("p1", "nowhere", false)).await;
    let e = conn.next().await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("\"nowhere\""), "{e:?}");

    // A bad message after registering ends the stream; the peer counts as failed.
    client.announce_host(host("n1", "127.0.0.11", 40011, pb::HostKind::Normal)).await.unwrap();
    let mut conn = PeerConn::open(&mut client, register("p1", "n1", false)).await;
    conn.expect_registered().await;
    assert!(matches!(conn.next().await, Ok(Resp::BackToSource(_))), "no seed host: fetch it yourself");
    conn.send(pieces(&[PIECES], None)).await;
    let e = conn.next().await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("out of range"), "{e:?}");
    let p1 = client.stat_peer(pb::StatPeerRequest { peer_id: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(p1.state(), pb::PeerState::Failed);

    running.shutdown();
    tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
}

/// A daemon restarted with the task in its store registers it `completed`: the next
/// download gets it as a parent, the seed is not asked, and the stream may end at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_registration_serves_without_seed() {
    let running = start().await;
    let mut client = SchedulerClient::connect(format!("http://{}", running.grpc_addr)).await.unwrap();
    let mut instance = None;
    for (id, ip, port, kind) in [
        ("seed", "127.0.0.10", 40010, pb::HostKind::Seed),
        ("n1", "127.0.0.11", 40011, pb::HostKind::Normal),
        ("n2", "127.0.0.12", 40012, pb::HostKind::Normal),
    ] {
        let answer = client.announce_host(host(id, ip, port, kind)).await.unwrap().into_inner();
        assert!(!answer.scheduler_instance.is_empty());
        assert!(instance.get_or_insert(answer.scheduler_instance.clone()) == &answer.scheduler_instance);
    }
    let mut seed_tasks =
        client.watch_seed_tasks(pb::WatchSeedTasksRequest { host_id: "seed".into() }).await.unwrap().into_inner();

    let mut done = register("p-done", "n1", false);
    if let Some(Req::Register(r)) = done.request.as_mut() {
        r.completed = true;
        r.request_headers.clear();
        r.url = "https://registry.test/v2/app/blobs/sha256:5f3c?redacted".into();
    }
    let mut p_done = PeerConn::open(&mut client, done).await;
    p_done.expect_registered().await;
    drop(p_done);

    let mut p2 = PeerConn::open(&mut client, register("p2", "n2", false)).await;
    p2.expect_registered().await;
    let parents = p2.expect_parents().await;
    assert!(parents.iter().all(|p| p.peer_id == "p-done") && !parents.is_empty(), "{parents:?}");
    let seeded = tokio::time::timeout(Duration::from_millis(500), seed_tasks.message()).await;
    assert!(seeded.is_err(), "the seed was asked for a task a peer holds whole: {seeded:?}");

    let stat = client
        .stat_task(pb::StatTaskRequest { task_id: TASK.into(), include_peers: true, max_peers: 10 })
        .await
        .unwrap()
        .into_inner();
    // The downloading peer's registration replaced the completed one's URL and headers.
    assert_eq!(stat.url, "https://registry.test/v2/app/blobs/sha256:5f3c");
    let done_stat = stat.peers.iter().find(|p| p.peer_id == "p-done").expect("completed peer listed");
    assert_eq!(done_stat.finished_piece_count, PIECES);

    let mut bad = register("p-bad", "n2", true);
    if let Some(Req::Register(r)) = bad.request.as_mut() {
        r.completed = true;
    }
    let mut p_bad = PeerConn::open(&mut client, bad).await;
    let status = p_bad.expect_end().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("register.completed"), "{status:?}");
    running.shutdown();
}

/// Admission on the real service: a stream that floods messages past
/// `max_stream_messages_per_s` is closed with RESOURCE_EXHAUSTED naming the key, a host past
/// `max_hosts` is refused, and a genuine peer registers and is served at once afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_limits_hold_against_a_flood() {
    let text = "[listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n[service]\nrng_seed = 1\nmax_hosts = 2\n\
                max_stream_messages_per_s = 50\n[scheduler]\npolicy = \"default\"\n";
    let cfg = sched::service::parse(text, "e2e.toml").expect("valid config");
    let running = sched::service::start(cfg).await.expect("service starts");
    let mut client = SchedulerClient::connect(format!("http://{}", running.grpc_addr)).await.unwrap();
    client.announce_host(host("n1", "127.0.0.11", 40011, pb::HostKind::Normal)).await.unwrap();
    client.announce_host(host("n2", "127.0.0.12", 40012, pb::HostKind::Normal)).await.unwrap();
    let e = client.announce_host(host("n3", "127.0.0.13", 40013, pb::HostKind::Normal)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("service.max_hosts"), "{e:?}");

    // The flood: 1000 piece reports at once (bounded), far past 50 a second (burst 100).
    let mut flood = PeerConn::open(&mut client, register("flood", "n1", false)).await;
    flood.expect_registered().await;
    let out = flood.out.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..1000 {
            if out.send(pieces(&[0], None)).await.is_err() {
                break;
            }
        }
    });
    let e = flood.expect_end().await;
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("service.max_stream_messages_per_s"), "{e:?}");
    sender.abort();

    // A genuine peer at once: registered and told what to do within a second.
    let t0 = std::time::Instant::now();
    let mut good = PeerConn::open(&mut client, register("good", "n2", false)).await;
    good.expect_registered().await;
    assert!(matches!(good.next().await, Ok(Resp::BackToSource(_))), "no seed host: fetch it yourself");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());

    running.shutdown();
    tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
}
