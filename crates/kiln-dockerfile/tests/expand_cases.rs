//! Table-driven expansion cases from `tests/fixtures/expand/cases.txt`.

use std::collections::BTreeMap;

use kiln_dockerfile::expand::{ExpandError, Expander};

const CASES: &str = include_str!("fixtures/expand/cases.txt");
const SEP: &str = " ⇒ ";

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Word,
    Words,
    Heredoc,
}

#[test]
fn fixture_cases() {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut escape = '\\';
    let mut mode = Mode::Word;
    let mut count = 0;
    let mut failures = Vec::new();

    for (idx, line) in CASES.lines().enumerate() {
        let lineno = idx + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("@env ") {
            env = rest
                .split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), unescape(v)))
                .collect();
            continue;
        }
        if let Some(rest) = line.strip_prefix("@escape ") {
            escape = rest.chars().next().expect("escape char");
            continue;
        }
        if let Some(rest) = line.strip_prefix("@mode ") {
            mode = match rest.trim() {
                "word" => Mode::Word,
                "words" => Mode::Words,
                "heredoc" => Mode::Heredoc,
                other => panic!("line {lineno}: unknown mode {other}"),
            };
            continue;
        }
        let (input, expected) = line
            .split_once(SEP)
            .unwrap_or_else(|| panic!("line {lineno}: no separator"));
        count += 1;

        let result: Result<String, ExpandError> = match mode {
            Mode::Word => Expander::new(escape).word(input, &env),
            Mode::Heredoc => Expander::heredoc().word(input, &env),
            Mode::Words => Expander::new(escape).words(input, &env).map(|w| {
                if w.is_empty() {
                    "[]".to_owned()
                } else {
                    w.join(" | ")
                }
            }),
        };

        let ok = if let Some(err) = expected.strip_prefix("ERROR") {
            let (offset, msg) = match err.strip_prefix('@') {
                Some(r) => {
                    let (n, m) = r.split_once(':').expect("ERROR@N: msg");
                    (Some(n.parse::<usize>().expect("offset")), m.trim_start())
                }
                None => (None, err.trim_start_matches(':').trim_start()),
            };
            match &result {
                Err(e) => e.to_string().contains(msg) && offset.is_none_or(|o| o == e.offset),
                Ok(_) => false,
            }
        } else {
            let want = match expected.strip_prefix("ESC:") {
                Some(x) => unescape(x),
                None => expected.to_owned(),
            };
            result.as_deref() == Ok(want.as_str())
        };
        if !ok {
            failures.push(format!(
                "line {lineno} [{mode:?}, escape {escape:?}]: {input:?} => got {result:?}, want {expected:?}"
            ));
        }
    }
    assert!(count >= 150, "only {count} cases");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
