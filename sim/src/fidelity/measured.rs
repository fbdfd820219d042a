//! What the emulated rollout measured: the `fanout_pod` and `fanout_result` lines
//! `bench/netns_fanout.sh` prints (`key=value` words), and the image `e2e-oci-push` pushed.

use crate::scenario::Mode;
use std::collections::BTreeMap;

/// One pod of one mode, as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredPod {
    pub pod: u32,
    /// Seconds from the moment every client was started until this one finished.
    pub secs: f64,
    /// The client exited 0 and every blob it holds hashes to its digest.
    pub ok: bool,
}

/// One mode's measurement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeasuredMode {
    pub pods: Vec<MeasuredPod>,
    /// Blob bytes the registry's access log shows sent.
    pub registry_bytes: u64,
    /// Bytes the seed peers uploaded (their own metric; p2p only).
    pub seed_upload_bytes: Option<u64>,
    pub image_bytes: u64,
    /// Share of the machine's CPU time that was busy during the mode.
    pub cpu_busy_pct: f64,
    /// How many runs the figures are the median of.
    pub runs: u32,
}

/// Every mode measured, by the scenario's mode name (`direct` is `oci`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measured {
    pub modes: BTreeMap<Mode, MeasuredMode>,
}

fn words(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace().skip(1).filter_map(|w| w.split_once('=')).collect()
}

fn mode_of(name: &str, line_no: usize) -> Result<Mode, String> {
    match name {
        "direct" => Ok(Mode::Oci),
        "p2p" => Ok(Mode::P2p),
        other => Err(format!("line {line_no}: mode={other:?}: expected direct or p2p")),
    }
}

fn num<T: std::str::FromStr>(w: &BTreeMap<&str, &str>, key: &str, line_no: usize) -> Result<T, String> {
    let v = w.get(key).ok_or_else(|| format!("line {line_no}: no {key}= field"))?;
    v.parse().map_err(|_| format!("line {line_no}: {key}={v}: not a number"))
}

fn mb_to_bytes(mb: f64) -> u64 {
    (mb * 1e6).round().max(0.0) as u64
}

/// One run of one mode: its pods, then its result line.
#[derive(Default)]
struct Run {
    pods: BTreeMap<u32, MeasuredPod>,
    result: Option<MeasuredMode>,
}

/// Parses the script's output (other lines are skipped). A file may hold several runs of a
/// mode (`bench/fidelity.sh` with `RUNS=N` appends them: each run's `fanout_pod` lines,
/// then its `fanout_result`): the mode is then their median, rank by rank. The k-th pod is
/// the median over the runs of each run's k-th pod to finish (so p50, p99 and the last pod
/// are each the median of that figure over the runs; `pod` numbers the ranks from 1), and
/// the bytes and CPU are medians too. A pod is `ok` only if every pod of every run was.
pub fn parse(text: &str) -> Result<Measured, String> {
    let mut runs: BTreeMap<Mode, Vec<Run>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with("fanout_pod ") {
            let w = words(line);
            let mode = mode_of(w.get("mode").copied().unwrap_or(""), line_no)?;
            let pod: u32 = num(&w, "pod", line_no)?;
            let secs: f64 = num(&w, "secs", line_no)?;
            let ok = w.get("status") == Some(&"ok") && w.get("verified") == Some(&"yes");
            let list = runs.entry(mode).or_default();
            if list.last().is_none_or(|r| r.result.is_some()) {
                list.push(Run::default());
            }
            list.last_mut().expect("pushed").pods.insert(pod, MeasuredPod { pod, secs, ok });
        } else if line.starts_with("fanout_result ") {
            let w = words(line);
            let mode = mode_of(w.get("mode").copied().unwrap_or(""), line_no)?;
            let result = MeasuredMode {
                pods: Vec::new(),
                registry_bytes: mb_to_bytes(num(&w, "registry_blob_MB", line_no)?),
                image_bytes: mb_to_bytes(num(&w, "image_MB", line_no)?),
                cpu_busy_pct: num(&w, "cpu_busy_pct", line_no)?,
                seed_upload_bytes: match w.get("seed_upload_MB") {
                    Some(_) => Some(mb_to_bytes(num(&w, "seed_upload_MB", line_no)?)),
                    None => None,
                },
                runs: 1,
            };
            let list = runs.entry(mode).or_default();
            match list.last_mut() {
                Some(r) if r.result.is_none() => r.result = Some(result),
                _ => {
                    return Err(format!(
                        "line {line_no}: mode {}: a fanout_result line but no fanout_pod lines before it",
                        mode.name()
                    ))
                }
            }
        }
    }
    let mut out = Measured::default();
    for (mode, list) in runs {
        if list.last().is_some_and(|r| r.result.is_none()) {
            return Err(format!("mode {}: fanout_pod lines but no fanout_result line after them", mode.name()));
        }
        let counts: Vec<usize> = list.iter().map(|r| r.pods.len()).collect();
        if counts.iter().any(|c| *c != counts[0]) {
            return Err(format!(
                "mode {}: its runs have different pod counts ({counts:?}); one scenario per file",
                mode.name()
            ));
        }
        out.modes.insert(mode, median_run(list));
    }
    if out.modes.is_empty() {
        return Err("no fanout_result line: is this the output of bench/netns_fanout.sh?".into());
    }
    Ok(out)
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_u64(v: Vec<u64>) -> u64 {
    median_f64(v.into_iter().map(|x| x as f64).collect()).round() as u64
}

