//! Reading a scenario file: TOML syntax, then the serde schema, then `validate`.
//!
//! Every failure becomes one `ScenarioError` line naming the file, the line and the dotted
//! key, so a user can go straight to the fault. Nothing here panics on any input.
//!
//! The text is parsed twice: by `toml_edit` (TOML 1.0), which keeps the span of every key
//! so errors can be placed, and by `toml` for serde. `toml_edit` runs first, so the
//! accepted syntax is TOML 1.0 and every syntax error is reported by one parser.

use std::path::Path;

use toml_edit::Document;

use super::locate::{line_of, locate, path_at, table_with_span};
use super::model::Scenario;
use super::validate::validate;

/// A scenario that cannot be used, as one line: `file:line: key: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ScenarioError {
    /// The file as the user named it.
    pub origin: String,
    /// 1-based; None when the file could not be read.
    pub line: Option<usize>,
    /// Dotted key at fault, e.g. "cluster.pods" or "image.layer_bytes[2]".
    pub key: Option<String>,
    pub kind: ErrorKind,
    /// What is wrong and what would be accepted; never contains a newline.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML.
    Syntax,
    /// Valid TOML that does not fit the schema: unknown key, wrong type, missing key.
    Schema,
    /// Fits the schema but breaks a rule of `validate.rs` (zero pods, NaN rate, ...).
    Invalid,
}

impl ScenarioError {
    fn render(&self) -> String {
        let mut out = self.origin.clone();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        if let Some(key) = &self.key {
            out.push_str(&format!(": {key}"));
        }
        out.push_str(&format!(": {}", self.message));
        out
    }
}

/// Reads, parses and validates a scenario file; errors name `path` as given.
pub fn load_scenario(path: &Path) -> Result<Scenario, ScenarioError> {
    let origin = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    match std::fs::read_to_string(path) {
        Ok(text) => parse_scenario_in(&text, &origin, dir),
        Err(e) => Err(ScenarioError {
            origin,
            line: None,
            key: None,
            kind: ErrorKind::Io,
            message: one_line(&format!("cannot read: {e}")),
        }),
    }
}

/// Parses and validates scenario text; `origin` is the file name used in messages. Paths
/// it names (`scheduler_toml`, `peerd_toml`) are relative to the working directory.
pub fn parse_scenario(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    parse_scenario_in(text, origin, Path::new("."))
}

