//! kiln-dockerfile: the Dockerfile front end.
//!
//! Owns the lossless parser (spans on every token, never fails), diagnostics
//! rendering, lint rules (`kiln check`), word expansion with BuildKit's lexer
//! rules, ARG/ENV scoping and the `.dockerignore` matcher.
//!
//! Pure: no I/O, no knowledge of images, stores or execution, and no panics
//! on any input.

pub mod ast;
pub mod diag;
pub mod expand;
pub mod ignore;
pub mod lint;
pub mod parser;
pub mod scope;

pub use ast::{line_col, Dockerfile, Instruction, Node, Span, Word};
pub use diag::{render, Diagnostic, Severity};
pub use parser::{parse, Parsed};
