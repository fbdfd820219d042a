//! The service state without gRPC: registration, decision delivery to streams, seed
//! triggering and its failure paths, leaving, eviction, refusals. Synchronous: channels are
//! read with `try_recv`, time is passed in.

use super::config::Tuning;
use super::error::ServiceError;
use super::metrics::Metrics;
use super::state::{PeerStream, SeedWatcher, State};
use super::wire::{HostAnnouncement, Registration, TaskMeta};
use crate::core::{HostKind, PeerState, Policy, SchedulerConfig, TimeNs, NS_PER_MS, NS_PER_S};
use api::pb;
use api::pb::announce_peer_response::Response;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

const TASK: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn tuning() -> Tuning {
    Tuning {
        evict_interval_ns: 60 * NS_PER_S,
        seed_register_timeout_ns: 5 * NS_PER_S,
        register_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(1),
        peer_stream_capacity: 64,
        seed_watch_capacity: 16,
        max_hosts: 100_000,
        max_peers_per_host: 16_384,
        max_tasks: 100_000,
        max_message_bytes: 1 << 20,
        max_stream_messages_per_s: 1000,
        preheat_max_jobs: 16,
        preheat_report_timeout_ns: 60 * NS_PER_S,
        preheat_reuse_succeeded_ns: 600 * NS_PER_S,
    }
}

fn state_with(cfg: SchedulerConfig, tuning: Tuning) -> State {
    State::new(cfg, tuning, 7, Arc::new(Metrics::new()))
}

fn state(policy: Policy) -> State {
    state_with(SchedulerConfig::preset(policy), tuning())
}

fn host(id: &str, kind: HostKind, last_octet: u8) -> HostAnnouncement {
    HostAnnouncement {
        id: id.to_string(),
        hostname: id.to_string(),
        ip: [10, 0, 0, last_octet].into(),
        data_port: 65002,
        kind,
        idc: String::new(),
        location: String::new(),
        disable_shared: false,
        upload_capacity_bytes_per_s: 1 << 30,
        download_capacity_bytes_per_s: 1 << 30,
        load: pb::HostLoad::default(),
        resolver_port: 0,
    }
}

fn reg(peer: &str, host: &str, need_back_to_source: bool) -> Registration {
    Registration {
        host_id: host.to_string(),
        peer_id: peer.to_string(),
        task_id: TASK.to_string(),
        meta: TaskMeta {
            url: "https://registry.example/v2/app/blobs/sha256:aa".to_string(),
            digest: Some("sha256:aa".to_string()),
            piece_length_bytes: 4 << 20,
            content_length_bytes: 40 << 20,
            piece_count: 10,
            request_headers: Default::default(),
        },
        need_back_to_source,
        completed: false,
        policy: crate::core::Policy::Default,
        partial: false,
    }
}

/// The client's end of an AnnouncePeer stream.
struct Client {
    rx: mpsc::Receiver<Result<pb::AnnouncePeerResponse, Status>>,
    stop: oneshot::Receiver<()>,
}

impl Client {
    /// Everything queued so far.
    fn drain(&mut self) -> Vec<Result<Response, Status>> {
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m.map(|r| r.response.expect("response set")));
        }
        out
    }
    fn closed_by_scheduler(&mut self) -> bool {
        matches!(self.stop.try_recv(), Err(oneshot::error::TryRecvError::Closed))
    }
}

fn stream(id: u64, capacity: usize) -> (PeerStream, Client) {
    let (tx, rx) = mpsc::channel(capacity);
    let (stop_tx, stop_rx) = oneshot::channel();
    (PeerStream { id, tx, stop: stop_tx }, Client { rx, stop: stop_rx })
}

/// Registers `r` as a peer of the scheduler's own policy.
fn register(s: &mut State, now: TimeNs, r: Registration) -> (crate::core::PeerId, Client) {
    let r = Registration { policy: s.core().config().policy, ..r };
    let (ps, client) = stream(s.peers.len() as u64 + 1, 64);
    let peer = s.register_peer(now, r, ps).expect("registered");
    (peer, client)
}

fn parents_of(msgs: &[Result<Response, Status>]) -> Option<Vec<pb::Parent>> {
    msgs.iter().rev().find_map(|m| match m {
        Ok(Response::Parents(p)) => Some(p.parents.clone()),
        _ => None,
    })
}

fn back_to_source(msgs: &[Result<Response, Status>]) -> Option<pb::BackToSourceReason> {
    msgs.iter().find_map(|m| match m {
        Ok(Response::BackToSource(b)) => Some(b.reason()),
        _ => None,
    })
}

