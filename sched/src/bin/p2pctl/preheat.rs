//! `p2pctl preheat` and `p2pctl jobs`: start a preheat job at the scheduler
//! (`POST /api/v1/preheat`), follow it, and list the jobs (`GET /api/v1/jobs[/ID]`).

use super::http::{get, refusal, request};
use super::table::{bytes, plain, table, terminal_width};
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often a followed job is looked at.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, PartialEq)]
pub struct PreheatArgs {
    /// Normalised (`svc::image_ref`).
    pub image: String,
    /// None: the scheduler's `[preheat] platform`.
    pub platform: Option<String>,
    pub wait: bool,
    pub timeout: Duration,
    /// The `Authorization` value, read from `--auth-file` (or `$P2PCTL_AUTH_FILE`).
    pub authorization: Option<String>,
}

/// Starts (or finds) the job and, unless `--no-wait`, follows it to its end, printing a
/// line each time its progress changes. Err: it failed, timed out, or the scheduler refused.
pub fn preheat(scheduler: &str, json: bool, a: &PreheatArgs, out: &mut dyn Write) -> Result<(), String> {
    let mut body = serde_json::json!({ "image": a.image });
    if let Some(p) = &a.platform {
        body["platform"] = Value::String(p.clone());
    }
    let path = "/api/v1/preheat";
    let (status, answer) = request(scheduler, "POST", path, Some(&body.to_string()), a.authorization.as_deref())?;
    if status != 200 && status != 201 {
        return Err(refusal(scheduler, path, status, &answer));
    }
    let mut job: Value = serde_json::from_str(&answer).map_err(|e| format!("{scheduler}{path}: not a job: {e}"))?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let how = if status == 201 { "started" } else { "exists" };
    let _ = writeln!(out, "job {id} {how}: {} {}", plain(&job, "image"), plain(&job, "platform"));
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let line = progress(&job);
        if !json && line != last {
            let _ = writeln!(out, "{line}");
            last = line;
        }
        let state = job["state"].as_str().unwrap_or_default();
        let ended = matches!(state, "succeeded" | "failed") || !a.wait;
        if ended {
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&job).unwrap_or_default());
            }
            return match state {
                "failed" => Err(format!("preheat job {id} failed: {}", plain(&job, "error"))),
                _ => Ok(()),
            };
        }
        if started.elapsed() >= a.timeout {
            return Err(format!(
                "preheat job {id} is still {state} after {} s (--timeout); it goes on at the scheduler: p2pctl jobs {id}",
                a.timeout.as_secs()
            ));
        }
        std::thread::sleep(POLL);
        let body = get(scheduler, &format!("/api/v1/jobs/{id}"))?;
        job = serde_json::from_str(&body).map_err(|e| format!("{scheduler}: job {id}: not a job: {e}"))?;
    }
}

/// One line of a job's progress.
pub fn progress(job: &Value) -> String {
    let state = job["state"].as_str().unwrap_or("?");
    let n = job["blobs"].as_array().map_or(0, Vec::len);
    let (done, size) = (job["done_bytes"].as_u64().unwrap_or(0), job["size_bytes"].as_u64().unwrap_or(0));
    match state {
        "pending" => format!("pending: ordered from seed {}", plain(job, "seed_host")),
        "running" if n == 0 => "running: resolving the image".to_string(),
        "failed" => format!("failed: {}", plain(job, "error")),
        _ => format!(
            "{state}: {}/{n} blobs, {} of {}",
            job["blobs_done"].as_u64().unwrap_or(0),
            bytes(done),
            bytes(size)
        ),
    }
}

const JOB_COLUMNS: &[(&str, &str)] = &[
    ("id", "JOB"),
    ("state", "STATE"),
    ("blobs", "BLOBS"),
    ("progress", "PROGRESS"),
    ("platform", "PLATFORM"),
    ("image", "IMAGE"),
    ("error", "ERROR"),
];

