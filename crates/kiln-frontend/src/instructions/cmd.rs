//! CMD: shell form wrapped in the current SHELL; marks CMD as set in this stage.

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::{command_args, go_quote_list};
use kiln_dockerfile::ast::CommandForm;
use kiln_dockerfile::Node;
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    _lw: &mut Lowerer<'_>,
    st: &mut StageState,
    _node: &Node,
    form: &CommandForm,
) -> Result<(), FrontendError> {
    let args = command_args(form, &st.shell());
    let text = format!("CMD {}", go_quote_list(&args));
    st.apply(ConfigChange::Cmd(args), text);
    st.cmd_set = true;
    Ok(())
}
