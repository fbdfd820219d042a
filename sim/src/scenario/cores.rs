//! The core configurations a scenario runs: its `[scheduler]` and `[peer]` tables (and the
//! `scheduler.toml` / `peerd.toml` it may point at) read by the cores' own
//! `SchedulerConfig::from_table` and `PeerConfig::from_table`, the functions the scheduler
//! service and the daemon read their files with. So a key means one thing everywhere and an
//! unset key has one default: the policy's preset.

use std::path::Path;

use peer::core::PeerConfig;
use sched::core::overlay::OverlayError;
use sched::core::SchedulerConfig;
use sched::Policy;
use toml_edit::Document;

use super::model::{Mirror, Scenario};

/// The tables without `policy`: the run's policy (the scenario's, or `--policy`) names the
/// preset, and `check_policies` has made sure the tables do not name another one.
pub fn core_configs(sc: &Scenario, policy: Policy) -> Result<(SchedulerConfig, PeerConfig), OverlayError> {
    let strip = |t: &toml::Table| {
        let mut t = t.clone();
        t.remove("policy");
        t
    };
    let sched = SchedulerConfig::from_table(&strip(&sc.scheduler.tuning), &[], policy)
        .map_err(|e| OverlayError::new(format!("scheduler.{}", e.key), e.message))?;
    let peer = PeerConfig::from_table(&strip(&sc.peer), &[], policy)
        .map_err(|e| OverlayError::new(format!("peer.{}", e.key), e.message))?;
    Ok((sched, peer))
}

