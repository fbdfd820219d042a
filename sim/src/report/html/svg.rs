//! Charts inlined into a page: the `.svg` file a report already wrote, as markup.

use super::page::Html;
use anyhow::Context;
use std::path::Path;

/// The SVG file at `path` ready to sit inside HTML: anything before `<svg` (an XML prolog,
/// a doctype, comments) dropped, and the namespace attribute, which HTML implies, removed so
/// the page holds no URL of its own. A file with a script in it is refused.
pub fn inline(path: &Path) -> anyhow::Result<Html> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading chart {}", path.display()))?;
    inline_text(&text).with_context(|| format!("chart {}", path.display()))
}

pub fn inline_text(text: &str) -> anyhow::Result<Html> {
    let start = text.find("<svg").context("no <svg> element in it")?;
    let svg = text[start..].trim_end();
    if svg.contains("<script") || svg.contains("<foreignObject") {
        anyhow::bail!("it holds a script or foreign object; charts are drawn by plotters and hold neither");
    }
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1).replacen(
        " xmlns:xlink=\"http://www.w3.org/1999/xlink\"",
        "",
        1,
    );
    Ok(Html::trusted(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prolog_and_namespace_go() {
        let h = inline_text(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg width=\"2\" viewBox=\"0 0 2 2\" xmlns=\"http://www.w3.org/2000/svg\">\n<rect/>\n</svg>\n",
        )
        .unwrap();
        assert_eq!(h.as_str(), "<svg width=\"2\" viewBox=\"0 0 2 2\">\n<rect/>\n</svg>");
        assert!(inline_text("<p>no chart</p>").is_err());
        assert!(inline_text("<svg><script>x()</script></svg>").is_err());
    }
}
