use super::{warn, Ctx, Rule};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "DuplicateStageName",
    name: "Stage names should be unique",
    explanation: "Two stages with the same name (compared case-insensitively) make \
`COPY --from=name` and `--target name` ambiguous: only one of them can be meant. \
For example `FROM alpine AS build` followed later by `FROM debian AS build`; give the \
second stage its own name.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<&crate::ast::Word> = Vec::new();
    for s in cx.df.stages() {
        let Some(name) = s.name else { continue };
        if let Some(prev) = seen.iter().find(|p| p.raw.eq_ignore_ascii_case(&name.raw)) {
            out.push(
                warn(
                    &RULE,
                    format!(
                        "Duplicate stage name '{}', stage names should be unique",
                        name.raw
                    ),
                    name.span,
                )
                .with_label(prev.span, "first defined here"),
            );
        } else {
            seen.push(name);
        }
    }
}
