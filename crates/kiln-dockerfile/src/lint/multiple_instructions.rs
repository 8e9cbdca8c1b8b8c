use super::{warn, Ctx, Rule};
use crate::ast::Instruction;
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "MultipleInstructionsDisallowed",
    name: "Only one CMD, ENTRYPOINT and HEALTHCHECK per stage",
    explanation: "A stage keeps only the last CMD, ENTRYPOINT or HEALTHCHECK; earlier ones \
are silently overridden, which usually means a merge mistake. With `CMD [\"a\"]` then \
`CMD [\"b\"]` the image runs only `b`. Remove the earlier instruction.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for s in cx.df.stages() {
        for kw in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
            let hits: Vec<_> = s
                .instructions
                .iter()
                .filter(|n| n.name() == kw && !matches!(n.instruction, Instruction::Invalid))
                .collect();
            if let Some((last, earlier)) = hits.split_last() {
                for n in earlier {
                    out.push(
                        warn(
                            &RULE,
                            format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"),
                            n.span,
                        )
                        .with_label(last.keyword.span, "this one wins"),
                    );
                }
            }
        }
    }
}
