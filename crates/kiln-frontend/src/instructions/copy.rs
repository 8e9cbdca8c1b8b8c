//! COPY (and the local-file part of ADD): sources/dest/--chown/--chmod expanded, `--from`
//! a stage (name or index), named context or image; heredoc sources become files made on
//! scratch and copied like any source; dest relative to WORKDIR; `--link` copies onto
//! scratch and merges; `--parents`, `--exclude`.

use crate::error::{ErrorKind, FrontendError};
use crate::lower::{FromTarget, Lowerer};
use crate::state::StageState;
use crate::util::{expand, input_index, resolve_dest};
use kiln_dockerfile::ast::CopyArgs;
use kiln_dockerfile::expand::Expander;
use kiln_dockerfile::Node;
use kiln_graph::{CopyAction, FileAction, FileOp, InputIndex, Op, VertexId, VertexMeta};

/// Sources of one COPY/ADD after expansion, split by kind.
pub(crate) struct Sources {
    pub local: Vec<String>,
    pub heredocs: Vec<(String, Vec<u8>)>,
    pub remote: Vec<String>,
}

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    c: &CopyArgs,
    is_add: bool,
) -> Result<(), FrontendError> {
    let srcs = collect_sources(st, node, c, is_add)?;
    lower_copy(lw, st, node, c, is_add, srcs, false)
}

pub(crate) fn collect_sources(
    st: &StageState,
    node: &Node,
    c: &CopyArgs,
    is_add: bool,
) -> Result<Sources, FrontendError> {
    let mut out = Sources {
        local: Vec::new(),
        heredocs: Vec::new(),
        remote: Vec::new(),
    };
    for w in &c.sources {
        let raw = w.raw.trim_start_matches(|ch: char| ch.is_ascii_digit());
        if let Some(name) = raw.strip_prefix("<<") {
            let name = name
                .trim_start_matches('-')
                .trim_matches(|ch| ch == '"' || ch == '\'');
            if let Some(h) = node.heredocs.iter().find(|h| h.name == name) {
                let data = if h.expand && !h.quoted {
                    Expander::heredoc()
                        .word(&h.content, st.scope.env())
                        .map_err(|e| crate::util::expand_err(e, w))?
                } else {
                    h.content.clone()
                };
                out.heredocs.push((h.name.clone(), data.into_bytes()));
                continue;
            }
        }
        let s = expand(&st.scope, w)?;
        if is_add && is_remote(&s) {
            out.remote.push(s);
        } else {
            out.local.push(s);
        }
    }
    Ok(out)
}

pub(crate) fn is_remote(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || is_git(s)
}

pub(crate) fn is_git(s: &str) -> bool {
    s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("ssh://")
        || ((s.starts_with("https://") || s.starts_with("http://"))
            && (s.contains(".git#") || s.ends_with(".git")))
        || s.starts_with("github.com/")
}

/// `--chown=UID` with a numeric uid and no group gives the files that number as gid too
/// (BuildKit's file op: a user given by id and no group means gid = uid); a user name alone
/// still takes its primary group from the image's /etc/passwd.
fn numeric_uid_is_gid(spec: String) -> String {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        format!("{spec}:{spec}")
    } else {
        spec
    }
}

