//! ADD: COPY plus remote sources (URL → `AddUrl`, git → `AddGit`, executed by the
//! executor or refused there) and unpacking of local archives from the context.

use crate::error::FrontendError;
use crate::instructions::copy;
use crate::lower::Lowerer;
use crate::state::StageState;
use kiln_dockerfile::ast::CopyArgs;
use kiln_dockerfile::Node;

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    c: &CopyArgs,
) -> Result<(), FrontendError> {
    let srcs = copy::collect_sources(st, node, c, true)?;
    copy::lower_copy(lw, st, node, c, true, srcs, false)
}
