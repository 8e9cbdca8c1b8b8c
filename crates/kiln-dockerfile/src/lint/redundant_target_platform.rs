use super::{warn, Ctx, Rule};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "RedundantTargetPlatform",
    name: "FROM --platform=$TARGETPLATFORM is redundant",
    explanation: "Every stage is built for the target platform by default, so \
`FROM --platform=$TARGETPLATFORM alpine` says nothing that `FROM alpine` does not. \
Drop the flag; keep `--platform` for the cases that differ, such as \
`--platform=$BUILDPLATFORM` for cross-compiling build stages.",
};

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for s in cx.df.stages() {
        if let Some(p) = s.platform {
            if p.raw == "$TARGETPLATFORM" || p.raw == "${TARGETPLATFORM}" {
                out.push(
                    warn(
                        &RULE,
                        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
                        p.span,
                    )
                    .with_hint("remove --platform"),
                );
            }
        }
    }
}
