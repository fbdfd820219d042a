//! Which registry API call a request path is (distribution spec v2). Everything else is
//! refused with a message naming what is wrong.

use crate::storage::Sha256Digest;
use svc::image_ref::{valid_component, valid_tag, MAX_TAG_BYTES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`: the API version check (skopeo sends it first).
    Ping,
    /// `/v2/<name>/manifests/<tag or digest>`.
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`; `sha256` is set when the digest is a valid sha256 (the
    /// blob can then go through P2P); other algorithms are passed upstream.
    Blob { name: String, digest: String, sha256: Option<Sha256Digest> },
    /// `/v2/<name>/tags/list`, `/v2/<name>/referrers/<digest>`, `/v2/_catalog`: passed upstream.
    Listing,
}

/// Why a path is refused: the HTTP status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub status: u16,
    pub message: String,
}

fn bad(message: String) -> RouteError {
    RouteError { status: 400, message }
}

/// Longest repository name the distribution spec allows.
const MAX_NAME: usize = 255;

pub fn parse(path: &str) -> Result<Route, RouteError> {
    if path == "/v2" || path == "/v2/" {
        return Ok(Route::Ping);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(RouteError {
            status: 404,
            message: format!("{}: not a registry API path (they start with /v2/)", shown(path)),
        });
    };
    if rest == "_catalog" {
        return Ok(Route::Listing);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        check_name(name)?;
        return Ok(Route::Listing);
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        check_name(name)?;
        check_digest(digest)?;
        return Ok(Route::Listing);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        check_name(name)?;
        if reference.contains(':') {
            check_digest(reference)?;
        } else {
            check_tag(reference)?;
        }
        return Ok(Route::Manifest { name: name.to_string(), reference: reference.to_string() });
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        check_name(name)?;
        if digest.starts_with("uploads") {
            return Err(RouteError {
                status: 405,
                message: "blob uploads are not accepted by a pull-through mirror; push to the registry".into(),
            });
        }
        let sha256 = check_digest(digest)?;
        return Ok(Route::Blob { name: name.to_string(), digest: digest.to_string(), sha256 });
    }
    Err(RouteError {
        status: 404,
        message: format!("{}: not a registry API path this mirror serves (manifests, blobs, tags/list)", shown(path)),
    })
}

/// Repository names: lowercase components `[a-z0-9]+([._]|__|-+)[a-z0-9]+...`, joined by `/`.
fn check_name(name: &str) -> Result<(), RouteError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(bad(format!("repository name of {} bytes; must be 1 to {MAX_NAME}", name.len())));
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(bad(format!(
                "repository name {}: component {:?} is not lowercase letters and digits joined by '.', '_', '__' or '-'",
                shown(name),
                shown(component)
            )));
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), RouteError> {
    if valid_tag(tag) {
        Ok(())
    } else {
        Err(bad(format!(
            "tag {}: must be 1 to {MAX_TAG_BYTES} of [A-Za-z0-9_.-], not starting with '.' or '-'",
            shown(tag)
        )))
    }
}

/// `algorithm:encoded`; a sha256 must be 64 lowercase hex digits (returned).
fn check_digest(digest: &str) -> Result<Option<Sha256Digest>, RouteError> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(bad(format!("digest {}: expected algorithm:hex, e.g. sha256:<64 hex digits>", shown(digest))));
    };
    if algorithm == "sha256" {
        return Sha256Digest::from_oci(digest).map(Some).map_err(|e| bad(format!("digest {}: {e}", shown(digest))));
    }
    let algo_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'+' | b'.' | b'_' | b'-'));
    let enc_ok = !encoded.is_empty()
        && encoded.len() <= 256
        && encoded.bytes().all(|x| x.is_ascii_alphanumeric() || matches!(x, b'=' | b'_' | b'-'));
    if algo_ok && enc_ok {
        Ok(None)
    } else {
        Err(bad(format!("digest {}: expected algorithm:hex, e.g. sha256:<64 hex digits>", shown(digest))))
    }
}

/// A client-supplied string for a message: at most 120 characters, control bytes escaped.
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(120).collect();
    let mut out = format!("{cut:?}");
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn registry_paths() {
        assert_eq!(parse("/v2/").unwrap(), Route::Ping);
        assert_eq!(parse("/v2").unwrap(), Route::Ping);
        assert_eq!(
            parse("/v2/bench/nginx/manifests/latest").unwrap(),
            Route::Manifest { name: "bench/nginx".into(), reference: "latest".into() }
        );
        assert_eq!(
            parse(&format!("/v2/library/busy-box_x/manifests/{D}")).unwrap(),
            Route::Manifest { name: "library/busy-box_x".into(), reference: D.into() }
        );
        match parse(&format!("/v2/a/b/c/blobs/{D}")).unwrap() {
            Route::Blob { name, digest, sha256 } => {
                assert_eq!((name.as_str(), digest.as_str()), ("a/b/c", D));
                assert_eq!(sha256.unwrap().to_oci(), D);
            }
            other => panic!("{other:?}"),
        }
        // Other algorithms are valid digests, passed upstream (no P2P).
        match parse("/v2/a/blobs/sha512:abcdef").unwrap() {
            Route::Blob { sha256, .. } => assert!(sha256.is_none()),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse("/v2/a/tags/list").unwrap(), Route::Listing);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Listing);
        // A repository may itself contain "manifests" or "blobs" as a component.
        assert_eq!(
            parse("/v2/blobs/manifests/manifests/v1").unwrap(),
            Route::Manifest { name: "blobs/manifests".into(), reference: "v1".into() }
        );
    }

    #[test]
    fn malformed_paths_are_refused_with_the_reason() {
        let e = parse("/v1/x").unwrap_err();
        assert_eq!(e.status, 404);
        assert!(e.message.contains("/v2/"), "{e:?}");
        let e = parse("/v2/UPPER/manifests/latest").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("UPPER"), "{e:?}");
        for p in [
            "/v2//manifests/latest",
            "/v2/a//b/manifests/latest",
            "/v2/a/../b/manifests/latest",
            "/v2/-a/manifests/latest",
            "/v2/a%2fb/manifests/latest",
            "/v2/a/manifests/",
            "/v2/a/manifests/.hidden",
            "/v2/a/manifests/sha256:xyz",
            "/v2/a/blobs/sha256:ABCDEF",
            "/v2/a/blobs/latest",
            "/v2/a/blobs/sha256:00",
        ] {
            let e = parse(p).unwrap_err();
            assert_eq!(e.status, 400, "{p}: {e:?}");
        }
        assert_eq!(parse("/v2/a/blobs/uploads/").unwrap_err().status, 405);
        assert_eq!(parse("/v2/a/unknown").unwrap_err().status, 404);
        let long = format!("/v2/{}/manifests/x", "a".repeat(300));
        assert!(parse(&long).unwrap_err().message.contains("300 bytes"));
        let tag = format!("/v2/a/manifests/{}", "t".repeat(129));
        assert_eq!(parse(&tag).unwrap_err().status, 400);
    }

    #[test]
    fn name_components() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "0abc9"] {
            assert!(valid_component(ok), "{ok}");
        }
        for no in ["", "A", "a.", ".a", "a..b", "a___b", "a.-b", "a b"] {
            assert!(!valid_component(no), "{no}");
        }
    }

    #[test]
    fn shown_strings_are_cut_and_escaped() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert!(shown(&"x".repeat(500)).ends_with('…'));
    }
}
