//! FROM-line ARG checks: `UndefinedArgInFrom` and `InvalidDefaultArgInFrom`.

use super::undefined_var::PREDEFINED_ARGS;
use super::vars::{ref_span, references, substitute};
use super::{warn, Ctx, Rule};
use crate::ast::Word;
use crate::diag::Diagnostic;
use crate::parser::suggest;

pub const UNDEFINED_RULE: Rule = Rule {
    id: "UndefinedArgInFrom",
    name: "FROM uses an undeclared ARG",
    explanation: "Only ARGs declared before the first FROM (and the predefined platform \
args) can be used in a FROM line. `FROM node:${NODE_VERSION}` without a preceding \
`ARG NODE_VERSION=20` expands to `node:` and fails or pulls something unexpected. \
Declare the ARG at the top of the file.",
};

pub const INVALID_DEFAULT_RULE: Rule = Rule {
    id: "InvalidDefaultArgInFrom",
    name: "FROM is invalid with the default ARG values",
    explanation: "When the ARGs used in FROM keep their default values, the image \
reference must still be valid; otherwise a build without `--build-arg` fails. \
`ARG TAG` (no default) with `FROM alpine:${TAG}` gives `alpine:`. Give the ARG a \
sensible default (`ARG TAG=3.20`) or use `${TAG:-latest}`.",
};

fn predefined_value(name: &str) -> Option<&'static str> {
    Some(match name {
        "TARGETPLATFORM" | "BUILDPLATFORM" => "linux/amd64",
        "TARGETOS" | "BUILDOS" => "linux",
        "TARGETARCH" | "BUILDARCH" => "amd64",
        "TARGETVARIANT" | "BUILDVARIANT" => "",
        _ => return None,
    })
}

fn from_words<'a>(s: &crate::ast::Stage<'a>) -> Vec<&'a Word> {
    s.base.into_iter().chain(s.platform).collect()
}

pub(crate) fn check_undefined(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    let globals: Vec<String> = cx
        .df
        .global_args()
        .iter()
        .map(|a| a.name.raw.clone())
        .collect();
    for s in cx.df.stages() {
        for w in from_words(&s) {
            for r in references(&w.raw, cx.escape()) {
                if r.has_default
                    || globals.contains(&r.name)
                    || PREDEFINED_ARGS.contains(&r.name.as_str())
                {
                    continue;
                }
                let mut d = warn(
                    &UNDEFINED_RULE,
                    format!("FROM argument '{}' is not declared", r.name),
                    ref_span(w, &r),
                );
                let cands = globals
                    .iter()
                    .map(String::as_str)
                    .chain(PREDEFINED_ARGS.iter().copied());
                d = match suggest(&r.name, cands) {
                    Some(x) => d.with_hint(format!("did you mean '{x}'?")),
                    None => d.with_hint(format!(
                        "declare it before the first FROM: ARG {}=<default>",
                        r.name
                    )),
                };
                out.push(d);
            }
        }
    }
}

/// Rough image-reference check: `[domain/]path[:tag][@digest]`.
pub fn valid_image_ref(s: &str) -> bool {
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return false;
        };
        if alg.is_empty() || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    let (path, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !ok {
            return false;
        }
    }
    if path.is_empty() {
        return false;
    }
    let comps: Vec<&str> = path.split('/').collect();
    for (i, c) in comps.iter().enumerate() {
        let domain =
            i == 0 && comps.len() > 1 && (c.contains('.') || c.contains(':') || *c == "localhost");
        let ok = if domain {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        } else {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| {
                    x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
                })
        };
        if !ok {
            return false;
        }
    }
    true
}

pub(crate) fn check_invalid_default(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    let globals = cx.df.global_args();
    let stages = cx.df.stages();
    for s in &stages {
        let Some(base) = s.base else { continue };
        let refs = references(&base.raw, cx.escape());
        if refs.is_empty() {
            continue;
        }
        // Undeclared names are UndefinedArgInFrom's business.
        let declared =
            |n: &str| globals.iter().any(|a| a.name.raw == n) || predefined_value(n).is_some();
        if refs
            .iter()
            .any(|r| !declared(&r.name) && !PREDEFINED_ARGS.contains(&r.name.as_str()))
        {
            continue;
        }
        let lookup = |n: &str| -> Option<String> {
            if let Some(v) = predefined_value(n) {
                return Some(v.to_string());
            }
            // The last declaration wins, as for repeated global ARGs.
            let a = globals.iter().rev().find(|a| a.name.raw == n)?;
            a.default
                .as_ref()
                .map(|d| substitute(&d.raw, cx.escape(), &|_| None))
        };
        let value = substitute(&base.raw, cx.escape(), &lookup);
        let is_stage = stages[..s.index]
            .iter()
            .any(|p| p.name.is_some_and(|n| n.raw.eq_ignore_ascii_case(&value)));
        if is_stage || valid_image_ref(&value) {
            continue;
        }
        let no_default: Vec<&str> = refs
            .iter()
            .filter(|r| {
                globals
                    .iter()
                    .any(|a| a.name.raw == r.name && a.default.is_none())
            })
            .map(|r| r.name.as_str())
            .collect();
        let mut d = warn(
            &INVALID_DEFAULT_RULE,
            format!(
                "Default value for ARG {} results in empty or invalid base image name",
                base.raw
            ),
            base.span,
        );
        d = if no_default.is_empty() {
            d.with_hint(format!(
                "with default ARG values the image would be {value:?}"
            ))
        } else {
            d.with_hint(format!(
                "give a default value to ARG {}",
                no_default.join(", ")
            ))
        };
        out.push(d);
    }
}
