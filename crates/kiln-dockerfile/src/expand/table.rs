//! Which instruction fields the builder expands, as data.
//!
//! Facts are from BuildKit (moby/buildkit, `frontend/dockerfile`):
//! `instructions/commands.go` (which commands implement `Expand` /
//! `ExpandRaw`), `instructions/commands_runmount.go` (`parseMount`) and
//! `dockerfile2llb/convert.go` (`dispatch`, `dispatchArg`,
//! `buildDispatchStates`, `toCommand`, `buildMetaArgs`),
//! `dockerfile2llb/convert_expose.go` (`dispatchExpose`).

/// A part of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field<'a> {
    /// `FROM <image>`.
    Image,
    /// `FROM … AS <name>`.
    StageName,
    /// A `--flag=value`, named without the dashes (`Flag("chown")`).
    Flag(&'a str),
    /// ADD/COPY sources.
    Source,
    /// ADD/COPY destination.
    Dest,
    /// Key of ENV / LABEL / ARG pairs.
    Key,
    /// Value of ENV / LABEL pairs, default value of ARG.
    Value,
    /// Other positional arguments (EXPOSE ports, USER, WORKDIR, VOLUME,
    /// STOPSIGNAL, SHELL, MAINTAINER).
    Arg,
    /// The command of RUN / CMD / ENTRYPOINT / HEALTHCHECK / ONBUILD, shell
    /// or exec form.
    Command,
    /// The body of a heredoc (`<<EOF`) attached to the instruction.
    HeredocBody,
}

/// How (and whether) a field is expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expansion {
    /// Not expanded by the builder (a shell may do it at run time).
    No,
    /// `ProcessWord` with the stage environment (ENV + declared ARGs).
    Word,
    /// `ProcessWords` (expansion + field splitting) with the stage environment.
    Words,
    /// `ProcessWord` with the global (pre-FROM) ARGs and platform ARGs only.
    GlobalArgs,
    /// ARG default: `ProcessWord` with the stage environment *including* the
    /// ARGs declared earlier on the same line.
    ArgDefault,
    /// `--mount`: the value of every `key=value` option is expanded
    /// separately; keys and bare options (`ro`, `required`) are not.
    MountValues,
    /// Heredoc body, only when the delimiter is unquoted: expanded with
    /// [`super::Expander::heredoc`] (escape `\`, quotes kept).
    Heredoc,
    /// Variable syntax is an error (the builder refuses it).
    Rejected,
}

/// One row of [`EXPANSION_TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpansionRule {
    /// Instruction keyword, upper case.
    pub instruction: &'static str,
    /// The field.
    pub field: Field<'static>,
    /// How it is expanded.
    pub expansion: Expansion,
    /// Where in BuildKit the fact comes from.
    pub source: &'static str,
}

const fn rule(
    instruction: &'static str,
    field: Field<'static>,
    expansion: Expansion,
    source: &'static str,
) -> ExpansionRule {
    ExpansionRule {
        instruction,
        field,
        expansion,
        source,
    }
}

use Expansion as E;
use Field as F;

