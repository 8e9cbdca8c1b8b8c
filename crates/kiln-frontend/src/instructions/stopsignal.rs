//! STOPSIGNAL: expanded.

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::expand;
use kiln_dockerfile::{Node, Word};
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    _lw: &mut Lowerer<'_>,
    st: &mut StageState,
    _node: &Node,
    w: &Word,
) -> Result<(), FrontendError> {
    let s = expand(&st.scope, w)?;
    st.apply(
        ConfigChange::StopSignal(s.clone()),
        format!("STOPSIGNAL {s}"),
    );
    Ok(())
}
