//! Parse one logical line into a [`Node`]. Errors become diagnostics and an
//! `Instruction::Invalid` / `Unknown` node; nothing here can fail hard.

use super::flags::{self, FlagDefs, Values};
use super::logical::Logical;
use super::words::{json_array, skip_ws, split_quoted, split_ws, suggest, trim_end};
use crate::ast::*;
use crate::diag::Diagnostic;

/// Every instruction of the Dockerfile reference, upper case.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

pub(crate) struct Cx<'a> {
    pub line: &'a Logical,
    pub escape: u8,
    pub diags: &'a mut Vec<Diagnostic>,
}

/// A heredoc marker found on the instruction line; the body is read later.
pub(crate) struct Marker {
    pub fd: Option<u32>,
    pub chomp: bool,
    pub name: String,
    pub quoted: bool,
    pub span: Span,
}

/// Result of parsing: the node (heredoc bodies still empty) and markers.
pub(crate) struct Parsed {
    pub node: Node,
    pub markers: Vec<Marker>,
}

struct Args {
    start: usize,
    end: usize,
}

impl Cx<'_> {
    fn t(&self) -> &str {
        &self.line.text
    }
    fn words_ws(&self, a: &Args, expand: bool) -> Vec<Word> {
        split_ws(self.t(), a.start, a.end)
            .into_iter()
            .map(|(s, e)| self.line.word(s, e, expand))
            .collect()
    }
    fn words_q(&self, a: &Args, expand: bool) -> Vec<Word> {
        split_quoted(self.t(), a.start, a.end, self.escape)
            .into_iter()
            .map(|(s, e)| self.line.word(s, e, expand))
            .collect()
    }
    fn whole(&self, a: &Args, expand: bool) -> Word {
        self.line.word(a.start, a.end, expand)
    }
    fn json(&self, a: &Args, expand: bool) -> Option<Vec<Word>> {
        json_array(self.t(), a.start, a.end).map(|v| {
            v.into_iter()
                .map(|(raw, s, e)| Word {
                    raw,
                    span: self.line.span(s, e),
                    expand,
                })
                .collect()
        })
    }
    /// BuildKit `parseMaybeJSON`: JSON string array or the whole rest.
    fn maybe_json(&self, a: &Args) -> CommandForm {
        match self.json(a, false) {
            Some(v) => CommandForm::Exec(v),
            None => CommandForm::Shell(self.whole(a, false)),
        }
    }
    fn err(&mut self, code: &'static str, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(code, msg, span));
    }
}

