//! `deploy/`: the Kubernetes kustomize trees, the systemd units and their configurations.
//! Each tree is rendered (kubectl kustomize, or the suite's minimal renderer), every object
//! checked for what it must hold, every embedded configuration parsed with the binaries' own
//! parsers (`sched::service::config`, `peer::daemon::config`), the init steps run for real
//! against temporary directories, and the result validated against the Kubernetes schema
//! when `kubernetes-validate` is installed (tests/setup.sh installs it).

use e2e::kustomize::{self, repo_root};
use e2e::systemd_unit::{self, Unit};
use peer::daemon::config::DaemonConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TREES: &[&str] = &["deploy/kubernetes/base", "deploy/kubernetes/overlays/example"];
const SCHEDULER: &str = "p2pimg-scheduler";
const SEED: &str = "p2pimg-seed";
const PEER: &str = "p2pimg-peer";

// ---- rendering and lookups ----

fn rendered(tree: &str) -> &'static [Value] {
    static CACHE: OnceLock<BTreeMap<&'static str, Vec<Value>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        TREES
            .iter()
            .map(|t| {
                let (objects, how) = kustomize::render(&repo_root().join(t)).unwrap_or_else(|e| panic!("{e}"));
                eprintln!("{t}: {} objects rendered with {how}", objects.len());
                (*t, objects)
            })
            .collect()
    });
    &cache[tree]
}

/// A generated ConfigMap's name without kustomize's hash suffix ("-" + 10 characters).
fn base_name(o: &Value) -> String {
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    if o["kind"] == "ConfigMap" {
        if let Some((stem, hash)) = name.rsplit_once('-') {
            if hash.len() == 10 && hash.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
                return stem.to_string();
            }
        }
    }
    name.to_string()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let hits: Vec<_> = objects.iter().filter(|o| o["kind"] == kind && base_name(o) == name).collect();
    assert_eq!(hits.len(), 1, "expected one {kind} {name}, found {}", hits.len());
    hits[0]
}

fn pod_spec(workload: &Value) -> &Value {
    let spec = &workload["spec"]["template"]["spec"];
    assert!(spec.is_object(), "{} has no pod template", workload["metadata"]["name"]);
    spec
}

fn container<'a>(spec: &'a Value, list: &str, name: &str) -> &'a Value {
    spec[list]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry named {name}"))
}

/// A probe's or Service's port: a number, or the name of one of the container's ports.
fn port_number(c: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = port.as_str().unwrap_or_else(|| panic!("port {port} is neither a number nor a name"));
    c["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("container {} has no port named {name}", c["name"])) as u16
}

fn container_port<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("container {} has no port named {name}", c["name"]))
}

/// The text of `key` in the ConfigMap that the pod's volume `volume` mounts.
fn config_text(objects: &[Value], spec: &Value, volume: &str, key: &str) -> String {
    let v = spec["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == volume))
        .unwrap_or_else(|| panic!("no volume {volume}"));
    let cm_name = v["configMap"]["name"].as_str().unwrap_or_else(|| panic!("volume {volume} is not a ConfigMap"));
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == cm_name)
        .unwrap_or_else(|| panic!("volume {volume} names ConfigMap {cm_name}, which is not rendered"));
    cm["data"][key].as_str().unwrap_or_else(|| panic!("ConfigMap {cm_name} has no key {key}")).to_string()
}

fn mount_path<'a>(c: &'a Value, volume: &str) -> &'a str {
    c["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == volume))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("container {} does not mount {volume}", c["name"]))
}

/// The path after `--config` in a container's command.
fn config_arg(c: &Value) -> String {
    let cmd: Vec<&str> = c["command"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let i = cmd.iter().position(|a| *a == "--config").unwrap_or_else(|| panic!("{} has no --config", c["name"]));
    cmd[i + 1].to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pimg-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- configurations, through the binaries' own parsers ----

/// Where the manifests mount the grant key Secret (`p2pimg-grant-key`), which the operator
/// creates and the manifests never hold.
const GRANT_KEY_PATH: &str = "/etc/p2pimg-grant/grant.key";
/// Where scheduler.yaml mounts Secret p2pimg-preheat-auth (key `auth`).
const PREHEAT_AUTH_PATH: &str = "/etc/p2pimg-preheat-auth/auth";

/// Where the manifests mount each component's TLS Secret (cert-manager's keys `tls.crt`,
/// `tls.key`, `ca.crt`), and where the systemd examples' commented-out `[tls]` points.
const TLS_DIR: &str = "/etc/p2pimg-tls";

/// The TLS Secret each workload mounts (cert-manager's Certificates and make-secrets.sh
/// write these).
const TLS_SECRETS: &[(&str, &str)] =
    &[(SCHEDULER, "p2pimg-scheduler-tls"), (SEED, "p2pimg-seed-tls"), (PEER, "p2pimg-peer-tls")];

fn fresh_dir(what: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    temp_dir(&format!("{what}-{}", CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
}

/// `text` with the grant key path pointing at a temporary 32-byte key, so that the parsers
/// (which read the key file at load) can check the rest.
fn with_test_grant_key(text: &str) -> String {
    let key = fresh_dir("grant-key").join("grant.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let auth = fresh_dir("preheat-auth").join("auth");
    std::fs::write(&auth, "Bearer deploy-manifests-test").unwrap();
    text.replace(GRANT_KEY_PATH, key.to_str().unwrap()).replace(PREHEAT_AUTH_PATH, auth.to_str().unwrap())
}

/// The `[tls]` table of a configuration, as written (None without one).
fn tls_section(text: &str, origin: &str) -> Option<svc::tls::TlsSection> {
    let raw: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    raw.get("tls").map(|t| t.clone().try_into().unwrap_or_else(|e| panic!("{origin}: [tls]: {e}")))
}

/// `text` with the grant key and the TLS files under `TLS_DIR` swapped for temporary ones (a
/// throwaway CA's, the leaf naming `server_name`), so that the parsers, which load both at
/// parse time, can check the rest.
fn with_test_files(text: &str, origin: &str) -> String {
    let text = with_test_grant_key(text);
    let Some(section) = tls_section(&text, origin) else { return text };
    if !text.contains(TLS_DIR) {
        return text;
    }
    let dir = fresh_dir("tls");
    let mut ca = svc::tls::test_certs::TestCa::new("deploy-manifests");
    let name = section.server_name.clone().unwrap_or_else(|| "p2pimg.test".into());
    let (cert, key) = ca.leaf(&[name.as_str()]);
    for (path, content) in [(&section.cert_file, cert), (&section.key_file, key), (&section.ca_file, ca.ca_pem())] {
        let rel = path.strip_prefix(TLS_DIR).unwrap_or_else(|_| {
            panic!("{origin}: [tls] names {} outside {TLS_DIR}, where the TLS Secret is mounted", path.display())
        });
        std::fs::write(dir.join(rel), content).unwrap();
    }
    text.replace(TLS_DIR, dir.to_str().unwrap())
}

/// A Kubernetes scheduler configuration: grants on, the key from the mounted Secret.
fn k8s_scheduler_config(text: &str, origin: &str) -> sched::service::ServiceConfig {
    assert!(text.contains(GRANT_KEY_PATH), "{origin}: [service] grant_key_file is not {GRANT_KEY_PATH}");
    scheduler_config(text, origin)
}

/// A scheduler configuration (systemd's turn grants on by hand: deploy/README.md).
fn scheduler_config(text: &str, origin: &str) -> sched::service::ServiceConfig {
    sched::service::config::parse(&with_test_files(text, origin), origin).unwrap_or_else(|e| panic!("{e}"))
}

/// One `[[mirror.registries]]` entry: the name clients use and where it is reached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Mirrored {
    host: String,
    upstream: String,
}

/// Parses a peer configuration with `peer::daemon::config::parse`, the daemon's own parser
/// (unknown keys, bad addresses and bad mirror entries fail with FILE:LINE: KEY). Returns
/// `listen.mirror` when the file sets it, and the mirrored registries.
fn peer_config(text: &str, origin: &str) -> (DaemonConfig, Option<SocketAddr>, Vec<Mirrored>) {
    let raw: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    let cfg = peer::daemon::config::parse(&with_test_files(text, origin), origin).unwrap_or_else(|e| panic!("{e}"));
    let listen_mirror = raw.get("listen").and_then(|l| l.get("mirror")).map(|_| cfg.listen.mirror);
    let registries =
        cfg.mirror.registries.iter().map(|r| Mirrored { host: r.host.clone(), upstream: r.endpoint() }).collect();
    (cfg, listen_mirror, registries)
}

/// The peer configuration as the render-config init container leaves it (placeholder
/// replaced by a pod IP); `peer_config_after_init_step` runs the real init container.
fn with_pod_ip(text: &str) -> String {
    assert!(text.contains("@POD_IP@"), "the peer configuration has no @POD_IP@ for the init step to fill");
    text.replace("@POD_IP@", "10.20.30.40")
}

fn scheduler_policy(text: &str) -> String {
    let raw: toml::Table = toml::from_str(text).unwrap();
    raw.get("scheduler").and_then(|s| s.get("policy")).and_then(|p| p.as_str()).unwrap_or("default").to_string()
}

// ---- the trees as a whole ----

#[test]
fn the_fallback_renderer_agrees_with_kubectl() {
    let Some(kubectl) = kustomize::kubectl() else {
        eprintln!("kubectl is not installed: the suite renders with its minimal renderer only");
        return;
    };
    for tree in TREES {
        let dir = repo_root().join(tree);
        let normalize = |objects: Vec<Value>| -> BTreeMap<(String, String), Value> {
            let hashed: BTreeMap<String, String> = objects
                .iter()
                .filter(|o| o["kind"] == "ConfigMap")
                .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), base_name(o)))
                .collect();
            objects
                .into_iter()
                .map(|mut o| {
                    unhash(&mut o, &hashed);
                    ((o["kind"].as_str().unwrap().to_string(), o["metadata"]["name"].as_str().unwrap().to_string()), o)
                })
                .collect()
        };
        let by_kubectl = normalize(kustomize::render_with_kubectl(&kubectl, &dir).unwrap());
        let by_suite = normalize(kustomize::render_minimal(&dir).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            by_kubectl.keys().collect::<Vec<_>>(),
            by_suite.keys().collect::<Vec<_>>(),
            "{tree}: objects differ"
        );
        for (key, o) in &by_kubectl {
            assert_eq!(o, &by_suite[key], "{tree}: {key:?} differs between kubectl and the minimal renderer");
        }
    }
}

fn unhash(v: &mut Value, hashed: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(base) = hashed.get(s.as_str()) {
                *s = base.clone();
            }
        }
        Value::Array(l) => l.iter_mut().for_each(|x| unhash(x, hashed)),
        Value::Object(m) => m.values_mut().for_each(|x| unhash(x, hashed)),
        _ => {}
    }
}

