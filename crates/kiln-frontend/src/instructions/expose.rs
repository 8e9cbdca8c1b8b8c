//! EXPOSE: each word expanded and field-split (BuildKit `ProcessWords`); `/tcp` default;
//! a range `7000-7002` exposes each port in it (as BuildKit's `nat.ParsePortSpecs`).

use crate::error::{ErrorKind, FrontendError};
use crate::lower::Lowerer;
use crate::state::StageState;
use crate::util::expand_words;
use kiln_dockerfile::{Node, Word};
use kiln_oci::changes::ConfigChange;

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
    ports: &[Word],
) -> Result<(), FrontendError> {
    let mut out = Vec::new();
    for w in ports {
        for p in expand_words(&st.scope, lw.escape, w)? {
            let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
            let valid_num = !num.is_empty()
                && num
                    .split('-')
                    .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            let proto = proto.to_ascii_lowercase();
            if !valid_num || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                return Err(FrontendError::at(
                    ErrorKind::InvalidFlag,
                    format!("invalid port {p:?} in EXPOSE"),
                    w.span,
                ));
            }
            match num.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = match (lo.parse::<u32>(), hi.parse::<u32>()) {
                        (Ok(lo), Ok(hi)) if lo <= hi && hi <= 65535 => (lo, hi),
                        _ => {
                            return Err(FrontendError::at(
                                ErrorKind::InvalidFlag,
                                format!("invalid port range {p:?} in EXPOSE"),
                                w.span,
                            ))
                        }
                    };
                    out.extend((lo..=hi).map(|n| format!("{n}/{proto}")));
                }
                None => out.push(format!("{num}/{proto}")),
            }
        }
    }
    let _ = node;
    let text = out.join(" ");
    st.apply(ConfigChange::Expose(out), format!("EXPOSE {text}"));
    Ok(())
}