/// Parse the instruction whose keyword starts at logical offset `start`.
/// `nested` is set for an ONBUILD trigger (no heredocs there).
pub(crate) fn parse(cx: &mut Cx<'_>, start: usize, nested: bool) -> Parsed {
    let t = cx.line.text.clone();
    let end_all = trim_end(&t, start, t.len());
    let bytes = t.as_bytes();
    let mut kw_end = start;
    while kw_end < end_all && !super::words::is_ws(bytes[kw_end]) {
        kw_end += 1;
    }
    let keyword = cx.line.word(start, kw_end, false);
    let upper = keyword.raw.to_ascii_uppercase();
    let known = INSTRUCTIONS.contains(&upper.as_str());
    let flag_expand = matches!(upper.as_str(), "FROM" | "COPY" | "ADD" | "RUN");
    let (flag_list, args_start) = flags::extract(cx.line, kw_end, end_all, flag_expand);
    let a = Args {
        start: skip_ws(&t, args_start, end_all),
        end: end_all,
    };
    let expand_args = matches!(
        upper.as_str(),
        "ADD"
            | "COPY"
            | "ENV"
            | "EXPOSE"
            | "FROM"
            | "LABEL"
            | "STOPSIGNAL"
            | "USER"
            | "VOLUME"
            | "WORKDIR"
            | "ARG"
    );
    let span = cx.line.span(start, end_all);
    let errors_before = cx.diags.len();
    let mut markers = Vec::new();
    let mut json_form = false;

    let instruction = if !known {
        let mut d = Diagnostic::error(
            "unknown-instruction",
            format!("unknown instruction: {}", keyword.raw),
            keyword.span,
        );
        if let Some(s) = suggest(&keyword.raw, INSTRUCTIONS.iter().copied()) {
            d = d.with_hint(format!("did you mean {s}?"));
        } else {
            d = d.with_hint(format!(
                "valid instructions are {}",
                INSTRUCTIONS.join(", ")
            ));
        }
        cx.diags.push(d);
        Instruction::Unknown
    } else {
        let defs: FlagDefs = match upper.as_str() {
            "FROM" => flags::FROM_FLAGS,
            "RUN" => flags::RUN_FLAGS,
            "ADD" => flags::ADD_FLAGS,
            "COPY" => flags::COPY_FLAGS,
            "HEALTHCHECK" => flags::HEALTHCHECK_FLAGS,
            _ => &[],
        };
        let mut diags = std::mem::take(cx.diags);
        let (vals, flags_ok) = flags::validate(&upper, defs, &flag_list, &mut diags);
        *cx.diags = diags;
        let r = match upper.as_str() {
            "FROM" => parse_from(cx, &a, &vals, span),
            "RUN" => {
                let form = cx.maybe_json(&a);
                json_form = form.is_exec();
                parse_run(cx, &a, &vals, form, span)
            }
            "CMD" => Some(Instruction::Cmd(cx.maybe_json(&a))),
            "ENTRYPOINT" => Some(Instruction::Entrypoint(cx.maybe_json(&a))),
            "LABEL" | "ENV" => parse_name_val(cx, &a, &upper, span).map(|kv| {
                if upper == "ENV" {
                    Instruction::Env(kv)
                } else {
                    Instruction::Label(kv)
                }
            }),
            "MAINTAINER" | "USER" | "WORKDIR" | "STOPSIGNAL" => {
                if a.start >= a.end {
                    cx.err(
                        "invalid-arguments",
                        format!("{upper} requires exactly one argument"),
                        span,
                    );
                    None
                } else {
                    let wd = cx.whole(&a, expand_args);
                    Some(match upper.as_str() {
                        "MAINTAINER" => Instruction::Maintainer(wd),
                        "USER" => Instruction::User(wd),
                        "WORKDIR" => Instruction::Workdir(wd),
                        _ => Instruction::Stopsignal(wd),
                    })
                }
            }
            "EXPOSE" => {
                let w = cx.words_ws(&a, true);
                if w.is_empty() {
                    cx.err(
                        "invalid-arguments",
                        "EXPOSE requires at least one argument",
                        span,
                    );
                    None
                } else {
                    Some(Instruction::Expose(w))
                }
            }
            "ADD" | "COPY" => {
                let (words, json) = match cx.json(&a, true) {
                    Some(v) => (v, true),
                    None => (cx.words_ws(&a, true), false),
                };
                json_form = json;
                parse_copy(cx, &upper, words, json, &vals, span)
            }
            "VOLUME" => {
                let (paths, json) = match cx.json(&a, true) {
                    Some(v) => (v, true),
                    None => (cx.words_ws(&a, true), false),
                };
                if paths.is_empty() {
                    cx.err(
                        "invalid-arguments",
                        "VOLUME requires at least one argument",
                        span,
                    );
                    None
                } else {
                    Some(Instruction::Volume { paths, json })
                }
            }
            "ARG" => parse_arg(cx, &a, span),
            "ONBUILD" => parse_onbuild(cx, &a, span),
            "HEALTHCHECK" => parse_healthcheck(cx, &a, &vals, span),
            "SHELL" => match cx.json(&a, false) {
                Some(v) if !v.is_empty() => Some(Instruction::Shell(v)),
                Some(_) => {
                    cx.err(
                        "invalid-arguments",
                        "SHELL requires at least one argument",
                        span,
                    );
                    None
                }
                None => {
                    cx.diags.push(
                        Diagnostic::error(
                            "invalid-arguments",
                            "SHELL requires the arguments to be in JSON form",
                            span,
                        )
                        .with_hint("write it as SHELL [\"/bin/sh\", \"-c\"]"),
                    );
                    None
                }
            },
            _ => None,
        };
        match r {
            Some(i) if flags_ok && cx.diags.len() == errors_before => i,
            _ => Instruction::Invalid,
        }
    };

    // Heredocs: RUN/COPY/ADD in non-JSON form only (BuildKit rule).
    if !nested && !json_form && matches!(upper.as_str(), "RUN" | "COPY" | "ADD") {
        markers = find_markers(cx.line, a.start, a.end);
    }

    let args = match &instruction {
        Instruction::Run(Run {
            command: CommandForm::Exec(v),
            ..
        })
        | Instruction::Cmd(CommandForm::Exec(v))
        | Instruction::Entrypoint(CommandForm::Exec(v))
        | Instruction::Shell(v)
        | Instruction::Volume {
            paths: v,
            json: true,
        } => v.clone(),
        Instruction::Add(c) | Instruction::Copy(c) if c.json => {
            let mut v = c.sources.clone();
            v.push(c.dest.clone());
            v
        }
        Instruction::Label(_) | Instruction::Env(_) | Instruction::Arg(_) => {
            cx.words_q(&a, expand_args)
        }
        _ => cx.words_ws(&a, expand_args),
    };

    Parsed {
        node: Node {
            keyword,
            span,
            flags: flag_list,
            args,
            heredocs: Vec::new(),
            empty_continuations: Vec::new(),
            instruction,
        },
        markers,
    }
}

