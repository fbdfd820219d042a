//! Real OCI clients against the real `docker-registry`, with the generated test image (3
//! layers, about 203 MB, static busybox in the first): a private containerd pulls it
//! (`ctr images pull --hosts-dir`) and `ctr run` prints a line from it; skopeo copies it to
//! `dir:`; every stored blob hashes to its digest; and with a hosts.toml / registries.conf that
//! names a dead mirror, or a mirror that hangs up on every connection (counted, so the clients
//! are seen trying it first), both clients still pull from the registry (their fallback).
//!
//! The mirror is a parameter of `containerd::pull_and_verify` and `skopeo::copy_and_verify`:
//! pass a peer daemon's mirror address there to pull through it.
//!
//! Needs containerd, runc, skopeo, busybox-static and docker-registry (tests/setup.sh) and
//! root (containerd mounts overlayfs). The heavy tests run one at a time, so that the timings
//! they print are not shared-CPU figures.

use e2e::cluster::{self, free_port};
use e2e::containerd::{self, Containerd};
use e2e::oci_image::{self, Image, ImageSpec};
use e2e::registry::Registry;
use e2e::skopeo;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static IMAGE: OnceLock<Image> = OnceLock::new();
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn image() -> &'static Image {
    IMAGE.get_or_init(|| oci_image::generate(&ImageSpec::default_test("e2e/oci")).unwrap_or_else(|e| panic!("{e}")))
}

/// A registry holding the test image, in a fresh directory.
struct Fixture {
    dir: PathBuf,
    registry: Registry,
    image: &'static Image,
}

fn fixture(name: &str) -> Fixture {
    // Short directory names: containerd's socket path must stay under 108 bytes.
    let dir = cluster::test_dir(name);
    let registry = Registry::start(&dir);
    let image = image();
    let uploaded = oci_image::push(&registry.addr, image).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(uploaded, 1 + image.layers.len(), "a fresh registry gets every blob");
    Fixture { dir, registry, image }
}

impl Fixture {
    fn mb(&self) -> f64 {
        self.image.total_bytes() as f64 / 1e6
    }