fn median_run(list: Vec<Run>) -> MeasuredMode {
    let n = list.len();
    let mut results: Vec<MeasuredMode> = Vec::with_capacity(n);
    let mut ranked: Vec<Vec<MeasuredPod>> = Vec::with_capacity(n);
    for r in list {
        results.push(r.result.expect("checked"));
        let mut pods: Vec<MeasuredPod> = r.pods.into_values().collect();
        if n > 1 {
            pods.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        }
        ranked.push(pods);
    }
    if n == 1 {
        let mut m = results.pop().expect("one");
        m.pods = ranked.pop().expect("one");
        return m;
    }
    let all_ok = ranked.iter().flatten().all(|p| p.ok);
    let pods = (0..ranked[0].len())
        .map(|k| MeasuredPod {
            pod: k as u32 + 1,
            secs: median_f64(ranked.iter().map(|r| r[k].secs).collect()),
            ok: all_ok,
        })
        .collect();
    let seed = if results.iter().all(|r| r.seed_upload_bytes.is_some()) {
        Some(median_u64(results.iter().filter_map(|r| r.seed_upload_bytes).collect()))
    } else {
        None
    };
    MeasuredMode {
        pods,
        registry_bytes: median_u64(results.iter().map(|r| r.registry_bytes).collect()),
        seed_upload_bytes: seed,
        image_bytes: results[0].image_bytes,
        cpu_busy_pct: median_f64(results.iter().map(|r| r.cpu_busy_pct).collect()),
        runs: n as u32,
    }
}