fn parse_from(cx: &mut Cx<'_>, a: &Args, vals: &Values<'_>, span: Span) -> Option<Instruction> {
    let w = cx.words_ws(a, true);
    let platform = vals.str("platform");
    match w.len() {
        1 => Some(Instruction::From(From {
            platform,
            image: w[0].clone(),
            as_keyword: None,
            alias: None,
        })),
        3 if w[1].raw.eq_ignore_ascii_case("as") => {
            let alias = w[2].clone();
            if !valid_stage_name(&alias.raw) {
                cx.diags.push(
                    Diagnostic::error(
                        "invalid-stage-name",
                        format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            alias.raw
                        ),
                        alias.span,
                    )
                    .with_hint("stage names match [a-zA-Z][a-zA-Z0-9._-]*"),
                );
                return None;
            }
            Some(Instruction::From(From {
                platform,
                image: w[0].clone(),
                as_keyword: Some(Word {
                    expand: false,
                    ..w[1].clone()
                }),
                alias: Some(Word {
                    expand: false,
                    ..alias
                }),
            }))
        }
        _ => {
            let mut d = Diagnostic::error(
                "invalid-arguments",
                "FROM requires either one or three arguments",
                span,
            )
            .with_hint("FROM [--platform=<platform>] <image> [AS <name>]");
            if w.len() == 3 {
                d = d.with_label(w[1].span, "expected AS here");
            }
            cx.diags.push(d);
            None
        }
    }
}

fn valid_stage_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
}

fn parse_run(
    cx: &mut Cx<'_>,
    a: &Args,
    vals: &Values<'_>,
    command: CommandForm,
    span: Span,
) -> Option<Instruction> {
    if a.start >= a.end {
        cx.err(
            "invalid-arguments",
            "RUN requires at least one argument",
            span,
        );
        return None;
    }
    let mut mounts = Vec::new();
    for f in vals.strs("mount") {
        let Some(v) = &f.value else { continue };
        match flags::parse_mount(&v.raw) {
            Ok(kind) => mounts.push(Mount { kind, span: f.span }),
            Err(e) => cx.diags.push(
                Diagnostic::error("invalid-mount", format!("invalid --mount: {e}"), v.span)
                    .with_hint("e.g. --mount=type=cache,target=/root/.cache"),
            ),
        }
    }
    let network = vals.str("network");
    if let Some(n) = &network {
        if !n.raw.contains('$') && !matches!(n.raw.as_str(), "default" | "none" | "host") {
            cx.diags.push(
                Diagnostic::error(
                    "flag-value",
                    format!("unsupported network mode {:?}", n.raw),
                    n.span,
                )
                .with_hint("--network accepts default, none or host"),
            );
        }
    }
    let security = vals.str("security");
    if let Some(n) = &security {
        if !n.raw.contains('$') && !matches!(n.raw.as_str(), "sandbox" | "insecure") {
            cx.diags.push(
                Diagnostic::error(
                    "flag-value",
                    format!("unsupported security mode {:?}", n.raw),
                    n.span,
                )
                .with_hint("--security accepts sandbox or insecure"),
            );
        }
    }
    Some(Instruction::Run(Run {
        command,
        mounts,
        network,
        security,
    }))
}

fn parse_copy(
    cx: &mut Cx<'_>,
    upper: &str,
    mut words: Vec<Word>,
    json: bool,
    vals: &Values<'_>,
    span: Span,
) -> Option<Instruction> {
    if words.len() < 2 {
        cx.diags.push(
            Diagnostic::error(
                "invalid-arguments",
                format!(
                    "{upper} requires at least two arguments, but {} provided; the destination could not be determined",
                    if words.is_empty() { "none was" } else { "only one was" }
                ),
                span,
            )
            .with_hint(format!("{upper} <src>... <dest>")),
        );
        return None;
    }
    let dest = words.pop()?;
    let c = CopyArgs {
        sources: words,
        dest,
        json,
        from: vals.str("from"),
        chown: vals.str("chown"),
        chmod: vals.str("chmod"),
        link: vals.bool("link").unwrap_or(false),
        parents: vals.bool("parents").unwrap_or(false),
        excludes: vals
            .strs("exclude")
            .into_iter()
            .filter_map(|f| f.value.clone())
            .collect(),
        checksum: vals.str("checksum"),
        keep_git_dir: vals.bool("keep-git-dir").unwrap_or(false),
        unpack: vals.bool("unpack"),
    };
    Some(if upper == "ADD" {
        Instruction::Add(c)
    } else {
        Instruction::Copy(c)
    })
}

