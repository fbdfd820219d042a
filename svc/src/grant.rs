//! Data-plane grants: the scheduler's permission for one child host to read one task from
//! its parents, so that a peer's data port serves only the peers the scheduler sent there.
//!
//! A grant is `expires_unix_s` and `HMAC-SHA256(key, "p2pimg-grant-v1" || task (32 bytes)
//! || host id || expires_unix_s (u64 BE))`, keyed by the cluster key both the scheduler and
//! every peer read from the same file (`grant_key_file`). The scheduler mints it
//! (`GrantKey::mint`) with each Parents message; a parent checks it (`GrantKey::verify`).
//! It lives here because both sides must compute the MAC over exactly the same bytes.
//!
//! A grant is a bearer token for one task until it expires: whoever holds it (and can
//! reach a parent) reads that task. The host id is bound so a grant names whom it was
//! issued to; parents do not check the connection's source address against it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Domain separation: a MAC made with the cluster key for anything else never checks out
/// as a grant, and a later grant format gets a new label.
pub const GRANT_CONTEXT: &[u8] = b"p2pimg-grant-v1";
/// A key shorter than the MAC's output weakens it; 32 random bytes is HMAC-SHA256's size.
pub const MIN_KEY_BYTES: usize = 32;
/// A key file larger than this is not a key (a certificate, a wrong path): refused.
pub const MAX_KEY_BYTES: usize = 4096;
pub const MAC_BYTES: usize = 32;
/// Longest host id a grant names (the scheduler refuses longer host ids, api/scheduler.proto).
pub const MAX_HOST_ID_BYTES: usize = 256;

type HmacSha256 = Hmac<Sha256>;

/// The cluster key, read from a file. `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantKey {
    bytes: Vec<u8>,
    path: PathBuf,
    /// Permission bits of the file when it was read.
    mode: u32,
}

impl fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantKey({} bytes from {})", self.bytes.len(), self.path.display())
    }
}

/// A key file that cannot be used; each says what would fix it.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the grant key file {}: {source}; create it with `head -c 32 /dev/urandom > FILE` and give this process read access", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("the grant key file {} holds {bytes} bytes; it needs at least {MIN_KEY_BYTES} random bytes (`head -c 32 /dev/urandom > FILE`)", path.display())]
    TooShort { path: PathBuf, bytes: usize },
    #[error("the grant key file {} holds {bytes} bytes, more than {MAX_KEY_BYTES}: is it the key? write {MIN_KEY_BYTES} random bytes", path.display())]
    TooLong { path: PathBuf, bytes: usize },
}

/// One task opened for one host until `expires_unix_s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub task: [u8; 32],
    pub host_id: String,
    pub expires_unix_s: u64,
    pub mac: [u8; MAC_BYTES],
}

/// Why a grant does not open a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// Minted with another key, or any field changed since (task, host id, expiry).
    #[error("the grant's MAC does not check out (another cluster key, or an altered grant)")]
    BadMac,
    #[error("the grant is for another task")]
    WrongTask,
    #[error("the grant expired at unix second {expires_unix_s} (now {now_unix_s}); the scheduler sends a fresh one with the next Parents")]
    Expired { expires_unix_s: u64, now_unix_s: u64 },
}

impl GrantKey {
    /// Reads the key: the file's bytes as they are (no trimming), so every reader of the
    /// same file has the same key. A world-readable file is accepted with a warning
    /// (`permission_warning`), not refused: Kubernetes mounts Secrets 0644 unless told
    /// otherwise, and refusing would stop every pod of a cluster at once. Group bits are
    /// not warned about: a Secret volume with `fsGroup` is group-readable by design.
    pub fn load(path: &Path) -> Result<GrantKey, KeyFileError> {
        let unreadable = |source| KeyFileError::Unreadable { path: path.to_path_buf(), source };
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let mode = std::fs::metadata(path).map_err(unreadable)?.permissions();
        #[cfg(unix)]
        let mode = std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777;
        #[cfg(not(unix))]
        let mode = if mode.readonly() { 0o400 } else { 0o600 };
        match bytes.len() {
            n if n < MIN_KEY_BYTES => Err(KeyFileError::TooShort { path: path.to_path_buf(), bytes: n }),
            n if n > MAX_KEY_BYTES => Err(KeyFileError::TooLong { path: path.to_path_buf(), bytes: n }),
            _ => Ok(GrantKey { bytes, path: path.to_path_buf(), mode }),
        }
    }

