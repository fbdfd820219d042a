//! The preheat endpoints on the scheduler's HTTP port, all JSON:
//!
//! - `POST /api/v1/preheat` `{"image": "...", "platform": "linux/amd64"}` (platform
//!   optional, `[preheat] platform` by default): the job, 201 when a run started, 200 when
//!   the job exists and goes on;
//! - `GET /api/v1/jobs` (newest first), `GET /api/v1/jobs/ID`;
//! - `POST /api/v1/webhooks/harbor`: Harbor's push event; `{"jobs": [...]}`, or 202 with
//!   `{"ignored": why}` for other event types.
//!
//! Refusals are `{"error": "..."}` naming the field at fault. With `[preheat] auth_file`
//! the two POSTs need its value as `Authorization` (401 otherwise); without it anyone who
//! reaches the port can start preheats, as anyone can read the listing API there.

use super::harbor::{self, Event};
use super::orders::unix_now_ms;
use super::PreheatConfig;
use crate::service::error::ServiceError;
use crate::service::shared::Shared;
use serde::Deserialize;
use svc::image_ref;
use svc::probe_http::{Reply, Request};

const JSON: &str = "application/json";

/// The reply to a preheat path, or None for any other path.
pub fn handle(shared: &Shared, cfg: &PreheatConfig, req: &Request) -> Option<Reply> {
    let path = req.path.as_str();
    let reply = match (req.method.as_str(), path) {
        ("POST", "/api/v1/preheat") => authorized(cfg, req).unwrap_or_else(|| preheat(shared, cfg, &req.body)),
        ("POST", "/api/v1/webhooks/harbor") => authorized(cfg, req).unwrap_or_else(|| webhook(shared, cfg, &req.body)),
        ("GET", "/api/v1/jobs") => json(200, &shared.read(|s| s.preheat_rows())),
        ("GET", _) if path.starts_with("/api/v1/jobs/") => {
            let id = &path["/api/v1/jobs/".len()..];
            match shared.read(|s| s.preheat_job(id)) {
                Some(job) => json(200, &job),
                None => error(
                    404,
                    &format!("no preheat job {:?} at this scheduler (GET /api/v1/jobs lists them)", shown(id)),
                ),
            }
        }
        (_, "/api/v1/preheat" | "/api/v1/webhooks/harbor") => error(405, &format!("{path} takes POST")),
        (_, "/api/v1/jobs") => error(405, &format!("{path} takes GET")),
        _ if path.starts_with("/api/v1/jobs/") => error(405, "/api/v1/jobs/ID takes GET"),
        _ => return None,
    };
    Some(reply)
}

/// None when the request may go on; the 401 otherwise.
fn authorized(cfg: &PreheatConfig, req: &Request) -> Option<Reply> {
    let secret = cfg.auth.as_ref()?;
    if secret.accepts(req.authorization.as_deref()) {
        return None;
    }
    let why = if req.authorization.is_none() { "missing" } else { "not the expected value" };
    Some(error(401, &format!("Authorization: {why}; send the value the scheduler's [preheat] auth_file holds")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreheatRequest {
    image: String,
    #[serde(default)]
    platform: Option<String>,
}

fn preheat(shared: &Shared, cfg: &PreheatConfig, body: &[u8]) -> Reply {
    let request: PreheatRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                400,
                &format!(
                    "request body: {e}; send {{\"image\": \"REGISTRY/REPOSITORY:TAG\", \"platform\": \"linux/amd64\"}}"
                ),
            )
        }
    };
    let image = match image_ref::parse(&request.image) {
        Ok(i) => i,
        Err(e) => return error(400, &format!("image: {e}")),
    };
    let platform = match request.platform.as_deref() {
        None | Some("") => cfg.platform.clone(),
        Some(p) => match image_ref::parse_platform(p) {
            Ok(p) => p,
            Err(e) => return error(400, &format!("platform: {e}")),
        },
    };
    let unix_ms = unix_now_ms();
    match shared.with_state("preheat", |s, now| s.preheat(now, unix_ms, &image, &platform)) {
        Ok((job, started)) => json(if started { 201 } else { 200 }, &job),
        Err(e) => refused(e),
    }
}

fn webhook(shared: &Shared, cfg: &PreheatConfig, body: &[u8]) -> Reply {
    let images = match harbor::parse(body) {
        Ok(Event::Push(images)) => images,
        Ok(Event::Ignored(why)) => return json(202, &serde_json::json!({ "ignored": why })),
        Err(e) => return error(400, &e),
    };
    let unix_ms = unix_now_ms();
    let mut jobs = Vec::with_capacity(images.len());
    for image in &images {
        match shared.with_state("preheat", |s, now| s.preheat(now, unix_ms, image, &cfg.platform)) {
            Ok((job, _)) => jobs.push(job),
            Err(e) => return refused(e),
        }
    }
    tracing::info!(images = images.len(), "Harbor push event: preheats ordered");
    json(200, &serde_json::json!({ "jobs": jobs }))
}

fn refused(e: ServiceError) -> Reply {
    let status = match e {
        ServiceError::PreheatFull(_) => 503,
        ServiceError::InvalidField { .. } => 400,
        _ => 500,
    };
    error(status, &e.to_string())
}

fn json(status: u16, value: &impl serde::Serialize) -> Reply {
    match serde_json::to_string_pretty(value) {
        Ok(mut body) => {
            body.push('\n');
            Reply { status, content_type: JSON, body }
        }
        Err(e) => error(500, &format!("cannot render the answer: {e}")),
    }
}

fn error(status: u16, message: &str) -> Reply {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    Reply { status, content_type: JSON, body }
}

fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}
