//! The HTML reports in a real browser: runs `sim` (run, compare-policies, sweep, matrix) on
//! the small fidelity scenario into one directory, then opens every page in headless
//! Chromium, saves a screenshot and fails on any console message (the pages hold no script,
//! so any message is an error: a script, a resource that did not load). Also checks that no
//! page links or loads anything over the network and that every link leads to a file.
//!
//! Chromium is required: without it the test fails and says to run `tests/setup.sh`.
//! `SIM_HTML_SHOTS=DIR` keeps the screenshots in DIR.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BROWSERS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];
/// A page that takes longer than this in the browser is a failure, not a hang.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn browser() -> String {
    for b in BROWSERS {
        let found = Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return b.to_string();
        }
    }
    panic!("no headless browser found ({}): run tests/setup.sh (as root) to install chromium", BROWSERS.join(", "));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn sim(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_sim")).args(args).current_dir(repo()).output().unwrap();
    assert!(
        out.status.success(),
        "sim {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd`, killing it after `BROWSER_TIMEOUT`.
fn run_with_timeout(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Drain both pipes on threads so a chatty browser cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = vec![];
        std::io::Read::read_to_end(&mut so, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = vec![];
        std::io::Read::read_to_end(&mut se, &mut v).ok();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the browser took more than {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

fn headless(browser: &str, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args(["--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Every value of an `href=` or `src=` attribute in `html`.
fn attr_values(html: &str) -> Vec<String> {
    let mut out = vec![];
    for attr in [" href=\"", " src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            out.push(rest[..rest.find('"').unwrap_or(rest.len())].to_string());
        }
    }
    out
}

fn unpercent(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The page's links: none leaves the machine, each leads to a file.
fn check_links(page: &Path, html: &str) {
    for v in attr_values(html) {
        assert!(!v.contains("://") && !v.starts_with("//"), "{}: link or source {v:?} is not relative", page.display());
        let target = page.parent().unwrap().join(unpercent(&v.replace("&amp;", "&")));
        assert!(target.is_file(), "{}: link {v:?} leads to no file ({})", page.display(), target.display());
    }
    for scheme in ["http://", "https://"] {
        assert!(!html.contains(&format!("=\"{scheme}")), "{}: an attribute holds a {scheme} URL", page.display());
    }
}

/// Screenshot and console of one page.
fn open_in_browser(browser: &str, page: &Path, out: &Path, shots: &Path, profile: &Path) {
    let url = format!("file://{}", page.display());
    let rel = page.strip_prefix(out).unwrap_or(page);
    let shot = shots.join(format!("{}.png", rel.display().to_string().replace(['/', '\\'], "_")));
    let mut c = headless(browser, profile);
    c.args(["--enable-logging=stderr", "--v=0", "--window-size=1280,2000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url);
    let out = run_with_timeout(c, &url);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{url}: the browser exited {}:\n{log}", out.status);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "{url}: console messages (the pages hold no script):\n{}", console.join("\n"));
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "{url}: screenshot {} is {size} bytes: a blank page?", shot.display());

    // The DOM the browser built: the whole page parsed, charts included.
    let mut c = headless(browser, profile);
    c.arg("--dump-dom").arg(&url);
    let out = run_with_timeout(c, &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<main>") && dom.contains("</main>"), "{url}: the browser's DOM has no <main>:\n{dom}");
    let html = std::fs::read_to_string(page).unwrap();
    assert_eq!(dom.matches("<svg").count(), html.matches("<svg").count(), "{url}: charts lost in parsing");
}

#[test]
fn every_page_opens_in_a_headless_browser_without_console_errors() {
    let browser = browser();
    let tmp = std::env::temp_dir().join(format!("sim-html-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = tmp.join("reports");
    let shots = match std::env::var_os("SIM_HTML_SHOTS") {
        Some(d) => PathBuf::from(d),
        None => tmp.join("shots"),
    };
    std::fs::create_dir_all(&shots).unwrap();
    let o = out.to_str().unwrap();
    let sc = "scenarios/fidelity/small-4.toml";
    sim(&["matrix", sc, "scenarios/fidelity/seeds-2-12-pods.toml", "--out", o]);
    sim(&["compare-policies", sc, "--out", o]);
    sim(&[
        "sweep",
        sc,
        "--vary",
        "cluster.seed_peers=1..2:2",
        "--vary",
        "registry.egress_gbps=0.2..0.4:2",
        "--target",
        "p2p.startup_p99_s<=60",
        "--jobs",
        "2",
        "--out",
        o,
    ]);
    sim(&[sc, "--out", o]);

    let pages: Vec<PathBuf> = [
        "matrix/index.html",
        "small-4/index.html",
        "small-4/policies.html",
        "small-4/sweep/index.html",
        "seeds-2-12-pods/index.html",
    ]
    .iter()
    .map(|p| out.join(p))
    .collect();
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        check_links(page, &html);
    }
    // The scenario's pages reach each other and the matrix.
    let run = std::fs::read_to_string(&pages[1]).unwrap();
    for link in ["../matrix/index.html", "policies.html", "sweep/index.html"] {
        assert!(run.contains(&format!("href=\"{link}\"")), "the run page does not link to {link}");
    }
    let sweep = std::fs::read_to_string(&pages[3]).unwrap();
    assert!(sweep.contains("href=\"../index.html\"") && sweep.contains("href=\"../../matrix/index.html\""));

    let profile = tmp.join("profile");
    for page in &pages {
        open_in_browser(&browser, page, &out, &shots, &profile);
    }
    if std::env::var_os("SIM_HTML_SHOTS").is_some() {
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&profile);
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
