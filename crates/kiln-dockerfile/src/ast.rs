//! Lossless Dockerfile syntax tree.
//!
//! Every token keeps the byte span it came from so diagnostics and later
//! stages (expansion, lowering) can point back at the input. Text is kept
//! *raw*: quotes and variable references are left for the `expand` module,
//! which applies BuildKit's word rules.

use serde::Serialize;
use std::fmt::Write as _;

/// Half-open byte range `start..end` into the Dockerfile source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// Smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 1-based (line, column) of a byte offset; the column counts chars.
/// Offsets past the end or inside a char are clamped, never panic.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(src.len());
    while !src.is_char_boundary(off) {
        off -= 1;
    }
    let before = &src[..off];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut col = before[line_start..].chars().count() + 1;
    // A leading BOM is not a visible column.
    if line_start == 0 && before.starts_with('\u{feff}') {
        col -= 1;
    }
    (line, col)
}

/// One argument token as written (after line continuations are joined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    /// Unexpanded text; for JSON-form elements the decoded JSON string.
    pub raw: String,
    pub span: Span,
    /// Whether BuildKit would run variable expansion on this word.
    pub expand: bool,
}

/// `--name[=value]` before the instruction arguments. The value has quotes
/// and backslash escapes already removed, exactly as BuildKit's flag scanner does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub name: String,
    pub name_span: Span,
    pub value: Option<Word>,
    pub span: Span,
}

/// A here-document attached to RUN/COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// Delimiter with quotes removed.
    pub name: String,
    /// `<<-`: leading tabs are stripped from content and terminator.
    pub chomp: bool,
    /// Delimiter was quoted: content must not be expanded.
    pub quoted: bool,
    /// Optional file descriptor prefix (`3<<EOF`).
    pub fd: Option<u32>,
    /// Content lines, each ending in `\n` (tabs already stripped for `<<-`).
    pub content: String,
    /// The `<<EOF` marker word in the instruction line.
    pub marker_span: Span,
    /// Content lines plus the terminator line.
    pub body_span: Span,
    pub expand: bool,
}

/// Shell form (one raw command string) or exec form (JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CommandForm {
    Shell(Word),
    Exec(Vec<Word>),
}

