//! Real OCI clients pulling through peer daemons' registry mirrors: the real
//! `docker-registry` holds the generated test image (3 layers, about 203 MB, static busybox);
//! a scheduler, a seed peer and 4 peers run as processes on 127.0.0.1. One peer's node pulls
//! with a private containerd (`ctr images pull --hosts-dir`, hosts.toml naming the peer's
//! mirror) and runs busybox from the image; the other three copy it with skopeo through
//! their own mirrors, all at once. Every blob the clients stored hashes to its digest, and
//! the registry sent each blob once (to the seed peer). A mirror whose registry endpoint is
//! unreachable answers with an error and containerd falls back to the registry.
//!
//! Needs containerd, runc, skopeo, busybox-static and docker-registry (tests/setup.sh) and
//! root (containerd mounts overlayfs).

use e2e::cluster::{self, start_peer, start_scheduler, Peer, PeerOptions};
use e2e::containerd::{self, Containerd};
use e2e::oci_image::{self, Image, ImageSpec};
use e2e::registry::Registry;
use e2e::skopeo;
use e2e::swarm::cpu;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A peer whose mirror proxies `registry` (HOST:PORT, plain http), also for clients that
/// name no registry (skopeo sends no `?ns=`).
fn mirror_options(registry: &str, endpoint: &str) -> PeerOptions {
    PeerOptions {
        extra_toml: format!(
            "[mirror]\ndefault_registry = \"{registry}\"\n\
             [[mirror.registries]]\nhost = \"{registry}\"\nendpoint = \"{endpoint}\"\n"
        ),
        ..Default::default()
    }
}

/// GETs the registry logged for each blob of `image` (config first, then layers).
fn blob_gets(registry: &Registry, image: &Image) -> Vec<usize> {
    // The access log line follows the response.
    std::thread::sleep(Duration::from_millis(300));
    image.blobs().map(|b| registry.gets(&format!("/blobs/{}", b.digest))).collect()
}

fn stop_all(peers: &mut [Peer]) {
    for p in peers {
        p.proc.stop(Duration::from_secs(10));
    }
}

#[test]
fn containerd_and_skopeo_pull_through_peer_mirrors_and_the_registry_sends_each_blob_once() {
    let _one = lock();
    let dir = cluster::test_dir("mirpull");
    let registry = Registry::start(&dir);
    let image = oci_image::generate(&ImageSpec::default_test("e2e/mirror")).unwrap_or_else(|e| panic!("{e}"));
    oci_image::push(&registry.addr, &image).unwrap_or_else(|e| panic!("{e}"));
    let reg = registry.addr.clone();
    let options = mirror_options(&reg, &format!("http://{reg}"));
    let mut sched = start_scheduler(&dir);
    let seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..options.clone() });
    let mut peers: Vec<Peer> =
        (0..4).map(|i| start_peer(&dir, &format!("p{i}"), Some(&sched.grpc), &options)).collect();
    let ctrd = Containerd::start(&dir.join("ctrd")).unwrap_or_else(|e| panic!("{e}"));

    let started = Instant::now();
    let (ctr_took, skopeo_took) = std::thread::scope(|s| {
        let copies: Vec<_> = peers[1..]
            .iter()
            .map(|p| {
                let (image, reg, dir, mirror, name) = (&image, &reg, &dir, p.mirror.clone(), p.name.clone());
                s.spawn(move || {
                    skopeo::copy_and_verify(image, reg, Some(&mirror), dir, &name)
                        .unwrap_or_else(|e| panic!("skopeo through {name}'s mirror {mirror}: {e}"))
                })
            })
            .collect();
        let ctr = containerd::pull_and_verify(&ctrd, &image, &reg, Some(&peers[0].mirror), &dir.join("hosts"))
            .unwrap_or_else(|e| panic!("containerd through p0's mirror {}: {e}", peers[0].mirror));
        let skopeo: Vec<Duration> = copies.into_iter().map(|c| c.join().expect("skopeo thread")).collect();
        (ctr, skopeo)
    });
    let all = started.elapsed();
    let mb = image.total_bytes() as f64 / 1e6;
    eprintln!(
        "mirror_pulls: image={mb:.1}MB containerd_s={:.2} skopeo_s={:?} all_s={:.2}",
        ctr_took.as_secs_f64(),
        skopeo_took.iter().map(|d| (d.as_secs_f64() * 100.0).round() / 100.0).collect::<Vec<_>>(),
        all.as_secs_f64()
    );

    assert_eq!(
        blob_gets(&registry, &image),
        vec![1; 1 + image.layers.len()],
        "the registry must send each blob once (to the seed peer); more GETs mean a mirror went upstream"
    );
    for p in &peers {
        let from_parents = p.metric("peer_download_bytes_total{source=\"parent\"}");
        let from_origin = p.metric("peer_download_bytes_total{source=\"origin\"}");
        eprintln!("mirror_pulls: {} from_parents={from_parents} from_origin={from_origin}", p.name);
        assert_eq!(from_origin, 0, "{}: blobs came from the registry, not from peers", p.name);
        assert!(from_parents >= image.layers.iter().map(|l| l.data.len() as u64).sum::<u64>(), "{}", p.name);
    }

    // The pulled image runs.
    let line = format!("hello through the mirror {}", std::process::id());
    let out = ctrd
        .run_echo(&image.reference(&reg), &format!("e2e-mirror-{}", std::process::id()), &line, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, format!("{line}\n"));

    drop(ctrd);
    stop_all(&mut peers);
    stop_all(&mut [seed]);
    sched.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mirror that cannot reach its registry answers errors; containerd then pulls from the
