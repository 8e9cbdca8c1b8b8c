//! `.dockerignore` matching with Docker's semantics (moby/patternmatcher and
//! its `ignorefile.ReadAll`), written for kiln.
//!
//! * Lines are split on `\n` (a trailing `\r` is dropped); a UTF-8 BOM on the
//!   first line is removed.
//! * A line whose *first* character is `#` is a comment; other lines are
//!   trimmed and skipped when empty.
//! * `!` starts an exception; the rest is trimmed, `filepath.Clean`-ed and a
//!   leading `/` is removed (so `/foo`, `./foo` and `foo/` all mean `foo`).
//! * Patterns are anchored at the context root (`foo` does not match
//!   `a/foo`). `*` and `?` do not cross `/`; `[...]` classes with ranges and
//!   `^` negation (`[!...]` is *not* negation: `!` is a member, as in Go);
//!   `\` escapes; `**` matches any number of directories (`**/` may match
//!   none); a trailing `**` matches everything below.
//! * A pattern that matches a parent directory of a path matches the path.
//! * The last matching pattern wins.
//!
//! Docker's shortcut matchers are reproduced: a pattern that starts with `**`
//! and has no other wildcard is a plain suffix test (`**.txt` matches
//! `a/b.txt`), and one whose only wildcard is a trailing `**` is a plain
//! prefix test (`foo**` matches `foobar/x`).

/// Why an ignore file was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A line that is only `!`.
    #[error("line {line}: illegal exclusion pattern: \"!\"")]
    IllegalExclusion {
        /// 1-based line number.
        line: usize,
    },
    /// A pattern that is not valid glob syntax (`filepath.ErrBadPattern`).
    #[error("line {line}: syntax error in pattern {pattern:?}: {reason}")]
    BadPattern {
        /// 1-based line number.
        line: usize,
        /// The pattern after cleaning.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A line longer than Docker's reader accepts (64 KiB).
    #[error("line {line}: line too long")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
    },
}

/// Go's `bufio.MaxScanTokenSize`.
const MAX_LINE: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character except `/`.
    One,
    /// `*`: any run without `/`.
    Star,
    /// `**` followed by more pattern: empty, or anything (no newline) ending in `/`.
    AnyDirs,
    /// trailing `**` (in a pattern that is not a plain prefix): anything but newline.
    AnyTail,
    /// `[...]`; matches `/` too.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// An unescaped `^` outside a class: a start-of-path anchor in Docker's
    /// generated regexp.
    Caret,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix(String),
    Suffix(String),
    Regex(Vec<Tok>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    text: String,
    exclusion: bool,
    kind: Kind,
    line: usize,
}

/// A parsed `.dockerignore`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

