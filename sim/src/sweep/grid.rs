//! The grid of a sweep: one or two varied keys and the cartesian product of their values,
//! and how a grid point's values are written into the scenario.

use super::keys::KeyCatalog;
use super::vary::{NumKind, Vary};
use crate::scenario::Num;

/// Grid points of one sweep. Each is a whole simulation (a second for a 50-pod scenario,
/// minutes for thousands of pods): 10,000 of the smallest already take hours of CPU, and a
/// larger grid is better split into sweeps that each answer one question.
pub const POINTS_MAX: usize = 10_000;

/// Keys one sweep varies: a line chart per key and a heatmap over two.
pub const KEYS_MAX: usize = 2;

/// One varied key and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Dimension {
    pub key: String,
    pub kind: NumKind,
    pub values: Vec<Num>,
    pub geometric: bool,
    /// For a key inside a table of a core table (`peer.piece_sizing.target_pieces`): that
    /// table as the run reads it. The whole table is written, with the key's value, since
    /// such a table is read whole (a `[peer.piece_sizing]` holding only `target_pieces` has
    /// no `rule`).
    whole_table: Option<(String, toml::Table)>,
}

impl Dimension {
    /// Checks `vary`'s key against the scenario's keys and rounds its values to the key's
    /// kind; the second item says what rounding merged.
    pub fn new(vary: &Vary, keys: &KeyCatalog) -> Result<(Dimension, Option<String>), String> {
        let kind = keys.numeric(&vary.key).map_err(|e| format!("--vary {}: {e}", vary.arg))?;
        let (values, note) = vary.values(kind);
        let whole_table = match vary.key.rsplit_once('.') {
            Some((parent, _)) if parent.contains('.') => keys.table(parent).map(|t| (parent.to_string(), t.clone())),
            _ => None,
        };
        Ok((Dimension { key: vary.key.clone(), kind, values, geometric: vary.geometric, whole_table }, note))
    }

    /// What to set in the scenario file for `value`: the key, or its table (see `whole_table`).
    pub fn assignment(&self, value: Num) -> (String, toml::Value) {
        match &self.whole_table {
            None => (self.key.clone(), value.into()),
            Some((parent, table)) => {
                let mut t = table.clone();
                let leaf = &self.key[parent.len() + 1..];
                t.insert(leaf.to_string(), value.into());
                (parent.clone(), toml::Value::Table(t))
            }
        }
    }

    /// "from 1 to 4, 4 points" / "from 50 to 5000, 5 points, geometric".
    pub fn describe(&self) -> String {
        let (first, last) = (self.values[0], self.values[self.values.len() - 1]);
        let spacing = if self.geometric { ", geometric" } else { "" };
        match self.values.len() {
            1 => format!("{} = {first}", self.key),
            n => format!("{} from {first} to {last}, {n} points{spacing}", self.key),
        }
    }
}

/// The cartesian product of one or two dimensions; point `i` takes the first key's value
/// `i / n2` and the second's `i % n2` (the first key varies slowest).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub dims: Vec<Dimension>,
}

impl Grid {
    pub fn new(dims: Vec<Dimension>) -> Result<Grid, String> {
        if dims.is_empty() || dims.len() > KEYS_MAX {
            return Err(format!("a sweep varies 1 or {KEYS_MAX} keys (--vary given {} times)", dims.len()));
        }
        if dims.len() == 2 && dims[0].key == dims[1].key {
            return Err(format!("--vary names {} twice; vary two different keys", dims[0].key));
        }
        let points = dims.iter().map(|d| d.values.len()).product::<usize>();
        if points > POINTS_MAX {
            let sizes: Vec<String> = dims.iter().map(|d| d.values.len().to_string()).collect();
            return Err(format!(
                "the grid has {} = {points} points; at most {POINTS_MAX} (each is a whole simulation): use fewer STEPS",
                sizes.join(" x ")
            ));
        }
        Ok(Grid { dims })
    }

