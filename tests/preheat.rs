//! Preheat end to end (issue 24 item 3): the real `docker-registry` holding a two-platform
//! image (an OCI index over a linux/amd64 and a linux/arm64 manifest), a scheduler, a seed
//! and 4 peers with their mirrors. `p2pctl preheat` (the built binary) has the seed fetch
//! the amd64 blobs, and a rollout of the 4 peers through their mirrors afterwards reads no
//! blob byte from the registry. Also: the same preheat again is the same job and costs no
//! blob GET; a Harbor push event preheats a second tag; a bad reference exits 2; a missing
//! tag and a missing platform end in failed jobs naming why; the shared secret guards the
//! POSTs; a registry that wants a password is read with Docker config.json credentials.

use e2e::cluster::{self, binary, start_peer, start_scheduler_full, PeerOptions};
use e2e::registry::{request, Registry};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// What containerd 1.6 sends with its manifest HEAD.
const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";
const AUTH: &str = "Bearer e2e-preheat-secret";
/// The longest one preheat may take here (a few tens of MiB on loopback).
const PREHEAT_TIMEOUT_S: u64 = 120;

struct Blob {
    digest: String,
    data: Vec<u8>,
}

impl Blob {
    fn new(data: Vec<u8>) -> Blob {
        Blob { digest: format!("sha256:{}", cluster::sha256_hex(&data)), data }
    }
}

/// A pushed image manifest: its blobs (config first) and its own bytes.
struct Manifest {
    blobs: Vec<Blob>,
    bytes: Vec<u8>,
    digest: String,
}

/// Pushes a config and layers of random bytes and their manifest under `reference` (a tag,
/// or None: by its digest only).
fn push_manifest(
    registry: &Registry,
    repo: &str,
    reference: Option<&str>,
    layer_mib: &[usize],
    arch: &str,
    seed: u64,
) -> Manifest {
    let layers: Vec<Blob> = layer_mib
        .iter()
        .enumerate()
        .map(|(i, m)| Blob::new(cluster::random_bytes(m * MIB + 321 * i, seed + i as u64)))
        .collect();
    let config = Blob::new(
        serde_json::json!({ "architecture": arch, "os": "linux", "seed": seed,
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() } })
        .to_string()
        .into_bytes(),
    );
    let descriptor =
        |media: &str, b: &Blob| serde_json::json!({ "mediaType": media, "digest": b.digest, "size": b.data.len() });
    let bytes = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let mut blobs = vec![config];
    blobs.extend(layers);
    for b in &blobs {
        registry.push_blob(repo, &b.data, &b.digest);
    }
    let digest = format!("sha256:{}", cluster::sha256_hex(&bytes));
    assert_eq!(registry.push_manifest(repo, reference.unwrap_or(&digest), OCI_MANIFEST, &bytes), 201, "manifest push");
    Manifest { blobs, bytes, digest }
}

/// Pushes an OCI index of `(manifest, architecture)` under `tag`; its digest.
fn push_index(registry: &Registry, repo: &str, tag: &str, entries: &[(&Manifest, &str)]) -> String {
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": entries.iter().map(|(m, arch)| serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": m.digest, "size": m.bytes.len(),
            "platform": { "os": "linux", "architecture": arch } })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    assert_eq!(registry.push_manifest(repo, tag, OCI_INDEX, &index), 201, "index push");
    format!("sha256:{}", cluster::sha256_hex(&index))
}

fn mirror_toml(registry: &str, extra: &str) -> String {
    format!(
        "[mirror]\nupstream_timeout_ms = 20000\n[[mirror.registries]]\nhost = \"{registry}\"\nendpoint = \"http://{registry}\"\n{extra}"
    )
}