#[test]
fn seed_is_triggered_on_its_watch_and_children_get_addresses() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("seed", HostKind::Seed, 1)).unwrap();
    s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
    let (watch_tx, mut watch_rx) = mpsc::channel(4);
    s.watch_seed_tasks("seed", SeedWatcher { tx: watch_tx }).unwrap();

    let (_, mut n1) = register(&mut s, 0, reg("p1", "n1", false));
    assert!(matches!(n1.drain()[..], [Ok(Response::Registered(_))]));
    let seed_task = watch_rx.try_recv().expect("seed task pushed").unwrap();
    assert_eq!(seed_task.task_id, TASK);
    assert_eq!(seed_task.piece_count, 10);
    assert!(seed_task.url.ends_with("sha256:aa"));

    let (seed_peer, mut seed) = register(&mut s, NS_PER_MS, reg("seed-p", "seed", true));
    assert_eq!(back_to_source(&seed.drain()), Some(pb::BackToSourceReason::Ordered));
    assert!(s.pending_seeds.is_empty());
    let parents = parents_of(&n1.drain()).expect("waiting peer gets the seed");
    // The only peer takes the seed's root slot in every stripe (one edge per stripe).
    assert_eq!(parents.len(), SchedulerConfig::preset(Policy::Default).stripes as usize);
    assert!(parents.iter().all(|p| p.peer_id == "seed-p"), "{parents:?}");
    let p = &parents[0];
    assert_eq!(
        (p.peer_id.as_str(), p.host_id.as_str(), p.ip.as_str(), p.data_port),
        ("seed-p", "seed", "10.0.0.1", 65002)
    );
    assert!(p.is_seed && p.stripe.is_some());
    assert_eq!(s.core().peer_state(seed_peer), Some(PeerState::BackToSource));
}

#[test]
fn seed_without_watch_is_unavailable_and_waiters_go_back_to_source() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("seed", HostKind::Seed, 1)).unwrap();
    s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
    let (p1, mut n1) = register(&mut s, 0, reg("p1", "n1", false));
    // Triggered, nobody to tell: without `Scheduler::seed_unavailable`, p1 would wait forever.
    assert!(matches!(n1.drain()[..], [Ok(Response::Registered(_))]));
    let wait_ns = s.core().config().wait_for_parent_timeout_ns;
    s.run_due(wait_ns);
    assert_eq!(back_to_source(&n1.drain()), Some(pb::BackToSourceReason::NoParents));
    assert_eq!(s.core().peer_state(p1), Some(PeerState::BackToSource));
    // Only real peers are counted.
    let stat = s.stat_task(&pb::StatTaskRequest { task_id: TASK.into(), include_peers: true, max_peers: 0 }).unwrap();
    assert_eq!(stat.peers.len(), 1);
    assert_eq!(stat.peer_counts.unwrap().back_to_source, 1);
    assert_eq!(stat.seed_host_id.as_deref(), Some("seed"));
    let g = s.gauges();
    assert_eq!(g.peers.iter().map(|(_, n)| n).sum::<i64>(), 1);
    // The seed host is usable again afterwards (its disable_shared was restored).
    assert!(!s.core().host(crate::core::HostId(0)).unwrap().info.disable_shared);
}

#[test]
fn triggered_seed_that_never_registers_times_out() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("seed", HostKind::Seed, 1)).unwrap();
    s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
    let (watch_tx, _watch_rx) = mpsc::channel(4);
    s.watch_seed_tasks("seed", SeedWatcher { tx: watch_tx }).unwrap();
    let (_, mut n1) = register(&mut s, 0, reg("p1", "n1", false));
    assert_eq!(s.pending_seeds.len(), 1);
    let deadline = s.next_deadline();
    assert_eq!(deadline, tuning().seed_register_timeout_ns);
    s.run_due(deadline);
    assert!(s.pending_seeds.is_empty());
    // The waiting peer goes to the origin at its next wake-up (its wait timed out too).
    let wait_ns = s.core().config().wait_for_parent_timeout_ns;
    s.run_due(wait_ns);
    assert_eq!(back_to_source(&n1.drain()), Some(pb::BackToSourceReason::NoParents));
}

