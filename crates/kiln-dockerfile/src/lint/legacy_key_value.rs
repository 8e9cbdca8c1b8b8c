use super::{all_nodes, warn, Ctx, Rule};
use crate::ast::Instruction;
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "LegacyKeyValueFormat",
    name: "Legacy key/value format with whitespace separator",
    explanation: "`ENV key value` and `LABEL key value` set one variable whose value is the \
whole rest of the line, spaces included, while `ENV key=value` can set several and quotes \
its values the same way everywhere. The space-separated form is kept only for old \
Dockerfiles and may be removed: write `ENV APP_HOME=/srv/app` instead of \
`ENV APP_HOME /srv/app`.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for n in all_nodes(cx.df) {
        let (kw, pairs) = match &n.instruction {
            Instruction::Env(kv) => ("ENV", kv),
            Instruction::Label(kv) => ("LABEL", kv),
            _ => continue,
        };
        for p in pairs.iter().filter(|p| p.legacy) {
            out.push(
                warn(
                    &RULE,
                    format!(
                        "\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"
                    ),
                    n.span,
                )
                .with_hint(format!("write {kw} {}={:?}", p.key.raw, p.value.raw)),
            );
        }
    }
}
