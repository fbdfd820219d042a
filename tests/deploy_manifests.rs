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

/// `text` with the grant key path pointing at a temporary 32-byte key, so that the parsers
/// (which read the key file at load) can check the rest.
fn with_test_grant_key(text: &str) -> String {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = temp_dir(&format!("grant-key-{}", CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let key = dir.join("grant.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    text.replace(GRANT_KEY_PATH, key.to_str().unwrap())
}

/// A Kubernetes scheduler configuration: grants on, the key from the mounted Secret.
fn k8s_scheduler_config(text: &str, origin: &str) -> sched::service::ServiceConfig {
    assert!(text.contains(GRANT_KEY_PATH), "{origin}: [service] grant_key_file is not {GRANT_KEY_PATH}");
    scheduler_config(text, origin)
}

/// A scheduler configuration (systemd's turn grants on by hand: deploy/README.md).
fn scheduler_config(text: &str, origin: &str) -> sched::service::ServiceConfig {
    sched::service::config::parse(&with_test_grant_key(text), origin).unwrap_or_else(|e| panic!("{e}"))
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
    let cfg = peer::daemon::config::parse(&with_test_grant_key(text), origin).unwrap_or_else(|e| panic!("{e}"));
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
    let Some(_) = schema_validator() else {
        eprintln!("kubernetes-validate is not installed (tests/setup.sh installs it): schema check skipped");
        return;
    };
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
        let expected: Vec<String> = (0..replicas)
            .map(|i| format!("http://{SCHEDULER}-{i}.{svc}.{ns}.svc.cluster.local:{}", sched_cfg.grpc_addr.port()))
            .collect();
        for (kind, name, key) in [("StatefulSet", SEED, "seed.toml"), ("DaemonSet", PEER, "peerd.toml")] {
            let text = config_text(objects, pod_spec(find(objects, kind, name)), "config-template", key);
            let (cfg, _, _) = peer_config(&with_pod_ip(&text), &format!("{tree}: {key}"));
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