impl CommandForm {
    pub fn is_exec(&self) -> bool {
        matches!(self, CommandForm::Exec(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: Word,
    pub value: Word,
    /// `ENV k v` / `LABEL k v` (space-separated legacy form).
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: Word,
    pub default: Option<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    pub platform: Option<Word>,
    pub image: Word,
    /// The `AS` keyword as written (for casing lint).
    pub as_keyword: Option<Word>,
    pub alias: Option<Word>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BindMount {
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub readwrite: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheMount {
    pub id: Option<String>,
    pub target: Option<String>,
    pub sharing: Option<Sharing>,
    pub from: Option<String>,
    pub source: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<String>,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecretMount {
    pub id: Option<String>,
    pub target: Option<String>,
    pub env: Option<String>,
    pub required: bool,
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TmpfsMount {
    pub target: Option<String>,
    pub size: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SshMount {
    pub id: Option<String>,
    pub target: Option<String>,
    pub required: bool,
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
}

/// Typed `RUN --mount`. Option values stay raw text (BuildKit expands them
/// before use); uid/gid/mode are validated as numbers only when they hold
/// no variable reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MountKind {
    Bind(BindMount),
    Cache(CacheMount),
    Tmpfs(TmpfsMount),
    Secret(SecretMount),
    Ssh(SshMount),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub kind: MountKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: CommandForm,
    pub mounts: Vec<Mount>,
    pub network: Option<Word>,
    pub security: Option<Word>,
}

/// COPY and ADD share one shape; flags a form does not accept stay unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyArgs {
    /// Source words; a heredoc source is the raw `<<name` marker word.
    pub sources: Vec<Word>,
    pub dest: Word,
    pub json: bool,
    pub from: Option<Word>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<Word>,
    pub checksum: Option<Word>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
}

// One per stage at most; boxing would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    None,
    Cmd {
        interval: Option<Word>,
        timeout: Option<Word>,
        start_period: Option<Word>,
        start_interval: Option<Word>,
        retries: Option<Word>,
        command: CommandForm,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(CommandForm),
    Label(Vec<KeyValue>),
    Maintainer(Word),
    Expose(Vec<Word>),
    Env(Vec<KeyValue>),
    Add(CopyArgs),
    Copy(CopyArgs),
    Entrypoint(CommandForm),
    Volume {
        paths: Vec<Word>,
        json: bool,
    },
    User(Word),
    Workdir(Word),
    Arg(Vec<ArgDecl>),
    Onbuild(Box<Node>),
    Stopsignal(Word),
    Healthcheck(Healthcheck),
    Shell(Vec<Word>),
    /// Not a Dockerfile instruction (an error diagnostic says so).
    Unknown,
    /// A known instruction with malformed arguments (see diagnostics).
    Invalid,
}

/// One instruction with everything around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Keyword exactly as written (case preserved).
    pub keyword: Word,
    /// Whole instruction: keyword to end of last line, heredoc bodies included.
    pub span: Span,
    pub flags: Vec<Flag>,
    /// Raw argument words after the flags (JSON elements decoded).
    pub args: Vec<Word>,
    pub heredocs: Vec<Heredoc>,
    /// Blank lines inside a line continuation (BuildKit skips them; lint warns).
    pub empty_continuations: Vec<Span>,
    pub instruction: Instruction,
}

impl Node {
    /// Upper-cased keyword, e.g. `RUN`.
    pub fn name(&self) -> String {
        self.keyword.raw.to_ascii_uppercase()
    }
    /// Raw (unexpanded) argument words.
    pub fn words(&self) -> &[Word] {
        &self.args
    }
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    pub value: String,
    pub span: Span,
    pub value_span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Vec<Directive>,
    /// Escape character in effect (`\` or `` ` ``).
    pub escape: char,
    pub comments: Vec<Comment>,
    pub nodes: Vec<Node>,
    pub source_len: usize,
}

/// A build stage: one FROM and the instructions up to the next FROM.
#[derive(Debug, Clone)]
pub struct Stage<'a> {
    pub index: usize,
    pub from_node: &'a Node,
    /// None when the FROM itself was malformed.
    pub from: Option<&'a From>,
    pub name: Option<&'a Word>,
    pub base: Option<&'a Word>,
    pub platform: Option<&'a Word>,
    pub instructions: &'a [Node],
}

impl Dockerfile {
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.name == name)
    }

    fn is_from(n: &Node) -> bool {
        n.keyword.raw.eq_ignore_ascii_case("from")
    }

    /// Instructions before the first FROM (ARGs, plus anything misplaced).
    pub fn preamble(&self) -> &[Node] {
        let end = self
            .nodes
            .iter()
            .position(Self::is_from)
            .unwrap_or(self.nodes.len());
        &self.nodes[..end]
    }

    /// ARG declarations before the first FROM (visible to FROM lines).
    pub fn global_args(&self) -> Vec<&ArgDecl> {
        self.preamble()
            .iter()
            .filter_map(|n| match &n.instruction {
                Instruction::Arg(a) => Some(a.iter()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub fn stages(&self) -> Vec<Stage<'_>> {
        let starts: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| Self::is_from(&self.nodes[i]))
            .collect();
        let mut out = Vec::with_capacity(starts.len());
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(self.nodes.len());
            let node = &self.nodes[s];
            let from = match &node.instruction {
                Instruction::From(f) => Some(f),
                _ => None,
            };
            out.push(Stage {
                index: k,
                from_node: node,
                from,
                name: from.and_then(|f| f.alias.as_ref()),
                base: from.map(|f| &f.image),
                platform: from.and_then(|f| f.platform.as_ref()),
                instructions: &self.nodes[s + 1..end],
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Stable text dump used by the snapshot tests. One line per token, spans as
// byte ranges, so a change in either structure or position shows in a diff.

fn w(word: &Word) -> String {
    format!(
        "{:?} {}..{}{}",
        word.raw,
        word.span.start,
        word.span.end,
        if word.expand { "" } else { " noexpand" }
    )
}

fn ow(word: &Option<Word>) -> String {
    word.as_ref().map_or_else(|| "-".to_string(), w)
}

fn dump_form(out: &mut String, ind: &str, label: &str, form: &CommandForm) {
    match form {
        CommandForm::Shell(s) => {
            let _ = writeln!(out, "{ind}{label} shell {}", w(s));
        }
        CommandForm::Exec(v) => {
            let _ = writeln!(out, "{ind}{label} exec [{}]", v.len());
            for x in v {
                let _ = writeln!(out, "{ind}  {}", w(x));
            }
        }
    }
}

fn dump_copy(out: &mut String, ind: &str, c: &CopyArgs) {
    let _ = writeln!(out, "{ind}json={}", c.json);
    for s in &c.sources {
        let _ = writeln!(out, "{ind}src {}", w(s));
    }
    let _ = writeln!(out, "{ind}dest {}", w(&c.dest));
    for (k, v) in [
        ("from", &c.from),
        ("chown", &c.chown),
        ("chmod", &c.chmod),
        ("checksum", &c.checksum),
    ] {
        if v.is_some() {
            let _ = writeln!(out, "{ind}{k} {}", ow(v));
        }
    }
    for e in &c.excludes {
        let _ = writeln!(out, "{ind}exclude {}", w(e));
    }
    let mut bools = Vec::new();
    if c.link {
        bools.push("link".to_string());
    }
    if c.parents {
        bools.push("parents".to_string());
    }
    if c.keep_git_dir {
        bools.push("keep-git-dir".to_string());
    }
    if let Some(u) = c.unpack {
        bools.push(format!("unpack={u}"));
    }
    if !bools.is_empty() {
        let _ = writeln!(out, "{ind}{}", bools.join(" "));
    }
}

fn dump_node(out: &mut String, src: &str, n: &Node, ind: &str) {
    let (l, c) = line_col(src, n.span.start);
    let _ = writeln!(
        out,
        "{ind}{} {}..{} @{l}:{c} kw={}",
        n.name(),
        n.span.start,
        n.span.end,
        w(&n.keyword)
    );
    let ind2 = format!("{ind}  ");
    let ind = ind2.as_str();
    for f in &n.flags {
        let _ = writeln!(
            out,
            "{ind}flag --{} {}..{} = {}",
            f.name,
            f.span.start,
            f.span.end,
            ow(&f.value)
        );
    }
    for s in &n.empty_continuations {
        let _ = writeln!(out, "{ind}empty-continuation {}..{}", s.start, s.end);
    }
    for h in &n.heredocs {
        let _ = writeln!(
            out,
            "{ind}heredoc {:?} chomp={} quoted={} fd={:?} marker={}..{} body={}..{} content={:?}",
            h.name,
            h.chomp,
            h.quoted,
            h.fd,
            h.marker_span.start,
            h.marker_span.end,
            h.body_span.start,
            h.body_span.end,
            h.content
        );
    }
    match &n.instruction {
        Instruction::From(f) => {
            let _ = writeln!(out, "{ind}image {}", w(&f.image));
            if let Some(p) = &f.platform {
                let _ = writeln!(out, "{ind}platform {}", w(p));
            }
            if let Some(a) = &f.alias {
                let _ = writeln!(out, "{ind}as {} name {}", ow(&f.as_keyword), w(a));
            }
        }
        Instruction::Run(r) => {
            dump_form(out, ind, "command", &r.command);
            for m in &r.mounts {
                let _ = writeln!(
                    out,
                    "{ind}mount {}..{} {:?}",
                    m.span.start, m.span.end, m.kind
                );
            }
            if let Some(x) = &r.network {
                let _ = writeln!(out, "{ind}network {}", w(x));
            }
            if let Some(x) = &r.security {
                let _ = writeln!(out, "{ind}security {}", w(x));
            }
        }
        Instruction::Cmd(f) | Instruction::Entrypoint(f) => dump_form(out, ind, "command", f),
        Instruction::Label(kv) | Instruction::Env(kv) => {
            for p in kv {
                let _ = writeln!(
                    out,
                    "{ind}{} = {}{}",
                    w(&p.key),
                    w(&p.value),
                    if p.legacy { " (legacy)" } else { "" }
                );
            }
        }
        Instruction::Maintainer(x)
        | Instruction::User(x)
        | Instruction::Workdir(x)
        | Instruction::Stopsignal(x) => {
            let _ = writeln!(out, "{ind}value {}", w(x));
        }
        Instruction::Expose(v) | Instruction::Shell(v) => {
            for x in v {
                let _ = writeln!(out, "{ind}arg {}", w(x));
            }
        }
        Instruction::Volume { paths, json } => {
            let _ = writeln!(out, "{ind}json={json}");
            for x in paths {
                let _ = writeln!(out, "{ind}path {}", w(x));
            }
        }
        Instruction::Add(c) | Instruction::Copy(c) => dump_copy(out, ind, c),
        Instruction::Arg(a) => {
            for d in a {
                let _ = writeln!(out, "{ind}arg {} default {}", w(&d.name), ow(&d.default));
            }
        }
        Instruction::Onbuild(inner) => dump_node(out, src, inner, ind),
        Instruction::Healthcheck(Healthcheck::None) => {
            let _ = writeln!(out, "{ind}NONE");
        }
        Instruction::Healthcheck(Healthcheck::Cmd {
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
            command,
        }) => {
            for (k, v) in [
                ("interval", interval),
                ("timeout", timeout),
                ("start-period", start_period),
                ("start-interval", start_interval),
                ("retries", retries),
            ] {
                if v.is_some() {
                    let _ = writeln!(out, "{ind}{k} {}", ow(v));
                }
            }
            dump_form(out, ind, "command", command);
        }
        Instruction::Unknown => {
            let _ = writeln!(out, "{ind}UNKNOWN");
            for x in &n.args {
                let _ = writeln!(out, "{ind}word {}", w(x));
            }
        }
        Instruction::Invalid => {
            let _ = writeln!(out, "{ind}INVALID");
            for x in &n.args {
                let _ = writeln!(out, "{ind}word {}", w(x));
            }
        }
    }
}

/// Readable, stable dump of a parse result (AST, then diagnostics).
pub fn dump(parsed: &crate::parser::Parsed, src: &str) -> String {
    let d = &parsed.dockerfile;
    let mut out = String::new();
    let _ = writeln!(out, "escape {:?}", d.escape);
    for dir in &d.directives {
        let _ = writeln!(
            out,
            "directive {} = {:?} {}..{}",
            dir.name, dir.value, dir.span.start, dir.span.end
        );
    }
    for c in &d.comments {
        let _ = writeln!(out, "comment {:?} {}..{}", c.text, c.span.start, c.span.end);
    }
    for n in &d.nodes {
        dump_node(&mut out, src, n, "");
    }
    for s in d.stages() {
        let _ = writeln!(
            out,
            "stage {} name={} base={} instructions={}",
            s.index,
            s.name.map_or("-".into(), |x| x.raw.clone()),
            s.base.map_or("-".into(), |x| x.raw.clone()),
            s.instructions.len()
        );
    }
    for diag in &parsed.diagnostics {
        out.push_str(&diag.dump_line(src));
        out.push('\n');
    }
    out
}
