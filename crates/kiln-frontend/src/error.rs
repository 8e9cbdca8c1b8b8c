//! Frontend errors: each names its kind and, when it has one, the Dockerfile span.

use kiln_dockerfile::{Diagnostic, Span};

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Dockerfile has parse errors (see `diagnostics`).
    Parse,
    NoStages,
    UnknownTarget,
    /// A stage refers to itself or a cycle of stages.
    Cycle,
    Platform,
    /// The resolver could not give a base image config.
    Resolve,
    InvalidReference,
    /// Variable expansion failed.
    Expand,
    /// A flag value is invalid.
    InvalidFlag,
    /// `--security=insecure` without `--allow security.insecure`.
    InsecureNotAllowed,
    /// An instruction kiln does not lower.
    Unsupported,
    /// Internal graph construction failure (a bug).
    Graph,
}

/// A lowering failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrontendError {
    pub kind: ErrorKind,
    pub message: String,
    /// The Dockerfile bytes at fault.
    pub span: Option<Span>,
    pub hint: Option<String>,
    /// For `ErrorKind::Parse`: the parser's diagnostics.
    pub diagnostics: Vec<Diagnostic>,
}

impl FrontendError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>, span: Option<Span>) -> Self {
        FrontendError {
            kind,
            message: message.into(),
            span,
            hint: None,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn at(kind: ErrorKind, message: impl Into<String>, span: Span) -> Self {
        Self::new(kind, message, Some(span))
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Diagnostics to render with `kiln_dockerfile::render` (the parse diagnostics, or
    /// one error at this error's span).
    pub fn to_diagnostics(&self) -> Vec<Diagnostic> {
        if !self.diagnostics.is_empty() {
            return self.diagnostics.clone();
        }
        let mut d = Diagnostic::error("build", self.message.clone(), self.span.unwrap_or_default());
        if let Some(h) = &self.hint {
            d = d.with_hint(h.clone());
        }
        vec![d]
    }
}