/// `parse_scenario` with the paths it names relative to `dir`.
pub(crate) fn parse_scenario_in(text: &str, origin: &str, dir: &Path) -> Result<Scenario, ScenarioError> {
    let error = |line: usize, key: Option<String>, kind: ErrorKind, message: &str| ScenarioError {
        origin: origin.to_string(),
        line: Some(line),
        key,
        kind,
        message: one_line(message),
    };
    let syntax = |span: Option<std::ops::Range<usize>>, message: &str| {
        let line = span.as_ref().map_or(1, |s| line_of(text, s.start));
        let key = span.and_then(|s| path_at_text(text, s.start));
        error(line, key, ErrorKind::Syntax, &format!("invalid TOML: {message}"))
    };
    // toml_edit 0.23.10 panics ("all items have spans") while recovering from errors in
    // some invalid files, e.g. "=\n.=" (found by fuzz/): toml, the same grammar without
    // recovery, refuses them first.
    toml::from_str::<toml::Table>(text).map_err(|e| syntax(e.span(), e.message()))?;
    let doc = Document::parse(text).map_err(|e| syntax(e.span(), e.message()))?;
    if let Some((key, offset)) = array_of_tables_for_a_table(&doc) {
        let message = format!(
            "written as [[{key}]], an array of tables; a scenario has one [{key}] table: write [{key}] (for nodes of several kinds, write [[cluster.node_groups]] tables after [cluster]; for several images, one [[workload]] table each with its [workload.image])"
        );
        return Err(error(line_of(text, offset), Some(key.to_string()), ErrorKind::Schema, &message));
    }
    if let Some(offset) = node_groups_as_a_table(&doc) {
        let message = "written as a table; node groups are an array of tables: write [[cluster.node_groups]] (two brackets) once per group";
        return Err(error(line_of(text, offset), Some("cluster.node_groups".into()), ErrorKind::Schema, message));
    }
    if let Some(offset) = workloads_as_a_table(&doc) {
        let message = "written as a table; workloads are an array of tables: write [[workload]] (two brackets) once per workload, each followed by its [workload.image]";
        return Err(error(line_of(text, offset), Some("workload".into()), ErrorKind::Schema, message));
    }
    if let Some((key, offset, message)) = super::churn::misshapen(&doc) {
        return Err(error(line_of(text, offset), Some(key.into()), ErrorKind::Schema, message));
    }
    let mut scenario: Scenario = toml::from_str(text).map_err(|e| {
        let (key, message) = schema_problem(&doc, &e);
        // A missing key's span is its table's header (0..0 for the root): line 1 or the header.
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        error(line, key, ErrorKind::Schema, &message)
    })?;
    if scenario.image.is_none() && scenario.workloads.is_empty() {
        let message = "missing [image] table; add one with `reference` and `layer_bytes` (or one [[workload]] table per Deployment, each with its [workload.image])";
        return Err(error(1, Some("image".into()), ErrorKind::Schema, message));
    }
    validate(&scenario).map_err(|invalid| {
        let place = locate(&doc, text, &invalid.key);
        let mut message = invalid.message;
        if !place.present {
            message.push_str(" (the key is not in the file, so this is its default; set it)");
        }
        error(place.line, Some(invalid.key), ErrorKind::Invalid, &message)
    })?;
    super::groups::settle(&mut scenario.cluster);
    super::workloads::settle(&mut scenario);
    super::cores::resolve(&mut scenario, &doc, dir).map_err(|fault| {
        let message = one_line(&format!("{}{}", fault.message, type_hint(&fault.message)));
        match fault.file {
            Some(file) => ScenarioError {
                origin: file,
                line: fault.line,
                key: Some(fault.key),
                kind: ErrorKind::Invalid,
                message,
            },
            None => {
                let place = locate(&doc, text, &fault.key);
                error(place.line, Some(fault.key), ErrorKind::Invalid, &message)
            }
        }
    })?;
    Ok(scenario)
}

/// The tables of a scenario (`Scenario`'s table fields).
pub(crate) const TABLES: [&str; 10] =
    ["cluster", "registry", "network", "scheduler", "peer", "mirror", "image", "pod", "lazy", "sim"];

/// A table of the scenario written as an array of tables (`[[cluster]]`), and where: serde
/// would read its first entry as the table's first field ("cluster[0]: invalid type: map,
/// expected u32"), which says nothing of what is wrong.
fn array_of_tables_for_a_table(doc: &Document<&str>) -> Option<(&'static str, usize)> {
    TABLES.into_iter().find_map(|key| {
        let tables = doc.get(key)?.as_array_of_tables()?;
        let offset = tables.get(0).and_then(|t| t.span()).map_or(0, |s| s.start);
        Some((key, offset))
    })
}

/// `[cluster.node_groups]` (or an inline table) where `[[cluster.node_groups]]` is meant,
/// and where: serde would say only "invalid type: map, expected a sequence".
fn node_groups_as_a_table(doc: &Document<&str>) -> Option<usize> {
    let cluster = doc.get("cluster")?.as_table_like()?;
    let (key, item) = cluster.get_key_value("node_groups")?;
    if item.is_table_like() {
        let span = item.as_table().and_then(|t| t.span()).or_else(|| key.span());
        return Some(span.map_or(0, |s| s.start));
    }
    None
}

/// `[workload]` (or an inline table) where `[[workload]]` is meant, and where.
fn workloads_as_a_table(doc: &Document<&str>) -> Option<usize> {
    let (key, item) = doc.as_table().get_key_value("workload")?;
    if item.is_table_like() {
        let span = item.as_table().and_then(|t| t.span()).or_else(|| key.span());
        return Some(span.map_or(0, |s| s.start));
    }
    None
}