    /// GETs the registry logged for each of the image's blobs (config first, then layers).
    fn blob_gets(&self) -> Vec<usize> {
        std::thread::sleep(Duration::from_millis(300)); // the access log line follows the response
        self.image.blobs().map(|b| self.registry.gets(&format!("/blobs/{}", b.digest))).collect()
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn containerd_pulls_the_generated_image_and_runs_busybox_from_it() {
    let _one = lock();
    let fx = fixture("ocictrd");
    let ctrd = Containerd::start(&fx.dir.join("ctrd")).unwrap_or_else(|e| panic!("{e}"));
    let took = containerd::pull_and_verify(&ctrd, fx.image, &fx.registry.addr, None, &fx.dir.join("hosts"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "oci_clients: containerd_direct_pull image={:.1}MB secs={:.2} MBps={:.0}",
        fx.mb(),
        took.as_secs_f64(),
        fx.mb() / took.as_secs_f64()
    );
    assert_eq!(fx.blob_gets(), vec![1; 1 + fx.image.layers.len()], "a cold pull GETs each blob once");

    let line = format!("hello from e2e {}", std::process::id());
    let started = std::time::Instant::now();
    let out = ctrd
        .run_echo(
            &fx.image.reference(&fx.registry.addr),
            &format!("e2e-run-{}", std::process::id()),
            &line,
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("oci_clients: ctr_run secs={:.2} stdout={:?}", started.elapsed().as_secs_f64(), out.trim_end());
    assert_eq!(out, format!("{line}\n"));

    // A second pull of the same image is served from the local store: no blob GETs.
    let hosts = containerd::write_hosts_dir(&fx.dir.join("hosts"), &fx.registry.addr, None).unwrap();
    ctrd.pull(&fx.image.reference(&fx.registry.addr), &hosts, containerd::PULL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fx.blob_gets(), vec![1; 1 + fx.image.layers.len()], "a warm pull GETs no blob");
    drop(ctrd);
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn skopeo_copies_the_generated_image_with_matching_digests() {
    let _one = lock();
    let fx = fixture("ocisko");
    let took =
        skopeo::copy_and_verify(fx.image, &fx.registry.addr, None, &fx.dir, "copy").unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "oci_clients: skopeo_direct_copy image={:.1}MB secs={:.2} MBps={:.0}",
        fx.mb(),
        took.as_secs_f64(),
        fx.mb() / took.as_secs_f64()
    );
    assert_eq!(fx.blob_gets(), vec![1; 1 + fx.image.layers.len()]);
    let _ = std::fs::remove_dir_all(&fx.dir);
}

/// A port bound and closed again: nothing listens there.
fn dead_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn both_clients_pull_from_the_registry_when_the_mirror_is_down() {
    let _one = lock();
    let fx = fixture("ocidown");
    let mirror = dead_address();
    let ctrd = Containerd::start(&fx.dir.join("ctrd")).unwrap_or_else(|e| panic!("{e}"));
    let took = containerd::pull_and_verify(&ctrd, fx.image, &fx.registry.addr, Some(&mirror), &fx.dir.join("hosts"))
        .unwrap_or_else(|e| panic!("containerd with mirror {mirror} down: {e}"));
    eprintln!("oci_clients: containerd_pull_mirror_down mirror={mirror} secs={:.2}", took.as_secs_f64());
    assert_eq!(
        fx.blob_gets(),
        vec![1; 1 + fx.image.layers.len()],
        "containerd fell back to the registry for every blob"
    );
    drop(ctrd);

    let took = skopeo::copy_and_verify(fx.image, &fx.registry.addr, Some(&mirror), &fx.dir, "copy")
        .unwrap_or_else(|e| panic!("skopeo with mirror {mirror} down: {e}"));
    eprintln!("oci_clients: skopeo_copy_mirror_down mirror={mirror} secs={:.2}", took.as_secs_f64());
    assert_eq!(fx.blob_gets(), vec![2; 1 + fx.image.layers.len()], "skopeo fell back to the registry for every blob");
    let _ = std::fs::remove_dir_all(&fx.dir);
}

/// A mirror that accepts each connection and closes it at once, counting them: proves a
/// client did try the mirror before it fell back.
struct HangUpMirror {
    addr: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HangUpMirror {
    fn start() -> HangUpMirror {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (accepted, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HangUpMirror { addr, accepted, stop, thread: Some(thread) }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for HangUpMirror {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn both_clients_try_a_failing_mirror_first_then_pull_from_the_registry() {
    let _one = lock();
    let fx = fixture("ocihang");
    let mirror = HangUpMirror::start();
    let ctrd = Containerd::start(&fx.dir.join("ctrd")).unwrap_or_else(|e| panic!("{e}"));
    let took =
        containerd::pull_and_verify(&ctrd, fx.image, &fx.registry.addr, Some(&mirror.addr), &fx.dir.join("hosts"))
            .unwrap_or_else(|e| panic!("containerd with a failing mirror: {e}"));
    let by_containerd = mirror.accepted();
    eprintln!(
        "oci_clients: containerd_pull_mirror_failing connections_to_mirror={by_containerd} secs={:.2}",
        took.as_secs_f64()
    );
    assert!(by_containerd >= 1, "containerd never contacted the mirror in hosts.toml");
    assert_eq!(fx.blob_gets(), vec![1; 1 + fx.image.layers.len()]);
    drop(ctrd);

    let took = skopeo::copy_and_verify(fx.image, &fx.registry.addr, Some(&mirror.addr), &fx.dir, "copy")
        .unwrap_or_else(|e| panic!("skopeo with a failing mirror: {e}"));
    let by_skopeo = mirror.accepted() - by_containerd;
    eprintln!(
        "oci_clients: skopeo_copy_mirror_failing connections_to_mirror={by_skopeo} secs={:.2}",
        took.as_secs_f64()
    );
    assert!(by_skopeo >= 1, "skopeo never contacted the mirror in registries.conf");
    assert_eq!(fx.blob_gets(), vec![2; 1 + fx.image.layers.len()]);
    let _ = std::fs::remove_dir_all(&fx.dir);
}