#[test]
fn scheduling_failure_is_sent_and_closes_the_stream() {
    let mut cfg = SchedulerConfig::preset(Policy::Dragonfly);
    cfg.back_to_source_limit = 0;
    let mut s = state_with(cfg, tuning());
    s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
    let (p1, mut n1) = register(&mut s, 0, reg("p1", "n1", false));
    let mut now = 0;
    for _ in 0..10 {
        now += 500 * NS_PER_MS;
        s.run_due(now);
    }
    let msgs = n1.drain();
    assert!(
        msgs.iter().any(|m| matches!(m, Ok(Response::Failed(f)) if f.reason() == pb::FailReason::NoSource || f.reason() == pb::FailReason::RetryLimit)),
        "{msgs:?}"
    );
    assert!(n1.closed_by_scheduler());
    assert_eq!(s.core().peer_state(p1), Some(PeerState::Failed));
}

#[test]
fn a_peer_that_does_not_read_is_disconnected() {
    let mut t = tuning();
    t.peer_stream_capacity = 1;
    let mut s = state_with(SchedulerConfig::preset(Policy::Default), t);
    s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
    // No seed host: the first peer is ordered back to source, but its queue (capacity 1)
    // already holds `Registered`.
    let (ps, mut client) = stream(1, 1);
    let p1 = s.register_peer(0, reg("p1", "n1", false), ps).unwrap();
    assert!(client.closed_by_scheduler());
    assert_eq!(s.core().peer_state(p1), Some(PeerState::Failed));
}

#[test]
fn reports_flow_and_stream_end_fails_only_unfinished_peers() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("n1", HostKind::Normal, 1)).unwrap();
    s.announce_host(0, host("n2", HostKind::Normal, 2)).unwrap();
    // No seed: p1 fetches from the origin, p2 gets p1 once p1 holds a piece.
    let (p1, mut c1) = register(&mut s, 0, reg("p1", "n1", false));
    assert_eq!(back_to_source(&c1.drain()), Some(pb::BackToSourceReason::Ordered));
    let (p2, mut c2) = register(&mut s, 1, reg("p2", "n2", false));
    let origin = pb::FinishedPiece { number: 0, parent_peer_id: None, cost_ns: 1000 };
    let req = pb::announce_peer_request::Request::PiecesFinished(pb::PiecesFinished { pieces: vec![origin] });
    s.peer_request(2, p1, req).unwrap();
    let parents = parents_of(&c2.drain()).expect("p2 gets p1");
    assert_eq!(parents[0].peer_id, "p1");

    let from_p1 = pb::FinishedPiece { number: 0, parent_peer_id: Some("p1".into()), cost_ns: 10 };
    let req = pb::announce_peer_request::Request::PiecesFinished(pb::PiecesFinished { pieces: vec![from_p1] });
    s.peer_request(3, p2, req).unwrap();
    let stat = s.stat_peer("p2").unwrap();
    assert_eq!((stat.finished_piece_count, stat.parent_peer_ids.clone()), (1, vec!["p1".to_string()]));

    // Refusals name the field.
    let bad = pb::FinishedPiece { number: 10, parent_peer_id: None, cost_ns: 0 };
    let req = pb::announce_peer_request::Request::PiecesFinished(pb::PiecesFinished { pieces: vec![bad] });
    let e = s.peer_request(4, p2, req).unwrap_err();
    assert!(e.to_string().starts_with("pieces_finished.pieces.number: piece 10 out of range"), "{e}");
    let unknown = pb::FinishedPiece { number: 1, parent_peer_id: Some("ghost".into()), cost_ns: 0 };
    let req = pb::announce_peer_request::Request::PiecesFinished(pb::PiecesFinished { pieces: vec![unknown] });
    let e = s.peer_request(4, p2, req).unwrap_err();
    assert_eq!(Status::from(e.clone()).code(), Code::InvalidArgument);
    assert!(e.to_string().contains("\"ghost\" is not known"), "{e}");

    s.peer_request(5, p1, pb::announce_peer_request::Request::DownloadFinished(pb::DownloadFinished {})).unwrap();
    s.stream_ended(6, p1, 1, None);
    s.stream_ended(6, p2, 2, None);
    assert_eq!(s.core().peer_state(p1), Some(PeerState::Succeeded));
    assert_eq!(s.core().peer_state(p2), Some(PeerState::Failed));
    assert_eq!(s.stat_peer("p1").unwrap().finished_piece_count, 10);
    assert!(!s.stat_peer("p1").unwrap().connected);
}

