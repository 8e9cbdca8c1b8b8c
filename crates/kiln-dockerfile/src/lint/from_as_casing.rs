use super::{warn, Ctx, Rule};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "FromAsCasing",
    name: "FROM and AS keywords should have the same casing",
    explanation: "Mixing keyword casing in one line (`FROM alpine as build`) is legal but \
inconsistent and hurts readability. Use `FROM alpine AS build`, or all lowercase \
`from alpine as build` if the file uses lowercase instructions.",
};

fn is_upper(s: &str) -> bool {
    s == s.to_ascii_uppercase()
}
fn is_lower(s: &str) -> bool {
    s == s.to_ascii_lowercase()
}

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for s in cx.df.stages() {
        let (Some(f), kw) = (s.from, &s.from_node.keyword.raw) else {
            continue;
        };
        let Some(as_kw) = &f.as_keyword else { continue };
        let bad =
            (is_upper(kw) && !is_upper(&as_kw.raw)) || (is_lower(kw) && !is_lower(&as_kw.raw));
        if bad {
            let want = if is_upper(kw) { "AS" } else { "as" };
            out.push(
                warn(
                    &RULE,
                    format!("'{}' and '{}' keywords' casing do not match", as_kw.raw, kw),
                    as_kw.span,
                )
                .with_hint(format!("write '{want}'")),
            );
        }
    }
}
