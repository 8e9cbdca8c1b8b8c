//! ARG in a stage: build-arg, else default (expanded, seeing earlier ARGs of the line),
//! else the global value. Declared ARGs with a value join the RUN environment.
//! Values of secret-looking and proxy ARGs stay out of the history.

use crate::error::FrontendError;
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::expand_err;
use kiln_dockerfile::ast::ArgDecl;
use kiln_dockerfile::Node;

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    _node: &Node,
    decls: &[ArgDecl],
) -> Result<(), FrontendError> {
    let mut parts = Vec::new();
    for d in decls {
        let v = st
            .scope
            .declare_arg(
                &mut lw.global,
                &d.name.raw,
                d.default.as_ref().map(|w| w.raw.as_str()),
            )
            .map_err(|e| expand_err(e, d.default.as_ref().unwrap_or(&d.name)))?;
        let name = &d.name.raw;
        parts.push(match v {
            // History ships with the image: a secret-looking or proxy ARG (proxy URLs carry
            // credentials) is named, its value is not (BuildKit writes it; kiln does not).
            Some(_)
                if kiln_dockerfile::lint::looks_secret(name)
                    || kiln_dockerfile::scope::is_proxy_arg(name) =>
            {
                format!("{name}={}", crate::instructions::run::REDACTED)
            }
            Some(v) => format!("{name}={v}"),
            None => name.clone(),
        });
    }
    st.history(format!("ARG {}", parts.join(" ")), false);
    Ok(())
}
