//! A TOML configuration file read once at start. Every error is one line,
//! `FILE:LINE: KEY: what is wrong`, so an operator can go straight to the key at fault;
//! nothing here panics.

use crate::toml_spans::{key_at, key_line, line_of};
use serde::de::DeserializeOwned;
use std::path::Path;
use toml_edit::Document;

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file as the user named it.
    pub origin: String,
    /// 1-based; None when the file could not be read or the key is not in it.
    pub line: Option<usize>,
    /// Dotted key at fault, e.g. "scheduler.retry_limit".
    pub key: Option<String>,
    /// One line: what is wrong and what would be accepted.
    pub message: String,
}

impl ConfigError {
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

/// The text of a configuration file, parsed once for its spans.
pub struct ConfigFile<'a> {
    text: &'a str,
    origin: String,
    doc: Document<&'a str>,
}

/// Reads a file whole; the error names it.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: path.display().to_string(),
        line: None,
        key: None,
        message: format!("cannot read the configuration file: {e}"),
    })
}

impl<'a> ConfigFile<'a> {
    /// Checks the TOML syntax; `origin` names the file in errors.
    pub fn parse(text: &'a str, origin: &str) -> Result<ConfigFile<'a>, ConfigError> {
        // toml_edit 0.23.10 panics ("all items have spans") while recovering from errors in
        // some invalid files, e.g. "=\n.=" (found by fuzz/): toml, the same grammar without
        // recovery, refuses them first.
        toml::from_str::<toml::Table>(text).map_err(|e| ConfigError {
            origin: origin.to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: None,
            message: one_line(&format!("invalid TOML: {}", e.message())),
        })?;
        let doc = Document::parse(text).map_err(|e| ConfigError {
            origin: origin.to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: None,
            message: one_line(&format!("invalid TOML: {}", e.message())),
        })?;
        Ok(ConfigFile { text, origin: origin.to_string(), doc })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The whole file as `T` (serde); a schema error names its line and key.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| ConfigError {
            origin: self.origin.clone(),
            line: e.span().map(|s| line_of(self.text, s.start)),
            key: e.span().and_then(|s| key_at(&self.doc, s.start)),
            message: schema_message(e.message()),
        })
    }

    /// An error about the key at `path` (e.g. `["listen", "grpc"]`): its line, or the line of
    /// its table when the key is not written (a default that a rule refuses).
    pub fn error_at(&self, path: &[&str], message: impl AsRef<str>) -> ConfigError {
        let line = key_line(&self.doc, self.text, path).or_else(|| key_line(&self.doc, self.text, &path[..1]));
        ConfigError {
            origin: self.origin.clone(),
            line,
            key: Some(path.join(".")),
            message: one_line(message.as_ref()),
        }
    }

    /// The keys of `[table]` in the order they are written.
    pub fn keys_in_order(&self, table: &str) -> Vec<String> {
        self.doc
            .get(table)
            .and_then(|t| t.as_table_like())
            .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default()
    }
}

/// A serde message made one line, with a hint for type errors.
pub fn schema_message(raw: &str) -> String {
    let raw = one_line(raw);
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (name, valid) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = valid.trim_start_matches(", expected ").trim_start_matches("one of ").replace('`', "");
        return format!("unknown key {name:?}; valid keys here: {valid}");
    }
    let expected = raw.rsplit("expected ").next().unwrap_or("");
    let hint = match expected {
        "u32" | "u64" | "usize" => "; write a whole number of at least 0, without quotes",
        "f64" => "; write a number without quotes, e.g. 1.3",
        "a string" => "; write text in double quotes",
        "a boolean" => "; write true or false",
        _ if raw.contains("socket address") => "; write \"IP:PORT\", e.g. \"0.0.0.0:8002\"",
        _ if expected.starts_with("struct ") => "; write a [table] here",
        _ => "",
    };
    format!("{raw}{hint}")
}

pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        listen: Listen,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Listen {
        port: u16,
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "# c\n[listen]\nport = \"x\"\n";
        let file = ConfigFile::parse(text, "d.toml").unwrap();
        let e = file.deserialize::<Demo>().unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("listen.port")), "{e}");
        let e = file.error_at(&["listen", "port"], "must be\n  above 1024");
        assert_eq!(e.to_string(), "d.toml:3: listen.port: must be above 1024");
        let e = file.error_at(&["listen", "absent"], "x");
        assert_eq!(e.line, Some(2));
        let e = ConfigFile::parse("[listen\n", "d.toml").err().unwrap();
        assert!(e.to_string().starts_with("d.toml:1: invalid TOML"), "{e}");
        let e = read_text(Path::new("/nonexistent/p.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/p.toml: cannot read"), "{e}");
    }

    #[test]
    fn unknown_keys_list_the_valid_ones() {
        let file = ConfigFile::parse("[listen]\nprt = 1\n", "d.toml").unwrap();
        let e = file.deserialize::<Demo>().unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("unknown key \"prt\"; valid keys here: port"), "{e}");
    }

    #[test]
    fn files_that_crash_toml_edit_are_refused_with_the_line() {
        // Crash inputs of fuzz/ (sched_config_toml, peer_config_toml): toml_edit 0.23.10
        // panicked on them in its error recovery.
        for text in ["=\n.=", "a=1\n=\n.=\n"] {
            let e = ConfigFile::parse(text, "d.toml").err().expect("refused");
            assert!(e.to_string().starts_with("d.toml:") && e.message.starts_with("invalid TOML"), "{e}");
            assert!(e.line.is_some(), "{e}");
        }
    }
}
