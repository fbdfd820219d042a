//! One download of one task on this host: the peer core's plan (`core::TaskDownload`)
//! driven by real events. The plan decides which piece comes from where, when to ask the
//! scheduler for new parents and when to go back to source; this file only carries its
//! actions out (piece transfers, scheduler messages) and feeds the results back.

use super::error::{DownloadError, ErrorKind};
use super::fetch::{self, OriginCursor, PieceOutcome};
use super::metrics::ByteSource;
use super::Ctx;
use crate::core::{PeerAction, PieceSizing, Source, TaskDownload};
use crate::dataplane::io::blocking;
use crate::dataplane::{FetchError, ParentPieces, PieceUpdate};
use crate::origin::OriginRequest;
use crate::storage::{Sha256Digest, TaskSpec};
use crate::task_id::{redact_url, TaskId};
use api::pb;
use api::pb::announce_peer_request::Request as Req;
use api::pb::announce_peer_response::Response as Resp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sched::core::{HostId, ParentRef, PeerId, PieceSet, Stripe, TimeNs};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use svc::watch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// What to download.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: TaskId,
    pub url: String,
    pub digest: Option<Sha256Digest>,
    pub headers: Vec<(String, String)>,
    /// A seed answering the scheduler: register with need_back_to_source.
    pub seed: bool,
    /// (content, piece) bytes when already known (a seed task carries them).
    pub lengths: Option<(u64, u64)>,
    /// The content length learnt elsewhere (the mirror's HEAD upstream): used instead of
    /// asking the origin when neither the store nor the scheduler knows the task.
    pub content_bytes_hint: Option<u64>,
    /// Fetch only the pieces asked for (`Want`), not the whole content: a range reader.
    /// An idle lazy download ends after `mirror.lazy_idle_ms`; its pieces stay stored.
    pub lazy: bool,
    /// Read the origin without verifying its certificate (a registry configured
    /// `insecure = true` in the mirror section).
    pub insecure_origin: bool,
}

impl Job {
    /// A whole-content download with no extra knowledge.
    pub fn new(task: TaskId, url: String, digest: Option<Sha256Digest>, headers: Vec<(String, String)>) -> Job {
        Job {
            task,
            url,
            digest,
            headers,
            seed: false,
            lengths: None,
            content_bytes_hint: None,
            lazy: false,
            insecure_origin: false,
        }
    }
}

/// What a reader asks of a running download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// These pieces, before the others (`TaskDownload::want`).
    Pieces(std::ops::Range<u32>),
    /// The whole content too (`TaskDownload::want_rest`): a whole-content reader joined a
    /// lazy download, or background prefetch.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    pub content_bytes: u64,
    pub finished_bytes: u64,
    pub from_parents: u64,
    pub from_origin: u64,
    pub from_cache: bool,
    /// Set when this run completed the task: the store checked the whole content against
    /// this digest (`complete_task`) just before the download counted as done.
    pub verified_digest: Option<Sha256Digest>,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Running,
    Done(PathBuf),
    Failed(DownloadError),
    /// A lazy download that nobody read from for a while ended; the pieces it got stay
    /// in the store and a new download of the task starts from them.
    Idle,
}

enum Ended {
    Complete,
    Idle,
}

/// Runs the job to its end and publishes its progress.
pub async fn run(ctx: Arc<Ctx>, job: Job, progress: watch::Sender<Progress>, wants: mpsc::UnboundedReceiver<Want>) {
    let mut p = Progress::default();
    let result = Download::start(&ctx, &job, &progress, &mut p, wants).await;
    let result = match result {
        Ok(Some(mut d)) => d.drive(&mut p).await,
        Ok(None) => Ok(Ended::Complete),
        Err(e) => Err(e),
    };
    ctx.client.forget_grant(&job.task);
    match result {
        Ok(Ended::Idle) => {
            tracing::info!(task = %job.task, finished_bytes = p.finished_bytes, "lazy download idle; pieces kept");
            ctx.metrics.download_ended("idle");
            p.state = State::Idle;
        }
        Ok(Ended::Complete) => {
            let info = ctx.store.task(&job.task);
            if !p.from_cache {
                p.verified_digest = info.as_ref().and_then(|t| t.content_digest);
            }
            let path = info.map(|t| t.content_path).unwrap_or_default();
            ctx.metrics.download_ended(if p.from_cache { "cached" } else { "ok" });
            p.state = State::Done(path);
        }
        Err(e) => {
            tracing::warn!(task = %job.task, url = redact_url(&job.url), error = %e, "download failed");
            ctx.metrics.download_ended("failed");
            p.state = State::Failed(e);
        }
    }
    let _ = progress.send(p);
}

enum Event {
    /// A parent's piece arrived and is being verified and stored: its slot is free.
    Received {
        piece: u32,
        from: Source,
    },
    Piece {
        piece: u32,
        from: Source,
        outcome: PieceOutcome,
    },
    Sync {
        parent: PeerId,
        result: Result<PieceUpdate, FetchError>,
    },
}

struct ParentLink {
    addr: SocketAddr,
    pieces: Option<ParentPieces>,
    sync: Option<JoinHandle<()>>,
}

