//! The gRPC face of the service: `api::pb::scheduler_server::Scheduler` over `Shared`.
//! Each method checks its input (`wire.rs`), runs one state call, and maps refusals to
//! statuses (`error.rs`). AnnouncePeer streams are driven by `peer_stream.rs`.

use super::error::ServiceError;
use super::peer_stream;
use super::shared::Shared;
use super::state::SeedWatcher;
use super::wire;
use api::pb;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct SchedulerService {
    shared: Arc<Shared>,
}

impl SchedulerService {
    pub fn new(shared: Arc<Shared>) -> SchedulerService {
        SchedulerService { shared }
    }

    fn refused(&self, request: &'static str, e: ServiceError) -> Status {
        self.shared.metrics.refused(request);
        tracing::debug!(request, error = %e, "request refused");
        e.into()
    }

    fn ensure_serving(&self) -> Result<(), Status> {
        if self.shared.is_shutting_down() {
            return Err(Status::unavailable("the scheduler is shutting down"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for SchedulerService {
    async fn announce_host(
        &self,
        request: Request<pb::AnnounceHostRequest>,
    ) -> Result<Response<pb::AnnounceHostResponse>, Status> {
        self.ensure_serving()?;
        let ann = wire::host(request.into_inner().host).map_err(|e| self.refused("announce_host", e))?;
        let host_id = ann.id.clone();
        let resolvers = self
            .shared
            .with_state("announce_host", |s, now| s.announce_host(now, ann).map(|()| s.resolvers()))
            .map_err(|e| self.refused("announce_host", e))?;
        tracing::debug!(host = host_id, "host announced");
        Ok(Response::new(pb::AnnounceHostResponse { scheduler_instance: self.shared.instance.clone(), resolvers }))
    }

    async fn leave_host(
        &self,
        request: Request<pb::LeaveHostRequest>,
    ) -> Result<Response<pb::LeaveHostResponse>, Status> {
        let host_id = request.into_inner().host_id;
        let peers_left = self
            .shared
            .with_state("leave_host", |s, now| s.leave_host(now, &host_id))
            .map_err(|e| self.refused("leave_host", e))?;
        Ok(Response::new(pb::LeaveHostResponse { peers_left }))
    }

    type AnnouncePeerStream = ReceiverStream<Result<pb::AnnouncePeerResponse, Status>>;

    async fn announce_peer(
        &self,
        request: Request<Streaming<pb::AnnouncePeerRequest>>,
    ) -> Result<Response<Self::AnnouncePeerStream>, Status> {
        self.ensure_serving()?;
        let (tx, rx) = mpsc::channel(self.shared.tuning.peer_stream_capacity);
        // Read the stream in a task of its own: the client may send `register` only after
        // this call returned its response headers.
        tokio::spawn(peer_stream::drive(self.shared.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type WatchSeedTasksStream = ReceiverStream<Result<pb::SeedTask, Status>>;

    async fn watch_seed_tasks(
        &self,
        request: Request<pb::WatchSeedTasksRequest>,
    ) -> Result<Response<Self::WatchSeedTasksStream>, Status> {
        self.ensure_serving()?;
        let host_id = request.into_inner().host_id;
        let (tx, rx) = mpsc::channel(self.shared.tuning.seed_watch_capacity);
        let watcher = SeedWatcher { tx };
        self.shared
            .with_state("watch_seed_tasks", |s, _| s.watch_seed_tasks(&host_id, watcher))
            .map_err(|e| self.refused("watch_seed_tasks", e))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn report_preheat(
        &self,
        request: Request<pb::PreheatReport>,
    ) -> Result<Response<pb::PreheatReportResponse>, Status> {
        self.ensure_serving()?;
        let report = request.into_inner();
        let unix_ms = super::preheat::unix_now_ms();
        let known = self
            .shared
            .with_state("report_preheat", |s, now| s.report_preheat(now, unix_ms, report))
            .map_err(|e| self.refused("report_preheat", e))?;
        Ok(Response::new(pb::PreheatReportResponse { known }))
    }

    async fn stat_task(&self, request: Request<pb::StatTaskRequest>) -> Result<Response<pb::TaskStat>, Status> {
        let req = request.into_inner();
        let stat = self.shared.read(|s| s.stat_task(&req)).map_err(|e| self.refused("stat_task", e))?;
        Ok(Response::new(stat))
    }

    async fn stat_peer(&self, request: Request<pb::StatPeerRequest>) -> Result<Response<pb::PeerStat>, Status> {
        let peer_id = request.into_inner().peer_id;
        let stat = self.shared.read(|s| s.stat_peer(&peer_id)).map_err(|e| self.refused("stat_peer", e))?;
        Ok(Response::new(stat))
    }

    async fn leave_task(
        &self,
        request: Request<pb::LeaveTaskRequest>,
    ) -> Result<Response<pb::LeaveTaskResponse>, Status> {
        let req = request.into_inner();
        let peers_left = self
            .shared
            .with_state("leave_task", |s, now| s.leave_task(now, &req.host_id, &req.task_id))
            .map_err(|e| self.refused("leave_task", e))?;
        Ok(Response::new(pb::LeaveTaskResponse { peers_left }))
    }

    async fn leave_peer(
        &self,
        request: Request<pb::LeavePeerRequest>,
    ) -> Result<Response<pb::LeavePeerResponse>, Status> {
        let peer_id = request.into_inner().peer_id;
        self.shared
            .with_state("leave_peer", |s, now| s.leave_peer(now, &peer_id))
            .map_err(|e| self.refused("leave_peer", e))?;
        Ok(Response::new(pb::LeavePeerResponse {}))
    }
}