/// Layer sizes (bytes) from `e2e-oci-push`'s JSON line: its `blobs` are the config, then
/// the layers, each `[digest, bytes]`.
pub fn pushed_layer_bytes(json: &str) -> Result<Vec<u64>, String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).map_err(|e| format!("not JSON: {e}"))?;
    let blobs = v.get("blobs").and_then(|b| b.as_array()).ok_or("no \"blobs\" array")?;
    let sizes: Option<Vec<u64>> = blobs.iter().map(|b| b.get(1).and_then(|n| n.as_u64())).collect();
    let sizes = sizes.ok_or("a blob without a byte count")?;
    match sizes.split_first() {
        Some((_config, layers)) if !layers.is_empty() => Ok(layers.to_vec()),
        _ => Err("no layer blobs".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "\
[12:00:00] log line
fanout_pod mode=direct client=skopeo pod=2 status=ok verified=yes secs=61.20 client_cpu_s=1.00
fanout_pod mode=direct client=skopeo pod=1 status=ok verified=yes secs=60.10 client_cpu_s=1.00
fanout_result mode=direct client=skopeo pods=2 ok=2 verified=2 wall_s=61.30 pod_first_s=60.10 pod_median_s=60.10 pod_last_s=61.20 image_MB=203.4 registry_blob_MB=406.7 registry_copies=2.000 registry_tx_MB=410.0 registry_manifest_requests=4 cpu_busy_pct=20 client_cpu_s=2.0 daemon_cpu_s=0.0 registry_cpu_s=1.0 pod_rate=100mbit reg_rate=200mbit
fanout_pod mode=p2p client=skopeo pod=1 status=FAILED secs=900.00 client_cpu_s=1.00
fanout_pod mode=p2p client=skopeo pod=2 status=ok verified=no(2/4) secs=20.00 client_cpu_s=1.00
fanout_result mode=p2p client=skopeo pods=2 ok=1 verified=0 wall_s=900 pod_first_s=20 pod_median_s=20 pod_last_s=20 image_MB=203.4 registry_blob_MB=203.4 registry_copies=1.000 registry_tx_MB=205.0 registry_manifest_requests=4 cpu_busy_pct=40 client_cpu_s=2.0 daemon_cpu_s=3.0 registry_cpu_s=1.0 pod_rate=100mbit reg_rate=200mbit pods_origin_MB=0.0 pods_parent_MB=406.8 seed_origin_MB=203.4 pods_upload_MB=200.0 seed_upload_MB=206.8
";

    #[test]
    fn both_modes_are_read_pods_in_order() {
        let m = parse(OUT).unwrap();
        let oci = &m.modes[&Mode::Oci];
        assert_eq!(
            oci.pods.iter().map(|p| (p.pod, p.secs, p.ok)).collect::<Vec<_>>(),
            [(1, 60.1, true), (2, 61.2, true)]
        );
        assert_eq!((oci.registry_bytes, oci.image_bytes, oci.seed_upload_bytes), (406_700_000, 203_400_000, None));
        let p2p = &m.modes[&Mode::P2p];
        assert_eq!(p2p.pods.iter().map(|p| p.ok).collect::<Vec<_>>(), [false, false], "failed, then unverified");
        assert_eq!(p2p.seed_upload_bytes, Some(206_800_000));
    }

    #[test]
    fn several_runs_give_their_median_rank_by_rank() {
        let run = |secs: [f64; 3], seed_mb: f64| {
            let mut t = String::new();
            for (i, s) in secs.iter().enumerate() {
                t += &format!("fanout_pod mode=p2p pod={} status=ok verified=yes secs={s}\n", i + 1);
            }
            t + &format!(
                "fanout_result mode=p2p image_MB=100 registry_blob_MB=100.0 cpu_busy_pct=50 seed_upload_MB={seed_mb}\n"
            )
        };
        // Three runs; pod numbers do not matter, ranks do.
        let text = run([10.0, 12.0, 11.0], 150.0) + &run([20.0, 9.0, 10.0], 170.0) + &run([10.5, 10.5, 30.0], 160.0);
        let m = &parse(&text).unwrap().modes[&Mode::P2p];
        assert_eq!(m.runs, 3);
        // Ranks per run: [10, 11, 12], [9, 10, 20], [10.5, 10.5, 30]; medians 10, 10.5, 20.
        assert_eq!(m.pods.iter().map(|p| (p.pod, p.secs)).collect::<Vec<_>>(), [(1, 10.0), (2, 10.5), (3, 20.0)]);
        assert_eq!(m.seed_upload_bytes, Some(160_000_000));
        // One run is read as it is, pods by number.
        let one = &parse(&run([10.0, 12.0, 11.0], 150.0)).unwrap().modes[&Mode::P2p];
        assert_eq!((one.runs, one.pods.iter().map(|p| p.secs).collect::<Vec<_>>()), (1, vec![10.0, 12.0, 11.0]));
        // Runs of different sizes are two scenarios in one file.
        let mixed = run([1.0, 2.0, 3.0], 1.0) + "fanout_pod mode=p2p pod=1 status=ok verified=yes secs=1\nfanout_result mode=p2p image_MB=1 registry_blob_MB=1 cpu_busy_pct=1\n";
        assert!(parse(&mixed).unwrap_err().contains("different pod counts"));
    }

    #[test]
    fn broken_input_names_the_line() {
        let e = parse("fanout_result mode=p2p image_MB=x registry_blob_MB=1 cpu_busy_pct=1\n").unwrap_err();
        assert_eq!(e, "line 1: image_MB=x: not a number");
        assert!(parse("nothing here\n").unwrap_err().contains("no fanout_result line"));
        assert!(parse("fanout_pod mode=sideways pod=1 secs=1\n").unwrap_err().contains("mode=\"sideways\""));
    }

    #[test]
    fn pushed_layers_skip_the_config() {
        let json = r#"{"blobs":[["sha256:c",626],["sha256:a",52327495],["sha256:b",67123553]],"manifest":"sha256:m"}"#;
        assert_eq!(pushed_layer_bytes(json).unwrap(), vec![52_327_495, 67_123_553]);
        assert!(pushed_layer_bytes("{}").unwrap_err().contains("blobs"));
    }
}
