//! Limits checked before a run allocates anything: a scenario whose counts or memory the
//! engine cannot hold is refused with the key, the limit and why, instead of growing until
//! the kernel kills the process (`pods = 4000000000` did, at 24 GiB).

use super::model::Scenario;
use super::validate::Invalid;
use peer::core::PeerConfig;

/// Pods of one rollout. The engine keeps a record per pod and per node; capacity planning
/// goes to 100,000 nodes, ten times that is the ceiling.
pub const PODS_MAX: u32 = 1_000_000;
/// Layers of one image (real images have tens).
pub const LAYERS_MAX: usize = 1_000;
/// Pieces of one blob: every download of it holds bitsets of this many bits.
pub const PIECES_PER_BLOB_MAX: u64 = 4_000_000;
/// Memory one download (a host's copy of one blob) costs the engine, with its share of the
/// scheduler's records and transfers: capacity-10k peaked at 0.65 GiB for 70,000 of them
/// at 384 pieces each (`sim/README.md`, Speed), so 10 KB, plus a byte per piece for its
/// bitsets.
const BYTES_PER_DOWNLOAD: u64 = 10_000;

/// The counts every run of the scenario allocates by, checked against the fixed limits.
pub(crate) fn check_counts(s: &Scenario, peer: &PeerConfig) -> Result<(), Invalid> {
    let fail = |key: &str, message: String| Err(Invalid { key: key.into(), message });
    // With node groups their total was checked against PODS_MAX before it was summed.
    if s.cluster.pods() > PODS_MAX {
        return fail(
            "cluster.pods",
            format!(
                "is {}; at most {PODS_MAX}: the simulator keeps a record per pod and node, and rollouts are sized for up to 100,000 nodes",
                s.cluster.pods()
            ),
        );
    }
    let layers: usize = s.images().iter().map(|i| i.layer_bytes.len()).sum();
    if layers > LAYERS_MAX {
        let key = if s.has_workloads() { "workload" } else { "image.layer_bytes" };
        return fail(key, format!("lists {layers} layers; at most {LAYERS_MAX} in all the images of a run"));
    }
    for (at, image) in image_keys(s) {
        for (i, &bytes) in image.layer_bytes.iter().enumerate() {
            let pieces = bytes.div_ceil(peer.piece_sizing.piece_bytes(bytes).max(1));
            if pieces > PIECES_PER_BLOB_MAX {
                return fail(
                    &format!("{at}.layer_bytes[{i}]"),
                    format!(
                        "cuts into {pieces} pieces with [peer] piece_sizing; at most {PIECES_PER_BLOB_MAX} per blob: set larger pieces"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Each image table with the dotted key it is written under.
fn image_keys(s: &Scenario) -> Vec<(String, &super::model::Image)> {
    match &s.image {
        Some(image) => vec![("image".to_string(), image)],
        None => s.workloads.iter().enumerate().map(|(i, w)| (format!("workload[{i}].image"), &w.image)).collect(),
    }
}

/// Bytes the run is expected to hold at its peak: every mode runs at once, each with a
/// download per host and blob.
pub(crate) fn estimated_bytes(s: &Scenario, peer: &PeerConfig) -> u64 {
    let hosts = u64::from(s.cluster.node_count()) + u64::from(s.cluster.seed_peers);
    // Every host counted with every image's blobs: an upper bound when workloads keep to
    // some groups or share layers.
    let images = s.images();
    let blobs = images.iter().flat_map(|i| std::iter::once(i.config_bytes).chain(i.layer_bytes.iter().copied()));
    let per_host: u64 = blobs
        .map(|b| BYTES_PER_DOWNLOAD + b.div_ceil(peer.piece_sizing.piece_bytes(b).max(1)))
        .fold(0u64, u64::saturating_add);
    hosts.saturating_mul(per_host).saturating_mul(s.modes.len() as u64)
}

/// What one mode of `s` is expected to hold at its peak (`estimated_bytes` over the modes):
/// `sim sweep` runs single modes of several grid points at once.
pub fn mode_bytes(s: &Scenario) -> u64 {
    let policy = sched::Policy::parse(&s.policy).unwrap_or(sched::Policy::Default);
    let peer = match super::cores::core_configs(s, policy) {
        Ok((_, peer)) => peer,
        Err(_) => PeerConfig::preset(policy),
    };
    estimated_bytes(s, &peer) / s.modes.len().max(1) as u64
}

/// The estimate against the memory this machine has available (`available_bytes`).
pub(crate) fn check_memory(s: &Scenario, peer: &PeerConfig, available_bytes: u64) -> Result<(), Invalid> {
    let need = estimated_bytes(s, peer);
    if need <= available_bytes {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(Invalid {
        key: if s.has_workloads() {
            "workload"
        } else if s.cluster.has_groups() {
            "cluster.node_groups"
        } else {
            "cluster.pods"
        }
        .into(),
        message: format!(
            "needs about {:.1} GiB ({} modes at once, ~10 KB per host and blob) but this machine has {:.1} GiB available: lower pods (or node groups' counts), or run fewer modes",
            gib(need),
            s.modes.len(),
            gib(available_bytes)
        ),
    })
}

thread_local! {
    static MACHINE_MEMORY_CHECKED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` (on this thread) with scenarios loaded without the check against this
/// machine's memory: `sim sweep --emit-job` plans a grid that runs on other machines, whose
/// pods ask for the estimate instead. The fixed limits still hold.
pub fn without_machine_memory_check<T>(f: impl FnOnce() -> T) -> T {
    let before = MACHINE_MEMORY_CHECKED.with(|c| c.replace(false));
    let out = f();
    MACHINE_MEMORY_CHECKED.with(|c| c.set(before));
    out
}

/// `MemAvailable`, for the check at load; None inside `without_machine_memory_check`.
pub(crate) fn memory_to_check() -> Option<u64> {
    if MACHINE_MEMORY_CHECKED.with(|c| c.get()) {
        machine_available_bytes()
    } else {
        None
    }
}

/// `MemAvailable` of /proc/meminfo; None where there is none (then only the fixed limits hold).
pub fn machine_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    fn scenario(pods: u64, modes: &str) -> String {
        format!("name = \"big\"\nmodes = {modes}\n[cluster]\npods = {pods}\n[image]\nreference = \"r\"\nlayer_bytes = [100_000_000, 200_000_000]\n")
    }

    #[test]
    fn the_machine_memory_check_can_be_left_to_other_machines() {
        // About 90 GB for three modes at once: more than the machines tests run on.
        let text = scenario(PODS_MAX.into(), "[\"oci\", \"p2p\", \"p2p-lazy\"]");
        if let Some(available) = machine_available_bytes() {
            if available < 80 << 30 {
                let e = parse_scenario(&text, "big.toml").unwrap_err().to_string();
                assert!(e.contains("GiB available"), "{e}");
            }
        }
        assert!(without_machine_memory_check(|| parse_scenario(&text, "big.toml")).is_ok());
        assert!(MACHINE_MEMORY_CHECKED.with(|c| c.get()));
    }

    #[test]
    fn four_billion_pods_are_refused_with_the_key_and_the_limit() {
        let e = parse_scenario(&scenario(4_000_000_000, "[\"p2p\"]"), "big.toml").unwrap_err().to_string();
        assert!(e.starts_with("big.toml:4: cluster.pods: is 4000000000; at most 1000000"), "{e}");
    }

    #[test]
    fn the_memory_estimate_follows_hosts_blobs_and_modes() {
        let sc = parse_scenario(&scenario(10_000, "[\"p2p\"]"), "big.toml").unwrap();
        let peer = PeerConfig::preset(sched::Policy::Default);
        let one = estimated_bytes(&sc, &peer);
        // 10,003 hosts x 3 blobs x ~10 KB.
        assert!((290_000_000..320_000_000).contains(&one), "{one}");
        let three = parse_scenario(&scenario(10_000, "[\"oci\", \"p2p\", \"p2p-lazy\"]"), "big.toml").unwrap();
        assert_eq!(estimated_bytes(&three, &peer), 3 * one);
        assert!(check_memory(&sc, &peer, 1 << 30).is_ok());
        let e = check_memory(&sc, &peer, 100 << 20).unwrap_err();
        assert_eq!(e.key, "cluster.pods");
        assert!(e.message.contains("GiB available"), "{}", e.message);
    }
}