struct Stream {
    out: mpsc::Sender<pb::AnnouncePeerRequest>,
    inbound: Streaming<pb::AnnouncePeerResponse>,
    /// The scheduler replica at the other end.
    replica: usize,
}

struct Download<'a> {
    ctx: Arc<Ctx>,
    job: &'a Job,
    progress: &'a watch::Sender<Progress>,
    plan: TaskDownload,
    rng: ChaCha8Rng,
    stream: Option<Stream>,
    parents: BTreeMap<PeerId, ParentLink>,
    local_ids: HashMap<String, PeerId>,
    wire_ids: Vec<String>,
    transfers: HashMap<(u32, Source), JoinHandle<()>>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    origin: Arc<OriginCursor>,
    finished: bool,
    wants: mpsc::UnboundedReceiver<Want>,
    /// A lazy download wanting nothing since then.
    idle_since: Option<tokio::time::Instant>,
    content_bytes: u64,
    piece_bytes: u64,
    /// When to register again after the scheduler stream broke.
    rejoin: Option<tokio::time::Instant>,
    /// Which scheduler replicas answer (`SchedLink::watch_up`).
    replicas_up: watch::Receiver<Vec<bool>>,
    rejoins: u32,
    scheduler_gave_up: bool,
    /// The scheduler's reason, once it gave up on the download (`Failed`): it ends with it.
    refused: Option<String>,
    /// Parents the scheduler of the current registration named (cleared on registering again).
    named_by_sched: std::collections::HashSet<PeerId>,
    /// For the completion log line.
    started: tokio::time::Instant,
}

/// Key mismatches between this peer and its scheduler, logged once per process.
static NO_GRANT_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static BAD_GRANT_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Tries to register again after the scheduler stream broke, `REJOIN_BACKOFF` times the
/// attempt number apart (0.5 + 1 + ... + 2.5 s: a scheduler restart fits in).
const REJOIN_ATTEMPTS: u32 = 5;
const REJOIN_BACKOFF: Duration = Duration::from_millis(500);

