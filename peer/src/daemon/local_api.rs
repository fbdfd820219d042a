//! The local API (`api/proto/daemon.proto`) that `dfget` calls: start or join a download,
//! stream its progress, and keep the finished task pinned while the client copies it.

use super::download::{Job, Progress, State};
use super::error::{DownloadError, ErrorKind};
use super::Ctx;
use crate::storage::Sha256Digest;
use crate::task_id::{redact_url, TaskRequest};
use api::daemon_pb::daemon_server::Daemon;
use api::daemon_pb::{self as dpb, CachedTask, DownloadProgress, ListTasksResponse};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct LocalApi {
    ctx: Arc<Ctx>,
}

impl LocalApi {
    pub fn new(ctx: Arc<Ctx>) -> LocalApi {
        LocalApi { ctx }
    }
}

type ProgressStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<DownloadProgress, Status>> + Send>>;

/// Checks a request and names its task.
pub fn job_of(ctx: &Ctx, r: &dpb::DownloadRequest) -> Result<Job, DownloadError> {
    let invalid = |m: String| DownloadError::new(ErrorKind::InvalidInput, m);
    let url =
        url::Url::parse(r.url.trim()).map_err(|e| invalid(format!("{}: invalid URL: {e}", redact_url(&r.url))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "{}: unsupported scheme {:?} (supported: http, https)",
            redact_url(&r.url),
            url.scheme()
        )));
    }
    let digest = match r.digest.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(Sha256Digest::from_oci(d).map_err(|e| invalid(format!("digest {d:?}: {e}")))?),
        None => None,
    };
    let request = TaskRequest {
        url: &r.url,
        tag: (!r.tag.is_empty()).then_some(r.tag.as_str()),
        application: (!r.application.is_empty()).then_some(r.application.as_str()),
        digest: r.digest.as_deref().filter(|d| !d.is_empty()),
    };
    let task = ctx.ids.task_id(&request).map_err(|e| invalid(e.to_string()))?;
    for (name, value) in &r.request_headers {
        let bad_name = name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if bad_name || value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(invalid(format!("request header {name:?} is not a valid HTTP header")));
        }
    }
    Ok(Job {
        task,
        url: r.url.clone(),
        digest,
        headers: r.request_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        seed: false,
        lengths: None,
    })
}

fn message(task: &str, p: &Progress) -> DownloadProgress {
    DownloadProgress {
        task_id: task.to_string(),
        content_length_bytes: p.content_bytes,
        finished_bytes: p.finished_bytes,
        bytes_from_parents: p.from_parents,
        bytes_from_origin: p.from_origin,
        from_cache: p.from_cache,
        done: false,
        content_path: String::new(),
    }
}

#[tonic::async_trait]
impl Daemon for LocalApi {
    type DownloadStream = ProgressStream;

    async fn download(&self, request: Request<dpb::DownloadRequest>) -> Result<Response<ProgressStream>, Status> {
        let r = request.into_inner();
        let job = job_of(&self.ctx, &r).map_err(|e| e.to_status())?;
        let task = job.task;
        let task_hex = task.to_hex();
        tracing::info!(task = task_hex, url = redact_url(&r.url), "local download");
        let mut progress = self.ctx.running.start(&self.ctx, job);
        let (tx, rx) = mpsc::channel(16);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            loop {
                let p = progress.borrow_and_update().clone();
                match p.state.clone() {
                    State::Running => {
                        if tx.send(Ok(message(&task_hex, &p))).await.is_err() {
                            return; // the client went away; the download goes on
                        }
                    }
                    State::Failed(e) => {
                        let _ = tx.send(Err(e.to_status())).await;
                        return;
                    }
                    State::Done(path) => {
                        // Pinned until the client has read the file and closed the stream.
                        let pin = match ctx.store.pin(&task) {
                            Ok(pin) => pin,
                            Err(e) => {
                                let _ = tx.send(Err(DownloadError::from(e).to_status())).await;
                                return;
                            }
                        };
                        let mut last = message(&task_hex, &p);
                        last.done = true;
                        last.content_path = path.display().to_string();
                        if tx.send(Ok(last)).await.is_ok() {
                            let hold = Duration::from_millis(ctx.cfg.download.hold_for_client_ms);
                            let _ = tokio::time::timeout(hold, tx.closed()).await;
                        }
                        drop(pin);
                        return;
                    }
                }
                if progress.changed().await.is_err() {
                    // The sender is gone only after the final state was sent; read it.
                    if !matches!(progress.borrow().state, State::Running) {
                        continue;
                    }
                    let _ = tx.send(Err(Status::internal("the download stopped without a result"))).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_tasks(&self, _: Request<dpb::ListTasksRequest>) -> Result<Response<ListTasksResponse>, Status> {
        let tasks = self
            .ctx
            .store
            .tasks()
            .into_iter()
            .map(|t| CachedTask {
                task_id: t.id.to_hex(),
                url: t.url,
                content_length_bytes: t.content_bytes,
                finished_bytes: t.finished_bytes,
                completed: t.completed,
            })
            .collect();
        Ok(Response::new(ListTasksResponse { tasks }))
    }
}
