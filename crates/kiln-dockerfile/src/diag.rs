//! Diagnostics: parse errors and lint findings, rendered like rustc/BuildKit
//! (text via annotate-snippets) or as JSON for tooling.

use crate::ast::{line_col, Span};
use annotate_snippets::{Level, Renderer, Snippet};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A secondary span with its own note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Lint rule id (e.g. `StageNameCasing`) or parse error code (e.g. `unknown-instruction`).
    pub code: Option<&'static str>,
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
    pub labels: Vec<Label>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code: Some(code),
            message: message.into(),
            span,
            hint: None,
            labels: Vec::new(),
        }
    }
    pub fn warning(code: &'static str, message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message, span)
        }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// One-line form for snapshots: `error[code] 3:1-3:5: message (hint: ...)`.
    pub fn dump_line(&self, src: &str) -> String {
        let (l1, c1) = line_col(src, self.span.start);
        let (l2, c2) = line_col(src, self.span.end);
        let mut s = format!(
            "{}[{}] {l1}:{c1}-{l2}:{c2}: {}",
            self.severity.as_str(),
            self.code.unwrap_or("-"),
            self.message
        );
        if let Some(h) = &self.hint {
            s.push_str(" (hint: ");
            s.push_str(h);
            s.push(')');
        }
        s
    }

    pub fn to_json(&self, file: &str, src: &str) -> JsonDiagnostic {
        let (line, column) = line_col(src, self.span.start);
        let (end_line, end_column) = line_col(src, self.span.end);
        JsonDiagnostic {
            file: file.to_string(),
            line,
            column,
            end_line,
            end_column,
            severity: self.severity,
            rule: self.code.map(str::to_string),
            message: self.message.clone(),
            hint: self.hint.clone(),
        }
    }
}

/// Machine-readable diagnostic (`kiln check --format json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonDiagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub severity: Severity,
    pub rule: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// Clamp a span into `src` on char boundaries so rendering never panics.
fn clamp(src: &str, span: Span) -> Span {
    let fix = |mut o: usize| {
        o = o.min(src.len());
        while !src.is_char_boundary(o) {
            o -= 1;
        }
        o
    };
    let start = fix(span.start);
    let end = fix(span.end).max(start);
    Span::new(start, end)
}

/// Render like rustc: header, `--> file:line:col`, the source lines with
/// carets, then `= help:` with the hint. Plain text (no ANSI colours).
pub fn render(diag: &Diagnostic, file_name: &str, src: &str) -> String {
    render_with(diag, file_name, src, Renderer::plain())
}

/// Same as [`render`] with ANSI colours for terminals.
pub fn render_styled(diag: &Diagnostic, file_name: &str, src: &str) -> String {
    render_with(diag, file_name, src, Renderer::styled())
}

fn render_with(diag: &Diagnostic, file_name: &str, src: &str, renderer: Renderer) -> String {
    let main = clamp(src, diag.span);
    let labels: Vec<(Span, &str)> = diag
        .labels
        .iter()
        .map(|l| (clamp(src, l.span), l.message.as_str()))
        .collect();
    // Only hand annotate-snippets the lines the annotations touch: keeps
    // output small for big files and offsets simple.
    let lo = labels
        .iter()
        .map(|l| l.0.start)
        .fold(main.start, usize::min);
    let hi = labels.iter().map(|l| l.0.end).fold(main.end, usize::max);
    let win_start = src[..lo].rfind('\n').map_or(0, |i| i + 1);
    let win_end = src[hi..].find('\n').map_or(src.len(), |i| hi + i);
    let window = &src[win_start..win_end];
    let (first_line, _) = line_col(src, win_start);
    let level = match diag.severity {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
    };
    let rel = |s: Span| (s.start - win_start)..(s.end - win_start);
    let mut snippet = Snippet::source(window)
        .line_start(first_line)
        .origin(file_name)
        .fold(true)
        .annotation(level.span(rel(main)));
    for (s, m) in &labels {
        snippet = snippet.annotation(Level::Info.span(rel(*s)).label(m));
    }
    let mut msg = level.title(&diag.message).snippet(snippet);
    if let Some(code) = diag.code {
        msg = msg.id(code);
    }
    if let Some(h) = &diag.hint {
        msg = msg.footer(Level::Help.title(h));
    }
    renderer.render(msg).to_string()
}
