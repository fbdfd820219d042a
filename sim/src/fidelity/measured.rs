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

/// Parses the script's output (other lines are skipped). Later lines of a mode replace
/// earlier ones, so a file with several runs keeps the last.
pub fn parse(text: &str) -> Result<Measured, String> {
    let mut pods: BTreeMap<Mode, BTreeMap<u32, MeasuredPod>> = BTreeMap::new();
    let mut out = Measured::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with("fanout_pod ") {
            let w = words(line);
            let mode = mode_of(w.get("mode").copied().unwrap_or(""), line_no)?;
            let pod: u32 = num(&w, "pod", line_no)?;
            let secs: f64 = num(&w, "secs", line_no)?;
            let ok = w.get("status") == Some(&"ok") && w.get("verified") == Some(&"yes");
            pods.entry(mode).or_default().insert(pod, MeasuredPod { pod, secs, ok });
        } else if line.starts_with("fanout_result ") {
            let w = words(line);
            let mode = mode_of(w.get("mode").copied().unwrap_or(""), line_no)?;
            let m = out.modes.entry(mode).or_default();
            m.registry_bytes = mb_to_bytes(num(&w, "registry_blob_MB", line_no)?);
            m.image_bytes = mb_to_bytes(num(&w, "image_MB", line_no)?);
            m.cpu_busy_pct = num(&w, "cpu_busy_pct", line_no)?;
            m.seed_upload_bytes = match w.get("seed_upload_MB") {
                Some(_) => Some(mb_to_bytes(num(&w, "seed_upload_MB", line_no)?)),
                None => None,
            };
        }
    }
    for (mode, by_pod) in pods {
        let Some(m) = out.modes.get_mut(&mode) else {
            return Err(format!("mode {}: fanout_pod lines but no fanout_result line", mode.name()));
        };
        m.pods = by_pod.into_values().collect();
    }
    if out.modes.is_empty() {
        return Err("no fanout_result line: is this the output of bench/netns_fanout.sh?".into());
    }
    for (mode, m) in &out.modes {
        if m.pods.is_empty() {
            return Err(format!("mode {}: a fanout_result line but no fanout_pod lines", mode.name()));
        }
    }
    Ok(out)
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
