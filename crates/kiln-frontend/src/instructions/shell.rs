//! SHELL: JSON form only (the parser enforces it); not expanded.

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::go_quote_list;
use kiln_dockerfile::{Node, Word};
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    _lw: &mut Lowerer<'_>,
    st: &mut StageState,
    _node: &Node,
    words: &[Word],
) -> Result<(), FrontendError> {
    let args: Vec<String> = words.iter().map(|w| w.raw.clone()).collect();
    let text = format!("SHELL {}", go_quote_list(&args));
    st.apply(ConfigChange::Shell(args), text);
    Ok(())
}
