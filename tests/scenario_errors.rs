//! The `sim` binary on bad scenario files: exit code 2 and one stderr line naming the file,
//! the line and the dotted key, never a panic.
//!
//! Finding the binary: `CARGO_BIN_EXE_sim` exists only for tests of the `sim` package, and
//! `cargo test -p e2e` builds sim's library (a dev-dependency) but not its binary. So this
//! suite uses `SIM_BIN` when set (for cross-compiled or prebuilt binaries); otherwise it runs
//! `cargo build -p sim --bin sim` once, in this test binary's profile, and takes `sim` from
//! the profile directory, which is the parent of this test binary's `deps/` directory
//! (`target/debug/deps/scenario_errors-*` -> `target/debug/sim`). Building first keeps the
//! binary as fresh as the sources; cargo has released its build lock while tests run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn sim_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SIM_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
        build_sim(profile_dir);
        let bin = profile_dir.join(format!("sim{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "no sim binary at {}; build it or set SIM_BIN", bin.display());
        bin
    })
}

/// `cargo build -p sim --bin sim` in the profile `profile_dir` belongs to.
fn build_sim(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "sim", "--bin", "sim"]);
    // Output goes to target/<profile>/ by default; "debug" is the dev profile's directory.
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(custom) => {
            cmd.args(["--profile", custom]);
        }
    }
    if let Some(target_dir) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    let status = cmd.status().expect("run cargo build -p sim");
    assert!(status.success(), "cargo build -p sim --bin sim failed: {status}");
}

/// A scratch directory for this test process.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("e2e-scenario-errors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

const VALID: &str = "name = \"bad\"
[cluster]
pods = 4
[image]
reference = \"r\"
layer_bytes = [10, 20]
";

struct Outcome {
    code: Option<i32>,
    stderr: String,
    path: PathBuf,
}

/// Writes `text` to `<scratch>/<stem>/<file>`, runs sim on it, then removes that directory.
fn run_on(file: &str, text: &str) -> Outcome {
    let dir = scratch().join(file.trim_end_matches(".toml"));
    std::fs::create_dir_all(&dir).expect("create case dir");
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write scenario");
    let outcome = run_path(path);
    let _ = std::fs::remove_dir_all(&dir);
    // Succeeds only for the last case to finish; the others leave the directory to it.
    let _ = std::fs::remove_dir(scratch());
    outcome
}

/// Runs `sim <path> --out <dir of path>/reports`, so a scenario that loads by mistake
/// writes nowhere near the repository.
fn run_path(path: PathBuf) -> Outcome {
    let reports = path.parent().unwrap_or(scratch()).join("reports");
    let out = Command::new(sim_bin()).arg(&path).arg("--out").arg(reports).output().expect("run sim");
    Outcome { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned(), path }
}

/// Exit 2, no panic, and exactly one stderr line `error: <file>:<line>: <key>: ...<fragment>...`.
fn expect_error(o: &Outcome, line: usize, key: &str, fragment: &str) {
    assert!(!o.stderr.contains("panicked"), "panic: {}", o.stderr);
    assert_eq!(o.code, Some(2), "exit code; stderr: {}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one stderr line, got {lines:?}");
    let prefix = format!("error: {}:{line}: {key}: ", o.path.display());
    assert!(lines[0].starts_with(&prefix), "want prefix {prefix:?}, got {:?}", lines[0]);
    assert!(lines[0].contains(fragment), "want {fragment:?} in {:?}", lines[0]);
}

#[test]
fn zero_pods() {
    let o = run_on("zero-pods.toml", &VALID.replace("pods = 4", "pods = 0"));
    expect_error(&o, 3, "cluster.pods", "must be at least 1 (got 0)");
}

#[test]
fn unknown_key_lists_valid_keys() {
    let o = run_on("unknown-key.toml", &VALID.replace("pods = 4", "pods = 4\npodz = 5"));
    expect_error(&o, 4, "cluster.podz", "valid keys of [cluster]: pods");
}

#[test]
fn wrong_type() {
    let o = run_on("wrong-type.toml", &VALID.replace("pods = 4", "pods = \"many\""));
    expect_error(&o, 3, "cluster.pods", "invalid type");
}

#[test]
fn toml_syntax_error() {
    let o = run_on("syntax.toml", &VALID.replace("pods = 4", "pods = 4 4"));
    expect_error(&o, 3, "cluster.pods", "invalid TOML");
}

#[test]
fn nan_bandwidth() {
    let text = format!("{VALID}[registry]\negress_gbps = nan\n");
    let o = run_on("nan.toml", &text);
    expect_error(&o, 8, "registry.egress_gbps", "greater than 0 (got NaN)");
}

#[test]
fn missing_image_table() {
    let text = VALID.split("[image]").next().unwrap().to_string();
    let o = run_on("no-image.toml", &text);
    expect_error(&o, 1, "image", "missing [image] table");
}

#[test]
fn unknown_policy_and_mode() {
    let o = run_on("policy.toml", &format!("policy = \"fastest\"\n{VALID}"));
    expect_error(&o, 1, "policy", "valid policies: default, dragonfly, kraken");
    let o = run_on("mode.toml", &format!("modes = [\"oci\", \"torrent\"]\n{VALID}"));
    expect_error(&o, 1, "modes[1]", "valid modes: oci, p2p, p2p-lazy");
}

#[test]
fn unreadable_file() {
    let path = scratch().join("does-not-exist.toml");
    let o = run_path(path.clone());
    let _ = std::fs::remove_dir(scratch());
    assert!(!o.stderr.contains("panicked"), "panic: {}", o.stderr);
    assert_eq!(o.code, Some(2), "exit code; stderr: {}", o.stderr);
    let want = format!("error: {}: cannot read: ", path.display());
    assert!(o.stderr.starts_with(&want) && o.stderr.lines().count() == 1, "{:?}", o.stderr);
}
