//! RUN: shell form wrapped in SHELL, exec form as is; env = image ENV + declared ARGs with
//! a value (BuildKit passes them to RUN), proxy build-args outside the key; heredocs as
//! BuildKit does them; `--mount` of every type with option values expanded; `--network`,
//! `--security` (insecure only with `allow_insecure`).

use crate::error::{ErrorKind, FrontendError};
use crate::lower::{FromTarget, Lowerer};
use crate::state::StageState;
use crate::util::{command_args, expand_str, input_index, parse_size};
use kiln_dockerfile::ast::{CommandForm, MountKind, Run, Sharing};
use kiln_dockerfile::scope::is_proxy_arg;
use kiln_dockerfile::{Node, Span};
use kiln_graph::{
    CacheSharing, ExecMount, ExecOp, FileAction, FileOp, InputIndex, NetworkMode, Op, SecurityMode,
    VertexId, VertexMeta,
};

fn num(
    st: &StageState,
    raw: &Option<String>,
    default: u32,
    octal: bool,
    what: &str,
    span: Span,
) -> Result<u32, FrontendError> {
    let Some(raw) = raw else { return Ok(default) };
    let v = expand_str(&st.scope, raw, span, what)?;
    let parsed = if octal {
        u32::from_str_radix(v.trim_start_matches("0o"), 8).ok()
    } else {
        v.parse().ok()
    };
    parsed.ok_or_else(|| {
        FrontendError::at(
            ErrorKind::InvalidFlag,
            format!("invalid {what} value {v:?} in --mount"),
            span,
        )
    })
}

fn opt_exp(
    st: &StageState,
    v: &Option<String>,
    what: &str,
    span: Span,
) -> Result<Option<String>, FrontendError> {
    v.as_ref()
        .map(|s| expand_str(&st.scope, s, span, what))
        .transpose()
}

