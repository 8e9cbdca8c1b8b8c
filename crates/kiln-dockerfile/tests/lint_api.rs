//! Lint API: options, directive handling, rule registry, exit codes, output forms.

use kiln_dockerfile::diag::{render, Severity};
use kiln_dockerfile::lint::{self, exit_code, CheckDirective, CheckOptions, RULES};
use kiln_dockerfile::parse;

#[test]
fn every_rule_has_unique_id_and_explanation() {
    let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RULES.len());
    for r in RULES {
        assert!(r.explanation.len() > 80, "{} explanation too short", r.id);
        assert!(!r.name.is_empty());
    }
    assert_eq!(
        lint::rule("stagenamecasing").map(|r| r.id),
        Some("StageNameCasing")
    );
    assert!(lint::rule("NoSuchRule").is_none());
}

#[test]
fn options_skip_and_override_severity() {
    let src = "FROM alpine AS Build\nMAINTAINER me\n";
    let p = parse(src);
    let all = lint::check(&p, &CheckOptions::default());
    assert_eq!(all.len(), 2);
    let opts = CheckOptions {
        skip: vec!["maintainerdeprecated".into()],
        ..Default::default()
    };
    let some = lint::check(&p, &opts);
    assert_eq!(some.len(), 1);
    assert_eq!(some[0].code, Some("StageNameCasing"));
    let opts = CheckOptions {
        warnings_as_errors: Some(true),
        ..Default::default()
    };
    let report = lint::run(&p, &opts);
    assert!(report
        .diagnostics
        .iter()
        .all(|d| d.severity == Severity::Error));
    assert_eq!(report.exit_code(false), 2);
}

#[test]
fn directive_parsing() {
    let d = CheckDirective::parse("skip=A, B ;error=true;experimental=all");
    assert_eq!(d.skip, vec!["A".to_string(), "B".to_string()]);
    assert!(d.error);
    assert_eq!(CheckDirective::parse("nonsense"), CheckDirective::default());
}

#[test]
fn known_env_silences_undefined_var() {
    let p = parse("FROM node\nWORKDIR $NODE_HOME\n");
    assert_eq!(lint::check(&p, &CheckOptions::default()).len(), 1);
    let opts = CheckOptions {
        known_env: vec!["NODE_HOME".into()],
        ..Default::default()
    };
    assert!(lint::check(&p, &opts).is_empty());
}

#[test]
fn exit_codes() {
    assert_eq!(exit_code(0, 0, true), 0);
    assert_eq!(exit_code(0, 3, false), 0);
    assert_eq!(exit_code(0, 3, true), 1);
    assert_eq!(exit_code(1, 3, false), 2);
}

#[test]
fn render_text_points_at_source() {
    let src = "FROM alpine\nRUNN echo hi\n";
    let p = parse(src);
    let out = render(&p.diagnostics[0], "Dockerfile", src);
    assert!(out.contains("error[unknown-instruction]"), "{out}");
    assert!(out.contains("Dockerfile:2:1"), "{out}");
    assert!(out.contains("RUNN echo hi"), "{out}");
    assert!(out.contains("^^^^"), "{out}");
    assert!(out.contains("help: did you mean RUN?"), "{out}");
}

#[test]
fn render_with_label_and_eof_span() {
    let src = "FROM alpine AS a\nFROM alpine AS A";
    let p = parse(src);
    let lints = lint::check(&p, &CheckOptions::default());
    let dup = lints
        .iter()
        .find(|d| d.code == Some("DuplicateStageName"))
        .unwrap();
    let out = render(dup, "Dockerfile", src);
    assert!(out.contains("first defined here"), "{out}");
    // A span at the very end of the file renders without panicking.
    let mut d = dup.clone();
    d.span = kiln_dockerfile::Span::new(src.len(), src.len() + 10);
    d.labels.clear();
    let _ = render(&d, "Dockerfile", src);
}

#[test]
fn json_form() {
    let src = "FROM alpine\nMAINTAINER x\n";
    let p = parse(src);
    let d = &lint::check(&p, &CheckOptions::default())[0];
    let j = serde_json::to_value(d.to_json("Dockerfile", src)).unwrap();
    assert_eq!(j["file"], "Dockerfile");
    assert_eq!(j["line"], 2);
    assert_eq!(j["column"], 1);
    assert_eq!(j["end_line"], 2);
    assert_eq!(j["end_column"], 13);
    assert_eq!(j["severity"], "warning");
    assert_eq!(j["rule"], "MaintainerDeprecated");
    assert!(j["hint"].as_str().unwrap().contains("LABEL"));
}
