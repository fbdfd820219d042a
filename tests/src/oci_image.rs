//! A deterministic OCI image made in memory, and its push into a registry through the plain
//! distribution API. Layers are real `tar+gzip`: files of seeded incompressible bytes, gzip
//! made with deflate level 0 ("stored" blocks: the size a real gzip of random data has, written
//! at memory speed). The first layer also holds a static busybox (`/bin/busybox`, `/bin/sh`),
//! so containerd can unpack the image and `ctr run` it. The same spec always gives the same
//! digests: the data comes from the seed, and tar mtimes/owners and the gzip header are fixed.

use crate::registry::request;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where Debian's `busybox-static` puts its statically linked binary (tests/setup.sh installs it).
pub const STATIC_BUSYBOX: &str = "/bin/busybox";

/// What to generate.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Repository name in the registry, e.g. `e2e/oci`.
    pub repo: String,
    pub tag: String,
    pub seed: u64,
    /// Random bytes per layer (before tar/gzip framing); the first layer also gets busybox.
    pub layer_data_bytes: Vec<u64>,
    /// Random data is split into files of at most this size inside each layer.
    pub file_bytes: u64,
    /// A statically linked busybox put in the first layer as /bin/busybox.
    pub busybox: PathBuf,
}

impl ImageSpec {
    /// The default test image: 3 layers, 48 + 64 + 80 MiB of random data (about 203 MB of
    /// blobs with busybox and framing).
    pub fn default_test(repo: &str) -> ImageSpec {
        ImageSpec {
            repo: repo.to_string(),
            tag: "latest".into(),
            seed: 4,
            layer_data_bytes: vec![48 << 20, 64 << 20, 80 << 20],
            file_bytes: 16 << 20,
            busybox: PathBuf::from(STATIC_BUSYBOX),
        }
    }
}

/// One content-addressed blob.
#[derive(Clone, Debug)]
pub struct Blob {
    /// `sha256:<64 hex>`.
    pub digest: String,
    pub media_type: String,
    pub data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob { digest: format!("sha256:{}", hex(&Sha256::digest(&data))), media_type: media_type.into(), data }
    }

    /// The 64 hex digits of the digest.
    pub fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }
}

#[derive(Clone, Debug)]
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// sha256 of each layer's uncompressed tar, as in the config's `rootfs.diff_ids`.
    pub diff_ids: Vec<String>,
}

impl Image {
    /// Config and layers: what a client fetches from `/blobs/` (the manifest is not a blob there).
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Bytes of manifest, config and layers together.
    pub fn total_bytes(&self) -> u64 {
        self.blobs().map(|b| b.data.len() as u64).sum::<u64>() + self.manifest.data.len() as u64
    }

