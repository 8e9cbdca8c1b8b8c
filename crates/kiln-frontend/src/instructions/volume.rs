//! VOLUME: paths expanded; an empty path is an error (BuildKit).

use crate::error::{ErrorKind, FrontendError};
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::expand;
use kiln_dockerfile::{Node, Word};
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    _lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    paths: &[Word],
) -> Result<(), FrontendError> {
    let mut out = Vec::new();
    for w in paths {
        let p = expand(&st.scope, w)?;
        if p.trim().is_empty() {
            return Err(FrontendError::at(
                ErrorKind::InvalidFlag,
                "VOLUME specified can not be an empty string",
                node.span,
            ));
        }
        out.push(p);
    }
    let text = format!("VOLUME [{}]", out.join(" "));
    st.apply(ConfigChange::Volume(out), text);
    Ok(())
}
