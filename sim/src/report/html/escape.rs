//! Escaping for HTML text and attributes, and percent-encoding for the path segments of
//! relative links. Scenario names, keys and values come from user files, so every piece of
//! text a page shows goes through `text`.

/// `s` safe as HTML text and as a quoted attribute value: `& < > " '` become entities.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One path segment of a relative URL: every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`, so a
/// scenario named `a b#c?` links to its own directory and nothing else.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of `segment` (and of any `%XX`), for tests that follow links to files.
pub fn unpercent(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_the_five_characters() {
        assert_eq!(
            text(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(text("plain · ünïcode"), "plain · ünïcode");
    }

    #[test]
    fn segments_round_trip() {
        for s in ["nginx-50", "a b#c?d%e/f\"g<h>", "ünï"] {
            let e = segment(s);
            assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{e}");
            assert_eq!(unpercent(&e), s);
        }
        assert_eq!(segment("nginx-50"), "nginx-50");
        assert_eq!(unpercent("100%"), "100%");
    }
}