/// `python3 -m kubernetes_validate`, if installed.
fn schema_validator() -> Option<Command> {
    let ok = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| {
        let mut c = Command::new("python3");
        c.args(["-m", "kubernetes_validate", "--strict", "--quiet"]);
        c
    })
}

#[test]
fn manifests_pass_the_kubernetes_schema_validator() {
    assert!(
        schema_validator().is_some(),
        "kubernetes-validate is not installed: run tests/setup.sh (pip install kubernetes-validate)"
    );
    let dir = temp_dir("schema");
    for tree in TREES {
        let file = dir.join(format!("{}.yaml", tree.replace('/', "_")));
        let text: String =
            rendered(tree).iter().map(|o| format!("---\n{}", serde_norway::to_string(o).unwrap())).collect();
        std::fs::write(&file, text).unwrap();
        let out = schema_validator().unwrap().arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{tree} fails the Kubernetes schema:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator does reject a broken object (so a pass above means something).
    let bad = dir.join("bad.yaml");
    let mut sts = find(rendered(TREES[0]), "StatefulSet", SCHEDULER).clone();
    sts["spec"]["replicas"] = Value::String("two".into());
    std::fs::write(&bad, serde_norway::to_string(&sts).unwrap()).unwrap();
    assert!(!schema_validator().unwrap().arg(&bad).output().unwrap().status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn images_are_pinned_and_no_secret_is_written_in_a_manifest() {
    for tree in TREES {
        let objects = rendered(tree);
        assert!(!objects.iter().any(|o| o["kind"] == "Secret"), "{tree}: a Secret in plain manifests");
        for w in objects.iter().filter(|o| o["spec"]["template"]["spec"].is_object()) {
            let spec = pod_spec(w);
            for list in ["initContainers", "containers"] {
                for c in spec[list].as_array().into_iter().flatten() {
                    let image = c["image"].as_str().unwrap();
                    let tag = image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
                    assert!(
                        tag.is_some_and(|t| t != "latest"),
                        "{tree}: {}/{}: image {image} has no pinned tag (set it in the kustomization's images)",
                        w["metadata"]["name"],
                        c["name"]
                    );
                    for env in c["env"].as_array().into_iter().flatten() {
                        let name = env["name"].as_str().unwrap().to_ascii_lowercase();
                        let secretish = ["password", "token", "secret", "key"].iter().any(|s| name.contains(s));
                        assert!(
                            !(secretish && env.get("value").is_some()),
                            "{tree}: {} has a literal {name}",
                            c["name"]
                        );
                    }
                }
            }
        }
    }
    let overlay = rendered(TREES[1]);
    let image = pod_spec(find(overlay, "DaemonSet", PEER))["containers"][0]["image"].as_str().unwrap();
    assert!(image.starts_with("registry.example.com/p2pimg/peerd:"), "the overlay renames images: {image}");
}

#[test]
fn every_mount_names_a_volume_and_containers_run_unprivileged() {
    for tree in TREES {
        let objects = rendered(tree);
        for w in objects.iter().filter(|o| o["spec"]["template"]["spec"].is_object()) {
            let name = w["metadata"]["name"].as_str().unwrap();
            assert_eq!(w["metadata"]["namespace"], "p2pimg", "{tree}: {name}");
            let spec = pod_spec(w);
            let mut volumes: Vec<&str> =
                spec["volumes"].as_array().into_iter().flatten().map(|v| v["name"].as_str().unwrap()).collect();
            for claim in w["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
                volumes.push(claim["metadata"]["name"].as_str().unwrap());
            }
            for v in spec["volumes"].as_array().into_iter().flatten() {
                if let Some(cm) = v["configMap"]["name"].as_str() {
                    assert!(
                        objects.iter().any(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == cm),
                        "{tree}: {name}: volume {} names ConfigMap {cm}, which is not rendered",
                        v["name"]
                    );
                }
            }
            for list in ["initContainers", "containers"] {
                for c in spec[list].as_array().into_iter().flatten() {
                    for m in c["volumeMounts"].as_array().into_iter().flatten() {
                        assert!(
                            volumes.contains(&m["name"].as_str().unwrap()),
                            "{tree}: {name}/{}: mount of unknown volume {}",
                            c["name"],
                            m["name"]
                        );
                    }
                    let sc = &c["securityContext"];
                    assert_eq!(sc["allowPrivilegeEscalation"], false, "{tree}: {name}/{}", c["name"]);
                    assert_eq!(sc["readOnlyRootFilesystem"], true, "{tree}: {name}/{}", c["name"]);
                    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{tree}: {name}/{}", c["name"]);
                }
            }
            for c in spec["containers"].as_array().unwrap() {
                let non_root =
                    c["securityContext"]["runAsNonRoot"] == true || spec["securityContext"]["runAsNonRoot"] == true;
                assert!(non_root, "{tree}: {name}/{}: the long-running container must not run as root", c["name"]);
                let r = &c["resources"];
                assert!(
                    r["requests"]["cpu"].is_string() && r["requests"]["memory"].is_string(),
                    "{tree}: {name}: requests"
                );
                assert!(r["limits"]["memory"].is_string(), "{tree}: {name}: a memory limit");
            }
        }
    }
}

// ---- the scheduler ----

#[test]
fn the_scheduler_runs_at_least_two_replicas_with_stable_ordered_names() {
    for tree in TREES {
        let objects = rendered(tree);
        let sts = find(objects, "StatefulSet", SCHEDULER);
        let replicas = sts["spec"]["replicas"].as_u64().unwrap();
        assert!(replicas >= 2, "{tree}: the scheduler runs {replicas} replica(s); at least 2");
        let svc = find(objects, "Service", sts["spec"]["serviceName"].as_str().unwrap());
        assert_eq!(
            svc["spec"]["clusterIP"], "None",
            "{tree}: the scheduler's Service must be headless (per-replica DNS)"
        );
        assert_eq!(svc["spec"]["selector"], sts["spec"]["selector"]["matchLabels"], "{tree}: Service selector");
        assert_eq!(sts["spec"]["selector"]["matchLabels"], sts["spec"]["template"]["metadata"]["labels"]);
        let anti = &pod_spec(sts)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname", "{tree}: replicas spread across nodes");
        assert_eq!(anti["labelSelector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"]);
        let pdb = find(objects, "PodDisruptionBudget", SCHEDULER);
        assert_eq!(pdb["spec"]["selector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"]);
        let unavailable = pdb["spec"]["maxUnavailable"].as_u64().unwrap();
        assert!(
            unavailable >= 1 && unavailable < replicas,
            "{tree}: the PDB keeps a replica up and lets drains proceed"
        );
    }
}

#[test]
fn scheduler_probes_ports_and_metrics_match_its_config() {
    for tree in TREES {
        let objects = rendered(tree);
        let sts = find(objects, "StatefulSet", SCHEDULER);
        let spec = pod_spec(sts);
        let c = container(spec, "containers", "scheduler");
        let path = config_arg(c);
        let (dir, file) = path.rsplit_once('/').unwrap();
        let volume = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == dir).unwrap()["name"]
            .as_str()
            .unwrap();
        let text = config_text(objects, spec, volume, file);
        let cfg = k8s_scheduler_config(&text, &format!("{tree}: ConfigMap {file}"));
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{tree}: scheduler {probe}");
            assert_eq!(
                port_number(c, &c[probe]["httpGet"]["port"]),
                cfg.http_addr.port(),
                "{tree}: scheduler {probe} port"
            );
        }
        assert_eq!(container_port(c, "grpc")["containerPort"], cfg.grpc_addr.port(), "{tree}: grpc port");
        assert!(
            cfg.grpc_addr.ip().is_unspecified() && cfg.http_addr.ip().is_unspecified(),
            "{tree}: must listen on the pod's IP"
        );
        let meta = &sts["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(meta["prometheus.io/scrape"], "true");
        assert_eq!(meta["prometheus.io/port"], cfg.http_addr.port().to_string());
        assert_eq!(meta["prometheus.io/path"], "/metrics");
        let svc = find(objects, "Service", SCHEDULER);
        let grpc =
            svc["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "grpc").expect("Service port grpc");
        assert_eq!(grpc["port"], cfg.grpc_addr.port());
        let grace_s = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace_s * 1000 > cfg.tuning.shutdown_grace.as_millis() as u64,
            "{tree}: grace {grace_s} s must exceed shutdown_grace_ms"
        );
    }
}

#[test]
fn every_peer_and_seed_lists_every_scheduler_replica_in_order() {
    for tree in TREES {
        let objects = rendered(tree);
        let sts = find(objects, "StatefulSet", SCHEDULER);
        let replicas = sts["spec"]["replicas"].as_u64().unwrap();
        let ns = sts["metadata"]["namespace"].as_str().unwrap();
        let svc = sts["spec"]["serviceName"].as_str().unwrap();
        let sched_spec = pod_spec(sts);
        let sched_text = config_text(objects, sched_spec, "config", "scheduler.toml");
        let sched_cfg = k8s_scheduler_config(&sched_text, "scheduler.toml");
        for (kind, name, key) in [("StatefulSet", SEED, "seed.toml"), ("DaemonSet", PEER, "peerd.toml")] {
            let text = config_text(objects, pod_spec(find(objects, kind, name)), "config-template", key);
            let (cfg, _, _) = peer_config(&with_pod_ip(&text), &format!("{tree}: {key}"));
            // With [tls] the link is TLS whatever the scheme; https:// says so (and fails to
            // parse should [tls] go).
            let scheme = if cfg.tls.is_some() { "https" } else { "http" };
            let expected: Vec<String> = (0..replicas)
                .map(|i| {
                    format!("{scheme}://{SCHEDULER}-{i}.{svc}.{ns}.svc.cluster.local:{}", sched_cfg.grpc_addr.port())
                })
                .collect();
            assert_eq!(
                cfg.scheduler.addresses, expected,
                "{tree}: {key}: scheduler.addresses must name the {replicas} replicas in ordinal order (tasks go to a replica by rendezvous over that order)"
            );
            assert_eq!(
                Some(cfg.core.policy),
                sched::Policy::parse(&scheduler_policy(&sched_text)),
                "{tree}: {key}: [peer] policy must be the scheduler's policy"
            );
        }
    }
}

// ---- seed peers ----

/// "200Gi" and friends in bytes.
fn quantity_bytes(q: &str) -> u64 {
    let (n, mult) = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ]
    .iter()
    .find_map(|(suffix, m)| q.strip_suffix(suffix).map(|n| (n, *m)))
    .unwrap_or((q, 1));
    n.parse::<u64>().unwrap_or_else(|_| panic!("quantity {q}")) * mult
}

#[test]
fn seed_peers_keep_their_store_on_a_volume_claim() {
    for tree in TREES {
        let objects = rendered(tree);
        let sts = find(objects, "StatefulSet", SEED);
        assert!(sts["spec"]["replicas"].as_u64().unwrap() >= 1);
        let spec = pod_spec(sts);
        let c = container(spec, "containers", "peerd");
        let text = config_text(objects, spec, "config-template", "seed.toml");
        let (cfg, _, _) = peer_config(&with_pod_ip(&text), &format!("{tree}: seed.toml"));
        assert_eq!(cfg.host.kind, peer::daemon::HostKind::Seed, "{tree}: seed.toml must say host.kind = \"seed\"");
        let claim = sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["metadata"]["name"] == "store")
            .unwrap();
        assert_eq!(
            mount_path(c, "store"),
            cfg.storage.dir.to_str().unwrap(),
            "{tree}: the claim is mounted at storage.dir"
        );
        let size = quantity_bytes(claim["spec"]["resources"]["requests"]["storage"].as_str().unwrap());
        assert!(
            cfg.storage.quota_bytes <= size / 10 * 9,
            "{tree}: storage.quota_bytes {} must leave 10% of the {size}-byte volume for partial tasks and metadata",
            cfg.storage.quota_bytes
        );
        check_peer_probes_and_ports(tree, sts, c, &cfg);
        let svc = find(objects, "Service", sts["spec"]["serviceName"].as_str().unwrap());
        assert_eq!(svc["spec"]["selector"], sts["spec"]["selector"]["matchLabels"]);
        let pdb = find(objects, "PodDisruptionBudget", SEED);
        assert_eq!(pdb["spec"]["selector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"]);
    }
    let storage_class =
        &find(rendered(TREES[1]), "StatefulSet", SEED)["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"];
    assert_eq!(storage_class, "fast-ssd", "the example overlay's patch applies");
}

