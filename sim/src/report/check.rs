//! `sim check` / `sim bless`: the CI regression gate over `summary.json` files.
//!
//! Every `<baseline>/<scenario>/summary.json` is compared with the fresh
//! `<current>/<scenario>/summary.json`, mode by mode and metric by metric. A metric fails
//! when it grows by more than its tolerance (percent of the baseline value); getting
//! smaller never fails (it is reported as "improved"). The default tolerances are
//! [`DEFAULT_TOLERANCES_PCT`]; `--tolerance-file` overrides any of them.

use super::format::text_table;
use super::summary::{ModeSummary, Summary};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// How much each metric may grow, in percent of the baseline, before `sim check` fails.
/// Keep in sync with sim/README.md.
pub const DEFAULT_TOLERANCES_PCT: [(&str, f64); 7] = [
    ("startup_p50_s", 5.0),
    ("startup_p99_s", 5.0),
    ("startup_max_s", 5.0),
    ("makespan_s", 5.0),
    ("registry_bytes", 1.0),
    ("registry_peak_bps", 10.0),
    ("registry_requests", 5.0),
];

/// Metric values of one mode summary, in `DEFAULT_TOLERANCES_PCT` order. A time that did
/// not happen (null / NaN) counts as infinitely late.
fn metric_values(m: &ModeSummary) -> [f64; 7] {
    let t = |x: f64| if x.is_nan() { f64::INFINITY } else { x };
    [
        t(m.startup_p50_s),
        t(m.startup_p99_s),
        t(m.startup_max_s),
        t(m.makespan_s),
        m.registry_bytes as f64,
        m.registry_peak_bps as f64,
        m.registry_requests as f64,
    ]
}

/// Why `check` / `bless` could not compare (exit code 2).
#[derive(Debug, Clone, PartialEq)]
pub enum CheckError {
    /// A file or directory that should be there is missing or unreadable.
    Unreadable { path: PathBuf, why: String },
    /// Baseline and current describe different runs (seed, policy, pods, ...).
    NotComparable { scenario: String, why: String },
    /// Bad tolerance file.
    Tolerance { path: PathBuf, why: String },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Unreadable { path, why } => write!(f, "{}: {why}", path.display()),
            CheckError::NotComparable { scenario, why } => {
                write!(f, "{scenario}: baseline and current are not comparable: {why}")
            }
            CheckError::Tolerance { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

/// Allowed growth per metric, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerances {
    pct: BTreeMap<String, f64>,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { pct: DEFAULT_TOLERANCES_PCT.iter().map(|(k, v)| (k.to_string(), *v)).collect() }
    }
}

impl Tolerances {
    pub fn pct(&self, metric: &str) -> f64 {
        self.pct[metric]
    }

    /// A TOML file of `metric = percent` lines, e.g. `registry_bytes = 2.5`; metrics not
    /// named keep their defaults.
    pub fn from_toml(path: &Path, text: &str) -> Result<Tolerances, CheckError> {
        let err = |why: String| CheckError::Tolerance { path: path.to_path_buf(), why };
        let table: toml::Table = toml::from_str(text).map_err(|e| err(e.message().to_string()))?;
        let mut t = Tolerances::default();
        for (k, v) in table {
            if !t.pct.contains_key(&k) {
                let names: Vec<&str> = DEFAULT_TOLERANCES_PCT.iter().map(|(n, _)| *n).collect();
                return Err(err(format!("{k}: unknown metric (expected one of {})", names.join(", "))));
            }
            let pct = match v {
                toml::Value::Integer(i) => i as f64,
                toml::Value::Float(f) => f,
                other => return Err(err(format!("{k}: expected a percentage, got {}", other.type_str()))),
            };
            if !(pct.is_finite() && pct >= 0.0) {
                return Err(err(format!("{k}: tolerance must be a percentage >= 0, got {pct}")));
            }
            t.pct.insert(k, pct);
        }
        Ok(t)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Same,
    Within,
    Improved,
    Regressed,
}

/// One metric of one mode of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub scenario: String,
    pub mode: String,
    pub metric: &'static str,
    pub baseline: f64,
    pub current: f64,
    /// (current - baseline) / baseline, in percent (infinite from a zero or finite->never).
    pub change_pct: f64,
    pub limit_pct: f64,
    pub verdict: Verdict,
}

