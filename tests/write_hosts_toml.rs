//! `deploy/containerd/write-hosts-toml.sh`, run for real into temporary directories with
//! every POSIX shell found here (dash as `sh`, and busybox, which the DaemonSet's init
//! container uses); each hosts.toml it writes is parsed with the `toml` crate.

use e2e::kustomize::repo_root;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    repo_root().join("deploy/containerd/write-hosts-toml.sh")
}

/// The shells to run the script with: `sh`, and `busybox sh` when busybox is installed.
fn shells() -> Vec<Vec<String>> {
    let mut out = vec![vec!["sh".to_string()]];
    if let Some(b) = ["/usr/bin/busybox", "/bin/busybox"].iter().find(|p| Path::new(p).exists()) {
        out.push(vec![b.to_string(), "sh".into()]);
    }
    out
}

fn run(shell: &[String], args: &[&str]) -> Output {
    Command::new(&shell[0]).args(&shell[1..]).arg(script()).args(args).output().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pimg-hosts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn writes_a_mirror_host_and_the_upstream_fallback_per_registry() {
    for (i, shell) in shells().iter().enumerate() {
        let dir = temp_dir(&format!("write-{i}"));
        let certs = dir.join("certs.d");
        let out = run(
            shell,
            &[
                "--certs-dir",
                certs.to_str().unwrap(),
                "docker.io",
                "ghcr.io",
                "registry.local:5000=http://10.0.0.5:5000",
            ],
        );
        assert!(out.status.success(), "{shell:?}: {}", stderr(&out));
        for (registry, server) in [
            ("docker.io", "https://registry-1.docker.io"),
            ("ghcr.io", "https://ghcr.io"),
            ("registry.local:5000", "http://10.0.0.5:5000"),
        ] {
            let file = certs.join(registry).join("hosts.toml");
            let t = read_toml(&file);
            assert_eq!(t["server"].as_str(), Some(server), "{shell:?}: {registry}");
            let hosts = t["host"].as_table().expect("a [host] table (containerd <= 1.7 needs one)");
            assert_eq!(hosts.len(), 1, "{registry}: one mirror host");
            let mirror =
                hosts["http://127.0.0.1:65001"].as_table().expect("the mirror at peerd's default listen.mirror");
            assert_eq!(mirror["capabilities"], toml::Value::Array(vec!["pull".into(), "resolve".into()]));
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644, "{registry}");
        }
        let leftovers: Vec<_> =
            std::fs::read_dir(certs.join("docker.io")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("hosts.toml")], "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_mirror_address_is_configurable() {
    let dir = temp_dir("mirror");
    let certs = dir.join("c");
    let out =
        run(&shells()[0], &["--certs-dir", certs.to_str().unwrap(), "--mirror", "http://127.0.0.1:18001", "quay.io"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = read_toml(&certs.join("quay.io/hosts.toml"));
    assert!(t["host"].get("http://127.0.0.1:18001").is_some(), "{t:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_name_what_is_wrong_and_write_nothing() {
    for shell in shells() {
        let dir = temp_dir("bad");
        let certs = dir.join("c");
        let c = certs.to_str().unwrap();
        for (args, says) in [
            (vec!["--certs-dir", c, "docker.io", "bad/host"], "\"bad/host\" is not a registry host"),
            (vec!["--certs-dir", c, "docker.io", "x.io=ftp://x.io"], "upstream \"ftp://x.io\" is not an http(s) URL"),
            (vec!["--certs-dir", c, "docker.io", "x.io=https://x.io\"]"], "is not an http(s) URL"),
            (vec!["--certs-dir", c, "--mirror", "127.0.0.1:65001", "docker.io"], "--mirror 127.0.0.1:65001"),
            (vec!["--certs-dir", c], "name at least one registry"),
            (vec!["--certs-dir", c, "--frobnicate", "docker.io"], "unknown option --frobnicate"),
            (vec!["--certs-dir", c, "--remove", "docker.io=https://x"], "--remove takes registry names only"),
        ] {
            let out = run(&shell, &args);
            assert_eq!(out.status.code(), Some(2), "{shell:?} {args:?}");
            assert!(stderr(&out).contains(says), "{shell:?} {args:?}: {}", stderr(&out));
            assert!(!certs.exists(), "{shell:?} {args:?}: wrote something before failing");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn an_unwritable_directory_is_exit_1_with_the_path() {
    let dir = temp_dir("unwritable");
    let not_a_dir = dir.join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let certs = not_a_dir.join("certs.d");
    let out = run(&shells()[0], &["--certs-dir", certs.to_str().unwrap(), "docker.io"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot create"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_foreign_hosts_toml_is_kept_and_restored_on_remove() {
    let dir = temp_dir("foreign");
    let certs = dir.join("c");
    let c = certs.to_str().unwrap();
    let own = "server = \"https://quay.io\"\n[host.\"https://quay-cache.example\"]\n  capabilities = [\"pull\"]\n";
    std::fs::create_dir_all(certs.join("quay.io")).unwrap();
    std::fs::write(certs.join("quay.io/hosts.toml"), own).unwrap();
    for _ in 0..2 {
        // Twice: the second run must not back up the script's own file over the original.
        let out = run(&shells()[0], &["--certs-dir", c, "quay.io", "docker.io"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(certs.join("quay.io/hosts.toml.before-p2pimg")).unwrap(), own);
    assert!(read_toml(&certs.join("quay.io/hosts.toml"))["host"].get("http://127.0.0.1:65001").is_some());
    assert!(!certs.join("docker.io/hosts.toml.before-p2pimg").exists());

    let out = run(&shells()[0], &["--certs-dir", c, "--remove", "quay.io", "docker.io", "ghcr.io"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(certs.join("quay.io/hosts.toml")).unwrap(), own, "the operator's file is back");
    assert!(!certs.join("quay.io/hosts.toml.before-p2pimg").exists());
    assert!(!certs.join("docker.io").exists(), "the script's own file and directory are gone");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ghcr.io/hosts.toml: not written by p2pimg, left alone"));
    let _ = std::fs::remove_dir_all(&dir);
}
