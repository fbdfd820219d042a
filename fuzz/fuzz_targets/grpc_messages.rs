//! The scheduler's gRPC messages, decoded from protobuf as tonic does (prost), checked
//! (`service::wire`) and applied to the service state in order, as the handlers in
//! `service::grpc` and `service::peer_stream` do: host announcements, AnnouncePeer streams
//! (register first, then pieces finished, failed, reschedule...), leaves and stats, with
//! time passing and timers running in between.
//!
//! Input: records of `tag:u8 len:u16 BE message`.
#![no_main]
use api::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sched::service::metrics::Metrics;
use sched::service::state::{PeerStream, State};
use sched::service::wire;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

type Rx = mpsc::Receiver<Result<pb::AnnouncePeerResponse, tonic::Status>>;

fuzz_target!(|data: &[u8]| {
    static CFG: OnceLock<sched::service::ServiceConfig> = OnceLock::new();
    let cfg = CFG.get_or_init(|| sched::service::parse("", "fuzz.toml").expect("the default configuration"));
    let mut state = State::new(cfg.scheduler.clone(), cfg.tuning, 7, Arc::new(Metrics::new()));
    let mut now: u64 = 0;
    let mut streams: Vec<(sched::core::PeerId, Rx, oneshot::Receiver<()>)> = Vec::new();
    let mut next_stream = 1u64;
    let mut rest = data;
    while let Some(&[tag, a, b]) = rest.first_chunk::<3>() {
        let len = usize::from(u16::from_be_bytes([a, b])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        now += 1_000_000;
        match tag % 8 {
            0 => {
                let Ok(m) = pb::AnnounceHostRequest::decode(bytes) else { continue };
                if let Ok(ann) = wire::host(m.host) {
                    assert!(ann.data_port != 0 && !ann.id.is_empty());
                    let _ = state.announce_host(now, ann);
                }
            }
            1 => {
                let Ok(m) = pb::AnnouncePeerRequest::decode(bytes) else { continue };
                match m.request {
                    Some(pb::announce_peer_request::Request::Register(r)) => {
                        let Ok(reg) = wire::registration(r) else { continue };
                        assert!(reg.meta.piece_count <= wire::MAX_PIECE_COUNT);
                        assert!(
                            reg.task_id.len() == 64
                                && reg.task_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                        );
                        let (tx, rx) = mpsc::channel(64);
                        let (stop, stopped) = oneshot::channel();
                        let stream = PeerStream { id: next_stream, tx, stop };
                        next_stream += 1;
                        if let Ok(peer) = state.register_peer(now, reg, stream) {
                            streams.push((peer, rx, stopped));
                        }
                    }
                    Some(other) => {
                        // To the stream named by the tag's high bits.
                        if !streams.is_empty() {
                            let (peer, ..) = streams[usize::from(tag >> 3) % streams.len()];
                            let _ = state.peer_request(now, peer, other);
                        }
                    }
                    None => {}
                }
            }
            2 => {
                let Ok(m) = pb::LeaveHostRequest::decode(bytes) else { continue };
                let _ = state.leave_host(now, &m.host_id);
            }
            3 => {
                let Ok(m) = pb::LeaveTaskRequest::decode(bytes) else { continue };
                let _ = state.leave_task(now, &m.host_id, &m.task_id);
            }
            4 => {
                let Ok(m) = pb::LeavePeerRequest::decode(bytes) else { continue };
                let _ = state.leave_peer(now, &m.peer_id);
            }
            5 => {
                let Ok(m) = pb::StatTaskRequest::decode(bytes) else { continue };
                let _ = state.stat_task(&m);
            }
            6 => {
                let Ok(m) = pb::StatPeerRequest::decode(bytes) else { continue };
                let _ = state.stat_peer(&m.peer_id);
            }
            _ => {
                // Time passes: up to about 18 hours, in ms.
                let ms = bytes.iter().take(4).fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) & 0x3ff_ffff;
                now += ms * 1_000_000;
                state.run_due(now);
            }
        }
        for (_, rx, _) in streams.iter_mut() {
            while rx.try_recv().is_ok() {}
        }
        // A stream the state closed: its peer's stream ended (as peer_stream::drive reports).
        streams.retain_mut(|(_, _, stopped)| !matches!(stopped.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
    }
});
