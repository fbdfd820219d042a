//! `--vary KEY=A..B:STEPS`: one key of the scenario and the values a sweep gives it.
//!
//! `STEPS` points from `A` to `B`, both included, evenly spaced; `STEPSg` spaces them
//! geometrically (each point a constant factor above the last: 50..5000:5g is 50, 158, 500,
//! 1581, 5000), for keys whose effect is multiplicative (pods, bandwidth).

use crate::scenario::Num;

/// Points of one `--vary`: 10,000 is also the limit of the whole grid (`grid::POINTS_MAX`).
pub const STEPS_MAX: usize = 10_000;

/// What a `--vary` argument says, before the key is checked against the scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    /// The argument as given, for messages.
    pub arg: String,
    /// Dotted key, e.g. `cluster.seed_peers`.
    pub key: String,
    pub from: f64,
    pub to: f64,
    pub steps: usize,
    pub geometric: bool,
}

/// Whether the scenario reads a key as a whole number or a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumKind {
    Int,
    Float,
}

const FORM: &str = "expected KEY=A..B:STEPS, e.g. cluster.seed_peers=1..4:4 (STEPS points from A to B, both included; \
                    STEPSg spaces them geometrically, e.g. cluster.pods=50..5000:5g)";

impl Vary {
    pub fn parse(arg: &str) -> Result<Vary, String> {
        let bad = |why: &str| Err(format!("--vary {arg:?}: {why}{FORM}"));
        let Some((key, spec)) = arg.split_once('=') else {
            return bad("");
        };
        let key = key.trim();
        // Segments are bare TOML keys, the last of a name optionally indexed into an array
        // of tables: cluster.node_groups[0].count.
        let bare = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let segment_ok = |seg: &str| match seg.split_once('[') {
            Some((name, i)) => {
                bare(name)
                    && i.strip_suffix(']').is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
            }
            None => bare(seg),
        };
        let key_ok = !key.is_empty() && key.split('.').all(segment_ok);
        if !key_ok {
            return bad("the key is not a dotted TOML key; ");
        }
        let Some((range, steps)) = spec.trim().rsplit_once(':') else {
            return bad("no :STEPS; ");
        };
        let Some((a, b)) = range.split_once("..") else {
            return bad("no A..B range; ");
        };
        let number = |s: &str| s.trim().replace('_', "").parse::<f64>().ok().filter(|x| x.is_finite());
        let (Some(from), Some(to)) = (number(a), number(b)) else {
            return bad("A and B must be numbers; ");
        };
        let (digits, geometric) = match steps.trim().strip_suffix('g') {
            Some(d) => (d, true),
            None => (steps.trim(), false),
        };
        let steps = match digits.parse::<usize>() {
            Ok(n) if (1..=STEPS_MAX).contains(&n) => n,
            _ => return bad(&format!("STEPS must be a whole number from 1 to {STEPS_MAX}; ")),
        };
        if steps == 1 && from != to {
            return bad("1 step cannot hold both A and B (write A..A:1 for one value); ");
        }
        if geometric && (from <= 0.0 || to <= 0.0) {
            return bad("geometric spacing needs A and B above 0; ");
        }
        Ok(Vary { arg: arg.to_string(), key: key.to_string(), from, to, steps, geometric })
    }

    /// The `steps` values, ends exact.
    pub fn raw_values(&self) -> Vec<f64> {
        let n = self.steps;
        (0..n)
            .map(|i| {
                if i == 0 {
                    self.from
                } else if i == n - 1 {
                    self.to
                } else {
                    let f = i as f64 / (n - 1) as f64;
                    if self.geometric {
                        self.from * (self.to / self.from).powf(f)
                    } else {
                        self.from + (self.to - self.from) * f
                    }
                }
            })
            .collect()
    }

    /// The values as the key takes them: whole numbers rounded for an integer key, six
    /// significant digits for a float key (what is written is what `sweep.csv` shows), each
    /// value once. The second item says what rounding merged, if anything.
    pub fn values(&self, kind: NumKind) -> (Vec<Num>, Option<String>) {
        let raw = self.raw_values();
        let rounded: Vec<Num> = raw
            .iter()
            .map(|&x| match kind {
                NumKind::Int => Num::Int(x.round().clamp(i64::MIN as f64, i64::MAX as f64) as i64),
                NumKind::Float => Num::Float(sig6(x)),
            })
            .collect();
        let mut out: Vec<Num> = vec![];
        for v in &rounded {
            if !out.contains(v) {
                out.push(*v);
            }
        }
        let note = (out.len() < rounded.len()).then(|| {
            let what = match kind {
                NumKind::Int => format!("{} takes whole numbers", self.key),
                NumKind::Float => format!("{} rounded to 6 significant digits", self.key),
            };
            let list = |v: &[Num]| v.iter().map(Num::to_string).collect::<Vec<_>>().join(", ");
            format!(
                "--vary {}: {what}; {} steps give {} distinct values ({}), the sweep runs those",
                self.arg,
                self.steps,
                out.len(),
                list(&out)
            )
        });
        (out, note)
    }
}

