//! Docker word expansion with BuildKit's shell-lexer rules.
//!
//! This mirrors the observable behaviour of BuildKit's `shell.Lex`
//! (`frontend/dockerfile/shell/lex.go`): `ProcessWord`, `ProcessWords` and
//! `ProcessWordWithMatches`. It is a clean-room implementation; where BuildKit's
//! behaviour differs from the Dockerfile reference prose, BuildKit wins.
//!
//! Summary of the rules (all verified against BuildKit's lexer):
//!
//! * `$name`, `${name}`; a name is letters/digits/`_`. A name starting with a
//!   digit is all the following digits (`$12x` → variable `12`, then `x`).
//!   Special parameters `$@ $* $# $? $- $$ $! $0` are looked up like any other
//!   name (normally unset, so they expand to the empty string).
//! * `$` followed by anything else (or at the end) stays a literal `$`.
//! * Operators: `-`, `:-`, `+`, `:+`, `?`, `:?`, `#`, `##`, `%`, `%%`, `/`, `//`.
//!   `:#`, `:%`, `=`, `:=` and anything else are rejected.
//! * The word part of an operator is always expanded (eagerly, even when not
//!   used), quotes inside it are removed.
//! * Patterns (`#`, `%`, `/`) understand `*` and `?` only; `[` is literal.
//!   A backslash escapes `*`, `?`, `\`; `\}` and `\/` drop the backslash; any
//!   other `\x` is an "invalid escape" error. `*`/`?` do not match a newline.
//! * `${v//p/r}` uses Go's regexp replacement-template rules for `r`
//!   (`$0` is the match, `$$` is `$`, other `$name` are empty).
//! * Single quotes are literal; double quotes expand `$` and allow escaping of
//!   `"`, `$` and the escape character only.

mod lexer;
mod pattern;
mod table;

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::marker::PhantomData;

pub use table::{expands, expansion, Expansion, ExpansionRule, Field, EXPANSION_TABLE};

/// Source of variable values for expansion.
pub trait Lookup {
    /// The value of `name`, or `None` when the variable is unset.
    fn get(&self, name: &str) -> Option<&str>;
}

impl<T: Lookup + ?Sized> Lookup for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

impl<K, V, S> Lookup for HashMap<K, V, S>
where
    K: Borrow<str> + std::hash::Hash + Eq,
    V: AsRef<str>,
    S: BuildHasher,
{
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(AsRef::as_ref)
    }
}

impl<K, V> Lookup for BTreeMap<K, V>
where
    K: Borrow<str> + Ord,
    V: AsRef<str>,
{
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(AsRef::as_ref)
    }
}

/// A list of pairs; the last pair with a given key wins (like an env list).
impl<K: AsRef<str>, V: AsRef<str>> Lookup for [(K, V)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Lookup for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<&str> {
        Lookup::get(self.as_slice(), name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Lookup for [(K, V); N] {
    fn get(&self, name: &str) -> Option<&str> {
        Lookup::get(self.as_slice(), name)
    }
}

/// An environment with no variables at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoVars;

impl Lookup for NoVars {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Adapts a closure `Fn(&str) -> Option<&'a str>` into a [`Lookup`].
pub struct FnLookup<'a, F>(F, PhantomData<&'a str>);

/// Wraps a closure as a [`Lookup`].
pub fn lookup_fn<'a, F>(f: F) -> FnLookup<'a, F>
where
    F: Fn(&str) -> Option<&'a str>,
{
    FnLookup(f, PhantomData)
}

impl<'a, F> Lookup for FnLookup<'a, F>
where
    F: Fn(&str) -> Option<&'a str>,
{
    fn get(&self, name: &str) -> Option<&str> {
        (self.0)(name)
    }
}

/// Variables referenced while expanding a word.
///
/// Like BuildKit, every variable *looked up* is recorded, including those in
/// an operator's word that ended up unused (`${a:-$b}` records `b` too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsedVars {
    /// Referenced and set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Referenced but unset.
    pub unmatched: BTreeSet<String>,
}

/// What went wrong while expanding a word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    /// `${` without a closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${v/pattern` without the `/` that ends the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:…}`, `${{…}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A quote that is never closed.
    #[error("unexpected end of statement while looking for matching {}", quote_name(*.0))]
    UnterminatedQuote(char),
    /// An operator BuildKit does not support (`:=`, `=`, `:#`, …).
    #[error(
        "unsupported modifier ({modifier}) in substitution{}",
        modifier_hint(modifier)
    )]
    UnsupportedModifier {
        /// The modifier text, e.g. `:=`.
        modifier: String,
    },
    /// `${v?msg}` / `${v:?msg}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required {
        /// The variable name.
        name: String,
        /// The message from the word, or BuildKit's default message.
        message: String,
    },
    /// `${…}` nested deeper than the expander accepts.
    #[error("substitutions nested too deeply")]
    TooDeep,
    /// A pattern of `#`, `%` or `/` with an escape BuildKit rejects.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern after expansion.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
}

