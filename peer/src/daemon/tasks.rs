//! Downloads in progress, one per task however many local clients and seed orders ask for
//! it: a second request for a running task follows the first one's progress.

use super::download::{self, Job, Progress};
use super::Ctx;
use crate::task_id::TaskId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Default)]
pub struct Running {
    tasks: Mutex<HashMap<TaskId, watch::Receiver<Progress>>>,
}

impl Running {
    pub fn count(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Starts the job unless its task is running already; either way, its progress.
    pub fn start(&self, ctx: &Arc<Ctx>, job: Job) -> watch::Receiver<Progress> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = tasks.get(&job.task) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Progress::default());
        tasks.insert(job.task, rx.clone());
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let task = job.task;
            download::run(ctx.clone(), job, tx).await;
            ctx.running.tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(&task);
        });
        rx
    }
}
