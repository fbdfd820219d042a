//! Hand-built, plausible `RunResult`s for the report tests (no engine involved).
//!
//! The shapes follow what the engine produces for a rollout: `oci` saturates the
//! registry for pods x image / capacity seconds and every pod starts near the end;
//! `p2p` sends a few image copies in a short burst and pods start within seconds;
//! `p2p-lazy` sends less still and pods start sooner.

use crate::result::{ModeResult, PodRecord, RunResult, REGISTRY_BUCKET_NS};
use crate::scenario::Mode;

/// Registry capacity the fixtures assume (bytes per second, 10 Gbit/s).
pub const FAKE_REGISTRY_BPS: f64 = 1.25e9;

/// A small deterministic generator (splitmix64), so fixtures need no RNG crate.
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn series(duration_s: f64, total_bytes: u64, ramp_s: f64, rng: &mut Mix) -> Vec<u64> {
    let bucket_s = REGISTRY_BUCKET_NS as f64 / 1e9;
    let n = ((duration_s / bucket_s).ceil() as usize).max(1);
    // Trapezoid: ramp up, flat, ramp down; scaled to total_bytes.
    let shape: Vec<f64> = (0..n)
        .map(|i| {
            let t = (i as f64 + 0.5) * bucket_s;
            let up = (t / ramp_s).min(1.0);
            let down = ((duration_s - t) / ramp_s).min(1.0);
            up.min(down).max(0.05) * (0.97 + 0.06 * rng.next())
        })
        .collect();
    let sum: f64 = shape.iter().sum();
    let mut out: Vec<u64> = shape.iter().map(|s| (s / sum * total_bytes as f64) as u64).collect();
    let rest = total_bytes - out.iter().sum::<u64>();
    out[n - 1] += rest;
    out
}

/// One mode of a fake rollout of `pods` pods (one per node) of an `image_bytes` image.
pub fn fake_mode(mode: Mode, pods: u32, image_bytes: u64, seed: u64) -> ModeResult {
    let mut rng = Mix(seed ^ (mode as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
    let img = image_bytes as f64;
    let (registry_bytes, duration_s, ramp_s) = match mode {
        Mode::Oci => {
            let total = image_bytes * pods as u64;
            (total, total as f64 / FAKE_REGISTRY_BPS + 0.5, 1.0)
        }
        Mode::P2p => {
            let total = (img * 2.6) as u64;
            (total, 2.0 + img / 0.3e9, 0.3)
        }
        Mode::P2pLazy => {
            let total = (img * 1.3) as u64;
            (total, 3.0 + img / 0.2e9, 0.3)
        }
    };
    let pods_v = (0..pods)
        .map(|pod| {
            let scheduled_s = 0.01 + 0.02 * rng.next();
            let pull_start_s = scheduled_s + 0.005;
            let image_ready_s = match mode {
                Mode::Oci => duration_s * (0.92 + 0.08 * rng.next()),
                Mode::P2p => 1.0 + img / 0.75e9 * (1.0 + 0.4 * rng.next().powi(3)),
                Mode::P2pLazy => 0.4 + img * 0.06 / 0.5e9 * (1.0 + 0.6 * rng.next().powi(3)),
            };
            let unpack = match mode {
                Mode::P2pLazy => 0.1,
                _ => img / 300e6,
            };
            let unpacked_s = image_ready_s + unpack;
            let started_s = unpacked_s + 0.5;
            let pull_done_s = match mode {
                Mode::P2pLazy => started_s + img / 0.6e9,
                _ => image_ready_s,
            };
            let (from_registry, from_seed, from_peers) = match mode {
                Mode::Oci => (image_bytes, 0, 0),
                _ => {
                    let seed_share = (img * 0.1 * rng.next()) as u64;
                    (0, seed_share, image_bytes - seed_share)
                }
            };
            PodRecord {
                pod,
                node: pod,
                workload: 0,
                scheduled_s,
                pull_start_s,
                image_ready_s,
                pull_done_s,
                unpacked_s,
                started_s,
                bytes_from_registry: from_registry,
                bytes_from_seed_peers: from_seed,
                bytes_from_peers: from_peers,
                lost: false,
            }
        })
        .collect::<Vec<_>>();
    let makespan_s = pods_v.iter().map(|p| p.pull_done_s).fold(0.0, f64::max);
    let layers = 12u64;
    ModeResult {
        mode,
        pods: pods_v,
        registry_egress_bytes_per_bucket: series(duration_s, registry_bytes, ramp_s, &mut rng),
        registry_bytes,
        registry_requests: match mode {
            Mode::Oci => pods as u64 * (layers + 2),
            Mode::P2p => 3 * (layers + 2),
            Mode::P2pLazy => 3 * (layers + 2) + 40,
        },
        makespan_s,
        events: pods as u64 * 1000,
        scheduler_requests: pods as u64 * 30,
        scheduler_max_queue_delay_s: 0.002,
        scheduler_requests_lost: 0,
        back_to_source_orders: if mode == Mode::Oci { 0 } else { 3 * layers },
        busy_refusals: 0,
        piece_hops_mean: 2.0,
        piece_hops_max: 3,
        node_upload_used: 0.5,
        back_to_source_asks: 0,
        preheats: Vec::new(),
        churn: None,
        piece_trace: Vec::new(),
        wall_s: 0.1,
    }
}

/// A fake run of all three modes.
pub fn fake_run(name: &str, pods: u32, image_bytes: u64, seed: u64) -> RunResult {
    RunResult {
        config_toml: String::new(),
        node_groups: Vec::new(),
        workloads: Vec::new(),
        scenario: name.to_string(),
        seed,
        policy: "default".to_string(),
        image_bytes,
        lower_bound_s: image_bytes as f64 * 8.0 / 6e9 + 0.05,
        request_floor_s: image_bytes as f64 * 8.0 / 6e9 + 0.03,
        modes: Mode::ALL.iter().map(|&m| fake_mode(m, pods, image_bytes, seed)).collect(),
    }
}
