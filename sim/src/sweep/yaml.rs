//! A JSON value as block YAML, for the manifests `--emit-job` writes (sim has no YAML
//! library and needs none: maps, lists, strings, numbers, booleans). Keys sorted (the same
//! bytes whatever serde_json's map keeps); strings JSON-quoted (valid YAML), text of several
//! lines a literal block.

use serde_json::Value;

/// `v` (an object) as one YAML document, without the `---`.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    map_body(&mut out, v, 0);
    out
}

fn sorted(m: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

fn map_body(out: &mut String, v: &Value, indent: usize) {
    let Value::Object(m) = v else { unreachable!("map_body of a map") };
    for (k, x) in sorted(m) {
        out.push_str(&pad(indent));
        out.push_str(&key(k));
        out.push(':');
        value_after_key(out, x, indent);
    }
}

fn value_after_key(out: &mut String, x: &Value, indent: usize) {
    match x {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map_body(out, x, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            list_body(out, x, indent);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(x, indent + 2));
            out.push('\n');
        }
    }
}

fn list_body(out: &mut String, v: &Value, indent: usize) {
    let Value::Array(a) = v else { unreachable!("list_body of a list") };
    for x in a {
        out.push_str(&pad(indent));
        out.push_str("- ");
        match x {
            Value::Object(m) if !m.is_empty() => {
                // The first key on the dash's line, the rest under it.
                let mut first = true;
                for (k, y) in sorted(m) {
                    if !first {
                        out.push_str(&pad(indent + 2));
                    }
                    first = false;
                    out.push_str(&key(k));
                    out.push(':');
                    value_after_key(out, y, indent + 2);
                }
            }
            Value::Array(b) if !b.is_empty() => {
                out.push('\n');
                list_body(out, x, indent + 2);
            }
            _ => {
                out.push_str(&scalar(x, indent + 2));
                out.push('\n');
            }
        }
    }
}

/// A plain key where YAML reads it back as the same string, else quoted.
fn key(k: &str) -> String {
    let plain = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if plain && !looks_typed(k) {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

/// Words YAML (1.1 or 1.2) might read as something other than a string: booleans, null,
/// anything starting like a number (`0x1f`, `1_000`, `12:30`).
fn looks_typed(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"].contains(&lower.as_str())
        || s.parse::<f64>().is_ok()
        || s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
}

fn scalar(x: &Value, indent: usize) -> String {
    match x {
        Value::String(s) if block_ok(s) => {
            let mut b = String::from("|");
            for line in s.lines() {
                b.push('\n');
                if !line.is_empty() {
                    b.push_str(&pad(indent));
                    b.push_str(line);
                }
            }
            b
        }
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // JSON's strings, numbers, booleans and null are YAML's.
        other => other.to_string(),
    }
}

/// Text a literal block holds exactly: several lines, one final newline, a first line not
/// starting with a space (the block's indentation is read from it), no line of blanks only,
/// no control characters but the newlines, none a YAML 1.1 reader takes for a line break.
fn block_ok(s: &str) -> bool {
    s.contains('\n')
        && s.ends_with('\n')
        && !s.ends_with("\n\n")
        && !s.starts_with(['\n', ' '])
        && s.lines().all(|l| l.is_empty() || !l.trim().is_empty())
        && !s.chars().any(|c| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_lists_and_text() {
        let v = json!({
            "a": 1, "b": "x y", "true": "no", "0x1f": 1, "list": [{"k": "v", "m": [1, 2]}, "s"], "e": {}, "el": [],
            "text": "one\n\n  two\n", "indented": " a\nb\n"
        });
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "\"0x1f\": 1\na: 1\nb: \"x y\"\ne: {}\nel: []\nindented: \" a\\nb\\n\"\nlist:\n- k: \"v\"\n  m:\n  - 1\n  - 2\n- \"s\"\n\
             text: |\n  one\n\n    two\n\"true\": \"no\"\n"
        );
    }
}
