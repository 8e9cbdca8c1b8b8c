use super::{warn, Ctx, Rule};
use crate::ast::Instruction;
use crate::diag::Diagnostic;
use crate::ignore::clean_path;

pub const RULE: Rule = Rule {
    id: "CopyIgnoredFile",
    name: "COPY or ADD of a file excluded by .dockerignore",
    explanation: "Files matched by `.dockerignore` (or `<Dockerfile>.dockerignore`) are not \
sent to the build, so `COPY secret.env /app/` fails or, with a wildcard, silently copies \
less than it says. Either remove the pattern from the ignore file or stop copying the \
file. The check needs the build context (`kiln check CONTEXT`) and looks at literal \
sources from the context; sources from another stage (`--from`) are not affected.",
};

const WILDCARDS: &[char] = &['*', '?', '['];

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    let Some(ignore) = &cx.opts.dockerignore else {
        return;
    };
    for n in &cx.df.nodes {
        let (kw, c) = match &n.instruction {
            Instruction::Copy(c) => ("Copy", c),
            Instruction::Add(c) => ("Add", c),
            _ => continue,
        };
        if c.from.is_some() {
            continue;
        }
        for src in &c.sources {
            let raw = src.raw.as_str();
            // Heredocs, URLs, variables and wildcards have no single literal path to test.
            if raw.starts_with("<<")
                || raw.contains("://")
                || raw.starts_with("git@")
                || raw.contains('$')
                || raw.contains(WILDCARDS)
            {
                continue;
            }
            let path = clean_path(raw);
            if path.is_empty() || path == "." {
                continue;
            }
            if ignore.is_excluded(&path) {
                out.push(
                    warn(
                        &RULE,
                        format!(
                            "Attempting to {kw} file {raw:?} that is excluded by .dockerignore"
                        ),
                        src.span,
                    )
                    .with_hint(
                        "remove the matching pattern from .dockerignore or drop this source",
                    ),
                );
            }
        }
    }
}
