//! What the scenario tests share: where a key sits in a test's TOML, and the one-line
//! `file:line: key: what to fix` an error must be.

use super::parse_scenario;

/// The 1-based line of the first line of `text` that contains `needle`, from line `after`.
pub(super) fn line_of(text: &str, needle: &str, after: usize) -> usize {
    after + 1 + text.lines().skip(after).position(|l| l.contains(needle)).expect("the needle is in the text")
}

/// The 1-based line of the last line of `text` that contains `needle`.
pub(super) fn last_line_of(text: &str, needle: &str) -> usize {
    text.lines().count() - text.lines().rev().position(|l| l.contains(needle)).expect("the needle is in the text")
}

/// `text`, read as `file`, is refused at `line`, naming `key` and saying `fragment`.
pub(super) fn expect_refused(text: &str, file: &str, line: usize, key: &str, fragment: &str) {
    let shown = parse_scenario(text, file).expect_err("refused").to_string();
    let prefix = format!("{file}:{line}: {key}: ");
    assert!(shown.starts_with(&prefix), "want {prefix:?}, got {shown:?}\n{text}");
    assert!(shown.contains(fragment), "want {fragment:?} in {shown:?}");
}