#[test]
fn peer_ids_are_reusable_only_after_the_peer_ended() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("n1", HostKind::Normal, 1)).unwrap();
    let (p1, _c1) = register(&mut s, 0, reg("p1", "n1", false));
    let (ps, _) = stream(9, 4);
    let e = s.register_peer(1, reg("p1", "n1", false), ps).unwrap_err();
    assert_eq!(e, ServiceError::PeerExists("p1".into()));
    s.leave_peer(2, "p1").unwrap();
    let (again, _c) = register(&mut s, 3, reg("p1", "n1", false));
    assert_ne!(again, p1);
    assert_eq!(s.stat_peer("p1").unwrap().state(), pb::PeerState::BackToSource);
}

#[test]
fn registration_refusals() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("n1", HostKind::Normal, 1)).unwrap();
    let (ps, _) = stream(1, 4);
    let e = s.register_peer(0, reg("p1", "nope", false), ps).unwrap_err();
    assert_eq!(Status::from(e).code(), Code::NotFound);
    let (_, _c) = register(&mut s, 0, reg("p1", "n1", false));
    let mut other = reg("p2", "n1", false);
    other.meta.piece_length_bytes = 1 << 20;
    other.meta.piece_count = 40;
    let (ps, _) = stream(2, 4);
    let e = s.register_peer(0, other, ps).unwrap_err();
    assert!(e.to_string().contains("piece_length_bytes = 4194304, this registration says 1048576"), "{e}");
    let e = s.watch_seed_tasks("n1", SeedWatcher { tx: mpsc::channel(1).0 }).unwrap_err();
    assert_eq!(Status::from(e).code(), Code::FailedPrecondition);
    assert_eq!(Status::from(s.stat_peer("ghost").unwrap_err()).code(), Code::NotFound);
    let e = s.stat_task(&pb::StatTaskRequest { task_id: "xyz".into(), ..Default::default() }).unwrap_err();
    assert_eq!(Status::from(e).code(), Code::InvalidArgument);
}

#[test]
fn leave_host_retires_its_peers_and_hides_the_host_until_announced_again() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("seed", HostKind::Seed, 1)).unwrap();
    s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
    let (watch_tx, mut watch_rx) = mpsc::channel(4);
    s.watch_seed_tasks("seed", SeedWatcher { tx: watch_tx }).unwrap();
    let (p1, mut c1) = register(&mut s, 0, reg("p1", "n1", false));
    assert!(watch_rx.try_recv().is_ok());
    assert_eq!(s.leave_host(1, "seed").unwrap(), 0);
    // Its watch ends, and the task's seed is now unavailable.
    assert_eq!(watch_rx.try_recv().unwrap().unwrap_err().code(), Code::Cancelled);
    assert!(s.pending_seeds.is_empty());
    let (ps, _) = stream(5, 4);
    assert!(matches!(s.register_peer(2, reg("p9", "seed", true), ps), Err(ServiceError::UnknownHost(_))));

    assert_eq!(s.leave_host(3, "n1").unwrap(), 1);
    let msgs = c1.drain();
    assert!(matches!(msgs.last(), Some(Err(st)) if st.code() == Code::Cancelled), "{msgs:?}");
    assert_eq!(s.core().peer_state(p1), Some(PeerState::Failed));
    assert_eq!(s.gauges().hosts, 0);
    s.announce_host(4, host("n1", HostKind::Normal, 2)).unwrap();
    assert_eq!(s.gauges().hosts, 1);
}

#[test]
fn idle_peers_are_evicted_with_a_status() {
    let mut s = state(Policy::Default);
    s.announce_host(0, host("n1", HostKind::Normal, 1)).unwrap();
    let (p1, mut c1) = register(&mut s, 0, reg("p1", "n1", false));
    let idle = s.core().config().peer_idle_timeout_ns;
    let mut now = 0;
    while now < idle + 2 * tuning().evict_interval_ns {
        now = s.next_deadline().max(now + 1);
        s.run_due(now);
    }
    assert_eq!(s.core().peer_state(p1), Some(PeerState::Leave));
    let msgs = c1.drain();
    assert!(
        matches!(msgs.last(), Some(Err(st)) if st.code() == Code::Aborted && st.message().contains("evicted")),
        "{msgs:?}"
    );
    assert!(c1.closed_by_scheduler());
}

