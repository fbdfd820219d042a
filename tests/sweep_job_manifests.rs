//! `sim sweep --emit-job`: the Indexed Job, its ConfigMap, the results claim and the copy
//! pod, as written for a real scenario, against the Kubernetes schema (the validator
//! `deploy_manifests` uses; here its absence fails the test: these manifests have no other
//! schema check) and read back with a YAML parser: what the pods run is the plan written.

use serde_json::Value;
use sim::scenario::ScenarioFile;
use sim::sweep::job::{job_files, write_job_files, JobOptions, PVC_DEFAULT};
use sim::sweep::plan_file::JobPlan;
use sim::sweep::{Overrides, Sweep, Target, Vary};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `python3 -m kubernetes_validate --strict --quiet`, as `deploy_manifests` runs it.
fn schema_validator() -> Command {
    let ok = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "kubernetes-validate is not installed: run tests/setup.sh (pip install kubernetes-validate)");
    let mut c = Command::new("python3");
    c.args(["-m", "kubernetes_validate", "--strict", "--quiet"]);
    c
}

/// DIR as `sim sweep scenarios/fidelity/small-4.toml --vary ... --target ... --emit-job DIR`
/// writes it (the functions the command calls).
fn emit(dir: &Path) -> JobPlan {
    let root = e2e::kustomize::repo_root();
    let path = root.join("scenarios/fidelity/small-4.toml");
    let file = ScenarioFile::read(&path).unwrap();
    let varies =
        [Vary::parse("cluster.seed_peers=1..3:3").unwrap(), Vary::parse("registry.egress_gbps=0.2..0.8:3g").unwrap()];
    let over = Overrides { seed: Some(2), policy: None };
    let sweep = Sweep::plan(&file, &varies, &over).unwrap();
    let target = Target::parse("p2p.startup_p99_s<=30").unwrap();
    let plan = JobPlan::new(&file, &varies, &over, Some(&target), sweep.points.len());
    let opts = JobOptions { image: JobOptions::default_image(), parallelism: Some(4), pvc: PVC_DEFAULT.into() };
    let files = job_files(&plan, &sweep, &opts).unwrap();
    write_job_files(dir, &files).unwrap();
    plan
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_norway::from_str(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pimg-sweep-job-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn emitted_job_pvc_and_copy_pod_pass_the_kubernetes_schema_validator() {
    let dir = temp_dir("schema");
    emit(&dir);
    for f in ["job.yaml", "pvc.yaml", "copy-pod.yaml"] {
        let out = schema_validator().arg(dir.join(f)).output().unwrap();
        assert!(
            out.status.success(),
            "{f} fails the Kubernetes schema:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator rejects a broken Job (so a pass above means something).
    let bad = dir.join("bad.yaml");
    let mut job = documents(&dir.join("job.yaml"))[1].clone();
    job["spec"]["completions"] = Value::String("nine".into());
    std::fs::write(&bad, serde_norway::to_string(&job).unwrap()).unwrap();
    assert!(!schema_validator().arg(&bad).output().unwrap().status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_job_runs_every_index_of_the_plan_it_carries() {
    let dir = temp_dir("read");
    let plan = emit(&dir);
    let docs = documents(&dir.join("job.yaml"));
    let [cm, job] = docs.as_slice() else { panic!("job.yaml holds the ConfigMap and the Job") };
    assert_eq!((cm["kind"].as_str(), job["kind"].as_str()), (Some("ConfigMap"), Some("Job")));
    // The plan as the pods read it, through YAML, is the plan's file byte for byte.
    let carried = cm["data"]["plan.json"].as_str().unwrap();
    assert_eq!(carried, std::fs::read_to_string(dir.join("plan.json")).unwrap());
    assert_eq!(JobPlan::parse(Path::new("plan.json"), carried).unwrap(), plan);
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"].as_u64(), Some(9));
    assert_eq!(spec["parallelism"].as_u64(), Some(4));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let cmd: Vec<&str> = c["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let name = job["metadata"]["name"].as_str().unwrap();
    assert_eq!(cmd, ["sim", "sweep-point", "/plan/plan.json", "--out", &format!("/results/{name}")]);
    let mounts = c["volumeMounts"].as_array().unwrap();
    let volume = |n: &str| pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == n).unwrap().clone();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/plan" && m["readOnly"] == true && m["name"] == "plan"));
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == "/results" && m["name"] == "results" && m.get("readOnly").is_none()));
    assert_eq!(volume("plan")["configMap"]["name"], cm["metadata"]["name"]);
    assert_eq!(volume("results")["persistentVolumeClaim"]["claimName"], PVC_DEFAULT);
    let pvc = &documents(&dir.join("pvc.yaml"))[0];
    assert_eq!(pvc["metadata"]["name"], PVC_DEFAULT);
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteMany");
    let copy = &documents(&dir.join("copy-pod.yaml"))[0];
    assert_eq!(copy["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], PVC_DEFAULT);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains(&format!("kubectl cp {PVC_DEFAULT}-copy:/results/{name} ./results")), "{readme}");
    let _ = std::fs::remove_dir_all(&dir);
}
