//! The word scanner: a character-level re-implementation of the behaviour of
//! BuildKit's `shellWord` (quotes, escapes, `$` substitutions, field
//! splitting).

use super::pattern;
use super::{ExpandError, ExpandErrorKind, Expander, Lookup, UsedVars};

/// Deepest `${…${…}…}` nesting accepted; deeper input is rejected instead of
/// exhausting the stack.
const MAX_DEPTH: usize = 128;

/// Go's `string(rune(-1))`, which BuildKit prints for "end of input".
const EOF_CHAR: char = '\u{FFFD}';

pub(super) struct Lex<'w, 'e> {
    src: &'w str,
    chars: Vec<(usize, char)>,
    pos: usize,
    env: &'e dyn Lookup,
    opts: Expander,
    raw_escapes: bool,
    depth: usize,
    used: UsedVars,
}

/// Field-splitting accumulator (the `words` of `ProcessWords`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

/// Go's `unicode.IsDigit` (approximated: Unicode decimal digits).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric() && !c.is_alphabetic())
}

/// Go's `unicode.IsLetter` (approximated with the Alphabetic property).
fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

/// POSIX special parameters, which BuildKit reads as one-character names.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl<'w, 'e> Lex<'w, 'e> {
    pub(super) fn new(src: &'w str, env: &'e dyn Lookup, opts: Expander) -> Self {
        Self {
            src,
            chars: src.char_indices().collect(),
            pos: 0,
            env,
            opts,
            raw_escapes: false,
            depth: 0,
            used: UsedVars::default(),
        }
    }

    /// Runs the whole word: `(ProcessWord result, ProcessWords result, used)`.
    pub(super) fn run(mut self) -> Result<(String, Vec<String>, UsedVars), ExpandError> {
        let (word, words) = self.stop_on(None, false)?;
        Ok((word, words, self.used))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn offset(&self) -> usize {
        self.chars.get(self.pos).map_or(self.src.len(), |&(o, _)| o)
    }

    fn err(kind: ExpandErrorKind, offset: usize) -> ExpandError {
        ExpandError { kind, offset }
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let env: &'e dyn Lookup = self.env;
        match env.get(name) {
            Some(v) => {
                if !self.used.matched.contains(name) {
                    self.used.matched.insert(name.to_owned());
                }
                Some(v.to_owned())
            }
            None => {
                if !self.used.unmatched.contains(name) {
                    self.used.unmatched.insert(name.to_owned());
                }
                None
            }
        }
    }

    /// Processes until `stop` (consumed) or the end of input. With
    /// `raw_escapes` the escape character is kept in the result (used for
    /// patterns, whose escapes are interpreted later).
    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' if self.opts.process_quotes => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if self.opts.process_quotes => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    let mut ch = ch;
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            // an escape at the very end is dropped
                            None => break,
                            Some(c) => {
                                ch = c;
                                words.add_raw_char(c);
                            }
                        }
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if stop.is_some() {
            // callers turn this into "missing '}'" / "missing '/'"
            return Err(Self::err(ExpandErrorKind::MissingBrace, self.offset()));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let start = self.offset();
        self.next();
        let mut result = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(Self::err(ExpandErrorKind::UnterminatedQuote('\''), start));
                }
                Some('\'') => return Ok(result),
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let start = self.offset();
        self.next();
        let mut result = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(Self::err(ExpandErrorKind::UnterminatedQuote('"'), start));
                }
                Some('"') => {
                    self.next();
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // an escape right before the end is ignored; the
                            // loop then reports the missing quote
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.opts.escape => {
                                self.next();
                                ch = c;
                            }
                            // any other escape stays as it is
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `<<` followed by blanks is kept as one unit so field splitting does
    /// not separate a heredoc marker from its word.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut out = "<<".to_owned();
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(c) = self.peek().filter(|&c| is_digit(c)) {
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_DEPTH {
            return Err(Self::err(ExpandErrorKind::TooDeep, self.offset()));
        }
        self.depth += 1;
        let r = self.process_dollar_inner();
        self.depth -= 1;
        r
    }

    fn process_dollar_inner(&mut self) -> Result<String, ExpandError> {
        let start = self.offset();
        self.next(); // '$'

        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(self.get_env(&name).unwrap_or_default());
        }
        self.next(); // '{'

        match self.peek() {
            None => return Err(Self::err(ExpandErrorKind::MissingBrace, start)),
            Some('{' | '}' | ':') => {
                return Err(Self::err(ExpandErrorKind::BadSubstitution, start));
            }
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.next();
        let mut modifier = String::from(ch.unwrap_or(EOF_CHAR));

        match ch {
            // BuildKit reports "unsupported modifier (\u{FFFD})" here; the
            // real problem is the missing brace.
            None => Err(Self::err(ExpandErrorKind::MissingBrace, start)),
            Some('}') => Ok(self.get_env(&name).unwrap_or_default()),
            Some(c @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let null_is_unset = c == ':';
                let op = if null_is_unset {
                    let op = self.next();
                    modifier.push(op.unwrap_or(EOF_CHAR));
                    op
                } else {
                    Some(c)
                };
                let is_pattern = matches!(op, Some('#' | '%'));
                if null_is_unset && is_pattern {
                    return Err(Self::err(
                        ExpandErrorKind::UnsupportedModifier { modifier },
                        start,
                    ));
                }
                let word = match self.stop_on(Some('}'), is_pattern) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        return Err(if self.peek().is_none() {
                            Self::err(ExpandErrorKind::MissingBrace, start)
                        } else {
                            e
                        });
                    }
                };
                let value = self.get_env(&name);
                let unset_or_null = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    Some('-') => Ok(if unset_or_null {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if unset_or_null { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(Self::required(
                            name,
                            word,
                            "is not allowed to be unset",
                            start,
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(Self::required(
                            name,
                            word,
                            "is not allowed to be empty",
                            start,
                        )),
                        Some(v) => Ok(v),
                    },
                    Some(op @ ('#' | '%')) => {
                        let (greedy, pat) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        let r = if op == '%' {
                            pattern::trim_suffix(pat, &value, greedy)
                        } else {
                            pattern::trim_prefix(pat, &value, greedy)
                        };
                        r.map_err(|reason| {
                            Self::err(
                                ExpandErrorKind::InvalidPattern {
                                    pattern: pat.to_owned(),
                                    reason,
                                },
                                start,
                            )
                        })
                    }
                    _ => Err(Self::err(
                        ExpandErrorKind::UnsupportedModifier { modifier },
                        start,
                    )),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pat = match self.stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        return Err(if self.peek().is_none() {
                            Self::err(ExpandErrorKind::MissingSlash, start)
                        } else {
                            e
                        });
                    }
                };
                let replacement = match self.stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        return Err(if self.peek().is_none() {
                            Self::err(ExpandErrorKind::MissingBrace, start)
                        } else {
                            e
                        });
                    }
                };
                let value = self.get_env(&name).unwrap_or_default();
                pattern::replace(&value, &pat, &replacement, replace_all).map_err(|reason| {
                    Self::err(
                        ExpandErrorKind::InvalidPattern {
                            pattern: pat.clone(),
                            reason,
                        },
                        start,
                    )
                })
            }
            Some(_) => Err(Self::err(
                ExpandErrorKind::UnsupportedModifier { modifier },
                start,
            )),
        }
    }

    fn required(name: String, word: String, default: &str, offset: usize) -> ExpandError {
        let message = if word.is_empty() {
            default.to_owned()
        } else {
            word
        };
        Self::err(ExpandErrorKind::Required { name, message }, offset)
    }
}