/// The admission limits of `[service]`: a host too many, a peer too many on one host and a
/// live task too many are refused with RESOURCE_EXHAUSTED naming the key; a host that
/// leaves, and peers that leave, make room again.
#[test]
fn admission_limits_refuse_with_the_key_and_free_up_when_things_leave() {
    let t = Tuning { max_hosts: 2, max_peers_per_host: 2, max_tasks: 2, ..tuning() };
    let mut s = state_with(SchedulerConfig::preset(Policy::Default), t);
    s.announce_host(0, host("a", HostKind::Normal, 1)).unwrap();
    s.announce_host(0, host("b", HostKind::Normal, 2)).unwrap();
    // Announcing a known host again is no new host.
    s.announce_host(0, host("a", HostKind::Normal, 1)).unwrap();
    let e = s.announce_host(0, host("c", HostKind::Normal, 3)).unwrap_err();
    let status = Status::from(e);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("service.max_hosts"), "{}", status.message());
    s.leave_host(1, "b").unwrap();
    s.announce_host(2, host("c", HostKind::Normal, 3)).unwrap();

    let task = |n: u8| format!("{:064x}", n);
    let r = |peer: &str, host: &str, t: u8| Registration { task_id: task(t), ..reg(peer, host, false) };
    let (p1, _c1) = register(&mut s, 3, r("p1", "a", 1));
    let (_p2, _c2) = register(&mut s, 3, r("p2", "a", 2));
    let (ps, _c) = stream(99, 8);
    let e = s.register_peer(3, Registration { policy: Policy::Default, ..r("p3", "a", 1) }, ps).unwrap_err();
    assert!(Status::from(e).message().contains("service.max_peers_per_host"));
    // Two live tasks: a third is refused, on any host.
    let (ps, _c) = stream(100, 8);
    let e = s.register_peer(3, Registration { policy: Policy::Default, ..r("q3", "c", 3) }, ps).unwrap_err();
    let status = Status::from(e);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("service.max_tasks"), "{}", status.message());
    // Another peer of a live task is no new task.
    let (_q1, _cq) = register(&mut s, 3, r("q1", "c", 1));
    // p1 leaves; a's slot is free again, and task 1 still has q1.
    s.leave_peer(4, "p1").unwrap();
    // (An unfinished download that leaves counts as failed.)
    assert_eq!(s.core().peer_state(p1), Some(crate::core::PeerState::Failed));
    let (_p4, _c4) = register(&mut s, 5, r("p4", "a", 1));
}

#[test]
fn parents_carry_a_grant_for_the_child_host_and_task_only_with_a_key() {
    use super::grants::GrantIssuer;
    use svc::grant::{Grant, GrantKey};
    let grants_of = |issuer: Option<GrantIssuer>| {
        let mut s = state(Policy::Default).with_grants(issuer);
        s.announce_host(0, host("seed", HostKind::Seed, 1)).unwrap();
        s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
        let (watch_tx, _watch_rx) = mpsc::channel(4);
        s.watch_seed_tasks("seed", SeedWatcher { tx: watch_tx }).unwrap();
        let (_, mut n1) = register(&mut s, 0, reg("p1", "n1", false));
        let (_, mut seed) = register(&mut s, NS_PER_MS, reg("seed-p", "seed", true));
        // The seed is ordered to the origin: no Parents, so no grant.
        assert!(seed.drain().iter().all(|m| !matches!(m, Ok(Response::Parents(_)))));
        n1.drain()
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Ok(Response::Parents(p)) => Some(p.grant),
                _ => None,
            })
            .expect("n1 gets parents")
    };
    assert_eq!(grants_of(None), None, "no key, no grant");

    let key = GrantKey::from_bytes(&[4; 32]).unwrap();
    let before = svc::grant::unix_now_s();
    let g = grants_of(Some(GrantIssuer::new(key.clone(), 600))).expect("a grant with the Parents");
    assert!((before + 600..=svc::grant::unix_now_s() + 600).contains(&g.expires_unix_s), "{g:?}");
    let mut task = [0u8; 32];
    for (i, b) in task.iter_mut().enumerate() {
        *b = u8::from_str_radix(&TASK[2 * i..2 * i + 2], 16).unwrap();
    }
    let presented = |host: &str| Grant {
        task,
        host_id: host.into(),
        expires_unix_s: g.expires_unix_s,
        mac: g.mac.clone().try_into().expect("32-byte MAC"),
    };
    assert_eq!(key.verify(&presented("n1"), &task, before), Ok(()));
    assert!(key.verify(&presented("seed"), &task, before).is_err(), "bound to the child's host");
}

