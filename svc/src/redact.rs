//! URLs shown in logs, errors and listings: the peer daemon's and the scheduler's one rule.

/// A URL fit for logs and errors: no query (signatures), no user info (passwords), no fragment.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) => {
            let had_query = parsed.query().is_some();
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let mut out: String = parsed.into();
            if had_query {
                out.push_str("?<redacted>");
            }
            out
        }
        // Unparsable: keep up to the first `?` or `#`, and drop anything before an `@`.
        Err(_) => {
            let cut = url.find(['?', '#']).unwrap_or(url.len());
            let head = &url[..cut];
            let head = match (head.find("://"), head.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &head[..s + 3], &head[at + 1..]),
                _ => head.to_string(),
            };
            head.chars().take(200).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redaction_drops_query_and_credentials() {
        assert_eq!(redact_url("https://u:p@h/x?sig=1#f"), "https://h/x?<redacted>");
        assert_eq!(redact_url("weird://u:p@h x?sig=1"), "weird://h x");
    }

    /// What the scheduler's task listing shows (`sched::service::listing`).
    #[test]
    fn listed_urls_keep_host_port_and_path_only() {
        assert_eq!(
            redact_url("https://user:secret@registry.example:5000/v2/x/blobs/sha256:ab?X-Amz-Signature=s#f"),
            "https://registry.example:5000/v2/x/blobs/sha256:ab?<redacted>"
        );
        assert_eq!(redact_url("http://h/"), "http://h/");
        assert_eq!(redact_url("http://h"), "http://h/");
        assert_eq!(redact_url("no scheme?q=1"), "no scheme");
    }
}
