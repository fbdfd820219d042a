//! The container images of `deploy/image/build.sh`, end to end: the peerd and scheduler images
//! are built twice from the release binaries (same manifest digest; the layout's index,
//! manifest, config and layer checked: user 65532:65532, entrypoint, diff_id, owners and
//! mtimes), pushed with skopeo to the real `docker-registry` (the registry serves the manifest
//! under that digest), pulled by a private containerd, and run with `ctr run --rm --read-only`:
//! the entrypoint alone prints the binary's usage (exit 2), so the binary and every library it
//! needs load inside the image; `--config FILE --check` passes with a configuration readable
//! only by uid 65532 and fails with "Permission denied" on one readable only by another uid,
//! so the process runs as 65532, not as root.
//!
//! Needs the release binaries (`cargo build --release -p peer -p sched`), containerd, runc,
//! skopeo and docker-registry (tests/setup.sh) and root (containerd mounts overlayfs,
//! the configurations are chowned). Run: `cargo test --release -p e2e --test deploy_image`.

use e2e::bounded_cmd::{self, Finished};
use e2e::cluster;
use e2e::containerd::{self, Containerd};
use e2e::oci_image::hex;
use e2e::registry::{self, Registry};
use e2e::skopeo;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const TAG: &str = "e2e";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `deploy/image/build.sh NAME --binary BIN --tag e2e ARGS…`; returns the digest it printed.
fn build(dir: &Path, name: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("deploy/image/build.sh"))
        .arg(name)
        .arg("--binary")
        .arg(cluster::binary(name))
        .args(["--tag", TAG])
        .args(args);
    let f = bounded_cmd::run(cmd, &dir.join(format!("build-{name}")), BUILD_TIMEOUT)
        .and_then(|f| f.ok(&format!("build.sh {name} {}", args.join(" "))))
        .unwrap_or_else(|e| panic!("{e}"));
    let digest = f.stdout.trim().to_string();
    assert!(
        digest.len() == 71 && digest.starts_with("sha256:") && digest[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "build.sh printed {:?} instead of one manifest digest; stderr: {}",
        f.stdout,
        f.stderr
    );
    digest
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// Reads blob `digest` of the layout and checks that its bytes hash to it.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(sha256(&data), digest, "{} does not hash to its name", path.display());
    data
}

fn json(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(data)))
}

/// Entries of a tar (ustar/GNU headers, short names): (name, uid, gid, mtime, mode).
fn tar_entries(tar: &[u8]) -> Vec<(String, u64, u64, u64, u64)> {
    let octal = |field: &[u8]| {
        let s = String::from_utf8_lossy(field);
        u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap_or(u64::MAX)
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
        let h = &tar[at..at + 512];
        let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
        let size = octal(&h[124..136]);
        out.push((name, octal(&h[108..116]), octal(&h[116..124]), octal(&h[136..148]), octal(&h[100..108])));
        at += 512 + (size as usize).div_ceil(512) * 512;
    }
    out
}

/// Checks the layout `build.sh --layout` wrote for `name`; returns the layer's size.
fn check_layout(layout: &Path, name: &str, digest: &str) -> u64 {
    assert_eq!(std::fs::read_to_string(layout.join("oci-layout")).unwrap(), r#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], digest, "index.json: {index}");
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], TAG, "index.json: {index}");
    let manifest_bytes = blob(layout, digest);
    assert_eq!(entry["size"], manifest_bytes.len() as u64);
    let manifest = json(&manifest_bytes);
    let config = json(&blob(layout, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "65532:65532", "config: {config}");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!([format!("/usr/local/bin/{name}")]));
    assert_eq!(config["os"], "linux");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "manifest: {manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let gz = blob(layout, layers[0]["digest"].as_str().unwrap());
    assert_eq!(layers[0]["size"], gz.len() as u64);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut tar).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&tar), "diff_id is the sha256 of the uncompressed layer");
    let entries = tar_entries(&tar);
    for wanted in [
        format!("usr/local/bin/{name}"),
        "etc/passwd".into(),
        "etc/group".into(),
        "etc/ssl/certs/ca-certificates.crt".into(),
        "tmp/".into(),
    ] {
        assert!(entries.iter().any(|e| e.0 == wanted), "layer lacks {wanted}: {entries:?}");
    }
    for (entry, uid, gid, mtime, mode) in &entries {
        assert_eq!((*uid, *gid, *mtime), (0, 0, 0), "{entry}: owner and mtime fixed");
        if entry == "tmp/" {
            assert_eq!(*mode & 0o7777, 0o1777, "/tmp is world-writable and sticky");
        }
    }
    let tar_text = String::from_utf8_lossy(&tar);
    assert!(tar_text.contains("nonroot:x:65532:65532:"), "/etc/passwd names nonroot 65532");
    gz.len() as u64
}

