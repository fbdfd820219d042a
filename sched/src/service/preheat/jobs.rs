//! The preheat job table: which images were asked for, what the seed doing each one last
//! said, and when a job counts as lost. No I/O and no clock of its own: time comes in as
//! the service's `TimeNs` (deadlines) and as Unix milliseconds (what is shown).
//!
//! A job's id is derived from its image and platform, so asking again for the same image
//! finds the same job: a pending, running or recently succeeded one is returned as it is,
//! a failed one (or one that succeeded longer than `reuse_succeeded_ns` ago: the tag may
//! have moved) runs again under the same id.

use crate::core::TimeNs;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Blobs one report may list: an image of 4096 layers is far past any real one (Docker's
/// own limit is 127), and each costs the table about 200 bytes.
pub const MAX_BLOBS: usize = 4096;
/// A failure's text is cut here: it is shown, not parsed.
pub const MAX_ERROR_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Ordered from a seed, which has not reported yet.
    Pending,
    /// The seed resolves the image or fetches its blobs.
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }
    fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blob {
    pub digest: String,
    pub size_bytes: u64,
    pub done_bytes: u64,
    pub task_id: String,
}

/// One job as `GET /api/v1/jobs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: String,
    /// The normalised reference (`svc::image_ref`).
    pub image: String,
    pub platform: String,
    pub state: JobState,
    pub error: Option<String>,
    /// The seed host the job was ordered from.
    pub seed_host: Option<String>,
    pub manifest_digest: Option<String>,
    pub blobs: Vec<Blob>,
    pub size_bytes: u64,
    pub done_bytes: u64,
    /// Blobs the seed holds whole.
    pub blobs_done: usize,
    /// Runs of this job (a failed or stale job asked again runs again).
    pub attempts: u32,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
    #[serde(skip)]
    last_heard_ns: TimeNs,
    #[serde(skip)]
    finished_ns: Option<TimeNs>,
}

/// A seed's report, checked (`orders.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub state: JobState,
    pub error: Option<String>,
    pub manifest_digest: Option<String>,
    pub blobs: Vec<Blob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Jobs kept; past it the oldest finished one goes, and with none finished a new job
    /// is refused.
    pub max_jobs: usize,
    /// A pending or running job whose seed has not reported for this long failed.
    pub report_timeout_ns: TimeNs,
    /// A succeeded job asked again within this is returned as it is; after it, it runs
    /// again (cheap: the seeds hold the blobs; it re-reads the manifest).
    pub reuse_succeeded_ns: TimeNs,
}

/// What `submit` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// The job exists and goes on as it is.
    Existing,
    /// A new run: the caller orders it from a seed (`ordered`) or fails it.
    Started,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the preheat job table is full: {limit} jobs are pending or running (preheat.max_jobs); retry when some finish, or raise preheat.max_jobs")]
pub struct Full {
    pub limit: usize,
}

pub struct Jobs {
    limits: JobLimits,
    jobs: BTreeMap<String, Job>,
}

