//! The swarm benchmark (`e2e-swarm-bench`): one seed and N peers share one file on loopback,
//! our scheduler + peerd + dfget against aria2 BitTorrent, in the same run. See
//! bench/README.md.

pub mod bittorrent;
pub mod cpu;
pub mod ours;

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every run of both systems shares.
pub struct Swarm {
    pub work: PathBuf,
    pub peers: u32,
    pub size_bytes: u64,
    /// Our piece size.
    pub piece_bytes: u64,
    /// BitTorrent pieces are 2^this bytes.
    pub bt_piece_log2: u32,
    /// Appended to every peer's configuration (more TOML tables).
    pub peer_extra_toml: String,
    pub url: String,
    /// `sha256:<hex>` of the payload.
    pub digest: String,
    /// Bound of every wait (warming, the timed part, the seeder's check).
    pub timeout: Duration,
}

/// One timed run of one system.
pub struct RunResult {
    /// Per peer: from the common start to its completion.
    pub times: Vec<Duration>,
    /// Peers that reported success.
    pub ok: usize,
    /// Outputs whose sha256 matched, checked after the clock stopped.
    pub verified: usize,
    /// user + system seconds of that system's processes during the timed part.
    pub cpu_s: f64,
    /// The whole machine's busy share during the timed part (others' work included).
    pub busy_pct: f64,
    /// 1-minute load average at the start.
    pub load1: f64,
    pub note: String,
    pub failures: Vec<String>,
}

impl RunResult {
    /// From the start until the last peer completed.
    pub fn all_done_s(&self) -> f64 {
        self.times.iter().map(Duration::as_secs_f64).fold(0.0, f64::max)
    }

    pub fn complete(&self, peers: u32) -> bool {
        self.ok == peers as usize && self.verified == peers as usize
    }
}

/// Whether the file at `path` has the sha256 `digest` (`sha256:<hex>`).
pub fn verify_file(path: &Path, digest: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    digest == format!("sha256:{hex}")
}

/// The median of `values` (the upper one of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_file_check() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        let dir = std::env::temp_dir().join(format!("swarm-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        let abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(verify_file(&f, abc));
        std::fs::write(&f, b"abd").unwrap();
        assert!(!verify_file(&f, abc));
        assert!(!verify_file(&dir.join("missing"), abc));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
