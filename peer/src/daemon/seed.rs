//! Seed mode: the scheduler pushes the tasks this host must fetch from the origin
//! (WatchSeedTasks); each becomes a download registered with need_back_to_source. A
//! `SeedTask` carrying a preheat order goes to `preheat/` instead.

use super::download::Job;
use super::Ctx;
use crate::storage::Sha256Digest;
use crate::task_id::TaskId;
use api::pb;
use std::sync::Arc;
use std::time::Duration;

const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// Keeps a watch open on one scheduler replica until shutdown.
pub async fn watch(ctx: Arc<Ctx>, address: String, mut client: api::SchedulerClient<tonic::transport::Channel>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let request = pb::WatchSeedTasksRequest { host_id: ctx.sched.host().id.clone() };
        let opened = svc::select! {
            r = client.watch_seed_tasks(request) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match opened {
            Ok(stream) => {
                tracing::info!(scheduler = address, "watching seed tasks");
                let mut stream = stream.into_inner();
                loop {
                    let next = svc::select! {
                        m = stream.message() => m,
                        _ = shutdown.wait_for(|s| *s) => return,
                    };
                    match next {
                        Ok(Some(pb::SeedTask { preheat: Some(order), .. })) => {
                            super::preheat::start(&ctx, order, client.clone(), address.clone())
                        }
                        Ok(Some(task)) => start(&ctx, task),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::warn!(scheduler = address, error = %status.message(), "seed watch ended");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::debug!(scheduler = address, error = %status.message(), "seed watch refused")
            }
        }
        svc::select! {
            _ = tokio::time::sleep(RECONNECT_BACKOFF) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // The scheduler forgets hosts when it restarts: announce again before re-watching.
        ctx.sched.announce(ctx.load()).await;
    }
}

fn start(ctx: &Arc<Ctx>, t: pb::SeedTask) {
    let task = match TaskId::from_hex(&t.task_id) {
        Ok(id) => id,
        Err(e) => return tracing::warn!(task = t.task_id, error = %e, "seed task with a bad id ignored"),
    };
    let digest = match t.digest.as_deref().map(Sha256Digest::from_oci).transpose() {
        Ok(d) => d,
        Err(e) => return tracing::warn!(task = t.task_id, error = %e, "seed task with a bad digest ignored"),
    };
    tracing::info!(task = t.task_id, url = crate::task_id::redact_url(&t.url), "seed task");
    let mut job = Job::new(task, t.url, digest, t.request_headers.into_iter().collect());
    job.seed = true;
    job.lengths = Some((t.content_length_bytes, t.piece_length_bytes));
    let _ = ctx.running.start(ctx, job);
}
