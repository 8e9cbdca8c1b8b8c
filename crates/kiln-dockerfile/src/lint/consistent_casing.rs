use super::{all_nodes, warn, Ctx, Rule};
use crate::ast::Instruction;
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "ConsistentInstructionCasing",
    name: "Instruction keywords should use one casing",
    explanation: "Instructions are case-insensitive, but mixing `RUN` and `run` (or `Run`) \
in one file makes it harder to read and grep. The majority casing of the file wins \
(uppercase on a tie); keywords in other casings are reported, e.g. `copy . /app` in a \
file that otherwise writes `COPY`.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    let nodes: Vec<_> = all_nodes(cx.df)
        .into_iter()
        .filter(|n| !matches!(n.instruction, Instruction::Unknown))
        .collect();
    let upper = nodes
        .iter()
        .filter(|n| n.keyword.raw == n.keyword.raw.to_ascii_uppercase())
        .count();
    let lower = nodes
        .iter()
        .filter(|n| n.keyword.raw == n.keyword.raw.to_ascii_lowercase())
        .count();
    let (want_upper, label) = if upper >= lower {
        (true, "uppercase")
    } else {
        (false, "lowercase")
    };
    for n in nodes {
        let k = &n.keyword.raw;
        let ok = if want_upper {
            *k == k.to_ascii_uppercase()
        } else {
            *k == k.to_ascii_lowercase()
        };
        if !ok {
            let fixed = if want_upper {
                k.to_ascii_uppercase()
            } else {
                k.to_ascii_lowercase()
            };
            out.push(
                warn(
                    &RULE,
                    format!(
                        "Command '{k}' should match the case of the command majority ({label})"
                    ),
                    n.keyword.span,
                )
                .with_hint(format!("write '{fixed}'")),
            );
        }
    }
}
