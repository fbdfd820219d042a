//! Preheat on a seed peer: the scheduler orders a job on the WatchSeedTasks stream
//! (`SeedTask.preheat`: job id, image, platform); the seed resolves the image at its
//! registry, follows an index to the platform's manifest, and fetches every blob (config
//! and layers) as a seed download of the blob's digest, the task id the peers' mirrors use
//! (`task_id.rs`, rule 1), so a rollout after it reads the blobs from the seeds. It reports
//! to the scheduler replica that ordered it (`ReportPreheat`) every `REPORT_INTERVAL` and
//! at the end.
//!
//! The registry is one the mirror proxies (`mirror.registries`, `mirror.allowed_hosts`): a
//! preheat cannot make the seed fetch from anywhere else. Credentials come from
//! `[preheat] docker_config`; the blob downloads carry the `Authorization` the registry
//! accepted for the manifest. The mirror's caches are not primed: they are keyed by the
//! client's own credentials (so the registry keeps deciding who may read) and live seconds
//! (`mirror.tag_ttl_ms`), while a preheat runs minutes before its rollout.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | `[preheat]` of peerd.toml |
//! | `credentials.rs` | Docker's config.json |
//! | `challenge.rs` | `WWW-Authenticate` |
//! | `registry.rs` | GETs with Basic auth or the token flow |
//! | `manifest.rs` | indexes, manifests, the platform's choice |

// The registry is read over HTTP (reqwest): not in the madsim build, whose seeds fail
// preheat orders saying so.
#[cfg(not(madsim))]
mod challenge;
pub mod config;
pub mod credentials;
#[cfg(not(madsim))]
mod manifest;
#[cfg(not(madsim))]
mod registry;

/// The parsers of registry and operator bytes, for the fuzz targets (`fuzz/`); not an API.
#[cfg(all(feature = "fuzzing", not(madsim)))]
#[doc(hidden)]
pub mod fuzzing {
    pub use super::challenge::{parse as parse_challenge, Challenge};
    pub use super::credentials::{parse as parse_docker_config, DockerConfig};
    pub use super::manifest::{choose, parse as parse_manifest, IndexEntry, Manifest};
}

use super::Ctx;
#[cfg(not(madsim))]
use crate::daemon::mirror::forward;
use api::pb;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How often a running job reports: the scheduler fails a job after
/// `[preheat] report_timeout_ms` (60 s by default) without one.
const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// The final report is tried this many times, `REPORT_INTERVAL` apart.
const FINAL_REPORT_TRIES: u32 = 5;
/// Blobs one job may list (the scheduler takes as many).
#[cfg(not(madsim))]
const MAX_BLOBS: usize = 4096;

/// The jobs this seed runs, by id: a job ordered again (by another replica, or after the
/// scheduler retried it) while it runs is not run twice.
pub struct Preheats {
    running: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
}

impl Preheats {
    pub fn new(jobs_in_flight: usize) -> Preheats {
        Preheats { running: Mutex::new(HashSet::new()), slots: Arc::new(Semaphore::new(jobs_in_flight)) }
    }

    fn claim(&self, id: &str) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string())
    }

    fn release(&self, id: &str) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// A job as its reports show it.
#[derive(Debug, Clone, Default)]
struct Status {
    state: i32,
    error: String,
    manifest_digest: String,
    blobs: Vec<BlobStatus>,
}

#[derive(Debug, Clone)]
struct BlobStatus {
    digest: String,
    size_bytes: u64,
    task_id: String,
    done_bytes: u64,
    /// The running download's progress, read at each report.
    progress: Option<svc::watch::Receiver<super::download::Progress>>,
}

type Shared = Arc<Mutex<Status>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Status> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the order in the background, reporting to `client` (the replica that sent it).
pub fn start(
    ctx: &Arc<Ctx>,
    order: pb::PreheatOrder,
    client: api::SchedulerClient<tonic::transport::Channel>,
    scheduler: String,
) {
    if order.job_id.is_empty() {
        return tracing::warn!(scheduler, "preheat order without a job id ignored");
    }
    if !ctx.preheats.claim(&order.job_id) {
        return tracing::info!(job = order.job_id, "preheat already running here; the order is a repeat");
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let status: Shared =
            Arc::new(Mutex::new(Status { state: pb::PreheatState::Running as i32, ..Default::default() }));
        let (done_tx, done_rx) = svc::watch::channel(false);
        let reporter = tokio::spawn(report_loop(ctx.clone(), client, order.job_id.clone(), status.clone(), done_rx));
        tracing::info!(job = order.job_id, image = order.image, platform = order.platform, scheduler, "preheat");
        let slot = ctx.preheats.slots.clone().acquire_owned().await;
        let result = match slot {
            Ok(_slot) => run(&ctx, &order, &status).await,
            Err(_) => Err("the seed is stopping".to_string()),
        };
        {
            let mut s = lock(&status);
            match &result {
                Ok(()) => s.state = pb::PreheatState::Succeeded as i32,
                Err(e) => {
                    s.state = pb::PreheatState::Failed as i32;
                    s.error = e.clone();
                }
            }
        }
        match &result {
            Ok(()) => tracing::info!(job = order.job_id, image = order.image, "preheat succeeded"),
            Err(e) => tracing::warn!(job = order.job_id, image = order.image, error = e.as_str(), "preheat failed"),
        }
        let _ = done_tx.send(true);
        let _ = reporter.await;
        ctx.preheats.release(&order.job_id);
    });
}

