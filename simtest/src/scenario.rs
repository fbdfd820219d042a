//! Running one scenario on one seed: start the cluster, let the test inject its faults,
//! wait for the downloads, check the invariants, and on a violation panic with the seed
//! and the one command that replays it.

use crate::checks::{verify, DagWatch, Expect};
use crate::cluster::{Cluster, Ended, Spec};
use std::time::Duration;

/// Runs `f` on every seed of the environment (`MADSIM_TEST_SEED`, `MADSIM_TEST_NUM`,
/// `MADSIM_TEST_JOBS`...), as `#[madsim::test]` does, after installing the log subscriber
/// outside the simulation (installed inside, it would draw from the first run's generator
/// only). Logs carry the node name and virtual time (`RUST_LOG`).
///
/// Replays are exact for one seed per process (what tests/madsim.sh runs): tokio's
/// `sync::watch` and `select!` take a thread generator seeded from a process-wide counter
/// that madsim does not cover, so a seed run after others in the same process, or the
/// second run of `MADSIM_TEST_CHECK_DETERMINISM`, wakes tasks in another order.
pub fn run<F>(f: fn() -> F) -> F::Output
where
    F: std::future::Future + 'static,
    F::Output: Send,
{
    madsim::runtime::init_logger();
    madsim::runtime::Builder::from_env().run(f)
}

/// The command that replays `test` on `seed` alone.
pub fn replay_command(test: &str, seed: u64) -> String {
    format!("tests/madsim.sh replay {test} {seed}")
}

/// A few random indexes out of `0..n` (distinct), drawn from the run's generator.
pub fn pick(n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let mut out = Vec::new();
    while out.len() < k.min(n) {
        let i = (madsim::rand::random::<u64>() % all.len() as u64) as usize;
        out.push(all.swap_remove(i));
    }
    out.sort();
    out
}

/// A uniform random duration in [lo, hi).
pub fn between(lo: Duration, hi: Duration) -> Duration {
    let span = (hi - lo).as_nanos() as u64;
    lo + Duration::from_nanos(if span == 0 { 0 } else { madsim::rand::random::<u64>() % span })
}

/// Checks the run and panics with every violation, the seed and the replay command.
pub fn finish(test: &str, c: &Cluster, expect: &Expect, dag: &DagWatch) -> Summary {
    let bad = verify(c, expect, dag);
    let seed = madsim::runtime::Handle::current().seed();
    if !bad.is_empty() {
        panic!(
            "{test}: seed {seed}: {} violation(s):\n  {}\noutcomes: {:#?}\nreplay: {}",
            bad.len(),
            bad.join("\n  "),
            c.outcomes(),
            replay_command(test, seed)
        );
    }
    let s = Summary::of(c);
    eprintln!(
        "{test}: seed {seed}: ok; makespan {:.3} s virtual, {} done, {} failed, origin {} bytes, {} DAG checks, fingerprint {:016x}",
        s.makespan.as_secs_f64(),
        s.done,
        s.failed,
        s.origin_bytes,
        dag.checks,
        fingerprint(c)
    );
    s
}

#[derive(Debug, Clone)]
pub struct Summary {
    /// Latest end of a completed attempt.
    pub makespan: Duration,
    pub done: usize,
    pub failed: usize,
    pub origin_bytes: u64,
}

impl Summary {
    pub fn of(c: &Cluster) -> Summary {
        let mut s = Summary { makespan: Duration::ZERO, done: 0, failed: 0, origin_bytes: 0 };
        for attempts in c.outcomes().values() {
            match attempts.last().and_then(|a| a.ended.clone()) {
                Some((at, Ended::Done { .. })) => {
                    s.done += 1;
                    s.makespan = s.makespan.max(at);
                }
                Some((_, Ended::Failed(_))) => s.failed += 1,
                None => {}
            }
        }
        s.origin_bytes = c.origin.traffic(crate::cluster::BLOB_PATH).bytes_sent;
        s
    }
}

/// The small cluster most fault tests use: one scheduler, one seed, `peers` peers, 8 MiB
/// in 512 KiB pieces, 20 MB/s per peer, 40 MB/s at the origin.
pub fn small(name: &'static str, peers: usize) -> Spec {
    Spec {
        name,
        peers,
        content_bytes: 8 << 20,
        piece_bytes: 512 << 10,
        peer_rate: Some(20_000_000),
        origin_rate: Some(40_000_000),
        start_spread: Duration::from_millis(300),
        ..Spec::default()
    }
}

/// A hash of everything a run produced that depends on the schedule: every attempt's start
/// and end in virtual nanoseconds, its result and byte sources, and the origin's traffic per
/// client. Two runs of one seed must print the same (the runner's determinism check).
pub fn fingerprint(c: &Cluster) -> u64 {
    use std::hash::{Hash, Hasher};
    // FNV-1a through Hasher: no RandomState, so the same on every run and process.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100000001b3);
            }
        }
    }
    let mut h = Fnv(0xcbf29ce484222325);
    for (name, attempts) in c.outcomes() {
        name.hash(&mut h);
        for a in attempts {
            (a.started.as_nanos() as u64).hash(&mut h);
            if let Some((at, ended)) = a.ended {
                (at.as_nanos() as u64).hash(&mut h);
                format!("{ended:?}").hash(&mut h);
            }
        }
    }
    let t = c.origin.traffic(crate::cluster::BLOB_PATH);
    format!("{:?}", t).hash(&mut h);
    h.finish()
}