fn judge(baseline: f64, current: f64, limit_pct: f64) -> (f64, Verdict) {
    if current == baseline {
        return (0.0, Verdict::Same);
    }
    let change = if baseline == 0.0 || baseline.is_infinite() || current.is_infinite() {
        if current > baseline {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        }
    } else {
        (current - baseline) / baseline * 100.0
    };
    if current < baseline {
        // Keep the finite percentage when there is one.
        let c = if baseline.is_finite() && baseline != 0.0 { (current - baseline) / baseline * 100.0 } else { change };
        return (c, Verdict::Improved);
    }
    // A hair of slack for the rounding of summary.json values.
    if change <= limit_pct + 1e-9 {
        (change, Verdict::Within)
    } else {
        (change, Verdict::Regressed)
    }
}

/// Compares one scenario's summaries.
pub fn compare(base: &Summary, cur: &Summary, tol: &Tolerances) -> Result<Vec<Finding>, CheckError> {
    let scenario = base.scenario.clone();
    let nc = |why: String| CheckError::NotComparable { scenario: scenario.clone(), why };
    if base.seed != cur.seed {
        return Err(nc(format!("seed {} vs {}", base.seed, cur.seed)));
    }
    if base.policy != cur.policy {
        return Err(nc(format!("policy {} vs {}", base.policy, cur.policy)));
    }
    if base.image_bytes != cur.image_bytes {
        return Err(nc(format!("image_bytes {} vs {}", base.image_bytes, cur.image_bytes)));
    }
    let mut out = vec![];
    for (mode, b) in &base.modes {
        let Some(c) = cur.modes.get(mode) else {
            return Err(nc(format!("mode {mode} is in the baseline but was not run")));
        };
        if b.pods != c.pods {
            return Err(nc(format!("mode {mode}: {} pods vs {}", b.pods, c.pods)));
        }
        let (bv, cv) = (metric_values(b), metric_values(c));
        for (i, (metric, _)) in DEFAULT_TOLERANCES_PCT.iter().enumerate() {
            let limit = tol.pct(metric);
            let (change_pct, verdict) = judge(bv[i], cv[i], limit);
            out.push(Finding {
                scenario: scenario.clone(),
                mode: mode.clone(),
                metric,
                baseline: bv[i],
                current: cv[i],
                change_pct,
                limit_pct: limit,
                verdict,
            });
        }
    }
    Ok(out)
}

/// Scenario directories directly under `dir` that hold a `summary.json`, sorted by name.
pub fn summary_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, CheckError> {
    let rd = fs::read_dir(dir).map_err(|e| CheckError::Unreadable { path: dir.to_path_buf(), why: e.to_string() })?;
    let mut out = vec![];
    for entry in rd.flatten() {
        let p = entry.path().join("summary.json");
        if p.is_file() {
            out.push((entry.file_name().to_string_lossy().into_owned(), p));
        }
    }
    out.sort();
    Ok(out)
}

fn read_summary(path: &Path) -> Result<Summary, CheckError> {
    let text = fs::read_to_string(path).map_err(|e| CheckError::Unreadable {
        path: path.to_path_buf(),
        why: if e.kind() == std::io::ErrorKind::NotFound { "missing".to_string() } else { e.to_string() },
    })?;
    Summary::from_json(&text)
        .map_err(|e| CheckError::Unreadable { path: path.to_path_buf(), why: format!("not a summary.json: {e}") })
}

/// The result of `sim check`.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub findings: Vec<Finding>,
    /// Scenarios with a fresh summary but no baseline (not checked).
    pub unchecked: Vec<String>,
}