/// The seeds resolve manifests for every node's mirror (`peer/README.md`, "Manifests"): they
/// must serve their resolver port, proxy the registries the nodes' mirrors proxy, and keep
/// tags as long as the nodes do, or every node falls back to asking the registry itself.
#[test]
fn seeds_resolve_manifests_for_the_registries_the_nodes_pull_from() {
    let hosts = |cfg: &DaemonConfig| {
        cfg.mirror.registries.iter().map(|r| (r.host.clone(), r.endpoint.clone())).collect::<Vec<_>>()
    };
    for tree in TREES {
        let objects = rendered(tree);
        let sts = find(objects, "StatefulSet", SEED);
        let spec = pod_spec(sts);
        let seed_text = config_text(objects, spec, "config-template", "seed.toml");
        let (seed, _, _) = peer_config(&with_pod_ip(&seed_text), &format!("{tree}: seed.toml"));
        let node_text =
            config_text(objects, pod_spec(find(objects, "DaemonSet", PEER)), "config-template", "peerd.toml");
        let (node, _, _) = peer_config(&with_pod_ip(&node_text), &format!("{tree}: peerd.toml"));
        assert!(node.mirror.resolve_via_seeds, "{tree}: peerd.toml: the nodes ask the seeds");
        assert!(!hosts(&node).is_empty(), "{tree}: peerd.toml proxies some registry");
        assert_eq!(hosts(&seed), hosts(&node), "{tree}: seed.toml must list the registries of peerd.toml");
        assert_eq!(seed.mirror.tag_ttl_ms, node.mirror.tag_ttl_ms, "{tree}: one tag TTL for seeds and nodes");
        assert!(
            node.mirror.tag_ttl_ms > 0 && node.mirror.tag_ttl_ms <= 30_000,
            "{tree}: a pushed tag seen within 30 s"
        );
        let c = container(spec, "containers", "peerd");
        assert!(seed.listen.resolver.ip().is_unspecified(), "{tree}: the resolver answers on the pod's address");
        assert_eq!(
            container_port(c, "resolver")["containerPort"],
            seed.listen.resolver.port(),
            "{tree}: resolver port"
        );
        let svc = find(objects, "Service", sts["spec"]["serviceName"].as_str().unwrap());
        let port = svc["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "resolver");
        assert!(
            port.is_some_and(|p| p["port"] == seed.listen.resolver.port()),
            "{tree}: the Service names the resolver port"
        );
    }
    let seed = std::fs::read_to_string(systemd_dir().join("seed.toml")).unwrap();
    let node = std::fs::read_to_string(systemd_dir().join("peerd.toml")).unwrap();
    let (seed, _, _) = peer_config(&seed, "deploy/systemd/seed.toml");
    let (node, _, _) = peer_config(&node, "deploy/systemd/peerd.toml");
    assert_eq!(hosts(&seed), hosts(&node), "deploy/systemd: seed.toml must list the registries of peerd.toml");
}

/// Preheat (deploy/README.md, "Preheat"): one Service to replica 0, where jobs live; the
/// POSTs' secret mounted where `[preheat] auth_file` reads it; the seeds' registry
/// credentials from an optional pull secret where `[preheat] docker_config` reads them.
#[test]
fn preheat_reaches_replica_zero_with_its_secret_and_the_seeds_credentials() {
    let secret_of = |spec: &Value, volume: &str| -> Value {
        spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == volume).unwrap()["secret"].clone()
    };
    for tree in TREES {
        let objects = rendered(tree);
        let sts = find(objects, "StatefulSet", SCHEDULER);
        let spec = pod_spec(sts);
        let text = config_text(objects, spec, "config", "scheduler.toml");
        let cfg = k8s_scheduler_config(&text, "scheduler.toml");
        let raw: toml::Table = toml::from_str(&text).unwrap();
        let auth_file = raw["preheat"]["auth_file"].as_str().expect("[preheat] auth_file: the POSTs need a secret");
        let c = container(spec, "containers", "scheduler");
        assert_eq!(auth_file, format!("{}/auth", mount_path(c, "preheat-auth")), "{tree}: auth_file in the mount");
        let secret = secret_of(spec, "preheat-auth");
        assert_eq!(secret["secretName"], "p2pimg-preheat-auth", "{tree}");
        assert!(secret["optional"].as_bool() != Some(true), "{tree}: the scheduler refuses to start without it");
        let svc = find(objects, "Service", "p2pimg-preheat");
        assert_ne!(svc["spec"]["clusterIP"], "None", "{tree}: one address for Harbor and p2pctl");
        let selector = &svc["spec"]["selector"];
        assert_eq!(
            selector["statefulset.kubernetes.io/pod-name"],
            format!("{SCHEDULER}-0"),
            "{tree}: jobs live on one replica"
        );
        for (k, v) in sts["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&selector[k], v, "{tree}: the Service selects the scheduler's pods");
        }
        let port = &svc["spec"]["ports"][0];
        assert_eq!(port_number(c, &port["targetPort"]), cfg.http_addr.port(), "{tree}: to listen.http");

        let seed = find(objects, "StatefulSet", SEED);
        let spec = pod_spec(seed);
        let text = config_text(objects, spec, "config-template", "seed.toml");
        let raw: toml::Table = toml::from_str(&text).unwrap();
        let docker_config = raw["preheat"]["docker_config"].as_str().expect("seed.toml: [preheat] docker_config");
        let c = container(spec, "containers", "peerd");
        assert_eq!(docker_config, format!("{}/.dockerconfigjson", mount_path(c, "preheat-registry")), "{tree}");
        let secret = secret_of(spec, "preheat-registry");
        assert_eq!(
            (secret["secretName"].as_str(), secret["optional"].as_bool()),
            (Some("p2pimg-preheat-registry"), Some(true)),
            "{tree}"
        );
        // Without the Secret the file is absent and the seed still starts (anonymous).
        peer_config(&with_pod_ip(&text), &format!("{tree}: seed.toml, no pull secret"));
    }
}

