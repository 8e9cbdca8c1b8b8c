//! Property tests: the parser is total. Any input parses without panicking,
//! and every span it reports lies inside the source on char boundaries.

use kiln_dockerfile::ast::{Instruction, Node, Span};
use kiln_dockerfile::diag::render;
use kiln_dockerfile::lint::{self, CheckOptions};
use proptest::prelude::*;

fn ok(src: &str, s: Span) -> bool {
    s.start <= s.end
        && s.end <= src.len()
        && src.is_char_boundary(s.start)
        && src.is_char_boundary(s.end)
}

fn node_spans(n: &Node, out: &mut Vec<Span>) {
    out.push(n.span);
    out.push(n.keyword.span);
    for f in &n.flags {
        out.push(f.span);
        out.push(f.name_span);
        out.extend(f.value.as_ref().map(|v| v.span));
    }
    out.extend(n.args.iter().map(|w| w.span));
    out.extend(n.empty_continuations.iter().copied());
    for h in &n.heredocs {
        out.push(h.marker_span);
        out.push(h.body_span);
    }
    if let Instruction::Onbuild(inner) = &n.instruction {
        node_spans(inner, out);
    }
}

fn check_all(src: &str) {
    let p = kiln_dockerfile::parse(src);
    let mut spans = Vec::new();
    for n in &p.dockerfile.nodes {
        node_spans(n, &mut spans);
    }
    spans.extend(p.dockerfile.comments.iter().map(|c| c.span));
    spans.extend(
        p.dockerfile
            .directives
            .iter()
            .flat_map(|d| [d.span, d.value_span]),
    );
    let lints = lint::check(&p, &CheckOptions::default());
    for d in p.diagnostics.iter().chain(lints.iter()) {
        spans.push(d.span);
        spans.extend(d.labels.iter().map(|l| l.span));
        let _ = render(d, "Dockerfile", src);
    }
    for s in spans {
        assert!(ok(src, s), "bad span {s:?} for {src:?}");
    }
    let _ = kiln_dockerfile::ast::dump(&p, src);
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FROM".to_string()),
        Just("RUN".to_string()),
        Just("COPY".to_string()),
        Just("ADD".to_string()),
        Just("ENV".to_string()),
        Just("ARG".to_string()),
        Just("ONBUILD".to_string()),
        Just("HEALTHCHECK".to_string()),
        Just("SHELL".to_string()),
        Just("CMD".to_string()),
        Just("LABEL".to_string()),
        Just("AS".to_string()),
        Just("--mount=type=cache,target=/x".to_string()),
        Just("--from=a".to_string()),
        Just("--".to_string()),
        Just("--platform=$X".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'E F'".to_string()),
        Just("EOF".to_string()),
        Just("\\".to_string()),
        Just("`".to_string()),
        Just("# escape=`".to_string()),
        Just("# syntax=x".to_string()),
        Just("#".to_string()),
        Just("[\"a\\\"b\", \"\\u00e9\"]".to_string()),
        Just("[".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("${a:-$b}".to_string()),
        Just("$".to_string()),
        Just("${".to_string()),
        Just("=".to_string()),
        Just("é😀".to_string()),
        Just("\t".to_string()),
        Just("\r".to_string()),
        Just("\n".to_string()),
        Just(" ".to_string()),
        "[a-z=/:]{1,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        check_all(&s);
    }

    #[test]
    fn token_soup_never_panics(toks in proptest::collection::vec(token(), 0..40)) {
        let mut src = String::new();
        for t in toks {
            src.push_str(&t);
            if !t.ends_with('\n') {
                src.push(' ');
            }
        }
        check_all(&src);
    }

    #[test]
    fn token_lines_never_panic(lines in proptest::collection::vec(proptest::collection::vec(token(), 0..6), 0..12)) {
        let src: String = lines.iter().map(|l| l.join(" ") + "\n").collect();
        check_all(&src);
    }
}