/// The job id of an image and platform: 16 hex digits of a sha256 (a collision among the
/// at most `max_jobs` jobs kept is out of reach).
pub fn job_id(image: &str, platform: &str) -> String {
    let digest = Sha256::digest(format!("p2pimg-preheat-v1\n{image}\n{platform}\n").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Jobs {
    pub fn new(limits: JobLimits) -> Jobs {
        assert!(limits.max_jobs > 0, "preheat.max_jobs is checked at load to be at least 1");
        Jobs { limits, jobs: BTreeMap::new() }
    }

    pub fn get(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Every job, the newest first.
    pub fn rows(&self) -> Vec<Job> {
        let mut rows: Vec<Job> = self.jobs.values().cloned().collect();
        rows.sort_by(|a, b| b.created_unix_ms.cmp(&a.created_unix_ms).then_with(|| a.id.cmp(&b.id)));
        rows
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Creates the job of (image, platform), or finds it (see the module doc).
    pub fn submit(
        &mut self,
        image: &str,
        platform: &str,
        now: TimeNs,
        unix_ms: u64,
    ) -> Result<(String, Submitted), Full> {
        let id = job_id(image, platform);
        if let Some(job) = self.jobs.get_mut(&id) {
            let stale = job.finished_ns.is_some_and(|t| now.saturating_sub(t) >= self.limits.reuse_succeeded_ns);
            let again = match job.state {
                JobState::Pending | JobState::Running => false,
                JobState::Succeeded => stale,
                JobState::Failed => true,
            };
            if !again {
                return Ok((id, Submitted::Existing));
            }
            job.attempts += 1;
            job.state = JobState::Pending;
            job.error = None;
            job.seed_host = None;
            job.finished_ns = None;
            job.last_heard_ns = now;
            job.updated_unix_ms = unix_ms;
            return Ok((id, Submitted::Started));
        }
        if self.jobs.len() >= self.limits.max_jobs {
            let oldest = self
                .jobs
                .values()
                .filter(|j| j.state.is_finished())
                .min_by_key(|j| (j.updated_unix_ms, j.id.clone()))
                .map(|j| j.id.clone());
            match oldest {
                Some(old) => {
                    self.jobs.remove(&old);
                }
                None => return Err(Full { limit: self.limits.max_jobs }),
            }
        }
        let job = Job {
            id: id.clone(),
            image: image.to_string(),
            platform: platform.to_string(),
            state: JobState::Pending,
            error: None,
            seed_host: None,
            manifest_digest: None,
            blobs: Vec::new(),
            size_bytes: 0,
            done_bytes: 0,
            blobs_done: 0,
            attempts: 1,
            created_unix_ms: unix_ms,
            updated_unix_ms: unix_ms,
            last_heard_ns: now,
            finished_ns: None,
        };
        self.jobs.insert(id.clone(), job);
        assert!(self.jobs.len() <= self.limits.max_jobs, "the job table stays within preheat.max_jobs");
        Ok((id, Submitted::Started))
    }

    /// The job was sent to `seed_host` (its wire id): its reports are awaited from now.
    pub fn ordered(&mut self, id: &str, seed_host: &str, now: TimeNs, unix_ms: u64) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.seed_host = Some(seed_host.to_string());
            job.last_heard_ns = now;
            job.updated_unix_ms = unix_ms;
        }
    }

    pub fn fail(&mut self, id: &str, error: String, now: TimeNs, unix_ms: u64) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.state = JobState::Failed;
            job.error = Some(cut(error));
            job.finished_ns = Some(now);
            job.updated_unix_ms = unix_ms;
        }
    }

    /// A report from `seed_host`: false when no unfinished job of that id was ordered from
    /// it (the seed may stop reporting).
    pub fn report(&mut self, seed_host: &str, id: &str, report: Report, now: TimeNs, unix_ms: u64) -> bool {
        let Some(job) = self.jobs.get_mut(id) else { return false };
        if job.state.is_finished() || job.seed_host.as_deref() != Some(seed_host) {
            return false;
        }
        job.state = match report.state {
            JobState::Pending => JobState::Running,
            s => s,
        };
        job.error = report.error.map(cut);
        if report.manifest_digest.is_some() {
            job.manifest_digest = report.manifest_digest;
        }
        if !report.blobs.is_empty() {
            // Saturating: the sizes come from the wire (a report of u64::MAX sizes must not
            // wrap or, with overflow checks, panic).
            job.size_bytes = report.blobs.iter().fold(0u64, |a, b| a.saturating_add(b.size_bytes));
            job.done_bytes = report.blobs.iter().fold(0u64, |a, b| a.saturating_add(b.done_bytes.min(b.size_bytes)));
            job.blobs_done = report.blobs.iter().filter(|b| b.done_bytes >= b.size_bytes).count();
            job.blobs = report.blobs;
        }
        job.last_heard_ns = now;
        job.updated_unix_ms = unix_ms;
        if job.state.is_finished() {
            job.finished_ns = Some(now);
        }
        true
    }

    /// Fails the unfinished jobs whose seed went quiet; their ids.
    pub fn expire(&mut self, now: TimeNs, unix_ms: u64) -> Vec<String> {
        let timeout_ns = self.limits.report_timeout_ns;
        let mut failed = Vec::new();
        for job in self.jobs.values_mut() {
            if job.state.is_finished() || now.saturating_sub(job.last_heard_ns) < timeout_ns {
                continue;
            }
            let seed = job.seed_host.as_deref().unwrap_or("(none)");
            job.state = JobState::Failed;
            job.error = Some(format!(
                "seed host {seed} sent no report for {} s (it left, restarted or lost its link to this scheduler); ask again to retry",
                timeout_ns / 1_000_000_000
            ));
            job.finished_ns = Some(now);
            job.updated_unix_ms = unix_ms;
            failed.push(job.id.clone());
        }
        failed
    }

    /// When the next unfinished job would time out.
    pub fn next_deadline(&self) -> Option<TimeNs> {
        self.jobs
            .values()
            .filter(|j| !j.state.is_finished())
            .map(|j| j.last_heard_ns.saturating_add(self.limits.report_timeout_ns))
            .min()
    }

    /// (state name, jobs in it), for the gauges.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        [JobState::Pending, JobState::Running, JobState::Succeeded, JobState::Failed]
            .into_iter()
            .map(|s| (s.name(), self.jobs.values().filter(|j| j.state == s).count() as i64))
            .collect()
    }
}

