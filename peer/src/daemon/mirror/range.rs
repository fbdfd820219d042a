//! `Range` request headers on blobs (RFC 9110 §14): one range, `bytes=N-`, `bytes=N-M` or
//! the suffix form `bytes=-N`, is answered 206 with `Content-Range`. Several ranges
//! (`bytes=0-1,5-6`) are answered 200 with the whole blob, which the RFC allows (a server
//! may ignore Range) and which every registry client handles. A header that cannot be
//! satisfied or makes no sense (other units, `M < N`, numbers past u64, a start at or past
//! the end) is answered 416 with `Content-Range: bytes */LEN` and a body that says why.

/// What a Range header asks for, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// No header, or several ranges: the whole blob (200).
    Whole,
    /// `bytes=N-` (end None) or `bytes=N-M` (M inclusive).
    From { start: u64, end: Option<u64> },
    /// `bytes=-N`: the last N bytes.
    Suffix { len: u64 },
}

/// A header refused before the length matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// The answer for a blob of a known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Whole,
    /// Bytes `start..end` (end exclusive), answered 206.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable(String),
}

/// Longest header value looked at; a longer one is refused.
const MAX_LEN: usize = 1024;

pub fn parse(header: Option<&str>) -> Result<Spec, Invalid> {
    let Some(h) = header else { return Ok(Spec::Whole) };
    if h.len() > MAX_LEN {
        return Err(Invalid(format!("Range header of {} bytes; at most {MAX_LEN}", h.len())));
    }
    let h = h.trim();
    let Some(set) = h.strip_prefix("bytes=") else {
        return Err(Invalid(format!("Range {h:?}: only byte ranges are served (bytes=N-M, bytes=N-, bytes=-N)")));
    };
    if set.contains(',') {
        // Check every part, then serve the whole blob.
        for part in set.split(',') {
            one(part.trim(), h)?;
        }
        return Ok(Spec::Whole);
    }
    one(set.trim(), h)
}

fn one(part: &str, h: &str) -> Result<Spec, Invalid> {
    let number = |s: &str| -> Result<u64, Invalid> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid(format!("Range {h:?}: {s:?} is not a byte position")));
        }
        s.parse::<u64>().map_err(|_| Invalid(format!("Range {h:?}: {s} is too large")))
    };
    let Some((a, b)) = part.split_once('-') else {
        return Err(Invalid(format!("Range {h:?}: expected N-M, N- or -N")));
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let len = number(b)?;
        if len == 0 {
            return Err(Invalid(format!("Range {h:?}: a suffix of 0 bytes selects nothing")));
        }
        return Ok(Spec::Suffix { len });
    }
    let start = number(a)?;
    let end = if b.is_empty() { None } else { Some(number(b)?) };
    if let Some(end) = end {
        if end < start {
            return Err(Invalid(format!("Range {h:?}: the last byte {end} is before the first {start}")));
        }
    }
    Ok(Spec::From { start, end })
}

impl Spec {
    pub fn resolve(self, content_bytes: u64) -> Resolved {
        match self {
            Spec::Whole => Resolved::Whole,
            Spec::From { start, end } => {
                if start >= content_bytes {
                    return Resolved::Unsatisfiable(format!(
                        "the range starts at byte {start}; the blob has {content_bytes} bytes"
                    ));
                }
                let end = end.map_or(content_bytes, |e| e.saturating_add(1).min(content_bytes));
                Resolved::Part { start, end }
            }
            Spec::Suffix { len } => {
                if content_bytes == 0 {
                    return Resolved::Unsatisfiable("the blob is empty".into());
                }
                Resolved::Part { start: content_bytes.saturating_sub(len), end: content_bytes }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(h: &str, len: u64) -> Resolved {
        parse(Some(h)).unwrap().resolve(len)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse(None).unwrap(), Spec::Whole);
        assert_eq!(part("bytes=0-0", 10), Resolved::Part { start: 0, end: 1 });
        assert_eq!(part("bytes=2-5", 10), Resolved::Part { start: 2, end: 6 });
        assert_eq!(part("bytes=2-", 10), Resolved::Part { start: 2, end: 10 });
        assert_eq!(part("bytes=8-100", 10), Resolved::Part { start: 8, end: 10 }, "end clipped");
        assert_eq!(part("bytes=-3", 10), Resolved::Part { start: 7, end: 10 });
        assert_eq!(part("bytes=-30", 10), Resolved::Part { start: 0, end: 10 });
        assert_eq!(part(" bytes= 4 - 4 ", 10), Resolved::Part { start: 4, end: 5 });
        assert_eq!(part("bytes=9-18446744073709551615", 10), Resolved::Part { start: 9, end: 10 });
    }

    #[test]
    fn several_ranges_mean_the_whole_blob() {
        assert_eq!(parse(Some("bytes=0-1, 5-6")).unwrap(), Spec::Whole);
        assert!(parse(Some("bytes=0-1,x")).is_err(), "every part is still checked");
    }

    #[test]
    fn unsatisfiable_ranges_say_why() {
        match part("bytes=10-", 10) {
            Resolved::Unsatisfiable(m) => assert!(m.contains("starts at byte 10") && m.contains("10 bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(part("bytes=-1", 0), Resolved::Unsatisfiable(_)));
    }

    #[test]
    fn absurd_headers_are_invalid() {
        for h in [
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-0",
            "bytes=1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes=0x10-",
        ] {
            let e = parse(Some(h)).unwrap_err();
            assert!(e.0.starts_with("Range") && !e.0.is_empty(), "{h}: {e:?}");
        }
        assert!(parse(Some(&format!("bytes={}", "1".repeat(2000)))).unwrap_err().0.contains("2006 bytes"));
    }
}
