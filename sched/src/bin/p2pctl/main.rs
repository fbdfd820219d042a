//! `p2pctl hosts|tasks|peers|jobs|preheat`: what the scheduler knows now, as a table that
//! fits the terminal or as JSON (`--json`), from its listing API
//! (`sched::service::listing`), and preheat jobs (`sched::service::preheat`).
//!
//! Exits 0 on success, 2 on a bad command line (an image reference or platform that does
//! not parse included), 1 when the scheduler cannot be reached or answers with an error,
//! or a preheat fails or times out.
#![forbid(unsafe_code)]

mod http;
mod preheat;
mod table;

use preheat::PreheatArgs;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: p2pctl [--scheduler HOST:PORT] [--json] COMMAND

  hosts            the hosts that announced themselves, with their live peers
  tasks            the tasks, with their peers and how many finished
  peers            the peers that have not left, with their progress; --task ID: one task's
  jobs [ID]        the preheat jobs, newest first; ID: one job, with its blobs
  preheat IMAGE    has the seed peers fetch every blob of IMAGE (REGISTRY/REPOSITORY:TAG
                   or REGISTRY/REPOSITORY@sha256:HEX) before a rollout; prints the job id,
                   then its progress until it ends: exit 0 when it succeeded, 1 when it
                   failed or the timeout passed. Asking again for the same image returns
                   the same job.
    --platform OS/ARCH[/VARIANT]  the manifest taken from an image index (default: the
                   scheduler's preheat.platform, linux/amd64 unless set)
    --no-wait      print the job and return
    --timeout S    stop following after S seconds (default 600; the job goes on)
    --auth-file F  a file holding the Authorization value the scheduler's [preheat]
                   auth_file holds, or $P2PCTL_AUTH_FILE
  --scheduler A    the scheduler's HTTP address (its listen.http), default 127.0.0.1:8000,
                   or $P2PCTL_SCHEDULER
  --json           the scheduler's JSON as it is, for scripts
";

/// The longest `--timeout` taken: a day.
const MAX_TIMEOUT_S: u64 = 86_400;

#[derive(Debug, PartialEq)]
enum Command {
    List { what: &'static str, task: Option<String> },
    Jobs { id: Option<String> },
    Preheat(PreheatArgs),
}

#[derive(Debug, PartialEq)]
struct Args {
    scheduler: String,
    json: bool,
    command: Command,
}

/// What the environment gives: `$P2PCTL_SCHEDULER`, and the `Authorization` value read
/// from the file `--auth-file` or `$P2PCTL_AUTH_FILE` names.
struct Env {
    scheduler: Option<String>,
    auth_file: Option<String>,
    read: fn(&str) -> std::io::Result<String>,
}

fn parse_args(args: &[String], env: &Env) -> Result<Args, String> {
    let mut scheduler = env.scheduler.clone().unwrap_or_else(|| "127.0.0.1:8000".to_string());
    let (mut json, mut task, mut platform, mut no_wait, mut timeout, mut auth_file) =
        (false, None, None, false, None, env.auth_file.clone());
    let mut words: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--scheduler" => scheduler = it.next().ok_or("--scheduler needs HOST:PORT")?.clone(),
            "--task" => task = Some(it.next().ok_or("--task needs a task id")?.clone()),
            "--platform" => platform = Some(it.next().ok_or("--platform needs OS/ARCH")?.clone()),
            "--no-wait" => no_wait = true,
            "--timeout" => {
                let s = it.next().ok_or("--timeout needs seconds")?;
                let n: u64 = s.parse().map_err(|_| format!("--timeout {s:?}: not a whole number of seconds"))?;
                if !(1..=MAX_TIMEOUT_S).contains(&n) {
                    return Err(format!("--timeout {n}: must be 1 to {MAX_TIMEOUT_S} seconds"));
                }
                timeout = Some(Duration::from_secs(n));
            }
            "--auth-file" => auth_file = Some(it.next().ok_or("--auth-file needs a file")?.clone()),
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with('-') => return Err(format!("unexpected argument {other:?}")),
            word => words.push(word),
        }
    }
    let preheat_only = [("--platform", platform.is_some()), ("--no-wait", no_wait), ("--timeout", timeout.is_some())];
    let command = match words.as_slice() {
        [] => return Err("say what to do: hosts, tasks, peers, jobs or preheat IMAGE".into()),
        ["preheat"] => return Err("preheat needs an image: p2pctl preheat REGISTRY/REPOSITORY:TAG".into()),
        ["preheat", image] => {
            let image = svc::image_ref::parse(image)?.to_string();
            let platform = platform.map(|p| svc::image_ref::parse_platform(&p)).transpose()?.map(|p| p.to_string());
            let authorization = match &auth_file {
                Some(f) => {
                    let text = (env.read)(f).map_err(|e| format!("--auth-file {f}: cannot read: {e}"))?;
                    Some(text.trim().to_string()).filter(|t| !t.is_empty())
                }
                None => None,
            };
            Command::Preheat(PreheatArgs {
                image,
                platform,
                wait: !no_wait,
                timeout: timeout.unwrap_or(Duration::from_secs(600)),
                authorization,
            })
        }
        ["jobs"] => Command::Jobs { id: None },
        ["jobs", id] => {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("jobs {id:?}: a job id is letters and digits only"));
            }
            Command::Jobs { id: Some(id.to_string()) }
        }
        [what @ ("hosts" | "tasks" | "peers")] => Command::List {
            what: match *what {
                "hosts" => "hosts",
                "tasks" => "tasks",
                _ => "peers",
            },
            task: if *what == "peers" { task.take() } else { None },
        },
        [first, rest @ ..] => {
            // A known command with a word too many: name that word.
            let takes = match *first {
                "preheat" | "jobs" => 1,
                "hosts" | "tasks" | "peers" => 0,
                _ => return Err(format!("unexpected argument {first:?}")),
            };
            return Err(format!("unexpected argument {:?}", rest.get(takes).unwrap_or(first)));
        }
    };
    if task.is_some() && !matches!(&command, Command::List { what: "peers", .. }) {
        return Err("--task goes with peers".into());
    }
    if !matches!(command, Command::Preheat(_)) {
        if let Some((flag, _)) = preheat_only.iter().find(|(_, set)| *set) {
            return Err(format!("{flag} goes with preheat"));
        }
    }
    if let Command::List { task: Some(t), .. } = &command {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) || t.len() > 256 {
            return Err(format!("--task {t:?}: a task id is letters, digits and -_.: only"));
        }
    }
    Ok(Args { scheduler, json, command })
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
    table::plain(row, field)
}