/// Reports every `REPORT_INTERVAL` until the job ends, then its end (a few tries).
async fn report_loop(
    ctx: Arc<Ctx>,
    mut client: api::SchedulerClient<tonic::transport::Channel>,
    job_id: String,
    status: Shared,
    mut done: svc::watch::Receiver<bool>,
) {
    let mut known = true;
    loop {
        let finished = svc::select! {
            _ = tokio::time::sleep(REPORT_INTERVAL) => false,
            _ = done.wait_for(|d| *d) => true,
        };
        let report = snapshot(&ctx, &job_id, &status);
        if !finished {
            if known {
                known = send(&ctx, &mut client, report).await.unwrap_or(true);
            }
            continue;
        }
        for attempt in 1..=FINAL_REPORT_TRIES {
            match send(&ctx, &mut client, report.clone()).await {
                Some(_) => return,
                None if attempt < FINAL_REPORT_TRIES => tokio::time::sleep(REPORT_INTERVAL).await,
                None => tracing::warn!(
                    job = job_id,
                    "the preheat's end could not be reported; the scheduler will time it out"
                ),
            }
        }
        return;
    }
}

/// Sends one report: Some(whether the scheduler knows the job), None when it did not answer.
async fn send(
    ctx: &Ctx,
    client: &mut api::SchedulerClient<tonic::transport::Channel>,
    report: pb::PreheatReport,
) -> Option<bool> {
    match tokio::time::timeout(ctx.sched.request_timeout(), client.report_preheat(report)).await {
        Ok(Ok(r)) => Some(r.into_inner().known),
        Ok(Err(status)) => {
            tracing::debug!(error = status.message(), "preheat report refused");
            None
        }
        Err(_) => None,
    }
}

fn snapshot(ctx: &Ctx, job_id: &str, status: &Shared) -> pb::PreheatReport {
    let mut s = lock(status);
    for b in &mut s.blobs {
        if let Some(p) = &b.progress {
            b.done_bytes = b.done_bytes.max(p.borrow().finished_bytes);
        }
    }
    pb::PreheatReport {
        host_id: ctx.sched.host().id.clone(),
        job_id: job_id.to_string(),
        state: s.state,
        error: s.error.clone(),
        manifest_digest: s.manifest_digest.clone(),
        blobs: s
            .blobs
            .iter()
            .map(|b| pb::PreheatBlob {
                digest: b.digest.clone(),
                size_bytes: b.size_bytes,
                done_bytes: b.done_bytes.min(b.size_bytes),
                task_id: b.task_id.clone(),
            })
            .collect(),
    }
}

#[cfg(madsim)]
async fn run(_ctx: &Arc<Ctx>, _order: &pb::PreheatOrder, _status: &Shared) -> Result<(), String> {
    Err("preheat reads registries over HTTP, which the madsim build leaves out".into())
}

/// Resolves the image and fetches its blobs; the error says what failed, naming the
/// registry's answer.
#[cfg(not(madsim))]
async fn run(ctx: &Arc<Ctx>, order: &pb::PreheatOrder, status: &Shared) -> Result<(), String> {
    use crate::daemon::mirror::{forward::Clients, upstream};
    let image = svc::image_ref::parse(&order.image)?;
    let platform = svc::image_ref::parse_platform(&order.platform)?;
    let upstream = upstream::resolve(&ctx.cfg.mirror, Some(&image.registry), None).map_err(|r| {
        format!("{} (this seed's configuration: preheat reads only the registries its mirror proxies)", r.message())
    })?;
    let credentials = match &ctx.cfg.preheat.docker_config {
        Some(path) => credentials::load_optional(path)?.and_then(|c| c.for_registry(&image.registry).cloned()),
        None => None,
    };
    let clients = Clients::new(&ctx.cfg.origin, ctx.cfg.mirror.upstream_timeout_ms)?;
    let mut reg = registry::Registry::new(&clients, upstream, &image.repository, credentials);
    let (digest, mut doc) = fetch_manifest(&mut reg, &image.repository, image.reference()).await?;
    lock(status).manifest_digest = digest.clone();
    if let manifest::Manifest::Index(entries) = &doc {
        let entry = manifest::choose(entries, &platform).map_err(|e| format!("{image}: {e}"))?;
        let (digest, chosen) = fetch_manifest(&mut reg, &image.repository, &entry.digest.clone()).await?;
        lock(status).manifest_digest = digest;
        doc = chosen;
    }
    let blobs = match doc {
        manifest::Manifest::Image(blobs) => blobs,
        manifest::Manifest::Index(_) => return Err(format!("{image}: the index for {platform} names another index")),
    };
    if blobs.len() > MAX_BLOBS {
        return Err(format!("{image}: the manifest lists {} blobs; at most {MAX_BLOBS} are preheated", blobs.len()));
    }
    fetch_blobs(ctx, &reg, &image.repository, blobs, status).await
}