fn p2pctl(scheduler: &str, args: &[&str]) -> Output {
    Command::new(binary("p2pctl"))
        .args(["--scheduler", scheduler])
        .args(args)
        .env("COLUMNS", "160")
        .env_remove("P2PCTL_AUTH_FILE")
        .output()
        .expect("p2pctl runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// `p2pctl preheat` that must succeed: its job id.
fn preheat_ok(scheduler: &str, auth_file: &Path, image: &str) -> (String, String) {
    let timeout = PREHEAT_TIMEOUT_S.to_string();
    let out = p2pctl(scheduler, &["preheat", image, "--auth-file", auth_file.to_str().unwrap(), "--timeout", &timeout]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "p2pctl preheat {image}: {stderr}\n{stdout}");
    let id = stdout.split_whitespace().nth(1).unwrap_or_default().to_string();
    assert!(stdout.starts_with("job ") && id.len() == 16, "{stdout}");
    (id, stdout)
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn get(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, method, path, headers, &[]).unwrap_or_else(|| panic!("{method} {path} via {addr}: no response"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// containerd's pull of `repo:tag` (an index) through `mirror`, for amd64; checks every
/// digest. `auth`: the client's own credentials.
fn pull(mirror: &str, registry: &str, repo: &str, tag: &str, want: &Manifest, auth: Option<&str>) {
    let ns = format!("ns={}", registry.replace(':', "%3A"));
    let mut h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    h.push(("Accept", CONTAINERD_ACCEPT));
    let (status, headers, _) = get(mirror, "HEAD", &format!("/v2/{repo}/manifests/{tag}?{ns}"), &h);
    assert_eq!(status, 200, "HEAD {repo}:{tag} via {mirror}");
    let index_digest = header(&headers, "Docker-Content-Digest").expect("digest").to_string();
    let (status, _, body) = get(mirror, "GET", &format!("/v2/{repo}/manifests/{index_digest}?{ns}"), &h);
    assert_eq!(status, 200, "index by digest via {mirror}");
    assert_eq!(format!("sha256:{}", cluster::sha256_hex(&body)), index_digest);
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let amd = index["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == "amd64").unwrap();
    assert_eq!(amd["digest"], want.digest.as_str());
    let (status, _, body) = get(mirror, "GET", &format!("/v2/{repo}/manifests/{}?{ns}", want.digest), &h);
    assert_eq!((status, body.as_slice()), (200, want.bytes.as_slice()), "manifest via {mirror}");
    for blob in &want.blobs {
        let (status, _, body) = get(mirror, "GET", &format!("/v2/{repo}/blobs/{}?{ns}", blob.digest), &h);
        assert_eq!(
            status,
            200,
            "blob {} via {mirror}: {}",
            blob.digest,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        assert_eq!(format!("sha256:{}", cluster::sha256_hex(&body)), blob.digest, "blob bytes via {mirror}");
    }
}

/// Registry GETs and body bytes of blobs, from its access log.
fn blob_reads(registry: &Registry) -> (usize, u64) {
    std::thread::sleep(Duration::from_millis(300)); // the log is written as responses end
    (registry.gets("/blobs/sha256:"), registry.bytes_served("/blobs/sha256:"))
}

/// GETs of one blob.
fn gets_of(registry: &Registry, b: &Blob) -> usize {
    registry.gets(&format!("/blobs/{}", b.digest))
}

fn wait_job(scheduler: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(PREHEAT_TIMEOUT_S);
    loop {
        let out = p2pctl(scheduler, &["--json", "jobs", id]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "p2pctl jobs {id}: {stderr}");
        let job: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if job["state"] == "succeeded" || job["state"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} still {} after {PREHEAT_TIMEOUT_S} s", job["state"]);
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn preheat_leaves_the_registry_no_blob_to_serve_in_the_rollout() {
    let dir = cluster::test_dir("preheat");
    let registry = Registry::start(&dir);
    let reg = registry.addr.clone();
    let repo = "e2e/app";
    let amd = push_manifest(&registry, repo, None, &[6, 10, 14], "amd64", 1);
    let arm = push_manifest(&registry, repo, None, &[3], "arm64", 50);
    push_index(&registry, repo, "v1", &[(&amd, "amd64"), (&arm, "arm64")]);
    let auth_file = dir.join("preheat-auth");
    std::fs::write(&auth_file, format!("{AUTH}\n")).unwrap();
    let (grpc, http) = (format!("127.0.0.1:{}", cluster::free_port()), format!("127.0.0.1:{}", cluster::free_port()));
    let sched =
        start_scheduler_full(&dir, grpc, http, "", &format!("\n[preheat]\nauth_file = \"{}\"\n", auth_file.display()));
    let mirror = mirror_toml(&reg, "");
    let mut seed = start_peer(
        &dir,
        "seed",
        Some(&sched.grpc),
        &PeerOptions { seed: true, extra_toml: mirror.clone(), ..Default::default() },
    );
    let mut peers: Vec<_> = (0..4)
        .map(|i| {
            start_peer(
                &dir,
                &format!("peer{i}"),
                Some(&sched.grpc),
                &PeerOptions { extra_toml: mirror.clone(), ..Default::default() },
            )
        })
        .collect();
    seed.wait_for_log("watching seed tasks", 1, Duration::from_secs(20));
    let image = format!("{reg}/{repo}:v1");

    // The POSTs need the secret.
    let out = p2pctl(&sched.http, &["preheat", &image]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("HTTP 401") && text(&out).1.contains("auth_file"), "{}", text(&out).1);
    let (before_gets, before_bytes) = blob_reads(&registry);
    assert_eq!((before_gets, before_bytes), (0, 0), "nothing read the blobs yet");

    let started = Instant::now();
    let (id, stdout) = preheat_ok(&sched.http, &auth_file, &image);
    let preheat_s = started.elapsed().as_secs_f64();
    eprint!("p2pctl preheat {image}:\n{stdout}");
    assert!(stdout.contains(&format!("job {id} started: {image} linux/amd64")), "{stdout}");
    assert!(stdout.lines().last().unwrap().starts_with("succeeded: 4/4 blobs"), "{stdout}");
    let (preheat_gets, preheat_bytes) = blob_reads(&registry);
    let amd_bytes: u64 = amd.blobs.iter().map(|b| b.data.len() as u64).sum();
    eprintln!("preheat: job {id} in {preheat_s:.1} s; the seed read {preheat_gets} blob GETs, {preheat_bytes} bytes ({amd_bytes} in the amd64 blobs)");
    for b in &amd.blobs {
        assert!(gets_of(&registry, b) >= 1, "the seed never read blob {}: did the preheat do anything?", b.digest);
    }
    assert!(
        preheat_bytes >= amd_bytes && preheat_bytes <= amd_bytes + (4 << 20),
        "one copy of each blob: {preheat_bytes}"
    );
    assert_eq!(arm.blobs.iter().map(|b| gets_of(&registry, b)).sum::<usize>(), 0, "the arm64 blobs are not preheated");
    let job: serde_json::Value = serde_json::from_str(&text(&p2pctl(&sched.http, &["--json", "jobs", &id])).0).unwrap();
    assert_eq!((job["state"].as_str(), job["blobs_done"].as_u64()), (Some("succeeded"), Some(4)), "{job}");
    assert_eq!(job["manifest_digest"], amd.digest.as_str());
    assert_eq!(job["done_bytes"].as_u64(), Some(amd_bytes));

    // The rollout: 4 pulls at once through the peers' mirrors.
    let manifest_gets_before = registry.gets("/manifests/");
    let rollout = Instant::now();
    std::thread::scope(|s| {
        let pulls: Vec<_> = peers.iter().map(|p| s.spawn(|| pull(&p.mirror, &reg, repo, "v1", &amd, None))).collect();
        for p in pulls {
            p.join().expect("a pull failed");
        }
    });
    let rollout_s = rollout.elapsed().as_secs_f64();
    let (after_gets, after_bytes) = blob_reads(&registry);
    eprintln!(
        "preheat: rollout of 4 peers in {rollout_s:.2} s: registry blob GETs {preheat_gets} -> {after_gets}, blob bytes {preheat_bytes} -> {after_bytes}, blob HEADs {}, manifest GETs {}",
        registry.requests("HEAD", "/blobs/"),
        registry.gets("/manifests/") - manifest_gets_before
    );
    assert_eq!((after_gets, after_bytes), (preheat_gets, preheat_bytes), "the rollout read blobs from the registry");
    for p in &peers {
        let from_parents = p.metric("peer_download_bytes_total{source=\"parent\"}");
        assert!(from_parents >= amd_bytes, "{}: {from_parents} bytes from parents", p.name);
    }

    // Again: the same job, no blob read.
    let (again, stdout) = preheat_ok(&sched.http, &auth_file, &image);
    assert_eq!(again, id, "{stdout}");
    assert!(stdout.contains(&format!("job {id} exists")), "{stdout}");
    assert_eq!(blob_reads(&registry).0, after_gets);

    // Harbor pushes a second tag: its push event preheats it by digest.
    let v2 = push_manifest(&registry, repo, Some("v2"), &[5], "amd64", 90);
    let event = serde_json::json!({ "type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "e2e",
        "event_data": { "resources": [{ "digest": v2.digest, "tag": "v2", "resource_url": format!("{reg}/{repo}:v2") }],
            "repository": { "name": "app", "namespace": "e2e", "repo_full_name": repo, "repo_type": "private" } } })
    .to_string();
    let hook = "/api/v1/webhooks/harbor";
    let (status, _, _) =
        request(&sched.http, "POST", hook, &[("Content-Type", "application/json")], event.as_bytes()).unwrap();
    assert_eq!(status, 401, "the webhook needs the secret too");
    let with_auth = [("Content-Type", "application/json"), ("Authorization", AUTH)];
    let (status, _, body) = request(&sched.http, "POST", hook, &with_auth, event.as_bytes()).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let hook_job = answer["jobs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(answer["jobs"][0]["image"], format!("{reg}/{repo}@{}", v2.digest).as_str());
    let job = wait_job(&sched.http, &hook_job);
    assert_eq!(job["state"], "succeeded", "{job}");
    for b in &v2.blobs {
        assert!(gets_of(&registry, b) >= 1, "the webhook's preheat did not read blob {}", b.digest);
    }
    let other = serde_json::json!({ "type": "DELETE_ARTIFACT", "event_data": {} }).to_string();
    let (status, _, body) = request(&sched.http, "POST", hook, &with_auth, other.as_bytes()).unwrap();
    assert_eq!(status, 202);
    assert!(String::from_utf8_lossy(&body).contains("DELETE_ARTIFACT"));
    let (status, _, body) = request(&sched.http, "POST", hook, &with_auth, b"{\"type\":\"PUSH_ARTIFACT\"}").unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("event_data: is missing"));

    // Bad input and failures.
    let auth = auth_file.to_str().unwrap();
    let out = p2pctl(&sched.http, &["preheat", &format!("{reg}/E2E/app:v1")]);
    assert_eq!(out.status.code(), Some(2), "a bad reference is a bad command line");
    assert!(text(&out).1.contains("component \"E2E\""), "{}", text(&out).1);
    let out = p2pctl(&sched.http, &["preheat", &format!("{reg}/{repo}:missing"), "--auth-file", auth]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains("failed") && stderr.contains("404") && stderr.contains("MANIFEST_UNKNOWN"), "{stderr}");
    let out = p2pctl(&sched.http, &["preheat", &image, "--platform", "linux/s390x", "--auth-file", auth]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("no manifest for platform linux/s390x") && stderr.contains("linux/amd64, linux/arm64"),
        "{stderr}"
    );
    let table = text(&p2pctl(&sched.http, &["jobs"])).0;
    assert!(
        table.starts_with("JOB") && table.matches("succeeded").count() == 2 && table.matches("failed").count() == 2,
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 160), "{table}");
    let missing = text(&p2pctl(&sched.http, &["jobs", "0000000000000000"]));
    assert!(missing.1.contains("HTTP 404") && missing.1.contains("no preheat job"), "{}", missing.1);
    assert_eq!(cluster::metric_at(&sched.http, "sched_preheat_jobs_total{event=\"succeeded\"}"), 2);

    for p in peers.iter_mut() {
        p.proc.stop(Duration::from_secs(10));
    }
    seed.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `preheat-pass` for user `preheat`, bcrypt at the lowest cost (the registry's htpasswd).
const HTPASSWD: &str = "preheat:$2b$04$dTZGfPzMHqRo01AFaJTDZuF5QQ7NorNTVckpS6i42uqCoYN.b2wL6\n";

#[test]
fn a_registry_that_wants_a_password_is_preheated_with_docker_config_credentials() {
    let dir = cluster::test_dir("preheat-auth");
    let registry = Registry::start_with_users(&dir, HTPASSWD, "preheat", "preheat-pass");
    let reg = registry.addr.clone();
    let repo = "private/app";
    let amd = push_manifest(&registry, repo, None, &[4, 6], "amd64", 7);
    push_index(&registry, repo, "v1", &[(&amd, "amd64")]);
    let (grpc, http) = (format!("127.0.0.1:{}", cluster::free_port()), format!("127.0.0.1:{}", cluster::free_port()));
    let sched = start_scheduler_full(&dir, grpc, http, "", "");
    let wrong = dir.join("wrong.json");
    std::fs::write(&wrong, format!(r#"{{"auths": {{"{reg}": {{"username": "preheat", "password": "nope"}}}}}}"#))
        .unwrap();
    let config = dir.join("config.json");
    let basic = e2e::registry::base64_of("preheat:preheat-pass");
    std::fs::write(&config, format!(r#"{{"auths": {{"http://{reg}": {{"auth": "{basic}"}}}}}}"#)).unwrap();
    let seed_toml = mirror_toml(&reg, &format!("[preheat]\ndocker_config = \"{}\"\n", wrong.display()));
    let mut seed = start_peer(
        &dir,
        "seed",
        Some(&sched.grpc),
        &PeerOptions { seed: true, extra_toml: seed_toml, ..Default::default() },
    );
    let mut peer = start_peer(
        &dir,
        "peer0",
        Some(&sched.grpc),
        &PeerOptions { extra_toml: mirror_toml(&reg, ""), ..Default::default() },
    );
    seed.wait_for_log("watching seed tasks", 1, Duration::from_secs(20));
    let image = format!("{reg}/{repo}:v1");

    // A wrong password: the job fails with the registry's answer. The file is read at each
    // job, so fixing it needs no restart.
    let out = p2pctl(&sched.http, &["preheat", &image]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains("401") && stderr.contains("UNAUTHORIZED"), "{stderr}");
    std::fs::copy(&config, &wrong).unwrap();
    let out = p2pctl(&sched.http, &["preheat", &image, "--timeout", &PREHEAT_TIMEOUT_S.to_string()]);
    assert!(out.status.success(), "{}\n{}", text(&out).1, text(&out).0);
    let (preheat_gets, preheat_bytes) = blob_reads(&registry);
    for b in &amd.blobs {
        assert!(gets_of(&registry, b) >= 1, "the seed never read blob {}", b.digest);
    }
    // The client pulls with its own credentials (the registry still decides who reads).
    let client_auth = format!("Basic {basic}");
    pull(&peer.mirror, &reg, repo, "v1", &amd, Some(&client_auth));
    let (after_gets, after_bytes) = blob_reads(&registry);
    assert_eq!((after_gets, after_bytes), (preheat_gets, preheat_bytes), "the pull read blobs from the registry");
    let ns = format!("ns={}", reg.replace(':', "%3A"));
    let (status, _, _) = get(&peer.mirror, "GET", &format!("/v2/{repo}/blobs/{}?{ns}", amd.blobs[1].digest), &[]);
    assert_eq!(status, 401, "a client without credentials gets no preheated blob");
    peer.proc.stop(Duration::from_secs(10));
    seed.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
