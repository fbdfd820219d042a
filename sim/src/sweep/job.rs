//! `sim sweep ... --emit-job DIR`: a sweep as a Kubernetes Indexed Job, one grid point per
//! completion index, for grids larger than one machine.
//!
//! DIR gets `plan.json` (`plan_file`), `job.yaml` (a ConfigMap holding the plan, and the Job
//! whose pods run `sim sweep-point` and write `point-<index>.json` to a claimed volume),
//! `pvc.yaml` (that claim, ReadWriteMany, created once and kept across sweeps),
//! `copy-pod.yaml` (a pod mounting the claim, to `kubectl cp` the results back) and
//! `README.md` (the commands). The same plan gives the same bytes.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::plan_file::{self, JobPlan};
use super::yaml::to_yaml;
use super::Sweep;
use crate::scenario::mode_bytes;

/// Pods running at once unless `--parallelism` says otherwise (or fewer points).
pub const PARALLELISM_DEFAULT: usize = 16;
/// The claim `--pvc` names unless told.
pub const PVC_DEFAULT: &str = "sim-sweep-results";
/// The claim's size: a point file is about a kilobyte per mode.
pub const PVC_SIZE: &str = "1Gi";
/// Retries of one index before it counts as failed (the others go on).
pub const BACKOFF_PER_INDEX: u32 = 2;
/// Memory of the process beside its runs' estimate (`mode_bytes`).
const BASE_MEMORY_MIB: u64 = 128;
/// Job names stay short enough for `<name>-<index>` pod host names (63 characters).
const NAME_MAX: usize = 50;
/// A ConfigMap holds at most 1 MiB.
const CONFIGMAP_MAX_BYTES: usize = 1 << 20;
/// Image of the copy pod: it needs `tar` for `kubectl cp`.
const COPY_IMAGE: &str = "busybox:1.36";
/// The non-root user the pods run as.
const UID: u64 = 65532;

/// What `--emit-job` was told.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOptions {
    pub image: String,
    /// None: min(points, `PARALLELISM_DEFAULT`).
    pub parallelism: Option<usize>,
    pub pvc: String,
}

impl JobOptions {
    /// The image of this sim's version: build and push it as sim/README.md says.
    pub fn default_image() -> String {
        format!("p2pimg/sim:{}", env!("CARGO_PKG_VERSION"))
    }
}

/// The files of DIR, by name, in writing order.
pub struct JobFiles {
    pub name: String,
    pub files: Vec<(&'static str, String)>,
}

/// The Job's name: `sim-sweep-<scenario>-<plan hash>`, a DNS label.
pub fn job_name(plan: &JobPlan, scenario: &str) -> String {
    let mut slug = String::new();
    for c in scenario.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (slug.is_empty() || slug.ends_with('-'))) {
            slug.push(c);
        }
    }
    let hash = &plan.hash()[..8];
    let room = NAME_MAX - "sim-sweep-".len() - 1 - hash.len();
    let slug: String = slug.chars().take(room).collect();
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("sim-sweep-{hash}")
    } else {
        format!("sim-sweep-{slug}-{hash}")
    }
}

/// The memory one pod asks for: its largest mode run (points run their modes one at a
/// time) and the process, in MiB.
pub fn memory_mib(sweep: &Sweep) -> u64 {
    let most = sweep.points.iter().map(mode_bytes).max().unwrap_or(0);
    most.div_ceil(1 << 20) + BASE_MEMORY_MIB
}

/// Checks a claim name: a DNS subdomain name, as Kubernetes requires.
pub fn check_pvc_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("--pvc {name:?}: a claim name is lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"))
    }
}