fn check_peer_probes_and_ports(tree: &str, workload: &Value, c: &Value, cfg: &DaemonConfig) {
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{tree}: {probe}");
        assert_eq!(
            port_number(c, &c[probe]["httpGet"]["port"]),
            cfg.listen.http.port(),
            "{tree}: {probe} port = listen.http"
        );
    }
    assert_eq!(container_port(c, "data")["containerPort"], cfg.listen.data.port(), "{tree}: data port = listen.data");
    assert!(
        cfg.listen.data.ip().is_unspecified() && cfg.listen.http.ip().is_unspecified(),
        "{tree}: data and http on every address"
    );
    assert!(cfg.listen.local_api.ip().is_loopback(), "{tree}: the local API stays on loopback");
    let meta = &workload["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(meta["prometheus.io/scrape"], "true");
    assert_eq!(meta["prometheus.io/port"], cfg.listen.http.port().to_string());
    let grace_s = pod_spec(workload)["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace_s >= 30, "{tree}: peerd needs time to leave the scheduler and flush on SIGTERM");
}

// ---- peers on every node ----

#[test]
fn peers_run_on_every_node_with_the_mirror_on_the_node_loopback() {
    for tree in TREES {
        let objects = rendered(tree);
        let ds = find(objects, "DaemonSet", PEER);
        let spec = pod_spec(ds);
        let c = container(spec, "containers", "peerd");
        let text = config_text(objects, spec, "config-template", "peerd.toml");
        let (cfg, listen_mirror, registries) = peer_config(&with_pod_ip(&text), &format!("{tree}: peerd.toml"));
        assert_eq!(cfg.host.kind, peer::daemon::HostKind::Normal);
        assert_eq!(spec["hostNetwork"], true, "{tree}: containerd reaches the mirror on the node's 127.0.0.1");
        assert_eq!(
            spec["dnsPolicy"], "ClusterFirstWithHostNet",
            "{tree}: scheduler names must resolve from the host network"
        );
        let mirror = listen_mirror.unwrap_or_else(|| panic!("{tree}: peerd.toml sets no listen.mirror"));
        assert_eq!(mirror, "127.0.0.1:65001".parse().unwrap(), "{tree}: listen.mirror");
        assert!(!registries.is_empty(), "{tree}: peerd.toml mirrors no registry");
        let port = container_port(c, "mirror");
        assert_eq!(
            (port["containerPort"].as_u64(), port["hostPort"].as_u64()),
            (Some(65001), Some(65001)),
            "{tree}: mirror port"
        );
        for p in c["ports"].as_array().unwrap() {
            assert_eq!(p["hostPort"], p["containerPort"], "{tree}: with hostNetwork hostPort must equal containerPort");
        }
        check_peer_probes_and_ports(tree, ds, c, &cfg);
        assert_eq!(
            spec["tolerations"],
            serde_json::json!([{"operator": "Exists"}]),
            "{tree}: peers tolerate every taint"
        );
        let store = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "store").unwrap();
        assert_eq!(store["hostPath"]["path"], cfg.storage.dir.to_str().unwrap(), "{tree}: the store is on the node");
        assert_eq!(mount_path(c, "store"), cfg.storage.dir.to_str().unwrap(), "{tree}: mounted at storage.dir");
        assert!(cfg.storage.quota_bytes <= 200 << 30, "{tree}: a node's peer store quota is implausibly large");
        assert!(ds["spec"]["updateStrategy"]["type"] == "RollingUpdate");
    }
}

