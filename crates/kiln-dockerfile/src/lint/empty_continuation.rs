use super::{warn, Ctx, Rule};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "NoEmptyContinuation",
    name: "Empty line inside a line continuation",
    explanation: "A blank line in the middle of a `\\`-continued instruction is skipped, so \
the instruction silently continues past it. It usually hides a forgotten line or a \
missing backslash, and BuildKit plans to make it an error. In `RUN apk add \\`, blank \
line, `    curl`, delete the blank line.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for n in &cx.df.nodes {
        for s in &n.empty_continuations {
            out.push(
                warn(&RULE, "Empty continuation line", *s)
                    .with_label(n.keyword.span, "in this instruction")
                    .with_hint("remove the blank line (empty continuation lines will become errors in a future release)"),
            );
        }
    }
}
