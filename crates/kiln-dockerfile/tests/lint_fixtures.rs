//! Lint fixtures: `tests/fixtures/lint/<case>/Dockerfile` → `expected.txt`
//! with one line per finding (parse errors included), in source order.

mod snapshot;

use kiln_dockerfile::lint::{self, CheckOptions};

#[test]
fn lint_fixtures() {
    snapshot::run_dir("lint", |src| {
        let parsed = kiln_dockerfile::parse(src);
        let report = lint::run(&parsed, &CheckOptions::default());
        let mut out = String::new();
        for d in &report.diagnostics {
            out.push_str(&d.dump_line(src));
            out.push('\n');
        }
        out.push_str(&format!(
            "exit: default={} strict={}\n",
            report.exit_code(false),
            report.exit_code(true)
        ));
        out
    });
}
