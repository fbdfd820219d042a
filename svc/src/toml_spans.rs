//! Byte offsets and dotted keys of a TOML file, so configuration errors can name a line.
//! `toml` (serde) reports a byte span but no key; checks after deserialising know the key
//! but not the span. One `toml_edit` document, which keeps every span, answers both.

use std::ops::Range;
use toml_edit::{Document, Item, TableLike};

/// 1-based line of a byte offset (clamped to the text).
pub fn line_of(text: &str, offset_bytes: usize) -> usize {
    let end = offset_bytes.min(text.len());
    1 + text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count()
}

/// Line where `path` (e.g. ["scheduler", "retry_limit"]) is written; None when absent.
pub fn key_line(doc: &Document<&str>, text: &str, path: &[&str]) -> Option<usize> {
    let mut table: &dyn TableLike = doc.as_table();
    let mut span = None;
    for (i, name) in path.iter().enumerate() {
        let (key, item) = table.get_key_value(name)?;
        span = key.span().or_else(|| item.span());
        if i + 1 < path.len() {
            table = item.as_table_like()?;
        }
    }
    span.map(|s| line_of(text, s.start))
}

/// The dotted key whose key or value span most tightly holds `offset_bytes`.
pub fn key_at(doc: &Document<&str>, offset_bytes: usize) -> Option<String> {
    let mut best: Option<(String, usize)> = None;
    walk(doc.as_table(), "", offset_bytes, &mut best);
    best.map(|(path, _)| path)
}

fn walk(table: &dyn TableLike, prefix: &str, offset: usize, best: &mut Option<(String, usize)>) {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        consider(key.span(), &path, offset, best);
        consider(item.span(), &path, offset, best);
        if let Item::Table(t) = item {
            walk(t, &path, offset, best);
        } else if let Some(t) = item.as_table_like() {
            walk(t, &path, offset, best);
        }
    }
}

fn consider(span: Option<Range<usize>>, path: &str, offset: usize, best: &mut Option<(String, usize)>) {
    let Some(span) = span else { return };
    let holds = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if holds && best.as_ref().is_none_or(|(_, len)| span.len() <= *len) {
        *best = Some((path.to_string(), span.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_and_keys() {
        let text = "[listen]\ngrpc = \"x\"\n\n[scheduler]\npolicy = \"default\"\nretry_limit = 4\n";
        let doc = Document::parse(text).unwrap();
        assert_eq!(key_line(&doc, text, &["scheduler", "retry_limit"]), Some(6));
        assert_eq!(key_line(&doc, text, &["listen", "grpc"]), Some(2));
        assert_eq!(key_line(&doc, text, &["scheduler", "nope"]), None);
        let at = text.find("\"x\"").unwrap() + 1;
        assert_eq!(key_at(&doc, at).as_deref(), Some("listen.grpc"));
        assert_eq!(line_of(text, usize::MAX), 7);
    }
}
