//! ONBUILD: the trigger text is recorded in the config; it runs in a child build right
//! after its FROM (see `lower::Lowerer::lower_stage`).

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use kiln_dockerfile::Node;
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    _node: &Node,
    inner: &Node,
) -> Result<(), FrontendError> {
    let text = lw.node_text(inner);
    st.apply(
        ConfigChange::OnBuild(text.clone()),
        format!("ONBUILD {text}"),
    );
    Ok(())
}
