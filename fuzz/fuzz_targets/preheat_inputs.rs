//! What preheat reads from outside: image references and platforms (`svc::image_ref`, as
//! p2pctl, the scheduler's API and Harbor's events give them), Harbor's webhook events
//! (`sched::service::preheat::harbor`), and on the seed a registry's manifests and indexes,
//! its `WWW-Authenticate` challenges and Docker config.json files
//! (`peer::daemon::preheat`).
//!
//! Input: the first byte picks the parser, the rest is its input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use peer::daemon::preheat::fuzzing as p;
use sched::service::preheat::harbor;
use svc::image_ref;

/// A reference that parses prints as one that parses to itself: one image, one spelling
/// (its job id is derived from it).
fn check_image(r: &image_ref::ImageRef) {
    let again = image_ref::parse(&r.to_string()).expect("a printed reference parses");
    assert_eq!(&again, r, "{r}");
    assert!(r.repository.len() <= image_ref::MAX_REPOSITORY_BYTES);
    assert!(r.tag.is_some() != r.digest.is_some(), "a tag or a digest: {r}");
    if let Some(d) = &r.digest {
        assert!(d.len() == 71 && d.starts_with("sha256:"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = std::str::from_utf8(rest).ok();
    match which % 6 {
        0 => {
            if let Some(Ok(r)) = text.map(image_ref::parse) {
                check_image(&r);
            }
        }
        1 => {
            if let Some(Ok(p)) = text.map(image_ref::parse_platform) {
                assert_eq!(image_ref::parse_platform(&p.to_string()), Ok(p.clone()));
                assert!(p.matches(&p.os, &p.architecture, p.variant.as_deref()));
            }
        }
        2 => match harbor::parse(rest) {
            Ok(harbor::Event::Push(images)) => {
                assert!(!images.is_empty() && images.len() <= harbor::MAX_RESOURCES);
                images.iter().for_each(check_image);
            }
            Ok(harbor::Event::Ignored(why)) => assert!(!why.is_empty()),
            Err(e) => assert!(!e.is_empty()),
        },
        3 => {
            if let Some(p::Challenge::Bearer { realm, .. }) = text.and_then(p::parse_challenge) {
                assert!(!realm.is_empty());
            }
        }
        4 => match p::parse_manifest(rest) {
            Ok(p::Manifest::Image(blobs)) => {
                for (i, b) in blobs.iter().enumerate() {
                    assert!(b.digest.len() == 71 && b.digest.starts_with("sha256:"));
                    assert!(blobs[..i].iter().all(|o| o.digest != b.digest), "each blob once");
                }
            }
            Ok(p::Manifest::Index(entries)) => {
                let amd64 = image_ref::parse_platform("linux/amd64").expect("a platform");
                if let Ok(e) = p::choose(&entries, &amd64) {
                    assert!(e.os == "linux" && e.architecture == "amd64");
                }
            }
            Err(e) => assert!(!e.is_empty()),
        },
        _ => {
            if let Ok(c) = p::parse_docker_config(rest) {
                let _ = c.for_registry("docker.io");
            }
        }
    }
});
