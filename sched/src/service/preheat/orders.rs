//! Preheat jobs in the service state: a job is ordered from one live seed host over its
//! WatchSeedTasks stream (`SeedTask.preheat`), the seed chosen by rendezvous hashing of the
//! image over the seeds that watch (so the same image goes to the same seed while it
//! lives); the seed's `ReportPreheat` calls move the job on (`jobs.rs`).
//!
//! Progress comes from the seed's reports rather than from this replica's tasks: with
//! several scheduler replicas a blob's task lives on the replica its id hashes to, which
//! is usually not the one that holds the job.

use super::jobs::{Blob, Job, JobState, Report, Submitted, MAX_BLOBS};
use crate::core::{hashring, HostId, HostKind, TimeNs};
use crate::service::error::ServiceError;
use crate::service::state::State;
use crate::service::wire;
use api::pb;
use svc::image_ref::{ImageRef, Platform};
use tokio::sync::mpsc::error::TrySendError;

impl State {
    /// Creates or finds the job of (image, platform) and, when it starts a run, orders it
    /// from a seed. Returns the job and whether a run started.
    pub fn preheat(
        &mut self,
        now: TimeNs,
        unix_ms: u64,
        image: &ImageRef,
        platform: &Platform,
    ) -> Result<(Job, bool), ServiceError> {
        let (image, platform) = (image.to_string(), platform.to_string());
        let (id, submitted) =
            self.preheat_jobs.submit(&image, &platform, now, unix_ms).map_err(ServiceError::PreheatFull)?;
        let started = submitted == Submitted::Started;
        if started {
            self.metrics.preheat("started");
            self.order_preheat(now, unix_ms, &id, &image, &platform);
        } else {
            self.metrics.preheat("reused");
        }
        let job = self.preheat_jobs.get(&id).cloned().expect("submitted above");
        Ok((job, started))
    }

    /// Sends the job to the first seed in its rendezvous order whose watch takes it; with
    /// none, the job fails saying so.
    fn order_preheat(&mut self, now: TimeNs, unix_ms: u64, id: &str, image: &str, platform: &str) {
        let watching: Vec<(HostId, u64)> = self
            .seed_watchers
            .keys()
            .filter(|h| {
                let rec = &self.hosts[h.0 as usize];
                !rec.left && rec.info.kind == HostKind::Seed
            })
            .map(|h| (*h, hashring::key_of(self.hosts[h.0 as usize].info.id.as_bytes())))
            .collect();
        let ranked = hashring::pick_n(hashring::key_of(image.as_bytes()), watching.iter().copied(), watching.len());
        let order = pb::SeedTask {
            preheat: Some(pb::PreheatOrder {
                job_id: id.to_string(),
                image: image.to_string(),
                platform: platform.to_string(),
            }),
            ..Default::default()
        };
        for host in ranked {
            let Some(w) = self.seed_watchers.get(&host) else { continue };
            let host_wire = self.hosts[host.0 as usize].info.id.clone();
            match w.tx.try_send(Ok(order.clone())) {
                Ok(()) => {
                    tracing::info!(job = id, image, platform, seed_host = host_wire, "preheat ordered");
                    self.preheat_jobs.ordered(id, &host_wire, now, unix_ms);
                    return;
                }
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(
                        job = id,
                        seed_host = host_wire,
                        "its WatchSeedTasks queue is full; trying another seed"
                    );
                }
                Err(TrySendError::Closed(_)) => {
                    self.seed_watchers.remove(&host);
                }
            }
        }
        let why = "no seed peer watches seed tasks at this scheduler (start a peerd with host.kind = \"seed\" and this scheduler among its scheduler.addresses)";
        tracing::warn!(job = id, image, "preheat cannot be ordered: {why}");
        self.metrics.preheat("failed");
        self.preheat_jobs.fail(id, why.to_string(), now, unix_ms);
    }

    /// A seed's report; whether the job is known as that host's.
    pub fn report_preheat(&mut self, now: TimeNs, unix_ms: u64, r: pb::PreheatReport) -> Result<bool, ServiceError> {
        let host = wire::id("host_id", &r.host_id)?.to_string();
        let job_id = wire::id("job_id", &r.job_id)?.to_string();
        let report = check_report(r)?;
        let state = report.state;
        let known = self.preheat_jobs.report(&host, &job_id, report, now, unix_ms);
        if known && matches!(state, JobState::Succeeded | JobState::Failed) {
            self.metrics.preheat(state.name());
            let error = self.preheat_jobs.get(&job_id).and_then(|j| j.error.clone()).unwrap_or_default();
            tracing::info!(job = job_id, seed_host = host, state = state.name(), error, "preheat ended");
        }
        Ok(known)
    }

    pub fn preheat_rows(&self) -> Vec<Job> {
        self.preheat_jobs.rows()
    }

    pub fn preheat_job(&self, id: &str) -> Option<Job> {
        self.preheat_jobs.get(id).cloned()
    }

    /// Jobs whose seed went quiet fail (`preheat.report_timeout_ms`).
    pub(in crate::service) fn expire_preheats(&mut self, now: TimeNs) {
        for id in self.preheat_jobs.expire(now, unix_now_ms()) {
            self.metrics.preheat("failed");
            tracing::warn!(job = id, "preheat failed: its seed stopped reporting");
        }
    }
}

fn check_report(r: pb::PreheatReport) -> Result<Report, ServiceError> {
    let state = match pb::PreheatState::try_from(r.state) {
        Ok(pb::PreheatState::Running) => JobState::Running,
        Ok(pb::PreheatState::Succeeded) => JobState::Succeeded,
        Ok(pb::PreheatState::Failed) => JobState::Failed,
        _ => return Err(ServiceError::field("state", format!("{} is not RUNNING, SUCCEEDED or FAILED", r.state))),
    };
    if r.blobs.len() > MAX_BLOBS {
        return Err(ServiceError::field("blobs", format!("lists {}; at most {MAX_BLOBS}", r.blobs.len())));
    }
    let digest =
        |field: &'static str, d: &str| svc::image_ref::check_digest(d).map_err(|e| ServiceError::field(field, e));
    let manifest_digest =
        if r.manifest_digest.is_empty() { None } else { Some(digest("manifest_digest", &r.manifest_digest)?) };
    let mut blobs = Vec::with_capacity(r.blobs.len());
    for b in r.blobs {
        blobs.push(Blob {
            digest: digest("blobs.digest", &b.digest)?,
            size_bytes: b.size_bytes,
            done_bytes: b.done_bytes,
            task_id: wire::task_id("blobs.task_id", &b.task_id)?,
        });
    }
    let error = (!r.error.is_empty()).then_some(r.error);
    if state == JobState::Failed && error.is_none() {
        return Err(ServiceError::field("error", "is empty; a failed job says why"));
    }
    Ok(Report { state, error, manifest_digest, blobs })
}

/// Unix milliseconds now, for what the job table shows.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
