//! MAINTAINER (deprecated): sets the config `author` (BuildKit), not a label.

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use kiln_dockerfile::{Diagnostic, Node, Word};

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    w: &Word,
) -> Result<(), FrontendError> {
    st.config.author = Some(w.raw.clone());
    st.history(format!("MAINTAINER {}", w.raw), false);
    lw.warnings.push(
        Diagnostic::warning(
            "MaintainerDeprecated",
            "MAINTAINER is deprecated",
            node.span,
        )
        .with_hint("use LABEL org.opencontainers.image.authors=..."),
    );
    Ok(())
}
