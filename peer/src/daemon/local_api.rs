//! The local API (`api/proto/daemon.proto`) that `dfget` calls: start or join a download,
//! stream its progress, and keep the finished task pinned while the client copies it.

use super::download::{Job, Progress, State, Want};
use super::error::{DownloadError, ErrorKind};
use super::tasks::Handle;
use super::Ctx;
use crate::dataplane::io::blocking;
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
    Ok(Job::new(task, r.url.clone(), digest, r.request_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
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
        range_offset_bytes: 0,
        range_length_bytes: 0,
        verified_digest: p.verified_digest.map(|d| d.to_oci()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Daemon for LocalApi {
    type DownloadStream = ProgressStream;

    async fn download(&self, request: Request<dpb::DownloadRequest>) -> Result<Response<ProgressStream>, Status> {
        let r = request.into_inner();
        let mut job = job_of(&self.ctx, &r).map_err(|e| e.to_status())?;
        let range = match r.range {
            Some(b) if b.end.is_some_and(|e| e < b.start) => {
                let e = b.end.unwrap_or_default();
                return Err(Status::invalid_argument(format!("range {}-{e}: the end is before the start", b.start)));
            }
            Some(b) => Some((b.start, b.end)),
            None => None,
        };
        // A range without a digest is a lazy read; with one, the whole content is checked.
        job.lazy = range.is_some() && job.digest.is_none();
        tracing::info!(task = %job.task, url = redact_url(&r.url), ?range, "local download");
        let handle = self.ctx.running.start(&self.ctx, job.clone());
        let (tx, rx) = mpsc::channel(16);
        let follower = Follower { ctx: self.ctx.clone(), job, handle, range, resolved: None, restarts: 0, tx };
        tokio::spawn(follower.run());
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

/// Follows one local download to its end and streams its progress; with a range, ends as
/// soon as the pieces covering it are here (lazy) or the whole content is (with a digest).
struct Follower {
    ctx: Arc<Ctx>,
    job: Job,
    handle: Handle,
    range: Option<(u64, Option<u64>)>,
    /// The range clipped to the content: (offset, length) and the pieces covering it.
    resolved: Option<((u64, u64), std::ops::Range<u32>)>,
    restarts: u32,
    tx: mpsc::Sender<Result<DownloadProgress, Status>>,
}

/// A lazy download that went idle under a waiting client is started again at most this often.
const MAX_RESTARTS: u32 = 3;

impl Follower {
    async fn run(mut self) {
        let task_hex = self.job.task.to_hex();
        let mut sent: Option<Progress> = None;
        loop {
            let p = self.handle.progress.borrow_and_update().clone();
            if let Err(status) = self.resolve_range() {
                let _ = self.tx.send(Err(status)).await;
                return;
            }
            let lazy_ready = self.job.lazy && self.range_pieces_here();
            match p.state.clone() {
                State::Failed(e) => {
                    let _ = self.tx.send(Err(e.to_status())).await;
                    return;
                }
                State::Done(path) => return self.finish(&task_hex, &p, path).await,
                _ if lazy_ready => {
                    let path = self.ctx.store.task(&self.job.task).map(|t| t.content_path).unwrap_or_default();
                    return self.finish(&task_hex, &p, path).await;
                }
                State::Idle => {
                    if self.restarts >= MAX_RESTARTS {
                        let _ = self
                            .tx
                            .send(Err(Status::internal("the download kept stopping before the range was in")))
                            .await;
                        return;
                    }
                    self.restarts += 1;
                    self.handle = self.ctx.running.start(&self.ctx, self.job.clone());
                    if let Some((_, pieces)) = &self.resolved {
                        self.handle.want(Want::Pieces(pieces.clone()));
                    }
                    continue;
                }
                State::Running => {
                    if sent.as_ref() != Some(&p) {
                        if self.tx.send(Ok(message(&task_hex, &p))).await.is_err() {
                            return; // the client went away; the download goes on
                        }
                        sent = Some(p);
                    }
                }
            }
            let ended = tokio::select! {
                changed = self.handle.progress.changed() => changed.is_err(),
                // Lazy reads end on the store's pieces, not the download's progress alone.
                _ = tokio::time::sleep(Duration::from_millis(200)), if self.job.lazy => false,
            };
            if ended && matches!(self.handle.progress.borrow().state, State::Running) {
                let _ = self.tx.send(Err(Status::internal("the download stopped without a result"))).await;
                return;
            }
        }
    }

    /// Clips the range once the content length is known and asks for its pieces first.
    fn resolve_range(&mut self) -> Result<(), Status> {
        let Some((start, end)) = self.range else { return Ok(()) };
        if self.resolved.is_some() {
            return Ok(());
        }
        let Some(t) = self.ctx.store.task(&self.job.task) else { return Ok(()) };
        if start >= t.content_bytes {
            return Err(DownloadError::new(
                ErrorKind::OutOfRange,
                format!("range starts at byte {start}; the content has {} bytes", t.content_bytes),
            )
            .to_status());
        }
        let stop = end.map_or(t.content_bytes, |e| e.saturating_add(1).min(t.content_bytes));
        let piece = t.piece_bytes.max(1);
        let pieces = (start / piece) as u32..((stop - 1) / piece) as u32 + 1;
        self.handle.want(Want::Pieces(pieces.clone()));
        self.resolved = Some(((start, stop - start), pieces));
        Ok(())
    }

    fn range_pieces_here(&self) -> bool {
        let Some((_, pieces)) = &self.resolved else { return false };
        self.ctx.store.pieces(&self.job.task).is_ok_and(|m| pieces.clone().all(|p| m.finished.contains(p)))
    }

    /// Pins the task (re-checking a lazy range's pieces), sends the last message and holds
    /// the pin until the client closes the stream.
    async fn finish(&mut self, task_hex: &str, p: &Progress, path: std::path::PathBuf) {
        let task = self.job.task;
        let pin = match self.ctx.store.pin(&task) {
            Ok(pin) => pin,
            Err(e) => {
                let _ = self.tx.send(Err(DownloadError::from(e).to_status())).await;
                return;
            }
        };
        if self.range.is_some() && self.resolved.is_none() {
            if let Err(status) = self.resolve_range() {
                let _ = self.tx.send(Err(status)).await;
                return;
            }
        }
        let mut last = message(task_hex, p);
        if let Some(((offset, length), pieces)) = self.resolved.clone() {
            if self.job.lazy {
                // Re-hash the pieces the client will read: corrupt bytes are never handed out.
                let store = self.ctx.store.clone();
                let checked =
                    blocking(move || pieces.into_iter().try_for_each(|i| store.read_piece(&task, i).map(|_| ()))).await;
                let failed = match checked {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(DownloadError::from(e)),
                    Err(e) => Some(DownloadError::from(e)),
                };
                if let Some(e) = failed {
                    let _ = self.tx.send(Err(e.to_status())).await;
                    return;
                }
            }
            last.range_offset_bytes = offset;
            last.range_length_bytes = length;
        }
        last.done = true;
        last.content_path = path.display().to_string();
        if self.tx.send(Ok(last)).await.is_ok() {
            let hold = Duration::from_millis(self.ctx.cfg.download.hold_for_client_ms);
            let _ = tokio::time::timeout(hold, self.tx.closed()).await;
        }
        drop(pin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_messages_carry_the_digest_the_store_checked() {
        let digest = Sha256Digest::of(b"content");
        let p = Progress { content_bytes: 7, finished_bytes: 7, verified_digest: Some(digest), ..Progress::default() };
        let m = message("t", &p);
        assert_eq!(m.verified_digest, digest.to_oci(), "dfget skips its own hash only on this exact string");
        assert!(m.verified_digest.starts_with("sha256:"));
        let unchecked = message("t", &Progress::default());
        assert_eq!(unchecked.verified_digest, "", "no digest checked: dfget must hash");
    }
}
