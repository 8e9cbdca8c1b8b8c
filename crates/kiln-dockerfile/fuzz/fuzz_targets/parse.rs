//! Fuzz the whole front end: parse, lint, dump and render must never panic,
//! and every reported span must lie inside the input on char boundaries.
#![no_main]

use kiln_dockerfile::ast::Span;
use kiln_dockerfile::lint::{self, CheckOptions};
use libfuzzer_sys::fuzz_target;

fn in_bounds(src: &str, s: Span) -> bool {
    s.start <= s.end
        && s.end <= src.len()
        && src.is_char_boundary(s.start)
        && src.is_char_boundary(s.end)
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = kiln_dockerfile::parse(src);
    for n in &parsed.dockerfile.nodes {
        assert!(in_bounds(src, n.span));
        assert!(in_bounds(src, n.keyword.span));
        for w in &n.args {
            assert!(in_bounds(src, w.span));
        }
        for f in &n.flags {
            assert!(in_bounds(src, f.span));
        }
        for h in &n.heredocs {
            assert!(in_bounds(src, h.marker_span) && in_bounds(src, h.body_span));
        }
    }
    let report = lint::run(&parsed, &CheckOptions::default());
    for d in &report.diagnostics {
        assert!(in_bounds(src, d.span));
        let _ = kiln_dockerfile::diag::render(d, "Dockerfile", src);
        let _ = d.to_json("Dockerfile", src);
    }
    let _ = kiln_dockerfile::ast::dump(&parsed, src);
});
