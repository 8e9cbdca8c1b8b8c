use super::{warn, Ctx, Rule};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "StageNameCasing",
    name: "Stage names should be lowercase",
    explanation: "Stage names are matched case-insensitively, but image references are \
lowercase and `--target`/`COPY --from` read best when they look the same everywhere. \
A mixed-case name like `FROM golang AS BuildStage` is easy to mistype later; write \
`FROM golang AS buildstage` (or `build-stage`).",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for s in cx.df.stages() {
        if let Some(name) = s.name {
            if name.raw != name.raw.to_ascii_lowercase() {
                out.push(
                    warn(
                        &RULE,
                        format!("Stage name '{}' should be lowercase", name.raw),
                        name.span,
                    )
                    .with_hint(format!("rename it to '{}'", name.raw.to_ascii_lowercase())),
                );
            }
        }
    }
}
