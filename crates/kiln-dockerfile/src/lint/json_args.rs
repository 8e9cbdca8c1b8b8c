use super::{warn, Ctx, Rule};
use crate::ast::{CommandForm, Instruction};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "JSONArgsRecommended",
    name: "JSON arguments recommended for CMD and ENTRYPOINT",
    explanation: "CMD and ENTRYPOINT in shell form run under `/bin/sh -c`, so the shell \
becomes PID 1 and OS signals such as SIGTERM never reach your program, which then gets \
killed after the stop timeout instead of shutting down cleanly. Use the exec (JSON) form: \
write `ENTRYPOINT [\"my-app\", \"--serve\"]` instead of `ENTRYPOINT my-app --serve`. \
The check is skipped in stages that set a custom SHELL, where shell form is deliberate.",
};

/// Characters that mean the command really needs a shell.
const SHELLY: &[char] = &[
    '$', '|', '&', ';', '<', '>', '(', ')', '`', '\'', '"', '*', '?', '\\', '~',
];

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for stage in cx.df.stages() {
        let mut custom_shell = false;
        for n in stage.instructions {
            let (kw, form) = match &n.instruction {
                Instruction::Shell(_) => {
                    custom_shell = true;
                    continue;
                }
                Instruction::Cmd(f) => ("CMD", f),
                Instruction::Entrypoint(f) => ("ENTRYPOINT", f),
                _ => continue,
            };
            let CommandForm::Shell(w) = form else {
                continue;
            };
            if custom_shell {
                continue;
            }
            let mut d = warn(
                &RULE,
                format!("JSON arguments recommended for {kw} to prevent unintended behavior related to OS signals"),
                n.span,
            );
            let hint = if w.raw.contains(SHELLY) {
                format!(
                    "use the exec form, e.g. {kw} [\"/bin/sh\", \"-c\", {:?}] or exec in a script",
                    w.raw
                )
            } else {
                let parts: Vec<String> =
                    w.raw.split_whitespace().map(|p| format!("{p:?}")).collect();
                format!("use {kw} [{}]", parts.join(", "))
            };
            d = d.with_hint(hint);
            out.push(d);
        }
    }
}
