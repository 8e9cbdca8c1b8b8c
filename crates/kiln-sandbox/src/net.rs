//! `Network::None`: the fresh network namespace has only a down `lo`;
//! bring it up (SIOCSIFFLAGS) so localhost works inside.

use crate::error::StepError;

pub(crate) fn loopback_up() -> Result<(), StepError> {
    crate::sys::interface_up("lo").map_err(|e| StepError::msg("bring up lo", None, e.to_string()))
}
