use super::{warn, Ctx, Rule};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "ReservedStageName",
    name: "Reserved words should not be stage names",
    explanation: "`scratch` and `context` have special meaning (the empty image and named \
build contexts), so `FROM alpine AS scratch` silently changes what later `FROM scratch` \
or `COPY --from=context` refer to. Pick another name.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for s in cx.df.stages() {
        let Some(name) = s.name else { continue };
        let l = name.raw.to_ascii_lowercase();
        if l == "scratch" || l == "context" {
            out.push(warn(
                &RULE,
                format!("'{l}' is reserved and should not be used as a stage name"),
                name.span,
            ));
        }
    }
}
