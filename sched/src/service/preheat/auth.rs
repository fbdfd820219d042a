//! The shared secret of the preheat endpoints (`[preheat] auth_file`): a request that
//! starts a preheat (the API's POST, Harbor's webhook) must carry it as its whole
//! `Authorization` value, which is what Harbor's webhook policy sends as its "Auth Header".
//! Only its sha256 is kept, and the comparison takes the same time wherever they differ.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq, Eq)]
pub struct AuthSecret {
    path: PathBuf,
    sha256: [u8; 32],
}

/// The file, never the secret.
impl std::fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSecret").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Longest secret read: a header value, not a document.
const MAX_SECRET_BYTES: usize = 4096;

impl AuthSecret {
    /// Reads the file: its text less a trailing newline, printable ASCII, not empty.
    pub fn load(path: &Path) -> Result<AuthSecret, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if text.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "{} holds {} bytes; a header value is at most {MAX_SECRET_BYTES}",
                path.display(),
                text.len()
            ));
        }
        let text = String::from_utf8_lossy(&text);
        let value = text.trim_end_matches(['\n', '\r']).trim();
        if value.is_empty() {
            return Err(format!(
                "{} is empty; write the Authorization value the webhook sends (e.g. \"Bearer <random>\")",
                path.display()
            ));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!("{} holds bytes other than printable ASCII: not a header value", path.display()));
        }
        Ok(AuthSecret { path: path.to_path_buf(), sha256: Sha256::digest(value.as_bytes()).into() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `authorization` (the request's header, trimmed) is the secret.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization else { return false };
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        given.iter().zip(&self.sha256).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_the_whole_header_value() {
        let dir = std::env::temp_dir().join(format!("sched-preheat-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth");
        std::fs::write(&file, "Bearer s3cret\n").unwrap();
        let secret = AuthSecret::load(&file).unwrap();
        assert!(secret.accepts(Some("Bearer s3cret")) && secret.accepts(Some(" Bearer s3cret ")));
        assert!(!secret.accepts(Some("Bearer s3cre")) && !secret.accepts(Some("s3cret")) && !secret.accepts(None));
        assert!(!format!("{secret:?}").contains("s3cret"));
        std::fs::write(&file, "\n").unwrap();
        assert!(AuthSecret::load(&file).unwrap_err().contains("is empty"));
        assert!(AuthSecret::load(&dir.join("none")).unwrap_err().contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
