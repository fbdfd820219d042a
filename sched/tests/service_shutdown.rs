//! The built `scheduler` binary shuts down gracefully on SIGTERM: open streams end with
//! UNAVAILABLE and the process exits 0.

use api::pb;
use api::SchedulerClient;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Kills the child if the test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_binary() -> (Guard, String, std_mpsc::Receiver<String>) {
    let dir = std::env::temp_dir().join(format!("sched-shutdown-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("scheduler.toml");
    std::fs::write(
        &config,
        "[listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nfilter = \"info\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the scheduler binary starts");
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std_mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("serving log line");
        if line.contains("scheduler serving") {
            let grpc = json_field(&line, "grpc").expect("grpc address logged");
            return (guard, grpc, lines);
        }
    }
}

/// The string value of `"key":"value"` in a JSON log line.
fn json_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    Some(line[start..].split('"').next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_streams_and_exits_zero() {
    let (mut child, grpc, lines) = start_binary();
    let mut client = SchedulerClient::connect(format!("http://{grpc}")).await.unwrap();
    let host = pb::Host {
        id: "n1".into(),
        ip: "127.0.0.1".into(),
        data_port: 40001,
        kind: pb::HostKind::Normal.into(),
        ..Default::default()
    };
    client.announce_host(pb::AnnounceHostRequest { host: Some(host) }).await.unwrap();
    let (out, rx) = mpsc::channel(4);
    let register = pb::RegisterPeer {
        host_id: "n1".into(),
        peer_id: "p1".into(),
        task_id: "ab".repeat(32),
        url: "https://registry.test/blob".into(),
        piece_length_bytes: 1 << 20,
        content_length_bytes: 1 << 20,
        piece_count: 1,
        policy: "default".into(),
        partial: false,
        ..Default::default()
    };
    out.send(pb::AnnouncePeerRequest { request: Some(pb::announce_peer_request::Request::Register(register)) })
        .await
        .unwrap();
    let mut inbound = client.announce_peer(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let first = inbound.message().await.unwrap().unwrap();
    assert!(matches!(first.response, Some(pb::announce_peer_response::Response::Registered(_))));

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(killed.success());

    // The open stream ends with UNAVAILABLE (after the back-to-source order it already had).
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(15), inbound.message()).await.expect("stream ends in time") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
    drop(out);

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "scheduler did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("scheduler stopped")), "{rest:?}");
}
