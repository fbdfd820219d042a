//! The `sim` command line parsed by hand (no framework): every command and flag, and a
//! usage error naming the flag at fault.

use super::{sweep, sweep_job};
use std::path::PathBuf;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run {
        scenario: PathBuf,
        seed: Option<u64>,
        policy: Option<String>,
        out: PathBuf,
    },
    Matrix {
        inputs: Vec<PathBuf>,
        seed: Option<u64>,
        policy: Option<String>,
        out: PathBuf,
    },
    ComparePolicies {
        scenario: PathBuf,
        seed: Option<u64>,
        out: PathBuf,
    },
    Check {
        baseline: PathBuf,
        current: PathBuf,
        tolerance_file: Option<PathBuf>,
    },
    Bless {
        from: PathBuf,
        to: PathBuf,
    },
    Sweep(sweep::SweepArgs),
    SweepCollect {
        dir: PathBuf,
        out: PathBuf,
    },
    SweepPoint(sweep_job::PointArgs),
    FidelityPlan {
        scenario: PathBuf,
        out: PathBuf,
    },
    FidelityCompare {
        scenario: PathBuf,
        measured: PathBuf,
        image: Option<PathBuf>,
        out: PathBuf,
        limits: sim::fidelity::Limits,
    },
    Help,
}

/// A one-line usage error (exit 2).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(super) fn usage_err<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Flags and positionals of one command.
pub(super) struct Parsed {
    pub(super) positionals: Vec<String>,
    flags: Vec<(String, String)>,
}

