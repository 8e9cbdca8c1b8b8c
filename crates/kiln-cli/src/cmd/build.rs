//! `kiln build` (being assembled: graph, solver, ops and export are wired in here).

use crate::cli::BuildArgs;
use anyhow::{bail, Result};
use kiln_store::Store;
use std::process::ExitCode;

pub fn build(_store: &Store, _a: &BuildArgs) -> Result<ExitCode> {
    bail!("kiln build: not wired yet in this development snapshot")
}