impl<'a> Download<'a> {
    /// Creates the task in the store; None when it is complete there already.
    async fn start(
        ctx: &Arc<Ctx>,
        job: &'a Job,
        progress: &'a watch::Sender<Progress>,
        p: &mut Progress,
        wants: mpsc::UnboundedReceiver<Want>,
    ) -> Result<Option<Download<'a>>, DownloadError> {
        let (content_bytes, piece_bytes) = lengths(ctx, job).await?;
        p.content_bytes = content_bytes;
        let info = create_task(ctx, job, content_bytes, piece_bytes).await?;
        let mut completed = info.completed;
        if completed {
            // Written to since it completed (an output linked to it and edited)? Then the
            // pieces that no longer check out are dropped and fetched again below.
            let (store, task) = (ctx.store.clone(), job.task);
            let dropped = blocking(move || store.recheck_if_modified(&task))
                .await
                .map_err(DownloadError::from)?
                .map_err(DownloadError::from)?;
            if !dropped.is_empty() {
                tracing::warn!(task = %job.task, pieces = ?dropped, "content file changed since it completed; fetching those pieces again");
                completed = false;
            }
        }
        if completed {
            ctx.metrics.bytes(ByteSource::LocalCache, content_bytes);
            p.from_cache = true;
            p.finished_bytes = content_bytes;
            return Ok(None);
        }
        let mut cfg = ctx.peer_config.clone();
        cfg.piece_sizing = PieceSizing::Fixed { piece_bytes };
        let now = ctx.now_ns();
        let mut plan = TaskDownload::new(cfg, content_bytes, !job.lazy, now);
        // Pieces kept from an earlier run count as done (and are reported as held).
        let held = ctx.store.pieces(&job.task).map_err(DownloadError::from)?;
        for piece in held.finished.iter() {
            plan.on_piece_done(now, piece, Source::Origin, 0);
            let bytes = plan.piece_len(piece);
            p.finished_bytes += bytes;
            ctx.metrics.bytes(ByteSource::LocalCache, bytes);
        }
        let seed = u64::from_le_bytes(job.task.as_bytes()[..8].try_into().unwrap_or([0; 8])) ^ now;
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut request = OriginRequest::new(job.url.clone());
        request.headers = job.headers.clone();
        let mut d = Download {
            ctx: ctx.clone(),
            job,
            progress,
            plan,
            rng: ChaCha8Rng::seed_from_u64(seed),
            stream: None,
            parents: BTreeMap::new(),
            local_ids: HashMap::new(),
            wire_ids: Vec::new(),
            transfers: HashMap::new(),
            events_tx,
            events,
            origin: Arc::new(OriginCursor::new(
                ctx.clone(),
                request,
                content_bytes,
                piece_bytes,
                job.insecure_origin,
                job.lazy,
            )),
            finished: false,
            wants,
            idle_since: None,
            content_bytes,
            piece_bytes,
            rejoin: None,
            replicas_up: ctx.sched.watch_up(),
            rejoins: 0,
            scheduler_gave_up: false,
            refused: None,
            named_by_sched: std::collections::HashSet::new(),
            started: tokio::time::Instant::now(),
        };
        let _ = progress.send(p.clone());
        d.open_stream().await;
        Ok(Some(d))
    }

    /// Registers with the scheduler in charge of the task. Without one configured the
    /// download goes to the origin at once; when it is unreachable, after the same bounded
    /// retries as `rejoin` (a scheduler restarting must not send every new download to the
    /// origin): slower for the origin, but the user gets the content.
    async fn open_stream(&mut self) {
        if self.ctx.sched.for_task(&self.job.task).is_none() {
            self.plan.on_scheduler_lost(self.ctx.now_ns());
            return;
        }
        if !self.job.seed && self.plan.skips_scheduler() {
            tracing::debug!(task = %self.job.task, bytes = self.content_bytes, "small enough to skip the scheduler (direct_source_max_bytes): reading the origin");
            self.plan.on_scheduler_lost(self.ctx.now_ns());
            if !self.plan.is_partial() {
                self.origin.want_all();
            }
            return;
        }
        match self.register().await {
            Ok(stream) => self.stream = Some(stream),
            Err(why) => {
                tracing::warn!(task = %self.job.task, why, "scheduler unreachable; registering again shortly");
                self.schedule_rejoin();
            }
        }
    }

    /// One AnnouncePeer stream with a fresh peer id, `register` sent first, at the replica
    /// in charge of the task; one that does not answer is marked so and the task's next
    /// choice is tried at once (failover), each replica at most once.
    async fn register(&mut self) -> Result<Stream, String> {
        let mut tried = Vec::new();
        loop {
            let Some(replica) = self.ctx.sched.for_task(&self.job.task) else {
                return Err("no scheduler configured".into());
            };
            if tried.contains(&replica.index) {
                return Err(format!("no scheduler replica answers ({} tried)", tried.len()));
            }
            tried.push(replica.index);
            let (index, address) = (replica.index, replica.address.to_string());
            match self.register_at(index, &address, replica.client).await {
                Ok(stream) => {
                    self.ctx.sched.mark(index, true);
                    return Ok(stream);
                }
                Err((why, answered)) => {
                    self.ctx.sched.mark(index, answered);
                    if answered || tried.len() == self.ctx.sched.replica_count() {
                        return Err(why);
                    }
                    tracing::info!(task = %self.job.task, why, "registering at the next scheduler replica");
                }
            }
        }
    }

    /// Registration at replica `index`; on failure, why and whether the replica answered.
    async fn register_at(
        &mut self,
        index: usize,
        address: &str,
        mut client: api::SchedulerClient<tonic::transport::Channel>,
    ) -> Result<Stream, (String, bool)> {
        let (out, rx) = mpsc::channel(256);
        let register = pb::RegisterPeer {
            host_id: self.ctx.sched.host().id.clone(),
            peer_id: self.ctx.new_peer_id(&self.job.task),
            task_id: self.job.task.to_hex(),
            url: self.job.url.clone(),
            digest: self.job.digest.map(|d| d.to_oci()),
            piece_length_bytes: self.piece_bytes,
            content_length_bytes: self.content_bytes,
            piece_count: self.plan.piece_count(),
            need_back_to_source: self.job.seed,
            request_headers: self.job.headers.iter().cloned().collect(),
            completed: false,
            policy: self.ctx.peer_config.policy.name().into(),
            partial: self.plan.is_partial(),
        };
        let _ = out.try_send(pb::AnnouncePeerRequest { request: Some(Req::Register(register)) });
        let call = client.announce_peer(ReceiverStream::new(rx));
        match tokio::time::timeout(self.ctx.sched.request_timeout(), call).await {
            Ok(Ok(response)) => Ok(Stream { out, inbound: response.into_inner(), replica: index }),
            Ok(Err(status)) => Err((
                format!("{address}: register refused: {}", status.message()),
                status.code() != tonic::Code::Unavailable,
            )),
            Err(_) => Err((format!("{address}: the scheduler did not answer"), false)),
        }
    }

    /// The stream broke mid-download (the scheduler restarted, or the link to it broke), or
    /// the first registration failed: announce the host again (a restarted scheduler forgot
    /// it), register again and report the pieces held, so the download stays in the swarm
    /// instead of adding a reader at the origin. After `REJOIN_ATTEMPTS` failed tries the
    /// download goes on from the origin.
    async fn rejoin(&mut self) {
        let now = self.ctx.now_ns();
        self.rejoin = None;
        self.ctx.sched.announce(self.ctx.load()).await;
        match self.register().await {
            Ok(stream) => {
                tracing::info!(task = %self.job.task, attempt = self.rejoins, "registered again with the scheduler");
                self.stream = Some(stream);
                self.named_by_sched.clear();
                let pieces: Vec<pb::FinishedPiece> = self
                    .plan
                    .have()
                    .iter()
                    .map(|number| pb::FinishedPiece { number, parent_peer_id: None, cost_ns: 0 })
                    .collect();
                if !pieces.is_empty() {
                    self.send(Req::PiecesFinished(pb::PiecesFinished { pieces }));
                }
            }
            Err(why) if self.rejoins < REJOIN_ATTEMPTS => {
                tracing::info!(task = %self.job.task, why, attempt = self.rejoins, "registering again failed; retrying");
                self.schedule_rejoin();
            }
            Err(why) => {
                tracing::warn!(task = %self.job.task, why, "cannot register again; going on from the origin");
                self.plan.on_scheduler_lost(now);
            }
        }
    }

    fn schedule_rejoin(&mut self) {
        self.rejoins += 1;
        let after = REJOIN_BACKOFF * self.rejoins;
        self.rejoin = Some(tokio::time::Instant::now() + after);
    }

    async fn drive(&mut self, p: &mut Progress) -> Result<Ended, DownloadError> {
        let mut shutdown = self.ctx.shutdown.clone();
        let mut actions = Vec::new();
        let result = loop {
            self.plan.poll(self.ctx.now_ns(), &mut self.rng, &mut actions);
            for action in actions.drain(..) {
                if let Err(e) = self.carry_out(action).await {
                    self.fail(&e).await;
                    return Err(e);
                }
            }
            self.follow_parent_changes();
            if self.finished {
                break Ok(Ended::Complete);
            }
            if let Some(reason) = self.refused.take() {
                break Err(DownloadError::new(
                    ErrorKind::Unavailable,
                    format!("the scheduler gave up on this download ({reason}); it sends no more peers to the origin for this task now; try again later"),
                ));
            }
            let idle_until = self.idle_deadline();
            if idle_until.is_some_and(|at| at <= tokio::time::Instant::now()) {
                break Ok(Ended::Idle);
            }
            if self.rejoin.is_some_and(|at| at <= tokio::time::Instant::now()) {
                self.rejoin().await;
                continue;
            }
            let deadline = self.plan.next_deadline().map(|t| self.ctx.instant_of(t));
            let deadline = [deadline, idle_until, self.rejoin].into_iter().flatten().min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let inbound = async {
                match self.stream.as_mut() {
                    Some(s) => s.inbound.message().await,
                    None => std::future::pending().await,
                }
            };
            let replica_change = self.replicas_up.changed();
            svc::select! {
                message = inbound => self.on_scheduler(message),
                Ok(()) = replica_change => self.on_replicas_changed(),
                Some(want) = self.wants.recv() => {
                    self.on_want(want);
                    while let Ok(want) = self.wants.try_recv() {
                        self.on_want(want);
                    }
                }
                Some(event) = self.events.recv() => {
                    if let Err(e) = self.on_event(event, p) {
                        break Err(e);
                    }
                    // Take whatever else is ready before deciding again.
                    while let Ok(event) = self.events.try_recv() {
                        if let Err(e) = self.on_event(event, p) {
                            self.fail(&e).await;
                            return Err(e);
                        }
                    }
                }
                _ = sleep => {}
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                    break Err(DownloadError::new(ErrorKind::Unavailable, "the daemon is shutting down"));
                }
            }
        };
        match &result {
            Err(e) => self.fail(e).await,
            // The scheduler counts the peer as failed (it leaves the swarm); the pieces
            // stay on disk for the next read.
            Ok(Ended::Idle) => self.fail(&DownloadError::new(ErrorKind::Internal, "lazy reader idle")).await,
            Ok(Ended::Complete) => {}
        }
        result
    }

    /// The replica this download's stream goes to stopped answering (the announce loop, or
    /// another download, found it so): its stream may be half-open and never break (a host
    /// that died without closing it), so it leaves that replica now and registers at the
    /// task's next choice with the pieces it holds. (When the replica comes back, running
    /// downloads stay where they are; new ones go to it.)
    fn on_replicas_changed(&mut self) {
        let up = self.replicas_up.borrow_and_update().clone();
        let Some(replica) = self.stream.as_ref().map(|s| s.replica) else { return };
        if up.get(replica) != Some(&false) || !up.iter().any(|u| *u) {
            return;
        }
        tracing::info!(task = %self.job.task, replica, "the scheduler replica of this download does not answer; registering at the next");
        self.close_stream();
        self.rejoin = Some(tokio::time::Instant::now());
    }

    fn on_want(&mut self, want: Want) {
        match want {
            Want::Pieces(range) => {
                let end = range.end.min(self.plan.piece_count());
                self.plan.want(range.start.min(end)..end);
            }
            Want::Rest => {
                self.plan.want_rest();
                // A lazy reader the origin served goes back to P2P for the rest (the plan
                // left the origin); one still at the origin reads on to the end.
                if self.plan.is_back_to_source() {
                    self.origin.want_all();
                }
            }
        }
    }

    /// When a lazy download that wants nothing more ends (None: it is not idle).
    fn idle_deadline(&mut self) -> Option<tokio::time::Instant> {
        if !self.job.lazy || !self.plan.wants_nothing_more() || self.plan.is_complete() {
            self.idle_since = None;
            return None;
        }
        let since = *self.idle_since.get_or_insert_with(tokio::time::Instant::now);
        Some(since + Duration::from_millis(self.ctx.cfg.mirror.lazy_idle_ms))
    }

    fn on_scheduler(&mut self, message: Result<Option<pb::AnnouncePeerResponse>, tonic::Status>) {
        let now = self.ctx.now_ns();
        let response = match message {
            Ok(Some(m)) => m.response,
            Ok(None) | Err(_) => {
                // Worth registering again unless the scheduler ended the stream on purpose
                // (it gave up on this peer, refused a message, or was told we leave).
                let deliberate = match &message {
                    Err(status) => matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::Cancelled),
                    _ => false,
                } || self.scheduler_gave_up;
                let why = match message {
                    Err(status) => status.message().to_string(),
                    _ => "stream closed".into(),
                };
                self.stream = None;
                if !deliberate && self.rejoins < REJOIN_ATTEMPTS {
                    tracing::warn!(task = %self.job.task, why, "lost the scheduler stream; registering again");
                    self.schedule_rejoin();
                } else {
                    tracing::warn!(task = %self.job.task, why, "lost the scheduler stream; going on from the origin");
                    self.plan.on_scheduler_lost(now);
                }
                return;
            }
        };
        match response {
            Some(Resp::Registered(_)) | None => {}
            Some(Resp::Parents(mut list)) => {
                self.take_grant(list.grant.take());
                let parents = self.parents_of(list);
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let named: Vec<String> = parents
                        .iter()
                        .map(|(r, seed, has)| {
                            let stripe =
                                r.stripe.map(|s| format!(" stripe {}/{}", s.index, s.count)).unwrap_or_default();
                            format!(
                                "{}{}: {} pieces{stripe}",
                                r.peer.0,
                                if *seed { " (seed)" } else { "" },
                                has.count()
                            )
                        })
                        .collect();
                    tracing::debug!(task = %self.job.task, parents = ?named, "parents from the scheduler");
                }
                self.plan.on_parents(now, parents);
            }
            Some(Resp::BackToSource(b)) => {
                tracing::info!(task = %self.job.task, reason = b.description, "back to source");
                self.plan.on_back_to_source(now);
                if !self.plan.is_partial() {
                    // The whole content comes from the origin: ranges run to its end.
                    self.origin.want_all();
                }
            }
            Some(Resp::Failed(f)) => {
                self.scheduler_gave_up = true;
                tracing::warn!(task = %self.job.task, reason = f.description, "the scheduler gave up on this download");
                self.plan.on_scheduling_failed(now);
                self.refused = Some(f.description);
            }
        }
    }

    /// Hands the scheduler's grant for this task to the data-plane client, which presents
    /// it to the parents. A grant that this peer's own key does not accept, or none while
    /// this peer has a key, means the scheduler's key differs: logged once per process,
    /// since every parent with the key would refuse the download.
    fn take_grant(&mut self, grant: Option<pb::DataGrant>) {
        let key = self.ctx.cfg.dataplane.server.grant_key.as_ref();
        let Some(g) = grant else {
            if key.is_some() && !NO_GRANT_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::error!(
                    task = %self.job.task,
                    "the scheduler sent parents without a data-plane grant, but this peer has [dataplane] grant_key_file: parents with the key refuse these downloads; give the scheduler the same file as [service] grant_key_file"
                );
            }
            return;
        };
        let Ok(mac) = <[u8; svc::grant::MAC_BYTES]>::try_from(g.mac.as_slice()) else {
            tracing::warn!(task = %self.job.task, mac_bytes = g.mac.len(), "the scheduler sent a grant whose MAC is not 32 bytes; ignored");
            return;
        };
        let grant = svc::grant::Grant {
            task: *self.job.task.as_bytes(),
            host_id: self.ctx.sched.host().id.clone(),
            expires_unix_s: g.expires_unix_s,
            mac,
        };
        if let Some(key) = key {
            if let Err(refusal) = key.verify(&grant, &grant.task, svc::grant::unix_now_s()) {
                if !BAD_GRANT_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::error!(
                        task = %self.job.task,
                        %refusal,
                        "the scheduler's grant does not check out with this peer's [dataplane] grant_key_file: the scheduler and every peer must read the same key (or the clocks differ by more than the grant's lifetime)"
                    );
                }
            }
        }
        self.ctx.client.set_grant(grant);
    }

    /// The scheduler's parent list for the plan; new parents get a link (their piece map
    /// arrives by long poll).
    fn parents_of(&mut self, list: pb::Parents) -> Vec<(ParentRef, bool, PieceSet)> {
        let mut out = Vec::new();
        for parent in list.parents {
            let Ok(ip) = parent.ip.parse::<std::net::IpAddr>() else {
                tracing::warn!(parent = parent.peer_id, ip = parent.ip, "parent with a bad ip ignored");
                continue;
            };
            let Ok(port) = u16::try_from(parent.data_port) else {
                continue;
            };
            let id = self.local_id(&parent.peer_id);
            self.named_by_sched.insert(id);
            let link = self.parents.entry(id).or_insert_with(|| ParentLink {
                addr: SocketAddr::new(ip, port),
                pieces: None,
                sync: None,
            });
            let has = link
                .pieces
                .as_ref()
                .map(ParentPieces::usable)
                .unwrap_or_else(|| PieceSet::new(self.plan.piece_count()));
            let stripe = parent.stripe.map(|s| Stripe { index: s.index, count: s.count });
            out.push((ParentRef { peer: id, host: HostId(id.0), stripe }, parent.is_seed, has));
        }
        out
    }

    /// The wire id of a parent, if the scheduler of the current registration named it (a
    /// scheduler refuses ids it does not know, and a restarted one forgot the old ones).
    fn sched_wire_id(&self, from: Source) -> Option<String> {
        match from {
            Source::Parent(q) if self.named_by_sched.contains(&q) => Some(self.wire_ids[q.0 as usize].clone()),
            _ => None,
        }
    }

    fn local_id(&mut self, wire: &str) -> PeerId {
        if let Some(id) = self.local_ids.get(wire) {
            return *id;
        }
        let id = PeerId(self.wire_ids.len() as u32);
        self.wire_ids.push(wire.to_string());
        self.local_ids.insert(wire.to_string(), id);
        id
    }

    /// Starts the piece-map long poll of parents the plan took, stops those it dropped.
    fn follow_parent_changes(&mut self) {
        for (parent, added) in self.plan.take_parent_changes() {
            let Some(link) = self.parents.get_mut(&parent) else {
                continue;
            };
            if !added {
                if let Some(h) = link.sync.take() {
                    h.abort();
                }
                continue;
            }
            if link.sync.is_some() {
                continue;
            }
            let (ctx, tx, addr, task) = (self.ctx.clone(), self.events_tx.clone(), link.addr, self.job.task);
            let mut known = link.pieces.clone();
            let wait = Duration::from_millis(self.ctx.cfg.download.sync_wait_ms);
            link.sync = Some(tokio::spawn(async move {
                loop {
                    let result = ctx.client.sync_pieces(addr, &task, known.as_ref(), wait).await;
                    let stop = match &result {
                        Ok(update) => {
                            known = Some(update.pieces.clone());
                            update.pieces.completed
                        }
                        Err(_) => true,
                    };
                    if tx.send(Event::Sync { parent, result }).is_err() || stop {
                        return;
                    }
                }
            }));
        }
    }

    fn on_event(&mut self, event: Event, p: &mut Progress) -> Result<(), DownloadError> {
        let now = self.ctx.now_ns();
        match event {
            Event::Sync { parent, result } => match result {
                Ok(update) => {
                    tracing::debug!(target: "piece_trace", task = %self.job.task, parent = %self.source_label(Source::Parent(parent)), added = ?update.added, "has");
                    for piece in &update.added {
                        self.plan.on_parent_has(parent, *piece);
                    }
                    self.plan.on_parent_uploads(parent, update.uploads_active);
                    if let Some(link) = self.parents.get_mut(&parent) {
                        link.pieces = Some(update.pieces);
                    }
                }
                Err(e) => {
                    tracing::info!(task = %self.job.task, error = %e, "parent unreachable");
                    if let Some(link) = self.parents.get_mut(&parent) {
                        link.sync = None;
                    }
                    self.plan.on_parent_failed(parent);
                }
            },
            Event::Received { piece, from } => {
                tracing::debug!(target: "piece_trace", task = %self.job.task, piece, from = %self.source_label(from), "received");
                self.plan.on_piece_received(piece, from)
            }
            Event::Piece { piece, from, outcome } => {
                self.transfers.remove(&(piece, from));
                if tracing::enabled!(target: "piece_trace", tracing::Level::DEBUG) {
                    let (what, bytes, took_us) = match &outcome {
                        PieceOutcome::Stored { bytes, took } => ("stored", *bytes, took.as_micros() as u64),
                        PieceOutcome::Dropped { .. } => ("dropped", 0, 0),
                        PieceOutcome::ParentFailed { .. } => ("failed", 0, 0),
                        PieceOutcome::Fatal(_) => ("fatal", 0, 0),
                    };
                    tracing::debug!(target: "piece_trace", task = %self.job.task, piece, from = %self.source_label(from), bytes, took_us, "{what}");
                }
                let source = match from {
                    Source::Origin => ByteSource::Origin,
                    Source::Parent(_) => ByteSource::Parent,
                };
                match outcome {
                    PieceOutcome::Stored { bytes, took } => {
                        let fresh = !self.plan.have().contains(piece);
                        self.plan.on_piece_done(now, piece, from, took.as_nanos() as u64);
                        self.ctx.metrics.piece(source, took);
                        if fresh {
                            self.ctx.metrics.bytes(source, bytes);
                            p.finished_bytes += bytes;
                            match from {
                                Source::Origin => p.from_origin += bytes,
                                Source::Parent(_) => p.from_parents += bytes,
                            }
                            let _ = self.progress.send(p.clone());
                        }
                        for other in self.plan.redundant_transfers(piece) {
                            if let Some(h) = self.transfers.remove(&(piece, other)) {
                                tracing::debug!(target: "piece_trace", task = %self.job.task, piece, from = %self.source_label(other), "aborted");
                                h.abort();
                            }
                            self.plan.on_transfer_dropped(piece, other);
                        }
                    }
                    PieceOutcome::Dropped { reason } => {
                        tracing::debug!(task = %self.job.task, piece, reason, "piece transfer dropped");
                        self.plan.on_transfer_dropped(piece, from);
                    }
                    PieceOutcome::ParentFailed { error } => {
                        tracing::info!(task = %self.job.task, piece, error = %error, "piece from parent failed");
                        self.ctx.metrics.piece_failed(source);
                        if let Some(parent_peer_id) = self.sched_wire_id(from) {
                            self.send(Req::PieceFailed(pb::PieceFailed { number: piece, parent_peer_id }));
                        }
                        self.plan.on_piece_failed(now, piece, from);
                    }
                    PieceOutcome::Fatal(e) => {
                        self.ctx.metrics.piece_failed(source);
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    async fn carry_out(&mut self, action: PeerAction) -> Result<(), DownloadError> {
        match action {
            PeerAction::Fetch { piece, from } => self.fetch(piece, from),
            PeerAction::Cancel { piece, from } => {
                if let Some(h) = self.transfers.remove(&(piece, from)) {
                    tracing::debug!(target: "piece_trace", task = %self.job.task, piece, from = %self.source_label(from), "aborted");
                    h.abort();
                }
            }
            PeerAction::Report(reports) => {
                let pieces = reports
                    .into_iter()
                    .map(|r| pb::FinishedPiece {
                        number: r.piece,
                        // A parent from before a new registration is unknown to this
                        // scheduler: the piece is reported without it.
                        parent_peer_id: r.parent.and_then(|q| self.sched_wire_id(Source::Parent(q))),
                        cost_ns: r.cost_ns,
                    })
                    .collect();
                self.send(Req::PiecesFinished(pb::PiecesFinished { pieces }));
            }
            PeerAction::ParentFailed { parent } => {
                // A timed-out transfer: the plan names the parent; the piece is not known
                // here any more, and the scheduler only needs the parent.
                if let Some(parent_peer_id) = self.sched_wire_id(Source::Parent(parent)) {
                    self.send(Req::PieceFailed(pb::PieceFailed { number: 0, parent_peer_id }));
                }
            }
            PeerAction::Reschedule { blocked } => {
                tracing::debug!(
                    task = %self.job.task,
                    blocked = blocked.len(),
                    have = self.plan.have().count(),
                    in_flight = self.plan.in_flight_count(),
                    "asking the scheduler for other parents"
                );
                if self.rejoin.is_some() {
                    // Registering again brings new parents.
                } else if self.stream.is_none() {
                    self.plan.on_scheduler_lost(self.ctx.now_ns());
                } else {
                    let blocked_parent_peer_ids =
                        blocked.iter().filter_map(|q| self.sched_wire_id(Source::Parent(*q))).collect();
                    self.send(Req::Reschedule(pb::Reschedule {
                        blocked_parent_peer_ids,
                        description: "parents ran dry or failed".into(),
                    }));
                }
            }
            PeerAction::AskBackToSource => {
                if self.rejoin.is_some() {
                    // Registering again brings new parents; the plan asks again if not.
                } else if self.stream.is_none() {
                    self.plan.on_scheduler_lost(self.ctx.now_ns());
                } else {
                    tracing::info!(task = %self.job.task, "no progress from parents after several reschedules; asking the scheduler for the origin");
                    self.send(Req::AskBackToSource(pb::AskBackToSource {
                        description: "no new piece after max_reschedules rounds".into(),
                    }));
                }
            }
            PeerAction::WantsAll => {
                // Without a stream the next registration carries `partial = false`.
                if self.rejoin.is_none() && self.stream.is_some() {
                    self.send(Req::WantAll(pb::WantAll {}));
                }
            }
            PeerAction::Finished => self.complete().await?,
        }
        Ok(())
    }

    /// Where a piece comes from, for the piece trace: `origin` or the parent's data-plane
    /// address.
    fn source_label(&self, from: Source) -> String {
        match from {
            Source::Origin => "origin".into(),
            Source::Parent(parent) => {
                self.parents.get(&parent).map_or_else(|| format!("{parent:?}"), |l| l.addr.to_string())
            }
        }
    }

    fn fetch(&mut self, piece: u32, from: Source) {
        tracing::debug!(target: "piece_trace", task = %self.job.task, piece, from = %self.source_label(from), "request");
        let (ctx, tx, task) = (self.ctx.clone(), self.events_tx.clone(), self.job.task);
        let handle = match from {
            Source::Origin => {
                let read = self.origin.fetch(ctx, task, piece);
                tokio::spawn(async move {
                    let outcome = read.await;
                    let _ = tx.send(Event::Piece { piece, from, outcome });
                })
            }
            Source::Parent(parent) => {
                let link = self.parents.get(&parent);
                let target = link.and_then(|l| Some((l.addr, l.pieces.as_ref()?.digest(piece)?)));
                let Some((addr, digest)) = target else {
                    // The plan only asks parents for pieces they advertised; if the map is
                    // gone, let the plan pick again.
                    self.plan.on_transfer_dropped(piece, from);
                    return;
                };
                tokio::spawn(async move {
                    let received = tx.clone();
                    let on_received = move || {
                        let _ = received.send(Event::Received { piece, from });
                    };
                    let outcome = fetch::from_parent(ctx, task, piece, addr, digest, on_received).await;
                    let _ = tx.send(Event::Piece { piece, from, outcome });
                })
            }
        };
        if let Some(old) = self.transfers.insert((piece, from), handle) {
            old.abort();
        }
    }

    /// Every piece is here: check the whole content, then tell the scheduler.
    async fn complete(&mut self) -> Result<(), DownloadError> {
        let (store, task) = (self.ctx.store.clone(), self.job.task);
        let checking = tokio::time::Instant::now();
        blocking(move || store.complete_task(&task))
            .await
            .map_err(DownloadError::from)?
            .map_err(DownloadError::from)?;
        tracing::info!(
            task = %task,
            bytes = self.content_bytes,
            ms = self.started.elapsed().as_millis() as u64,
            check_ms = checking.elapsed().as_millis() as u64,
            "download complete"
        );
        self.send(Req::DownloadFinished(pb::DownloadFinished {}));
        // The peer stays at the scheduler as a finished parent after the stream closes.
        self.close_stream();
        self.stop_background();
        self.finished = true;
        Ok(())
    }

    async fn fail(&mut self, e: &DownloadError) {
        self.send(Req::DownloadFailed(pb::DownloadFailed { description: e.message.clone() }));
        self.close_stream();
        self.stop_background();
        let _ = self.ctx.store.flush();
    }

    /// Half-closes the stream and lets the scheduler end it: dropping the response side
    /// at once would cancel the call before the last messages leave.
    fn close_stream(&mut self) {
        if let Some(Stream { out, mut inbound, .. }) = self.stream.take() {
            drop(out);
            tokio::spawn(async move {
                let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
            });
        }
    }

    fn stop_background(&mut self) {
        for (_, h) in self.transfers.drain() {
            h.abort();
        }
        for link in self.parents.values_mut() {
            if let Some(h) = link.sync.take() {
                h.abort();
            }
        }
    }

    fn send(&mut self, request: Req) {
        if let Some(s) = &self.stream {
            if s.out.try_send(pb::AnnouncePeerRequest { request: Some(request) }).is_err() {
                tracing::warn!(task = %self.job.task, "scheduler stream full or closed; message dropped");
            }
        }
    }
}

impl Drop for Download<'_> {
    fn drop(&mut self) {
        self.stop_background();
    }
}

/// (content, piece) bytes: the job's, the store's, the scheduler's (the first peer's
/// choice), or the origin's length with our piece size.
async fn lengths(ctx: &Ctx, job: &Job) -> Result<(u64, u64), DownloadError> {
    if let Some(l) = job.lengths {
        return Ok(l);
    }
    if let Some(t) = ctx.store.task(&job.task) {
        return Ok((t.content_bytes, t.piece_bytes));
    }
    if let Some(l) = ctx.sched.task_lengths(&job.task).await {
        return Ok(l);
    }
    if let Some(content_bytes) = job.content_bytes_hint {
        return Ok((content_bytes, ctx.peer_config.piece_sizing.piece_bytes(content_bytes)));
    }
    let mut request = OriginRequest::new(job.url.clone());
    request.headers = job.headers.clone();
    // Transient errors are retried as piece reads are (`download.origin_retries`).
    let backoff = Duration::from_millis(ctx.cfg.download.origin_retry_backoff_ms);
    let mut attempt = 0;
    let info = loop {
        match ctx.origin_for(job.insecure_origin).stat(&request).await {
            Ok(info) => break info,
            Err(e) if e.is_transient() && attempt < ctx.cfg.download.origin_retries => {
                attempt += 1;
                tracing::warn!(task = %job.task, attempt, error = %e, "origin length lookup failed; retrying");
                tokio::time::sleep(backoff * attempt).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok((info.content_bytes, ctx.peer_config.piece_sizing.piece_bytes(info.content_bytes)))
}

async fn create_task(
    ctx: &Ctx,
    job: &Job,
    content_bytes: u64,
    piece_bytes: u64,
) -> Result<crate::storage::TaskInfo, DownloadError> {
    let spec =
        TaskSpec { id: job.task, url: redact_url(&job.url), content_bytes, piece_bytes, content_digest: job.digest };
    match ctx.store.create_task(spec.clone()) {
        Err(crate::storage::StoreError::QuotaExceeded { .. }) => {
            // Make room once (idle and least recently used tasks), then try again.
            ctx.collect_garbage().await;
            ctx.store.create_task(spec).map_err(DownloadError::from)
        }
        other => other.map_err(DownloadError::from),
    }
}

/// The peer core's clock: nanoseconds from `start` to `at`.
pub fn ns_between(start: tokio::time::Instant, at: tokio::time::Instant) -> TimeNs {
    at.saturating_duration_since(start).as_nanos() as TimeNs
}
