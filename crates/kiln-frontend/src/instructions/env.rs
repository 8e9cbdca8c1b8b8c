//! ENV: the whole line is expanded against the environment before it (scope rules).

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::expand_err;
use kiln_dockerfile::ast::KeyValue;
use kiln_dockerfile::Node;
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    _lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    kv: &[KeyValue],
) -> Result<(), FrontendError> {
    let pairs: Vec<(&str, &str)> = kv
        .iter()
        .map(|p| (p.key.raw.as_str(), p.value.raw.as_str()))
        .collect();
    let set = st
        .scope
        .set_env(&pairs)
        .map_err(|e| expand_err(e, kv.first().map_or(&node.keyword, |p| &p.value)))?;
    let text: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    st.apply(
        ConfigChange::Env(set.clone()),
        format!("ENV {}", text.join(" ")),
    );
    Ok(())
}