/// Everything DIR gets for `plan` (planned as `sweep`).
pub fn job_files(plan: &JobPlan, sweep: &Sweep, opts: &JobOptions) -> Result<JobFiles, String> {
    check_pvc_name(&opts.pvc)?;
    let plan_json = plan.to_json();
    if plan_json.len() > CONFIGMAP_MAX_BYTES - 4096 {
        return Err(format!(
            "{}: the plan is {} bytes with the scenario file; a ConfigMap holds at most 1 MiB",
            plan.scenario_path,
            plan_json.len()
        ));
    }
    let name = job_name(plan, &sweep.base.name);
    let points = sweep.points.len();
    let parallelism = opts.parallelism.unwrap_or(PARALLELISM_DEFAULT).min(points).max(1);
    let results = format!("/results/{name}");
    let labels = json!({
        "app.kubernetes.io/name": "sim-sweep",
        "app.kubernetes.io/instance": name,
    });
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {plan_file::FILE_NAME: plan_json},
    });
    let memory = memory_mib(sweep);
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": points,
            "parallelism": parallelism,
            "backoffLimitPerIndex": BACKOFF_PER_INDEX,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "sim",
                        "image": opts.image,
                        // The index comes from JOB_COMPLETION_INDEX, which Kubernetes sets
                        // in every pod of an Indexed Job.
                        "command": ["sim", "sweep-point", format!("/plan/{}", plan_file::FILE_NAME), "--out", results],
                        "resources": {
                            "requests": {"cpu": "1", "memory": format!("{memory}Mi")},
                            "limits": {"memory": format!("{}Mi", memory * 2)},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "plan", "mountPath": "/plan", "readOnly": true},
                            {"name": "results", "mountPath": "/results"},
                        ],
                    }],
                    "volumes": [
                        {"name": "plan", "configMap": {"name": name}},
                        {"name": "results", "persistentVolumeClaim": {"claimName": opts.pvc}},
                    ],
                },
            },
        },
    });
    let pvc = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": opts.pvc, "labels": {"app.kubernetes.io/name": "sim-sweep"}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": PVC_SIZE}}},
    });
    let copy_pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("{}-copy", opts.pvc), "labels": {"app.kubernetes.io/name": "sim-sweep"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": UID,
                "runAsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "copy",
                "image": COPY_IMAGE,
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "results", "mountPath": "/results", "readOnly": true}],
            }],
            "volumes": [{"name": "results", "persistentVolumeClaim": {"claimName": opts.pvc}}],
        },
    });
    let job_yaml = format!("---\n{}---\n{}", to_yaml(&config_map), to_yaml(&job));
    let readme = readme(&name, points, parallelism, memory, opts);
    Ok(JobFiles {
        name,
        files: vec![
            (plan_file::FILE_NAME, plan_json),
            ("job.yaml", job_yaml),
            ("pvc.yaml", format!("---\n{}", to_yaml(&pvc))),
            ("copy-pod.yaml", format!("---\n{}", to_yaml(&copy_pod))),
            ("README.md", readme),
        ],
    })
}

/// Writes `files` into `dir` (created if missing); the paths written.
pub fn write_job_files(dir: &Path, files: &JobFiles) -> Result<Vec<PathBuf>, String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!("--emit-job {}: exists and is not a directory; give a directory", dir.display()));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("--emit-job {}: cannot create the directory: {e}; give a writable one", dir.display()))?;
    files
        .files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("{}: cannot write: {e}; give a writable --emit-job directory", path.display()))?;
            Ok(path)
        })
        .collect()
}

