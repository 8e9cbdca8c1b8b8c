//! Lossless Dockerfile parser. [`parse`] never fails and never panics:
//! problems become diagnostics next to a best-effort AST.
//!
//! Line handling follows BuildKit: parser directives only at the very top,
//! escape-char continuations, comment and blank lines skipped inside a
//! continuation, heredoc bodies read after the instruction line.

mod flags;
mod instr;
mod logical;
mod words;

pub use instr::INSTRUCTIONS;
pub use words::{edit_distance, suggest, utf8_len as utf8_char_len};

use crate::ast::{Comment, Directive, Dockerfile, Heredoc, Span};
use crate::diag::Diagnostic;
use logical::{split_lines, Logical, PhysLine};

/// Parse output: always an AST, plus any parse errors.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub dockerfile: Dockerfile,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == crate::diag::Severity::Error)
    }
}

pub const DIRECTIVES: &[&str] = &["syntax", "escape", "check"];

/// Match `# name = value` (BuildKit `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
/// Returns (name range, value range) as byte offsets in `line`.
fn directive_like(line: &str) -> Option<((usize, usize), (usize, usize))> {
    let b = line.as_bytes();
    let mut i = 1;
    if b.first() != Some(&b'#') {
        return None;
    }
    let ws = |i: &mut usize| {
        while *i < b.len() && words::is_ws(b[*i]) {
            *i += 1;
        }
    };
    ws(&mut i);
    let ns = i;
    if i >= b.len() || !b[i].is_ascii_alphabetic() {
        return None;
    }
    while i < b.len() && b[i].is_ascii_alphanumeric() {
        i += 1;
    }
    let ne = i;
    ws(&mut i);
    if i >= b.len() || b[i] != b'=' {
        return None;
    }
    i += 1;
    ws(&mut i);
    let ve = words::trim_end(line, i, b.len());
    if ve <= i {
        return None;
    }
    Some(((ns, ne), (i, ve)))
}

fn trim_start(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii() && words::is_ws(c as u8))
}

pub fn parse(src: &str) -> Parsed {
    let lines = split_lines(src);
    let mut diags = Vec::new();
    let mut directives: Vec<Directive> = Vec::new();
    let mut comments = Vec::new();
    let mut escape = b'\\';
    let text = |l: &PhysLine| &src[l.start..l.end];

    // Parser directives: consecutive directive lines at the very top.
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let Some(((ns, ne), (vs, ve))) = directive_like(text(&l)) else {
            break;
        };
        let line = text(&l);
        let name = line[ns..ne].to_ascii_lowercase();
        if !DIRECTIVES.contains(&name.as_str()) {
            break; // unknown directive: a comment, and the directive section ends
        }
        let span = Span::new(l.start, l.end);
        let value_span = Span::new(l.start + vs, l.start + ve);
        let value = line[vs..ve].to_string();
        if directives.iter().any(|d| d.name == name) {
            diags.push(
                Diagnostic::error(
                    "duplicate-directive",
                    format!("only one {name} parser directive can be used"),
                    span,
                )
                .with_hint("remove the repeated directive"),
            );
        } else {
            if name == "escape" {
                match value.as_str() {
                    "\\" => escape = b'\\',
                    "`" => escape = b'`',
                    _ => diags.push(
                        Diagnostic::error(
                            "invalid-directive",
                            format!("invalid escape token {value:?}"),
                            value_span,
                        )
                        .with_hint("the escape directive accepts \\ or `"),
                    ),
                }
            }
            directives.push(Directive {
                name,
                value,
                span,
                value_span,
            });
        }
        i += 1;
    }

    let is_comment = |l: &PhysLine| trim_start(text(l)).starts_with('#');
    let is_blank = |l: &PhysLine| trim_start(text(l)).is_empty();
    // Continuation: escape char followed only by spaces/tabs at line end.
    let continues = |s: &str| -> Option<usize> {
        let t = s.trim_end_matches([' ', '\t']);
        (t.as_bytes().last() == Some(&escape)).then(|| t.len() - 1)
    };

    let mut nodes = Vec::new();
    while i < lines.len() {
        let l = lines[i];
        if is_blank(&l) {
            i += 1;
            continue;
        }
        if is_comment(&l) {
            let t = trim_start(text(&l));
            let start = l.end - t.len();
            comments.push(Comment {
                text: t.to_string(),
                span: Span::new(start, l.end),
            });
            i += 1;
            continue;
        }
        // Build the logical line.
        let mut logical = Logical::default();
        let mut empties = Vec::new();
        let first_start = l.end - trim_start(text(&l)).len();
        let mut seg = (first_start, l.end);
        let mut last_end = l.end;
        i += 1;
        loop {
            match continues(&src[seg.0..seg.1]) {
                None => {
                    logical.push(src, seg.0, seg.1);
                    break;
                }
                Some(cut) => {
                    logical.push(src, seg.0, seg.0 + cut);
                    // Skip comments and blank lines inside the continuation.
                    while i < lines.len() && (is_comment(&lines[i]) || is_blank(&lines[i])) {
                        let l = lines[i];
                        if is_blank(&l) {
                            empties.push(Span::new(l.start, l.end));
                        } else {
                            let t = trim_start(text(&l));
                            comments.push(Comment {
                                text: t.to_string(),
                                span: Span::new(l.end - t.len(), l.end),
                            });
                        }
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    seg = (lines[i].start, lines[i].end);
                    last_end = lines[i].end;
                    i += 1;
                }
            }
        }
        let mut cx = instr::Cx {
            line: &logical,
            escape,
            diags: &mut diags,
        };
        let parsed = instr::parse(&mut cx, 0, false);
        let mut node = parsed.node;
        node.empty_continuations = empties;
        node.span = Span::new(first_start, last_end.max(first_start));
        // Heredoc bodies follow the instruction line, in marker order.
        for m in parsed.markers {
            let body_start = lines.get(i).map_or(src.len(), |l| l.start);
            let mut content = String::new();
            let mut terminated = None;
            while i < lines.len() {
                let l = lines[i];
                i += 1;
                let line = text(&l);
                let cand = if m.chomp {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                if cand == m.name {
                    terminated = Some(l.end);
                    break;
                }
                content.push_str(cand);
                content.push('\n');
                last_end = l.end;
            }
            let body_end = match terminated {
                Some(e) => e,
                None => {
                    diags.push(
                        Diagnostic::error(
                            "unterminated-heredoc",
                            format!("unterminated heredoc {:?}", m.name),
                            m.span,
                        )
                        .with_hint(format!(
                            "end the heredoc with a line containing only {}",
                            m.name
                        )),
                    );
                    last_end.max(body_start)
                }
            };
            last_end = body_end.max(last_end);
            node.heredocs.push(Heredoc {
                name: m.name,
                chomp: m.chomp,
                quoted: m.quoted,
                fd: m.fd,
                content,
                marker_span: m.span,
                body_span: Span::new(body_start.min(body_end), body_end),
                expand: !m.quoted,
            });
            node.span.end = node.span.end.max(body_end);
        }
        nodes.push(node);
    }

    Parsed {
        dockerfile: Dockerfile {
            directives,
            escape: escape as char,
            comments,
            nodes,
            source_len: src.len(),
        },
        diagnostics: diags,
    }
}
