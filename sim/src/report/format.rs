//! Human-readable numbers for tables and chart labels (decimal SI units).

/// "1.23 GB", "640 MB", "12 B".
pub fn bytes(n: u64) -> String {
    bytes_f(n as f64)
}

pub fn bytes_f(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if !n.is_finite() {
        return "-".to_string();
    }
    let mut v = n;
    let mut u = 0;
    while v.abs() >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", v.round() as i64)
    } else {
        format!("{} {}", sig3(v), UNITS[u])
    }
}

/// Three significant digits, no exponent: 1.23, 12.3, 123, 1234.
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_string();
    }
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Seconds for tables: "612.3 s", "4.07 s", "never" for a time that did not happen.
pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        return "never".to_string();
    }
    if s >= 100.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// Short seconds for chart labels: "612 s", "4.1 s", "0.52 s".
pub fn secs_short(s: f64) -> String {
    if !s.is_finite() {
        return "never".to_string();
    }
    if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// Gbit/s from bit/s, two decimals.
pub fn gbps(bps: f64) -> String {
    format!("{:.2}", bps / 1e9)
}

/// Registry bytes as a multiple of the image: "500.00x".
pub fn times_image_str(registry_bytes: u64, image_bytes: u64) -> String {
    if image_bytes == 0 {
        return "-".to_string();
    }
    format!("{:.2}x", registry_bytes as f64 / image_bytes as f64)
}

/// "12,345,678".
#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace says 1.85
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A float for CSV: fixed decimals, empty for a value that did not happen (NaN/inf).
pub fn csv_f(x: f64) -> String {
    if x.is_finite() {
        format!("{:.*}", super::summary::DECIMALS as usize, super::summary::round_fixed(x))
    } else {
        String::new()
    }
}

/// Renders rows as a left-aligned first column and right-aligned others.
pub fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width = vec![0usize; cols];
    for r in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |r: &[String]| {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header);
    out.push('\n');
    out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (cols - 1)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1_234_567_890), "1.23 GB");
        assert_eq!(bytes(615_000_000_000), "615 GB");
        assert_eq!(bytes(52_428_800), "52.4 MB");
        assert_eq!(thousands(12_345_678), "12,345,678");
        assert_eq!(thousands(999), "999");
        assert_eq!(secs(612.34), "612.3 s");
        assert_eq!(secs(f64::INFINITY), "never");
        assert_eq!(csv_f(1.5), "1.500000");
        assert_eq!(csv_f(f64::NAN), "");
    }
}
