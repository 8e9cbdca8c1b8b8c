//! Tiny snapshot harness shared by the parser and lint fixture tests.

use std::path::Path;

/// Run `f` on every `fixtures/<kind>/<case>/Dockerfile`, compare with
/// `expected.txt` next to it (or rewrite it when `UPDATE_SNAPSHOTS` is set).
pub fn run_dir(kind: &str, f: impl Fn(&str) -> String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures under {}", root.display());
    let mut failed = Vec::new();
    for case in &cases {
        let src = std::fs::read_to_string(case.join("Dockerfile")).expect("read Dockerfile");
        let got = f(&src);
        let exp_path = case.join("expected.txt");
        if update {
            std::fs::write(&exp_path, &got).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&exp_path).unwrap_or_default();
        if expected != got {
            eprintln!(
                "--- snapshot mismatch: {}\n--- expected\n{expected}\n--- got\n{got}",
                case.display()
            );
            failed.push(case.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} snapshots differ: {failed:?} (UPDATE_SNAPSHOTS=1 to accept)",
        failed.len(),
        cases.len()
    );
}
