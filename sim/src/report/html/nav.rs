//! The bar at the top of every page: a scenario's run, policies and sweep pages and the
//! matrix that lists it, each a relative link when its file exists.

use super::escape::segment;
use super::page::{nav_block, Html, NAV_CLOSE, NAV_OPEN};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// The pages there are, and where each lives under the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Here {
    Run,
    Policies,
    Sweep,
    Matrix,
}

impl Here {
    const SCENARIO_PAGES: [Here; 3] = [Here::Run, Here::Policies, Here::Sweep];

    fn label(self) -> &'static str {
        match self {
            Here::Run => "run",
            Here::Policies => "policies",
            Here::Sweep => "sweep",
            Here::Matrix => "matrix",
        }
    }

    /// Path components under the output directory (the file last).
    fn parts(self, name: &str) -> Vec<String> {
        let n = name.to_string();
        match self {
            Here::Run => vec![n, "index.html".into()],
            Here::Policies => vec![n, "policies.html".into()],
            Here::Sweep => vec![n, "sweep".into(), "index.html".into()],
            Here::Matrix => vec!["matrix".into(), "index.html".into()],
        }
    }

    /// The page's file for scenario `name` under `out_root`.
    pub fn file(self, out_root: &Path, name: &str) -> PathBuf {
        self.parts(name).iter().fold(out_root.to_path_buf(), |p, c| p.join(c))
    }

    /// The relative link from this page (of scenario `name`) to `to`.
    pub fn href_to(self, to: Here, name: &str) -> String {
        let from = self.parts(name);
        let to = to.parts(name);
        let from_dir = &from[..from.len() - 1];
        let common = from_dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let mut href = "../".repeat(from_dir.len() - common);
        href.push_str(&to[common..].iter().map(|c| segment(c)).collect::<Vec<_>>().join("/"));
        href
    }
}

/// Whether the matrix page under `out_root` lists scenario `name`.
fn matrix_lists(out_root: &Path, name: &str) -> bool {
    let needle = format!("href=\"{}\"", Here::Matrix.href_to(Here::Run, name));
    std::fs::read_to_string(Here::Matrix.file(out_root, name)).is_ok_and(|t| t.contains(&needle))
}

/// The bar of page `here` of scenario `name` (for the matrix page, `name` is unused).
pub fn bar(out_root: &Path, name: &str, here: Here) -> Html {
    if here == Here::Matrix {
        return Html::strong("matrix");
    }
    let mut items = vec![Html::text(&format!("{name}:"))];
    if matrix_lists(out_root, name) {
        items.push(Html::link(&here.href_to(Here::Matrix, name), "matrix"));
    }
    for page in Here::SCENARIO_PAGES {
        if page == here {
            items.push(Html::strong(page.label()));
        } else if page.file(out_root, name).is_file() {
            items.push(Html::link(&here.href_to(page, name), page.label()));
        }
    }
    Html::join(items, " ")
}

/// Redraws the bar of every page of scenario `name` that exists, after one of them (or the
/// matrix) was written; a page whose bar is unchanged is not rewritten.
pub fn refresh(out_root: &Path, name: &str) -> anyhow::Result<()> {
    for here in Here::SCENARIO_PAGES {
        let path = here.file(out_root, name);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let (Some(start), Some(len)) = (text.find(NAV_OPEN), text.find(NAV_CLOSE)) else { continue };
        let end = len + NAV_CLOSE.len();
        if end <= start {
            continue;
        }
        let new = format!("{}{}{}", &text[..start], nav_block(&bar(out_root, name, here)), &text[end..]);
        if new != text {
            std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(Here::Run.href_to(Here::Policies, "a b"), "policies.html");
        assert_eq!(Here::Run.href_to(Here::Sweep, "a b"), "sweep/index.html");
        assert_eq!(Here::Run.href_to(Here::Matrix, "a b"), "../matrix/index.html");
        assert_eq!(Here::Sweep.href_to(Here::Run, "a b"), "../index.html");
        assert_eq!(Here::Sweep.href_to(Here::Matrix, "a b"), "../../matrix/index.html");
        assert_eq!(Here::Matrix.href_to(Here::Run, "a b"), "../a%20b/index.html");
        assert_eq!(Here::Sweep.file(Path::new("o"), "n"), Path::new("o/n/sweep/index.html"));
    }
}
