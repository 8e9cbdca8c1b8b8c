//! Small variable-reference scanner for lint rules. It follows the shell
//! word rules BuildKit uses (escape char, single quotes are literal, double
//! quotes still expand) but only *finds* references; real expansion lives in
//! the `expand` module.

use crate::ast::{Span, Word};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    pub name: String,
    /// Byte range of the whole reference inside the raw word.
    pub start: usize,
    pub end: usize,
    /// `${v:-x}`, `${v-x}`, `${v:+x}`, `${v+x}`: the author handled "unset".
    pub has_default: bool,
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// All `$name` / `${name...}` references in `raw`, nested ones included.
pub fn references(raw: &str, escape: char) -> Vec<VarRef> {
    let mut out = Vec::new();
    scan(raw, 0, escape as u8, &mut out, 0);
    out
}

fn scan(raw: &str, base: usize, esc: u8, out: &mut Vec<VarRef>, depth: usize) {
    let b = raw.as_bytes();
    let (mut single, mut double) = (false, false);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if single {
            if c == b'\'' {
                single = false;
            }
            i += 1;
            continue;
        }
        if c == esc {
            i += 2;
            continue;
        }
        match c {
            b'\'' if !double => single = true,
            b'"' => double = !double,
            b'$' => {
                let start = i;
                if b.get(i + 1) == Some(&b'{') {
                    // find matching brace
                    let mut j = i + 2;
                    let mut level = 1;
                    while j < b.len() {
                        if b[j] == esc {
                            j += 2;
                            continue;
                        }
                        if b[j] == b'{' {
                            level += 1;
                        } else if b[j] == b'}' {
                            level -= 1;
                            if level == 0 {
                                break;
                            }
                        }
                        j += 1;
                    }
                    let close = j.min(b.len());
                    let inner_start = i + 2;
                    let mut k = inner_start;
                    if k < close && is_name_start(b[k]) {
                        while k < close && is_name(b[k]) {
                            k += 1;
                        }
                        let rest = &raw[k..close];
                        let has_default = rest.starts_with(":-")
                            || rest.starts_with(":+")
                            || rest.starts_with('-')
                            || rest.starts_with('+');
                        out.push(VarRef {
                            name: raw[inner_start..k].to_string(),
                            start: base + start,
                            end: base + (close + 1).min(b.len()),
                            has_default,
                        });
                        // Nested words (`${a:-$b}`) only matter when used.
                        if !rest.is_empty() && depth < 8 {
                            let skip = rest.len()
                                - rest
                                    .trim_start_matches([':', '-', '+', '?', '#', '%', '/'])
                                    .len();
                            scan(&raw[k + skip..close], base + k + skip, esc, out, depth + 1);
                        }
                    }
                    i = close + 1;
                    continue;
                } else if i + 1 < b.len() && is_name_start(b[i + 1]) {
                    let mut k = i + 1;
                    while k < b.len() && is_name(b[k]) {
                        k += 1;
                    }
                    out.push(VarRef {
                        name: raw[i + 1..k].to_string(),
                        start: base + start,
                        end: base + k,
                        has_default: false,
                    });
                    i = k;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// Source span of a reference: exact when the word has no continuation
/// inside it (raw length equals span length), else the whole word.
pub fn ref_span(word: &Word, r: &VarRef) -> Span {
    if word.span.len() == word.raw.len() {
        Span::new(word.span.start + r.start, word.span.start + r.end)
    } else {
        word.span
    }
}

/// Minimal expansion for FROM checks: substitutes `$v`, `${v}` and the
/// `-`/`+` modifiers, strips quotes. `lookup` returns None for unset.
pub fn substitute(raw: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let b = raw.as_bytes();
    let esc = escape as u8;
    let mut out = String::new();
    let mut i = 0;
    let mut single = false;
    while i < b.len() {
        let c = b[i];
        if single {
            if c == b'\'' {
                single = false;
            } else {
                let n = crate::parser::utf8_char_len(b[i]);
                out.push_str(raw.get(i..i + n).unwrap_or(""));
                i += n;
                continue;
            }
            i += 1;
            continue;
        }
        if c == esc && i + 1 < b.len() {
            let n = crate::parser::utf8_char_len(b[i + 1]);
            out.push_str(raw.get(i + 1..i + 1 + n).unwrap_or(""));
            i += 1 + n;
            continue;
        }
        match c {
            b'\'' => single = true,
            b'"' => {}
            b'$' => {
                let refs = references(&raw[i..], escape);
                if let Some(r) = refs.first().filter(|r| r.start == 0) {
                    let text = &raw[i..i + r.end];
                    let val = lookup(&r.name);
                    let inner = text
                        .strip_prefix("${")
                        .and_then(|t| t.strip_suffix('}'))
                        .map(|t| &t[r.name.len()..]);
                    let v = match inner {
                        Some(m) if m.starts_with(":-") => match val {
                            Some(v) if !v.is_empty() => v,
                            _ => substitute(&m[2..], escape, lookup),
                        },
                        Some(m) if m.starts_with('-') => {
                            val.unwrap_or_else(|| substitute(&m[1..], escape, lookup))
                        }
                        Some(m) if m.starts_with(":+") => match val {
                            Some(v) if !v.is_empty() => substitute(&m[2..], escape, lookup),
                            _ => String::new(),
                        },
                        Some(m) if m.starts_with('+') => match val {
                            Some(_) => substitute(&m[1..], escape, lookup),
                            None => String::new(),
                        },
                        _ => val.unwrap_or_default(),
                    };
                    out.push_str(&v);
                    i += r.end;
                    continue;
                }
                out.push('$');
            }
            _ => {
                let n = crate::parser::utf8_char_len(c);
                out.push_str(raw.get(i..i + n).unwrap_or(""));
                i += n;
                continue;
            }
        }
        i += 1;
    }
    out
}