/// registry itself, and what it stores is intact.
#[test]
fn containerd_falls_back_to_the_registry_when_the_mirror_fails() {
    let _one = lock();
    let dir = cluster::test_dir("mirfail");
    let registry = Registry::start(&dir);
    let image = oci_image::generate(&ImageSpec::default_test("e2e/mirfail")).unwrap_or_else(|e| panic!("{e}"));
    oci_image::push(&registry.addr, &image).unwrap_or_else(|e| panic!("{e}"));
    let reg = registry.addr.clone();
    // The mirror proxies the registry's name, but at an address where nothing listens.
    let nowhere = format!("http://127.0.0.1:{}", cluster::free_port());
    let mut peer = start_peer(&dir, "p", None, &mirror_options(&reg, &nowhere));
    let ctrd = Containerd::start(&dir.join("ctrd")).unwrap_or_else(|e| panic!("{e}"));
    let took = containerd::pull_and_verify(&ctrd, &image, &reg, Some(&peer.mirror), &dir.join("hosts"))
        .unwrap_or_else(|e| panic!("containerd with a failing mirror: {e}"));
    eprintln!("mirror_pulls: containerd_with_failing_mirror secs={:.2}", took.as_secs_f64());
    assert_eq!(blob_gets(&registry, &image), vec![1; 1 + image.layers.len()], "containerd fetched each blob itself");
    assert!(
        cluster::http_get(&peer.http, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")),
        "the daemon is up"
    );
    drop(ctrd);
    peer.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bench (`cargo test --release -p e2e --test mirror_pulls -- --ignored bench --nocapture`):
/// one containerd pull of a ~500 MB image through a peer's mirror whose parents (a seed peer
/// and a peer that pulled it before) already hold the image, against the same pull straight
/// from the registry, both on 127.0.0.1. Each round pulls (fetch + unpack) and fetches only
/// (`ctr content fetch`), direct and through a fresh peer, in alternating order; medians and
/// the ratio of throughputs are printed. Every pull is verified and the registry must have
/// sent each blob once to the seed and once per direct pull or fetch.
#[test]
#[ignore]
fn bench_containerd_pull_through_a_warm_parent_against_direct() {
    let _one = lock();
    let rounds: usize = std::env::var("MIRROR_PULL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let dir = cluster::test_dir("mirbench");
    let registry = Registry::start(&dir);
    let spec = ImageSpec {
        layer_data_bytes: vec![144 << 20, 160 << 20, 176 << 20],
        ..ImageSpec::default_test("e2e/mirbench")
    };
    let image = oci_image::generate(&spec).unwrap_or_else(|e| panic!("{e}"));
    oci_image::push(&registry.addr, &image).unwrap_or_else(|e| panic!("{e}"));
    let reg = registry.addr.clone();
    let reference = image.reference(&reg);
    let options = mirror_options(&reg, &format!("http://{reg}"));
    let mut sched = start_scheduler(&dir);
    let seed = start_peer(&dir, "seed", Some(&sched.grpc), &PeerOptions { seed: true, ..options.clone() });
    let warm = start_peer(&dir, "warm", Some(&sched.grpc), &options);
    let ctrd = Containerd::start(&dir.join("ctrd")).unwrap_or_else(|e| panic!("{e}"));
    let direct_hosts = containerd::write_hosts_dir(&dir.join("hosts-direct"), &reg, None).unwrap();
    // Warm-up: the seed fetches from the registry, the warm peer from the seed.
    let warm_up = containerd::pull_and_verify(&ctrd, &image, &reg, Some(&warm.mirror), &dir.join("hosts-warm"))
        .unwrap_or_else(|e| panic!("warm-up pull through {}: {e}", warm.mirror));
    let layers = image.layers.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while warm.metric("peer_downloads_total{result=\"ok\"}") < layers + 1 {
        assert!(Instant::now() < deadline, "the warm peer's downloads did not all complete");
        std::thread::sleep(Duration::from_millis(50));
    }

    // One timed operation (pull or fetch), from a clean store, then the content check; beside
    // the wall time, the CPU seconds each side spent on it (`peer`: the pulling peer,
    // `parents`: the seed and the warm peer; earlier rounds' peers may serve too, uncounted)
    // and how busy the whole machine was.
    let timed = |op: &str, hosts: &std::path::Path, peer_pid: u32| -> (f64, String) {
        ctrd.clean().unwrap_or_else(|e| panic!("{e}"));
        let sides = [
            ("containerd", vec![ctrd.proc.pid()]),
            ("registry", vec![registry.proc.pid()]),
            ("peer", vec![peer_pid]),
            ("parents", vec![seed.proc.pid(), warm.proc.pid()]),
        ];
        let before: Vec<f64> = sides.iter().map(|(_, pids)| cpu::sum_seconds(pids)).collect();
        let (ctr_before, machine_before) = (cpu::waited_children_seconds(), cpu::machine_ticks());
        let took = match op {
            "pull" => ctrd.pull(&reference, hosts, containerd::PULL_TIMEOUT),
            _ => ctrd.fetch(&reference, hosts, containerd::PULL_TIMEOUT),
        }
        .unwrap_or_else(|e| panic!("{op} with {}: {e}", hosts.display()));
        let busy = cpu::busy_percent(machine_before, cpu::machine_ticks());
        let mut used = format!("ctr_cpu_s={:.2}", cpu::waited_children_seconds() - ctr_before);
        for ((name, pids), b) in sides.iter().zip(before) {
            used += &format!(" {name}_cpu_s={:.2}", cpu::sum_seconds(pids) - b);
        }
        used += &format!(" machine_busy_pct={busy:.0}");
        ctrd.verify_image(&image).unwrap_or_else(|e| panic!("{op} with {}: {e}", hosts.display()));
        (took.as_secs_f64(), used)
    };
    let mut peers = Vec::new();
    let mut secs: std::collections::BTreeMap<(&str, &str), Vec<f64>> = Default::default();
    for round in 0..rounds {
        for op in ["pull", "fetch"] {
            let cold = start_peer(&dir, &format!("cold-{op}-{round}"), Some(&sched.grpc), &options);
            let hosts =
                containerd::write_hosts_dir(&dir.join(format!("hosts-{}", cold.name)), &reg, Some(&cold.mirror))
                    .unwrap();
            let order = if round % 2 == 0 { ["direct", "mirror"] } else { ["mirror", "direct"] };
            for way in order {
                let (s, used) = timed(op, if way == "direct" { &direct_hosts } else { &hosts }, cold.proc.pid());
                eprintln!("mirror_pull_bench round={round} op={op} via={way} secs={s:.2} {used}");
                secs.entry((op, way)).or_default().push(s);
            }
            let from_origin = cold.metric("peer_download_bytes_total{source=\"origin\"}");
            assert_eq!(from_origin, 0, "{}: blobs came from the registry, not from its warm parents", cold.name);
            peers.push(cold);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mb = image.total_bytes() as f64 / 1e6;
    for op in ["pull", "fetch"] {
        let (d, m) = (median(&secs[&(op, "direct")]), median(&secs[&(op, "mirror")]));
        eprintln!(
            "mirror_pull_bench_result op={op} image_MB={mb:.1} rounds={rounds} direct_s={d:.2} mirror_s={m:.2} \
             direct_MBps={:.0} mirror_MBps={:.0} mirror_over_direct_throughput={:.2} (target >= 0.90) \
             direct_runs={:?} mirror_runs={:?} warm_up_s={:.2}",
            mb / d,
            mb / m,
            d / m,
            secs[&(op, "direct")],
            secs[&(op, "mirror")],
            warm_up.as_secs_f64()
        );
    }
    let gets = 1 + 2 * rounds;
    assert_eq!(
        blob_gets(&registry, &image),
        vec![gets; 1 + image.layers.len()],
        "each blob: once to the seed, once per direct pull and fetch; more means a mirror went upstream"
    );
    drop(ctrd);
    stop_all(&mut peers);
    stop_all(&mut [seed, warm]);
    sched.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
