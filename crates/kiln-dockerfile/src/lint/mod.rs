//! Lint rules behind `kiln check`. Rule ids are BuildKit's check names so
//! `# check=skip=...` directives written for BuildKit keep working.
//!
//! Each rule lives in its own module with a `RULE` descriptor and a `check`
//! function over a shared [`Ctx`]. The lints never fail: malformed
//! instructions are simply skipped (the parser already reported them).

use crate::ast::{Dockerfile, Node, Span};
use crate::diag::{Diagnostic, Severity};
use crate::parser::Parsed;
use serde::Serialize;

mod consistent_casing;
mod copy_ignored_file;
mod duplicate_stage_name;
mod empty_continuation;
mod from_args;
mod from_as_casing;
mod json_args;
mod legacy_key_value;
mod maintainer;
mod multiple_instructions;
mod redundant_target_platform;
mod reserved_stage_name;
mod secrets;
mod stage_name_casing;
mod undefined_var;
pub mod vars;
mod workdir_relative;

pub use secrets::looks_secret;

/// A lint rule's descriptor (`kiln check --explain ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// BuildKit check name, e.g. `StageNameCasing`.
    pub id: &'static str,
    /// Short human title.
    pub name: &'static str,
    /// What it checks, why it matters, and an example.
    pub explanation: &'static str,
}

type CheckFn = fn(&Ctx<'_>, &mut Vec<Diagnostic>);

const ALL: &[(&Rule, CheckFn)] = &[
    (&json_args::RULE, json_args::check),
    (&stage_name_casing::RULE, stage_name_casing::check),
    (&from_as_casing::RULE, from_as_casing::check),
    (&undefined_var::RULE, undefined_var::check),
    (&duplicate_stage_name::RULE, duplicate_stage_name::check),
    (&reserved_stage_name::RULE, reserved_stage_name::check),
    (&multiple_instructions::RULE, multiple_instructions::check),
    (&maintainer::RULE, maintainer::check),
    (&workdir_relative::RULE, workdir_relative::check),
    (&secrets::RULE, secrets::check),
    (&consistent_casing::RULE, consistent_casing::check),
    (&from_args::UNDEFINED_RULE, from_args::check_undefined),
    (
        &from_args::INVALID_DEFAULT_RULE,
        from_args::check_invalid_default,
    ),
    (&empty_continuation::RULE, empty_continuation::check),
    (
        &redundant_target_platform::RULE,
        redundant_target_platform::check,
    ),
    (&legacy_key_value::RULE, legacy_key_value::check),
    (&copy_ignored_file::RULE, copy_ignored_file::check),
];

/// Every rule, in a stable order.
pub static RULES: &[Rule] = &[
    json_args::RULE,
    stage_name_casing::RULE,
    from_as_casing::RULE,
    undefined_var::RULE,
    duplicate_stage_name::RULE,
    reserved_stage_name::RULE,
    multiple_instructions::RULE,
    maintainer::RULE,
    workdir_relative::RULE,
    secrets::RULE,
    consistent_casing::RULE,
    from_args::UNDEFINED_RULE,
    from_args::INVALID_DEFAULT_RULE,
    empty_continuation::RULE,
    redundant_target_platform::RULE,
    legacy_key_value::RULE,
    copy_ignored_file::RULE,
];

/// Look a rule up by id, case-insensitively (`--explain stagenamecasing`).
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id.eq_ignore_ascii_case(id))
}

/// Options from the command line; merged with the `# check=` directive.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Rule ids to skip (`all` skips every rule).
    pub skip: Vec<String>,
    /// Force warnings to errors (`Some(true)`) or not (`Some(false)`),
    /// overriding `error=true` in the directive; `None` keeps the directive.
    pub warnings_as_errors: Option<bool>,
    /// Variables known to exist in base images (e.g. from their config);
    /// `UndefinedVar` treats them as declared. `PATH` is always known.
    pub known_env: Vec<String>,
    /// The context's ignore rules, when a context is known; `CopyIgnoredFile` needs them.
    pub dockerignore: Option<crate::ignore::IgnoreMatcher>,
}

/// Parsed `# check=skip=A,B;error=true` directive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckDirective {
    pub skip: Vec<String>,
    pub error: bool,
}

impl CheckDirective {
    pub fn parse(value: &str) -> CheckDirective {
        let mut d = CheckDirective::default();
        for part in value.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => d.skip.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "error" => d.error = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        d
    }
}

/// Shared read-only context for the rules.
pub(crate) struct Ctx<'a> {
    pub df: &'a Dockerfile,
    pub opts: &'a CheckOptions,
}

impl Ctx<'_> {
    pub fn escape(&self) -> char {
        self.df.escape
    }
}

pub(crate) fn warn(rule: &Rule, msg: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::warning(rule.id, msg, span)
}

/// Top-level nodes and ONBUILD triggers, for rules that look at every keyword.
pub(crate) fn all_nodes(df: &Dockerfile) -> Vec<&Node> {
    let mut v = Vec::new();
    for n in &df.nodes {
        v.push(n);
        if let crate::ast::Instruction::Onbuild(inner) = &n.instruction {
            v.push(inner.as_ref());
        }
    }
    v
}

/// Run the lint rules (parse diagnostics are not included; see [`run`]).
pub fn check(parsed: &Parsed, opts: &CheckOptions) -> Vec<Diagnostic> {
    let df = &parsed.dockerfile;
    let directive = df
        .directive("check")
        .map(|d| CheckDirective::parse(&d.value))
        .unwrap_or_default();
    let skipped = |id: &str| {
        opts.skip
            .iter()
            .chain(directive.skip.iter())
            .any(|s| s.eq_ignore_ascii_case(id) || s.eq_ignore_ascii_case("all"))
    };
    let cx = Ctx { df, opts };
    let mut out = Vec::new();
    for (rule, f) in ALL {
        if skipped(rule.id) {
            continue;
        }
        f(&cx, &mut out);
    }
    if opts.warnings_as_errors.unwrap_or(directive.error) {
        for d in &mut out {
            d.severity = Severity::Error;
        }
    }
    out.sort_by_key(|d| (d.span.start, d.span.end));
    out
}

/// Everything `kiln check` reports for one Dockerfile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Parse errors first, then lint findings, each in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckReport {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
    /// 2 when anything is an error, 1 for warnings under `--strict`, else 0.
    pub fn exit_code(&self, strict: bool) -> i32 {
        exit_code(self.errors(), self.warnings(), strict)
    }
}

/// The `kiln check` exit-code rule.
pub fn exit_code(errors: usize, warnings: usize, strict: bool) -> i32 {
    if errors > 0 {
        2
    } else if strict && warnings > 0 {
        1
    } else {
        0
    }
}

/// Parse diagnostics plus lint findings.
pub fn run(parsed: &Parsed, opts: &CheckOptions) -> CheckReport {
    let mut diagnostics = parsed.diagnostics.clone();
    diagnostics.extend(check(parsed, opts));
    CheckReport { diagnostics }
}
