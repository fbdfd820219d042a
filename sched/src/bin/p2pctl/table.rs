//! Rows of JSON objects as aligned columns that fit the terminal.

use serde_json::Value;

/// How a column's cell is made from a row.
pub type Cell = fn(&Value, &str) -> String;

/// A field as it is: strings bare, null as "-".
pub fn plain(row: &Value, field: &str) -> String {
    match &row[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The rows as aligned columns no wider than `width`: the widest columns are cut first,
/// each keeping at least 8 characters and ending in "…" where cut. `cols`: (field, header).
pub fn table(rows: &[Value], cols: &[(&str, &str)], width: usize, cell: Cell) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cols.iter().map(|(f, _)| cell(r, f)).collect()).collect();
    let mut widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (_, h))| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(h.len()))
        .collect();
    let gaps = 2 * cols.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > width {
        let (i, w) = widths.iter().copied().enumerate().max_by_key(|(i, w)| (*w, usize::MAX - i)).unwrap_or((0, 0));
        if w <= 8 {
            break;
        }
        widths[i] = w - 1;
    }
    let fit = |s: &str, w: usize| {
        let n = s.chars().count();
        if n <= w {
            format!("{s:<w$}")
        } else {
            format!("{}…", s.chars().take(w.saturating_sub(1)).collect::<String>())
        }
    };
    let mut out = String::new();
    let line = |values: Vec<&str>| {
        let parts: Vec<String> = values.iter().zip(&widths).map(|(v, w)| fit(v, *w)).collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    out.push_str(&line(cols.iter().map(|(_, h)| *h).collect()));
    for r in &cells {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w >= 40).unwrap_or(120)
}

/// Bytes in the largest unit that keeps the number at least 1 (B, KiB, MiB, GiB, TiB).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
