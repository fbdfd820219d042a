//! `index.html` pages: every run, matrix, policy comparison and sweep also writes one
//! self-contained page (inline CSS and SVG, no script, no network) beside its other files.
//!
//! | page                          | written by             | file              |
//! |-------------------------------|------------------------|-------------------|
//! | `DIR/<name>/index.html`       | `sim SCENARIO`, matrix | [`run`]           |
//! | `DIR/<name>/policies.html`    | `sim compare-policies` | [`policies`]      |
//! | `DIR/<name>/sweep/index.html` | `sim sweep`            | [`sweep`]         |
//! | `DIR/matrix/index.html`       | `sim matrix`           | [`matrix`]        |
//!
//! A scenario's pages link to each other and to the matrix listing it ([`nav`]); the links
//! are redrawn whenever one of them is written, so they follow what is on disk whatever the
//! order the commands ran in. The same inputs give the same bytes: nothing reads a clock.

pub mod escape;
pub mod matrix;
pub mod nav;
pub mod page;
pub mod policies;
pub mod run;
pub mod svg;
pub mod sweep;

use crate::scenario::Scenario;
use anyhow::Context;
use page::{Html, Page};
use std::path::{Path, PathBuf};

/// The scenario as a page shows it: the file as written and as the run resolved it.
#[derive(Debug, Clone, Default)]
pub struct ScenarioText {
    /// The path the command was given.
    pub path: String,
    /// The file's text.
    pub file: String,
    /// Every key of the loaded scenario (defaults and `--seed`/`--policy` applied), as TOML.
    pub resolved: String,
}

impl ScenarioText {
    pub fn of(path: &Path, file: &str, sc: &Scenario) -> anyhow::Result<ScenarioText> {
        Ok(ScenarioText { path: path.display().to_string(), file: file.to_string(), resolved: resolved_toml(sc)? })
    }

    /// Reads the file at `path` again (the CLI has loaded it, so it is there).
    pub fn read(path: &Path, sc: &Scenario) -> anyhow::Result<ScenarioText> {
        let file =
            std::fs::read_to_string(path).with_context(|| format!("reading {} for index.html", path.display()))?;
        ScenarioText::of(path, &file, sc)
    }
}

/// `sc` as TOML: through a table first, so values come before sub-tables as TOML wants.
pub fn resolved_toml(sc: &Scenario) -> anyhow::Result<String> {
    let table = toml::Table::try_from(sc).with_context(|| format!("scenario {:?} as TOML", sc.name))?;
    toml::to_string(&table).with_context(|| format!("scenario {:?} as TOML", sc.name))
}

/// The scenario file as written, then the effective configuration: the scenario as
/// resolved and, for a run, the core tables it ran (`config.toml`).
fn scenario_section(p: &mut Page, s: &ScenarioText, config_toml: Option<&str>) {
    p.h2("Scenario");
    p.pre(&format!("{} (as written)", s.path), &s.file, true);
    p.h2("Effective configuration");
    p.pre("the scenario as resolved: every key, defaults and command-line overrides applied", &s.resolved, false);
    match config_toml {
        Some("") => p.p(Html::text("The run recorded no core configuration.")),
        Some(c) => p.pre("the scheduler and peer tables the cores ran (config.toml)", c, true),
        None => {}
    }
}

/// Links to the files of `dir` named in `names` that exist, in that order.
fn file_links(dir: &Path, names: &[&str]) -> Vec<Html> {
    names.iter().filter(|n| dir.join(n).is_file()).map(|n| Html::link(&escape::segment(n), n)).collect()
}

/// Each `.svg` of `dir` named by `stems`, inlined, with its caption; charts not written are
/// left out.
fn figures(p: &mut Page, dir: &Path, charts: &[(String, String)]) -> anyhow::Result<()> {
    for (stem, caption) in charts {
        let path = dir.join(format!("{stem}.svg"));
        if path.is_file() {
            p.figure(svg::inline(&path)?, &format!("{caption} ({stem}.svg, also {stem}.png)"));
        }
    }
    Ok(())
}

/// Writes `text` to `path`; the error names the file.
fn write(path: &Path, text: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the page tests: following a page's links.

    use super::escape::unpercent;
    use std::path::{Path, PathBuf};

    /// Every `href="..."` and `src="..."` value of `html`.
    pub fn links(html: &str) -> Vec<String> {
        let mut out = vec![];
        for attr in ["href=\"", "src=\""] {
            let mut rest = html;
            while let Some(i) = rest.find(attr) {
                rest = &rest[i + attr.len()..];
                let end = rest.find('"').unwrap_or(rest.len());
                out.push(rest[..end].to_string());
            }
        }
        out
    }

    /// The links of the page at `page` that do not lead to a file.
    pub fn broken_links(page: &Path) -> Vec<PathBuf> {
        let html = std::fs::read_to_string(page).unwrap();
        let dir = page.parent().unwrap();
        links(&html)
            .into_iter()
            .map(|l| dir.join(unpercent(&l.replace("&amp;", "&"))))
            .filter(|p| !p.is_file())
            .collect()
    }
}