impl CheckOutcome {
    pub fn regressions(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.verdict == Verdict::Regressed)
    }
    pub fn passed(&self) -> bool {
        self.regressions().next().is_none()
    }
    /// 0 when nothing regressed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.passed() {
            0
        } else {
            1
        }
    }

    /// What `sim check` prints.
    pub fn render(&self, tol: &Tolerances) -> String {
        let mut out = String::new();
        for f in self.regressions() {
            out.push_str(&format!(
                "REGRESSION {} {} {}: baseline {}, current {}, {} (limit +{}%)\n",
                f.scenario,
                f.mode,
                f.metric,
                num(f.baseline),
                num(f.current),
                pct(f.change_pct),
                tol.pct(f.metric)
            ));
        }
        for f in self.findings.iter().filter(|f| f.verdict == Verdict::Improved) {
            out.push_str(&format!(
                "improved   {} {} {}: baseline {}, current {}, {}\n",
                f.scenario,
                f.mode,
                f.metric,
                num(f.baseline),
                num(f.current),
                pct(f.change_pct)
            ));
        }
        for s in &self.unchecked {
            out.push_str(&format!("note: {s} has no baseline (not checked)\n"));
        }
        let n_reg = self.regressions().count();
        if n_reg > 0 {
            out.push_str(&format!("FAILED: {n_reg} metric(s) regressed beyond tolerance\n"));
            return out;
        }
        // OK table: change in % per metric, scenario x mode.
        let short = ["p50", "p99", "max", "makespan", "reg bytes", "reg peak", "reg reqs"];
        let mut header = vec!["scenario".to_string(), "mode".to_string()];
        header.extend(short.iter().map(|s| s.to_string()));
        let mut rows: Vec<Vec<String>> = vec![];
        for chunk in self.findings.chunks(DEFAULT_TOLERANCES_PCT.len()) {
            let mut r = vec![chunk[0].scenario.clone(), chunk[0].mode.clone()];
            r.extend(chunk.iter().map(|f| pct(f.change_pct)));
            rows.push(r);
        }
        out.push_str(&text_table(&header, &rows));
        let limits: Vec<String> = DEFAULT_TOLERANCES_PCT.iter().map(|(m, _)| format!("{m} +{}%", tol.pct(m))).collect();
        out.push_str(&format!("OK: {} scenario x mode pairs within tolerance ({})\n", rows.len(), limits.join(", ")));
        out
    }
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        "never".to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn pct(p: f64) -> String {
    if p.is_infinite() {
        if p > 0.0 {
            "+inf%".into()
        } else {
            "-inf%".into()
        }
    } else if p == 0.0 {
        "0.00%".into()
    } else {
        format!("{p:+.2}%")
    }
}