    /// `HOST:PORT/REPO:TAG`, the reference clients pull.
    pub fn reference(&self, registry: &str) -> String {
        format!("{registry}/{}:{}", self.repo, self.tag)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the image; errors name the spec field or file that is wrong.
pub fn generate(spec: &ImageSpec) -> Result<Image, String> {
    if spec.layer_data_bytes.is_empty() {
        return Err("image spec: layer_data_bytes is empty; an image needs at least one layer".into());
    }
    if spec.file_bytes == 0 {
        return Err("image spec: file_bytes must be > 0".into());
    }
    if !valid_repo(&spec.repo) {
        return Err(format!(
            "image spec: repo {:?} is not a valid repository name (lowercase a-z0-9 . _ - /)",
            spec.repo
        ));
    }
    if spec.tag.is_empty()
        || spec.tag.len() > 128
        || !spec.tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("image spec: tag {:?} is not a valid tag", spec.tag));
    }
    let busybox = std::fs::read(&spec.busybox)
        .map_err(|e| format!("{}: {e} (install busybox-static: tests/setup.sh)", spec.busybox.display()))?;
    if busybox.get(..4) != Some(b"\x7fELF") {
        return Err(format!("{}: not an ELF executable", spec.busybox.display()));
    }
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, &bytes) in spec.layer_data_bytes.iter().enumerate() {
        let mut w = LayerWriter::new();
        if i == 0 {
            w.dir("bin/");
            w.file("bin/busybox", 0o755, &busybox);
            w.symlink("bin/sh", "busybox");
        }
        w.dir("data/");
        w.dir(&format!("data/layer{i}/"));
        let mut rng = seeded(spec.seed, i as u64);
        let (mut left, mut n) = (bytes, 0);
        let mut buf = vec![0u8; spec.file_bytes.min(bytes).max(1) as usize];
        while left > 0 {
            let len = left.min(spec.file_bytes) as usize;
            rand::RngCore::fill_bytes(&mut rng, &mut buf[..len]);
            w.file(&format!("data/layer{i}/f{n:04}.bin"), 0o644, &buf[..len]);
            left -= len as u64;
            n += 1;
        }
        let (blob, diff_id) = w.finish();
        layers.push(Blob::new(OCI_LAYER_GZIP, blob));
        diff_ids.push(diff_id);
    }
    let config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": (0..layers.len()).map(|i| serde_json::json!({
            "created": "1970-01-01T00:00:00Z",
            "created_by": format!("e2e oci_image layer {i}"),
        })).collect::<Vec<_>>(),
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).expect("json"));
    let descriptor =
        |b: &Blob| serde_json::json!({ "mediaType": b.media_type, "digest": b.digest, "size": b.data.len() });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(&config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).expect("json"));
    Ok(Image { repo: spec.repo.clone(), tag: spec.tag.clone(), manifest, config, layers, diff_ids })
}

fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric()
        })
}

fn seeded(seed: u64, layer: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ layer)
}

/// A tar stream hashed (diff id) and gzipped (blob) as it is written.
struct LayerWriter {
    diff: Sha256,
    gz: flate2::write::GzEncoder<Vec<u8>>,
}

impl LayerWriter {
    fn new() -> LayerWriter {
        // mtime 0 and no file name: the gzip header is the same every time.
        let gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::none());
        LayerWriter { diff: Sha256::new(), gz }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.diff.update(bytes);
        self.gz.write_all(bytes).expect("gzip into memory");
    }

    fn dir(&mut self, name: &str) {
        self.put(&tar_header(name, 0o755, 0, b'5', ""));
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.put(&tar_header(name, 0o777, 0, b'2', target));
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.put(&tar_header(name, mode, data.len() as u64, b'0', ""));
        self.put(data);
        let pad = (512 - data.len() % 512) % 512;
        self.put(&vec![0u8; pad]);
    }

    /// (gzip bytes, `sha256:` diff id of the tar).
    fn finish(mut self) -> (Vec<u8>, String) {
        self.put(&[0u8; 1024]); // end of archive: two zero blocks
        let diff_id = format!("sha256:{}", hex(&self.diff.finalize_reset()));
        (self.gz.finish().expect("gzip into memory"), diff_id)
    }
}

