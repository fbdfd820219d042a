//! The `scheduler` binary refuses bad configuration files with one line naming the file,
//! the line and the key, and exits 2; the example configuration passes.

use std::path::PathBuf;
use std::process::Command;

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sched-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `scheduler --config FILE --check`: (exit code, stdout, stderr).
fn check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["--config", path.to_str().unwrap(), "--check"])
        .output()
        .expect("the scheduler binary runs");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

fn refused(name: &str, text: &str, line: usize, key: &str, says: &str) {
    let path = temp_config(name, text);
    let (code, _, stderr) = check(&path);
    assert_eq!(code, 2, "{stderr}");
    let want = format!("scheduler: {}:{line}: {key}: ", path.display());
    assert!(stderr.starts_with(&want), "want {want:?}, got {stderr:?}");
    assert!(stderr.contains(says), "want {says:?} in {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = "[listen]\ngrpc = \"127.0.0.1:0\"\n\n[scheduler]\npolicy = \"default\"\ncandidate_parents = 4\n";
    refused("unknown-key.toml", text, 6, "scheduler.candidate_parents", "unknown key \"candidate_parents\"");
    let text = "[service]\nevict_every_ms = 5\n";
    refused("unknown-service-key.toml", text, 2, "service.evict_every_ms", "unknown key \"evict_every_ms\"");
    let text = "[metrics]\nport = 1\n";
    refused("unknown-table.toml", text, 1, "metrics", "unknown key \"metrics\"");
}

#[test]
fn wrong_type_is_refused_with_its_line() {
    let text = "[scheduler]\npolicy = \"dragonfly\"\n\nretry_limit = \"five\"\n";
    refused("wrong-type.toml", text, 4, "scheduler.retry_limit", "whole number");
    let text = "[listen]\nhttp = 8000\n";
    refused("wrong-type-listen.toml", text, 2, "listen.http", "IP:PORT");
}

#[test]
fn unknown_policy_is_refused_with_its_line() {
    let text = "# comment\n[scheduler]\npolicy = \"fastest\"\n";
    refused("unknown-policy.toml", text, 3, "scheduler.policy", "valid policies: default, dragonfly, kraken");
}

#[test]
fn example_configuration_is_valid() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scheduler.example.toml");
    let (code, stdout, stderr) = check(&example);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("policy = \"default\""), "{stdout}");
    assert!(stdout.contains("candidate_parent_limit = 6"), "{stdout}");
}

#[test]
fn missing_file_and_bad_arguments_exit_2() {
    let (code, _, stderr) = check(std::path::Path::new("/nonexistent/scheduler.toml"));
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/scheduler.toml: cannot read"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_scheduler")).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