/// The hosts.toml the init container writes for each registry, made by running the script
/// text from the rendered ConfigMap with the container's own arguments (certs dir redirected).
#[test]
fn the_containerd_init_step_writes_hosts_toml_for_exactly_the_mirrored_registries() {
    let script_in_repo = std::fs::read_to_string(repo_root().join("deploy/containerd/write-hosts-toml.sh")).unwrap();
    for tree in TREES {
        let objects = rendered(tree);
        let spec = pod_spec(find(objects, "DaemonSet", PEER));
        let init = container(spec, "initContainers", "containerd-hosts");
        let cmd: Vec<String> =
            init["command"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        assert_eq!(cmd[0], "sh");
        let (script_dir, script_file) = cmd[1].rsplit_once('/').unwrap();
        let script_volume =
            init["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == script_dir).unwrap();
        let script = config_text(objects, spec, script_volume["name"].as_str().unwrap(), script_file);
        assert_eq!(
            script, script_in_repo,
            "{tree}: the init container must run deploy/containerd/write-hosts-toml.sh itself"
        );
        let certs_at = cmd.iter().position(|a| a == "--certs-dir").unwrap() + 1;
        let certs_volume =
            init["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == cmd[certs_at].as_str()).unwrap();
        let host_dir = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == certs_volume["name"]).unwrap();
        assert_eq!(
            host_dir["hostPath"]["path"], "/etc/containerd/certs.d",
            "{tree}: the node's containerd hosts directory"
        );

        let text = config_text(objects, spec, "config-template", "peerd.toml");
        let (_, listen_mirror, mut registries) = peer_config(&with_pod_ip(&text), "peerd.toml");
        let mirror_arg = &cmd[cmd.iter().position(|a| a == "--mirror").unwrap() + 1];
        assert_eq!(mirror_arg, &format!("http://{}", listen_mirror.unwrap()), "{tree}: --mirror must be listen.mirror");

        let dir = temp_dir(&format!("hosts-{}", tree.replace('/', "_")));
        let script_path = dir.join(script_file);
        std::fs::write(&script_path, &script).unwrap();
        let certs = dir.join("certs.d");
        let mut args = cmd[2..].to_vec();
        args[certs_at - 2] = certs.to_str().unwrap().into();
        let out = Command::new("sh").arg(&script_path).args(&args).output().unwrap();
        assert!(out.status.success(), "{tree}: the init step failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut written = Vec::new();
        for entry in std::fs::read_dir(&certs).unwrap() {
            let entry = entry.unwrap();
            let host = entry.file_name().to_string_lossy().into_owned();
            let file = entry.path().join("hosts.toml");
            let t: toml::Table = toml::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let mirror_host = &t["host"][mirror_arg.as_str()];
            assert_eq!(
                mirror_host["capabilities"],
                toml::Value::Array(vec!["pull".into(), "resolve".into()]),
                "{host}"
            );
            written.push(Mirrored { host, upstream: t["server"].as_str().unwrap().into() });
        }
        written.sort();
        registries.sort();
        assert_eq!(
            written, registries,
            "{tree}: hosts.toml files (registry, fallback server) must match peerd's [[mirror.registries]]"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Runs the render-config init container's shell command with its mount paths redirected to
/// a temporary directory, then parses what the main container will read.
#[test]
fn the_render_config_init_step_leaves_a_valid_config_where_peerd_reads_it() {
    for tree in TREES {
        let objects = rendered(tree);
        for (kind, name, key) in [("StatefulSet", SEED, "seed.toml"), ("DaemonSet", PEER, "peerd.toml")] {
            let w = find(objects, kind, name);
            let spec = pod_spec(w);
            let init = container(spec, "initContainers", "render-config");
            let main = container(spec, "containers", "peerd");
            let env = init["env"].as_array().unwrap().iter().find(|e| e["name"] == "POD_IP").expect("POD_IP env");
            assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP", "{tree}: {name}");
            let cmd = init["command"].as_array().unwrap();
            assert_eq!((cmd[0].as_str(), cmd[1].as_str()), (Some("sh"), Some("-c")));
            let dir = temp_dir(&format!("render-{name}"));
            let mut mounts: Vec<(String, PathBuf)> = init["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| (m["mountPath"].as_str().unwrap().to_string(), dir.join(m["name"].as_str().unwrap())))
                .collect();
            mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            let mut script = cmd[2].as_str().unwrap().to_string();
            for (path, local) in &mounts {
                std::fs::create_dir_all(local).unwrap();
                script = script.replace(path.as_str(), local.to_str().unwrap());
            }
            let template = dir.join("config-template").join(key);
            std::fs::write(&template, config_text(objects, spec, "config-template", key)).unwrap();
            let out = Command::new("sh").args(["-c", &script]).env("POD_IP", "10.20.30.40").output().unwrap();
            assert!(
                out.status.success(),
                "{tree}: {name}: render-config failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let wanted = config_arg(main);
            let (wanted_dir, wanted_file) = wanted.rsplit_once('/').unwrap();
            let volume =
                main["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == wanted_dir).unwrap();
            assert_eq!(volume["readOnly"], true, "{tree}: {name}: peerd reads its config read-only");
            let rendered_file = dir.join(volume["name"].as_str().unwrap()).join(wanted_file);
            let text = std::fs::read_to_string(&rendered_file)
                .unwrap_or_else(|e| panic!("{tree}: {name}: {wanted} was not written: {e}"));
            let (cfg, _, _) = peer_config(&text, &format!("{tree}: {name}: {wanted}"));
            assert_eq!(cfg.host.advertise_ip.to_string(), "10.20.30.40", "{tree}: {name}: advertise_ip");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

// ---- mutual TLS ----

/// Each workload (kind, name) with the container that reads the configuration and the
/// ConfigMap volume and key that hold it; in the order of TLS_SECRETS.
const TLS_WORKLOADS: &[(&str, &str, &str, &str, &str)] = &[
    ("StatefulSet", SCHEDULER, "scheduler", "config", "scheduler.toml"),
    ("StatefulSet", SEED, "peerd", "config-template", "seed.toml"),
    ("DaemonSet", PEER, "peerd", "config-template", "peerd.toml"),
];

/// A workload's configuration text as the ConfigMap holds it (placeholders filled in).
fn workload_config(objects: &[Value], kind: &str, name: &str, volume: &str, key: &str) -> String {
    let text = config_text(objects, pod_spec(find(objects, kind, name)), volume, key);
    if text.contains("@POD_IP@") {
        with_pod_ip(&text)
    } else {
        text
    }
}

/// Parses a workload's configuration with its binary's own parser (TLS files swapped for a
/// throwaway CA's) and says whether [tls] loaded.
fn tls_loads(text: &str, origin: &str, scheduler: bool) -> bool {
    if scheduler {
        scheduler_config(text, origin).tls.is_some()
    } else {
        peer_config(text, origin).0.tls.is_some()
    }
}

/// The `secret` source of the volume mounted (whole, read-only) at `dir` in container `c`.
fn secret_mounted_at<'a>(tree: &str, spec: &'a Value, c: &Value, dir: &str) -> &'a Value {
    let what = format!("{tree}: {}", c["name"]);
    let mount = c["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["mountPath"] == dir))
        .unwrap_or_else(|| panic!("{what}: nothing is mounted at {dir}, where [tls] reads its files"));
    assert_eq!(mount["readOnly"], true, "{what}: the TLS Secret is mounted read-only");
    assert!(
        mount.get("subPath").is_none(),
        "{what}: a subPath mount never sees a renewed Secret; mount the whole Secret"
    );
    let volume = spec["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
        .unwrap_or_else(|| panic!("{what}: no volume {}", mount["name"]));
    assert!(volume["secret"].is_object(), "{what}: {dir} is not a Secret volume");
    &volume["secret"]
}

/// Every workload's configuration turns TLS on and reads cert-manager's three keys from its
/// own Secret, mounted whole and read-only where the files are named, readable by the pod's
/// group only; all of them name one server_name.
#[test]
fn every_workload_mounts_its_tls_secret_where_its_config_reads_it() {
    for tree in TREES {
        let objects = rendered(tree);
        let mut server_names = Vec::new();
        for &(kind, name, container_name, volume, key) in TLS_WORKLOADS {
            let origin = format!("{tree}: {key}");
            let text = workload_config(objects, kind, name, volume, key);
            let section = tls_section(&text, &origin).unwrap_or_else(|| panic!("{origin}: no [tls] table"));
            assert!(tls_loads(&text, &origin, name == SCHEDULER), "{origin}: [tls] did not load");
            for (path, file) in
                [(&section.cert_file, "tls.crt"), (&section.key_file, "tls.key"), (&section.ca_file, "ca.crt")]
            {
                assert_eq!(
                    path,
                    &Path::new(TLS_DIR).join(file),
                    "{origin}: [tls] reads the Secret's key {file} where it is mounted"
                );
            }
            let w = find(objects, kind, name);
            let spec = pod_spec(w);
            let c = container(spec, "containers", container_name);
            let secret = secret_mounted_at(tree, spec, c, TLS_DIR);
            let wanted = TLS_SECRETS.iter().find(|(w, _)| *w == name).unwrap().1;
            assert_eq!(secret["secretName"], wanted, "{tree}: {name} mounts its own TLS Secret");
            assert_eq!(secret["defaultMode"], 0o440, "{tree}: {name}: TLS files 0440 (owner and fsGroup)");
            assert!(
                spec["securityContext"]["fsGroup"].is_u64(),
                "{tree}: {name}: an fsGroup, so that the unprivileged container can read the 0440 files"
            );
            server_names.push(section.server_name.unwrap_or_else(|| panic!("{origin}: [tls] has no server_name")));
        }
        server_names.dedup();
        assert_eq!(server_names.len(), 1, "{tree}: one server_name for the whole cluster: {server_names:?}");
    }
    // The base is also the way to deploy without cert-manager: it holds no cert-manager object.
    assert!(
        !rendered(TREES[0]).iter().any(|o| o["apiVersion"].as_str().is_some_and(|a| a.starts_with("cert-manager.io/"))),
        "{}: cert-manager objects belong in deploy/kubernetes/tls/cert-manager",
        TREES[0]
    );
}

/// "2160h", "1h30m", "90s" (Go durations, as cert-manager takes them) in seconds.
fn go_duration_s(d: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for ch in d.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let n: u64 = number.parse().unwrap_or_else(|_| panic!("duration {d:?}"));
        number.clear();
        total += n * match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("duration {d:?}: unit {ch:?}"),
        };
    }
    assert!(number.is_empty(), "duration {d:?} ends without a unit");
    total
}

/// Fails on a field cert-manager does not have (kubernetes-validate has no schema for its
/// kinds and only warns), so that a misspelt key is caught here and not by the API server.
fn only_known_fields(what: &str, v: &Value, known: &[&str]) {
    for k in v.as_object().unwrap_or_else(|| panic!("{what} is not a mapping")).keys() {
        assert!(known.contains(&k.as_str()), "{what}: {k:?} is not a cert-manager field");
    }
}

const CERTIFICATE_SPEC: &[&str] = &[
    "secretName",
    "commonName",
    "dnsNames",
    "ipAddresses",
    "uris",
    "emailAddresses",
    "usages",
    "duration",
    "renewBefore",
    "renewBeforePercentage",
    "privateKey",
    "issuerRef",
    "isCA",
    "subject",
    "literalSubject",
    "secretTemplate",
    "revisionHistoryLimit",
    "keystores",
    "encodeUsagesInRequest",
    "additionalOutputFormats",
    "nameConstraints",
    "otherNames",
];
const KEY_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The example overlay (on by default) gets every mounted TLS Secret from cert-manager: a
/// Certificate per Secret carrying the configurations' server_name, usable by servers and
/// clients, signed by the cluster CA (a CA Issuer whose CA a self-signed Issuer made).
#[test]
fn cert_manager_issues_every_mounted_tls_secret() {
    let tree = TREES[1];
    let objects = rendered(tree);
    let server_name = {
        let (kind, name, _, volume, key) = TLS_WORKLOADS[0];
        let text = workload_config(objects, kind, name, volume, key);
        tls_section(&text, key).unwrap().server_name.unwrap()
    };
    let of_kind = |kind: &str| -> Vec<&Value> {
        objects.iter().filter(|o| o["kind"] == kind && o["apiVersion"] == "cert-manager.io/v1").collect()
    };
    let certificates = of_kind("Certificate");
    let issuers = of_kind("Issuer");
    for o in certificates.iter().chain(&issuers) {
        assert_eq!(
            o["metadata"]["namespace"], "p2pimg",
            "{tree}: {} {} is in the pods' namespace",
            o["kind"], o["metadata"]["name"]
        );
    }
    for i in &issuers {
        let what = format!("{tree}: Issuer {}", i["metadata"]["name"]);
        only_known_fields(&what, &i["spec"], &["selfSigned", "ca", "acme", "vault", "venafi"]);
        if i["spec"]["ca"].is_object() {
            only_known_fields(
                &what,
                &i["spec"]["ca"],
                &["secretName", "crlDistributionPoints", "ocspServers", "issuingCertificateURL"],
            );
        }
    }
    let issuer = |c: &Value| -> &Value {
        let r = &c["spec"]["issuerRef"];
        assert_eq!(
            (r["kind"].as_str(), r["group"].as_str()),
            (Some("Issuer"), Some("cert-manager.io")),
            "{tree}: issuerRef of {}",
            c["metadata"]["name"]
        );
        issuers.iter().find(|i| i["metadata"]["name"] == r["name"]).unwrap_or_else(|| {
            panic!("{tree}: Certificate {} names Issuer {}, which is not rendered", c["metadata"]["name"], r["name"])
        })
    };
    for c in &certificates {
        let what = format!("{tree}: Certificate {}", c["metadata"]["name"]);
        let spec = &c["spec"];
        only_known_fields(&what, spec, CERTIFICATE_SPEC);
        only_known_fields(&what, &spec["issuerRef"], &["name", "kind", "group"]);
        let key = &spec["privateKey"];
        only_known_fields(&what, key, &["algorithm", "size", "encoding", "rotationPolicy"]);
        assert!(
            ["RSA", "ECDSA", "Ed25519"].contains(&key["algorithm"].as_str().unwrap()),
            "{what}: privateKey.algorithm"
        );
        if let Some(e) = key["encoding"].as_str() {
            assert!(["PKCS1", "PKCS8"].contains(&e), "{what}: privateKey.encoding");
        }
        for u in spec["usages"].as_array().into_iter().flatten() {
            assert!(KEY_USAGES.contains(&u.as_str().unwrap()), "{what}: usage {u} is not one cert-manager knows");
        }
        let (duration, renew) =
            (go_duration_s(spec["duration"].as_str().unwrap()), go_duration_s(spec["renewBefore"].as_str().unwrap()));
        assert!(renew < duration && renew >= duration / 10, "{what}: renewBefore well inside duration");
    }

    for &(workload, secret) in TLS_SECRETS {
        let hits: Vec<&&Value> = certificates.iter().filter(|c| c["spec"]["secretName"] == secret).collect();
        assert_eq!(hits.len(), 1, "{tree}: one Certificate writes Secret {secret}, which {workload} mounts");
        let c = hits[0];
        let what = format!("{tree}: Certificate {}", c["metadata"]["name"]);
        let spec = &c["spec"];
        assert!(
            spec["dnsNames"].as_array().unwrap().iter().any(|n| *n == server_name.as_str()),
            "{what}: dnsNames must carry tls.server_name {server_name:?} (checked instead of the dialed address)"
        );
        let usages: Vec<&str> = spec["usages"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
        for u in ["server auth", "client auth", "digital signature"] {
            assert!(usages.contains(&u), "{what}: usage {u:?} missing (every component is a TLS server and client)");
        }
        assert_ne!(spec["isCA"], true, "{what}: a component's certificate is no CA");
        assert_eq!(spec["privateKey"]["rotationPolicy"], "Always", "{what}: a renewal brings a new key");
        assert!(go_duration_s(spec["duration"].as_str().unwrap()) <= 366 * 24 * 3600, "{what}: at most a year");
        // Signed by the cluster CA: a CA Issuer over an isCA Certificate made by a self-signed Issuer.
        let ca_issuer = issuer(c);
        let ca_secret = ca_issuer["spec"]["ca"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: not issued by a CA Issuer"));
        let ca = certificates
            .iter()
            .find(|c| c["spec"]["secretName"] == ca_secret)
            .unwrap_or_else(|| panic!("{what}: no Certificate makes the CA Secret {ca_secret}"));
        assert_eq!(ca["spec"]["isCA"], true, "{tree}: the CA Certificate");
        assert_eq!(
            ca["spec"]["privateKey"]["rotationPolicy"], "Never",
            "{tree}: the CA keeps its key on renewal, so that certificates it signed before still chain to the new ca.crt"
        );
        assert!(issuer(ca)["spec"]["selfSigned"].is_object(), "{tree}: the CA is bootstrapped by a self-signed Issuer");
        assert!(
            go_duration_s(ca["spec"]["duration"].as_str().unwrap())
                > 2 * go_duration_s(spec["duration"].as_str().unwrap()),
            "{tree}: the CA outlives its certificates"
        );
        assert!(!TLS_SECRETS.iter().any(|(_, s)| *s == ca_secret), "{tree}: no pod mounts the CA's key");
    }
}

/// Standard base64 (the `data` of a Secret).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|c| *c != b'=').collect();
        let n = data.iter().enumerate().fold(0u32, |n, (i, c)| n | value(*c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..data.len()]);
    }
    out
}

fn make_secrets(args: &[&str], scratch: &Path) -> e2e::bounded_cmd::Finished {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("deploy/kubernetes/tls/make-secrets.sh")).args(args);
    e2e::bounded_cmd::run(cmd, scratch, std::time::Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
}

/// One TLS handshake on 127.0.0.1: `server` accepts on `listener`, `client` dials it checking
/// its own server_name. Says whether the server took the client.
fn handshake(server: &svc::tls::Tls, client: &svc::tls::Tls) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = async {
            let (tcp, from) = listener.accept().await.unwrap();
            server.accept(svc::tls::Listener::Data, tcp, from).await.is_some()
        };
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut stream = client.connect(tcp, "127.0.0.1").await?;
            // TLS 1.3: the server's verdict on the client's certificate arrives after the
            // client's handshake is done; a read sees it (an alert, or the server's close).
            use tokio::io::AsyncReadExt;
            let mut byte = [0u8; 1];
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), stream.read(&mut byte)).await;
            Ok::<_, std::io::Error>(())
        };
        let (accepted, connected) = tokio::join!(accept, connect);
        connected.map_err(|e| e.to_string())?;
        accepted.then_some(()).ok_or_else(|| "the server refused the client".to_string())
    })
}

/// deploy/kubernetes/tls/make-secrets.sh, run for real: it prints one Secret per mounted TLS
/// Secret with cert-manager's keys, the configurations load the files with the real parsers,
/// every component's certificate handshakes with every other's both ways (server_name and
/// both usages right), a stranger's certificate is refused, and a second run renews the
/// certificates under the same CA.
#[test]
fn make_secrets_sh_makes_secrets_every_component_loads() {
    if !Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("openssl is not installed: deploy/kubernetes/tls/make-secrets.sh not run (apt-get install openssl)");
        return;
    }
    let dir = temp_dir("make-secrets");
    let out = dir.join("out");
    let run = make_secrets(&["--out", out.to_str().unwrap()], &dir.join("first")).ok("make-secrets.sh").unwrap();
    let secrets = kustomize::parse_yaml_stream(&run.stdout, "make-secrets.sh's output").unwrap();
    let objects = rendered(TREES[0]);
    let names: Vec<&str> = secrets.iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, TLS_SECRETS.iter().map(|(_, s)| *s).collect::<Vec<_>>(), "the Secrets the workloads mount");

    let mut loaded = BTreeMap::new();
    for (secret, &(kind, name, _, volume, key)) in secrets.iter().zip(TLS_WORKLOADS) {
        let secret_name = secret["metadata"]["name"].as_str().unwrap();
        assert_eq!(secret["kind"], "Secret");
        assert_eq!(secret["type"], "kubernetes.io/tls", "{secret_name}: the type cert-manager's Secrets have");
        assert_eq!(
            secret["metadata"]["namespace"],
            find(objects, kind, name)["metadata"]["namespace"],
            "{secret_name}"
        );
        let mut keys: Vec<&str> = secret["data"].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"], "{secret_name}: cert-manager's keys");
        let mounted = dir.join(secret_name);
        std::fs::create_dir_all(&mounted).unwrap();
        for (k, v) in secret["data"].as_object().unwrap() {
            std::fs::write(mounted.join(k), base64_decode(v.as_str().unwrap())).unwrap();
        }
        // The workload's configuration, reading the files from where this Secret would be mounted.
        let origin = format!("{key} with {secret_name}");
        let text = with_test_grant_key(&workload_config(objects, kind, name, volume, key))
            .replace(TLS_DIR, mounted.to_str().unwrap());
        let tls = if name == SCHEDULER {
            sched::service::config::parse(&text, &origin).unwrap_or_else(|e| panic!("{e}")).tls
        } else {
            peer::daemon::config::parse(&text, &origin).unwrap_or_else(|e| panic!("{e}")).tls
        };
        loaded.insert(name, tls.unwrap_or_else(|| panic!("{origin}: no TLS")));
    }
    for (server, s) in &loaded {
        for (client, c) in &loaded {
            handshake(s, c).unwrap_or_else(|e| panic!("{client} -> {server}: {e}"));
        }
    }
    let mut stranger = svc::tls::test_certs::TestCa::new("stranger");
    let stranger_dir = dir.join("stranger");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let mut section = stranger.write(&stranger_dir, "x", &["p2pimg.p2pimg.svc"], Some("p2pimg.p2pimg.svc"));
    section.ca_file = dir.join("p2pimg-peer-tls/ca.crt"); // it trusts the cluster, the cluster not it
    let stranger = svc::tls::Tls::load(&section).unwrap();
    assert!(handshake(&loaded[SCHEDULER], &stranger).is_err(), "a certificate of another CA gets in");

    // Renewal: the same CA, new certificates.
    let ca_before = std::fs::read(out.join("ca.crt")).unwrap();
    let cert_before = std::fs::read(out.join("peer.crt")).unwrap();
    let again =
        make_secrets(&["--out", out.to_str().unwrap()], &dir.join("second")).ok("make-secrets.sh again").unwrap();
    assert!(again.stderr.contains("reusing the CA"), "{}", again.stderr);
    assert_eq!(std::fs::read(out.join("ca.crt")).unwrap(), ca_before, "a second run keeps the CA");
    assert_ne!(std::fs::read(out.join("peer.crt")).unwrap(), cert_before, "a second run renews the certificates");
    let bad = make_secrets(&["--out", out.to_str().unwrap(), "--server-name", "not a name"], &dir.join("bad"));
    assert_eq!(bad.code, Some(2), "a bad --server-name: {}", bad.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- bare metal: systemd ----

fn systemd_dir() -> PathBuf {
    repo_root().join("deploy/systemd")
}

const UNITS: &[(&str, &str)] =
    &[("p2pimg-scheduler.service", "scheduler"), ("p2pimg-peerd.service", "peerd"), ("p2pimg-seed.service", "peerd")];

#[test]
fn systemd_units_are_hardened_and_match_their_example_configs() {
    for (file, binary) in UNITS {
        let unit = Unit::load(&systemd_dir().join(file)).unwrap();
        let s = |key: &str| unit.require("Service", key).unwrap_or_else(|e| panic!("{e}")).to_string();
        for (key, want) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("Restart", "on-failure"),
            ("KillSignal", "SIGTERM"),
            ("RestartPreventExitStatus", "2"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(s(key), want, "{file}: {key}");
        }
        assert!(s("LimitNOFILE").parse::<u64>().unwrap() >= 65536, "{file}: LimitNOFILE");
        let exec: Vec<String> = s("ExecStart").split_whitespace().map(String::from).collect();
        assert_eq!(exec[0], format!("/usr/local/bin/{binary}"), "{file}: ExecStart");
        assert_eq!(exec[1], "--config");
        let example = systemd_dir().join(Path::new(&exec[2]).file_name().unwrap());
        let text = std::fs::read_to_string(&example)
            .unwrap_or_else(|e| panic!("{file}: example config {}: {e}", example.display()));
        let origin = example.display().to_string();
        let stop_ms = systemd_unit::timespan_ms(&s("TimeoutStopSec")).unwrap();
        if *binary == "scheduler" {
            let cfg = scheduler_config(&text, &origin);
            assert!(
                stop_ms > cfg.tuning.shutdown_grace.as_millis() as u64,
                "{file}: TimeoutStopSec must exceed shutdown_grace_ms"
            );
            assert!(unit.get("Service", "ReadWritePaths").is_none(), "{file}: the scheduler writes nowhere");
        } else {
            let (cfg, listen_mirror, registries) = peer_config(&text, &origin);
            let store = cfg.storage.dir.to_str().unwrap();
            assert_eq!(s("ReadWritePaths"), store, "{file}: ReadWritePaths = storage.dir of {origin}");
            assert_eq!(
                format!("/var/lib/{}", s("StateDirectory")),
                store,
                "{file}: StateDirectory creates storage.dir"
            );
            assert!(stop_ms >= 30_000, "{file}: TimeoutStopSec");
            assert!(!cfg.host.advertise_ip.is_loopback(), "{origin}: advertise_ip must be dialable by other machines");
            let seed = file.contains("seed");
            assert_eq!(cfg.host.kind == peer::daemon::HostKind::Seed, seed, "{origin}: host.kind");
            if !seed {
                assert_eq!(listen_mirror, Some("127.0.0.1:65001".parse().unwrap()), "{origin}: listen.mirror");
                assert!(!registries.is_empty(), "{origin}: mirrors no registry");
            }
        }
    }
    let sched_cfg =
        scheduler_config(&std::fs::read_to_string(systemd_dir().join("scheduler.toml")).unwrap(), "scheduler.toml");
    for f in ["peerd.toml", "seed.toml"] {
        let (cfg, _, _) = peer_config(&std::fs::read_to_string(systemd_dir().join(f)).unwrap(), f);
        assert!(cfg.scheduler.addresses.len() >= 2, "{f}: every scheduler replica");
        for a in &cfg.scheduler.addresses {
            assert!(
                a.ends_with(&format!(":{}", sched_cfg.grpc_addr.port())),
                "{f}: {a} is not the scheduler's gRPC port"
            );
        }
    }
}

/// The example's commented-out `[tls]` table with its `# ` taken off.
fn uncomment_tls(text: &str, origin: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    let mut found = false;
    for line in text.lines() {
        if line == "# [tls]" {
            in_table = true;
            found = true;
        } else if in_table && !line.strip_prefix("# ").is_some_and(|l| l.contains(" = ")) {
            in_table = false;
        }
        out.push_str(if in_table { &line[2..] } else { line });
        out.push('\n');
    }
    assert!(found, "{origin}: no commented-out [tls] example");
    out
}

/// The bare-metal examples carry `[tls]` commented out; taken in, it loads with the real
/// parsers, and with it the peers' https:// scheduler addresses.
#[test]
fn systemd_examples_turn_tls_on_by_uncommenting_it() {
    let text = uncomment_tls(&std::fs::read_to_string(systemd_dir().join("scheduler.toml")).unwrap(), "scheduler.toml");
    assert!(scheduler_config(&text, "scheduler.toml with [tls]").tls.is_some());
    for f in ["peerd.toml", "seed.toml"] {
        let text = uncomment_tls(&std::fs::read_to_string(systemd_dir().join(f)).unwrap(), f)
            .replace("\"http://", "\"https://");
        let (cfg, _, _) = peer_config(&text, &format!("{f} with [tls]"));
        assert!(cfg.tls.is_some(), "{f}");
        assert!(cfg.scheduler.addresses.iter().all(|a| a.starts_with("https://")));
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_unit::systemd_analyze() else {
        eprintln!("systemd-analyze is not installed: units checked by key only");
        return;
    };
    let dir = temp_dir("units");
    let units: Vec<PathBuf> = UNITS.iter().map(|(f, _)| systemd_dir().join(f)).collect();
    let stand_in = Path::new("/bin/true");
    systemd_unit::verify(&analyze, &units, &dir, stand_in).unwrap_or_else(|e| panic!("{e}"));
    // A misspelt key is caught (systemd only warns; `verify` makes it an error).
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let broken = bad.join("p2pimg-broken.service");
    std::fs::write(&broken, std::fs::read_to_string(&units[1]).unwrap().replace("NoNewPrivileges=", "NoNewPrivilege="))
        .unwrap();
    let out = dir.join("bad-out");
    std::fs::create_dir_all(&out).unwrap();
    let e = systemd_unit::verify(&analyze, &[broken], &out, stand_in).unwrap_err();
    assert!(e.contains("NoNewPrivilege"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
