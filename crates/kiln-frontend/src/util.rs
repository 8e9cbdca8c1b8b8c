//! Small helpers shared by the instruction modules.

use crate::error::{ErrorKind, FrontendError};
use kiln_dockerfile::ast::CommandForm;
use kiln_dockerfile::expand::{ExpandError, Expander};
use kiln_dockerfile::scope::StageScope;
use kiln_dockerfile::{Span, Word};
use kiln_graph::{InputIndex, VertexId};

pub fn expand_err(e: ExpandError, word: &Word) -> FrontendError {
    let start = (word.span.start + e.offset).min(word.span.end);
    FrontendError::at(
        ErrorKind::Expand,
        format!("failed to expand {:?}: {e}", word.raw),
        Span::new(start, word.span.end.max(start)),
    )
}

/// Expands a word with the stage environment when the parser says it expands.
pub fn expand(scope: &StageScope, word: &Word) -> Result<String, FrontendError> {
    if !word.expand {
        return Ok(word.raw.clone());
    }
    scope
        .expand(&word.raw)
        .map(|e| e.word)
        .map_err(|e| expand_err(e, word))
}

/// Expands a raw option value (mount options) with the stage environment.
pub fn expand_str(
    scope: &StageScope,
    raw: &str,
    span: Span,
    what: &str,
) -> Result<String, FrontendError> {
    scope.expand(raw).map(|e| e.word).map_err(|e| {
        FrontendError::at(
            ErrorKind::Expand,
            format!("failed to expand {what} {raw:?}: {e}"),
            span,
        )
    })
}

/// Words split after expansion (EXPOSE).
pub fn expand_words(
    scope: &StageScope,
    escape: char,
    word: &Word,
) -> Result<Vec<String>, FrontendError> {
    if !word.expand {
        return Ok(vec![word.raw.clone()]);
    }
    Expander::new(escape)
        .words(&word.raw, scope.env())
        .map_err(|e| expand_err(e, word))
}

/// CMD / ENTRYPOINT / RUN args: exec form as is, shell form wrapped in the shell.
pub fn command_args(form: &CommandForm, shell: &[String]) -> Vec<String> {
    match form {
        CommandForm::Exec(words) => words.iter().map(|w| w.raw.clone()).collect(),
        CommandForm::Shell(w) => {
            let mut v = shell.to_vec();
            v.push(w.raw.clone());
            v
        }
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quote_list(args: &[String]) -> String {
    let parts: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", parts.join(" "))
}

/// Parses a Go duration (`30s`, `1m30s`, `500ms`, `1h`) to nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * mult;
    }
    Some(total as i64)
}

/// Parses a byte size like go-units `RAMInBytes` (`64m`, `1g`, `512`).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// Index of `id` in `inputs`, adding it when missing.
pub fn input_index(inputs: &mut Vec<VertexId>, id: VertexId) -> InputIndex {
    let pos = match inputs.iter().position(|&i| i == id) {
        Some(p) => p,
        None => {
            inputs.push(id);
            inputs.len() - 1
        }
    };
    InputIndex(pos as u32)
}

/// WORKDIR-relative destination: BuildKit joins with the working dir and keeps a trailing
/// slash (and treats `.` as a directory).
pub fn resolve_dest(workdir: &str, dest: &str) -> (String, bool) {
    let is_dir = dest.ends_with('/') || dest == "." || dest == ".." || dest.ends_with("/.");
    let joined = kiln_oci::changes::join_workdir(workdir, dest);
    if is_dir && !joined.ends_with('/') {
        (format!("{joined}/"), true)
    } else {
        (joined, is_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn dests() {
        assert_eq!(resolve_dest("/app", "."), ("/app/".to_string(), true));
        assert_eq!(
            resolve_dest("/app", "bin/"),
            ("/app/bin/".to_string(), true)
        );
        assert_eq!(resolve_dest("/app", "/x"), ("/x".to_string(), false));
    }
}
