use super::vars::{ref_span, references};
use super::{warn, Ctx, Rule};
use crate::ast::{Instruction, Word};
use crate::diag::Diagnostic;
use crate::parser::suggest;
use std::collections::{HashMap, HashSet};

pub const RULE: Rule = Rule {
    id: "UndefinedVar",
    name: "Variable used but not defined",
    explanation: "Instructions like ENV, COPY, WORKDIR or LABEL expand `$VAR` at build \
time; a variable that no ARG or ENV declared in the stage expands to an empty string, \
usually from a typo (`ENV PATH=$PAHT:/app`) or an ARG declared only before FROM (global \
ARGs must be redeclared with a bare `ARG NAME` inside the stage). Declare it or fix the \
name. Predefined args (proxies, TARGET*/BUILD* platform args) and `PATH` count as \
defined; references with a default (`${VAR:-x}`) are not reported. RUN, CMD and \
ENTRYPOINT are expanded by the shell at run time and are not checked.",
};

/// ARGs every build has without declaring them.
pub const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Words of a stage instruction that BuildKit expands.
fn expanded_words(inst: &Instruction) -> Vec<&Word> {
    let mut v = Vec::new();
    match inst {
        Instruction::Env(kv) => v.extend(kv.iter().map(|p| &p.value)),
        Instruction::Label(kv) => {
            for p in kv {
                v.push(&p.key);
                v.push(&p.value);
            }
        }
        Instruction::Add(c) | Instruction::Copy(c) => {
            v.extend(c.sources.iter().filter(|w| !w.raw.starts_with("<<")));
            v.push(&c.dest);
            v.extend(
                [&c.from, &c.chown, &c.chmod, &c.checksum]
                    .into_iter()
                    .flatten(),
            );
            v.extend(c.excludes.iter());
        }
        Instruction::Expose(w) => v.extend(w.iter()),
        Instruction::Volume { paths, .. } => v.extend(paths.iter()),
        Instruction::User(w) | Instruction::Workdir(w) | Instruction::Stopsignal(w) => v.push(w),
        _ => {}
    }
    v
}

pub(crate) fn check(cx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    let esc = cx.escape();
    let mut stage_env: HashMap<String, HashSet<String>> = HashMap::new();
    let base_known: HashSet<String> = PREDEFINED_ARGS
        .iter()
        .map(|s| s.to_string())
        .chain(cx.opts.known_env.iter().cloned())
        .chain(["PATH".to_string()])
        .collect();
    for s in cx.df.stages() {
        // ENV carries over from a parent stage; ARGs do not.
        let mut env: HashSet<String> = s
            .base
            .and_then(|b| stage_env.get(&b.raw.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_default();
        let mut args: HashSet<String> = HashSet::new();
        for n in s.instructions {
            let known = |name: &str, env: &HashSet<String>, args: &HashSet<String>| {
                base_known.contains(name) || env.contains(name) || args.contains(name)
            };
            let report = |w: &Word,
                          env: &HashSet<String>,
                          args: &HashSet<String>,
                          out: &mut Vec<Diagnostic>| {
                for r in references(&w.raw, esc) {
                    if r.has_default || known(&r.name, env, args) {
                        continue;
                    }
                    let mut d = warn(
                        &RULE,
                        format!("Usage of undefined variable '${}'", r.name),
                        ref_span(w, &r),
                    );
                    let cands: Vec<&str> = env
                        .iter()
                        .chain(args.iter())
                        .map(String::as_str)
                        .chain(base_known.iter().map(String::as_str))
                        .collect();
                    if let Some(sug) = suggest(&r.name, cands) {
                        d = d.with_hint(format!("did you mean ${sug}?"));
                    } else {
                        d = d.with_hint(format!(
                            "declare it with ARG {} or ENV {}=<value> earlier in this stage",
                            r.name, r.name
                        ));
                    }
                    out.push(d);
                }
            };
            match &n.instruction {
                Instruction::Arg(decls) => {
                    for d in decls {
                        if let Some(def) = &d.default {
                            report(def, &env, &args, out);
                        }
                        args.insert(d.name.raw.clone());
                    }
                }
                Instruction::Env(kv) => {
                    // All values see the environment from before this ENV.
                    for p in kv {
                        report(&p.value, &env, &args, out);
                    }
                    for p in kv {
                        env.insert(p.key.raw.clone());
                    }
                }
                other => {
                    for w in expanded_words(other) {
                        report(w, &env, &args, out);
                    }
                }
            }
        }
        if let Some(name) = s.name {
            stage_env.insert(name.raw.to_ascii_lowercase(), env);
        }
    }
}
