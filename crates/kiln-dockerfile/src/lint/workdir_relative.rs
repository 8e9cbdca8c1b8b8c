use super::{warn, Ctx, Rule};
use crate::ast::Instruction;
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "WorkdirRelativePath",
    name: "Relative WORKDIR without an absolute base",
    explanation: "A relative WORKDIR is resolved against the base image's working \
directory, which you do not control: `WORKDIR app` means `/app` today and \
`/home/node/app` after a base image change. Set an absolute path first \
(`WORKDIR /usr/src/app`), after which relative WORKDIRs are fine.",
};

fn absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || p.starts_with('\\')
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for s in cx.df.stages() {
        let mut anchored = false;
        for n in s.instructions {
            let Instruction::Workdir(w) = &n.instruction else {
                continue;
            };
            let p = w.raw.trim_matches(['"', '\'']);
            // A variable may hold an absolute path: we cannot tell, stay quiet.
            if absolute(p) || p.starts_with('$') {
                anchored = true;
                continue;
            }
            if !anchored {
                out.push(
                    warn(
                        &RULE,
                        format!("Relative workdir {:?} can have unexpected results if the base image changes", w.raw),
                        w.span,
                    )
                    .with_hint(format!("use an absolute path, e.g. WORKDIR /{p}")),
                );
            }
        }
    }
}