fn readme(name: &str, points: usize, parallelism: usize, memory: u64, opts: &JobOptions) -> String {
    let pvc = &opts.pvc;
    format!(
        "# Sweep Job {name}

{points} grid points, one per completion index of an Indexed Job (Kubernetes 1.29 or later:
`backoffLimitPerIndex`); {parallelism} pods at once, each asking for 1 CPU and {memory} MiB
(the largest point's run and the process). Each pod runs

    sim sweep-point /plan/plan.json --out /results/{name}

which rebuilds the grid from the plan, runs the point of its `JOB_COMPLETION_INDEX` and
writes `point-<index>.json` (and a copy of `plan.json`) to the claim `{pvc}`. An index is
retried {BACKOFF_PER_INDEX} times before it counts as failed; the others go on. The pods run
as user and group {UID}: the claim must be writable by them (`fsGroup` sees to it for most
volume types; an NFS-backed class needs its export owned or writable by that group).

The image `{image}` must hold this sim's binary as `sim` on its PATH, the version that wrote
this directory (`sim sweep-point` refuses a plan from another).

```sh
kubectl apply -f pvc.yaml            # once: the results volume (ReadWriteMany, {PVC_SIZE})
kubectl apply -f job.yaml            # the plan's ConfigMap and the Job
kubectl wait --for=condition=complete --timeout=24h job/{name}
kubectl get job {name} -o jsonpath='{{.status.failedIndexes}}'   # empty when every index succeeded

kubectl apply -f copy-pod.yaml       # a pod mounting the claim, to copy from
kubectl wait --for=condition=Ready pod/{pvc}-copy
kubectl cp {pvc}-copy:/results/{name} ./results
kubectl delete -f copy-pod.yaml

sim sweep --collect ./results --out reports
```

A Job with a failed index ends `Failed` instead of `Complete` (the wait above then runs to its
timeout: `kubectl get job {name}` shows it). `sim sweep --collect` checks every point belongs
to this plan and refuses, listing them, while any index has no result; it writes
`reports/<scenario>/sweep/` as a local `sim sweep` of the same grid does (`sweep.csv`,
`sweep.md`, the charts, `index.html`). To run missing indexes again, delete the Job
(`kubectl delete job {name}`) and apply `job.yaml` again: points already written are run
again and give the same bytes.
",
        image = opts.image,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioFile;
    use crate::sweep::{Overrides, Vary};

    const TINY: &str = "name = \"Tiny_Sweep\"\nseed = 5\n[cluster]\npods = 6\n[image]\nreference = \"t/tiny:1\"\nlayer_bytes = [2_000_000, 10_000_000]\n";

    fn files(opts: &JobOptions) -> Result<JobFiles, String> {
        let file = ScenarioFile::from_text(Path::new("tiny.toml"), TINY);
        let varies = [Vary::parse("cluster.seed_peers=1..3:3").unwrap()];
        let sweep = Sweep::plan(&file, &varies, &Overrides::default()).unwrap();
        let plan = JobPlan::new(&file, &varies, &Overrides::default(), None, sweep.points.len());
        job_files(&plan, &sweep, opts)
    }

    #[test]
    fn the_job_runs_one_index_per_point() {
        let opts = JobOptions { image: "r/sim:1".into(), parallelism: None, pvc: PVC_DEFAULT.into() };
        let f = files(&opts).unwrap();
        assert!(
            f.name.starts_with("sim-sweep-tiny-sweep-") && f.name.len() == "sim-sweep-tiny-sweep-".len() + 8,
            "{}",
            f.name
        );
        let job = &f.files[1].1;
        for line in ["completionMode: \"Indexed\"", "completions: 3", "parallelism: 3", "backoffLimitPerIndex: 2"] {
            assert!(job.contains(line), "{line} in\n{job}");
        }
        assert!(job.contains("claimName: \"sim-sweep-results\""), "{job}");
        assert!(job.contains("  plan.json: |\n    {\n"), "{job}");
        // Deterministic: the same plan, the same bytes.
        assert_eq!(files(&opts).unwrap().files, f.files);
        let bad = JobOptions { pvc: "Bad_Name".into(), ..opts };
        assert!(files(&bad).err().unwrap().contains("--pvc \"Bad_Name\""));
    }

    #[test]
    fn names_are_dns_labels() {
        let file = ScenarioFile::from_text(Path::new("t.toml"), TINY);
        let plan = JobPlan::new(&file, &[], &Overrides::default(), None, 1);
        let long = job_name(&plan, &"X".repeat(80));
        assert!(long.len() <= NAME_MAX && long.starts_with("sim-sweep-xxx"), "{long}");
        assert_eq!(job_name(&plan, "__"), format!("sim-sweep-{}", &plan.hash()[..8]));
    }
}
