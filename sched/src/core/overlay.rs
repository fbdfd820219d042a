//! A preset with a configuration table laid over it: how `scheduler.toml`'s `[scheduler]`,
//! `peerd.toml`'s `[peer]` and a scenario's `[scheduler]` / `[peer]` tables become one core
//! configuration. One function for all of them, so a key means the same thing and an unset
//! key has the same default (the policy's preset) wherever it is written.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::policy::Policy;

/// A key of a configuration table that cannot be used, and why (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayError {
    /// The key at fault, inside its table ("stripes"); "policy" when no key is to blame.
    pub key: String,
    /// What is wrong. Type errors carry serde's own wording; drivers may add a hint.
    pub message: String,
}

impl OverlayError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> OverlayError {
        OverlayError { key: key.into(), message: message.into() }
    }
}

impl std::fmt::Display for OverlayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The policy a table names (`policy = "..."`), or `default` when it names none.
pub fn table_policy(table: &toml::Table, default: Policy) -> Result<Policy, OverlayError> {
    match table.get("policy") {
        None => Ok(default),
        Some(toml::Value::String(name)) => Policy::parse(name).ok_or_else(|| {
            OverlayError::new(
                "policy",
                format!("unknown policy {name:?}; valid policies: {}", Policy::NAMES.join(", ")),
            )
        }),
        Some(other) => Err(OverlayError::new(
            "policy",
            format!("found {other}; write a policy name in quotes: {}", Policy::NAMES.join(", ")),
        )),
    }
}

/// `preset` with every key of `table` but `policy` laid over it. Keys are tried in `order`
/// (the file's order; keys it does not list come after, in the table's), each alone on the
/// preset, so the first bad key in the file is the one reported. `section` names the table
/// in the message listing the valid keys ("[scheduler]"); `optional` lists the fields a
/// preset may leave unset (`Option`s, which serialise to nothing) that a table may still set.
pub fn overlay<T: Serialize + DeserializeOwned>(
    preset: &T,
    table: &toml::Table,
    order: &[String],
    section: &str,
    optional: &[&str],
) -> Result<T, OverlayError> {
    let base = toml::Table::try_from(preset)
        .map_err(|e| OverlayError::new("policy", format!("cannot represent the preset: {e}")))?;
    let mut merged = base.clone();
    let rest = table.iter().filter(|(k, _)| !order.contains(k));
    let in_order = order.iter().filter_map(|k| table.get_key_value(k.as_str())).chain(rest);
    for (key, value) in in_order {
        if key == "policy" {
            continue;
        }
        if !base.contains_key(key) && !optional.contains(&key.as_str()) {
            let mut valid: Vec<&str> = base.keys().map(String::as_str).collect();
            valid.extend(optional.iter().filter(|k| !base.contains_key(**k)));
            valid.sort_unstable();
            return Err(OverlayError::new(
                key.clone(),
                format!("unknown key {key:?}; valid keys of {section}: policy, {}", valid.join(", ")),
            ));
        }
        let mut alone = base.clone();
        alone.insert(key.clone(), value.clone());
        if let Err(e) = toml::Value::Table(alone).try_into::<T>() {
            return Err(OverlayError::new(key.clone(), e.message().trim().to_string()));
        }
        merged.insert(key.clone(), value.clone());
    }
    toml::Value::Table(merged).try_into().map_err(|e| OverlayError::new("policy", e.message().trim().to_string()))
}
