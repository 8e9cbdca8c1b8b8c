//! HEALTHCHECK: `NONE` → `Test: ["NONE"]`; shell form → `CMD-SHELL`, exec → `CMD`;
//! durations are Go durations stored in nanoseconds.

use crate::error::{ErrorKind, FrontendError};
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::{go_quote_list, parse_duration};
use kiln_dockerfile::ast::{CommandForm, Healthcheck as HcAst};
use kiln_dockerfile::{Node, Word};
use kiln_oci::changes::ConfigChange;
use kiln_oci::config::Healthcheck;

fn dur(w: &Option<Word>, name: &str) -> Result<Option<i64>, FrontendError> {
    let Some(w) = w else { return Ok(None) };
    match parse_duration(&w.raw) {
        Some(d) if d >= 0 => Ok(Some(d)),
        _ => Err(FrontendError::at(
            ErrorKind::InvalidFlag,
            format!("invalid --{name} duration {:?}", w.raw),
            w.span,
        )),
    }
}

pub(crate) fn dispatch(
    _lw: &mut Lowerer<'_>,
    st: &mut StageState,
    _node: &Node,
    h: &HcAst,
) -> Result<(), FrontendError> {
    let hc = match h {
        HcAst::None => Healthcheck {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        },
        HcAst::Cmd {
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
            command,
        } => {
            let test = match command {
                CommandForm::Shell(w) => vec!["CMD-SHELL".to_string(), w.raw.clone()],
                CommandForm::Exec(ws) => std::iter::once("CMD".to_string())
                    .chain(ws.iter().map(|w| w.raw.clone()))
                    .collect(),
            };
            let retries = match retries {
                None => None,
                Some(w) => Some(w.raw.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(
                    || {
                        FrontendError::at(
                            ErrorKind::InvalidFlag,
                            format!("invalid --retries value {:?}", w.raw),
                            w.span,
                        )
                    },
                )?),
            };
            Healthcheck {
                test: Some(test),
                interval: dur(interval, "interval")?,
                timeout: dur(timeout, "timeout")?,
                start_period: dur(start_period, "start-period")?,
                start_interval: dur(start_interval, "start-interval")?,
                retries,
            }
        }
    };
    let text = format!(
        "HEALTHCHECK {}",
        go_quote_list(hc.test.as_deref().unwrap_or_default())
    );
    st.apply(ConfigChange::Healthcheck(hc), text);
    Ok(())
}