fn quote_name(c: char) -> &'static str {
    match c {
        '\'' => "single-quote",
        '"' => "double-quote",
        _ => "quote",
    }
}

fn modifier_hint(m: &str) -> &'static str {
    if m == "=" || m == ":=" {
        " (assignment is not supported in Dockerfiles; use ARG or ENV)"
    } else {
        ""
    }
}

/// An expansion failure, with the byte offset in the word where the offending
/// construct starts (a `$`, a quote, …) so callers can point at a column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ExpandError {
    /// What went wrong.
    pub kind: ExpandErrorKind,
    /// Byte offset into the expanded word.
    pub offset: usize,
}

/// The result of [`Expander::word_with_matches`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded word.
    pub word: String,
    /// Variables referenced.
    pub used: UsedVars,
}

/// A configured expander.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expander {
    /// The Dockerfile escape character (`\` or `` ` ``).
    pub escape: char,
    /// Whether quotes are processed (removed). `false` is BuildKit's mode for
    /// expanding heredoc bodies (`SkipProcessQuotes`).
    pub process_quotes: bool,
}

impl Default for Expander {
    fn default() -> Self {
        Self::new('\\')
    }
}

impl Expander {
    /// An expander with the given escape character that processes quotes.
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            process_quotes: true,
        }
    }

    /// The expander BuildKit uses for heredoc bodies of ADD/COPY: escape is
    /// always `\` and quotes are kept as they are.
    pub fn heredoc() -> Self {
        Self {
            escape: '\\',
            process_quotes: false,
        }
    }

    /// `ProcessWord`: one word, quotes removed, whitespace kept.
    pub fn word(&self, word: &str, env: &dyn Lookup) -> Result<String, ExpandError> {
        lexer::Lex::new(word, env, *self).run().map(|(w, _, _)| w)
    }

    /// `ProcessWords`: expansion followed by splitting on unquoted whitespace
    /// (including whitespace produced by variable values).
    pub fn words(&self, word: &str, env: &dyn Lookup) -> Result<Vec<String>, ExpandError> {
        lexer::Lex::new(word, env, *self).run().map(|(_, ws, _)| ws)
    }

    /// `ProcessWordWithMatches`: like [`Expander::word`], also reporting
    /// which variables were referenced.
    pub fn word_with_matches(&self, word: &str, env: &dyn Lookup) -> Result<Expanded, ExpandError> {
        lexer::Lex::new(word, env, *self)
            .run()
            .map(|(w, _, used)| Expanded { word: w, used })
    }
}

/// Expands one word (BuildKit `ProcessWord`).
pub fn expand_word(word: &str, env: &dyn Lookup, escape: char) -> Result<String, ExpandError> {
    Expander::new(escape).word(word, env)
}

/// Expands and field-splits a word (BuildKit `ProcessWords`, used by EXPOSE).
pub fn expand_words(
    word: &str,
    env: &dyn Lookup,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Expander::new(escape).words(word, env)
}

/// Expands one word and reports the variables it referenced
/// (BuildKit `ProcessWordWithMatches`).
pub fn expand_word_with_matches(
    word: &str,
    env: &dyn Lookup,
    escape: char,
) -> Result<(String, UsedVars), ExpandError> {
    Expander::new(escape)
        .word_with_matches(word, env)
        .map(|e| (e.word, e.used))
}
