//! `p2pctl hosts|tasks|peers`: what the scheduler knows now, as a table that fits the
//! terminal or as JSON (`--json`), from its listing API (`sched::service::listing`).
//!
//! Exits 0 on success, 2 on a bad command line, 1 when the scheduler cannot be reached or
//! answers with an error.
#![forbid(unsafe_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: p2pctl [--scheduler HOST:PORT] [--json] hosts|tasks|peers [--task ID]

  hosts            the hosts that announced themselves, with their live peers
  tasks            the tasks, with their peers and how many finished
  peers            the peers that have not left, with their progress; --task ID: one task's
  --scheduler A    the scheduler's HTTP address (its listen.http), default 127.0.0.1:8000,
                   or $P2PCTL_SCHEDULER
  --json           the scheduler's JSON as it is, for scripts
";

const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (a listing of 100,000 peers is about 25 MB).
const MAX_BODY_BYTES: u64 = 256 << 20;

#[derive(Debug, PartialEq)]
struct Args {
    scheduler: String,
    json: bool,
    what: &'static str,
    task: Option<String>,
}

fn parse_args(args: &[String], env_scheduler: Option<String>) -> Result<Args, String> {
    let mut scheduler = env_scheduler.unwrap_or_else(|| "127.0.0.1:8000".to_string());
    let (mut json, mut what, mut task) = (false, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--scheduler" => scheduler = it.next().ok_or("--scheduler needs HOST:PORT")?.clone(),
            "--task" => task = Some(it.next().ok_or("--task needs a task id")?.clone()),
            "hosts" | "tasks" | "peers" if what.is_none() => {
                what = Some(match arg.as_str() {
                    "hosts" => "hosts",
                    "tasks" => "tasks",
                    _ => "peers",
                })
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let what = what.ok_or("say what to list: hosts, tasks or peers")?;
    if task.is_some() && what != "peers" {
        return Err("--task goes with peers".into());
    }
    if let Some(t) = &task {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) || t.len() > 256 {
            return Err(format!("--task {t:?}: a task id is letters, digits and -_.: only"));
        }
    }
    Ok(Args { scheduler, json, what, task })
}

/// GET `path` from the scheduler's HTTP port: the body of a 200, or what went wrong.
fn get(addr: &str, path: &str) -> Result<String, String> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("--scheduler {addr}: not an address: {e}"))?
        .next()
        .ok_or_else(|| format!("--scheduler {addr}: resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT).map_err(|e| {
        format!("cannot reach the scheduler at {addr}: {e} (is it running, and is this its listen.http?)")
    })?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{addr}: sending the request: {e}"))?;
    let mut raw = Vec::new();
    stream.take(MAX_BODY_BYTES).read_to_end(&mut raw).map_err(|e| format!("{addr}: reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{addr}{path}: HTTP {status}: {}", body.trim()));
    }
    Ok(body.to_string())
}

/// Columns per listing: (JSON field, header).
fn columns(what: &str) -> &'static [(&'static str, &'static str)] {
    match what {
        "hosts" => &[
            ("id", "HOST"),
            ("kind", "KIND"),
            ("ip", "IP"),
            ("data_port", "PORT"),
            ("live_peers", "PEERS"),
            ("hostname", "HOSTNAME"),
            ("location", "LOCATION"),
        ],
        "tasks" => &[
            ("id", "TASK"),
            ("content_length_bytes", "BYTES"),
            ("piece_count", "PIECES"),
            ("peers", "PEERS"),
            ("succeeded", "DONE"),
            ("url", "URL"),
        ],
        _ => &[("id", "PEER"), ("state", "STATE"), ("progress", "PROGRESS"), ("host", "HOST"), ("task", "TASK")],
    }
}