/// A POSIX ustar header block (names here are short, no prefix field needed).
fn tar_header(name: &str, mode: u32, size: u64, kind: u8, link: &str) -> [u8; 512] {
    assert!(name.len() < 100 && link.len() < 100, "tar names of the generator fit in 100 bytes");
    let mut h = [0u8; 512];
    let mut field = |at: usize, len: usize, value: &[u8]| {
        h[at..at + value.len().min(len)].copy_from_slice(&value[..value.len().min(len)])
    };
    field(0, 100, name.as_bytes());
    field(100, 8, format!("{mode:07o}\0").as_bytes());
    field(108, 8, b"0000000\0"); // uid
    field(116, 8, b"0000000\0"); // gid
    field(124, 12, format!("{size:011o}\0").as_bytes());
    field(136, 12, b"00000000000\0"); // mtime
    field(156, 1, &[kind]);
    field(157, 100, link.as_bytes());
    field(257, 6, b"ustar\0");
    field(263, 2, b"00");
    field(265, 32, b"root");
    field(297, 32, b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Pushes the image into the registry at `addr` (HOST:PORT, plain http): each blob that the
/// registry does not have yet (HEAD) by a monolithic upload (POST, then PUT ?digest=), then the
/// manifest under the tag. Returns how many blobs were uploaded (0 on a repeat push).
pub fn push(addr: &str, image: &Image) -> Result<usize, String> {
    let mut uploaded = 0;
    for blob in image.blobs() {
        let head = format!("/v2/{}/blobs/{}", image.repo, blob.digest);
        match request(addr, "HEAD", &head, &[], &[]) {
            Some((200, _, _)) => continue,
            Some((404, _, _)) => {}
            Some((status, _, _)) => return Err(format!("HEAD {head} at {addr}: status {status}")),
            None => return Err(format!("HEAD {head}: no answer from a registry at {addr}")),
        }
        push_blob(addr, &image.repo, blob)?;
        uploaded += 1;
    }
    let path = format!("/v2/{}/manifests/{}", image.repo, image.tag);
    let (status, headers, body) =
        request(addr, "PUT", &path, &[("Content-Type", &image.manifest.media_type)], &image.manifest.data)
            .ok_or_else(|| format!("PUT {path}: no answer from {addr}"))?;
    if status != 201 {
        return Err(format!("PUT {path} at {addr}: status {status}: {}", String::from_utf8_lossy(&body)));
    }
    let echoed = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("docker-content-digest")).map(|(_, v)| v.as_str());
    if echoed != Some(image.manifest.digest.as_str()) {
        return Err(format!("PUT {path}: registry stored digest {echoed:?}, expected {}", image.manifest.digest));
    }
    Ok(uploaded)
}

fn push_blob(addr: &str, repo: &str, blob: &Blob) -> Result<(), String> {
    let start = format!("/v2/{repo}/blobs/uploads/");
    let (status, headers, _) =
        request(addr, "POST", &start, &[], &[]).ok_or_else(|| format!("POST {start}: no answer from {addr}"))?;
    if status != 202 {
        return Err(format!("POST {start} at {addr}: status {status}, expected 202"));
    }
    let location = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.clone())
        .ok_or_else(|| format!("POST {start} at {addr}: no Location header"))?;
    // Location may be absolute (http://host/v2/...) or a path.
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
        None => location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = format!("{path}{sep}digest={}", blob.digest);
    let (status, _, body) = request(addr, "PUT", &put, &[("Content-Type", "application/octet-stream")], &blob.data)
        .ok_or_else(|| format!("PUT blob {}: no answer from {addr}", blob.digest))?;
    if status != 201 {
        return Err(format!("PUT blob {} at {addr}: status {status}: {}", blob.digest, String::from_utf8_lossy(&body)));
    }
    Ok(())
}

