//! `--change 'INSTRUCTION'` text → [`ConfigChange`]: parsed by the Dockerfile parser (so
//! quoting, JSON forms and errors are exactly those of a Dockerfile) and expanded against the
//! environment the config has so far, as `docker import --change` does.

use anyhow::{bail, Result};
use kiln_dockerfile::ast::{CommandForm, Instruction, KeyValue, Word};
use kiln_dockerfile::expand::expand_word;
use kiln_export::ConfigChange;
use std::collections::BTreeMap;

/// Parses every `--change` in order; variables in later changes see ENV from earlier ones.
pub fn parse_changes(changes: &[String]) -> Result<Vec<ConfigChange>> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut shell = vec!["/bin/sh".to_string(), "-c".to_string()];
    let mut out = Vec::new();
    for text in changes {
        let change = parse_one(text, &env, &shell)?;
        match &change {
            ConfigChange::Env(pairs) => {
                for (k, v) in pairs {
                    env.insert(k.clone(), v.clone());
                }
            }
            ConfigChange::Shell(s) => shell = s.clone(),
            _ => {}
        }
        out.push(change);
    }
    Ok(out)
}

fn parse_one(text: &str, env: &BTreeMap<String, String>, shell: &[String]) -> Result<ConfigChange> {
    let parsed = kiln_dockerfile::parse(text);
    if let Some(d) = parsed
        .diagnostics
        .iter()
        .find(|d| d.severity == kiln_dockerfile::Severity::Error)
    {
        bail!(
            "invalid --change {text:?}: {}{}",
            d.message,
            d.hint
                .as_ref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        );
    }
    let nodes = &parsed.dockerfile.nodes;
    let [node] = nodes.as_slice() else {
        bail!("invalid --change {text:?}: expected exactly one instruction");
    };
    let x = |w: &Word| -> Result<String> {
        if !w.expand {
            return Ok(w.raw.clone());
        }
        expand_word(&w.raw, env, '\\')
            .map_err(|e| anyhow::anyhow!("invalid --change {text:?}: {e}"))
    };
    let pairs = |kvs: &[KeyValue]| -> Result<Vec<(String, String)>> {
        kvs.iter()
            .map(|kv| Ok((x(&kv.key)?, x(&kv.value)?)))
            .collect()
    };
    let command = |c: &CommandForm| -> Vec<String> {
        match c {
            CommandForm::Exec(words) => words.iter().map(|w| w.raw.clone()).collect(),
            CommandForm::Shell(w) => shell.iter().cloned().chain([w.raw.clone()]).collect(),
        }
    };
    Ok(match &node.instruction {
        Instruction::Cmd(c) => ConfigChange::Cmd(command(c)),
        Instruction::Entrypoint(c) => ConfigChange::Entrypoint {
            args: command(c),
            reset_cmd: false,
        },
        Instruction::Env(kvs) => ConfigChange::Env(pairs(kvs)?),
        Instruction::Label(kvs) => ConfigChange::Label(pairs(kvs)?),
        Instruction::Expose(ports) => {
            ConfigChange::Expose(ports.iter().map(&x).collect::<Result<_>>()?)
        }
        Instruction::Onbuild(inner) => {
            let span = inner.span;
            ConfigChange::OnBuild(text.get(span.start..span.end).unwrap_or(text).trim().to_string())
        }
        Instruction::Stopsignal(w) => ConfigChange::StopSignal(x(w)?),
        Instruction::User(w) => ConfigChange::User(x(w)?),
        Instruction::Volume { paths, .. } => {
            ConfigChange::Volume(paths.iter().map(&x).collect::<Result<_>>()?)
        }
        Instruction::Workdir(w) => ConfigChange::Workdir(x(w)?),
        Instruction::Shell(words) => ConfigChange::Shell(words.iter().map(|w| w.raw.clone()).collect()),
        _ => bail!(
            "invalid --change {text:?}: {} cannot be applied to an imported image \
             (allowed: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR)",
            node.name()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> ConfigChange {
        parse_changes(&[s.to_string()]).unwrap().remove(0)
    }

    #[test]
    fn forms() {
        assert_eq!(one(r#"CMD ["sh"]"#), ConfigChange::Cmd(vec!["sh".into()]));
        assert_eq!(
            one("CMD echo hi"),
            ConfigChange::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            one("ENV A=b"),
            ConfigChange::Env(vec![("A".into(), "b".into())])
        );
        assert_eq!(
            one(r#"ENV A="b c""#),
            ConfigChange::Env(vec![("A".into(), "b c".into())])
        );
        assert_eq!(one("WORKDIR /app"), ConfigChange::Workdir("/app".into()));
        assert_eq!(
            one("EXPOSE 80 53/udp"),
            ConfigChange::Expose(vec!["80".into(), "53/udp".into()])
        );
    }

    #[test]
    fn later_changes_see_earlier_env() {
        let c = parse_changes(&["ENV A=1".into(), "ENV B=${A}2".into()]).unwrap();
        assert_eq!(c[1], ConfigChange::Env(vec![("B".into(), "12".into())]));
    }

    #[test]
    fn rejects_run_and_garbage() {
        assert!(parse_changes(&["RUN true".into()]).is_err());
        assert!(parse_changes(&["FROBNICATE x".into()]).is_err());
        assert!(parse_changes(&["CMD a\nCMD b".into()]).is_err());
    }
}