/// `x` to six significant digits (2.154434690031884 -> 2.15443).
fn sig6(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.5e}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(arg: &str) -> String {
        Vary::parse(arg).unwrap_err()
    }

    #[test]
    fn linear_and_geometric_forms() {
        let v = Vary::parse("cluster.seed_peers=1..4:4").unwrap();
        assert_eq!((v.key.as_str(), v.from, v.to, v.steps, v.geometric), ("cluster.seed_peers", 1.0, 4.0, 4, false));
        assert_eq!(v.raw_values(), [1.0, 2.0, 3.0, 4.0]);
        for key in ["cluster.node_groups[0].count", "cluster.node_groups.gpu.count"] {
            assert_eq!(Vary::parse(&format!("{key}=1..4:4")).unwrap().key, key);
        }
        for bad in ["cluster.node_groups[].count", "cluster.node_groups[x].count", "cluster.node_groups[0.count"] {
            assert!(Vary::parse(&format!("{bad}=1..4:4")).unwrap_err().contains("not a dotted TOML key"), "{bad}");
        }
        let g = Vary::parse("cluster.pods=50..5000:5g").unwrap();
        assert!(g.geometric);
        let (vals, note) = g.values(NumKind::Int);
        assert_eq!(vals, [50, 158, 500, 1581, 5000].map(Num::Int));
        assert!(note.is_none());
        let f = Vary::parse("registry.egress_gbps = 1..10:4g").unwrap();
        assert_eq!(f.values(NumKind::Float).0, [1.0, 2.15443, 4.64159, 10.0].map(Num::Float));
        // Descending, underscores, exponents, one point.
        assert_eq!(Vary::parse("a.b=1_000..1e2:2").unwrap().raw_values(), [1000.0, 100.0]);
        assert_eq!(Vary::parse("a.b=0.5..0.5:1").unwrap().raw_values(), [0.5]);
        let lin = Vary::parse("x.y=0.1..0.5:5").unwrap().values(NumKind::Float).0;
        assert_eq!(lin, [0.1, 0.2, 0.3, 0.4, 0.5].map(Num::Float));
    }

    #[test]
    fn integer_keys_are_rounded_and_merged_values_said() {
        let v = Vary::parse("cluster.seed_peers=1..4:7").unwrap();
        let (vals, note) = v.values(NumKind::Int);
        assert_eq!(vals, [1, 2, 3, 4].map(Num::Int));
        let note = note.unwrap();
        assert!(
            note.contains("takes whole numbers") && note.contains("7 steps give 4 distinct values (1, 2, 3, 4)"),
            "{note}"
        );
        // As a float key the same range keeps every point.
        assert_eq!(v.values(NumKind::Float).0.len(), 7);
    }

    #[test]
    fn bad_forms_name_the_argument_and_the_form() {
        for (arg, why) in [
            ("cluster.pods", "cluster.pods"),
            ("cluster.pods=1..4", "no :STEPS"),
            ("cluster.pods=1-4:4", "no A..B range"),
            ("cluster.pods=a..4:4", "A and B must be numbers"),
            ("cluster.pods=1..4:0", "STEPS must be a whole number from 1 to 10000"),
            ("cluster.pods=1..4:10001", "from 1 to 10000"),
            ("cluster.pods=1..4:x", "STEPS must be"),
            ("cluster.pods=1..4:1", "1 step cannot hold both"),
            ("cluster.pods=0..4:3g", "geometric spacing needs A and B above 0"),
            ("=1..4:4", "not a dotted TOML key"),
            ("cluster..pods=1..4:4", "not a dotted TOML key"),
            ("cluster.pods=1..inf:4", "must be numbers"),
        ] {
            let e = err(arg);
            assert!(e.starts_with(&format!("--vary {arg:?}: ")), "{e}");
            assert!(e.contains(why), "{arg}: {e}");
            assert!(e.contains("expected KEY=A..B:STEPS"), "{e}");
            assert!(!e.contains('\n'));
        }
    }
}
