//! `--target 'MODE.METRIC<=VALUE'`: which grid points meet a goal, and the cheapest of them.
//!
//! Cheapest means, in order: the least registry egress of the target's mode
//! (`registry_bytes`, then `registry_peak_bps`), then the fewest seed peers, then the
//! fewest pods, then the slowest node links, seed peer links and registry (what the
//! cluster must provision), then the grid's own order.

use super::table::{PointFacts, Row};
use crate::scenario::Mode;

/// The metric columns of `sweep.csv` a target can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Pods,
    StartupP50,
    StartupP99,
    StartupMax,
    Makespan,
    RegistryBytes,
    RegistryPeakBps,
    RegistryRequests,
    LowerBound,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::Pods,
        Metric::StartupP50,
        Metric::StartupP99,
        Metric::StartupMax,
        Metric::Makespan,
        Metric::RegistryBytes,
        Metric::RegistryPeakBps,
        Metric::RegistryRequests,
        Metric::LowerBound,
    ];

    /// The column name in `sweep.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Pods => "pods",
            Metric::StartupP50 => "startup_p50_s",
            Metric::StartupP99 => "startup_p99_s",
            Metric::StartupMax => "startup_max_s",
            Metric::Makespan => "makespan_s",
            Metric::RegistryBytes => "registry_bytes",
            Metric::RegistryPeakBps => "registry_peak_bps",
            Metric::RegistryRequests => "registry_requests",
            Metric::LowerBound => "lower_bound_s",
        }
    }

    /// For chart titles: "start p99", "registry peak".
    pub fn label(self) -> &'static str {
        match self {
            Metric::Pods => "pods",
            Metric::StartupP50 => "start p50",
            Metric::StartupP99 => "start p99",
            Metric::StartupMax => "start max",
            Metric::Makespan => "makespan",
            Metric::RegistryBytes => "registry bytes",
            Metric::RegistryPeakBps => "registry peak",
            Metric::RegistryRequests => "registry requests",
            Metric::LowerBound => "lower bound",
        }
    }

    /// The row's value; a time that never came (a pod that never started) is infinite.
    pub fn of(self, r: &Row) -> f64 {
        let s = &r.summary;
        match self {
            Metric::Pods => s.pods as f64,
            Metric::StartupP50 => s.startup_p50_s,
            Metric::StartupP99 => s.startup_p99_s,
            Metric::StartupMax => s.startup_max_s,
            Metric::Makespan => s.makespan_s,
            Metric::RegistryBytes => s.registry_bytes as f64,
            Metric::RegistryPeakBps => s.registry_peak_bps as f64,
            Metric::RegistryRequests => s.registry_requests as f64,
            Metric::LowerBound => r.lower_bound_s,
        }
    }

    /// A value for people: "31.2 s", "1.23 GB", "4.21 Gbit/s", "350".
    pub fn show(self, v: f64) -> String {
        use crate::report::format::{bytes_f, secs, thousands};
        if !v.is_finite() {
            return "never".into();
        }
        match self {
            Metric::StartupP50 | Metric::StartupP99 | Metric::StartupMax | Metric::Makespan | Metric::LowerBound => {
                secs(v)
            }
            Metric::RegistryBytes => bytes_f(v),
            Metric::RegistryPeakBps => format!("{:.2} Gbit/s", v / 1e9),
            Metric::Pods | Metric::RegistryRequests => thousands(v.max(0.0) as u64),
        }
    }

    pub fn is_time(self) -> bool {
        matches!(
            self,
            Metric::StartupP50 | Metric::StartupP99 | Metric::StartupMax | Metric::Makespan | Metric::LowerBound
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Le,
    Lt,
    Ge,
    Gt,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }

    /// For charts, where text reads as prose: "≤" for <=.
    pub fn sign(self) -> &'static str {
        match self {
            Op::Le => "\u{2264}",
            Op::Ge => "\u{2265}",
            Op::Lt => "<",
            Op::Gt => ">",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub mode: Mode,
    pub metric: Metric,
    pub op: Op,
    pub value: f64,
}

const FORM: &str = "expected MODE.METRIC<=VALUE (or <, >=, >), e.g. p2p.startup_p99_s<=30";

impl Target {
    pub fn parse(arg: &str) -> Result<Target, String> {
        let bad = |why: String| Err(format!("--target {arg:?}: {why}"));
        let Some(at) = arg.find(['<', '>']) else {
            return bad(format!("no comparison; {FORM}"));
        };
        let (lhs, rest) = arg.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let Some((mode, metric)) = lhs.trim().split_once('.') else {
            return bad(format!("no MODE.METRIC before {}; {FORM}", op.symbol()));
        };
        let Some(mode) = Mode::ALL.into_iter().find(|m| m.name() == mode.trim()) else {
            let modes: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
            return bad(format!("unknown mode {:?} (modes: {})", mode.trim(), modes.join(", ")));
        };
        let Some(metric) = Metric::ALL.into_iter().find(|m| m.name() == metric.trim()) else {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            return bad(format!("unknown metric {:?} (the columns of sweep.csv: {})", metric.trim(), names.join(", ")));
        };
        let Some(value) = value.trim().replace('_', "").parse::<f64>().ok().filter(|v| v.is_finite()) else {
            return bad(format!("{:?} after {} is not a number; {FORM}", value.trim(), op.symbol()));
        };
        Ok(Target { mode, metric, op, value })
    }

    pub fn holds(&self, v: f64) -> bool {
        match self.op {
            Op::Le => v <= self.value,
            Op::Lt => v < self.value,
            Op::Ge => v >= self.value,
            Op::Gt => v > self.value,
        }
    }

    /// "p2p.startup_p99_s <= 30".
    pub fn text(&self) -> String {
        format!("{}.{} {} {}", self.mode.name(), self.metric.name(), self.op.symbol(), self.value)
    }
}

/// What a target says of a sweep's rows (indices into the rows).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Rows of the target's mode meeting it, cheapest first.
    pub meeting: Vec<usize>,
    /// Rows of the target's mode, for the count.
    pub considered: usize,
    /// When none meets it: the row whose value is nearest the threshold.
    pub closest: Option<usize>,
}

