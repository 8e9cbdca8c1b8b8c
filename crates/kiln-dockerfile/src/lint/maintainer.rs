use super::{all_nodes, warn, Ctx, Rule};
use crate::ast::Instruction;
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "MaintainerDeprecated",
    name: "MAINTAINER is deprecated",
    explanation: "MAINTAINER only sets a legacy image field that most tools ignore. Use a \
label instead: replace `MAINTAINER Jane <jane@example.com>` with \
`LABEL org.opencontainers.image.authors=\"Jane <jane@example.com>\"`.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for n in all_nodes(cx.df) {
        if let Instruction::Maintainer(w) = &n.instruction {
            out.push(
                warn(
                    &RULE,
                    "Maintainer instruction is deprecated in favor of using label",
                    n.span,
                )
                .with_hint(format!(
                    "use LABEL org.opencontainers.image.authors={:?}",
                    w.raw
                )),
            );
        }
    }
}
