//! Parser API beyond the snapshots: stages, global args, helpers.

use kiln_dockerfile::ast::{line_col, Instruction};
use kiln_dockerfile::parse;

#[test]
fn stages_and_global_args() {
    let src =
        "ARG A=1 B\nFROM --platform=$BUILDPLATFORM img:$A AS one\nRUN x\nFROM one\nCOPY a b\n";
    let p = parse(src);
    assert!(p.diagnostics.is_empty());
    let g = p.dockerfile.global_args();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].default.as_ref().unwrap().raw, "1");
    assert!(g[1].default.is_none());
    let st = p.dockerfile.stages();
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].name.unwrap().raw, "one");
    assert_eq!(st[0].base.unwrap().raw, "img:$A");
    assert_eq!(st[0].platform.unwrap().raw, "$BUILDPLATFORM");
    assert_eq!(st[0].instructions.len(), 1);
    assert_eq!(st[1].base.unwrap().raw, "one");
    assert!(st[1].name.is_none());
    assert!(matches!(
        st[1].instructions[0].instruction,
        Instruction::Copy(_)
    ));
}

#[test]
fn spans_slice_the_source() {
    let src = "FROM alpine\nCOPY --chown=a:b \\\n  src /dst\n";
    let p = parse(src);
    let n = &p.dockerfile.nodes[1];
    assert_eq!(&src[n.keyword.span.start..n.keyword.span.end], "COPY");
    for w in n.words() {
        assert_eq!(&src[w.span.start..w.span.end], w.raw);
    }
    let f = &n.flags[0];
    assert_eq!(&src[f.span.start..f.span.end], "--chown=a:b");
    assert_eq!(line_col(src, n.words()[1].span.start), (3, 7));
}

#[test]
fn line_col_is_total() {
    let src = "é\nab";
    assert_eq!(line_col(src, 0), (1, 1));
    assert_eq!(line_col(src, 1), (1, 1)); // inside 'é': clamped back
    assert_eq!(line_col(src, 2), (1, 2));
    assert_eq!(line_col(src, 4), (2, 2));
    assert_eq!(line_col(src, 999), (2, 3));
}

#[test]
fn heredoc_expand_flag() {
    let p = parse("COPY <<'A' <<B /d/\nx\nA\ny\nB\n");
    let h = &p.dockerfile.nodes[0].heredocs;
    assert!(!h[0].expand && h[1].expand);
}