impl Verdict {
    pub fn cheapest(&self) -> Option<usize> {
        self.meeting.first().copied()
    }
}

/// The order of `cheapest`, as a comparison of two rows.
fn cost_order(a: (&Row, &PointFacts), b: (&Row, &PointFacts)) -> std::cmp::Ordering {
    let key = |(r, f): (&Row, &PointFacts)| {
        [
            r.summary.registry_bytes as f64,
            r.summary.registry_peak_bps as f64,
            f64::from(f.seed_peers),
            f64::from(f.pods),
            f.node_bandwidth_gbps,
            f.seed_peer_bandwidth_gbps,
            f.registry_gbps,
            r.point as f64,
        ]
    };
    let (ka, kb) = (key(a), key(b));
    ka.iter().zip(kb.iter()).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
}

pub fn judge(target: &Target, rows: &[Row], facts: &[PointFacts]) -> Verdict {
    let of_mode: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].mode == target.mode).collect();
    let with = |i: usize| (&rows[i], &facts[rows[i].point]);
    let mut meeting: Vec<usize> =
        of_mode.iter().copied().filter(|&i| target.holds(target.metric.of(&rows[i]))).collect();
    meeting.sort_by(|&a, &b| cost_order(with(a), with(b)));
    let closest = if meeting.is_empty() {
        let miss = |i: usize| {
            let d = (target.metric.of(&rows[i]) - target.value).abs();
            if d.is_finite() {
                d
            } else {
                f64::INFINITY
            }
        };
        of_mode.iter().copied().min_by(|&a, &b| miss(a).total_cmp(&miss(b)).then(cost_order(with(a), with(b))))
    } else {
        None
    };
    Verdict { meeting, considered: of_mode.len(), closest }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::ModeSummary;

    fn err(s: &str) -> String {
        Target::parse(s).unwrap_err()
    }

    #[test]
    fn forms_and_operators() {
        let t = Target::parse("p2p.startup_p99_s<=30").unwrap();
        assert_eq!((t.mode, t.metric, t.op, t.value), (Mode::P2p, Metric::StartupP99, Op::Le, 30.0));
        assert_eq!(t.text(), "p2p.startup_p99_s <= 30");
        let t = Target::parse(" p2p-lazy.registry_bytes < 1_000_000_000 ").unwrap();
        assert_eq!((t.mode, t.metric, t.op, t.value), (Mode::P2pLazy, Metric::RegistryBytes, Op::Lt, 1e9));
        assert_eq!(Target::parse("oci.makespan_s>=2.5").unwrap().op, Op::Ge);
        let t = Target::parse("oci.registry_peak_bps > 1e9").unwrap();
        assert_eq!((t.op, t.value), (Op::Gt, 1e9));
        assert!(t.holds(2e9) && !t.holds(1e9));
        let le = Target::parse("p2p.makespan_s<=3").unwrap();
        assert!(le.holds(3.0) && !le.holds(f64::INFINITY) && !le.holds(f64::NAN));
    }

    #[test]
    fn malformed_targets_are_refused_naming_them() {
        for (arg, why) in [
            ("p2p.startup_p99_s=30", "no comparison"),
            ("p2p.startup_p99_s", "no comparison"),
            ("startup_p99_s<=30", "no MODE.METRIC"),
            ("p2.startup_p99_s<=30", "unknown mode \"p2\" (modes: oci, p2p, p2p-lazy)"),
            ("p2p.p99<=30", "unknown metric \"p99\" (the columns of sweep.csv: pods, startup_p50_s"),
            ("p2p.startup_p99_s<=", "\"\" after <= is not a number"),
            ("p2p.startup_p99_s<=30s", "\"30s\" after <= is not a number"),
            ("p2p.startup_p99_s<=<30", "is not a number"),
        ] {
            let e = err(arg);
            assert!(e.starts_with(&format!("--target {arg:?}: ")), "{e}");
            assert!(e.contains(why), "{arg}: {e}");
        }
    }

    fn row(point: usize, mode: Mode, p99: f64, registry_bytes: u64) -> Row {
        Row {
            point,
            values: vec![],
            mode,
            lower_bound_s: 1.0,
            summary: ModeSummary {
                pods: 10,
                startup_p50_s: p99 / 2.0,
                startup_p99_s: p99,
                startup_max_s: p99,
                makespan_s: p99,
                registry_bytes,
                registry_peak_bps: 1_000,
                registry_requests: 5,
                node_groups: Default::default(),
                workloads: Default::default(),
                preheats: Default::default(),
                churn: None,
            },
        }
    }

    fn facts(seed_peers: u32) -> PointFacts {
        PointFacts { seed_peers, pods: 10, node_bandwidth_gbps: 1.0, seed_peer_bandwidth_gbps: 1.0, registry_gbps: 1.0 }
    }

    #[test]
    fn cheapest_is_least_egress_then_fewest_seed_peers() {
        let rows = vec![
            row(0, Mode::Oci, 5.0, 1),
            row(0, Mode::P2p, 40.0, 100),
            row(1, Mode::P2p, 20.0, 300),
            row(2, Mode::P2p, 25.0, 200),
            row(3, Mode::P2p, 29.0, 200),
        ];
        let f = vec![facts(1), facts(2), facts(4), facts(3)];
        let t = Target::parse("p2p.startup_p99_s<=30").unwrap();
        let v = judge(&t, &rows, &f);
        // 200 bytes at points 2 (4 seeds) and 3 (3 seeds): fewer seed peers first.
        assert_eq!(v.meeting, [4, 3, 2]);
        assert_eq!((v.cheapest(), v.considered, v.closest), (Some(4), 4, None));
        let none = judge(&Target::parse("p2p.startup_p99_s<=10").unwrap(), &rows, &f);
        assert!(none.meeting.is_empty());
        assert_eq!(none.closest, Some(2));
        // A mode that never started is the farthest from any threshold.
        let mut never = rows.clone();
        never[2].summary.startup_p99_s = f64::INFINITY;
        assert_eq!(judge(&Target::parse("p2p.startup_p99_s<=10").unwrap(), &never, &f).closest, Some(3));
    }
}