fn abs(p: &str, workdir: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        kiln_oci::changes::join_workdir(workdir, p)
    }
}

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    run: &Run,
) -> Result<(), FrontendError> {
    st.step += 1;
    let span = node.span;
    let mut inputs = vec![st.root];
    let mut mounts = Vec::new();
    // the config keeps an absolute WORKDIR as written (`/a/../b`); the process starts in
    // the directory it names
    let workdir = kiln_oci::changes::join_workdir("/", &st.workdir());
    let mut label = format!(
        "RUN {}",
        match &run.command {
            CommandForm::Shell(w) => w.raw.clone(),
            CommandForm::Exec(ws) =>
                crate::util::go_quote_list(&ws.iter().map(|w| w.raw.clone()).collect::<Vec<_>>()),
        }
    );

    // Heredocs (BuildKit dispatchRun).
    let mut args = match (&run.command, node.heredocs.first()) {
        (CommandForm::Shell(cmd), Some(first)) => {
            let only = node.heredocs.len() == 1
                && cmd
                    .raw
                    .trim()
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .starts_with("<<")
                && cmd.raw.split_whitespace().count() == 1;
            if only {
                let data = first.content.clone();
                label.push_str(&format!(" ({})", summarize(&data)));
                if data.starts_with("#!") {
                    let file = Op::File(FileOp {
                        root: None,
                        actions: vec![FileAction::Mkfile {
                            path: format!("/{}", first.name),
                            data: data.into_bytes(),
                            mode: 0o755,
                            chown: None,
                        }],
                    });
                    let meta = VertexMeta {
                        description: "[internal] preparing inline document".to_string(),
                        ..lw.meta(st, String::new(), span)
                    };
                    let fv = lw.add(file, vec![], meta, span)?;
                    let from = input_index(&mut inputs, fv);
                    mounts.push(ExecMount::Bind {
                        target: "/dev/pipes/".to_string(),
                        from,
                        source: "/".to_string(),
                        readwrite: false,
                    });
                    let mut a = st.shell();
                    a.push(format!("/dev/pipes/{}", first.name));
                    a
                } else {
                    let mut a = st.shell();
                    a.push(data);
                    a
                }
            } else {
                let mut full = cmd.raw.clone();
                for h in &node.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                let mut a = st.shell();
                a.push(full);
                a
            }
        }
        (form, _) => command_args(form, &st.shell()),
    };
    if args.is_empty() {
        return Err(FrontendError::at(
            ErrorKind::InvalidFlag,
            "RUN with no command",
            span,
        ));
    }
    let _ = &mut args;

    let mut ssh_n = 0;
    for m in &run.mounts {
        let ms = m.span;
        let mount = match &m.kind {
            MountKind::Bind(b) => {
                let target = opt_exp(st, &b.target, "target", ms)?.ok_or_else(|| {
                    FrontendError::at(ErrorKind::InvalidFlag, "bind mount needs a target", ms)
                })?;
                let source = opt_exp(st, &b.source, "source", ms)?.unwrap_or_else(|| "/".into());
                let from_v = mount_from(lw, st, &b.from, &source, ms)?.map_or_else(
                    || lw.context_vertex(st, "context", include(&source), vec![], ms),
                    Ok,
                )?;
                ExecMount::Bind {
                    target: abs(&target, &workdir),
                    from: input_index(&mut inputs, from_v),
                    source,
                    readwrite: b.readwrite,
                }
            }
            MountKind::Cache(c) => {
                let target = opt_exp(st, &c.target, "target", ms)?.ok_or_else(|| {
                    FrontendError::at(ErrorKind::InvalidFlag, "cache mount needs a target", ms)
                })?;
                let target = abs(&target, &workdir);
                let id = opt_exp(st, &c.id, "id", ms)?.unwrap_or_else(|| target.clone());
                let source = opt_exp(st, &c.source, "source", ms)?.unwrap_or_else(|| "/".into());
                let from =
                    mount_from(lw, st, &c.from, &source, ms)?.map(|v| input_index(&mut inputs, v));
                ExecMount::Cache {
                    target,
                    id,
                    sharing: match c.sharing {
                        None | Some(Sharing::Shared) => CacheSharing::Shared,
                        Some(Sharing::Private) => CacheSharing::Private,
                        Some(Sharing::Locked) => CacheSharing::Locked,
                    },
                    from,
                    source,
                    uid: num(st, &c.uid, 0, false, "uid", ms)?,
                    gid: num(st, &c.gid, 0, false, "gid", ms)?,
                    mode: num(st, &c.mode, 0o755, true, "mode", ms)?,
                    readonly: c.readonly,
                }
            }
            MountKind::Secret(s) => {
                let target = opt_exp(st, &s.target, "target", ms)?;
                let env = opt_exp(st, &s.env, "env", ms)?;
                let id = match opt_exp(st, &s.id, "id", ms)? {
                    Some(id) => id,
                    None => match &target {
                        Some(t) => t.rsplit('/').next().unwrap_or_default().to_string(),
                        None => {
                            return Err(FrontendError::at(
                                ErrorKind::InvalidFlag,
                                "secret mount needs an id or a target",
                                ms,
                            ))
                        }
                    },
                };
                let target = match (target, &env) {
                    (Some(t), _) => Some(abs(&t, &workdir)),
                    (None, Some(_)) => None,
                    (None, None) => Some(format!("/run/secrets/{id}")),
                };
                ExecMount::Secret {
                    id,
                    target,
                    env,
                    required: s.required,
                    mode: num(st, &s.mode, 0o400, true, "mode", ms)?,
                    uid: num(st, &s.uid, 0, false, "uid", ms)?,
                    gid: num(st, &s.gid, 0, false, "gid", ms)?,
                }
            }
            MountKind::Tmpfs(t) => {
                let target = opt_exp(st, &t.target, "target", ms)?.ok_or_else(|| {
                    FrontendError::at(ErrorKind::InvalidFlag, "tmpfs mount needs a target", ms)
                })?;
                let size = match opt_exp(st, &t.size, "size", ms)? {
                    None => None,
                    Some(s) => Some(parse_size(&s).ok_or_else(|| {
                        FrontendError::at(
                            ErrorKind::InvalidFlag,
                            format!("invalid tmpfs size {s:?}"),
                            ms,
                        )
                    })?),
                };
                ExecMount::Tmpfs {
                    target: abs(&target, &workdir),
                    size,
                }
            }
            MountKind::Ssh(s) => {
                let id = opt_exp(st, &s.id, "id", ms)?.unwrap_or_else(|| "default".into());
                let target = opt_exp(st, &s.target, "target", ms)?
                    .map(|t| abs(&t, &workdir))
                    .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_n}"));
                ssh_n += 1;
                ExecMount::Ssh {
                    id,
                    target,
                    required: s.required,
                    mode: num(st, &s.mode, 0o600, true, "mode", ms)?,
                    uid: num(st, &s.uid, 0, false, "uid", ms)?,
                    gid: num(st, &s.gid, 0, false, "gid", ms)?,
                }
            }
        };
        mounts.push(mount);
    }

    let network = match run.network.as_ref().map(|w| w.raw.as_str()) {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(FrontendError::at(
                ErrorKind::InvalidFlag,
                format!("unsupported network mode {other:?} (expected default, none or host)"),
                run.network.as_ref().map_or(span, |w| w.span),
            ))
        }
    };
    let security = match run.security.as_ref().map(|w| w.raw.as_str()) {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => {
            if !lw.opts.allow_insecure {
                return Err(FrontendError::at(
                    ErrorKind::InsecureNotAllowed,
                    "RUN --security=insecure is not allowed",
                    run.security.as_ref().map_or(span, |w| w.span),
                )
                .with_hint("pass --allow security.insecure to kiln build to permit it"));
            }
            SecurityMode::Insecure
        }
        Some(other) => {
            return Err(FrontendError::at(
                ErrorKind::InvalidFlag,
                format!("unsupported security mode {other:?} (expected sandbox or insecure)"),
                run.security.as_ref().map_or(span, |w| w.span),
            ))
        }
    };

    let env = st.scope.env().to_strings();
    let proxy_env: Vec<String> = lw
        .global
        .proxy_build_args()
        .into_iter()
        .filter(|(k, _)| st.scope.env().get(k).is_none())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let op = Op::Exec(ExecOp {
        root: InputIndex(0),
        args: args.clone(),
        env,
        proxy_env,
        cwd: workdir,
        user: st.user(),
        network,
        security,
        mounts,
    });
    let meta = lw.meta(st, format!("{} {label}", st.prefix()), span);
    let parent = st.root;
    let v = lw.add(op, inputs, meta, span)?;
    // History: `RUN |N K=v … args` (BuildKit runCommandString), proxies never included.
    // Unlike BuildKit, the value of an ARG named like a secret (`API_TOKEN`, see the
    // SecretsUsedInArgOrEnv lint) is not written: history ships with the image, and the
    // value still reaches the step's environment and (hashed) its cache key.
    let hargs: Vec<String> = st
        .scope
        .history_args()
        .into_iter()
        .filter(|(k, _)| !is_proxy_arg(k))
        .map(|(k, v)| {
            if kiln_dockerfile::lint::looks_secret(&k) {
                format!("{k}={REDACTED}")
            } else {
                format!("{k}={}", st.scope.env().get(&k).unwrap_or(&v))
            }
        })
        .collect();
    let created = if hargs.is_empty() {
        format!("RUN {}", args.join(" "))
    } else {
        format!(
            "RUN |{} {} {}",
            hargs.len(),
            hargs.join(" "),
            args.join(" ")
        )
    };
    st.commit(v, Some(parent), created);
    Ok(())
}