    /// A key from bytes (tests, tools); at least `MIN_KEY_BYTES`.
    pub fn from_bytes(bytes: &[u8]) -> Option<GrantKey> {
        (MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()).then(|| GrantKey {
            bytes: bytes.to_vec(),
            path: PathBuf::from("(in memory)"),
            mode: 0o400,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A line for the log when any user of the host may read the key file.
    pub fn permission_warning(&self) -> Option<String> {
        (self.mode & 0o007 != 0).then(|| {
            format!(
                "grant key file {} has mode {:o}: every user of this host can read the cluster key (chmod 600 it, or defaultMode 0440 for a Secret volume)",
                self.path.display(),
                self.mode
            )
        })
    }

    fn mac(&self, task: &[u8; 32], host_id: &str, expires_unix_s: u64) -> HmacSha256 {
        // HMAC takes a key of any length; `load` guarantees at least 32 bytes.
        let mut mac = HmacSha256::new_from_slice(&self.bytes).expect("HMAC accepts any key length");
        mac.update(GRANT_CONTEXT);
        mac.update(task);
        mac.update(host_id.as_bytes());
        mac.update(&expires_unix_s.to_be_bytes());
        mac
    }

    /// The grant for `host_id` to read `task` until `expires_unix_s`.
    pub fn mint(&self, task: &[u8; 32], host_id: &str, expires_unix_s: u64) -> Grant {
        let mac = self.mac(task, host_id, expires_unix_s).finalize().into_bytes().into();
        Grant { task: *task, host_id: host_id.to_string(), expires_unix_s, mac }
    }

    /// Whether `grant` opens `task` at `now_unix_s`. The MAC is compared in constant time.
    pub fn verify(&self, grant: &Grant, task: &[u8; 32], now_unix_s: u64) -> Result<(), GrantRefusal> {
        self.mac(&grant.task, &grant.host_id, grant.expires_unix_s)
            .verify_slice(&grant.mac)
            .map_err(|_| GrantRefusal::BadMac)?;
        if grant.task != *task {
            return Err(GrantRefusal::WrongTask);
        }
        if now_unix_s >= grant.expires_unix_s {
            return Err(GrantRefusal::Expired { expires_unix_s: grant.expires_unix_s, now_unix_s });
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch by this host's clock (0 before 1970).
pub fn unix_now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: [u8; 32] = [7; 32];
    const NOW: u64 = 1_800_000_000;

    fn key(fill: u8) -> GrantKey {
        GrantKey::from_bytes(&[fill; 32]).unwrap()
    }

    #[test]
    fn a_minted_grant_opens_its_task_and_nothing_else() {
        let k = key(1);
        let g = k.mint(&TASK, "host-a", NOW + 60);
        assert_eq!(k.verify(&g, &TASK, NOW), Ok(()));
        // Another task.
        assert_eq!(k.verify(&g, &[8; 32], NOW), Err(GrantRefusal::WrongTask));
        // Expired: at and after its second.
        assert_eq!(
            k.verify(&g, &TASK, NOW + 60),
            Err(GrantRefusal::Expired { expires_unix_s: NOW + 60, now_unix_s: NOW + 60 })
        );
        // Presented as another host's.
        let other_host = Grant { host_id: "host-b".into(), ..g.clone() };
        assert_eq!(k.verify(&other_host, &TASK, NOW), Err(GrantRefusal::BadMac));
        // The grant's task changed to the one asked for: the MAC no longer matches.
        let retargeted = Grant { task: [8; 32], ..g.clone() };
        assert_eq!(k.verify(&retargeted, &[8; 32], NOW), Err(GrantRefusal::BadMac));
        // Expiry pushed out.
        let extended = Grant { expires_unix_s: NOW + 1_000_000, ..g.clone() };
        assert_eq!(k.verify(&extended, &TASK, NOW), Err(GrantRefusal::BadMac));
        // One bit of the MAC flipped.
        let mut tampered = g.clone();
        tampered.mac[31] ^= 1;
        assert_eq!(k.verify(&tampered, &TASK, NOW), Err(GrantRefusal::BadMac));
        // Another cluster's key.
        assert_eq!(key(2).verify(&g, &TASK, NOW), Err(GrantRefusal::BadMac));
        // Minting is deterministic: the peer and the scheduler agree on the bytes.
        assert_eq!(k.mint(&TASK, "host-a", NOW + 60), g);
    }

    #[test]
    fn key_files_are_checked() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grant.key");
        std::fs::File::create(&path).unwrap().write_all(&[3; 31]).unwrap();
        let e = GrantKey::load(&path).unwrap_err();
        assert!(matches!(e, KeyFileError::TooShort { bytes: 31, .. }), "{e}");
        assert!(e.to_string().contains("grant.key") && e.to_string().contains("at least 32"), "{e}");

        std::fs::write(&path, [3; 32]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let k = GrantKey::load(&path).unwrap();
            assert!(k.permission_warning().unwrap().contains("mode 644"), "{:?}", k.permission_warning());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert_eq!(GrantKey::load(&path).unwrap().permission_warning(), None);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let k = GrantKey::load(&path).unwrap();
        assert_eq!(k.permission_warning(), None);
        assert_eq!(k, key(3).clone_with_path(&path));
        assert!(!format!("{k:?}").contains("3, 3"), "Debug shows no key bytes: {k:?}");

        std::fs::write(&path, vec![3; MAX_KEY_BYTES + 1]).unwrap();
        assert!(matches!(GrantKey::load(&path), Err(KeyFileError::TooLong { .. })));
        let e = GrantKey::load(&dir.path().join("absent.key")).unwrap_err();
        assert!(e.to_string().contains("absent.key") && e.to_string().contains("cannot read"), "{e}");
    }

    impl GrantKey {
        fn clone_with_path(&self, path: &Path) -> GrantKey {
            GrantKey { path: path.to_path_buf(), mode: 0o600, ..self.clone() }
        }
    }
}