/// A copy of `source` at `path`, owned by `uid`:`uid`, mode 0400 (only that uid or root reads it).
fn config_owned_by(source: &Path, path: &Path, uid: u32) -> PathBuf {
    std::fs::copy(source, path).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {uid} {}: {e} (the suite runs as root)", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
    path.to_path_buf()
}

/// `ctr run --rm --read-only [--mount CONFIG] REFERENCE ID [ARGS…]`: the container's output.
fn run(ctrd: &Containerd, reference: &str, label: &str, config: Option<&Path>, args: &[&str]) -> Finished {
    let id = format!("e2e-{label}-{}", std::process::id());
    let mount = config.map(|c| format!("type=bind,src={},dst=/etc/p2pimg/config.toml,options=rbind:ro", c.display()));
    let mut ctr_args = vec!["run", "--rm", "--read-only"];
    if let Some(m) = &mount {
        ctr_args.extend(["--mount", m]);
    }
    ctr_args.extend([reference, &id]);
    ctr_args.extend(args);
    ctrd.ctr(&ctr_args, &format!("run-{label}"), RUN_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn peerd_and_scheduler_images_build_reproducibly_push_pull_and_run_as_nonroot() {
    containerd::binaries_present().unwrap_or_else(|e| panic!("{e}"));
    skopeo::binary_present().unwrap_or_else(|e| panic!("{e}"));
    // Short directory name: containerd's socket path must stay under 108 bytes.
    let dir = cluster::test_dir("img");
    let registry = Registry::start(&dir);
    let ctrd = Containerd::start(&dir.join("ctrd")).unwrap_or_else(|e| panic!("{e}"));
    let hosts = containerd::write_hosts_dir(&dir.join("hosts"), &registry.addr, None).unwrap();
    // (binary, example configuration, what its --check prints on stdout)
    let examples = [
        ("peerd", "peer/peerd.example.toml", "peerd: /etc/p2pimg/config.toml is valid"),
        ("scheduler", "sched/scheduler.example.toml", "policy = "),
    ];
    for (name, example, valid) in examples {
        let started = Instant::now();
        let (a, b) = (dir.join(format!("layout-{name}-a")), dir.join(format!("layout-{name}-b")));
        let digest = build(&dir, name, &["--layout", a.to_str().unwrap()]);
        let build_secs = started.elapsed().as_secs_f64();
        assert_eq!(build(&dir, name, &["--layout", b.to_str().unwrap()]), digest, "{name}: a second build differs");
        let layer_bytes = check_layout(&a, name, &digest);

        let repo = format!("{}/p2pimg/{name}", registry.addr);
        assert_eq!(build(&dir, name, &["--push", &repo, "--insecure"]), digest, "{name}: the pushed image differs");
        let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
        let (status, _, body) =
            registry::request(&registry.addr, "GET", &format!("/v2/p2pimg/{name}/manifests/{TAG}"), &accept, &[])
                .expect("the registry answers");
        assert_eq!((status, sha256(&body)), (200, digest.clone()), "{name}: the registry's manifest for {TAG}");

        let reference = format!("{repo}:{TAG}");
        let pull = ctrd.pull(&reference, &hosts, containerd::PULL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));

        // The entrypoint alone: the binary loads with the image's libraries and asks for --config.
        let bare = run(&ctrd, &reference, &format!("{name}-bare"), None, &[]);
        assert_eq!(bare.code, Some(2), "{name} without arguments: {bare:?}");
        assert!(bare.stderr.contains(&format!("usage: {name} --config FILE")), "{name} usage: {bare:?}");

        let check = ["/usr/local/bin/".to_string() + name, "--config".into(), "/etc/p2pimg/config.toml".into()];
        let check: Vec<&str> = check.iter().map(String::as_str).chain(["--check"]).collect();
        let source = repo_root().join(example);
        let mine = config_owned_by(&source, &dir.join(format!("{name}-65532.toml")), 65532);
        let ok = run(&ctrd, &reference, &format!("{name}-check"), Some(&mine), &check);
        assert!(
            ok.code == Some(0) && ok.stdout.contains(valid),
            "{name} --check with a configuration only uid 65532 reads: {ok:?}"
        );
        let theirs = config_owned_by(&source, &dir.join(format!("{name}-4242.toml")), 4242);
        let refused = run(&ctrd, &reference, &format!("{name}-denied"), Some(&theirs), &check);
        assert!(
            refused.code == Some(2)
                && refused.stderr.contains(&format!(
                    "{name}: /etc/p2pimg/config.toml: cannot read the configuration file: Permission denied"
                )),
            "{name} read a configuration only uid 4242 (and root) may read: not running as 65532: {refused:?}"
        );
        eprintln!(
            "deploy_image: {name} digest={digest} layer={:.1}MB build={build_secs:.1}s pull={:.2}s",
            layer_bytes as f64 / 1e6,
            pull.as_secs_f64()
        );
    }
    drop(ctrd);
    let _ = std::fs::remove_dir_all(&dir);
}
