//! `WWW-Authenticate` challenges of a registry's 401 (RFC 9110 §11.6.1): `Basic
//! realm="..."`, or the token flow's `Bearer realm="URL",service="...",scope="..."`
//! (the distribution spec's token authentication). Only the first challenge is read.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// A challenge value is a line of a response head; longer ones are not read.
const MAX_VALUE_BYTES: usize = 8 << 10;

pub fn parse(value: &str) -> Option<Challenge> {
    if value.len() > MAX_VALUE_BYTES {
        return None;
    }
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = params(rest)?;
    let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let realm = get("realm").filter(|r| !r.is_empty())?;
    Some(Challenge::Bearer { realm, service: get("service"), scope: get("scope") })
}

/// `name=token` or `name="quoted \"string\""`, separated by commas.
fn params(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_string();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            return None;
        }
        s = s[eq + 1..].trim_start();
        let value = if let Some(quoted) = s.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => value.push(chars.next()?.1),
                    (_, c) => value.push(c),
                }
            };
            s = &quoted[end + 1..];
            value
        } else {
            let end = s.find(',').unwrap_or(s.len());
            let value = s[..end].trim().to_string();
            s = &s[end..];
            value
        };
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_challenges() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        let c = parse(r#"bearer realm=http://h/t , scope="a\"b""#);
        assert_eq!(
            c,
            Some(Challenge::Bearer { realm: "http://h/t".into(), service: None, scope: Some("a\"b".into()) })
        );
        assert_eq!(parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        for bad in
            ["", "Negotiate abc", "Bearer", r#"Bearer service="x""#, r#"Bearer realm="unterminated"#, "Bearer =x"]
        {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