/// `sim check`: every baseline summary against its current one. `Err` (exit 2) lists every
/// missing or unreadable file.
pub fn check(baseline_dir: &Path, current_dir: &Path, tol: &Tolerances) -> Result<CheckOutcome, Vec<CheckError>> {
    let base = summary_dirs(baseline_dir).map_err(|e| vec![e])?;
    if base.is_empty() {
        return Err(vec![CheckError::Unreadable {
            path: baseline_dir.to_path_buf(),
            why: "no <scenario>/summary.json baseline in this directory".to_string(),
        }]);
    }
    if !current_dir.is_dir() {
        return Err(vec![CheckError::Unreadable { path: current_dir.to_path_buf(), why: "missing".to_string() }]);
    }
    let mut errors = vec![];
    let mut findings = vec![];
    for (name, bpath) in &base {
        let b = match read_summary(bpath) {
            Ok(b) => b,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let cpath = current_dir.join(name).join("summary.json");
        let c = match read_summary(&cpath) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match compare(&b, &c, tol) {
            Ok(f) => findings.extend(f),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let baseline_names: Vec<&String> = base.iter().map(|(n, _)| n).collect();
    let unchecked = summary_dirs(current_dir)
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !baseline_names.contains(&n))
        .collect();
    Ok(CheckOutcome { findings, unchecked })
}

/// `sim bless`: copies every `from/<scenario>/summary.json` to `to/<scenario>/summary.json`
/// (the baseline directory itself is skipped when it lies inside `from`).
pub fn bless(from: &Path, to: &Path) -> Result<Vec<PathBuf>, CheckError> {
    let sources = summary_dirs(from)?;
    if sources.is_empty() {
        return Err(CheckError::Unreadable {
            path: from.to_path_buf(),
            why: "no <scenario>/summary.json here to bless".to_string(),
        });
    }
    let to_canon = fs::canonicalize(to).ok();
    let mut out = vec![];
    for (name, src) in sources {
        let src_dir = src.parent().unwrap();
        if to_canon.is_some() && fs::canonicalize(src_dir).ok() == to_canon {
            continue;
        }
        // Refuse to bless something that is not a summary.
        read_summary(&src)?;
        let dir = to.join(&name);
        fs::create_dir_all(&dir).map_err(|e| CheckError::Unreadable { path: dir.clone(), why: e.to_string() })?;
        let dst = dir.join("summary.json");
        fs::copy(&src, &dst).map_err(|e| CheckError::Unreadable { path: dst.clone(), why: e.to_string() })?;
        out.push(dst);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;

    fn base() -> Summary {
        Summary::of(&fake_run("tensorflow-50", 50, 1_000_000_000, 1))
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sim-check-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn identical_passes() {
        let b = base();
        let f = compare(&b, &b.clone(), &Tolerances::default()).unwrap();
        assert_eq!(f.len(), 3 * 7);
        assert!(f.iter().all(|f| f.verdict == Verdict::Same));
    }

    #[test]
    fn regression_beyond_tolerance_fails_naming_the_metric() {
        let b = base();
        let mut c = b.clone();
        c.modes.get_mut("p2p").unwrap().startup_p99_s *= 1.06; // +6% > 5%
        let tol = Tolerances::default();
        let outcome = CheckOutcome { findings: compare(&b, &c, &tol).unwrap(), unchecked: vec![] };
        assert!(!outcome.passed());
        assert_eq!(outcome.exit_code(), 1);
        let regs: Vec<&Finding> = outcome.regressions().collect();
        assert_eq!(regs.len(), 1);
        assert_eq!((regs[0].mode.as_str(), regs[0].metric), ("p2p", "startup_p99_s"));
        assert!((regs[0].change_pct - 6.0).abs() < 1e-6);
        let text = outcome.render(&tol);
        let line = text.lines().find(|l| l.starts_with("REGRESSION")).unwrap();
        assert!(line.contains("tensorflow-50"), "{line}");
        assert!(line.contains("p2p startup_p99_s"), "{line}");
        assert!(line.contains(&format!("baseline {}", num(b.modes["p2p"].startup_p99_s))), "{line}");
        assert!(line.contains("+6.00%"), "{line}");
    }

    #[test]
    fn within_tolerance_passes() {
        let b = base();
        let mut c = b.clone();
        let m = c.modes.get_mut("oci").unwrap();
        m.makespan_s *= 1.049;
        m.registry_bytes = (m.registry_bytes as f64 * 1.009) as u64;
        m.registry_peak_bps = (m.registry_peak_bps as f64 * 1.099) as u64;
        m.registry_requests = (m.registry_requests as f64 * 1.04) as u64;
        let tol = Tolerances::default();
        let outcome = CheckOutcome { findings: compare(&b, &c, &tol).unwrap(), unchecked: vec![] };
        assert!(outcome.passed(), "{}", outcome.render(&tol));
        assert!(outcome.render(&tol).contains("OK: 3 scenario x mode pairs"));
        // registry_bytes has the tightest limit: +1.1% fails.
        let mut c2 = b.clone();
        let m = c2.modes.get_mut("oci").unwrap();
        m.registry_bytes = (m.registry_bytes as f64 * 1.011) as u64;
        let f = compare(&b, &c2, &tol).unwrap();
        let r: Vec<_> = f.iter().filter(|f| f.verdict == Verdict::Regressed).collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].metric, "registry_bytes");
    }

    #[test]
    fn improvement_passes_and_is_reported() {
        let b = base();
        let mut c = b.clone();
        c.modes.get_mut("p2p").unwrap().startup_p50_s *= 0.5;
        c.modes.get_mut("oci").unwrap().registry_bytes /= 2;
        let tol = Tolerances::default();
        let outcome = CheckOutcome { findings: compare(&b, &c, &tol).unwrap(), unchecked: vec![] };
        assert!(outcome.passed());
        let text = outcome.render(&tol);
        assert!(text.contains("improved   tensorflow-50 p2p startup_p50_s"), "{text}");
        assert!(text.contains("-50.00%"), "{text}");
    }

    #[test]
    fn never_started_is_worse_than_any_time() {
        assert_eq!(judge(10.0, f64::INFINITY, 5.0).1, Verdict::Regressed);
        assert_eq!(judge(f64::INFINITY, 10.0, 5.0).1, Verdict::Improved);
        assert_eq!(judge(f64::INFINITY, f64::INFINITY, 5.0).1, Verdict::Same);
        assert_eq!(judge(0.0, 1.0, 5.0).1, Verdict::Regressed);
        assert_eq!(judge(0.0, 0.0, 5.0).1, Verdict::Same);
    }

    #[test]
    fn different_runs_are_not_comparable() {
        let b = base();
        let mut c = b.clone();
        c.seed = 2;
        assert!(matches!(compare(&b, &c, &Tolerances::default()), Err(CheckError::NotComparable { .. })));
        let mut c = b.clone();
        c.modes.remove("p2p-lazy");
        let e = compare(&b, &c, &Tolerances::default()).unwrap_err();
        assert!(e.to_string().contains("p2p-lazy"), "{e}");
    }

    #[test]
    fn missing_files_are_errors_naming_the_file() {
        let root = scratch("missing");
        let baseline = root.join("baseline");
        let current = root.join("current");
        fs::create_dir_all(baseline.join("nginx-50")).unwrap();
        fs::create_dir_all(&current).unwrap();
        fs::write(baseline.join("nginx-50/summary.json"), base().to_json()).unwrap();
        let errs = check(&baseline, &current, &Tolerances::default()).unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(msg.contains("current/nginx-50/summary.json"), "{msg}");
        assert!(msg.contains("missing"), "{msg}");
        // Missing baseline directory.
        let errs = check(&root.join("nope"), &current, &Tolerances::default()).unwrap_err();
        assert!(errs[0].to_string().contains("nope"));
        // Empty baseline directory.
        let empty = root.join("empty");
        fs::create_dir_all(&empty).unwrap();
        assert!(check(&empty, &current, &Tolerances::default()).is_err());
        // Unreadable (not JSON) current file.
        fs::create_dir_all(current.join("nginx-50")).unwrap();
        fs::write(current.join("nginx-50/summary.json"), "{").unwrap();
        let errs = check(&baseline, &current, &Tolerances::default()).unwrap_err();
        assert!(errs[0].to_string().contains("not a summary.json"), "{}", errs[0]);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn bless_then_check_passes() {
        let root = scratch("bless");
        let reports = root.join("reports");
        for name in ["nginx-50", "tensorflow-50"] {
            fs::create_dir_all(reports.join(name)).unwrap();
            let mut s = base();
            s.scenario = name.to_string();
            fs::write(reports.join(name).join("summary.json"), s.to_json()).unwrap();
        }
        let baseline = reports.join("baseline");
        let copied = bless(&reports, &baseline).unwrap();
        assert_eq!(copied.len(), 2);
        // Blessing again does not copy the baseline into itself.
        assert_eq!(bless(&reports, &baseline).unwrap().len(), 2);
        assert!(!baseline.join("baseline").exists());
        let outcome = check(&baseline, &reports, &Tolerances::default()).unwrap();
        assert!(outcome.passed());
        assert!(outcome.unchecked.is_empty(), "{:?}", outcome.unchecked);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn tolerance_file_overrides_and_rejects_unknown_metrics() {
        let p = Path::new("tol.toml");
        let t = Tolerances::from_toml(p, "registry_bytes = 2.5\nmakespan_s = 10\n").unwrap();
        assert_eq!(t.pct("registry_bytes"), 2.5);
        assert_eq!(t.pct("makespan_s"), 10.0);
        assert_eq!(t.pct("startup_p50_s"), 5.0);
        let e = Tolerances::from_toml(p, "registry_byte = 1\n").unwrap_err();
        assert!(e.to_string().contains("registry_byte: unknown metric"), "{e}");
        assert!(Tolerances::from_toml(p, "makespan_s = -1\n").is_err());
        assert!(Tolerances::from_toml(p, "makespan_s = \"5%\"\n").is_err());
    }
}