#[test]
fn resolvers_are_the_live_seeds_that_serve_one() {
    let mut s = state(Policy::Default);
    s.announce_host(0, HostAnnouncement { resolver_port: 65004, ..host("seed-b", HostKind::Seed, 9) }).unwrap();
    s.announce_host(0, HostAnnouncement { resolver_port: 65004, ..host("seed-a", HostKind::Seed, 3) }).unwrap();
    s.announce_host(0, host("seed-c", HostKind::Seed, 4)).unwrap();
    // A normal host's port is not a resolver.
    s.announce_host(0, HostAnnouncement { resolver_port: 65004, ..host("n1", HostKind::Normal, 5) }).unwrap();
    assert_eq!(s.resolvers(), vec!["10.0.0.3:65004".to_string(), "10.0.0.9:65004".to_string()]);
    s.leave_host(1, "seed-b").unwrap();
    assert_eq!(s.resolvers(), vec!["10.0.0.3:65004".to_string()], "a seed that left is no resolver");
}

#[test]
fn preheat_is_ordered_from_a_watching_seed_and_follows_its_reports() {
    let mut s = state(Policy::Default);
    let image = svc::image_ref::parse("127.0.0.1:5000/e2e/app:v1").unwrap();
    let platform = svc::image_ref::parse_platform("linux/amd64").unwrap();
    // No seed watches: the job fails at once, saying so.
    let (job, started) = s.preheat(0, 1, &image, &platform).unwrap();
    assert!(started);
    assert_eq!(job.state, super::preheat::JobState::Failed);
    assert!(job.error.as_deref().unwrap().contains("no seed peer watches"), "{job:?}");

    s.announce_host(0, host("seed", HostKind::Seed, 1)).unwrap();
    s.announce_host(0, host("n1", HostKind::Normal, 2)).unwrap();
    let (watch_tx, mut watch_rx) = mpsc::channel(4);
    s.watch_seed_tasks("seed", SeedWatcher { tx: watch_tx }).unwrap();
    let (job, started) = s.preheat(NS_PER_S, 2, &image, &platform).unwrap();
    assert!(started, "a failed job runs again");
    assert_eq!(
        (job.state, job.attempts, job.seed_host.as_deref()),
        (super::preheat::JobState::Pending, 2, Some("seed"))
    );
    let order = watch_rx.try_recv().unwrap().unwrap().preheat.expect("a preheat order");
    assert_eq!(
        (order.job_id.as_str(), order.image.as_str(), order.platform.as_str()),
        (job.id.as_str(), "127.0.0.1:5000/e2e/app:v1", "linux/amd64")
    );
    let (again, started) = s.preheat(2 * NS_PER_S, 3, &image, &platform).unwrap();
    assert!(!started && again.id == job.id && watch_rx.try_recv().is_err(), "idempotent: no second order");

    let digest = format!("sha256:{}", "ab".repeat(32));
    let report = |host: &str, state: pb::PreheatState, done: u64| pb::PreheatReport {
        host_id: host.into(),
        job_id: job.id.clone(),
        state: state as i32,
        error: String::new(),
        manifest_digest: digest.clone(),
        blobs: vec![pb::PreheatBlob { digest: digest.clone(), size_bytes: 10, done_bytes: done, task_id: TASK.into() }],
    };
    assert!(!s.report_preheat(3 * NS_PER_S, 4, report("n1", pb::PreheatState::Running, 1)).unwrap(), "not n1's job");
    assert!(s.report_preheat(3 * NS_PER_S, 4, report("seed", pb::PreheatState::Running, 4)).unwrap());
    let shown = s.preheat_job(&job.id).unwrap();
    assert_eq!((shown.state, shown.done_bytes, shown.size_bytes), (super::preheat::JobState::Running, 4, 10));
    let mut bad = report("seed", pb::PreheatState::Running, 4);
    bad.blobs[0].task_id = "x".into();
    assert!(s.report_preheat(3 * NS_PER_S, 4, bad).unwrap_err().to_string().contains("blobs.task_id"));
    let mut bad = report("seed", pb::PreheatState::Failed, 4);
    bad.error.clear();
    assert!(s.report_preheat(3 * NS_PER_S, 4, bad).unwrap_err().to_string().contains("error: is empty"));

    // The seed goes quiet: the timers fail the job at the deadline.
    let deadline = 3 * NS_PER_S + tuning().preheat_report_timeout_ns;
    assert!(s.next_deadline() <= deadline);
    s.run_due(deadline);
    let shown = s.preheat_job(&job.id).unwrap();
    assert_eq!(shown.state, super::preheat::JobState::Failed);
    assert!(shown.error.unwrap().contains("seed host seed sent no report for 60 s"));
    assert!(!s.report_preheat(deadline + 1, 5, report("seed", pb::PreheatState::Succeeded, 10)).unwrap());
}