    pub fn len(&self) -> usize {
        self.dims.iter().map(|d| d.values.len()).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of point `i`, one per dimension.
    pub fn values(&self, i: usize) -> Vec<Num> {
        let mut rest = i;
        let mut out = vec![Num::Int(0); self.dims.len()];
        for (d, dim) in self.dims.iter().enumerate().rev() {
            let n = dim.values.len();
            out[d] = dim.values[rest % n];
            rest /= n;
        }
        out
    }

    /// Index of each dimension's value at point `i`.
    pub fn indices(&self, i: usize) -> Vec<usize> {
        let mut rest = i;
        let mut out = vec![0; self.dims.len()];
        for (d, dim) in self.dims.iter().enumerate().rev() {
            out[d] = rest % dim.values.len();
            rest /= dim.values.len();
        }
        out
    }

    /// "cluster.pods = 50, cluster.seed_peers = 2".
    pub fn label(&self, i: usize) -> String {
        let values = self.values(i);
        self.dims.iter().zip(values).map(|(d, v)| format!("{} = {v}", d.key)).collect::<Vec<_>>().join(", ")
    }

    /// The settings of point `i`, for `ScenarioFile::load_with`.
    pub fn assignments(&self, i: usize) -> Vec<(String, toml::Value)> {
        self.dims.iter().zip(self.values(i)).map(|(d, v)| d.assignment(v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    fn keys() -> KeyCatalog {
        let sc = parse_scenario(
            "name = \"t\"\n[cluster]\npods = 4\n[image]\nreference = \"r\"\nlayer_bytes = [10, 20]\n",
            "t.toml",
        )
        .unwrap();
        KeyCatalog::of(&sc).unwrap()
    }

    fn dim(arg: &str) -> Dimension {
        Dimension::new(&Vary::parse(arg).unwrap(), &keys()).unwrap().0
    }

    #[test]
    fn the_product_runs_the_first_key_slowest() {
        let g = Grid::new(vec![dim("cluster.pods=10..30:3"), dim("registry.egress_gbps=1..2:2")]).unwrap();
        assert_eq!(g.len(), 6);
        assert_eq!(g.values(0), [Num::Int(10), Num::Float(1.0)]);
        assert_eq!(g.values(1), [Num::Int(10), Num::Float(2.0)]);
        assert_eq!(g.values(5), [Num::Int(30), Num::Float(2.0)]);
        assert_eq!(g.indices(3), [1, 1]);
        assert_eq!(g.label(2), "cluster.pods = 20, registry.egress_gbps = 1");
        assert_eq!(g.dims[0].describe(), "cluster.pods from 10 to 30, 3 points");
    }

    #[test]
    fn grid_size_keys_and_repeats_are_bounded() {
        let e = Grid::new(vec![dim("cluster.pods=1..200:200"), dim("cluster.seed_peers=1..51:51")]).unwrap_err();
        assert!(e.contains("200 x 51 = 10200 points; at most 10000"), "{e}");
        let e = Grid::new(vec![dim("cluster.pods=1..2:2"), dim("cluster.pods=3..4:2")]).unwrap_err();
        assert!(e.contains("names cluster.pods twice"), "{e}");
        let three = vec![dim("cluster.pods=1..2:2"), dim("cluster.seed_peers=1..2:2"), dim("seed=1..2:2")];
        assert!(Grid::new(three).unwrap_err().contains("1 or 2 keys"));
        let e = Dimension::new(&Vary::parse("cluster.nodes=1..2:2").unwrap(), &keys()).unwrap_err();
        assert!(e.starts_with("--vary cluster.nodes=1..2:2: cluster.nodes is not a key of the scenario"), "{e}");
    }

    #[test]
    fn a_key_in_a_nested_core_table_writes_the_whole_table() {
        let d = dim("peer.piece_sizing.target_pieces=100..200:2");
        let (key, value) = d.assignment(Num::Int(100));
        assert_eq!(key, "peer.piece_sizing");
        let t = value.as_table().unwrap();
        assert_eq!(t["rule"].as_str(), Some("scaled"));
        assert_eq!(t["target_pieces"].as_integer(), Some(100));
        assert_eq!(
            dim("cluster.pods=1..2:2").assignment(Num::Int(2)),
            ("cluster.pods".into(), toml::Value::Integer(2))
        );
    }
}