/// ENV/LABEL: `k=v k2=v2` or legacy `k v...` (BuildKit `parseNameVal`).
fn parse_name_val(cx: &mut Cx<'_>, a: &Args, upper: &str, span: Span) -> Option<Vec<KeyValue>> {
    let ranges = split_quoted(cx.t(), a.start, a.end, cx.escape);
    if ranges.is_empty() {
        cx.err(
            "invalid-arguments",
            format!("{upper} requires at least one argument"),
            span,
        );
        return None;
    }
    let t = cx.line.text.clone();
    let (s0, e0) = ranges[0];
    if !t[s0..e0].contains('=') {
        // Legacy form: the value is the rest of the line.
        let vstart = skip_ws(&t, e0, a.end);
        if vstart >= a.end {
            cx.diags.push(
                Diagnostic::error(
                    "invalid-arguments",
                    format!("{upper} {} must have two arguments", &t[s0..e0]),
                    span,
                )
                .with_hint(format!("write {upper} {}=<value>", &t[s0..e0])),
            );
            return None;
        }
        return Some(vec![KeyValue {
            key: cx.line.word(s0, e0, upper == "LABEL"),
            value: cx.line.word(vstart, a.end, true),
            legacy: true,
        }]);
    }
    let mut out = Vec::new();
    for (s, e) in ranges {
        let Some(eq) = t[s..e].find('=') else {
            cx.diags.push(
                Diagnostic::error(
                    "invalid-arguments",
                    format!(
                        "syntax error - can't find = in {:?}. Must be of the form: name=value",
                        &t[s..e]
                    ),
                    cx.line.span(s, e),
                )
                .with_hint(format!("{upper} key=value [key=value...]")),
            );
            return None;
        };
        if eq == 0 {
            cx.err(
                "invalid-arguments",
                format!("{upper} names can not be blank"),
                cx.line.span(s, e),
            );
            return None;
        }
        out.push(KeyValue {
            key: cx.line.word(s, s + eq, upper == "LABEL"),
            value: cx.line.word(s + eq + 1, e, true),
            legacy: false,
        });
    }
    Some(out)
}

fn parse_arg(cx: &mut Cx<'_>, a: &Args, span: Span) -> Option<Instruction> {
    let ranges = split_quoted(cx.t(), a.start, a.end, cx.escape);
    if ranges.is_empty() {
        cx.err(
            "invalid-arguments",
            "ARG requires at least one argument",
            span,
        );
        return None;
    }
    let t = cx.line.text.clone();
    let mut out = Vec::new();
    for (s, e) in ranges {
        let (name_end, default) = match t[s..e].find('=') {
            Some(eq) => (s + eq, Some(cx.line.word(s + eq + 1, e, true))),
            None => (e, None),
        };
        if name_end == s {
            cx.err(
                "invalid-arguments",
                "ARG names can not be blank",
                cx.line.span(s, e),
            );
            return None;
        }
        out.push(ArgDecl {
            name: cx.line.word(s, name_end, false),
            default,
        });
    }
    Some(Instruction::Arg(out))
}

