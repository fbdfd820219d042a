//! End to end: the built `sim` binary on a small scenario written to a temp directory.
//!
//! The binary must be built first; cargo does not build another package's binary for this
//! test. Run: `cargo build -p sim && cargo test -p e2e --test sim_cli` (as sim/README.md
//! says). The binary is looked up next to this test's own executable: target/<profile>/sim.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// target/<profile>/sim, from target/<profile>/deps/sim_cli-<hash>.
fn sim_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("sim{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the sim binary is missing at {}: build it first with `cargo build -p sim` \
         (same profile as the tests), then rerun `cargo test -p e2e --test sim_cli`",
        bin.display()
    );
    bin
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sim-e2e-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// 8 pods, a 50 MB image in three layers; everything else at its default.
const SMALL: &str = r#"
name = "e2e-small"
seed = 11

[cluster]
pods = 8

[image]
reference = "e2e/small:1"
layer_bytes = [10_000_000, 15_000_000, 25_000_000]
"#;

fn write_small(dir: &Path) -> PathBuf {
    let p = dir.join("e2e-small.toml");
    fs::write(&p, SMALL).unwrap();
    p
}

fn sim(args: &[&str]) -> Output {
    Command::new(sim_bin()).args(args).output().expect("run sim")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_ok(args: &[&str]) -> Output {
    let o = sim(args);
    assert_eq!(o.status.code(), Some(0), "sim {args:?} failed:\n{}", show(&o));
    o
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn same_seed_gives_byte_identical_reports() {
    let d = scratch("same-seed");
    let scenario = write_small(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    let s = scenario.to_str().unwrap();
    let out = run_ok(&[s, "--out", a.to_str().unwrap()]);
    run_ok(&[s, "--out", b.to_str().unwrap()]);
    for f in ["summary.json", "pods.csv", "registry.csv"] {
        let (x, y) = (read(&a.join("e2e-small").join(f)), read(&b.join("e2e-small").join(f)));
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
    for f in ["startup_cdf.png", "startup_cdf.svg", "registry_bandwidth.png", "registry_bandwidth.svg"] {
        assert!(a.join("e2e-small").join(f).is_file(), "{f} missing");
    }
    // The terminal table and the closing lines.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("lower bound (Kumar & Ross) = "), "{stdout}");
    assert!(stdout.contains("request floor (manifests upstream"), "{stdout}");
    assert!(stdout.contains("events/s"), "{stdout}");

    // summary.json: exactly the agreed keys.
    let v: serde_json::Value = serde_json::from_slice(&read(&a.join("e2e-small/summary.json"))).unwrap();
    let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort();
    assert_eq!(top, ["image_bytes", "lower_bound_s", "modes", "policy", "scenario", "seed"]);
    assert_eq!(v["scenario"], "e2e-small");
    assert_eq!(v["seed"], 11);
    // The layers; the engine may count the config blob and manifest too.
    assert!(v["image_bytes"].as_u64().unwrap() >= 50_000_000, "{v}");
    let modes = v["modes"].as_object().unwrap();
    assert_eq!(modes.keys().map(String::as_str).collect::<Vec<_>>(), ["oci", "p2p", "p2p-lazy"]);
    for (name, m) in modes {
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "makespan_s",
                "pods",
                "registry_bytes",
                "registry_peak_bps",
                "registry_requests",
                "startup_max_s",
                "startup_p50_s",
                "startup_p99_s"
            ],
            "mode {name}"
        );
        assert_eq!(m["pods"], 8, "mode {name}");
    }
    // pods.csv: a header and a row per pod and mode.
    let pods = String::from_utf8(read(&a.join("e2e-small/pods.csv"))).unwrap();
    assert!(pods.starts_with("mode,pod,node,scheduled_s,pull_start_s,image_ready_s,pull_done_s,unpacked_s,started_s,bytes_from_registry,bytes_from_seed_peers,bytes_from_peers\n"));
    assert_eq!(pods.lines().count(), 1 + 3 * 8);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn another_seed_gives_other_pods() {
    let d = scratch("other-seed");
    let scenario = write_small(&d);
    let s = scenario.to_str().unwrap();
    let (a, b) = (d.join("a"), d.join("b"));
    run_ok(&[s, "--out", a.to_str().unwrap()]);
    run_ok(&[s, "--seed", "12", "--out", b.to_str().unwrap()]);
    assert_ne!(read(&a.join("e2e-small/pods.csv")), read(&b.join("e2e-small/pods.csv")));
    let v: serde_json::Value = serde_json::from_slice(&read(&b.join("e2e-small/summary.json"))).unwrap();
    assert_eq!(v["seed"], 12);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn bad_flag_exits_2_naming_it() {
    let d = scratch("bad-flag");
    let scenario = write_small(&d);
    let o = sim(&[scenario.to_str().unwrap(), "--bogus", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--bogus"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let o = sim(&[scenario.to_str().unwrap(), "--seed", "abc"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--seed"));
    let o = sim(&[scenario.to_str().unwrap(), "--policy", "fastest"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn bad_scenario_exits_2_with_one_line() {
    let d = scratch("bad-scenario");
    let p = d.join("broken.toml");
    fs::write(&p, "name = \"broken\"\n[cluster]\npods = \"many\"\n").unwrap();
    let o = sim(&[p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: ") && err.contains("broken.toml:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let o = sim(&[d.join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let _ = fs::remove_dir_all(&d);
}

fn summary_json(p99_p2p: f64) -> String {
    let mode = |p50: f64, p99: f64, bytes: u64| {
        serde_json::json!({
            "pods": 8, "startup_p50_s": p50, "startup_p99_s": p99, "startup_max_s": 40.0,
            "makespan_s": 35.0, "registry_bytes": bytes, "registry_peak_bps": 8_000_000_000u64,
            "registry_requests": 40
        })
    };
    let v = serde_json::json!({
        "scenario": "e2e-small", "seed": 11, "policy": "default", "image_bytes": 50_000_000,
        "lower_bound_s": 0.5,
        "modes": { "oci": mode(30.0, 31.0, 400_000_000), "p2p": mode(3.0, p99_p2p, 100_000_000) }
    });
    serde_json::to_string_pretty(&v).unwrap()
}

/// `check` and `bless` need no engine: hand-written summaries.
#[test]
fn bless_then_check_then_regress() {
    let d = scratch("check");
    let reports = d.join("reports");
    let baseline = reports.join("baseline");
    fs::create_dir_all(reports.join("e2e-small")).unwrap();
    fs::write(reports.join("e2e-small/summary.json"), summary_json(4.0)).unwrap();
    let (r, b) = (reports.to_str().unwrap(), baseline.to_str().unwrap());
    run_ok(&["bless", "--from", r, "--to", b]);
    assert!(baseline.join("e2e-small/summary.json").is_file());
    let o = run_ok(&["check", "--baseline", b, "--current", r]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("OK"), "{}", show(&o));

    // +10% on p2p startup p99: beyond the 5% tolerance.
    fs::write(reports.join("e2e-small/summary.json"), summary_json(4.4)).unwrap();
    let o = sim(&["check", "--baseline", b, "--current", r]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.contains("startup_p99_s")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("e2e-small") && line.contains("p2p") && line.contains("+10.00%"), "{line}");
    assert!(line.contains("baseline 4") && line.contains("current 4.4"), "{line}");

    // A looser tolerance file lets it pass.
    let tol = d.join("tol.toml");
    fs::write(&tol, "startup_p99_s = 15\n").unwrap();
    run_ok(&["check", "--baseline", b, "--current", r, "--tolerance-file", tol.to_str().unwrap()]);

    // Improvement passes.
    fs::write(reports.join("e2e-small/summary.json"), summary_json(3.5)).unwrap();
    let o = run_ok(&["check", "--baseline", b, "--current", r]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("improved"), "{}", show(&o));

    // Missing current file: exit 2 naming it.
    fs::remove_file(reports.join("e2e-small/summary.json")).unwrap();
    let o = sim(&["check", "--baseline", b, "--current", r]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("e2e-small/summary.json"), "{}", show(&o));
    let _ = fs::remove_dir_all(&d);
}

/// `sim ... | head -1`: a reader that goes away before sim prints; sim ends quietly with
/// 0 (its report files are written first), where `print!` used to panic on the broken pipe.
#[test]
fn a_reader_that_goes_away_is_no_panic() {
    use std::process::Stdio;
    let dir = scratch("pipe");
    let scenario = write_small(&dir);
    let out = dir.join("out");
    let mut child = Command::new(sim_bin())
        .args([scenario.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sim starts");
    // The read end closes at once: sim's first write meets a broken pipe.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}, stderr: {stderr}", o.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.join("e2e-small/summary.json").is_file());
}

#[test]
fn sweep_writes_one_row_per_point_and_mode_and_exits_by_the_target() {
    let d = scratch("sweep");
    let scenario = write_small(&d);
    let s = scenario.to_str().unwrap();
    let (a, b) = (d.join("a"), d.join("b"));
    let vary = ["--vary", "cluster.seed_peers=1..2:2"];
    let met = run_ok(&[
        "sweep",
        s,
        vary[0],
        vary[1],
        "--target",
        "p2p.startup_p99_s<=1000",
        "--jobs",
        "1",
        "--out",
        a.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&met.stdout);
    assert!(
        stdout.contains("## Target: p2p.startup_p99_s <= 1000") && stdout.contains("2 of 2 points meet it"),
        "{stdout}"
    );
    run_ok(&["sweep", s, vary[0], vary[1], "--jobs", "2", "--out", b.to_str().unwrap()]);
    let csv = String::from_utf8(read(&a.join("e2e-small/sweep/sweep.csv"))).unwrap();
    assert!(csv == String::from_utf8(read(&b.join("e2e-small/sweep/sweep.csv"))).unwrap(), "--jobs 1 and 2 differ");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "cluster.seed_peers,mode,pods,startup_p50_s,startup_p99_s,startup_max_s,makespan_s,registry_bytes,registry_peak_bps,registry_requests,lower_bound_s"
    );
    assert_eq!(lines.len(), 1 + 2 * 3);
    let firsts: Vec<&str> = lines[1..].iter().map(|l| &l[..l.find(",8,").unwrap()]).collect();
    assert_eq!(firsts, ["1,oci", "1,p2p", "1,p2p-lazy", "2,oci", "2,p2p", "2,p2p-lazy"]);
    for f in ["sweep.md", "sweep_startup.png", "sweep_startup.svg", "sweep_registry.png", "sweep_registry.svg"] {
        assert!(a.join("e2e-small/sweep").join(f).is_file(), "{f} missing");
    }

    // No point meets it: exit 1, the closest shown.
    let missed =
        sim(&["sweep", s, vary[0], vary[1], "--target", "p2p.startup_p99_s<0.001", "--out", a.to_str().unwrap()]);
    assert_eq!(missed.status.code(), Some(1), "{}", show(&missed));
    assert!(
        String::from_utf8_lossy(&missed.stdout).contains("None of 2 points meets it. Closest: "),
        "{}",
        show(&missed)
    );

    // Bad arguments: exit 2, one line naming them.
    for (args, what) in [
        (vec!["--vary", "cluster.seed_peers=1..2"], "--vary \"cluster.seed_peers=1..2\""),
        (vec!["--vary", "cluster.seedpeers=1..2:2"], "did you mean cluster.seed_peers?"),
        (vec!["--vary", "cluster.pods=0..1:2"], "grid point cluster.pods = 0: "),
        (vec!["--vary", "cluster.pods=1..2:2", "--target", "p2p.p99<=3"], "--target \"p2p.p99<=3\""),
    ] {
        let mut argv = vec!["sweep", s];
        argv.extend(args);
        let o = sim(&argv);
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(what), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let _ = fs::remove_dir_all(&d);
}
