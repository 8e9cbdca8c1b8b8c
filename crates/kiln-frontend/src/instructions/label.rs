//! LABEL: keys and values expanded with the stage environment.

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::expand;
use kiln_dockerfile::ast::KeyValue;
use kiln_dockerfile::Node;
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    _lw: &mut Lowerer<'_>,
    st: &mut StageState,
    _node: &Node,
    kv: &[KeyValue],
) -> Result<(), FrontendError> {
    let mut pairs = Vec::new();
    for p in kv {
        pairs.push((expand(&st.scope, &p.key)?, expand(&st.scope, &p.value)?));
    }
    let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    st.apply(
        ConfigChange::Label(pairs),
        format!("LABEL {}", text.join(" ")),
    );
    Ok(())
}
