//! ENTRYPOINT: a new entrypoint clears the CMD unless CMD was set earlier in this same
//! stage (BuildKit `dispatchEntrypoint`: `if !d.cmdSet { Cmd = nil }`).

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
    let text = format!("ENTRYPOINT {}", go_quote_list(&args));
    let reset_cmd = !st.cmd_set;
    st.apply(ConfigChange::Entrypoint { args, reset_cmd }, text);
    Ok(())
}
