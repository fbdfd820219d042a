//! `e2e-oci-push`: generates the deterministic test image (tests/src/oci_image.rs) and pushes it
//! into a registry over plain http, for scripts such as bench/netns_fanout.sh. Prints one JSON
//! line: reference, manifest digest, blobs (digest, size), total bytes, seconds.
//!
//! e2e-oci-push --registry HOST:PORT [--repo bench/img] [--tag latest] [--seed 4]
//!              [--layers-mib 48,64,80] [--busybox /bin/busybox] [--layout DIR]
#![forbid(unsafe_code)]

use e2e::oci_image::{self, ImageSpec};
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("e2e-oci-push: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut spec = ImageSpec::default_test("bench/img");
    let (mut registry, mut layout) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--registry" => registry = Some(value()?),
            "--repo" => spec.repo = value()?,
            "--tag" => spec.tag = value()?,
            "--seed" => {
                let v = value()?;
                spec.seed = v.parse().map_err(|_| format!("--seed {v:?}: not an unsigned integer"))?;
            }
            "--layers-mib" => {
                let v = value()?;
                spec.layer_data_bytes = v
                    .split(',')
                    .map(|m| {
                        m.trim()
                            .parse::<u64>()
                            .map(|m| m << 20)
                            .map_err(|_| format!("--layers-mib {v:?}: {m:?} is not a number of MiB"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--busybox" => spec.busybox = value()?.into(),
            "--layout" => layout = Some(std::path::PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("e2e-oci-push --registry HOST:PORT [--repo R] [--tag T] [--seed N] [--layers-mib A,B,C] [--busybox PATH] [--layout DIR]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    let registry = registry.ok_or("--registry HOST:PORT is required")?;
    let started = Instant::now();
    let image = oci_image::generate(&spec)?;
    let generated = started.elapsed().as_secs_f64();
    if let Some(dir) = &layout {
        oci_image::write_layout(&image, dir)?;
    }
    let uploaded = oci_image::push(&registry, &image)?;
    let line = serde_json::json!({
        "reference": image.reference(&registry),
        "manifest": image.manifest.digest,
        "blobs": image.blobs().map(|b| serde_json::json!([b.digest, b.data.len()])).collect::<Vec<_>>(),
        "total_bytes": image.total_bytes(),
        "uploaded_blobs": uploaded,
        "generate_s": (generated * 100.0).round() / 100.0,
        "seconds": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    });
    println!("{line}");
    Ok(())
}