/// GET of a manifest by tag or digest, its bytes checked: (its digest, what it is).
#[cfg(not(madsim))]
async fn fetch_manifest(
    reg: &mut registry::Registry<'_>,
    repository: &str,
    reference: &str,
) -> Result<(String, manifest::Manifest), String> {
    use sha2::{Digest, Sha256};
    let path = format!("/v2/{repository}/manifests/{reference}");
    let response = reg.get(&path, manifest::ACCEPT).await?;
    let status = response.status();
    if !status.is_success() {
        let body = forward::read_limited(response, 16 << 10).await.unwrap_or_default();
        return Err(format!(
            "registry {} answered {status} for GET {path}: {}",
            reg.upstream.host,
            registry::registry_message(&body)
        ));
    }
    let named = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = forward::read_limited(response, manifest::MAX_MANIFEST_BYTES).await?;
    let digest = format!("sha256:{:x}", Sha256::digest(&body));
    let expected = if reference.starts_with("sha256:") { Some(reference.to_string()) } else { named };
    if let Some(e) = expected.filter(|e| e.starts_with("sha256:") && *e != digest) {
        return Err(format!(
            "registry {}: GET {path} sent a manifest whose sha256 is {digest}, not {e}",
            reg.upstream.host
        ));
    }
    let doc = manifest::parse(&body).map_err(|e| format!("registry {}: {path}: {e}", reg.upstream.host))?;
    Ok((digest, doc))
}

/// One seed download per blob, `blobs_in_flight` at a time; the first failure (after the
/// others ended: what they fetched is kept) fails the job.
#[cfg(not(madsim))]
async fn fetch_blobs(
    ctx: &Arc<Ctx>,
    reg: &registry::Registry<'_>,
    repository: &str,
    blobs: Vec<manifest::BlobRef>,
    status: &Shared,
) -> Result<(), String> {
    use super::download::{Job, State};
    use crate::storage::Sha256Digest;
    use crate::task_id::TaskRequest;
    let headers: Vec<(String, String)> =
        reg.authorization().map(|a| vec![("Authorization".to_string(), a.to_string())]).unwrap_or_default();
    let mut jobs = Vec::with_capacity(blobs.len());
    for b in &blobs {
        let sha256 = Sha256Digest::from_oci(&b.digest).map_err(|e| format!("blob {}: {e}", b.digest))?;
        let task = ctx
            .ids
            .task_id(&TaskRequest { url: "", tag: None, application: None, digest: Some(&b.digest) })
            .map_err(|e| e.to_string())?;
        let url = format!("{}/v2/{repository}/blobs/{}", reg.upstream.endpoint, b.digest);
        let mut job = Job::new(task, url, Some(sha256), headers.clone());
        job.seed = true;
        job.content_bytes_hint = Some(b.size_bytes);
        job.insecure_origin = reg.upstream.insecure;
        jobs.push(job);
    }
    lock(status).blobs = blobs
        .iter()
        .zip(&jobs)
        .map(|(b, j)| BlobStatus {
            digest: b.digest.clone(),
            size_bytes: b.size_bytes,
            task_id: j.task.to_hex(),
            done_bytes: 0,
            progress: None,
        })
        .collect();
    let slots = Arc::new(Semaphore::new(ctx.cfg.preheat.blobs_in_flight));
    let mut running = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.into_iter().enumerate() {
        let (ctx, slots, status) = (ctx.clone(), slots.clone(), status.clone());
        running.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.map_err(|_| "the seed is stopping".to_string())?;
            let digest = job.digest.map(|d| d.to_oci()).unwrap_or_default();
            let mut progress = ctx.running.start(&ctx, job).progress;
            lock(&status).blobs[i].progress = Some(progress.clone());
            let ended = progress.wait_for(|p| p.state != State::Running).await.map(|p| p.clone());
            let mut s = lock(&status);
            let size = s.blobs[i].size_bytes;
            match ended.map(|p| p.state) {
                Ok(State::Done(_)) => {
                    s.blobs[i].done_bytes = size;
                    Ok(())
                }
                Ok(State::Failed(e)) => Err(format!("blob {digest} ({size} bytes): {e}")),
                Ok(State::Idle | State::Running) | Err(_) => {
                    Err(format!("blob {digest}: its download ended unfinished"))
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for r in running {
        match r.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("a blob download panicked: {e}")),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => Err(format!("{} (and {} more blobs failed)", failures.remove(0), n - 1)),
    }
}