/// The ignore files to look for, in precedence order: the one named after
/// the Dockerfile (`<path-to-Dockerfile>.dockerignore`, next to it), then
/// `.dockerignore` at the context root. The first that exists is used.
pub fn ignore_file_for(dockerfile_name: &str) -> [String; 2] {
    [
        format!("{dockerfile_name}.dockerignore"),
        ".dockerignore".to_owned(),
    ]
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// Validates glob syntax like Go's `filepath.Match`.
fn validate(p: &str) -> Result<(), &'static str> {
    let c: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => {
                if i + 1 >= c.len() {
                    return Err("trailing backslash");
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if c.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut nrange = 0;
                loop {
                    match c.get(i) {
                        None => return Err("unterminated character class"),
                        Some(']') if nrange > 0 => {
                            i += 1;
                            break;
                        }
                        _ => {}
                    }
                    i = class_char(&c, i)?.1;
                    if c.get(i) == Some(&'-') {
                        i = class_char(&c, i + 1)?.1;
                    }
                    nrange += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// One (possibly escaped) class character at `i`: `(char, next index)`.
fn class_char(c: &[char], mut i: usize) -> Result<(char, usize), &'static str> {
    match c.get(i) {
        None => return Err("unterminated character class"),
        Some('-' | ']') => return Err("bad range in character class"),
        Some('\\') => i += 1,
        Some(_) => {}
    }
    let ch = *c.get(i).ok_or("unterminated character class")?;
    if i + 1 >= c.len() {
        return Err("unterminated character class");
    }
    Ok((ch, i + 1))
}

fn compile(p: &str) -> Kind {
    let c: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut exact = true; // no wildcard seen yet
    let mut kind_suffix = false;
    let mut kind_prefix = false;
    let mut regex = false;
    let mut i = 0;
    let mut iteration = 0;
    while i < c.len() {
        let ch = c[i];
        i += 1;
        match ch {
            '*' if c.get(i) == Some(&'*') => {
                i += 1;
                if c.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= c.len() {
                    if exact && !kind_suffix {
                        kind_prefix = true;
                    } else {
                        toks.push(Tok::AnyTail);
                        regex = true;
                    }
                } else {
                    toks.push(Tok::AnyDirs);
                    regex = true;
                }
                if iteration == 0 {
                    kind_suffix = true;
                    regex = false;
                    kind_prefix = false;
                }
                exact = false;
            }
            '*' => {
                toks.push(Tok::Star);
                regex = true;
                exact = false;
            }
            '?' => {
                toks.push(Tok::One);
                regex = true;
                exact = false;
            }
            '\\' => {
                // Docker emits `\x` into a Go regexp; for punctuation that is
                // the literal character, which kiln assumes for every `x`.
                match c.get(i) {
                    Some(&e) => {
                        i += 1;
                        toks.push(Tok::Lit(e));
                        regex = true;
                        exact = false;
                    }
                    None => toks.push(Tok::Lit('\\')),
                }
            }
            '[' => {
                let mut negated = false;
                if c.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                while i < c.len() && (c[i] != ']' || ranges.is_empty()) {
                    let Ok((lo, next)) = class_char(&c, i) else {
                        break;
                    };
                    i = next;
                    let mut hi = lo;
                    if c.get(i) == Some(&'-') {
                        let Ok((h, next)) = class_char(&c, i + 1) else {
                            break;
                        };
                        hi = h;
                        i = next;
                    }
                    ranges.push((lo, hi));
                }
                i += 1; // ']'
                toks.push(Tok::Class { negated, ranges });
                regex = true;
                exact = false;
            }
            ']' => {
                toks.push(Tok::Lit(']'));
                regex = true;
                exact = false;
            }
            '^' => toks.push(Tok::Caret),
            ch => toks.push(Tok::Lit(ch)),
        }
        iteration += 1;
    }
    if regex {
        Kind::Regex(toks)
    } else if kind_suffix {
        Kind::Suffix(c.iter().skip(2).collect())
    } else if kind_prefix {
        Kind::Prefix(c[..c.len() - 2].iter().collect())
    } else {
        Kind::Exact
    }
}

fn class_matches(negated: bool, ranges: &[(char, char)], ch: char) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi) != negated
}

/// Whole-string match of regex tokens (dynamic programming, no recursion).
fn regex_match(toks: &[Tok], s: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let m = s.len();
    let mut next_row = vec![false; m + 1];
    next_row[m] = true; // no tokens left: only the end matches
    for tok in toks.iter().rev() {
        let mut row = vec![false; m + 1];
        let mut ext = false; // for AnyDirs: can s[pi..] start with ".*/" then rest
        for pi in (0..=m).rev() {
            let ch = s.get(pi).copied();
            row[pi] = match tok {
                Tok::Lit(l) => ch == Some(*l) && next_row[pi + 1],
                Tok::One => ch.is_some_and(|c| c != '/') && next_row[pi + 1],
                Tok::Class { negated, ranges } => {
                    ch.is_some_and(|c| class_matches(*negated, ranges, c)) && next_row[pi + 1]
                }
                Tok::Star => next_row[pi] || (ch.is_some_and(|c| c != '/') && row[pi + 1]),
                Tok::AnyTail => next_row[pi] || (ch.is_some_and(|c| c != '\n') && row[pi + 1]),
                Tok::AnyDirs => {
                    ext = match ch {
                        Some('/') => next_row[pi + 1] || ext,
                        Some('\n') | None => false,
                        Some(_) => ext,
                    };
                    next_row[pi] || ext
                }
                Tok::Caret => pi == 0 && next_row[pi],
            };
        }
        next_row = row;
    }
    next_row[0]
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Regex(toks) => regex_match(toks, path),
        }
    }

    /// Whether the pattern might match some path strictly below `dir/`
    /// (over-approximation).
    fn may_match_below(&self, dir_slash: &str) -> bool {
        let compatible = |lit: &str| lit.starts_with(dir_slash) || dir_slash.starts_with(lit);
        match &self.kind {
            Kind::Exact => self.text.starts_with(dir_slash),
            Kind::Prefix(p) => compatible(p),
            Kind::Suffix(_) => true,
            Kind::Regex(toks) => {
                let lit: String = toks
                    .iter()
                    .map_while(|t| match t {
                        Tok::Lit(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
                compatible(&lit)
            }
        }
    }
}

fn normalize_rel(path: &str) -> String {
    let p = clean_path(path);
    match p.strip_prefix('/') {
        Some("") => ".".to_owned(),
        Some(rest) => rest.to_owned(),
        None => p,
    }
}

impl IgnoreMatcher {
    /// Parses the contents of an ignore file.
    pub fn parse(contents: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (idx, raw) in contents.split('\n').enumerate() {
            let line = idx + 1;
            let mut text = raw.strip_suffix('\r').unwrap_or(raw);
            if text.len() >= MAX_LINE {
                return Err(IgnoreError::LineTooLong { line });
            }
            if idx == 0 {
                text = text.strip_prefix('\u{feff}').unwrap_or(text);
            }
            if text.starts_with('#') {
                continue;
            }
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            // ignorefile.ReadAll
            let (invert, body) = match text.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, text),
            };
            let mut body = if body.is_empty() {
                String::new()
            } else {
                clean_path(body)
            };
            if body.len() > 1 && body.starts_with('/') {
                body.remove(0);
            }
            let read = if invert { format!("!{body}") } else { body };
            // patternmatcher.New
            let p = clean_path(read.trim());
            let (exclusion, p) = match p.strip_prefix('!') {
                Some("") => return Err(IgnoreError::IllegalExclusion { line }),
                Some(rest) => (true, rest.to_owned()),
                None => (false, p),
            };
            validate(&p).map_err(|reason| IgnoreError::BadPattern {
                line,
                pattern: p.clone(),
                reason,
            })?;
            patterns.push(Pattern {
                kind: compile(&p),
                text: p,
                exclusion,
                line,
            });
        }
        Ok(Self { patterns })
    }

    /// The patterns as `(is_exception, cleaned pattern, line)`, in file order.
    pub fn patterns(&self) -> impl Iterator<Item = (bool, &str, usize)> {
        self.patterns
            .iter()
            .map(|p| (p.exclusion, p.text.as_str(), p.line))
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is an exception (`!`).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is
    /// excluded from the context. The root itself is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = normalize_rel(rel_path);
        if path == "." {
            return false;
        }
        self.matches_or_parent_matches(&path)
    }

    fn matches_or_parent_matches(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let hit = p.matches(path) || parents.iter().any(|parent| p.matches(parent));
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walker must descend into `rel_dir`: `true` unless the
    /// directory is excluded and no exception could re-include anything
    /// below it.
    pub fn dir_may_contain_included(&self, rel_dir: &str) -> bool {
        let dir = normalize_rel(rel_dir);
        if dir == "." || !self.matches_or_parent_matches(&dir) {
            return true;
        }
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exclusion && p.may_match_below(&dir_slash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean() {
        assert_eq!(clean_path("./a//b/../c/"), "a/c");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("../../a"), "../../a");
        assert_eq!(clean_path(""), ".");
    }

    #[test]
    fn kinds() {
        assert_eq!(compile("foo/bar"), Kind::Exact);
        assert_eq!(compile("foo/**"), Kind::Prefix("foo/".into()));
        assert_eq!(compile("**/foo"), Kind::Suffix("/foo".into()));
        assert!(matches!(compile("**/foo/*"), Kind::Regex(_)));
    }
}