/// What history shows instead of the value of a secret-looking build argument.
pub(crate) const REDACTED: &str = "<redacted>";

fn include(source: &str) -> Vec<String> {
    let s = source.trim_start_matches('/');
    if s.is_empty() || s == "." {
        Vec::new()
    } else {
        vec![s.to_string()]
    }
}

/// `from=` of a bind/cache mount: stage, named context or image (expanded).
fn mount_from(
    lw: &mut Lowerer<'_>,
    st: &StageState,
    from: &Option<String>,
    source: &str,
    span: Span,
) -> Result<Option<VertexId>, FrontendError> {
    let Some(raw) = from else { return Ok(None) };
    let name = expand_str(&st.scope, raw, span, "from")?;
    let target = lw.resolve_from(&name, st.index, span)?;
    let v = match target {
        FromTarget::Context(n) => lw.context_vertex(st, &n, include(source), vec![], span)?,
        t => lw.root_of(&t, st, span)?,
    };
    Ok(Some(v))
}

/// BuildKit's heredoc summary for progress: first line, with `...` when there is more.
fn summarize(data: &str) -> String {
    let trimmed = data.trim_start_matches('\n');
    let mut lines = trimmed.lines();
    let first = lines.next().unwrap_or_default();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first.to_string()
    }
}