/// Builds the file op(s) for a COPY/ADD and commits the layer.
pub(crate) fn lower_copy(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    c: &CopyArgs,
    is_add: bool,
    srcs: Sources,
    _unused: bool,
) -> Result<(), FrontendError> {
    st.step += 1;
    let span = node.span;
    let kw = if is_add { "ADD" } else { "COPY" };
    let dest_raw = expand(&st.scope, &c.dest)?;
    let chown = c
        .chown
        .as_ref()
        .map(|w| expand(&st.scope, w))
        .transpose()?
        .map(numeric_uid_is_gid);
    let chmod = c.chmod.as_ref().map(|w| expand(&st.scope, w)).transpose()?;
    if let Some(m) = &chmod {
        let octal = m.chars().all(|ch| ('0'..='7').contains(&ch)) && !m.is_empty();
        let symbolic = m.chars().all(|ch| "ugoa+-=rwxXst,".contains(ch)) && !m.is_empty();
        if !octal && !symbolic {
            return Err(FrontendError::at(
                ErrorKind::InvalidFlag,
                format!("invalid --chmod value {m:?}"),
                c.chmod.as_ref().map_or(span, |w| w.span),
            ));
        }
    }
    if let Some(w) = &c.checksum {
        // BuildKit: a checksum pins one remote source; it means nothing for local files.
        if !srcs.local.is_empty() || !srcs.heredocs.is_empty() || srcs.remote.len() != 1 {
            return Err(FrontendError::at(
                ErrorKind::InvalidFlag,
                "--checksum needs exactly one source, an HTTP(S) URL or a git repository",
                w.span,
            ));
        }
    }
    let excludes: Vec<String> = c.excludes.iter().map(|w| w.raw.clone()).collect();
    let n_sources = srcs.local.len() + srcs.heredocs.len() + srcs.remote.len();
    if n_sources == 0 {
        return Err(FrontendError::at(
            ErrorKind::InvalidFlag,
            format!("{kw} needs at least one source"),
            span,
        ));
    }
    let (mut dest, mut dest_is_dir) = resolve_dest(&st.workdir(), &dest_raw);
    if n_sources > 1 && !dest_is_dir {
        return Err(FrontendError::at(
            ErrorKind::InvalidFlag,
            format!("when using {kw} with more than one source file, the destination must be a directory and end with a /"),
            c.dest.span,
        ));
    }
    if n_sources > 1 || srcs.local.iter().any(|s| s.contains(['*', '?', '['])) {
        dest_is_dir = true;
        if !dest.ends_with('/') {
            dest.push('/');
        }
    }

    // Where the local sources come from.
    let from_name = c.from.as_ref().map(|w| w.raw.clone());
    if let (Some(w), true) = (
        &c.from,
        c.from.as_ref().is_some_and(|w| w.raw.contains('$')),
    ) {
        return Err(FrontendError::at(
            ErrorKind::Expand,
            "variable expansion is not supported for --from",
            w.span,
        ));
    }
    let mut actions = Vec::new();
    let mut inputs: Vec<VertexId> = Vec::new();
    let link = c.link;
    let root_idx = if link {
        None
    } else {
        Some(input_index(&mut inputs, st.root))
    };
    let _ = root_idx;

    let base_copy = |from: InputIndex, sources: Vec<String>| {
        let mut a = CopyAction::new(from, sources, dest.clone());
        a.dest_is_dir = dest_is_dir;
        a.chown = chown.clone();
        a.chmod = chmod.clone();
        a.exclude = excludes.clone();
        a.parents = c.parents;
        a
    };

    if !srcs.local.is_empty() {
        let from_v = match &from_name {
            None => {
                let include = srcs
                    .local
                    .iter()
                    .map(|s| s.trim_start_matches('/').to_string())
                    .collect();
                lw.context_vertex(st, "context", include, excludes.clone(), span)?
            }
            Some(name) => {
                let fspan = c.from.as_ref().map_or(span, |w| w.span);
                match lw.resolve_from(name, st.index, fspan)? {
                    FromTarget::Context(n) => {
                        let include = srcs
                            .local
                            .iter()
                            .map(|s| s.trim_start_matches('/').to_string())
                            .collect();
                        lw.context_vertex(st, &n, include, excludes.clone(), span)?
                    }
                    t => lw.root_of(&t, st, fspan)?,
                }
            }
        };
        let from = input_index(&mut inputs, from_v);
        let mut a = base_copy(from, srcs.local.clone());
        // ADD unpacks local archives from the context (not from other stages/images),
        // unless --unpack=false.
        a.unpack_archives = is_add && c.unpack.unwrap_or(from_name.is_none());
        actions.push(FileAction::Copy(a));
    }
    for (name, data) in &srcs.heredocs {
        let mode = chmod
            .as_ref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o644);
        let op = Op::File(FileOp {
            root: None,
            actions: vec![FileAction::Mkfile {
                path: format!("/{name}"),
                data: data.clone(),
                mode,
                chown: None,
            }],
        });
        let meta = VertexMeta {
            description: "[internal] preparing inline document".to_string(),
            ..lw.meta(st, String::new(), span)
        };
        let hv = lw.add(op, vec![], meta, span)?;
        let from = input_index(&mut inputs, hv);
        let mut a = base_copy(from, vec![format!("/{name}")]);
        a.allow_wildcard = false;
        actions.push(FileAction::Copy(a));
    }
    for url in &srcs.remote {
        let checksum = c
            .checksum
            .as_ref()
            .map(|w| expand(&st.scope, w))
            .transpose()?;
        if is_git(url) {
            let (u, r) = match url.split_once('#') {
                Some((u, r)) => (u.to_string(), Some(r.to_string())),
                None => (url.clone(), None),
            };
            actions.push(FileAction::AddGit {
                url: u,
                reference: r,
                dest: dest.clone(),
                keep_git_dir: c.keep_git_dir,
                checksum,
                chown: chown.clone(),
                chmod: chmod.clone(),
                exclude: excludes.clone(),
            });
        } else {
            actions.push(FileAction::AddUrl {
                url: url.clone(),
                dest: dest.clone(),
                checksum,
                chown: chown.clone(),
                chmod: chmod.clone(),
                // BuildKit: a downloaded archive is extracted only with --unpack=true.
                unpack: c.unpack == Some(true),
                exclude: excludes.clone(),
            });
        }
    }

    let mut label_parts: Vec<String> = Vec::new();
    if let Some(f) = &from_name {
        label_parts.push(format!("--from={f}"));
    }
    if link {
        label_parts.push("--link".to_string());
    }
    for w in &c.sources {
        label_parts.push(w.raw.clone());
    }
    label_parts.push(c.dest.raw.clone());
    let desc = format!("{} {kw} {}", st.prefix(), label_parts.join(" "));
    let created: Vec<String> = c
        .sources
        .iter()
        .map(|w| w.raw.clone())
        .chain([dest_raw.clone()])
        .collect();
    let created = format!("{kw} {}", created.join(" "));
    let parent = st.root;
    if link {
        // Copy onto scratch (root = None, inputs hold only sources) then merge.
        let op = Op::File(FileOp {
            root: None,
            actions,
        });
        let meta = lw.meta(st, desc.clone(), span);
        let layer = lw.add(op, inputs, meta, span)?;
        let meta = VertexMeta {
            description: format!("{} [merge] {kw} --link", st.prefix()),
            ..lw.meta(st, String::new(), span)
        };
        let merged = lw.add(Op::Merge, vec![parent, layer], meta, span)?;
        st.commit_layer(merged, layer, None, created);
    } else {
        let op = Op::File(FileOp {
            root: Some(InputIndex(0)),
            actions,
        });
        let meta = lw.meta(st, desc, span);
        let v = lw.add(op, inputs, meta, span)?;
        st.commit(v, Some(parent), created);
    }
    Ok(())
}
