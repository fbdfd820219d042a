//! skopeo (Debian 1.9) as a second real OCI client: `skopeo copy docker://REF dir:DEST`, either
//! straight from the registry or through a registry mirror declared in a private
//! registries.conf, then a check that every file of the copy hashes to the image's digests.
//!
//! skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF; the global `--registries-conf FILE` flag
//! (not listed by --help) is what works. It fetches the manifest from a mirror by tag, pings
//! `/v2/` first (after trying TLS on the plain port), and falls back to the registry only when
//! the mirror fails `/v2/` or the manifest, not a single blob.

use crate::bounded_cmd;
use crate::oci_image::{hex, Image};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn binary_present() -> Result<(), String> {
    let found = std::env::var("PATH").unwrap_or_default().split(':').any(|d| Path::new(d).join("skopeo").is_file());
    if found {
        Ok(())
    } else {
        Err("skopeo is not installed; run tests/setup.sh (apt-get install skopeo)".into())
    }
}

/// Writes a registries.conf (v2) at `path` for `registry` over plain http, with `mirror` (if
/// any) tried first, also over plain http.
pub fn write_registries_conf(path: &Path, registry: &str, mirror: Option<&str>) -> Result<PathBuf, String> {
    if registry.is_empty() || registry.contains(['"', ' ', '\n']) {
        return Err(format!("registries.conf: registry {registry:?} is not a HOST[:PORT]"));
    }
    let mut text = format!(
        "unqualified-search-registries = []\n\n[[registry]]\nprefix = \"{registry}\"\nlocation = \"{registry}\"\ninsecure = true\n"
    );
    if let Some(m) = mirror {
        text.push_str(&format!("\n[[registry.mirror]]\nlocation = \"{m}\"\ninsecure = true\n"));
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

/// `skopeo --registries-conf CONF copy docker://REFERENCE dir:DEST` (DEST is emptied first);
/// returns the wall time. `--insecure-policy`: no dependence on the host's policy.json.
pub fn copy_to_dir(
    reference: &str,
    dest: &Path,
    registries_conf: &Path,
    timeout: Duration,
) -> Result<Duration, String> {
    binary_present()?;
    let _ = std::fs::remove_dir_all(dest);
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "--registries-conf", registries_conf.to_str().unwrap(), "copy", "--quiet"]).args([
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("dir:{}", dest.display()),
    ]);
    let scratch = dest.with_extension("skopeo");
    let f = bounded_cmd::run(cmd, &scratch, timeout)?.ok(&format!("skopeo copy {reference}"))?;
    Ok(f.elapsed)
}

/// Checks a `dir:` copy: manifest.json is the image's manifest byte for byte, and every blob
/// file (named by its hex digest) exists and hashes to its name.
pub fn verify_dir(dest: &Path, image: &Image) -> Result<(), String> {
    let manifest =
        std::fs::read(dest.join("manifest.json")).map_err(|e| format!("{}/manifest.json: {e}", dest.display()))?;
    let got = format!("sha256:{}", hex(&<sha2::Sha256 as sha2::Digest>::digest(&manifest)));
    if got != image.manifest.digest {
        return Err(format!("{}/manifest.json hashes to {got}, expected {}", dest.display(), image.manifest.digest));
    }
    for blob in image.blobs() {
        let path = dest.join(blob.hex());
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let got = format!("sha256:{}", hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)));
        if got != blob.digest {
            return Err(format!("{}: {} bytes hashing to {got}, expected {}", path.display(), data.len(), blob.digest));
        }
    }
    Ok(())
}

/// The longest one copy of the test image may take.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(300);

/// One `skopeo copy` of `image` from `registry` into `work/NAME` (through `mirror` when given,
/// by a registries.conf in `work`), the digest check, and removal of the copy. Returns the
/// copy time.
pub fn copy_and_verify(
    image: &Image,
    registry: &str,
    mirror: Option<&str>,
    work: &Path,
    name: &str,
) -> Result<Duration, String> {
    let conf = write_registries_conf(&work.join(format!("{name}.registries.conf")), registry, mirror)?;
    let dest = work.join(name);
    let took = copy_to_dir(&image.reference(registry), &dest, &conf, COPY_TIMEOUT)?;
    verify_dir(&dest, image)?;
    std::fs::remove_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_conf_with_and_without_mirror() {
        let p = std::env::temp_dir().join(format!("e2e-regconf-{}.conf", std::process::id()));
        write_registries_conf(&p, "127.0.0.1:5000", None).unwrap();
        let direct = std::fs::read_to_string(&p).unwrap();
        assert!(direct.contains("location = \"127.0.0.1:5000\"") && !direct.contains("registry.mirror"), "{direct}");
        write_registries_conf(&p, "127.0.0.1:5000", Some("127.0.0.1:65001")).unwrap();
        let mirror = std::fs::read_to_string(&p).unwrap();
        assert!(mirror.contains("[[registry.mirror]]\nlocation = \"127.0.0.1:65001\"\ninsecure = true"), "{mirror}");
        assert!(write_registries_conf(&p, "bad host", None).unwrap_err().contains("bad host"));
        std::fs::remove_file(&p).unwrap();
    }
}
