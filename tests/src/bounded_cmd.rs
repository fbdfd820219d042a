//! Runs an external command (ctr, skopeo) to completion within a time limit: output goes to
//! files (no pipe can fill up and stall it), the process is killed by its pid when the limit
//! passes, and the elapsed time is measured.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// Ok(self) if the command exited 0, else an error naming `what` with its stderr.
    pub fn ok(self, what: &str) -> Result<Finished, String> {
        if self.success {
            Ok(self)
        } else {
            Err(format!(
                "{what} exited {:?} after {:.1} s: {}{}",
                self.code,
                self.elapsed.as_secs_f64(),
                self.stderr.trim(),
                self.stdout.trim()
            ))
        }
    }
}

/// Runs `cmd` with stdout/stderr captured in `scratch`.out/.err; kills it after `timeout`.
pub fn run(mut cmd: Command, scratch: &Path, timeout: Duration) -> Result<Finished, String> {
    let what = format!("{cmd:?}");
    let (out_path, err_path) = (scratch.with_extension("out"), scratch.with_extension("err"));
    let out = std::fs::File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let err = std::fs::File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    let started = Instant::now();
    let mut child =
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().map_err(|e| format!("{what} does not start: {e}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{what}: wait: {e}"))? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what} did not finish within {timeout:?} (killed); stderr: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default().trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Finished {
        success: status.success(),
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_status_and_timeout() {
        let dir = std::env::temp_dir().join(format!("e2e-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let f = run(c, &dir.join("a"), Duration::from_secs(10)).unwrap();
        assert_eq!((f.success, f.code, f.stdout.as_str(), f.stderr.as_str()), (false, Some(3), "out\n", "err\n"));
        assert!(f.ok("sh").unwrap_err().contains("exited Some(3)"));
        let mut c = Command::new("sleep");
        c.arg("30");
        let started = Instant::now();
        let e = run(c, &dir.join("b"), Duration::from_millis(300)).err().unwrap();
        assert!(e.contains("did not finish") && started.elapsed() < Duration::from_secs(5), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