fn parse_onbuild(cx: &mut Cx<'_>, a: &Args, span: Span) -> Option<Instruction> {
    if a.start >= a.end {
        cx.err(
            "invalid-arguments",
            "ONBUILD requires at least one argument",
            span,
        );
        return None;
    }
    let inner = parse(cx, a.start, true).node;
    let trig = inner.name();
    let why = match trig.as_str() {
        "ONBUILD" => Some("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        "FROM" => Some("FROM isn't allowed as an ONBUILD trigger"),
        "MAINTAINER" => Some("MAINTAINER isn't allowed as an ONBUILD trigger"),
        _ => None,
    };
    if let Some(why) = why {
        cx.err("invalid-onbuild", why, inner.keyword.span);
        return None;
    }
    if matches!(
        inner.instruction,
        Instruction::Invalid | Instruction::Unknown
    ) {
        return None;
    }
    Some(Instruction::Onbuild(Box::new(inner)))
}

/// Go `time.ParseDuration` syntax: `[0-9.]+unit` repeated (`1m30s`).
fn valid_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let b = s.as_bytes();
    let mut i = 0;
    if b.is_empty() {
        return false;
    }
    while i < b.len() {
        let n0 = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        if i == n0 {
            return false;
        }
        let u0 = i;
        while i < b.len() && !(b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        if !matches!(&s[u0..i], "ns" | "us" | "µs" | "ms" | "s" | "m" | "h") {
            return false;
        }
    }
    true
}

fn parse_healthcheck(
    cx: &mut Cx<'_>,
    a: &Args,
    vals: &Values<'_>,
    span: Span,
) -> Option<Instruction> {
    let t = cx.line.text.clone();
    let words = split_ws(&t, a.start, a.end);
    let Some(&(s0, e0)) = words.first() else {
        cx.err(
            "invalid-arguments",
            "HEALTHCHECK requires at least one argument",
            span,
        );
        return None;
    };
    let ty = t[s0..e0].to_ascii_uppercase();
    match ty.as_str() {
        "NONE" => {
            if words.len() > 1 || !vals.items.is_empty() {
                cx.err(
                    "invalid-arguments",
                    "HEALTHCHECK NONE takes no arguments",
                    span,
                );
                return None;
            }
            Some(Instruction::Healthcheck(Healthcheck::None))
        }
        "CMD" => {
            let rest = Args {
                start: skip_ws(&t, e0, a.end),
                end: a.end,
            };
            if rest.start >= rest.end {
                cx.err(
                    "invalid-arguments",
                    "HEALTHCHECK CMD requires a command",
                    span,
                );
                return None;
            }
            for name in ["interval", "timeout", "start-period", "start-interval"] {
                if let Some(v) = vals.str(name) {
                    if !v.raw.contains('$') && !valid_duration(&v.raw) {
                        cx.diags.push(
                            Diagnostic::error(
                                "flag-value",
                                format!("invalid duration {:?} for --{name}", v.raw),
                                v.span,
                            )
                            .with_hint("durations look like 30s, 1m30s or 500ms"),
                        );
                    }
                }
            }
            let retries = vals.str("retries");
            if let Some(r) = &retries {
                if r.raw.parse::<u32>().is_err() {
                    cx.err(
                        "flag-value",
                        format!(
                            "invalid value {:?} for --retries (expected a number)",
                            r.raw
                        ),
                        r.span,
                    );
                }
            }
            Some(Instruction::Healthcheck(Healthcheck::Cmd {
                interval: vals.str("interval"),
                timeout: vals.str("timeout"),
                start_period: vals.str("start-period"),
                start_interval: vals.str("start-interval"),
                retries,
                command: cx.maybe_json(&rest),
            }))
        }
        _ => {
            cx.diags.push(
                Diagnostic::error(
                    "invalid-arguments",
                    format!("unknown type {:?} in HEALTHCHECK", &t[s0..e0]),
                    cx.line.span(s0, e0),
                )
                .with_hint("use HEALTHCHECK [OPTIONS] CMD <command> or HEALTHCHECK NONE"),
            );
            None
        }
    }
}

/// Find `[n]<<[-]NAME` words (BuildKit's heredoc regex `^(\d*)<<(-?)([^<]*)$`).
fn find_markers(line: &Logical, from: usize, to: usize) -> Vec<Marker> {
    let t = &line.text;
    let mut out = Vec::new();
    for (s, e) in split_quoted(t, from, to, b'\\') {
        let w = &t[s..e];
        let digits = w.bytes().take_while(u8::is_ascii_digit).count();
        let Some(rest) = w[digits..].strip_prefix("<<") else {
            continue;
        };
        let (chomp, raw_name) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if raw_name.is_empty() || raw_name.contains('<') {
            continue;
        }
        let name = unquote(raw_name);
        if name.is_empty() {
            continue;
        }
        out.push(Marker {
            fd: if digits > 0 {
                w[..digits].parse().ok()
            } else {
                None
            },
            chomp,
            quoted: name != raw_name,
            name,
            span: line.span(s, e),
        });
    }
    out
}

/// Remove shell quotes and backslash escapes from a heredoc delimiter.
fn unquote(s: &str) -> String {
    let mut out = String::new();
    let mut q: Option<char> = None;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match (q, c) {
            (None, '\'' | '"') => q = Some(c),
            (Some(x), c) if c == x => q = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => {
                if let Some(n) = it.next() {
                    out.push(n);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}