/// Writes the image as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`), e.g.
/// for `skopeo copy oci:DIR:TAG` or `ctr images import`.
pub fn write_layout(image: &Image, dir: &Path) -> Result<(), String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    for b in image.blobs().chain(std::iter::once(&image.manifest)) {
        let p = blobs.join(b.hex());
        std::fs::write(&p, &b.data).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": image.manifest.media_type, "digest": image.manifest.digest, "size": image.manifest.data.len(),
            "annotations": { "org.opencontainers.image.ref.name": image.tag },
        }],
    });
    let write = |name: &str, data: Vec<u8>| {
        std::fs::write(dir.join(name), data).map_err(|e| format!("{}/{name}: {e}", dir.display()))
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())?;
    write("index.json", serde_json::to_vec(&index).expect("json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn small(seed: u64) -> ImageSpec {
        ImageSpec {
            seed,
            layer_data_bytes: vec![3000, 70_000],
            file_bytes: 50_000,
            ..ImageSpec::default_test("t/small")
        }
    }

    fn have_busybox() -> bool {
        Path::new(STATIC_BUSYBOX).exists()
    }

    /// (name, typeflag, size, link) of every entry of a tar stream.
    fn entries(tar: &[u8]) -> Vec<(String, u8, u64, String)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
            let h = &tar[at..at + 512];
            let text = |a: usize, n: usize| String::from_utf8_lossy(&h[a..a + n]).trim_end_matches('\0').to_string();
            let size = u64::from_str_radix(text(124, 12).trim(), 8).unwrap();
            let stored: u32 =
                u32::from_str_radix(text(148, 8).trim_end_matches(' ').trim_end_matches('\0'), 8).unwrap();
            let sum: u32 =
                h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u32 }).sum();
            assert_eq!(stored, sum, "checksum of {}", text(0, 100));
            out.push((text(0, 100), h[156], size, text(157, 100)));
            at += 512 + size.div_ceil(512) as usize * 512;
        }
        out
    }

    #[test]
    fn same_spec_same_digests_other_seed_other_digests() {
        if !have_busybox() {
            panic!("{STATIC_BUSYBOX} missing: run tests/setup.sh");
        }
        let a = generate(&small(1)).unwrap();
        let b = generate(&small(1)).unwrap();
        let c = generate(&small(2)).unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.layers[1].digest, b.layers[1].digest);
        assert_ne!(a.layers[1].digest, c.layers[1].digest);
        assert_ne!(a.manifest.digest, c.manifest.digest);
    }

    #[test]
    fn layers_are_gzip_tars_with_busybox_first_and_matching_diff_ids() {
        let img = generate(&small(1)).unwrap();
        let mut tars = Vec::new();
        for (layer, diff_id) in img.layers.iter().zip(&img.diff_ids) {
            assert_eq!(format!("sha256:{}", hex(&Sha256::digest(&layer.data))), layer.digest);
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&layer.data[..]).read_to_end(&mut tar).unwrap();
            assert_eq!(&format!("sha256:{}", hex(&Sha256::digest(&tar))), diff_id);
            tars.push(entries(&tar));
        }
        let bb = std::fs::metadata(STATIC_BUSYBOX).unwrap().len();
        assert!(tars[0].contains(&("bin/busybox".into(), b'0', bb, String::new())), "{:?}", tars[0]);
        assert!(tars[0].contains(&("bin/sh".into(), b'2', 0, "busybox".into())));
        // 70 000 random bytes in files of at most 50 000.
        let sizes: Vec<u64> = tars[1].iter().filter(|e| e.1 == b'0').map(|e| e.2).collect();
        assert_eq!(sizes, vec![50_000, 20_000]);
    }

    #[test]
    fn manifest_and_config_name_every_blob() {
        let img = generate(&small(3)).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&img.manifest.data).unwrap();
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["config"]["digest"], img.config.digest.as_str());
        assert_eq!(m["config"]["size"], img.config.data.len());
        for (d, l) in m["layers"].as_array().unwrap().iter().zip(&img.layers) {
            assert_eq!(d["digest"], l.digest.as_str());
            assert_eq!(d["size"], l.data.len());
            assert_eq!(d["mediaType"], OCI_LAYER_GZIP);
        }
        let c: serde_json::Value = serde_json::from_slice(&img.config.data).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), img.layers.len());
    }

    #[test]
    fn bad_specs_are_refused_with_the_field_named() {
        let e = generate(&ImageSpec { layer_data_bytes: vec![], ..small(1) }).unwrap_err();
        assert!(e.contains("layer_data_bytes"), "{e}");
        let e = generate(&ImageSpec { repo: "Upper/Case".into(), ..small(1) }).unwrap_err();
        assert!(e.contains("repo"), "{e}");
        let e = generate(&ImageSpec { busybox: "/nonexistent/busybox".into(), ..small(1) }).unwrap_err();
        assert!(e.contains("/nonexistent/busybox"), "{e}");
    }
}
