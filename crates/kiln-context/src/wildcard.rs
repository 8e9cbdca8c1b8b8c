//! Go `filepath.Match` semantics (what BuildKit uses to expand COPY sources): `*` and
//! `?` never match `/`, `[a-z]` / `[^a-z]` classes, `\` escapes. Dot files are matched
//! by `*` like in Go (unlike a shell).

use std::path::PathBuf;

use kiln_fs::SafeRoot;

use crate::Error;

/// Whether a path holds an unescaped wildcard character (BuildKit `containsWildcards`).
pub fn has_wildcards(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Match one name against a pattern; a malformed pattern is an error (as in Go, even
/// when an earlier part already failed to match).
pub fn match_pattern(pattern: &str, name: &str) -> Result<bool, Error> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    validate(&p).map_err(|reason| Error::BadPattern {
        pattern: pattern.to_owned(),
        reason,
    })?;
    Ok(matches(&p, &n))
}

fn validate(p: &[char]) -> Result<(), &'static str> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err("trailing backslash");
                }
                i += 2;
            }
            '[' => {
                i = class_end(p, i).ok_or("unterminated character class")?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Index just past the `]` closing the class that starts at `start`.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    loop {
        match p.get(i)? {
            ']' if !first => return Some(i + 1),
            '\\' => i += 2,
            '-' if first => return None,
            _ => i += 1,
        }
        first = false;
    }
}

/// Whether `c` is in the class `p[start..end]`.
fn in_class(p: &[char], start: usize, end: usize, c: char) -> bool {
    let mut i = start + 1;
    let negate = p[i] == '^';
    if negate {
        i += 1;
    }
    let mut hit = false;
    let close = end - 1;
    while i < close {
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = p[i];
        }
        i += 1;
        let mut hi = lo;
        if i + 1 < close && p[i] == '-' {
            i += 1;
            hi = p[i];
            if hi == '\\' {
                i += 1;
                hi = p[i];
            }
            i += 1;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
    }
    hit != negate
}

fn matches(p: &[char], n: &[char]) -> bool {
    // Iterative with one backtrack point for the last `*`, as `*` never crosses `/`
    // a failure past a `/` cannot be rescued by a wider star.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let end = class_end(p, pi).unwrap_or(p.len());
                    if n[ni] != '/' && in_class(p, pi, end, n[ni]) {
                        pi = end;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                c if !matches!(c, '?' | '\\' | '[') && c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) if n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Expand a `/`-separated source pattern against `root`: the components before the
/// first wildcard are taken literally (and may go through symlinks, resolved in-root),
/// the rest are matched level by level. Results are root-relative and sorted.
pub(crate) fn expand(root: &SafeRoot, pattern: &str) -> Result<Vec<String>, Error> {
    let comps: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let first = comps
        .iter()
        .position(|c| has_wildcards(c))
        .unwrap_or(comps.len());
    let mut current = vec![comps[..first].join("/")];
    for comp in &comps[first..] {
        let mut next = Vec::new();
        for dir in &current {
            // Listing failures (not a directory, missing) just mean no match, as in Go.
            let Ok(names) = root.read_dir(&PathBuf::from(dir)) else {
                continue;
            };
            for name in names {
                let Some(name) = name.to_str() else { continue };
                if has_wildcards(comp) {
                    if match_pattern(comp, name)? {
                        next.push(join(dir, name));
                    }
                } else if name == *comp {
                    next.push(join(dir, name));
                }
            }
        }
        current = next;
    }
    current.sort();
    Ok(current)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_table() {
        let cases = [
            ("*.txt", "a.txt", true),
            ("*.txt", ".txt", true),
            ("*.txt", "a/b.txt", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("file[0-9]", "file7", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(match_pattern(p, n).unwrap(), want, "{p} vs {n}");
        }
        assert!(match_pattern("[a-", "a").is_err());
        assert!(has_wildcards("src/*/x"));
        assert!(!has_wildcards("src/\\*"));
    }
}