impl Parsed {
    pub(super) fn take(&self, name: &str) -> Option<&str> {
        self.flags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a flag that may be repeated, in order.
    pub(super) fn take_all(&self, name: &str) -> Vec<&str> {
        self.flags.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Splits `args` into positionals and `--flag value` / `--flag=value` pairs, accepting only
/// `allowed` flags.
pub(super) fn split(cmd: &str, args: &[String], allowed: &[&str]) -> Result<Parsed, UsageError> {
    split_repeating(cmd, args, allowed, &[])
}

/// `split`, with the flags of `repeatable` allowed more than once.
pub(super) fn split_repeating(
    cmd: &str,
    args: &[String],
    allowed: &[&str],
    repeatable: &[&str],
) -> Result<Parsed, UsageError> {
    let mut positionals = vec![];
    let mut flags: Vec<(String, String)> = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            positionals.extend(it.by_ref().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let flag = format!("--{name}");
            if !allowed.contains(&name) {
                let expected = if allowed.is_empty() {
                    "it takes no flags".to_string()
                } else {
                    format!("expected {}", allowed.iter().map(|f| format!("--{f}")).collect::<Vec<_>>().join(", "))
                };
                return usage_err(format!("unknown flag {flag} for `sim {cmd}` ({expected})"));
            }
            let value = match inline {
                Some(v) => v,
                None => match it.next() {
                    Some(v) if !v.starts_with("--") => v.clone(),
                    _ => return usage_err(format!("{flag} needs a value")),
                },
            };
            if value.is_empty() {
                return usage_err(format!("{flag} needs a value"));
            }
            if !repeatable.contains(&name) && flags.iter().any(|(n, _)| n == name) {
                return usage_err(format!("{flag} given twice"));
            }
            flags.push((name.to_string(), value));
        } else if a.starts_with('-') && a.len() > 1 {
            return usage_err(format!("unknown flag {a} for `sim {cmd}` (flags start with --)"));
        } else {
            positionals.push(a.clone());
        }
    }
    Ok(Parsed { positionals, flags })
}

pub(super) fn parse_seed(p: &Parsed) -> Result<Option<u64>, UsageError> {
    match p.take("seed") {
        None => Ok(None),
        Some(v) => match v.replace('_', "").parse::<u64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => usage_err(format!("--seed: expected a non-negative integer, got {v:?}")),
        },
    }
}

pub(super) fn parse_policy(p: &Parsed) -> Result<Option<String>, UsageError> {
    match p.take("policy") {
        None => Ok(None),
        Some(v) => match sched::Policy::parse(v) {
            Some(pol) => Ok(Some(pol.name().to_string())),
            None => usage_err(format!("--policy: unknown policy {v:?} (expected {})", sched::Policy::NAMES.join(", "))),
        },
    }
}

pub(super) fn path_or(p: &Parsed, flag: &str, default: &str) -> PathBuf {
    PathBuf::from(p.take(flag).unwrap_or(default))
}

pub(super) fn one_scenario(cmd: &str, p: &Parsed) -> Result<PathBuf, UsageError> {
    match p.positionals.as_slice() {
        [one] => Ok(PathBuf::from(one)),
        [] => usage_err(format!("`sim {cmd}` needs a scenario file")),
        [_, extra, ..] => usage_err(format!("`sim {cmd}` takes one scenario file; unexpected {extra:?}")),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    if args.iter().take_while(|a| *a != "--").any(|a| a == "-h" || a == "--help" || a == "help") {
        return Ok(Command::Help);
    }
    let Some(first) = args.first() else {
        return usage_err("missing scenario file (try `sim --help`)");
    };
    let rest = &args[1..];
    match first.as_str() {
        "matrix" => {
            let p = split("matrix", rest, &["seed", "policy", "out"])?;
            if p.positionals.is_empty() {
                return usage_err("`sim matrix` needs a directory or scenario files");
            }
            Ok(Command::Matrix {
                inputs: p.positionals.iter().map(PathBuf::from).collect(),
                seed: parse_seed(&p)?,
                policy: parse_policy(&p)?,
                out: path_or(&p, "out", "reports"),
            })
        }
        "compare-policies" => {
            let p = split("compare-policies", rest, &["seed", "out"])?;
            Ok(Command::ComparePolicies {
                scenario: one_scenario("compare-policies", &p)?,
                seed: parse_seed(&p)?,
                out: path_or(&p, "out", "reports"),
            })
        }
        "check" => {
            let p = split("check", rest, &["baseline", "current", "tolerance-file"])?;
            if let Some(extra) = p.positionals.first() {
                return usage_err(format!("`sim check` takes no positional arguments; unexpected {extra:?}"));
            }
            Ok(Command::Check {
                baseline: path_or(&p, "baseline", "reports/baseline"),
                current: path_or(&p, "current", "reports"),
                tolerance_file: p.take("tolerance-file").map(PathBuf::from),
            })
        }
        "bless" => {
            let p = split("bless", rest, &["from", "to"])?;
            if let Some(extra) = p.positionals.first() {
                return usage_err(format!("`sim bless` takes no positional arguments; unexpected {extra:?}"));
            }
            Ok(Command::Bless { from: path_or(&p, "from", "reports"), to: path_or(&p, "to", "reports/baseline") })
        }
        "sweep" => sweep::parse(rest),
        "sweep-point" => sweep_job::parse_point(rest),
        "fidelity-plan" => {
            let p = split("fidelity-plan", rest, &["out"])?;
            let Some(out) = p.take("out") else {
                return usage_err("`sim fidelity-plan` needs --out DIR");
            };
            Ok(Command::FidelityPlan { scenario: one_scenario("fidelity-plan", &p)?, out: PathBuf::from(out) })
        }
        "fidelity-compare" => {
            let p = split(
                "fidelity-compare",
                rest,
                &["measured", "image", "out", "max-error", "max-bytes-error", "max-oci-p50-error"],
            )?;
            let Some(measured) = p.take("measured") else {
                return usage_err("`sim fidelity-compare` needs --measured FILE (bench/netns_fanout.sh's output)");
            };
            let given_pct = |flag: &str| -> Result<Option<f64>, UsageError> {
                match p.take(flag) {
                    None => Ok(None),
                    Some(v) => match v.parse::<f64>() {
                        Ok(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
                        _ => usage_err(format!("--{flag}: expected a percentage >= 0, got {v:?}")),
                    },
                }
            };
            let pct = |flag: &str, default: f64| given_pct(flag).map(|x| x.unwrap_or(default));
            let d = sim::fidelity::Limits::default();
            Ok(Command::FidelityCompare {
                scenario: one_scenario("fidelity-compare", &p)?,
                measured: PathBuf::from(measured),
                image: p.take("image").map(PathBuf::from),
                out: path_or(&p, "out", "reports/fidelity"),
                limits: sim::fidelity::Limits {
                    time_pct: pct("max-error", d.time_pct)?,
                    bytes_pct: pct("max-bytes-error", d.bytes_pct)?,
                    oci_p50_pct: given_pct("max-oci-p50-error")?,
                },
            })
        }
        _ => {
            // `sim SCENARIO.toml ...` or `sim run SCENARIO.toml ...`.
            let args = if first == "run" { rest } else { args };
            let p = split("run", args, &["seed", "policy", "out"])?;
            Ok(Command::Run {
                scenario: one_scenario("run", &p)?,
                seed: parse_seed(&p)?,
                policy: parse_policy(&p)?,
                out: path_or(&p, "out", "reports"),
            })
        }
    }
}

/// Command lines for the parsers' tests (here and in `sweep.rs`, `sweep_job.rs`).
#[cfg(test)]
pub(super) mod testing {
    pub fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// The usage error `sim s` gives.
    pub fn err(s: &str) -> String {
        super::parse(&args(s)).unwrap_err().0
    }
}