/// At most `MAX_ERROR_BYTES`, cut on a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: TimeNs = 1_000_000_000;

    fn jobs(max_jobs: usize) -> Jobs {
        Jobs::new(JobLimits { max_jobs, report_timeout_ns: 60 * S, reuse_succeeded_ns: 600 * S })
    }

    fn blob(digest: &str, size: u64, done: u64) -> Blob {
        Blob { digest: digest.into(), size_bytes: size, done_bytes: done, task_id: "t".repeat(64) }
    }

    fn report(state: JobState, blobs: Vec<Blob>) -> Report {
        Report { state, error: None, manifest_digest: Some("sha256:m".into()), blobs }
    }

    #[test]
    fn the_same_image_is_the_same_job_until_it_fails_or_goes_stale() {
        let mut t = jobs(8);
        let (id, how) = t.submit("r/a:v1", "linux/amd64", 0, 1000).unwrap();
        assert_eq!((id.len(), how), (16, Submitted::Started));
        assert_eq!(t.submit("r/a:v1", "linux/amd64", S, 1001).unwrap(), (id.clone(), Submitted::Existing));
        assert_ne!(t.submit("r/a:v1", "linux/arm64", S, 1001).unwrap().0, id, "another platform, another job");
        t.ordered(&id, "seed-1", S, 1001);
        assert!(t.report("seed-1", &id, report(JobState::Running, vec![blob("a", 10, 4)]), 2 * S, 1002));
        let j = t.get(&id).unwrap();
        assert_eq!((j.state, j.size_bytes, j.done_bytes, j.blobs_done), (JobState::Running, 10, 4, 0));
        assert!(!t.report("seed-2", &id, report(JobState::Succeeded, vec![]), 2 * S, 1002), "not its job");
        assert!(t.report("seed-1", &id, report(JobState::Succeeded, vec![blob("a", 10, 10)]), 3 * S, 1003));
        assert_eq!(t.get(&id).unwrap().blobs_done, 1);
        assert!(!t.report("seed-1", &id, report(JobState::Running, vec![]), 4 * S, 1004), "finished jobs take none");
        assert_eq!(t.submit("r/a:v1", "linux/amd64", 500 * S, 1005).unwrap().1, Submitted::Existing);
        assert_eq!(t.submit("r/a:v1", "linux/amd64", 604 * S, 1006).unwrap().1, Submitted::Started, "stale");
        let j = t.get(&id).unwrap();
        assert_eq!((j.state, j.attempts, j.seed_host.as_deref()), (JobState::Pending, 2, None));
        t.fail(&id, "x".repeat(10_000), 605 * S, 1007);
        assert!(t.get(&id).unwrap().error.as_ref().unwrap().len() <= MAX_ERROR_BYTES + 3);
        assert_eq!(t.submit("r/a:v1", "linux/amd64", 606 * S, 1008).unwrap().1, Submitted::Started, "failed: again");
    }

    #[test]
    fn quiet_seeds_fail_their_jobs_at_the_deadline() {
        let mut t = jobs(8);
        let (id, _) = t.submit("r/a:v1", "linux/amd64", 0, 0).unwrap();
        t.ordered(&id, "seed-1", 5 * S, 0);
        assert_eq!(t.next_deadline(), Some(65 * S));
        assert!(t.expire(64 * S, 0).is_empty());
        assert!(t.report("seed-1", &id, report(JobState::Running, vec![]), 30 * S, 0));
        assert_eq!(t.next_deadline(), Some(90 * S));
        assert_eq!(t.expire(90 * S, 0), vec![id.clone()]);
        let j = t.get(&id).unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert!(j.error.as_ref().unwrap().contains("seed host seed-1 sent no report for 60 s"), "{j:?}");
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn the_table_is_bounded_by_evicting_the_oldest_finished_job() {
        let mut t = jobs(2);
        let (a, _) = t.submit("r/a:1", "p", 0, 1).unwrap();
        let (b, _) = t.submit("r/a:2", "p", 0, 2).unwrap();
        assert_eq!(t.submit("r/a:3", "p", 0, 3).unwrap_err(), Full { limit: 2 });
        t.fail(&b, "x".into(), 0, 4);
        t.fail(&a, "x".into(), 0, 5);
        let (c, _) = t.submit("r/a:3", "p", 0, 6).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.get(&b).is_none() && t.get(&a).is_some() && t.get(&c).is_some(), "b finished first");
        assert_eq!(t.rows().iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![c, a], "newest first");
    }

    #[test]
    fn reported_sizes_add_up_without_wrapping() {
        let mut t = jobs(8);
        let (id, _) = t.submit("r/a:v1", "linux/amd64", 0, 1000).unwrap();
        t.ordered(&id, "seed-1", S, 1001);
        let huge = |d: &str| blob(d, u64::MAX, u64::MAX);
        assert!(t.report("seed-1", &id, report(JobState::Running, vec![huge("a"), huge("b")]), 2 * S, 1002));
        let j = t.get(&id).unwrap();
        assert_eq!((j.size_bytes, j.done_bytes, j.blobs_done), (u64::MAX, u64::MAX, 2));
    }
}
