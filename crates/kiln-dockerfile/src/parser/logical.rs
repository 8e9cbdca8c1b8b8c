//! Logical lines: physical lines joined across escape-char continuations,
//! with a map back to source offsets so every token keeps a true span.

use crate::ast::{Span, Word};

/// One physical line: `start..end` excludes the `\n` (and a trailing `\r`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhysLine {
    pub start: usize,
    pub end: usize,
}

pub(crate) fn split_lines(src: &str) -> Vec<PhysLine> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = src.as_bytes();
    // A UTF-8 BOM is not part of the first line's text.
    if src.starts_with('\u{feff}') {
        start = 3;
    }
    while start <= bytes.len() {
        let nl = bytes[start..].iter().position(|&b| b == b'\n');
        let raw_end = nl.map_or(bytes.len(), |i| start + i);
        let mut end = raw_end;
        if end > start && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        out.push(PhysLine { start, end });
        match nl {
            Some(_) => start = raw_end + 1,
            None => break,
        }
    }
    // A final "\n" yields an empty last line; drop it (nothing to parse).
    if let Some(last) = out.last() {
        if last.start == last.end && last.start == bytes.len() && out.len() > 1 {
            out.pop();
        }
    }
    out
}

/// A logical line: concatenation of source segments.
#[derive(Debug, Clone, Default)]
pub(crate) struct Logical {
    pub text: String,
    /// (logical start, source start, length)
    segs: Vec<(usize, usize, usize)>,
}

impl Logical {
    pub fn push(&mut self, src: &str, start: usize, end: usize) {
        let piece = &src[start..end];
        self.segs.push((self.text.len(), start, piece.len()));
        self.text.push_str(piece);
    }

    fn seg_for_start(&self, l: usize) -> Option<&(usize, usize, usize)> {
        self.segs.iter().find(|s| l >= s.0 && l < s.0 + s.2)
    }

    /// Source offset of the byte at logical offset `l`.
    pub fn src_start(&self, l: usize) -> usize {
        if let Some(s) = self.seg_for_start(l) {
            return s.1 + (l - s.0);
        }
        self.segs.last().map_or(0, |s| s.1 + s.2)
    }

    /// Source offset just past logical byte `l - 1`.
    pub fn src_end(&self, l: usize) -> usize {
        if let Some(s) = self.segs.iter().find(|s| l > s.0 && l <= s.0 + s.2) {
            return s.1 + (l - s.0);
        }
        self.src_start(l)
    }

    pub fn span(&self, a: usize, b: usize) -> Span {
        if b <= a {
            let s = self.src_start(a);
            return Span::new(s, s);
        }
        Span::new(self.src_start(a), self.src_end(b))
    }

    pub fn word(&self, a: usize, b: usize, expand: bool) -> Word {
        Word {
            raw: self.text[a..b].to_string(),
            span: self.span(a, b),
            expand,
        }
    }
}