/// Where a configuration problem is: the file, the dotted key, the message.
pub(crate) struct Fault {
    /// None: the scenario file itself; Some: a referenced `scheduler.toml` / `peerd.toml`.
    pub file: Option<String>,
    /// In a referenced file: the key's line there (the scenario's is found by the caller).
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

/// Merges the referenced files' tables under the scenario's own (its keys win), then checks
/// every table with the cores' readers, in the order its keys are written. `dir`: the
/// scenario file's folder, for relative paths.
pub(crate) fn resolve(sc: &mut Scenario, doc: &Document<&str>, dir: &Path) -> Result<(), Fault> {
    let policy = Policy::parse(&sc.policy).ok_or_else(|| Fault {
        file: None,
        line: None,
        key: "policy".into(),
        message: format!("unknown policy {:?}; valid policies: {}", sc.policy, Policy::NAMES.join(", ")),
    })?;
    // The scenario's own tables first, so a fault in them is reported against this file.
    let own = |table: &str, e: OverlayError| Fault {
        file: None,
        line: None,
        key: format!("{table}.{}", e.key),
        message: e.message,
    };
    check_table(&sc.scheduler.tuning, &keys_in_order(doc, "scheduler"), policy, Table::Scheduler)
        .map_err(|e| own("scheduler", e))?;
    check_table(&sc.peer, &keys_in_order(doc, "peer"), policy, Table::Peer).map_err(|e| own("peer", e))?;
    if let Some(file) = sc.scheduler_toml.clone() {
        let base = referenced_table(dir, &file, "scheduler", policy, Table::Scheduler)?;
        sc.scheduler.tuning = layered(base, &sc.scheduler.tuning);
    }
    if let Some(file) = sc.peerd_toml.clone() {
        let base = referenced_table(dir, &file, "peer", policy, Table::Peer)?;
        sc.peer = layered(base, &sc.peer);
        referenced_mirror(dir, &file, doc, &mut sc.mirror)?;
    }
    let (_, peer) =
        core_configs(sc, policy).map_err(|e| Fault { file: None, line: None, key: e.key, message: e.message })?;
    let over = |e: super::validate::Invalid| Fault { file: None, line: None, key: e.key, message: e.message };
    super::limits::check_counts(sc, &peer).map_err(over)?;
    if let Some(available) = super::limits::memory_to_check() {
        super::limits::check_memory(sc, &peer, available).map_err(over)?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Table {
    Scheduler,
    Peer,
}

/// One table on its own: a `policy` that is not the run's is refused (the scheduler refuses
/// a peer of another policy), then the core reads it.
fn check_table(table: &toml::Table, order: &[String], policy: Policy, which: Table) -> Result<(), OverlayError> {
    let named = sched::core::overlay::table_policy(table, policy)?;
    if named != policy {
        return Err(OverlayError::new(
            "policy",
            format!(
                "is {:?} but the scenario's policy is {:?}; the scheduler and every peer run one policy: set the top-level `policy`",
                named.name(),
                policy.name()
            ),
        ));
    }
    match which {
        Table::Scheduler => SchedulerConfig::from_table(table, order, policy).map(drop),
        Table::Peer => PeerConfig::from_table(table, order, policy).map(drop),
    }
}

/// The `[name]` table of a referenced configuration file, checked on its own.
fn referenced_table(dir: &Path, file: &str, name: &str, policy: Policy, which: Table) -> Result<toml::Table, Fault> {
    let path = dir.join(file);
    let shown = path.display().to_string();
    let fault =
        |key: &str, message: String| Fault { file: Some(shown.clone()), line: None, key: key.to_string(), message };
    let text = std::fs::read_to_string(&path).map_err(|e| fault(name, format!("cannot read: {e}")))?;
    // toml_edit panics on some invalid files (see load.rs): toml refuses them first.
    toml::from_str::<toml::Table>(&text).map_err(|e| {
        let line = e.span().map(|s| super::locate::line_of(&text, s.start));
        Fault { line, ..fault(name, format!("invalid TOML: {}", e.message())) }
    })?;
    let doc = Document::parse(text.as_str()).map_err(|e| {
        let line = e.span().map(|s| super::locate::line_of(&text, s.start));
        Fault { line, ..fault(name, format!("invalid TOML: {}", e.message())) }
    })?;
    let whole: toml::Table =
        toml::from_str(&text).map_err(|e| fault(name, format!("invalid TOML: {}", e.message())))?;
    let table = match whole.get(name) {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t.clone(),
        Some(other) => return Err(fault(name, format!("is {}; write a [{name}] table", other.type_str()))),
    };
    check_table(&table, &keys_in_order(&doc, name), policy, which).map_err(|e| {
        let key = format!("{name}.{}", e.key);
        let line = Some(super::locate::locate(&doc, &text, &key).line);
        Fault { line, ..fault(&key, e.message) }
    })?;
    Ok(table)
}

/// The `[mirror]` keys of a referenced `peerd.toml` that the scenario (`own`) does not write,
/// checked and taken into `mirror`. The table's other keys (registries, listen limits, stale
/// answers, ...) change nothing the simulator models and are left to the daemon.
fn referenced_mirror(dir: &Path, file: &str, own: &Document<&str>, mirror: &mut Mirror) -> Result<(), Fault> {
    let path = dir.join(file);
    let shown = path.display().to_string();
    let fault = |key: &str, line: Option<usize>, message: String| Fault {
        file: Some(shown.clone()),
        line,
        key: key.to_string(),
        message,
    };
    // Read and parsed once already by `referenced_table` (which reported any fault).
    let text = std::fs::read_to_string(&path).map_err(|e| fault("mirror", None, format!("cannot read: {e}")))?;
    let doc =
        Document::parse(text.as_str()).map_err(|e| fault("mirror", None, format!("invalid TOML: {}", e.message())))?;
    let line = |key: &str| Some(super::locate::locate(&doc, &text, key).line);
    let Some(item) = doc.get("mirror") else { return Ok(()) };
    let Some(table) = item.as_table_like() else {
        return Err(fault("mirror", line("mirror"), format!("is {}; write a [mirror] table", item.type_name())));
    };
    let own_table = own.get("mirror").and_then(|t| t.as_table_like());
    for key in Mirror::KEYS {
        let Some(value) = table.get(key) else { continue };
        if own_table.is_some_and(|t| t.contains_key(key)) {
            continue;
        }
        let dotted = format!("mirror.{key}");
        if key == "resolve_via_seeds" {
            mirror.resolve_via_seeds = value.as_bool().ok_or_else(|| {
                fault(&dotted, line(&dotted), format!("is {}; write true or false", value.type_name()))
            })?;
            continue;
        }
        let ms = value.as_integer().and_then(|v| u64::try_from(v).ok()).ok_or_else(|| {
            fault(
                &dotted,
                line(&dotted),
                format!("is {}; write a whole number of milliseconds, at least 0, without quotes", shown_value(value)),
            )
        })?;
        super::validate::ttl_ms(&dotted, ms).map_err(|e| fault(&dotted, line(&dotted), e.message))?;
        match key {
            "tag_ttl_ms" => mirror.tag_ttl_ms = ms,
            _ => mirror.auth_check_ttl_ms = ms,
        }
    }
    Ok(())
}

/// A value as an error message names it: a number as written, anything else by its type.
fn shown_value(item: &toml_edit::Item) -> String {
    match item.as_integer() {
        Some(v) => v.to_string(),
        None => item.type_name().to_string(),
    }
}

/// `base` with `top`'s keys laid over it.
fn layered(mut base: toml::Table, top: &toml::Table) -> toml::Table {
    for (k, v) in top {
        base.insert(k.clone(), v.clone());
    }
    base
}

/// The keys of top-level table `table` in the order they are written.
fn keys_in_order(doc: &Document<&str>, table: &str) -> Vec<String> {
    doc.get(table)
        .and_then(|t| t.as_table_like())
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}
