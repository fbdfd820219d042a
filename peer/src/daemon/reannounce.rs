//! Completed tasks made known again. A scheduler that has not seen this host's tasks (the
//! daemon restarted with a full store, or the scheduler restarted and forgot its peers)
//! would send the next downloads of them to the seed or the origin; registering each one
//! as `completed` makes this host a parent for them again, without fetching a byte.

use super::Ctx;
use api::pb;
use api::pb::announce_peer_request::Request as Req;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Registers, in the background, the completed tasks each replica in `replicas` is in
/// charge of.
pub fn spawn(ctx: &Arc<Ctx>, replicas: Vec<usize>) {
    for replica in replicas {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let (registered, failed) = completed_tasks(&ctx, |task| ctx.sched.replica_of(task) == Some(replica)).await;
            if registered + failed > 0 {
                tracing::info!(replica, registered, failed, "completed tasks announced to the scheduler");
            }
        });
    }
}

/// Registers, in the background, the completed tasks whose replica changed between the
/// answering replicas `before` and `after` (failover, or a replica back) with their new one:
/// it did not hear of them, and would send their next downloads to the seed. Replicas in
/// `told` (restarted ones, which `spawn` tells of all their tasks) are left out.
pub fn spawn_moved(ctx: &Arc<Ctx>, before: Vec<bool>, after: Vec<bool>, told: &[usize]) {
    let ctx = ctx.clone();
    let told = told.to_vec();
    tokio::spawn(async move {
        let moved = |task: &crate::task_id::TaskId| {
            let now = ctx.sched.replica_of_among(task, &after);
            now != ctx.sched.replica_of_among(task, &before) && !now.is_some_and(|r| told.contains(&r))
        };
        let (registered, failed) = completed_tasks(&ctx, moved).await;
        if registered + failed > 0 {
            tracing::info!(registered, failed, "completed tasks announced to the replicas now in charge of them");
        }
    });
}

/// One registration at a time (a scheduler just back from a restart gets every host's
/// list at once), of the completed tasks `pick` selects. Returns (registered, failed).
async fn completed_tasks(ctx: &Ctx, pick: impl Fn(&crate::task_id::TaskId) -> bool) -> (usize, usize) {
    let mut counts = (0, 0);
    for task in ctx.store.tasks() {
        if *ctx.shutdown.borrow() {
            break;
        }
        if !task.completed || !pick(&task.id) {
            continue;
        }
        match register_completed(ctx, &task).await {
            Ok(()) => counts.0 += 1,
            Err(e) => {
                counts.1 += 1;
                tracing::warn!(task = %task.id, error = e, "completed task not announced");
            }
        }
    }
    counts
}

/// Opens an AnnouncePeer stream, registers as `completed`, waits for `registered`, and
/// closes its side: the scheduler keeps a finished peer after its stream ends.
async fn register_completed(ctx: &Ctx, task: &crate::storage::TaskInfo) -> Result<(), String> {
    let super::sched_link::Replica { address, mut client, .. } =
        ctx.sched.for_task(&task.id).ok_or("no scheduler configured")?;
    let register = pb::RegisterPeer {
        host_id: ctx.sched.host().id.clone(),
        peer_id: ctx.new_peer_id(&task.id),
        task_id: task.id.to_hex(),
        url: task.url.clone(),
        digest: task.content_digest.map(|d| d.to_oci()),
        piece_length_bytes: task.piece_bytes,
        content_length_bytes: task.content_bytes,
        piece_count: task.piece_count,
        need_back_to_source: false,
        request_headers: Default::default(),
        completed: true,
        policy: ctx.peer_config.policy.name().into(),
        partial: false,
    };
    let (out, rx) = mpsc::channel(1);
    out.try_send(pb::AnnouncePeerRequest { request: Some(Req::Register(register)) })
        .map_err(|_| "the stream's queue is full".to_string())?;
    let timeout = ctx.sched.request_timeout();
    let exchange = async {
        let mut inbound = client.announce_peer(ReceiverStream::new(rx)).await?.into_inner();
        inbound.message().await
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    drop(out);
    match result {
        Err(_) => Err(format!("scheduler {address} did not answer within {} ms", timeout.as_millis())),
        Ok(Err(status)) => Err(format!("scheduler {address} refused: {}", status.message())),
        Ok(Ok(None)) => Err(format!("scheduler {address} closed the stream without an answer")),
        Ok(Ok(Some(_registered))) => Ok(()),
    }
}
