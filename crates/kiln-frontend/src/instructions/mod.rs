//! One module per Dockerfile instruction. Each `dispatch` applies the instruction to the
//! stage state: metadata-only instructions edit the config (and add an `empty_layer`
//! history entry) and create no vertex; RUN/COPY/ADD/WORKDIR add vertices.

pub mod add;
pub mod arg;
pub mod cmd;
pub mod copy;
pub mod entrypoint;
pub mod env;
pub mod expose;
pub mod from;
pub mod healthcheck;
pub mod label;
pub mod maintainer;
pub mod onbuild;
pub mod run;
pub mod shell;
pub mod stopsignal;
pub mod user;
pub mod volume;
pub mod workdir;

use crate::error::{ErrorKind, FrontendError};
use crate::lower::Lowerer;
use crate::state::StageState;
use kiln_dockerfile::{Instruction, Node};

/// Lowers one instruction of a stage.
pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    st: &mut StageState,
    node: &Node,
) -> Result<(), FrontendError> {
    match &node.instruction {
        Instruction::Run(r) => run::dispatch(lw, st, node, r),
        Instruction::Copy(c) => copy::dispatch(lw, st, node, c, false),
        Instruction::Add(c) => add::dispatch(lw, st, node, c),
        Instruction::Workdir(w) => workdir::dispatch(lw, st, node, w),
        Instruction::Env(kv) => env::dispatch(lw, st, node, kv),
        Instruction::Arg(a) => arg::dispatch(lw, st, node, a),
        Instruction::Label(kv) => label::dispatch(lw, st, node, kv),
        Instruction::Expose(p) => expose::dispatch(lw, st, node, p),
        Instruction::Volume { paths, .. } => volume::dispatch(lw, st, node, paths),
        Instruction::User(u) => user::dispatch(lw, st, node, u),
        Instruction::Stopsignal(s) => stopsignal::dispatch(lw, st, node, s),
        Instruction::Healthcheck(h) => healthcheck::dispatch(lw, st, node, h),
        Instruction::Shell(s) => shell::dispatch(lw, st, node, s),
        Instruction::Cmd(c) => cmd::dispatch(lw, st, node, c),
        Instruction::Entrypoint(c) => entrypoint::dispatch(lw, st, node, c),
        Instruction::Onbuild(inner) => onbuild::dispatch(lw, st, node, inner),
        Instruction::Maintainer(m) => maintainer::dispatch(lw, st, node, m),
        Instruction::From(_) => Err(FrontendError::at(
            ErrorKind::Unsupported,
            "FROM inside a stage",
            node.span,
        )),
        Instruction::Unknown | Instruction::Invalid => Err(FrontendError::at(
            ErrorKind::Unsupported,
            format!("cannot lower {}", node.name()),
            node.span,
        )),
    }
}
