//! Image manifests and indexes as preheat reads them: an index (OCI image index, Docker
//! manifest list) names one manifest per platform; an image manifest (OCI, Docker schema
//! 2) names its config and layers, the blobs the seed fetches.

use svc::image_ref::Platform;

/// Everything preheat takes, most specific last (registries choose by the list).
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The registry spec's limit on a manifest.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// One blob to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub digest: String,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Index(Vec<IndexEntry>),
    /// Config first, then the layers, each digest once.
    Image(Vec<BlobRef>),
}

#[derive(serde::Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<PlatformField>,
}

#[derive(serde::Deserialize)]
struct PlatformField {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(serde::Deserialize)]
struct Document {
    #[serde(default, rename = "schemaVersion")]
    schema_version: u32,
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Reads a manifest or an index; every digest must be a sha256 (the seed checks blobs
/// against them).
pub fn parse(body: &[u8]) -> Result<Manifest, String> {
    let doc: Document = serde_json::from_slice(body).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if doc.schema_version == 1 {
        return Err(
            "a schema 1 manifest (Docker's deprecated format): push the image again with a current client".into()
        );
    }
    let digest = |d: &str| svc::image_ref::check_digest(d).map_err(|e| format!("the manifest lists {e}"));
    if let Some(entries) = doc.manifests {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let p =
                e.platform.unwrap_or(PlatformField { os: String::new(), architecture: String::new(), variant: None });
            out.push(IndexEntry {
                digest: digest(&e.digest)?,
                os: p.os,
                architecture: p.architecture,
                variant: p.variant,
            });
        }
        return Ok(Manifest::Index(out));
    }
    let Some(config) = doc.config else {
        let kind = doc.media_type.unwrap_or_else(|| "no mediaType".into());
        return Err(format!("neither an image index nor an image manifest ({kind}: no manifests, no config)"));
    };
    let mut blobs: Vec<BlobRef> = Vec::new();
    for d in std::iter::once(config).chain(doc.layers.unwrap_or_default()) {
        let d = BlobRef { digest: digest(&d.digest)?, size_bytes: d.size };
        if !blobs.iter().any(|b| b.digest == d.digest) {
            blobs.push(d);
        }
    }
    Ok(Manifest::Image(blobs))
}

/// The index entry for `platform`; the error lists the platforms the index has.
pub fn choose<'a>(entries: &'a [IndexEntry], platform: &Platform) -> Result<&'a IndexEntry, String> {
    if let Some(e) = entries.iter().find(|e| platform.matches(&e.os, &e.architecture, e.variant.as_deref())) {
        return Ok(e);
    }
    let mut present: Vec<String> = entries
        .iter()
        // Attestation manifests (BuildKit's) carry unknown/unknown: not a platform.
        .filter(|e| !e.os.is_empty() && e.os != "unknown")
        .map(|e| match &e.variant {
            Some(v) => format!("{}/{}/{v}", e.os, e.architecture),
            None => format!("{}/{}", e.os, e.architecture),
        })
        .collect();
    present.dedup();
    Err(format!(
        "the image index has no manifest for platform {platform}; it has {}",
        if present.is_empty() { "none named".to_string() } else { present.join(", ") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifests_list_config_then_layers_once() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"digest":"{}","size":5}},"layers":[{{"digest":"{}","size":7}},{{"digest":"{}","size":7}}]}}"#,
            d('a'),
            d('b'),
            d('b')
        );
        let want = vec![BlobRef { digest: d('a'), size_bytes: 5 }, BlobRef { digest: d('b'), size_bytes: 7 }];
        assert_eq!(parse(body.as_bytes()).unwrap(), Manifest::Image(want));
    }

    #[test]
    fn indexes_choose_the_platform_or_name_those_present() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","platform":{{"os":"linux","architecture":"amd64"}}}},{{"digest":"{}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},{{"digest":"{}","platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
            d('1'),
            d('2'),
            d('3')
        );
        let Manifest::Index(entries) = parse(body.as_bytes()).unwrap() else { panic!("an index") };
        let p = |s| svc::image_ref::parse_platform(s).unwrap();
        assert_eq!(choose(&entries, &p("linux/amd64")).unwrap().digest, d('1'));
        assert_eq!(choose(&entries, &p("linux/arm64")).unwrap().digest, d('2'));
        let e = choose(&entries, &p("linux/s390x")).unwrap_err();
        assert!(
            e.contains("platform linux/s390x") && e.contains("linux/amd64, linux/arm64/v8") && !e.contains("unknown"),
            "{e}"
        );
    }

    #[test]
    fn other_documents_say_what_they_are() {
        assert!(parse(br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err().contains("schema 1"));
        assert!(parse(br#"{"schemaVersion":2,"mediaType":"x/y"}"#).unwrap_err().contains("x/y"));
        assert!(parse(b"<html>").unwrap_err().contains("not JSON"));
        let bad = r#"{"schemaVersion":2,"config":{"digest":"md5:x","size":1}}"#;
        assert!(parse(bad.as_bytes()).unwrap_err().contains("expected sha256"));
    }
}