/// Every known (instruction, field) pair. Pairs not listed are not expanded.
pub const EXPANSION_TABLE: &[ExpansionRule] = &[
    // FROM: convert.go buildDispatchStates: ProcessWordWithMatches(st.BaseName,
    // dctx.globalArgs) and the same for st.Platform; st.Name is never expanded.
    rule("FROM", F::Image, E::GlobalArgs, "dockerfile2llb/convert.go buildDispatchStates"),
    rule("FROM", F::Flag("platform"), E::GlobalArgs, "dockerfile2llb/convert.go buildDispatchStates"),
    rule("FROM", F::StageName, E::No, "instructions/parse.go parseFrom (name not expanded)"),
    // ADD: commands.go AddCommand.Expand: Chown, Chmod, Checksum, SourcePaths, DestPath.
    rule("ADD", F::Source, E::Word, "instructions/commands.go AddCommand.Expand"),
    rule("ADD", F::Dest, E::Word, "instructions/commands.go AddCommand.Expand"),
    rule("ADD", F::Flag("chown"), E::Word, "instructions/commands.go AddCommand.Expand"),
    rule("ADD", F::Flag("chmod"), E::Word, "instructions/commands.go AddCommand.Expand"),
    rule("ADD", F::Flag("checksum"), E::Word, "instructions/commands.go AddCommand.Expand"),
    rule("ADD", F::Flag("exclude"), E::No, "instructions/commands.go AddCommand.Expand (ExcludePatterns untouched)"),
    rule("ADD", F::Flag("link"), E::No, "boolean flag"),
    rule("ADD", F::Flag("keep-git-dir"), E::No, "boolean flag"),
    rule("ADD", F::Flag("unpack"), E::No, "boolean flag"),
    rule("ADD", F::HeredocBody, E::Heredoc, "instructions/commands.go SourcesAndDest.ExpandRaw; convert.go dispatch (SkipProcessQuotes, NewLex('\\\\'))"),
    // COPY: commands.go CopyCommand.Expand: Chown, Chmod, SourcePaths, DestPath.
    rule("COPY", F::Source, E::Word, "instructions/commands.go CopyCommand.Expand"),
    rule("COPY", F::Dest, E::Word, "instructions/commands.go CopyCommand.Expand"),
    rule("COPY", F::Flag("chown"), E::Word, "instructions/commands.go CopyCommand.Expand"),
    rule("COPY", F::Flag("chmod"), E::Word, "instructions/commands.go CopyCommand.Expand"),
    // convert.go toCommand: --from expanded with an empty env must be unchanged,
    // else "variable expansion is not supported for --from".
    rule("COPY", F::Flag("from"), E::Rejected, "dockerfile2llb/convert.go toCommand"),
    rule("COPY", F::Flag("exclude"), E::No, "instructions/commands.go CopyCommand.Expand (ExcludePatterns untouched)"),
    rule("COPY", F::Flag("link"), E::No, "boolean flag"),
    rule("COPY", F::Flag("parents"), E::No, "boolean flag"),
    rule("COPY", F::HeredocBody, E::Heredoc, "instructions/commands.go SourcesAndDest.ExpandRaw; convert.go dispatch"),
    // ENV / LABEL: expandKvpsInPlace expands keys *and* values, the whole line
    // against the environment before the line (convert.go dispatch).
    rule("ENV", F::Key, E::Word, "instructions/commands.go EnvCommand.Expand"),
    rule("ENV", F::Value, E::Word, "instructions/commands.go EnvCommand.Expand"),
    rule("LABEL", F::Key, E::Word, "instructions/commands.go LabelCommand.Expand"),
    rule("LABEL", F::Value, E::Word, "instructions/commands.go LabelCommand.Expand"),
    // ARG: convert.go dispatch skips Expand for ARG; dispatchArg expands only the
    // default value, per argument, after the previous ones were added to the env.
    rule("ARG", F::Key, E::No, "dockerfile2llb/convert.go dispatch (!isArg) / dispatchArg"),
    rule("ARG", F::Value, E::ArgDefault, "dockerfile2llb/convert.go dispatchArg, buildMetaArgs"),
    // EXPOSE: convert_expose.go dispatchExpose uses ProcessWords per port.
    rule("EXPOSE", F::Arg, E::Words, "dockerfile2llb/convert_expose.go dispatchExpose"),
    rule("STOPSIGNAL", F::Arg, E::Word, "instructions/commands.go StopSignalCommand.Expand"),
    rule("USER", F::Arg, E::Word, "instructions/commands.go UserCommand.Expand"),
    rule("VOLUME", F::Arg, E::Word, "instructions/commands.go VolumeCommand.Expand"),
    rule("WORKDIR", F::Arg, E::Word, "instructions/commands.go WorkdirCommand.Expand"),
    // RUN: RunCommand.Expand only calls setMountState -> parseMount(expander).
    rule("RUN", F::Command, E::No, "instructions/commands.go RunCommand.Expand (mounts only)"),
    rule("RUN", F::HeredocBody, E::No, "RunCommand implements no ExpandRaw"),
    rule("RUN", F::Flag("mount"), E::MountValues, "instructions/commands_runmount.go parseMount"),
    rule("RUN", F::Flag("network"), E::No, "instructions/commands.go RunCommand.Expand (mounts only)"),
    rule("RUN", F::Flag("security"), E::No, "instructions/commands.go RunCommand.Expand (mounts only)"),
    rule("RUN", F::Flag("device"), E::No, "instructions/commands.go RunCommand.Expand (mounts only)"),
    // No Expand method on these commands.
    rule("CMD", F::Command, E::No, "instructions/commands.go CmdCommand (no Expand)"),
    rule("ENTRYPOINT", F::Command, E::No, "instructions/commands.go EntrypointCommand (no Expand)"),
    rule("HEALTHCHECK", F::Command, E::No, "instructions/commands.go HealthCheckCommand (no Expand)"),
    rule("SHELL", F::Arg, E::No, "instructions/commands.go ShellCommand (no Expand)"),
    rule("MAINTAINER", F::Arg, E::No, "instructions/commands.go MaintainerCommand (no Expand)"),
    // ONBUILD: stored verbatim; the trigger is parsed and expanded in the child build.
    rule("ONBUILD", F::Command, E::No, "instructions/commands.go OnbuildCommand (no Expand)"),
];

/// How `field` of `instruction` (any case) is expanded; [`Expansion::No`] for
/// unknown pairs. Flag names may be given with or without leading dashes.
pub fn expansion(instruction: &str, field: Field<'_>) -> Expansion {
    let field = match field {
        Field::Flag(f) => Field::Flag(f.trim_start_matches('-')),
        f => f,
    };
    EXPANSION_TABLE
        .iter()
        .find(|r| r.instruction.eq_ignore_ascii_case(instruction) && r.field == field)
        .map_or(Expansion::No, |r| r.expansion)
}

/// Whether the builder substitutes variables in `field` of `instruction`.
pub fn expands(instruction: &str, field: Field<'_>) -> bool {
    !matches!(
        expansion(instruction, field),
        Expansion::No | Expansion::Rejected
    )
}
