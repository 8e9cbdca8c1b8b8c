//! WORKDIR: expanded, joined with the previous directory, set in the config, and created
//! with a mkdir file op owned by the current USER (BuildKit `dispatchWorkdir`: `Mkdir(wd,
//! 0755, WithParents, WithUser(user))`; an existing directory is left alone). `/` needs no
//! op.
//!
//! As in BuildKit, an absolute path is stored in the config as written (`/a/../b/` stays
//! `/a/../b/`); only a relative one is joined with the previous directory and cleaned. The
//! directories created are those a `mkdir -p` of the written path makes: every prefix that
//! a `..` climbs out of, and the cleaned path itself.

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::expand;
use kiln_dockerfile::{Node, Word};
use kiln_graph::{FileAction, FileOp, InputIndex, Op};
use kiln_oci::changes::{join_workdir, ConfigChange};

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    w: &Word,
) -> Result<(), FrontendError> {
    let dir = expand(&st.scope, w)?;
    let wd = if dir.starts_with('/') {
        dir
    } else {
        join_workdir(&st.workdir(), &dir)
    };
    ConfigChange::Workdir(wd.clone()).apply(&mut st.config);
    // ConfigChange cleans the path; BuildKit stores an absolute one as written
    if let Some(rc) = st.config.config.as_mut() {
        rc.working_dir = Some(wd.clone());
    }
    st.step += 1;
    let made = mkdir_paths(&wd);
    if made.is_empty() {
        st.history(format!("WORKDIR {wd}"), false);
        return Ok(());
    }
    let user = st.user();
    let op = Op::File(FileOp {
        root: Some(InputIndex(0)),
        actions: made
            .into_iter()
            .map(|path| FileAction::Mkdir {
                path,
                mode: 0o755,
                make_parents: true,
                chown: (!user.is_empty()).then(|| user.clone()),
            })
            .collect(),
    });
    let meta = lw.meta(st, format!("{} WORKDIR {wd}", st.prefix()), node.span);
    let parent = st.root;
    let v = lw.add(op, vec![parent], meta, node.span)?;
    st.commit(v, Some(parent), format!("WORKDIR {wd}"));
    Ok(())
}

/// The cleaned directories `mkdir -p WD` creates, in order: each prefix of `wd` followed by
/// a `..` component (it must exist to be climbed out of), then `wd` itself; never `/`.
fn mkdir_paths(wd: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prefix = String::new();
    for c in wd.split('/') {
        if c == ".." {
            out.push(join_workdir("/", &prefix));
        }
        prefix.push('/');
        prefix.push_str(c);
    }
    out.push(join_workdir("/", wd));
    let mut seen = Vec::new();
    out.retain(|p| {
        p != "/" && !seen.contains(p) && {
            seen.push(p.clone());
            true
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::mkdir_paths;

    #[test]
    fn mkdir_paths_follow_mkdir_p() {
        assert_eq!(mkdir_paths("/a/b"), ["/a/b"]);
        assert_eq!(mkdir_paths("/x/y/../z/"), ["/x/y", "/x/z"]);
        assert_eq!(mkdir_paths("/a/./b/../../c"), ["/a/b", "/a", "/c"]);
        assert!(mkdir_paths("/").is_empty());
        assert_eq!(mkdir_paths("/a/.."), ["/a"]);
    }
}
