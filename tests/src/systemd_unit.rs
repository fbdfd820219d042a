//! A systemd unit file read as (section, key, value) entries in file order, for the
//! manifest suite's checks of `deploy/systemd/*.service` (repeated keys stay separate, as
//! systemd treats several of them as lists). Errors name the file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Unit {
    pub origin: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
    pub line: usize,
}

impl Unit {
    pub fn parse(text: &str, origin: &str) -> Result<Unit, String> {
        let mut entries = Vec::new();
        let mut section: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if raw.ends_with('\\') {
                return Err(format!("{origin}:{}: continuation lines are not used in deploy/ units", i + 1));
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.to_string());
                continue;
            }
            let Some(section) = &section else {
                return Err(format!("{origin}:{}: {line:?} before any [section]", i + 1));
            };
            let (key, value) = line.split_once('=').ok_or(format!("{origin}:{}: {line:?} is not KEY=VALUE", i + 1))?;
            entries.push(Entry {
                section: section.clone(),
                key: key.trim().into(),
                value: value.trim().into(),
                line: i + 1,
            });
        }
        Ok(Unit { origin: origin.into(), entries })
    }

    pub fn load(path: &Path) -> Result<Unit, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Unit::parse(&text, &path.display().to_string())
    }

    /// The last value of `section.key` (systemd's rule for single-valued keys).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|e| e.section == section && e.key == key).map(|e| e.value.as_str())
    }

    /// `get`, or an error naming the unit and the missing key.
    pub fn require(&self, section: &str, key: &str) -> Result<&str, String> {
        self.get(section, key).ok_or(format!("{}: [{section}] has no {key}=", self.origin))
    }
}

/// A systemd time span as a unit file writes it ("60s", "2min", "1min 30s", "90") in ms.
pub fn timespan_ms(text: &str) -> Option<u64> {
    let mut total = 0u64;
    for word in text.split_whitespace() {
        let digits = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
        let n: u64 = word[..digits].parse().ok()?;
        let unit_ms = match &word[digits..] {
            "" | "s" | "sec" => 1000,
            "ms" | "msec" => 1,
            "m" | "min" => 60_000,
            "h" | "hr" => 3_600_000,
            _ => return None,
        };
        total += n * unit_ms;
    }
    Some(total)
}

pub fn systemd_analyze() -> Option<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Runs `systemd-analyze verify` on copies of `units` in `dir`, with each absolute
/// `ExecStart` binary replaced by `stand_in` (verify refuses a unit whose binary is not
/// installed here). systemd reports unknown keys and bad values as warnings with exit
/// status 0, so any output at all counts as a failure.
pub fn verify(analyze: &Path, units: &[PathBuf], dir: &Path, stand_in: &Path) -> Result<(), String> {
    let mut copies = Vec::new();
    for unit in units {
        let text = std::fs::read_to_string(unit).map_err(|e| format!("{}: {e}", unit.display()))?;
        let rewritten: String = text
            .lines()
            .map(|l| match l.strip_prefix("ExecStart=") {
                Some(cmd) => {
                    let (_, args) = cmd.split_once(' ').unwrap_or((cmd, ""));
                    format!("ExecStart={} {args}\n", stand_in.display())
                }
                None => format!("{l}\n"),
            })
            .collect();
        let copy = dir.join(unit.file_name().unwrap());
        std::fs::write(&copy, rewritten).map_err(|e| format!("{}: {e}", copy.display()))?;
        copies.push(copy);
    }
    let out = Command::new(analyze)
        .arg("verify")
        .args(&copies)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", analyze.display()))?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !said.trim().is_empty() {
        return Err(format!("systemd-analyze verify ({}): {}", out.status, said.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_and_repeats() {
        let u = Unit::parse("# c\n[Unit]\nA=1\n\n[Service]\nX = a b\nX=c\n", "u.service").unwrap();
        assert_eq!(u.get("Service", "X"), Some("c"));
        assert_eq!(u.entries.iter().filter(|e| e.key == "X").count(), 2);
        assert_eq!(u.get("Unit", "X"), None);
        assert!(u.require("Service", "Y").unwrap_err().contains("[Service] has no Y="));
        let e = Unit::parse("[Unit]\nnonsense\n", "u.service").unwrap_err();
        assert!(e.starts_with("u.service:2:"), "{e}");
        assert!(Unit::parse("A=1\n", "u").is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(timespan_ms("60s"), Some(60_000));
        assert_eq!(timespan_ms("1min 30s"), Some(90_000));
        assert_eq!(timespan_ms("90"), Some(90_000));
        assert_eq!(timespan_ms("500ms"), Some(500));
        assert_eq!(timespan_ms("soon"), None);
    }
}
