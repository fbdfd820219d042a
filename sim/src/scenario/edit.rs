//! A scenario file with some of its numeric keys set from the command line (`sim sweep`).
//!
//! The file's TOML document is edited and the result goes through the same loading as any
//! file (`load.rs`): every schema rule, validation and limit applies to the values set, with
//! its own message. Errors name the lines of the file as written, not of the edited text
//! (a key added to a table moves the lines below it).

use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, InlineTable, Item, Table, Value};

use super::load::{parse_scenario_in, ErrorKind, ScenarioError};
use super::locate::locate;
use super::model::Scenario;

/// A value for a numeric key: whole for the keys the schema reads as integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(x) => x,
        }
    }
}

impl From<Num> for toml::Value {
    fn from(n: Num) -> toml::Value {
        match n {
            Num::Int(i) => toml::Value::Integer(i),
            Num::Float(x) => toml::Value::Float(x),
        }
    }
}

/// As written in TOML and in `sweep.csv`: `4`, `2.5`, `1e-7`.
impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A scenario file read once, loadable as written or with keys set.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    path: PathBuf,
    text: String,
}

impl ScenarioFile {
    pub fn read(path: &Path) -> Result<ScenarioFile, ScenarioError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(ScenarioFile { path: path.to_path_buf(), text }),
            Err(e) => Err(ScenarioError {
                origin: path.display().to_string(),
                line: None,
                key: None,
                kind: ErrorKind::Io,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// A file's text as if read from `path` (tests).
    pub fn from_text(path: &Path, text: &str) -> ScenarioFile {
        ScenarioFile { path: path.to_path_buf(), text: text.to_string() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The scenario as written (what `load_scenario` gives).
    pub fn load(&self) -> Result<Scenario, ScenarioError> {
        parse_scenario_in(&self.text, &self.origin(), self.dir())
    }

    /// The scenario with each dotted `key` of `set` set to its value (a number, or a whole
    /// table), added to the file where it is not written. The caller checks the keys
    /// against the scenario's own first; a key under a value that is not a table is refused.
    pub fn load_with(&self, set: &[(String, toml::Value)]) -> Result<Scenario, ScenarioError> {
        // A file that does not parse is reported as it is, with its own line.
        let mut doc: DocumentMut = match self.text.parse() {
            Ok(doc) => doc,
            Err(_) => return self.load(),
        };
        for (key, value) in set {
            let path: Vec<&str> = key.split('.').collect();
            set_in_item(doc.as_item_mut(), &path, edit_value(value)).map_err(|message| ScenarioError {
                origin: self.origin(),
                line: None,
                key: Some(key.to_string()),
                kind: ErrorKind::Schema,
                message,
            })?;
        }
        parse_scenario_in(&doc.to_string(), &self.origin(), self.dir()).map_err(|e| self.relocated(e, set))
    }

    /// `e` with the line of its key in the file as written: the line it is on, or for a key
    /// the file does not hold, its table's header (a key set here has no line: its value
    /// came from the command line).
    fn relocated(&self, mut e: ScenarioError, set: &[(String, toml::Value)]) -> ScenarioError {
        if e.origin != self.origin() {
            return e;
        }
        let Some(key) = e.key.clone() else { return e };
        let Ok(doc) = toml_edit::Document::parse(self.text.as_str()) else { return e };
        let place = locate(&doc, &self.text, &key);
        let was_set = set.iter().any(|(k, _)| key == *k || key.starts_with(&format!("{k}.")));
        e.line = if place.present || !was_set { Some(place.line) } else { None };
        e
    }
}

/// `v` as `toml_edit` writes it (an inline table for a table).
fn edit_value(v: &toml::Value) -> Value {
    match v {
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(x) => Value::from(*x),
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string().parse::<toml_edit::Datetime>().expect("a datetime")),
        toml::Value::Array(a) => Value::Array(a.iter().map(edit_value).collect()),
        toml::Value::Table(t) => Value::InlineTable(t.iter().map(|(k, v)| (k.clone(), edit_value(v))).collect()),
    }
}

fn set_in_item(item: &mut Item, path: &[&str], value: Value) -> Result<(), String> {
    let first = path.first().ok_or("an empty key")?;
    match item {
        Item::Table(t) => set_in_table(t, path, value),
        Item::Value(v) => set_in_value(v, path, value),
        _ => Err(format!("{first}: is not a table in the file; cannot set a key under it")),
    }
}

fn set_in_table(t: &mut Table, path: &[&str], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("an empty key")?;
    if let Some((entry, rest)) = array_entry(t, first, rest)? {
        return set_in_table(entry, rest, value);
    }
    if rest.is_empty() {
        t.insert(first, Item::Value(value));
        return Ok(());
    }
    let child = t.entry(first).or_insert_with(|| {
        let mut new = Table::new();
        new.set_implicit(true);
        Item::Table(new)
    });
    set_in_item(child, rest, value)
}

/// A table of an array of tables (`[[cluster.node_groups]]`) a key goes into: by index
/// (`node_groups[0].count`) or by its `name` (`node_groups.gpu.count`), with the rest of
/// the key; None when `first` names no array of tables.
fn array_entry<'t, 'p>(
    t: &'t mut Table,
    first: &str,
    rest: &'p [&'p str],
) -> Result<Option<(&'t mut Table, &'p [&'p str])>, String> {
    let (name, index) = match first.split_once('[') {
        Some((name, i)) => (name, Some(i.trim_end_matches(']'))),
        None => (first, None),
    };
    let Some(Item::ArrayOfTables(tables)) = t.get_mut(name) else {
        return match index {
            Some(_) => Err(format!("{name}: is not an array of tables ([[...]]) in the file")),
            None => Ok(None),
        };
    };
    let (position, rest) = match index {
        Some(i) => {
            let i: usize = i.parse().map_err(|_| format!("{first}: the index must be a whole number"))?;
            (i, rest)
        }
        None => {
            let (wanted, rest) = rest.split_first().ok_or_else(|| format!("{name}: name an entry and a key"))?;
            let named = |tb: &Table| tb.get("name").and_then(Item::as_str) == Some(*wanted);
            let names: Vec<String> =
                tables.iter().filter_map(|tb| tb.get("name").and_then(Item::as_str)).map(str::to_string).collect();
            let i = tables
                .iter()
                .position(named)
                .ok_or_else(|| format!("{name}: has no entry named {wanted:?}; its names: {}", names.join(", ")))?;
            (i, rest)
        }
    };
    let count = tables.len();
    let Some(entry) = tables.get_mut(position) else {
        return Err(format!("{name}: has {count} entries (numbered from 0), no [{position}]"));
    };
    if rest.is_empty() {
        return Err(format!("{first}: name a key of the entry, e.g. {first}.count"));
    }
    Ok(Some((entry, rest)))
}

fn set_in_value(v: &mut Value, path: &[&str], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("an empty key")?;
    let Value::InlineTable(t) = v else {
        return Err(format!("{first}: is a value in the file, not a table; cannot set a key under it"));
    };
    if rest.is_empty() {
        t.insert(*first, value);
        return Ok(());
    }
    let child = t.entry(*first).or_insert(Value::InlineTable(InlineTable::new()));
    set_in_value(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"t\"\n[cluster]\npods = 4\n[image]\nreference = \"r\"\nlayer_bytes = [10, 20]\n";

    fn set(key: &str, n: Num) -> (String, toml::Value) {
        (key.to_string(), n.into())
    }

    fn file(text: &str) -> ScenarioFile {
        ScenarioFile::from_text(Path::new("dir/t.toml"), text)
    }

    #[test]
    fn written_and_new_keys_are_set_and_checked_as_any_file() {
        let f = file(TEXT);
        let sc = f
            .load_with(&[
                set("cluster.pods", Num::Int(9)),
                set("registry.egress_gbps", Num::Float(2.5)),
                set("scheduler.candidate_parent_limit", Num::Int(3)),
                (
                    "peer.piece_sizing".into(),
                    toml::from_str::<toml::Table>(
                        "rule = \"scaled\"\nmin_bytes = 524288\nmax_bytes = 4194304\ntarget_pieces = 100",
                    )
                    .unwrap()
                    .into(),
                ),
            ])
            .unwrap();
        assert_eq!(sc.cluster.pods(), 9);
        assert_eq!(sc.registry.egress_gbps, 2.5);
        assert_eq!(sc.scheduler.tuning["candidate_parent_limit"].as_integer(), Some(3));
        let (_, peer) = crate::scenario::core_configs(&sc, sched::Policy::Default).unwrap();
        assert_eq!(
            peer.piece_sizing,
            peer::core::PieceSizing::Scaled { min_bytes: 524_288, max_bytes: 4_194_304, target_pieces: 100 }
        );
        // The file as written is untouched.
        assert_eq!(f.load().unwrap().cluster.pods(), 4);
    }

    #[test]
    fn a_refused_value_gets_the_usual_message_and_the_files_own_lines() {
        // pods is on line 3 as written; a key added to [cluster] above [image] moves
        // image's lines down in the edited text, but errors name the file's lines.
        let e = file(TEXT).load_with(&[set("cluster.pods", Num::Int(0))]).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("dir/t.toml:3: cluster.pods: "), "{e}");
        let e = file(TEXT).load_with(&[set("cluster.seed_peers", Num::Int(-1))]).unwrap_err();
        assert_eq!(e.line, None, "{e}");
        assert!(e.to_string().starts_with("dir/t.toml: cluster.seed_peers: "), "{e}");
        assert!(e.to_string().contains("whole number"), "{e}");
    }

    #[test]
    fn inline_tables_are_edited_in_place() {
        let text =
            "name = \"t\"\ncluster = { pods = 4 }\nregistry = {}\n[image]\nreference = \"r\"\nlayer_bytes = [10]\n";
        let sc = file(text)
            .load_with(&[set("cluster.pods", Num::Int(7)), set("registry.qps_limit", Num::Float(10.0))])
            .unwrap();
        assert_eq!((sc.cluster.pods(), sc.registry.qps_limit), (7, 10.0));
        assert_eq!(Num::Float(2.0).to_string(), "2");
        assert_eq!(Num::Float(0.25).to_string(), "0.25");
    }

    #[test]
    fn group_keys_are_set_by_name_or_index() {
        let text = "name = \"t\"\n[cluster]\nseed_peers = 1\n[[cluster.node_groups]]\nname = \"gpu\"\ncount = 2\n\
                    [[cluster.node_groups]]\nname = \"cpu\"\ncount = 3\n[image]\nreference = \"r\"\nlayer_bytes = [10]\n";
        let sc = file(text)
            .load_with(&[
                set("cluster.node_groups.gpu.count", Num::Int(5)),
                set("cluster.node_groups[1].upload_gbps", Num::Float(2.5)),
            ])
            .unwrap();
        let g = &sc.cluster.node_groups;
        assert_eq!((g[0].count, g[1].count, g[1].upload_gbps, sc.cluster.pods()), (5, 3, 2.5, 8));
        let e = file(text).load_with(&[set("cluster.node_groups.tpu.count", Num::Int(1))]).unwrap_err();
        assert!(e.to_string().contains("node_groups: has no entry named \"tpu\"; its names: gpu, cpu"), "{e}");
        let e = file(text).load_with(&[set("cluster.node_groups[2].count", Num::Int(1))]).unwrap_err();
        assert!(e.to_string().contains("has 2 entries (numbered from 0), no [2]"), "{e}");
        // Set values go through validation like any file: a zero count names the group.
        let e = file(text).load_with(&[set("cluster.node_groups.cpu.count", Num::Int(0))]).unwrap_err();
        assert!(e.to_string().starts_with("dir/t.toml:9: cluster.node_groups[1].count: must be at least 1"), "{e}");
    }
}
