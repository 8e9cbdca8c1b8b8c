//! Snapshot tests: every `tests/fixtures/parser/<case>/Dockerfile` is parsed
//! and its `ast::dump` compared with `expected.txt`.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p kiln-dockerfile`.

mod snapshot;

#[test]
fn parser_fixtures() {
    snapshot::run_dir("parser", |src| {
        let parsed = kiln_dockerfile::parse(src);
        kiln_dockerfile::ast::dump(&parsed, src)
    });
}