fn cell(row: &Value, field: &str) -> String {
    if field == "progress" {
        let (done, all) = (row["pieces_reported"].as_u64().unwrap_or(0), row["piece_count"].as_u64().unwrap_or(0));
        return if all == 0 { "-".into() } else { format!("{:.0}% {done}/{all}", 100.0 * done as f64 / all as f64) };
    }
    match &row[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The rows as aligned columns no wider than `width`: the widest columns are cut first,
/// each keeping at least 8 characters and ending in "…" where cut.
fn table(rows: &[Value], cols: &[(&str, &str)], width: usize) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cols.iter().map(|(f, _)| cell(r, f)).collect()).collect();
    let mut widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (_, h))| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(h.len()))
        .collect();
    let gaps = 2 * cols.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > width {
        let (i, w) = widths.iter().copied().enumerate().max_by_key(|(i, w)| (*w, usize::MAX - i)).unwrap_or((0, 0));
        if w <= 8 {
            break;
        }
        widths[i] = w - 1;
    }
    let fit = |s: &str, w: usize| {
        let n = s.chars().count();
        if n <= w {
            format!("{s:<w$}")
        } else {
            format!("{}…", s.chars().take(w.saturating_sub(1)).collect::<String>())
        }
    };
    let mut out = String::new();
    let line = |values: Vec<&str>| {
        let parts: Vec<String> = values.iter().zip(&widths).map(|(v, w)| fit(v, *w)).collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    out.push_str(&line(cols.iter().map(|(_, h)| *h).collect()));
    for r in &cells {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w >= 40).unwrap_or(120)
}

fn run(args: &Args) -> Result<String, String> {
    let path = match &args.task {
        Some(t) => format!("/api/v1/tasks/{t}/peers"),
        None => format!("/api/v1/{}", args.what),
    };
    let body = get(&args.scheduler, &path)?;
    if args.json {
        return Ok(body);
    }
    let rows: Vec<Value> =
        serde_json::from_str(&body).map_err(|e| format!("{}{path}: not the listing JSON: {e}", args.scheduler))?;
    if rows.is_empty() {
        return Ok(format!("no {} known to the scheduler at {}\n", args.what, args.scheduler));
    }
    Ok(table(&rows, columns(args.what), terminal_width()))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv, std::env::var("P2PCTL_SCHEDULER").ok()) {
        Ok(a) => a,
        Err(why) if why.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("p2pctl: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(out) => {
            // A closed pipe (`p2pctl peers | head`) is not an error.
            let _ = std::io::stdout().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("p2pctl: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, String> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), None)
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert!(args(&[]).unwrap_err().contains("hosts, tasks or peers"));
        assert!(args(&["nodes"]).unwrap_err().contains("\"nodes\""));
        assert!(args(&["hosts", "--task", "t"]).unwrap_err().contains("--task goes with peers"));
        assert!(args(&["peers", "--task"]).unwrap_err().contains("needs a task id"));
        assert!(args(&["peers", "--task", "a b"]).unwrap_err().contains("letters, digits"));
        let a = args(&["--json", "peers", "--task", "abc", "--scheduler", "10.0.0.1:8000"]).unwrap();
        assert_eq!(a, Args { scheduler: "10.0.0.1:8000".into(), json: true, what: "peers", task: Some("abc".into()) });
    }

    #[test]
    fn tables_fit_the_width_by_cutting_the_widest_column() {
        let rows: Vec<Value> = vec![
            serde_json::json!({"id": "t1", "url": "https://r.example/v2/library/tensorflow/blobs/sha256:0123456789abcdef0123456789abcdef", "content_length_bytes": 1000, "piece_count": 4, "peers": 3, "succeeded": 1}),
        ];
        let out = table(&rows, columns("tasks"), 60);
        for line in out.lines() {
            assert!(line.chars().count() <= 60, "{line:?}");
        }
        assert!(out.contains('…') && out.starts_with("TASK"), "{out}");
        let wide = table(&rows, columns("tasks"), 400);
        assert!(wide.contains("sha256:0123456789abcdef0123456789abcdef") && !wide.contains('…'), "{wide}");
    }

    #[test]
    fn progress_is_pieces_reported_over_pieces() {
        let row = serde_json::json!({"pieces_reported": 3, "piece_count": 4});
        assert_eq!(cell(&row, "progress"), "75% 3/4");
    }

    #[test]
    fn an_unreachable_scheduler_is_named() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = get(&format!("127.0.0.1:{port}"), "/api/v1/hosts").unwrap_err();
        assert!(e.contains("cannot reach the scheduler at 127.0.0.1:") && e.contains("listen.http"), "{e}");
    }
}