const BLOB_COLUMNS: &[(&str, &str)] =
    &[("digest", "DIGEST"), ("size_bytes", "SIZE"), ("progress", "DONE"), ("task_id", "TASK")];

fn job_cell(row: &Value, field: &str) -> String {
    let (done, size) = (row["done_bytes"].as_u64().unwrap_or(0), row["size_bytes"].as_u64().unwrap_or(0));
    match field {
        "blobs" => match row["blobs"].as_array().map_or(0, Vec::len) {
            0 => "-".into(),
            n => format!("{}/{n}", row["blobs_done"].as_u64().unwrap_or(0)),
        },
        "progress" if size == 0 => "-".into(),
        "progress" => format!("{:.0}% {}", 100.0 * done as f64 / size as f64, bytes(size)),
        "size_bytes" => bytes(size),
        _ => plain(row, field),
    }
}

/// `p2pctl jobs [ID]`: the jobs as a table, or one job with its blobs.
pub fn jobs(scheduler: &str, json: bool, id: Option<&str>) -> Result<String, String> {
    let path = match id {
        Some(id) => format!("/api/v1/jobs/{id}"),
        None => "/api/v1/jobs".to_string(),
    };
    let body = get(scheduler, &path)?;
    if json {
        return Ok(body);
    }
    let parsed: Value = serde_json::from_str(&body).map_err(|e| format!("{scheduler}{path}: not JSON: {e}"))?;
    if id.is_some() {
        let mut out = String::new();
        for key in ["id", "image", "platform", "state", "error", "seed_host", "manifest_digest", "attempts"] {
            out.push_str(&format!("{:<16}{}\n", format!("{key}:"), plain(&parsed, key)));
        }
        out.push_str(&format!("{:<16}{}\n\n", "progress:", progress(&parsed)));
        let blobs = parsed["blobs"].as_array().cloned().unwrap_or_default();
        out.push_str(&table(&blobs, BLOB_COLUMNS, terminal_width(), job_cell));
        return Ok(out);
    }
    let rows = parsed.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return Ok(format!("no preheat jobs at the scheduler at {scheduler}\n"));
    }
    Ok(table(&rows, JOB_COLUMNS, terminal_width(), job_cell))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, blobs: usize, done: usize) -> Value {
        let list: Vec<Value> = (0..blobs)
            .map(|i| serde_json::json!({ "digest": format!("sha256:{i}"), "size_bytes": 1 << 20, "done_bytes": if i < done { 1 << 20 } else { 0 } }))
            .collect();
        serde_json::json!({ "id": "ab12", "state": state, "image": "r.example/a:v1", "platform": "linux/amd64",
            "seed_host": "seed-1", "error": null, "blobs": list, "blobs_done": done,
            "size_bytes": blobs << 20, "done_bytes": done << 20 })
    }

    #[test]
    fn progress_lines_say_where_the_job_is() {
        assert_eq!(progress(&job("pending", 0, 0)), "pending: ordered from seed seed-1");
        assert_eq!(progress(&job("running", 0, 0)), "running: resolving the image");
        assert_eq!(progress(&job("running", 4, 1)), "running: 1/4 blobs, 1.0 MiB of 4.0 MiB");
        assert_eq!(progress(&job("succeeded", 4, 4)), "succeeded: 4/4 blobs, 4.0 MiB of 4.0 MiB");
        let mut failed = job("failed", 0, 0);
        failed["error"] = Value::String("registry answered 404".into());
        assert_eq!(progress(&failed), "failed: registry answered 404");
    }

    #[test]
    fn job_tables_fit_and_show_blobs_and_progress() {
        let rows = vec![job("running", 4, 1), job("succeeded", 2, 2)];
        let out = table(&rows, JOB_COLUMNS, 70, job_cell);
        assert!(out.starts_with("JOB") && out.contains("1/4") && out.contains("25% 4.0 MiB"), "{out}");
        assert!(out.lines().all(|l| l.chars().count() <= 70), "{out}");
    }
}