/// Syntax errors leave no document to walk: name the key written on the broken line,
/// under the last table header above it (None when the line holds no `key =`).
fn path_at_text(text: &str, offset_bytes: usize) -> Option<String> {
    let line_start = text.get(..offset_bytes.min(text.len()))?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if line.starts_with('[') {
        return last_table_header(line);
    }
    let (name, _) = line.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || name.starts_with('#') {
        return None;
    }
    Some(match last_table_header(&text[..line_start]) {
        Some(table) => format!("{table}.{name}"),
        None => name.to_string(),
    })
}

/// The name in the last `[table]` header of `text`, if any.
fn last_table_header(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string())
}

/// The dotted key and a one-line explanation of a serde error.
fn schema_problem(doc: &Document<&str>, e: &toml::de::Error) -> (Option<String>, String) {
    let raw = e.message().trim();
    let at = e.span().and_then(|s| path_at(doc, s.start));
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (name, valid) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = valid.trim_start_matches(", ").trim_start_matches("expected ");
        let valid = valid.trim_start_matches("one of ").replace('`', "");
        let table = match at.as_deref().and_then(|k| k.rsplit_once('.')) {
            Some((table, _)) => format!("[{table}]"),
            None => "the top level".to_string(),
        };
        // The daemon's other [mirror] keys (registries, listen limits, stale answers) do not
        // change the model: only a referenced peerd.toml may hold them.
        let why = if table == "[mirror]" {
            "; the simulator takes only the daemon's [mirror] keys that change what it models (it has no registry outages and no listener limits)"
        } else {
            ""
        };
        return (at, format!("unknown key {name:?}; valid keys of {table}: {valid}{why}"));
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (name, valid) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = valid.trim_start_matches(", expected ").trim_start_matches("one of ").replace('`', "");
        if at.as_deref().is_some_and(|k| k.ends_with(".strategy")) {
            return (at, format!("unknown strategy {name:?}; valid strategies: {valid}"));
        }
        if at.as_deref().is_some_and(|k| k.starts_with("churn.") && k.ends_with(".action")) {
            return (
                at,
                format!(
                    "unknown action {name:?}; valid actions: {valid} (a crash, or a shutdown that tells the scheduler)"
                ),
            );
        }
        return (at, format!("unknown mode {name:?}; valid modes: {valid}"));
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        let key = match e.span().and_then(|s| table_with_span(doc, s)) {
            Some(table) => format!("{table}.{name}"),
            None => name.to_string(),
        };
        let message = match key.as_str() {
            "cluster" => "missing [cluster] table; add one with at least `pods`".to_string(),
            _ => format!("required key is missing; add `{name} = ...`"),
        };
        return (Some(key), message);
    }
    (at, format!("{raw}{}{}", shape_hint(raw), type_hint(raw)))
}

/// A list or a table where one value is expected (or the reverse), said as such.
fn shape_hint(raw: &str) -> &'static str {
    let expected = raw.rsplit("expected ").next().unwrap_or("");
    let scalar = matches!(expected, "u32" | "u64" | "f64" | "a string" | "a boolean");
    if raw.starts_with("invalid type: sequence") && scalar {
        "; a list where one value is expected (every node of the cluster has the same)"
    } else if raw.starts_with("invalid type: map") && scalar {
        "; a table where one value is expected"
    } else if raw.starts_with("invalid type: map") && expected == "a sequence" {
        "; a table where a list is expected"
    } else {
        ""
    }
}

/// What to write instead, for serde's "invalid type/value ..., expected T" messages.
fn type_hint(raw: &str) -> &'static str {
    let expected = raw.rsplit("expected ").next().unwrap_or("");
    match expected {
        "u32" | "u64" => "; write a whole number of at least 0, without quotes",
        "f64" => "; write a number without quotes, e.g. 6 or 6.5",
        "a string" => "; write text in double quotes",
        "a boolean" => "; write true or false",
        "a sequence" => "; write a list in brackets, e.g. [1, 2]",
        _ => "",
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
