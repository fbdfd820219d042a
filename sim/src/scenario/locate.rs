//! Byte spans to line numbers and dotted keys, and dotted keys back to lines.
//!
//! Serde errors from `toml` carry a byte span but not the key path; validation errors carry
//! the key path but no span. Both are answered from one `toml_edit` document, which keeps
//! the span of every key, value and table header.

use std::ops::Range;

use toml_edit::{Document, Item, TableLike, Value};

/// 1-based line of a byte offset (clamped to the text, so any offset is safe).
pub(crate) fn line_of(text: &str, offset_bytes: usize) -> usize {
    let end = offset_bytes.min(text.len());
    1 + text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count()
}

/// Where a dotted key is written, or where it would be written when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyPlace {
    pub line: usize,
    /// False when the key is not in the file (its default applies): `line` is then the
    /// header of the nearest enclosing table that is written, or 1.
    pub present: bool,
}

/// Finds `path` ("cluster.pods", "image.layer_bytes[2]", "modes[1]",
/// "cluster.node_groups[1].count") in the document.
pub(crate) fn locate(doc: &Document<&str>, text: &str, path: &str) -> KeyPlace {
    let mut table: Option<&dyn TableLike> = Some(doc.as_table());
    let mut span: Option<Range<usize>> = None;
    for segment in path.split('.') {
        let (name, index) = split_index(segment);
        let Some((key, item)) = table.and_then(|t| t.get_key_value(name)) else {
            return absent(text, span);
        };
        span = key.span().or(span);
        table = item.as_table_like();
        if let Some(i) = index {
            // An array of tables (`[[cluster.node_groups]]`): descend into the i-th table.
            if let Some(tables) = item.as_array_of_tables() {
                let Some(t) = tables.get(i) else {
                    return absent(text, span);
                };
                span = t.span().or(span);
                table = Some(t);
                continue;
            }
            let Some(element) = item.as_array().and_then(|a| a.get(i)) else {
                return absent(text, span);
            };
            span = element.span().or(span);
            // Arrays of values hold scalars only; nothing to descend into.
            return KeyPlace { line: line_at(text, &span), present: true };
        }
    }
    KeyPlace { line: line_at(text, &span), present: true }
}

fn absent(text: &str, span: Option<Range<usize>>) -> KeyPlace {
    KeyPlace { line: line_at(text, &span), present: false }
}

fn line_at(text: &str, span: &Option<Range<usize>>) -> usize {
    span.as_ref().map_or(1, |s| line_of(text, s.start))
}

/// "layer_bytes[2]" -> ("layer_bytes", Some(2)); "pods" -> ("pods", None).
fn split_index(segment: &str) -> (&str, Option<usize>) {
    match segment.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
        None => (segment, None),
    }
}

/// The dotted key whose key, value or header span most tightly holds `offset_bytes`
/// (None when the offset falls between keys, e.g. on a comment).
pub(crate) fn path_at(doc: &Document<&str>, offset_bytes: usize) -> Option<String> {
    let mut best = Best { want: Want::Holds(offset_bytes), found: None };
    walk_table(doc.as_table(), "", &mut best);
    best.found.map(|(path, _)| path)
}

/// The table whose header (or inline-table value) has exactly this span: serde reports a
/// missing key with the span of its table. None means the root table.
pub(crate) fn table_with_span(doc: &Document<&str>, span: Range<usize>) -> Option<String> {
    let mut best = Best { want: Want::Exact(span), found: None };
    walk_table(doc.as_table(), "", &mut best);
    best.found.map(|(path, _)| path)
}

enum Want {
    Holds(usize),
    Exact(Range<usize>),
}

struct Best {
    want: Want,
    /// Path and span length: the shortest holding span is the most specific.
    found: Option<(String, usize)>,
}

impl Best {
    fn consider(&mut self, span: Option<Range<usize>>, path: &str) {
        let Some(span) = span else { return };
        let matches = match &self.want {
            Want::Holds(offset) => span.contains(offset) || (span.is_empty() && span.start == *offset),
            Want::Exact(wanted) => !span.is_empty() && span == *wanted,
        };
        let len = span.len();
        if matches && self.found.as_ref().is_none_or(|(_, best_len)| len <= *best_len) {
            self.found = Some((path.to_string(), len));
        }
    }
}

fn walk_table(table: &dyn TableLike, prefix: &str, best: &mut Best) {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        best.consider(key.span(), &path);
        walk_item(item, &path, best);
    }
}

fn walk_item(item: &Item, path: &str, best: &mut Best) {
    match item {
        Item::None => {}
        Item::Value(value) => walk_value(value, path, best),
        Item::Table(table) => {
            best.consider(table.span(), path);
            walk_table(table, path, best);
        }
        Item::ArrayOfTables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                let element = format!("{path}[{i}]");
                best.consider(table.span(), &element);
                walk_table(table, &element, best);
            }
        }
    }
}

fn walk_value(value: &Value, path: &str, best: &mut Best) {
    best.consider(value.span(), path);
    match value {
        Value::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                walk_value(element, &format!("{path}[{i}]"), best);
            }
        }
        Value::InlineTable(table) => walk_table(table, path, best),
        _ => {}
    }
}
