//! Shell-style patterns of `${v#p}`, `${v%p}` and `${v/p/r}`, with BuildKit's
//! semantics: `*` and `?` are the only wildcards (neither matches a newline,
//! as they become Go regexp `.`), `[` is literal, `\*` `\?` `\\` are literal
//! characters, `\}` and `\/` lose their backslash, any other escape is an
//! error.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: any one character except a newline.
    One,
    /// `*`: any run of characters without a newline.
    Star,
}

fn compile(pattern: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::One),
            '\\' => {
                if matches!(it.peek(), Some('}' | '/')) {
                    // the escape only protected the delimiter; the delimiter
                    // itself is handled (literally) on the next iteration
                    continue;
                }
                match it.next() {
                    Some(e @ ('*' | '?' | '\\')) => out.push(Tok::Lit(e)),
                    Some(e) => return Err(format!("invalid escape '\\{e}'")),
                    None => return Err("invalid escape '\\' at end of pattern".to_owned()),
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// Epsilon closure: a `*` may match nothing.
fn close(states: &mut [bool], toks: &[Tok]) {
    for i in 0..toks.len() {
        if states[i] && toks[i] == Tok::Star {
            states[i + 1] = true;
        }
    }
}

/// Matches `toks` anchored at byte `start` of `s`; returns the end of the
/// shortest (or, with `longest`, the longest) match.
fn match_at(toks: &[Tok], s: &str, start: usize, longest: bool) -> Option<usize> {
    let n = toks.len();
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    close(&mut cur, toks);
    let mut best = None;
    if cur[n] {
        best = Some(start);
        if !longest {
            return best;
        }
    }
    let mut next = vec![false; n + 1];
    for (off, c) in s[start..].char_indices() {
        next.iter_mut().for_each(|b| *b = false);
        let mut alive = false;
        for i in 0..n {
            if !cur[i] {
                continue;
            }
            match toks[i] {
                Tok::Lit(l) if l == c => next[i + 1] = true,
                Tok::One if c != '\n' => next[i + 1] = true,
                Tok::Star if c != '\n' => next[i] = true,
                _ => continue,
            }
            alive = true;
        }
        if !alive {
            break;
        }
        close(&mut next, toks);
        if next[n] {
            best = Some(start + off + c.len_utf8());
            if !longest {
                return best;
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    best
}

/// Leftmost match at or after byte `from`; the longest one at that start.
fn find(toks: &[Tok], s: &str, from: usize) -> Option<(usize, usize)> {
    let mut starts = s[from..].char_indices().map(|(o, _)| from + o);
    let first_lit = match toks.first() {
        Some(Tok::Lit(c)) => Some(*c),
        _ => None,
    };
    loop {
        let start = starts.next().unwrap_or(s.len());
        let worth = match first_lit {
            Some(c) => s[start..].starts_with(c),
            None => true,
        };
        if worth {
            if let Some(end) = match_at(toks, s, start, true) {
                return Some((start, end));
            }
        }
        if start >= s.len() {
            return None;
        }
    }
}

pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let toks = compile(pattern)?;
    Ok(match match_at(&toks, value, 0, greedy) {
        Some(end) => value[end..].to_owned(),
        None => value.to_owned(),
    })
}

/// BuildKit reverses the pattern (keeping `\x` pairs in order) and the value
/// and trims a prefix.
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push(&chars[i..i + 2]);
            i += 2;
        } else {
            units.push(&chars[i..i + 1]);
            i += 1;
        }
    }
    let reversed_pattern: String = units.iter().rev().flat_map(|u| u.iter()).collect();
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reversed_pattern, &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

pub(super) fn replace(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let toks = compile(pattern)?;
    if !all {
        return Ok(match find(&toks, value, 0) {
            Some((s, e)) => format!("{}{}{}", &value[..s], replacement, &value[e..]),
            None => value.to_owned(),
        });
    }
    // Go's Regexp.ReplaceAllString: successive non-overlapping matches, an
    // empty match right after a previous match is skipped, the replacement
    // is a template.
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((s, e)) = find(&toks, value, search) else {
            break;
        };
        out.push_str(&value[last_end..s]);
        if e > last_end || s == 0 {
            expand_template(&mut out, replacement, &value[s..e]);
        }
        last_end = e;
        let width = value[search..].chars().next().map_or(0, char::len_utf8);
        if search + width > e {
            search += width;
        } else if search + 1 > e {
            search += 1;
        } else {
            search = e;
        }
    }
    out.push_str(&value[last_end..]);
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Go's `Regexp.Expand` for a regexp without capture groups: `$$` is `$`,
/// `$0`/`${0}` the whole match, other well-formed `$name` references are
/// empty, a malformed `$` is literal.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let len = body
            .char_indices()
            .find(|&(_, c)| !is_name_char(c))
            .map_or(body.len(), |(i, _)| i);
        if len == 0 || (braced && !body[len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        let name = &body[..len];
        rest = &body[len + usize::from(braced)..];
        if name == "0" {
            out.push_str(whole);
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_and_longest() {
        assert_eq!(
            trim_prefix("*o", "foo.bar.boo", false).unwrap(),
            "o.bar.boo"
        );
        assert_eq!(trim_prefix("*o", "foo.bar.boo", true).unwrap(), "");
        assert_eq!(
            trim_suffix("o*", "foo.bar.boo", false).unwrap(),
            "foo.bar.bo"
        );
        assert_eq!(trim_suffix("o*", "foo.bar.boo", true).unwrap(), "f");
    }

    #[test]
    fn replace_all_empty_pattern() {
        assert_eq!(replace("abc", "", "-", true).unwrap(), "-a-b-c-");
        assert_eq!(replace("abc", "*", "-", true).unwrap(), "-");
        assert_eq!(replace("a\nb", "*", "-", true).unwrap(), "-\n-");
    }

    #[test]
    fn template() {
        let mut s = String::new();
        expand_template(&mut s, "<$0|${0}|$$|$1|$x|${|$>", "m");
        assert_eq!(s, "<m|m|$|||${|$>");
    }
}
