//! A tiny HTML writer: a page of headings, paragraphs, tables, preformatted text and inline
//! SVG, with one inline style sheet and no script. Text goes in through [`Html::text`]
//! (escaped); only this module and [`super::svg`] put markup together.

use super::escape;

/// A fragment of markup whose text parts are escaped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Html(String);

impl Html {
    /// Text, escaped.
    pub fn text(s: &str) -> Html {
        Html(escape::text(s))
    }

    /// A link; `href` is a relative URL built with [`escape::segment`], `label` text.
    pub fn link(href: &str, label: &str) -> Html {
        Html(format!("<a href=\"{}\">{}</a>", escape::text(href), escape::text(label)))
    }

    pub fn strong(s: &str) -> Html {
        Html(format!("<strong>{}</strong>", escape::text(s)))
    }

    /// Fragments one after the other.
    pub fn join(parts: impl IntoIterator<Item = Html>, sep: &str) -> Html {
        let v: Vec<String> = parts.into_iter().map(|h| h.0).collect();
        Html(v.join(&escape::text(sep)))
    }

    /// Markup made elsewhere in this module tree (inline SVG, already checked).
    pub(super) fn trusted(s: String) -> Html {
        Html(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A table cell: its content and whether it is a number (right-aligned).
#[derive(Debug, Clone)]
pub struct Cell {
    pub html: Html,
    pub numeric: bool,
}

impl Cell {
    pub fn text(s: &str) -> Cell {
        Cell { html: Html::text(s), numeric: false }
    }
    pub fn num(s: &str) -> Cell {
        Cell { html: Html::text(s), numeric: true }
    }
    pub fn html(h: Html, numeric: bool) -> Cell {
        Cell { html: h, numeric }
    }
}

const STYLE: &str = "\
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;background:#fff}
nav{padding:8px 24px;background:#f3f4f6;border-bottom:1px solid #d0d7de;font-size:13px}
nav a,nav strong{margin-right:14px}
main{padding:4px 24px 48px}
h1{font-size:22px;margin:16px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:3px}
h3{font-size:15px;margin:18px 0 6px}
p{margin:6px 0}.sub{color:#59636e}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;white-space:nowrap}
th{background:#f6f8fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even) td{background:#fafbfc}
figure{margin:12px 0 20px;max-width:1100px}figure svg{display:block;max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#59636e;font-size:12px}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:8px 10px;overflow:auto;max-height:520px;font-size:12px;line-height:1.35}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
ul{margin:4px 0;padding-left:22px}
";

/// One page: a title, the navigation bar and the body built up by the methods.
#[derive(Debug, Clone)]
pub struct Page {
    title: String,
    body: String,
}

impl Page {
    pub fn new(title: &str) -> Page {
        let mut p = Page { title: title.to_string(), body: String::new() };
        p.body.push_str(&format!("<h1>{}</h1>\n", escape::text(title)));
        p
    }

    pub fn h2(&mut self, s: &str) {
        self.body.push_str(&format!("<h2>{}</h2>\n", escape::text(s)));
    }

    pub fn h3(&mut self, s: &str) {
        self.body.push_str(&format!("<h3>{}</h3>\n", escape::text(s)));
    }

    pub fn p(&mut self, h: Html) {
        self.body.push_str(&format!("<p>{}</p>\n", h.0));
    }

    /// A grey line under the title.
    pub fn sub(&mut self, s: &str) {
        self.body.push_str(&format!("<p class=\"sub\">{}</p>\n", escape::text(s)));
    }

    pub fn list(&mut self, items: impl IntoIterator<Item = Html>) {
        self.body.push_str("<ul>\n");
        for i in items {
            self.body.push_str(&format!("<li>{}</li>\n", i.0));
        }
        self.body.push_str("</ul>\n");
    }

    /// A table with a header row; a header cell is right-aligned when its column's first
    /// row is a number.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<Cell>]) {
        let numeric = |i: usize| rows.first().and_then(|r| r.get(i)).is_some_and(|c| c.numeric);
        let class = |n: bool| if n { " class=\"n\"" } else { "" };
        self.body.push_str("<div class=\"scroll\"><table>\n<thead><tr>");
        for (i, h) in header.iter().enumerate() {
            self.body.push_str(&format!("<th{}>{}</th>", class(numeric(i)), escape::text(h)));
        }
        self.body.push_str("</tr></thead>\n<tbody>\n");
        for r in rows {
            self.body.push_str("<tr>");
            for c in r {
                self.body.push_str(&format!("<td{}>{}</td>", class(c.numeric), c.html.0));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table></div>\n");
    }

    /// Preformatted text (a file's contents), escaped; folded under `summary` unless `open`.
    pub fn pre(&mut self, summary: &str, text: &str, open: bool) {
        self.body.push_str(&format!(
            "<details{}><summary>{}</summary>\n<pre>{}</pre>\n</details>\n",
            if open { " open" } else { "" },
            escape::text(summary),
            escape::text(text)
        ));
    }

    /// A chart: inline SVG markup and a caption.
    pub fn figure(&mut self, svg: Html, caption: &str) {
        self.body.push_str(&format!(
            "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            svg.0,
            escape::text(caption)
        ));
    }

    /// The whole document, with `nav` (from [`super::nav`]) at the top.
    pub fn finish(&self, nav: &Html) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{}\n<main>\n{}</main>\n</body>\n</html>\n",
            escape::text(&self.title),
            nav_block(nav),
            self.body
        )
    }
}

/// The navigation bar; [`super::nav::refresh`] finds it again by these two markers.
pub fn nav_block(nav: &Html) -> String {
    format!("{NAV_OPEN}{}{NAV_CLOSE}", nav.0)
}

pub const NAV_OPEN: &str = "<nav>";
pub const NAV_CLOSE: &str = "</nav>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        let mut p = Page::new("<t>");
        p.h2("a&b");
        p.p(Html::join([Html::text("x\"y"), Html::link("a%20b/index.html", "<l>")], " · "));
        p.table(&["k'"], &[vec![Cell::num("<1>")]]);
        p.pre("f", "</pre><script>", false);
        let html = p.finish(&Html::text("n"));
        assert!(html.contains("<title>&lt;t&gt;</title>"), "{html}");
        assert!(html.contains("<h2>a&amp;b</h2>"));
        assert!(html.contains("x&quot;y · <a href=\"a%20b/index.html\">&lt;l&gt;</a>"), "{html}");
        assert!(html.contains("<th class=\"n\">k&#39;</th>") && html.contains("<td class=\"n\">&lt;1&gt;</td>"));
        assert!(html.contains("<pre>&lt;/pre&gt;&lt;script&gt;</pre>"));
        assert!(!html.contains("<script"));
    }
}
