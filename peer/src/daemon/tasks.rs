//! Downloads in progress, one per task however many local clients, mirror requests and
//! seed orders ask for it: a second request for a running task follows the first one's
//! progress, and may ask it for pieces (`Want`).

use super::download::{self, Job, Progress, Want};
use super::Ctx;
use crate::task_id::TaskId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use svc::watch;
use tokio::sync::mpsc;

/// A running download as its readers see it.
#[derive(Clone)]
pub struct Handle {
    pub progress: watch::Receiver<Progress>,
    wants: mpsc::UnboundedSender<Want>,
}

impl Handle {
    /// Passes a reader's wish to the download; false when it has ended already.
    pub fn want(&self, want: Want) -> bool {
        self.wants.send(want).is_ok()
    }
}

#[derive(Default)]
pub struct Running {
    tasks: Mutex<HashMap<TaskId, Handle>>,
}

impl Running {
    pub fn count(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Starts the job unless its task is running already; either way, its handle. A
    /// whole-content job joining a lazy download makes it fetch the rest.
    pub fn start(&self, ctx: &Arc<Ctx>, job: Job) -> Handle {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = tasks.get(&job.task) {
            if !job.lazy {
                handle.want(Want::Rest);
            }
            return handle.clone();
        }
        let (tx, rx) = watch::channel(Progress::default());
        let (wants, wants_rx) = mpsc::unbounded_channel();
        let handle = Handle { progress: rx, wants };
        tasks.insert(job.task, handle.clone());
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let task = job.task;
            download::run(ctx.clone(), job, tx, wants_rx).await;
            ctx.running.tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(&task);
        });
        handle
    }
}
