use super::{warn, Ctx, Rule};
use crate::ast::{Instruction, Word};
use crate::diag::Diagnostic;

pub const RULE: Rule = Rule {
    id: "SecretsUsedInArgOrEnv",
    name: "Sensitive data in ARG or ENV",
    explanation: "Values of ARG and ENV end up in the image history and config, readable by \
anyone who can pull the image. A name like `ARG GITHUB_TOKEN` or `ENV DB_PASSWORD` \
suggests a secret is being passed that way. Use a secret mount instead: \
`RUN --mount=type=secret,id=github_token ...`. Names are split on `_` and a part equal \
to a secret word (token, password, secret, key, auth, ...) triggers the check unless \
another part is `public` (so `PUBLIC_KEY` is fine).",
};

const SECRET_PARTS: &[&str] = &[
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pat",
    "passwd",
    "secret",
    "token",
];

/// Word-part match like BuildKit: `_`-separated parts, case-insensitive.
pub fn looks_secret(name: &str) -> bool {
    let parts: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    parts.iter().any(|p| SECRET_PARTS.contains(&p.as_str())) && !parts.iter().any(|p| p == "public")
}

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    for n in &cx.df.nodes {
        let names: Vec<(&str, &Word)> = match &n.instruction {
            Instruction::Arg(a) => a.iter().map(|d| ("ARG", &d.name)).collect(),
            Instruction::Env(kv) => kv.iter().map(|p| ("ENV", &p.key)).collect(),
            _ => continue,
        };
        for (kw, w) in names {
            if looks_secret(&w.raw) {
                out.push(
                    warn(
                        &RULE,
                        format!(
                            "Do not use ARG or ENV instructions for sensitive data ({kw} {:?})",
                            w.raw
                        ),
                        w.span,
                    )
                    .with_hint("pass secrets with RUN --mount=type=secret,id=<id> instead"),
                );
            }
        }
    }
}
