//! Table tests for the `.dockerignore` matcher (Docker / moby/patternmatcher
//! semantics).

use kiln_dockerfile::ignore::{clean_path, ignore_file_for, IgnoreError, IgnoreMatcher};

/// (ignore file contents, path, excluded?)
const CASES: &[(&str, &str, bool)] = &[
    // plain names are anchored at the root
    ("foo", "foo", true),
    ("foo", "foo/bar", true),
    ("foo", "foo/bar/baz.txt", true),
    ("foo", "a/foo", false),
    ("foo", "foobar", false),
    ("foo", "fo", false),
    // leading / and ./ and trailing / are cleaned away
    ("/foo", "foo", true),
    ("./foo", "foo/x", true),
    ("foo/", "foo/x", true),
    ("foo/./bar", "foo/bar", true),
    ("foo/../bar", "bar", true),
    ("foo/../bar", "foo", false),
    ("//foo//bar//", "foo/bar", true),
    // comments and blank lines
    ("# foo", "# foo", false),
    ("#foo\nfoo", "foo", true),
    ("  # not a comment", "# not a comment", true),
    ("\n\n   \n", "anything", false),
    ("  foo  ", "foo", true),
    ("\u{feff}foo", "foo", true),
    ("foo\r\nbar\r\n", "bar", true),
    // * does not cross /
    ("*.txt", "a.txt", true),
    ("*.txt", "d/a.txt", false),
    ("*/*.txt", "d/a.txt", true),
    ("*/*.txt", "d/e/a.txt", false),
    ("*", "anything", true),
    ("*", "dir/file", true),
    ("d*", "dir/file", true),
    ("d*", "x/dir", false),
    ("*.md", ".md", true),
    // ?
    ("?.txt", "a.txt", true),
    ("?.txt", "ab.txt", false),
    ("a?c", "a/c", false),
    // character classes
    ("[abc].txt", "b.txt", true),
    ("[abc].txt", "d.txt", false),
    ("[a-c]x", "bx", true),
    ("[a-c]x", "dx", false),
    ("[^a-c]x", "dx", true),
    ("[^a-c]x", "ax", false),
    ("[!a]x", "!x", true),
    ("[!a]x", "bx", false),
    ("[\\]]", "]", true),
    // escapes
    ("\\*.txt", "*.txt", true),
    ("\\*.txt", "a.txt", false),
    ("a\\?", "a?", true),
    ("a\\?", "ab", false),
    // ** (any number of directories)
    ("**/foo", "foo", true),
    ("**/foo", "a/foo", true),
    ("**/foo", "a/b/foo", true),
    ("**/foo", "a/b/foo/c", true),
    ("**/foo", "a/xfoo", false),
    ("foo/**", "foo/a", true),
    ("foo/**", "foo/a/b", true),
    ("foo/**", "foo", false),
    ("foo/**/bar", "foo/bar", true),
    ("foo/**/bar", "foo/a/b/bar", true),
    ("foo/**/bar", "foo/a/b/baz", false),
    ("**/*.go", "main.go", true),
    ("**/*.go", "cmd/x/main.go", true),
    ("**/*.go", "cmd/x/main.rs", false),
    ("**", "anything/at/all", true),
    // Docker's shortcut matchers
    ("**.txt", "a/b.txt", true),
    ("foo**", "foobar/x", true),
    ("foo**", "fo", false),
    // regex metacharacters are literal
    ("a.b", "a.b", true),
    ("a.b", "axb", false),
    ("a+(b)", "a+(b)", true),
    ("a{1}$", "a{1}$", true),
    ("a.*", "a.x", true),
    ("a.*", "ab", false),
    // exceptions, last match wins
    ("*.md\n!README.md", "README.md", false),
    ("*.md\n!README.md", "CHANGES.md", true),
    ("!README.md\n*.md", "README.md", true),
    ("docs\n!docs/keep", "docs/keep", false),
    ("docs\n!docs/keep", "docs/keep/inner", false),
    ("docs\n!docs/keep", "docs/other", true),
    (
        "docs\n!docs/keep\ndocs/keep/secret",
        "docs/keep/secret",
        true,
    ),
    (
        "docs\n!docs/keep\ndocs/keep/secret",
        "docs/keep/public",
        false,
    ),
    ("*\n!src", "src/main.rs", false),
    ("*\n!src", "target/x", true),
    ("*\n! src ", "src", false),
    ("foo\n!foo\nfoo", "foo/x", true),
    ("!foo", "foo", false),
    // paths given to the matcher are cleaned too
    ("foo", "./foo/bar", true),
    ("foo", "/foo", true),
    ("foo", "a/../foo", true),
    ("*", ".", false),
    ("*", "", false),
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for (i, (contents, path, want)) in CASES.iter().enumerate() {
        let m = IgnoreMatcher::parse(contents).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let got = m.is_excluded(path);
        if got != *want {
            failures.push(format!(
                "case {i}: {contents:?} {path:?}: got {got}, want {want}"
            ));
        }
    }
    assert!(CASES.len() >= 60);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_name_the_line() {
    assert_eq!(
        IgnoreMatcher::parse("a\n!\n"),
        Err(IgnoreError::IllegalExclusion { line: 2 })
    );
    assert_eq!(
        IgnoreMatcher::parse("a\n  ! \n"),
        Err(IgnoreError::IllegalExclusion { line: 2 })
    );
    // "!/" is cleaned to "!" by Docker as well
    assert_eq!(
        IgnoreMatcher::parse("!/"),
        Err(IgnoreError::IllegalExclusion { line: 1 })
    );
    for bad in ["[", "[]", "[^]", "a[b", "[a-]", "[-a]", "a\\", "[z-"] {
        let err = IgnoreMatcher::parse(&format!("ok\n# c\n{bad}")).unwrap_err();
        match err {
            IgnoreError::BadPattern { line, .. } => assert_eq!(line, 3, "{bad}"),
            other => panic!("{bad}: {other}"),
        }
        assert!(err_text(&format!("x\n{bad}")).starts_with("line 2:"));
    }
    let long = "a".repeat(70_000);
    assert_eq!(
        IgnoreMatcher::parse(&format!("x\n{long}")),
        Err(IgnoreError::LineTooLong { line: 2 })
    );
}

fn err_text(s: &str) -> String {
    IgnoreMatcher::parse(s).unwrap_err().to_string()
}

#[test]
fn walker_pruning() {
    let m = IgnoreMatcher::parse("node_modules\ntarget\n!target/keep.txt\n*.log").unwrap();
    assert!(!m.dir_may_contain_included("node_modules"));
    assert!(!m.dir_may_contain_included("node_modules/a"));
    assert!(m.dir_may_contain_included("target"));
    assert!(m.dir_may_contain_included("src"));
    assert!(m.dir_may_contain_included("."));
    assert!(m.dir_may_contain_included(""));

    let m = IgnoreMatcher::parse("*\n!**/Cargo.toml").unwrap();
    assert!(m.dir_may_contain_included("crates/a"));

    let m = IgnoreMatcher::parse("docs\n!src/*.rs").unwrap();
    assert!(!m.dir_may_contain_included("docs"));
    let m = IgnoreMatcher::parse("docs\n!d*/x").unwrap();
    assert!(m.dir_may_contain_included("docs"));
    let m = IgnoreMatcher::parse("docs\n!docs/**").unwrap();
    assert!(m.dir_may_contain_included("docs"));
    let m = IgnoreMatcher::parse("docs\n!docs").unwrap();
    assert!(m.dir_may_contain_included("docs"));
}

#[test]
fn pruning_is_sound() {
    // whenever a directory is reported as skippable, nothing below it is included
    let files = [
        "a/b/c.txt",
        "a/b/keep.md",
        "a/x.md",
        "b/c/d",
        "b/keep",
        "c.md",
        "d/e/f/g.rs",
    ];
    let ignores = [
        "a\n!a/b/keep.md",
        "*\n!*.md",
        "a/b\n!**/keep",
        "b\nd/e\n!d/e/f/*.rs",
        "**/c\n!b/c/d",
        "*\n!d",
    ];
    for ig in ignores {
        let m = IgnoreMatcher::parse(ig).unwrap();
        for f in files {
            let mut dir = String::new();
            for part in f.split('/').take(f.split('/').count() - 1) {
                if !dir.is_empty() {
                    dir.push('/');
                }
                dir.push_str(part);
                if !m.dir_may_contain_included(&dir) {
                    assert!(m.is_excluded(f), "{ig:?}: {dir} pruned but {f} included");
                }
            }
        }
    }
}

#[test]
fn precedence_helper() {
    assert_eq!(
        ignore_file_for("Dockerfile"),
        [
            "Dockerfile.dockerignore".to_owned(),
            ".dockerignore".to_owned()
        ]
    );
    assert_eq!(
        ignore_file_for("build/app.Dockerfile"),
        [
            "build/app.Dockerfile.dockerignore".to_owned(),
            ".dockerignore".to_owned()
        ]
    );
}

#[test]
fn patterns_are_exposed_cleaned() {
    let m = IgnoreMatcher::parse("# c\n/foo/\n! ./bar/../baz\n").unwrap();
    let p: Vec<_> = m.patterns().collect();
    assert_eq!(p, vec![(false, "foo", 2), (true, "baz", 3)]);
    assert!(m.has_exceptions());
    assert!(IgnoreMatcher::parse("# only\n\n").unwrap().is_empty());
    assert_eq!(clean_path("a/./b/"), "a/b");
}

#[test]
fn never_panics_on_odd_input() {
    let inputs = [
        "[", "\\", "**", "***", "**/**", "!**", "[[]", "[\\", "a/**/", "\u{0}", "ü*", "[é-ü]",
        "^a", "a^", "**/../..", "!!", "!!a", "\r", "[^", "*\\*",
    ];
    for i in inputs {
        if let Ok(m) = IgnoreMatcher::parse(i) {
            for p in ["", "a", "a/b", "ü", "^a", "!a", "/", "..", "../x", "a\nb"] {
                let _ = m.is_excluded(p);
                let _ = m.dir_may_contain_included(p);
            }
        }
    }
}