fn list(scheduler: &str, json: bool, what: &str, task: Option<&str>) -> Result<String, String> {
    let path = match task {
        Some(t) => format!("/api/v1/tasks/{t}/peers"),
        None => format!("/api/v1/{what}"),
    };
    let body = http::get(scheduler, &path)?;
    if json {
        return Ok(body);
    }
    let rows: Vec<Value> =
        serde_json::from_str(&body).map_err(|e| format!("{scheduler}{path}: not the listing JSON: {e}"))?;
    if rows.is_empty() {
        return Ok(format!("no {what} known to the scheduler at {scheduler}\n"));
    }
    Ok(table::table(&rows, columns(what), table::terminal_width(), cell))
}

fn run(args: &Args) -> Result<(), String> {
    let out = match &args.command {
        Command::List { what, task } => list(&args.scheduler, args.json, what, task.as_deref())?,
        Command::Jobs { id } => preheat::jobs(&args.scheduler, args.json, id.as_deref())?,
        Command::Preheat(p) => return preheat::preheat(&args.scheduler, args.json, p, &mut std::io::stdout()),
    };
    // A closed pipe (`p2pctl peers | head`) is not an error.
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let env = Env {
        scheduler: std::env::var("P2PCTL_SCHEDULER").ok(),
        auth_file: std::env::var("P2PCTL_AUTH_FILE").ok().filter(|f| !f.is_empty()),
        read: |path| std::fs::read_to_string(path),
    };
    let args = match parse_args(&argv, &env) {
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
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("p2pctl: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env { scheduler: None, auth_file: None, read: |path| Ok(format!("Bearer of {path}\n")) }
    }

    fn args(a: &[&str]) -> Result<Args, String> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &env())
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert!(args(&[]).unwrap_err().contains("hosts, tasks, peers, jobs or preheat"));
        assert!(args(&["nodes"]).unwrap_err().contains("\"nodes\""));
        assert!(args(&["hosts", "--task", "t"]).unwrap_err().contains("--task goes with peers"));
        assert!(args(&["peers", "--task"]).unwrap_err().contains("needs a task id"));
        assert!(args(&["peers", "--task", "a b"]).unwrap_err().contains("letters, digits"));
        assert!(args(&["hosts", "tasks"]).unwrap_err().contains("\"tasks\""));
        assert!(args(&["preheat", "r.example/a:v1", "extra"]).unwrap_err().contains("\"extra\""));
        let a = args(&["--json", "peers", "--task", "abc", "--scheduler", "10.0.0.1:8000"]).unwrap();
        assert_eq!(
            a,
            Args {
                scheduler: "10.0.0.1:8000".into(),
                json: true,
                command: Command::List { what: "peers", task: Some("abc".into()) }
            }
        );
    }

    #[test]
    fn preheat_and_jobs_command_lines() {
        let a = args(&["preheat", "127.0.0.1:5000/e2e/app:v1", "--platform", "linux/arm64/v8", "--no-wait"]).unwrap();
        let Command::Preheat(p) = a.command else { panic!("preheat") };
        assert_eq!((p.image.as_str(), p.platform.as_deref()), ("127.0.0.1:5000/e2e/app:v1", Some("linux/arm64/v8")));
        assert_eq!((p.wait, p.timeout, p.authorization), (false, Duration::from_secs(600), None));
        let a = args(&["preheat", "nginx", "--timeout", "30", "--auth-file", "/s"]).unwrap();
        let Command::Preheat(p) = a.command else { panic!("preheat") };
        assert_eq!(p.image, "docker.io/library/nginx:latest", "normalised before it is sent");
        assert_eq!((p.timeout, p.authorization.as_deref()), (Duration::from_secs(30), Some("Bearer of /s")));
        assert!(args(&["preheat"]).unwrap_err().contains("needs an image"));
        assert!(args(&["preheat", "r.example/UPPER:v1"]).unwrap_err().contains("component \"UPPER\""));
        assert!(args(&["preheat", "r.example/a:v1", "--platform", "amd64"]).unwrap_err().contains("OS/ARCHITECTURE"));
        assert!(args(&["preheat", "r.example/a:v1", "--timeout", "0"]).unwrap_err().contains("1 to 86400"));
        assert!(args(&["preheat", "r.example/a:v1", "--timeout", "x"]).unwrap_err().contains("whole number"));
        assert!(args(&["jobs", "--no-wait"]).unwrap_err().contains("--no-wait goes with preheat"));
        assert_eq!(args(&["jobs"]).unwrap().command, Command::Jobs { id: None });
        assert_eq!(args(&["jobs", "ab12"]).unwrap().command, Command::Jobs { id: Some("ab12".into()) });
        assert!(args(&["jobs", "../x"]).unwrap_err().contains("letters and digits"));
        let failing = Env { read: |_| Err(std::io::Error::other("gone")), ..env() };
        let e = parse_args(&["preheat".into(), "r.example/a:v1".into(), "--auth-file".into(), "/x".into()], &failing);
        assert!(e.unwrap_err().contains("--auth-file /x: cannot read: gone"));
    }

    #[test]
    fn tables_fit_the_width_by_cutting_the_widest_column() {
        let rows: Vec<Value> = vec![
            serde_json::json!({"id": "t1", "url": "https://r.example/v2/library/tensorflow/blobs/sha256:0123456789abcdef0123456789abcdef", "content_length_bytes": 1000, "piece_count": 4, "peers": 3, "succeeded": 1}),
        ];
        let out = table::table(&rows, columns("tasks"), 60, cell);
        for line in out.lines() {
            assert!(line.chars().count() <= 60, "{line:?}");
        }
        assert!(out.contains('…') && out.starts_with("TASK"), "{out}");
        let wide = table::table(&rows, columns("tasks"), 400, cell);
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
        let e = http::get(&format!("127.0.0.1:{port}"), "/api/v1/hosts").unwrap_err();
        assert!(e.contains("cannot reach the scheduler at 127.0.0.1:") && e.contains("listen.http"), "{e}");
    }
}
