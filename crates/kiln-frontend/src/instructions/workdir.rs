//! WORKDIR: expanded, joined with the previous directory, set in the config, and created
//! with a mkdir file op owned by the current USER (BuildKit `dispatchWorkdir`: `Mkdir(wd,
//! 0755, WithParents, WithUser(user))`; an existing directory is left alone). `/` needs no
//! op.

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
    let wd = join_workdir(&st.workdir(), &dir);
    ConfigChange::Workdir(wd.clone()).apply(&mut st.config);
    st.step += 1;
    if wd == "/" {
        st.history(format!("WORKDIR {wd}"), false);
        return Ok(());
    }
    let user = st.user();
    let op = Op::File(FileOp {
        root: Some(InputIndex(0)),
        actions: vec![FileAction::Mkdir {
            path: wd.clone(),
            mode: 0o755,
            make_parents: true,
            chown: (!user.is_empty()).then_some(user),
        }],
    });
    let meta = lw.meta(st, format!("{} WORKDIR {wd}", st.prefix()), node.span);
    let parent = st.root;
    let v = lw.add(op, vec![parent], meta, node.span)?;
    st.commit(v, Some(parent), format!("WORKDIR {wd}"));
    Ok(())
}
